//! `livefeed serve`: the hyper/tokio server. An accept loop with a connection cap, one hyper
//! connection per socket with a header read timeout, a router over pre-rendered files and the
//! live transports, and a graceful shutdown that answers waiting long-polls first.

pub mod alloc;
pub mod live;
pub mod publish;
pub mod query;
pub mod respond;
pub mod watch;

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch as tokio_watch};

use crate::metrics;
use crate::relay::Relay;
use query::{LiveQuery, percent_decode};
use respond::{Body, cached_file, cors, full, method_not_allowed, not_found, problem};

/// The publish token as last read, shared with whoever re-reads it (`livefeed serve` on SIGHUP).
pub type SharedToken = Arc<std::sync::RwLock<Option<String>>>;

/// Limits and settings of the server. Every limit is a flag of `livefeed serve`. Its `Debug`
/// form never shows the token.
#[derive(Clone)]
pub struct Config {
    /// The publish token; `None` turns publishing off (403).
    pub token: Option<String>,
    /// When set, the token is read from here on every publish instead of `token`.
    pub reloadable_token: Option<SharedToken>,
    /// Largest request body accepted (413 beyond).
    pub max_body: usize,
    /// Time a client has to send its request headers before the connection is closed.
    pub header_timeout: Duration,
    /// Open connections; beyond it a new connection gets a quick 503 and is closed.
    pub max_connections: usize,
    /// Waiting long-polls, and separately SSE streams; beyond it, 503.
    pub max_waiters: usize,
    /// Events an SSE subscriber that is not reading may fall behind before it is dropped.
    pub sse_queue: usize,
    /// The same bound in bytes of frames (see `live::sse`).
    pub sse_queue_bytes: usize,
    /// How long report files must stay unchanged before they are relayed (see `watch`).
    pub report_settle: Duration,
    pub heartbeat: Duration,
    pub sse_retry_ms: u64,
    /// `Cache-Control: max-age` of feeds and pages.
    pub max_age: u32,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("max_body", &self.max_body)
            .field("header_timeout", &self.header_timeout)
            .field("max_connections", &self.max_connections)
            .field("max_waiters", &self.max_waiters)
            .field("sse_queue", &self.sse_queue)
            .field("sse_queue_bytes", &self.sse_queue_bytes)
            .field("report_settle", &self.report_settle)
            .field("heartbeat", &self.heartbeat)
            .field("sse_retry_ms", &self.sse_retry_ms)
            .field("max_age", &self.max_age)
            .finish()
    }
}

impl Config {
    /// The publish token in force now (see `reloadable_token`).
    pub fn current_token(&self) -> Option<String> {
        match &self.reloadable_token {
            Some(cell) => cell.read().unwrap_or_else(|p| p.into_inner()).clone(),
            None => self.token.clone(),
        }
    }
}

impl Default for Config {
    fn default() -> Config {
        Config {
            token: None,
            reloadable_token: None,
            max_body: 1024 * 1024,
            header_timeout: Duration::from_secs(10),
            max_connections: 20_000,
            max_waiters: 20_000,
            sse_queue: 1024,
            sse_queue_bytes: 4 * 1024 * 1024,
            report_settle: Duration::from_millis(300),
            heartbeat: Duration::from_secs(15),
            sse_retry_ms: 2000,
            max_age: 60,
        }
    }
}

/// What every connection shares.
pub struct App {
    pub relay: Relay,
    pub config: Config,
    /// Flips to true when the server begins to shut down.
    pub shutdown: tokio_watch::Receiver<bool>,
}

fn read_route(app: &App, req: &Request<Incoming>, path: &str) -> Response<Body> {
    let method = req.method();
    if method == Method::OPTIONS {
        let mut res = Response::new(respond::empty());
        *res.status_mut() = StatusCode::NO_CONTENT;
        let h = res.headers_mut();
        cors(h);
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, HEAD, OPTIONS"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("If-None-Match, If-Modified-Since, Last-Event-ID"),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("86400"),
        );
        return res;
    }
    if method != Method::GET && method != Method::HEAD {
        return method_not_allowed("GET, HEAD, OPTIONS");
    }
    let res = match app.relay.hub.file(path) {
        Some(file) => cached_file(method, req.headers(), &file, app.config.max_age),
        None => not_found(&format!("nothing at {path}")),
    };
    metrics::get().record_feed_status(res.status().as_u16());
    res
}

