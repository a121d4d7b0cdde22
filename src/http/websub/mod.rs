//! livefeed as its own WebSub hub (W3C Recommendation, 23 January 2018). `POST /websub` takes
//! subscriptions to the current feeds (`hub.mode`, `hub.topic`, `hub.callback`,
//! `hub.lease_seconds`, `hub.secret`), answers 202 and verifies the subscriber's intent with a
//! challenge (§5.3). Verified subscriptions are kept in `LOG_DIR/websub.json`, written
//! atomically, and reloaded at start. When a topic's rendered file changes (the hub's head
//! moved and the renderer caught up), its new body is POSTed to every subscriber (§7), signed
//! with `X-Hub-Signature: sha256=…` when a secret was given, retried with exponential backoff;
//! a subscriber failing for longer than `give_up` is dropped. Deliveries run on their own
//! tasks, bounded in number and concurrency: they never hold up publishing or readers.
//! Callbacks are untrusted: see [`net`].

pub mod net;

use crate::layout::FileKey;
use bytes::Bytes;
use chrono::Utc;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

use super::respond::{Body, empty, method_not_allowed, problem};
use crate::log::hub::{CachedFile, Hub};
use crate::metrics::{self, OutcomeLabels};

/// The file subscriptions are kept in, in the log directory.
pub const FILE: &str = "websub.json";
/// Longest `hub.secret`, in bytes (§5.1: "less than 200 bytes").
pub const MAX_SECRET: usize = 199;
/// Longest `hub.callback` accepted.
pub const MAX_CALLBACK: usize = 2048;
/// Largest subscription request body.
const MAX_FORM: usize = 16 * 1024;
/// The most of a callback's answer read (a challenge is 32 characters).
const MAX_ANSWER: usize = 4096;
/// Verifications under way at once, subscribing and unsubscribing alike; beyond it, 503.
pub const MAX_PENDING: usize = 1024;

/// How the hub runs (`livefeed serve --websub-*`).
#[derive(Debug, Clone)]
pub struct Settings {
    /// The server's public base URL: topics are `{base}/feeds/{file}`, the hub `{base}/websub`.
    pub base_url: String,
    /// Where subscriptions are kept (`LOG_DIR/websub.json`).
    pub file: PathBuf,
    pub policy: net::Policy,
    pub max_subscriptions: usize,
    /// Subscriptions whose callbacks share one host.
    pub max_per_host: usize,
    pub min_lease: Duration,
    pub default_lease: Duration,
    pub max_lease: Duration,
    /// A subscriber whose deliveries keep failing for this long is dropped.
    pub give_up: Duration,
    /// Bounds resolving and connecting, and separately a whole request.
    pub timeout: Duration,
    /// The first retry's delay; each next one doubles, up to `max_retry_delay`.
    pub retry_delay: Duration,
    pub max_retry_delay: Duration,
    /// Attempts per notification.
    pub attempts: u32,
    /// Requests to callbacks in flight at once.
    pub concurrency: usize,
    /// Notifications waiting or being retried at once; beyond it a notification is dropped.
    pub queue: usize,
}

impl Settings {
    /// The defaults, for a server at `base_url` keeping its subscriptions in `file`.
    pub fn new(base_url: &str, file: PathBuf) -> Settings {
        Settings {
            base_url: base_url.trim_end_matches('/').to_string(),
            file,
            policy: net::Policy::default(),
            max_subscriptions: 10_000,
            max_per_host: 1_000,
            min_lease: Duration::from_secs(300),
            default_lease: Duration::from_secs(10 * 86_400),
            max_lease: Duration::from_secs(30 * 86_400),
            give_up: Duration::from_secs(86_400),
            timeout: Duration::from_secs(10),
            retry_delay: Duration::from_secs(1),
            max_retry_delay: Duration::from_secs(300),
            attempts: 8,
            concurrency: 32,
            queue: 4096,
        }
    }

    /// The hub's URL, as feeds advertise it.
    pub fn hub_url(&self) -> String {
        hub_url(&self.base_url)
    }
}

/// The hub URL of a server at `base_url`.
pub fn hub_url(base_url: &str) -> String {
    crate::layout::websub_url(base_url)
}

/// The subscriptions file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum WebSubError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{line}: not a subscriptions file: {message}", path.display())]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("the WebSub HTTP client: {0}")]
    Client(String),
}