/// A read route, once its file reflects every event readers can already see (files are
/// rendered off the publish path; see `relay::renderer`).
async fn read(app: &App, req: &Request<Incoming>, path: &str) -> Response<Body> {
    if req.method() == Method::GET || req.method() == Method::HEAD {
        app.relay.fresh(path).await;
    }
    read_route(app, req, path)
}

/// True for a path of a read route (`/`, `/feeds/…`, `/stories/{story}`, `/live…`): its
/// answers, errors included, carry the CORS headers. The publishing routes under
/// `/stories/{story}/entries` never do (SECURITY.md).
fn read_path(path: &str) -> bool {
    let mut segments = path.split('/').skip(1);
    match segments.next() {
        Some("") => path == "/",
        Some("feeds" | "live") => true,
        Some("stories") => segments
            .nth(1)
            .is_none_or(|s| percent_decode(&s.replace('+', "%2B")).is_none_or(|s| s != "entries")),
        _ => false,
    }
}

/// Why the request's `Host` is unusable (RFC 9112 §3.2: a server must answer 400 to an
/// HTTP/1.1 request without one, and to any request with more than one or an invalid one).
fn host_problem<B>(req: &Request<B>) -> Option<&'static str> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (None, _) if req.version() >= hyper::Version::HTTP_11 => {
            Some("an HTTP/1.1 request must have a Host header")
        }
        (None, _) => None,
        (Some(_), Some(_)) => Some("a request must have one Host header, not several"),
        // Empty is allowed (a target without an authority); otherwise `host[:port]`.
        (Some(v), None) if v.is_empty() => None,
        (Some(v), None) => {
            let valid = v
                .to_str()
                .ok()
                .and_then(|v| v.parse::<hyper::http::uri::Authority>().ok())
                .is_some_and(|a| !a.as_str().contains('@'));
            (!valid).then_some("the Host header is not a valid host[:port]")
        }
    }
}

/// Routes one request. Never panics; every failure is a response.
pub async fn handle(app: Arc<App>, req: Request<Incoming>) -> Response<Body> {
    let read = read_path(req.uri().path());
    let mut res = match host_problem(&req) {
        Some(why) => problem(
            StatusCode::BAD_REQUEST,
            why,
            serde_json::json!({ "header": "Host" }),
        ),
        None => route(app, req).await,
    };
    if read
        && !res
            .headers()
            .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN)
    {
        cors(res.headers_mut());
    }
    res
}

async fn route(app: Arc<App>, req: Request<Incoming>) -> Response<Body> {
    // The hot path: a feed by a plain file name, nothing to decode (same answer as below).
    if let Some(file) = req.uri().path().strip_prefix("/feeds/") {
        let plain = !file.is_empty()
            && file != "."
            && file != ".."
            && !file.contains(['/', '%', '+', '\\']);
        if plain {
            return read(&app, &req, req.uri().path()).await;
        }
    }
    // The other hot path: a long-poll on every story (same answer as below).
    if req.uri().path() == "/live" && req.method() == Method::GET {
        if let Ok(q) = LiveQuery::parse(req.uri().query().unwrap_or("")) {
            if q.story.is_none() {
                drop(req);
                return live::long_poll(app, q).await;
            }
        }
    }
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    // Split first, then decode each segment: an entry id is a `tag:` URI with a `/` in it, sent
    // percent-encoded (`%2F`) as one segment.
    let Some(decoded) = path
        .split('/')
        .skip(1)
        .map(|s| percent_decode(&s.replace('+', "%2B")))
        .collect::<Option<Vec<String>>>()
    else {
        return problem(
            StatusCode::BAD_REQUEST,
            "the path is not valid percent-encoded UTF-8",
            serde_json::Value::Null,
        );
    };
    let segments: Vec<&str> = decoded.iter().map(String::as_str).collect();
    if segments
        .iter()
        .any(|s| *s == ".." || *s == "." || s.contains('\\') || s.contains('\0'))
    {
        return not_found("no such path");
    }
    let method = req.method().clone();
    match segments.as_slice() {
        [""] => read(&app, &req, "/").await,
        ["feeds", file] => read(&app, &req, &format!("/feeds/{file}")).await,
        ["stories", slug] => read(&app, &req, &format!("/stories/{slug}")).await,
        ["stories", slug, "entries"] => match method {
            // Boxed, so that every connection's request future stays as small as the common
            // ones (a waiting long-poll holds one): publishing futures are several times larger.
            Method::POST => Box::pin(publish::create(Arc::clone(&app), slug, req)).await,
            _ => method_not_allowed("POST"),
        },
        ["stories", slug, "entries", id] => match method {
            Method::PUT => Box::pin(publish::edit(Arc::clone(&app), slug, id, req)).await,
            Method::DELETE => Box::pin(publish::delete(Arc::clone(&app), slug, id, req)).await,
            _ => method_not_allowed("PUT, DELETE"),
        },
        ["live"] | ["live", "events"] => {
            if method == Method::OPTIONS {
                return read_route(&app, &req, "");
            }
            if method != Method::GET {
                return method_not_allowed("GET, OPTIONS");
            }
            let q = match LiveQuery::parse(&query) {
                Ok(q) => q,
                Err(e) => {
                    let mut res = problem(
                        StatusCode::BAD_REQUEST,
                        &e.to_string(),
                        serde_json::json!({ "parameter": e.name }),
                    );
                    cors(res.headers_mut());
                    return res;
                }
            };
            if let Some(s) = &q.story {
                if app
                    .relay
                    .hub
                    .file(&crate::relay::cache::story_path(s))
                    .is_none()
                {
                    let mut res = not_found(&format!("no story {s:?}"));
                    cors(res.headers_mut());
                    return res;
                }
            }
            if segments.len() == 1 {
                // Let go of the request while waiting: its head pins hyper's read buffer, and a
                // waiting long-poll would otherwise hold a second one (about 8 KiB each).
                drop(req);
                return live::long_poll(Arc::clone(&app), q).await;
            }
            let last_id = match req
                .headers()
                .get("last-event-id")
                .map(|v| v.to_str().map(str::trim))
            {
                None => None,
                // All digits but beyond u64 is refused too, not read as "no cursor".
                Some(Ok(v))
                    if !v.is_empty()
                        && v.bytes().all(|b| b.is_ascii_digit())
                        && v.parse::<u64>().is_ok() =>
                {
                    v.parse().ok()
                }
                Some(Ok("")) => None,
                Some(_) => {
                    return problem(
                        StatusCode::BAD_REQUEST,
                        "Last-Event-ID must be a seq (a non-negative integer)",
                        serde_json::json!({ "parameter": "Last-Event-ID" }),
                    );
                }
            };
            live::sse(Arc::clone(&app), q, last_id)
        }
        ["healthz"] | ["metrics"] if method != Method::GET && method != Method::HEAD => {
            method_not_allowed("GET, HEAD")
        }
        ["healthz"] => {
            let (oldest, head) = app.relay.hub.bounds();
            let ok = !app.relay.hub.failed();
            let status = if ok {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            respond::json(
                status,
                &serde_json::json!({ "status": if ok { "ok" } else { "log-failed" }, "reason": app.relay.hub.failure(), "oldest": oldest, "head": head }),
            )
        }
        ["metrics"] => {
            let mut res = Response::new(full(metrics::get().render()));
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            res
        }
        _ => not_found(&format!("nothing at {path}")),
    }
}

const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/problem+json\r\nConnection: close\r\nRetry-After: 1\r\nContent-Length: 94\r\n\r\n{\"type\":\"about:blank\",\"title\":\"Service Unavailable\",\"status\":503,\"detail\":\"too many connections\"}";

/// Descriptors kept out of the connection cap: the log, the listener, the runtime's own, the
/// report watcher, and connections being refused with a 503 (each holds one for a moment).
pub const FD_RESERVE: u64 = 64;

/// Raises the soft limit on open descriptors to the hard limit, and returns how many
/// connections the descriptors then allow (`usize::MAX` when there is no limit). Without
/// this, connections beyond the descriptor limit fail to be accepted (EMFILE) and wait
/// unanswered instead of getting the 503 the cap promises.
#[cfg(unix)]
pub fn raise_descriptor_limit() -> usize {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => limit = getrlimit(Resource::Nofile),
            // Some systems refuse an unlimited soft limit (macOS caps it): keep what we have.
            Err(e) => tracing::debug!(error = %e, "cannot raise the descriptor limit"),
        }
    }
    match limit.current {
        None => usize::MAX,
        Some(n) => {
            let reserve = FD_RESERVE.min(n / 2);
            usize::try_from(n - reserve).unwrap_or(usize::MAX).max(1)
        }
    }
}