/// A verified subscription, as kept on disk.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Sub {
    topic: String,
    callback: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
    /// When the lease ends, Unix seconds.
    expires: i64,
    /// Since when deliveries to it have failed, Unix seconds; none while they succeed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    failing_since: Option<i64>,
}

#[derive(Serialize, Deserialize)]
struct Saved {
    version: u32,
    subscriptions: Vec<Sub>,
}

type Key = (String, String);

/// A verification to make: what the subscriber asked for.
#[derive(Debug, Clone)]
struct Intent {
    subscribe: bool,
    topic: String,
    callback: url::Url,
    lease: Duration,
    secret: Option<String>,
}

/// The hub: its subscriptions, HTTP client and delivery bounds.
pub struct WebSub {
    settings: Settings,
    hub_url: String,
    /// `Link: <hub>; rel="hub"` with the topic's own `rel="self"` appended per feed.
    hub: Arc<Hub>,
    client: Client<net::Connector, Full<Bytes>>,
    subs: Mutex<BTreeMap<Key, Sub>>,
    /// Verifications under way, counted against the caps.
    pending: AtomicUsize,
    /// The ETag each topic was last delivered (or first seen) with.
    seen: Mutex<HashMap<String, String>>,
    /// The newest notification queued per subscription: an older one still retrying stops.
    latest: Mutex<HashMap<Key, u64>>,
    generation: AtomicU64,
    /// Serialises writes of the subscriptions file.
    writing: tokio::sync::Mutex<()>,
    /// Changes made to `subs` that asked to be written, and how many of them the file holds:
    /// a burst of changes is written once, not once per change.
    changes: AtomicU64,
    written: AtomicU64,
    queue: Arc<Semaphore>,
    workers: Arc<Semaphore>,
}

fn now() -> i64 {
    Utc::now().timestamp()
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

fn count(
    family: &prometheus_client::metrics::family::Family<
        OutcomeLabels,
        prometheus_client::metrics::counter::Counter,
    >,
    outcome: &'static str,
) {
    family.get_or_create(&OutcomeLabels { outcome }).inc();
}

/// Lowercase hexadecimal. Hand-written: two lines do not justify a crate.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `sha256=HEX`: the HMAC-SHA256 of `body` keyed with `secret` (§8).
pub fn signature(secret: &str, body: &[u8]) -> String {
    // HMAC takes a key of any length: `new_from_slice` cannot fail for it.
    let mut mac = match Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(body);
    format!("sha256={}", hex(&mac.finalize().into_bytes()))
}

/// A random challenge, 128 bits as hex.
fn challenge() -> Option<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).ok()?;
    Some(hex(&bytes))
}

/// Reads the subscriptions file; a missing file is no subscriptions, expired leases are dropped.
fn load(path: &std::path::Path) -> Result<Vec<Sub>, WebSubError> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(WebSubError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let saved: Saved = serde_json::from_slice(&text).map_err(|e| WebSubError::Parse {
        path: path.to_path_buf(),
        line: e.line(),
        message: e.to_string(),
    })?;
    let now = now();
    Ok(saved
        .subscriptions
        .into_iter()
        .filter(|s| s.expires > now)
        .collect())
}

/// Writes `bytes` to `path` atomically: a temporary file beside it, synced, renamed over it,
/// and the directory synced. Readable by the owner only (it holds the subscribers' secrets).
fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    let tmp = path.with_extension("json.tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)?;
    crate::log::store::fsync_dir(dir)
}

impl WebSub {
    /// Loads the kept subscriptions and starts the hub's tasks (on the current runtime).
    pub fn start(settings: Settings, hub: Arc<Hub>) -> Result<Arc<WebSub>, WebSubError> {
        let subs = load(&settings.file)?;
        let connector = net::connector(Arc::new(settings.policy.clone()), settings.timeout)
            .map_err(WebSubError::Client)?;
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(4)
            .build(connector);
        let seen = subs
            .iter()
            .filter_map(|s| {
                let file = hub.file(&topic_path(&settings.base_url, &s.topic)?)?;
                Some((s.topic.clone(), file.etag.clone()))
            })
            .collect();
        let websub = Arc::new(WebSub {
            hub_url: settings.hub_url(),
            queue: Arc::new(Semaphore::new(settings.queue.max(1))),
            workers: Arc::new(Semaphore::new(settings.concurrency.max(1))),
            settings,
            hub,
            client,
            subs: Mutex::new(
                subs.into_iter()
                    .map(|s| ((s.topic.clone(), s.callback.clone()), s))
                    .collect(),
            ),
            pending: AtomicUsize::new(0),
            seen: Mutex::new(seen),
            latest: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
            writing: tokio::sync::Mutex::new(()),
            changes: AtomicU64::new(0),
            written: AtomicU64::new(0),
        });
        websub.gauge();
        tracing::info!(
            subscriptions = websub.subs().len(),
            file = %websub.settings.file.display(),
            hub = %websub.hub_url,
            "WebSub hub on"
        );
        tokio::spawn(Arc::clone(&websub).watch());
        tokio::spawn(Arc::clone(&websub).sweep());
        Ok(websub)
    }

    fn subs(&self) -> std::sync::MutexGuard<'_, BTreeMap<Key, Sub>> {
        self.subs.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn gauge(&self) {
        let now = now();
        let active = self.subs().values().filter(|s| s.expires > now).count();
        metrics::get()
            .websub_subscriptions
            .set(i64::try_from(active).unwrap_or(i64::MAX));
    }

    /// The hub's URL.
    pub fn hub_url(&self) -> &str {
        &self.hub_url
    }

    /// The `Link` header of a current feed at `path`: the hub, and the feed itself.
    pub fn link_header(&self, path: &str) -> Option<HeaderValue> {
        HeaderValue::from_str(&format!(
            "<{}>; rel=\"hub\", <{}{path}>; rel=\"self\"",
            self.hub_url, self.settings.base_url
        ))
        .ok()
    }

    /// Writes the subscriptions file with the subscriptions as they are now (call it after
    /// changing them); returns once the file holds the change.
    async fn persist(&self) {
        let mine = self.changes.fetch_add(1, Ordering::SeqCst) + 1;
        let _writing = self.writing.lock().await;
        if self.written.load(Ordering::SeqCst) >= mine {
            // A write that started after this change already holds it.
            return;
        }
        // Every change counted up to here is in the snapshot taken below.
        let upto = self.changes.load(Ordering::SeqCst);
        let saved = Saved {
            version: 1,
            subscriptions: self.subs().values().cloned().collect(),
        };
        self.gauge();
        let bytes = match serde_json::to_vec_pretty(&saved) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "cannot serialise the WebSub subscriptions");
                return;
            }
        };
        let path = self.settings.file.clone();
        let written = tokio::task::spawn_blocking(move || write_atomic(&path, &bytes)).await;
        self.written.store(upto, Ordering::SeqCst);
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(
                error = %e,
                file = %self.settings.file.display(),
                "cannot write the WebSub subscriptions; they are kept in memory"
            ),
            Err(e) => tracing::error!(error = %e, "the WebSub subscriptions writer failed"),
        }
    }

    /// `POST /websub`.
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        if req.method() != Method::POST {
            return method_not_allowed("POST");
        }
        let form = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|t| {
                t.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            });
        if !form {
            return problem(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "send the subscription as Content-Type: application/x-www-form-urlencoded",
                Value::Null,
            );
        }
        let bytes = match Limited::new(req.into_body(), MAX_FORM).collect().await {
            Ok(c) => c.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                return problem(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &format!("the body is larger than the limit of {MAX_FORM} bytes"),
                    json!({ "limit": MAX_FORM }),
                );
            }
            Err(_) => return bad("the request body could not be read", None),
        };
        let intent = match self.intent(&bytes) {
            Ok(i) => i,
            Err(res) => return *res,
        };
        // A host name is checked now too (a refusal is the subscriber's answer), and again at
        // every connection.
        if let Some(url::Host::Domain(host)) = intent.callback.host() {
            if let Err(why) = self
                .settings
                .policy
                .resolve(host, self.settings.timeout)
                .await
            {
                return bad(&why.to_string(), Some("hub.callback"));
            }
        }
        if intent.subscribe {
            if let Err(res) = self.room_for(&intent) {
                return *res;
            }
        }
        // Every request makes the hub call out once: bounded, so requests cannot pile up tasks.
        if self.pending.fetch_add(1, Ordering::SeqCst) >= MAX_PENDING {
            self.pending.fetch_sub(1, Ordering::SeqCst);
            let mut res = problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many verifications under way; try again shortly",
                json!({ "limit": MAX_PENDING }),
            );
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("10"));
            return res;
        }
        tokio::spawn(Arc::clone(&self).verify(intent));
        let mut res = Response::new(empty());
        *res.status_mut() = StatusCode::ACCEPTED;
        res
    }

    /// Reads and checks a subscription request.
    fn intent(&self, body: &[u8]) -> Result<Intent, Box<Response<Body>>> {
        let mut params: HashMap<String, String> = HashMap::new();
        for (name, value) in form_urlencoded::parse(body) {
            if !name.starts_with("hub.") {
                continue;
            }
            if params.insert(name.to_string(), value.to_string()).is_some() {
                return Err(Box::new(bad(
                    &format!("{name} is given more than once"),
                    Some(&name),
                )));
            }
        }
        let get = |name: &str| params.get(name).map(String::as_str);
        let need = |name: &'static str| {
            get(name)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| Box::new(bad(&format!("{name} is required"), Some(name))))
        };
        let subscribe = match need("hub.mode")? {
            "subscribe" => true,
            "unsubscribe" => false,
            _ => {
                return Err(Box::new(bad(
                    "hub.mode must be subscribe or unsubscribe",
                    Some("hub.mode"),
                )));
            }
        };
        let topic = need("hub.topic")?.to_string();
        let known = topic_path(&self.settings.base_url, &topic)
            .is_some_and(|path| self.hub.file(&path).is_some());
        if !known {
            return Err(Box::new(bad(
                &format!(
                    "hub.topic must be one of this server's current feeds, {}{{rss,atom,json}}",
                    crate::layout::feed_base(&self.settings.base_url, "{slug}")
                ),
                Some("hub.topic"),
            )));
        }
        let callback = need("hub.callback")?;
        if callback.len() > MAX_CALLBACK {
            return Err(Box::new(bad(
                &format!("hub.callback is longer than {MAX_CALLBACK} bytes"),
                Some("hub.callback"),
            )));
        }
        let mut callback = url::Url::parse(callback).map_err(|_| {
            Box::new(bad(
                "hub.callback must be an absolute http or https URL",
                Some("hub.callback"),
            ))
        })?;
        if let Err(why) = self.settings.policy.check_url(&callback) {
            return Err(Box::new(bad(&why.to_string(), Some("hub.callback"))));
        }
        // A fragment is never sent in a request.
        callback.set_fragment(None);
        let s = &self.settings;
        let lease = match get("hub.lease_seconds").filter(|v| !v.is_empty()) {
            None => s.default_lease,
            Some(v) => match v.parse::<u64>() {
                Ok(n) => Duration::from_secs(n),
                Err(_) => {
                    return Err(Box::new(bad(
                        "hub.lease_seconds must be a whole number of seconds",
                        Some("hub.lease_seconds"),
                    )));
                }
            },
        };
        let lease = lease.clamp(s.min_lease, s.max_lease.max(s.min_lease));
        let secret = match get("hub.secret") {
            None => None,
            Some("") => {
                return Err(Box::new(bad(
                    "hub.secret must not be empty (leave it out for unsigned notifications)",
                    Some("hub.secret"),
                )));
            }
            Some(v) if v.len() > MAX_SECRET => {
                return Err(Box::new(bad(
                    "hub.secret must be shorter than 200 bytes",
                    Some("hub.secret"),
                )));
            }
            Some(v) => Some(v.to_string()),
        };
        Ok(Intent {
            subscribe,
            topic,
            callback,
            lease,
            secret,
        })
    }

    /// Whether one more subscription fits the caps (a renewal always does).
    fn room_for(&self, intent: &Intent) -> Result<(), Box<Response<Body>>> {
        let subs = self.subs();
        let key = (intent.topic.clone(), intent.callback.to_string());
        if subs.contains_key(&key) {
            return Ok(());
        }
        let max = self.settings.max_subscriptions;
        if subs.len() + self.pending.load(Ordering::SeqCst) >= max {
            let mut res = problem(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("the hub holds its limit of {max} subscriptions"),
                json!({ "limit": max }),
            );
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("3600"));
            return Err(Box::new(res));
        }
        let host = intent.callback.host_str().unwrap_or("");
        let same_host = subs
            .values()
            .filter(|s| url::Url::parse(&s.callback).is_ok_and(|u| u.host_str() == Some(host)))
            .count();
        let per_host = self.settings.max_per_host;
        if same_host >= per_host {
            return Err(Box::new(problem(
                StatusCode::TOO_MANY_REQUESTS,
                &format!("callbacks on {host} hold their limit of {per_host} subscriptions"),
                json!({ "limit": per_host, "parameter": "hub.callback" }),
            )));
        }
        Ok(())
    }

    /// Verifies an intent (§5.3) and applies it when the subscriber confirms it.
    async fn verify(self: Arc<Self>, intent: Intent) {
        let confirmed = self.ask(&intent).await;
        self.pending.fetch_sub(1, Ordering::SeqCst);
        let m = metrics::get();
        let key = (intent.topic.clone(), intent.callback.to_string());
        match confirmed {
            Ok(true) => count(&m.websub_verifications, "verified"),
            Ok(false) => {
                count(&m.websub_verifications, "refused");
                tracing::info!(callback = %shown(intent.callback.as_str()), topic = %intent.topic, "WebSub callback did not confirm the intent");
                return;
            }
            Err(why) => {
                count(&m.websub_verifications, "failed");
                tracing::info!(callback = %shown(intent.callback.as_str()), topic = %intent.topic, error = %why, "WebSub verification failed");
                return;
            }
        }
        if intent.subscribe {
            let etag = topic_path(&self.settings.base_url, &intent.topic)
                .and_then(|key| self.hub.file(&key))
                .map(|f| f.etag.clone());
            if let Some(etag) = etag {
                self.seen
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(intent.topic.clone())
                    .or_insert(etag);
            }
            self.subs().insert(
                key,
                Sub {
                    topic: intent.topic.clone(),
                    callback: intent.callback.to_string(),
                    secret: intent.secret.clone(),
                    // From the next whole second: a lease is never shorter than granted.
                    expires: Utc::now()
                        .timestamp_millis()
                        .div_euclid(1000)
                        .saturating_add(1)
                        .saturating_add(secs(intent.lease)),
                    failing_since: None,
                },
            );
            tracing::info!(callback = %shown(intent.callback.as_str()), topic = %intent.topic, lease = intent.lease.as_secs(), "WebSub subscription verified");
        } else {
            self.subs().remove(&key);
            tracing::info!(callback = %shown(intent.callback.as_str()), topic = %intent.topic, "WebSub subscription removed");
        }
        self.persist().await;
    }

    /// Asks the callback to confirm: true when it answers 2xx with the challenge exactly.
    async fn ask(&self, intent: &Intent) -> Result<bool, String> {
        let challenge = challenge().ok_or("no random challenge could be made")?;
        let mut url = intent.callback.clone();
        {
            let mode = if intent.subscribe {
                "subscribe"
            } else {
                "unsubscribe"
            };
            let mut query = url.query_pairs_mut();
            query
                .append_pair("hub.mode", mode)
                .append_pair("hub.topic", &intent.topic)
                .append_pair("hub.challenge", &challenge);
            // §5.3: the lease granted, for subscriptions only.
            if intent.subscribe {
                query.append_pair("hub.lease_seconds", &intent.lease.as_secs().to_string());
            }
        }
        let req = Request::get(url.as_str())
            .header(
                header::USER_AGENT,
                concat!("livefeed/", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::new(Bytes::new()))
            .map_err(|e| e.to_string())?;
        let (status, body) = self.send(req).await?;
        Ok(status.is_success() && body == challenge.as_bytes())
    }

    /// Sends a request within the timeout; its status and (the start of) its body.
    async fn send(&self, req: Request<Full<Bytes>>) -> Result<(StatusCode, Bytes), String> {
        let exchange = async {
            let res = self.client.request(req).await.map_err(|e| {
                // The refusal of a checked address is the useful part of the chain.
                let mut text = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(s) = source {
                    text = format!("{text}: {s}");
                    source = s.source();
                }
                text
            })?;
            let status = res.status();
            let body = match Limited::new(res.into_body(), MAX_ANSWER).collect().await {
                Ok(c) => c.to_bytes(),
                Err(_) => Bytes::new(),
            };
            Ok((status, body))
        };
        tokio::time::timeout(self.settings.timeout, exchange)
            .await
            .map_err(|_| format!("no answer within {:?}", self.settings.timeout))?
    }

    /// Waits for changes and notifies the subscribers of each topic whose file changed.
    async fn watch(self: Arc<Self>) {
        let mut head = self.hub.subscribe();
        loop {
            if head.changed().await.is_err() {
                return;
            }
            let target = *head.borrow_and_update();
            let since = Instant::now();
            // The renderer runs off the publish path: wait until the files reflect the head
            // (however long a large render takes: no later change may come to trigger a scan).
            while !self
                .hub
                .wait_rendered(target, Duration::from_secs(10))
                .await
            {}
            self.notify_changed(since);
        }
    }

    /// Queues a notification for every subscriber of every topic whose file changed.
    fn notify_changed(self: &Arc<Self>, since: Instant) {
        let now = now();
        let mut by_topic: BTreeMap<String, Vec<Key>> = BTreeMap::new();
        for (key, s) in self.subs().iter() {
            if s.expires > now {
                by_topic
                    .entry(s.topic.clone())
                    .or_default()
                    .push(key.clone());
            }
        }
        for (topic, keys) in by_topic {
            let Some(file) =
                topic_path(&self.settings.base_url, &topic).and_then(|path| self.hub.file(&path))
            else {
                continue;
            };
            let changed = {
                let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
                match seen.get(&topic) {
                    Some(etag) if *etag == file.etag => false,
                    _ => {
                        seen.insert(topic.clone(), file.etag.clone());
                        true
                    }
                }
            };
            if changed {
                for key in keys {
                    self.enqueue(key, Arc::clone(&file), since);
                }
            }
        }
    }

    fn enqueue(self: &Arc<Self>, key: Key, file: Arc<CachedFile>, since: Instant) {
        let m = metrics::get();
        let Ok(slot) = Arc::clone(&self.queue).try_acquire_owned() else {
            count(&m.websub_deliveries, "dropped");
            tracing::warn!(callback = %shown(&key.1), topic = %key.0, "WebSub delivery queue full; notification dropped");
            return;
        };
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        self.latest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.clone(), generation);
        let me = Arc::clone(self);
        tokio::spawn(async move {
            me.deliver(key, file, generation, since).await;
            drop(slot);
        });
    }

    /// Delivers one notification, retrying with backoff; drops the subscriber once it has
    /// failed for longer than `give_up`.
    async fn deliver(&self, key: Key, file: Arc<CachedFile>, generation: u64, since: Instant) {
        let m = metrics::get();
        let mut delay = self.settings.retry_delay;
        for attempt in 1..=self.settings.attempts.max(1) {
            let newest = self
                .latest
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&key)
                .copied();
            if newest != Some(generation) {
                count(&m.websub_deliveries, "superseded");
                return;
            }
            let Some(sub) = self.subs().get(&key).filter(|s| s.expires > now()).cloned() else {
                // Unsubscribed or expired meanwhile.
                return;
            };
            let sent = {
                let _worker = self.workers.acquire().await;
                self.post(&sub, &file).await
            };
            match sent {
                Ok(()) => {
                    count(&m.websub_deliveries, "delivered");
                    m.websub_delivery_seconds
                        .observe(since.elapsed().as_secs_f64());
                    let was_failing = self
                        .subs()
                        .get_mut(&key)
                        .and_then(|s| s.failing_since.take())
                        .is_some();
                    if was_failing {
                        self.persist().await;
                    }
                    return;
                }
                Err(why) => {
                    let now = now();
                    let failing_since = self
                        .subs()
                        .get_mut(&key)
                        .map(|s| *s.failing_since.get_or_insert(now));
                    let Some(failing_since) = failing_since else {
                        return;
                    };
                    if now - failing_since >= secs(self.settings.give_up) {
                        self.subs().remove(&key);
                        count(&m.websub_deliveries, "gave_up");
                        tracing::warn!(callback = %shown(&key.1), topic = %key.0, error = %why, failing_for = now - failing_since, "WebSub subscriber dropped: deliveries failed for too long");
                        self.persist().await;
                        return;
                    }
                    if attempt == self.settings.attempts.max(1) {
                        count(&m.websub_deliveries, "failed");
                        tracing::info!(callback = %shown(&key.1), topic = %key.0, error = %why, attempt, "WebSub delivery failed; giving up on this notification");
                        self.persist().await;
                        return;
                    }
                    count(&m.websub_deliveries, "retried");
                    tracing::debug!(callback = %shown(&key.1), topic = %key.0, error = %why, attempt, "WebSub delivery failed; retrying");
                }
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(self.settings.max_retry_delay);
        }
    }

    /// POSTs the topic's content to one subscriber (§7).
    async fn post(&self, sub: &Sub, file: &CachedFile) -> Result<(), String> {
        let mut req = Request::post(&sub.callback)
            .header(header::CONTENT_TYPE, file.content_type)
            .header(
                header::USER_AGENT,
                concat!("livefeed/", env!("CARGO_PKG_VERSION")),
            )
            .header(
                header::LINK,
                format!(
                    "<{}>; rel=\"hub\", <{}>; rel=\"self\"",
                    self.hub_url, sub.topic
                ),
            );
        if let Some(secret) = &sub.secret {
            req = req.header("x-hub-signature", signature(secret, &file.body));
        }
        let req = req
            .body(Full::new(file.body.clone()))
            .map_err(|e| e.to_string())?;
        let (status, _) = self.send(req).await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("the callback answered {status}"))
        }
    }

    /// Drops expired leases now and then, and what was kept for subscriptions gone.
    async fn sweep(self: Arc<Self>) {
        let every =
            (self.settings.min_lease / 2).clamp(Duration::from_secs(1), Duration::from_secs(60));
        loop {
            tokio::time::sleep(every).await;
            let now = now();
            let expired = {
                let mut subs = self.subs();
                let before = subs.len();
                subs.retain(|_, s| s.expires > now);
                // What is kept per subscription and per topic goes with the last of them.
                self.latest
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .retain(|key, _| subs.contains_key(key));
                let topics: std::collections::HashSet<&str> =
                    subs.keys().map(|(t, _)| t.as_str()).collect();
                self.seen
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .retain(|topic, _| topics.contains(topic.as_str()));
                before - subs.len()
            };
            if expired > 0 {
                tracing::info!(expired, "WebSub leases expired");
                self.persist().await;
            }
        }
    }
}