#[cfg(not(unix))]
pub fn raise_descriptor_limit() -> usize {
    usize::MAX
}

/// Runs the server with the report watcher on `data`, until `stop` resolves. The connection
/// cap is lowered, with a warning, to what the process's descriptor limit allows.
pub async fn run(
    listener: TcpListener,
    relay: Relay,
    mut config: Config,
    data: std::path::PathBuf,
    base_url: Option<String>,
    stop: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let allowed = raise_descriptor_limit();
    if config.max_connections > allowed {
        tracing::warn!(
            requested = config.max_connections,
            allowed,
            reserve = FD_RESERVE,
            "--max-connections lowered to what the open-file limit (ulimit -n) allows"
        );
        config.max_connections = allowed;
    }
    serve(
        listener,
        relay,
        config,
        Some((data, base_url)),
        stop,
        Duration::from_secs(10),
    )
    .await
}

/// Serves until `stop` resolves, then shuts down gracefully: no new connections, waiting
/// long-polls answered, in-flight requests finished (for at most `grace`), the writer drained.
pub async fn serve(
    listener: TcpListener,
    app_relay: Relay,
    config: Config,
    watch_data: Option<(std::path::PathBuf, Option<String>)>,
    stop: impl std::future::Future<Output = ()>,
    grace: Duration,
) -> std::io::Result<()> {
    let (shutdown_tx, shutdown_rx) = tokio_watch::channel(false);
    let slots = Arc::new(Semaphore::new(config.max_connections));
    let app = Arc::new(App {
        relay: app_relay,
        config,
        shutdown: shutdown_rx,
    });
    // The watcher lives as long as this function; dropping it stops the file events.
    let _watcher = match watch_data {
        Some((data, base)) => match watch::spawn(Arc::clone(&app), data.clone(), base) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(error = %e, dir = %data.display(), "cannot watch the data directory; report changes will not be relayed");
                None
            }
        },
        None => None,
    };
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(app.config.header_timeout)
        .max_buf_size(64 * 1024)
        // A hard cap: without it a head that arrives in one read may exceed the buffer size.
        .max_header_size(64 * 1024)
        .keep_alive(true);
    tokio::pin!(stop);
    loop {
        let (stream, peer): (tokio::net::TcpStream, SocketAddr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut stop => break,
        };
        let _ = stream.set_nodelay(true);
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            metrics::get()
                .connections_refused
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tokio::spawn(async move {
                let mut stream = stream;
                let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(BUSY)).await;
                let _ = stream.shutdown().await;
            });
            continue;
        };
        let app = Arc::clone(&app);
        let service = service_fn(move |req| {
            let app = Arc::clone(&app);
            async move { Ok::<_, Infallible>(handle(app, req).await) }
        });
        let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            let _open = metrics::GaugeGuard::new(&metrics::get().connections_open);
            // `closable`: an SSE stream whose client stopped reading can close its connection.
            if let Some(Err(e)) = live::closable(conn).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    tracing::info!("shutting down: answering waiting requests");
    let _ = shutdown_tx.send(true);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some connections did not finish within {grace:?}");
    }
    let app_for_close = Arc::clone(&app);
    let _ = tokio::task::spawn_blocking(move || app_for_close.relay.close()).await;
    tracing::info!(head = app.relay.hub.head(), "stopped; event log flushed");
    Ok(())
}