/// The path of a topic under this server (`/feeds/{file}`), when it is a current feed's URL.
fn topic_path(base_url: &str, topic: &str) -> Option<FileKey> {
    let path = topic.strip_prefix(base_url)?;
    if path.contains(['%', '?', '#', '\\']) {
        return None;
    }
    FileKey::parse(path).filter(|k| matches!(k, FileKey::Feed(..)))
}

/// A callback as logs show it: its origin only. The path and query of a callback URL often
/// carry the subscriber's own token (whoever knows it can post to it), so they stay out of logs.
fn shown(callback: &str) -> String {
    url::Url::parse(callback).map_or_else(
        |_| "(invalid)".to_string(),
        |u| u.origin().ascii_serialization(),
    )
}

fn bad(detail: &str, parameter: Option<&str>) -> Response<Body> {
    let extra = parameter.map_or(Value::Null, |p| json!({ "parameter": p }));
    problem(StatusCode::BAD_REQUEST, detail, extra)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_are_current_feeds_of_this_server_only() {
        let base = "http://127.0.0.1:8080";
        assert_eq!(
            topic_path(base, "http://127.0.0.1:8080/feeds/all.atom"),
            Some(FileKey::Feed("all".into(), crate::render::Format::Atom))
        );
        for other in [
            "http://127.0.0.1:8080/feeds/all/archive/0.atom",
            "http://127.0.0.1:8080/feeds/all.atom?x=1",
            "http://127.0.0.1:8080/feeds/all.html",
            "http://127.0.0.1:8080/stories/all",
            "http://127.0.0.1:8081/feeds/all.atom",
            "http://127.0.0.1:8080/feeds/.atom",
        ] {
            assert_eq!(topic_path(base, other), None, "{other}");
        }
    }

    #[test]
    fn logs_show_a_callback_by_its_origin() {
        assert_eq!(
            shown("https://reader.example:8443/push/SECRET?token=x"),
            "https://reader.example:8443"
        );
        assert_eq!(shown("http://reader.example/"), "http://reader.example");
    }

    #[test]
    fn signatures_are_hmac_sha256_in_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn a_saved_file_reloads_without_its_expired_leases() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        let sub = |callback: &str, expires| Sub {
            topic: "http://x/feeds/all.atom".into(),
            callback: callback.into(),
            secret: Some("s".into()),
            expires,
            failing_since: None,
        };
        let saved = Saved {
            version: 1,
            subscriptions: vec![sub("http://a/", now() + 100), sub("http://b/", now() - 1)],
        };
        write_atomic(&path, &serde_json::to_vec(&saved).unwrap()).unwrap();
        let loaded = load(&path).unwrap();
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded[0].callback, "http://a/");
        std::fs::write(&path, "{\n  \"version\": 1,\n  oops").unwrap();
        let e = load(&path).unwrap_err().to_string();
        assert!(e.contains("websub.json:3:"), "{e}");
    }
}
