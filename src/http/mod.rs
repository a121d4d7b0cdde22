//! `livefeed serve`: the hyper/tokio server. An accept loop with a connection cap, one hyper
//! connection per socket with a header read timeout, a router over pre-rendered files and the
//! live transports, and a graceful shutdown that answers waiting long-polls first.

pub mod access;
pub mod live;
pub mod publish;
pub mod query;
pub mod respond;
pub mod route;
pub mod watch;
pub mod websub;

use futures_util::future::Either;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch as tokio_watch};

use crate::layout::FileKey;
use crate::log::Relay;
use crate::metrics;
use query::LiveQuery;
use respond::{Body, cached_file, cors, full, method_not_allowed, not_found, problem};
use route::{Route, Side};

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
    /// Origins (`scheme://host[:port]`) whose pages may publish: their preflights pass and
    /// their publish answers carry `Access-Control-Allow-Origin` (`--cors-publish-origin`).
    pub cors_publish_origins: Vec<String>,
    /// The WebSub hub at `/websub` (`None`: off; see [`websub`]).
    pub websub: Option<websub::Settings>,
    /// Threads serving connections, each with its own current-thread runtime; 0 (the default)
    /// serves them on the runtime that calls [`serve`]. Workers save about 10 % of the CPU of
    /// a plain feed GET (no work stealing or cross-thread wake-ups), but tests/memory.rs reads
    /// 11 KiB of anonymous memory per waiting long-poll or SSE stream with 2 workers against
    /// 7.1-7.7 without, hence off by default.
    pub workers: usize,
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
            .field("cors_publish_origins", &self.cors_publish_origins)
            .field("websub", &self.websub)
            .field("workers", &self.workers)
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
            cors_publish_origins: Vec::new(),
            websub: None,
            workers: 0,
        }
    }
}

/// What every connection shares.
pub struct App {
    pub relay: Relay,
    pub config: Config,
    /// Flips to true when the server begins to shut down.
    pub shutdown: tokio_watch::Receiver<bool>,
    /// The `--max-waiters` caps of this server: waiting long-polls, and SSE streams.
    pub longpoll_slots: Arc<Semaphore>,
    pub sse_slots: Arc<Semaphore>,
    /// Wakes, heartbeats and closes this server's SSE streams (one task for all of them).
    pub sse_sweeper: live::Sweeper,
    pub health: Health,
    /// The WebSub hub, when on.
    pub websub: Option<Arc<websub::WebSub>>,
}

/// What `/healthz` and `/readyz` report beyond the log's own failure (`Hub::failure`).
#[derive(Default)]
pub struct Health {
    /// True once the server accepts connections (its data directory watched), until shutdown
    /// begins.
    ready: AtomicBool,
    /// Why the data directory could not be read at its last change (the last good state is
    /// served meanwhile).
    report_failure: Mutex<Option<String>>,
}

impl Health {
    pub fn report_failed(&self, why: String) {
        *self
            .report_failure
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(why);
        metrics::get().report_files_failing.set(1);
    }

    pub fn report_ok(&self) {
        *self
            .report_failure
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = None;
        metrics::get().report_files_failing.set(0);
    }

    fn report_failure(&self) -> Option<String> {
        self.report_failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// What a publish answered, for the access log: set on the response by `publish`, the story
/// filled in by the router.
#[derive(Clone, Debug, Default)]
pub struct Published {
    pub story: String,
    pub id: String,
    pub seq: u64,
}

/// `OPTIONS` on a read route: any origin may read.
fn read_preflight() -> Response<Body> {
    let mut res = Response::new(respond::empty());
    *res.status_mut() = StatusCode::NO_CONTENT;
    let h = res.headers_mut();
    cors(h);
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(route::READ_METHODS),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("If-None-Match, If-Modified-Since, Last-Event-ID"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("86400"),
    );
    res
}

/// `GET`/`HEAD` of a rendered file, once it reflects every event readers can already see
/// (files are rendered off the publish path; see `log::renderer`).
async fn file(app: &App, req: &Request<Incoming>, key: &FileKey) -> Response<Body> {
    app.relay.fresh(key).await;
    file_now(app, req, key).unwrap_or_else(|| not_found(&format!("nothing at {}", key.path())))
}

/// The answer for a rendered file as it is now; `None` when there is no such file.
fn file_now<B>(app: &App, req: &Request<B>, key: &FileKey) -> Option<Response<Body>> {
    let file = app.relay.hub.file(key)?;
    // RFC 5005 archive documents change rarely (see `render::paged`): cached long.
    let max_age = match key {
        FileKey::Archive(..) => respond::ARCHIVE_MAX_AGE,
        _ => app.config.max_age,
    };
    // A current feed names its hub and itself (WebSub §4), in the headers kept with the file.
    let link = || app.websub.as_ref()?.link_header(&key.path());
    let linked = app.websub.is_some() && matches!(key, FileKey::Feed(..));
    Some(cached_file(
        req.method(),
        req.headers(),
        &file,
        max_age,
        linked.then_some(&link as &dyn Fn() -> Option<HeaderValue>),
    ))
}

/// The base URL of a server with no `--base-url`: `http://` and the address it is bound to, so
/// that every link it renders resolves on it. An unspecified address (`0.0.0.0`, `::`) is not
/// one a client can use: the loopback address of its family stands in (set `--base-url` to the
/// public address instead).
pub fn local_base_url(addr: SocketAddr) -> String {
    let mut addr = addr;
    if addr.ip().is_unspecified() {
        let loopback: std::net::IpAddr = match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        };
        tracing::warn!(%addr, "listening on every address with no --base-url: links use {loopback}");
        addr.set_ip(loopback);
    }
    format!("http://{addr}")
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

/// The route of a request (see [`route::route`]).
fn route_of<B>(req: &Request<B>) -> Result<Route, route::Problem> {
    let preflight = (req.method() == Method::OPTIONS)
        .then(|| req.headers().get(header::ACCESS_CONTROL_REQUEST_METHOD))
        .flatten()
        .and_then(|m| m.to_str().ok());
    route::route(req.method(), req.uri().path(), req.uri().query(), preflight)
}

/// Answers one request. Never panics; every failure is a response.
pub async fn handle(app: Arc<App>, req: Request<Incoming>) -> Response<Body> {
    let routed = route_of(&req);
    answer(app, req, routed).await
}

/// Answers a routed request, with the CORS headers of its side.
async fn answer(
    app: Arc<App>,
    req: Request<Incoming>,
    routed: Result<Route, route::Problem>,
) -> Response<Body> {
    let side = routed.as_ref().map_or_else(|p| p.side, Route::side);
    // A page on an origin named by `--cors-publish-origin` may publish: its answers name it.
    let publishing = side == Side::Publish;
    let publisher = publishing
        .then(|| publish_origin(&app.config, req.headers()))
        .flatten();
    // With origins named, a publish answer depends on `Origin` (for caches).
    let vary = publishing && !app.config.cors_publish_origins.is_empty();
    let mut res = match (host_problem(&req), routed) {
        (Some(why), _) => problem(
            StatusCode::BAD_REQUEST,
            why,
            serde_json::json!({ "header": "Host" }),
        ),
        (None, Err(refused)) => refusal(refused),
        (None, Ok(route)) => dispatch(app, req, route).await,
    };
    if side == Side::Read
        && !res
            .headers()
            .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN)
    {
        cors(res.headers_mut());
    }
    if vary {
        res.headers_mut()
            .append(header::VARY, HeaderValue::from_static("Origin"));
    }
    if let Some(origin) = publisher {
        let h = res.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("Idempotent-Replayed, Retry-After"),
        );
    }
    res
}

/// The answer to a request the router refused.
fn refusal(p: route::Problem) -> Response<Body> {
    match p.allow {
        Some(allow) => method_not_allowed(allow),
        None => problem(p.status, &p.detail, p.extra),
    }
}

/// Carries out a route.
async fn dispatch(app: Arc<App>, req: Request<Incoming>, route: Route) -> Response<Body> {
    match route {
        Route::File(key) => file(&app, &req, &key).await,
        Route::ReadPreflight(_) => read_preflight(),
        Route::PublishPreflight(slug) => with_story(&slug, publish_preflight(&app, &req)),
        // Boxed, so that every connection's request future stays as small as the common ones
        // (a waiting long-poll holds one): publishing futures are several times larger.
        Route::Publish(slug) => {
            let res = Box::pin(publish::create(Arc::clone(&app), &slug, req)).await;
            with_story(&slug, res)
        }
        Route::Edit(slug, id) => {
            let res = Box::pin(publish::edit(Arc::clone(&app), &slug, &id, req)).await;
            with_story(&slug, res)
        }
        Route::Delete(slug, id) => {
            let res = Box::pin(publish::delete(Arc::clone(&app), &slug, &id, req)).await;
            with_story(&slug, res)
        }
        Route::Lifecycle(slug) => {
            let res = Box::pin(publish::lifecycle(Arc::clone(&app), &slug, req)).await;
            with_story(&slug, res)
        }
        Route::LongPoll(q) => {
            if let Some(res) = unknown_story(&app, &q) {
                return res;
            }
            // Let go of the request while waiting: its head pins hyper's read buffer, and a
            // waiting long-poll would otherwise hold a second one (about 8 KiB each).
            drop(req);
            live::long_poll(app, q).await
        }
        Route::Events(q) => {
            if let Some(res) = unknown_story(&app, &q) {
                return res;
            }
            match last_event_id(&req) {
                Ok(last_id) => live::sse(app, q, last_id),
                Err(res) => res,
            }
        }
        Route::WebSub => match &app.websub {
            Some(hub) => Box::pin(Arc::clone(hub).handle(req)).await,
            None => not_found("the WebSub hub is off (--websub off)"),
        },
        Route::Healthz => healthz(&app),
        Route::Readyz => readyz(&app),
        Route::Metrics => metrics_page(&app, &req),
    }
}

/// 404 for a live route's `story=` that names no story served here.
fn unknown_story(app: &App, q: &LiveQuery) -> Option<Response<Body>> {
    let s = q.story.as_ref()?;
    app.relay
        .hub
        .file(&FileKey::Page(s.clone()))
        .is_none()
        .then(|| not_found(&format!("no story {s:?}")))
}

/// The `Last-Event-ID` an SSE client resumes from: a seq, or none.
#[allow(clippy::result_large_err)]
fn last_event_id<B>(req: &Request<B>) -> Result<Option<live::LastEventId>, Response<Body>> {
    match req
        .headers()
        .get("last-event-id")
        .map(|v| v.to_str().map(str::trim))
    {
        None | Some(Ok("")) => Ok(None),
        // All digits but beyond u64 is refused too, not read as "no cursor".
        Some(Ok(v)) if v.parse::<live::LastEventId>().is_ok() => Ok(v.parse().ok()),
        Some(_) => Err(problem(
            StatusCode::BAD_REQUEST,
            "Last-Event-ID must be EPOCH:SEQ as sent, or a seq (a non-negative integer)",
            serde_json::json!({ "parameter": "Last-Event-ID" }),
        )),
    }
}

/// `/healthz`: 200 while the server can serve reads; what is wrong otherwise is in the body.
fn healthz(app: &App) -> Response<Body> {
    let (oldest, head) = app.relay.hub.bounds();
    let reasons = health_reasons(app);
    let status = if reasons.is_empty() { "ok" } else { "degraded" };
    respond::json(
        StatusCode::OK,
        &serde_json::json!({ "status": status, "reasons": reasons, "oldest": oldest, "head": head, "epoch": app.relay.hub.epoch().to_string() }),
    )
}

/// `/readyz`, for load balancers: 503 while starting, stopping, or unable to take publishes.
fn readyz(app: &App) -> Response<Body> {
    let mut reasons = Vec::new();
    if !app.health.ready.load(Ordering::SeqCst) {
        reasons.push("not serving: starting up or shutting down".to_string());
    }
    if let Some(why) = app.relay.hub.failure() {
        reasons.push(format!("the event log cannot take publishes: {why}"));
    }
    if let Some((why, _)) = app.relay.hub.outage() {
        reasons.push(format!("the event log is unavailable: {why}"));
    }
    if let Some(why) = app.relay.hub.follow_error() {
        reasons.push(format!("the event log cannot be followed: {why}"));
    }
    let (status, word) = if reasons.is_empty() {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "unready")
    };
    respond::json(
        status,
        &serde_json::json!({ "status": word, "reasons": reasons }),
    )
}

/// `/metrics`: OpenMetrics for a scraper that asks for it (Prometheus does), else the text
/// format.
fn metrics_page<B>(app: &App, req: &Request<B>) -> Response<Body> {
    let (oldest, head) = app.relay.hub.bounds();
    let openmetrics = req
        .headers()
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    let body = metrics::get().render(oldest, head, openmetrics);
    let mut res = Response::new(full(body));
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(if openmetrics {
            metrics::OPENMETRICS
        } else {
            metrics::TEXT
        }),
    );
    res
}

/// The request's `Origin` when `--cors-publish-origin` names it (compared exactly, as browsers
/// send it: `scheme://host[:port]`, no path).
fn publish_origin(config: &Config, headers: &hyper::HeaderMap) -> Option<HeaderValue> {
    let origin = headers.get(header::ORIGIN)?;
    let text = origin.to_str().ok()?;
    config
        .cors_publish_origins
        .iter()
        .any(|o| o == text)
        .then(|| origin.clone())
}

/// `OPTIONS` on a publish route: the CORS preflight. An origin named by
/// `--cors-publish-origin` gets 204 with the methods and headers the API uses (`handle` adds
/// the origin); any other gets 403 and no CORS headers, so its browser never sends the write.
fn publish_preflight(app: &App, req: &Request<Incoming>) -> Response<Body> {
    if publish_origin(&app.config, req.headers()).is_none() {
        return problem(
            StatusCode::FORBIDDEN,
            "this origin may not publish (see --cors-publish-origin)",
            serde_json::Value::Null,
        );
    }
    let mut res = Response::new(respond::empty());
    *res.status_mut() = StatusCode::NO_CONTENT;
    let h = res.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST, PUT, DELETE"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Authorization, Content-Type, Idempotency-Key"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    res
}

/// [`handle`], counted in the metrics and written to the access log (target
/// `livefeed::access`) once the body is sent or abandoned. The line has the method, the path
/// (never the query, headers or body: no token can reach it), status, body bytes sent,
/// duration, client address, and for a publish the story, id and seq.
pub async fn handle_logged(
    app: Arc<App>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Response<Body> {
    let routed = route_of(&req);
    handle_routed(app, peer, req, routed).await
}

/// [`handle_logged`] of a request already routed.
async fn handle_routed(
    app: Arc<App>,
    peer: SocketAddr,
    req: Request<Incoming>,
    routed: Result<Route, route::Problem>,
) -> Response<Body> {
    let logging = Logging::begin(&req, &routed, peer);
    logging.finish(answer(app, req, routed).await)
}

/// A request [`handle_now`] handed back, with its route.
pub struct Later(Request<Incoming>, Result<Route, route::Problem>);

impl Later {
    /// Answers it as [`handle_logged`] does.
    pub async fn answer(self, app: Arc<App>, peer: SocketAddr) -> Response<Body> {
        handle_routed(app, peer, self.0, self.1).await
    }
}

/// [`handle_logged`] for a request answered without waiting: a `GET`/`HEAD` of a file that is
/// already fresh. Made synchronously, when hyper hands the request over, so the request is
/// dropped before hyper reads on: its head no longer pins hyper's read buffer, which hyper
/// then reuses instead of allocating a new one for every request. Any other request is
/// handed back.
#[allow(clippy::result_large_err)]
pub fn handle_now(
    app: &App,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Body>, Later> {
    let routed = route_of(&req);
    let now = match &routed {
        Ok(Route::File(key))
            if host_problem(&req).is_none() && app.relay.hub.stale(key).is_none() =>
        {
            Logging::begin(&req, &routed, peer).pair(file_now(app, &req, key))
        }
        _ => None,
    };
    let Some((logging, mut res)) = now else {
        return Err(Later(req, routed));
    };
    drop(req);
    // What `answer` adds to every read answer.
    if !res
        .headers()
        .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN)
    {
        cors(res.headers_mut());
    }
    Ok(logging.finish(res))
}

/// What the metrics and the access log need of a request, taken before it is answered.
struct Logging {
    start: Instant,
    method: Method,
    route: &'static str,
    peer: SocketAddr,
    /// Only when the access log is on (`RUST_LOG`, `--access-log`): the path is copied and the
    /// body wrapped for it, which a busy feed does not need to pay for otherwise.
    path: Option<String>,
}

impl Logging {
    fn begin<B>(
        req: &Request<B>,
        routed: &Result<Route, route::Problem>,
        peer: SocketAddr,
    ) -> Logging {
        Logging {
            start: Instant::now(),
            method: req.method().clone(),
            route: routed.as_ref().map_or_else(|p| p.label, |r| r.label()),
            peer,
            path: tracing::enabled!(target: access::TARGET, tracing::Level::INFO)
                .then(|| req.uri().path().to_string()),
        }
    }

    fn pair(self, res: Option<Response<Body>>) -> Option<(Logging, Response<Body>)> {
        Some((self, res?))
    }

    /// Counts the answer and, with the access log on, wraps its body to log it once sent.
    fn finish(self, mut res: Response<Body>) -> Response<Body> {
        let Logging {
            start,
            method,
            route,
            peer,
            path,
        } = self;
        let status = res.status().as_u16();
        let m = metrics::get();
        count_request(route, status);
        let took = start.elapsed().as_secs_f64();
        match route {
            "index" | "feed" | "story" if method == Method::GET || method == Method::HEAD => {
                m.feed_seconds.observe(took)
            }
            "publish" if method != Method::OPTIONS => m.publish_seconds.observe(took),
            _ => {}
        }
        let published = res.extensions_mut().remove::<Published>();
        let Some(path) = path else {
            return res;
        };
        let body = std::mem::replace(res.body_mut(), respond::empty());
        *res.body_mut() = http_body_util::BodyExt::boxed(access::Logged::new(
            body,
            access::Line {
                method,
                path,
                status,
                peer,
                start,
                published,
            },
        ));
        res
    }
}

/// Counts a request in `http_requests{route, status}`. `Family::get_or_create` takes a lock
/// every thread shares and hashes the labels; instead each thread keeps the counters it has
/// used (a `Counter` handle shares its value with the family's), found by a short scan.
fn count_request(route: &'static str, status: u16) {
    use prometheus_client::metrics::counter::Counter;
    type Kept = Vec<(&'static str, u16, Counter)>;
    thread_local! {
        static KEPT: std::cell::RefCell<Kept> = const { std::cell::RefCell::new(Vec::new()) };
    }
    KEPT.with_borrow_mut(|kept| {
        if let Some((_, _, counter)) = kept.iter().find(|(r, s, _)| *s == status && *r == route) {
            counter.inc();
            return;
        }
        let counter = metrics::get()
            .requests
            .get_or_create(&metrics::RequestLabels { route, status })
            .clone();
        counter.inc();
        // Routes and statuses are few; the bound only keeps a scan short.
        if kept.len() < 64 {
            kept.push((route, status, counter));
        }
    });
}

/// Sets the story of a publish's answer (see [`Published`]).
fn with_story(story: &str, mut res: Response<Body>) -> Response<Body> {
    if let Some(p) = res.extensions_mut().get_mut::<Published>() {
        p.story = story.to_string();
    }
    res
}

/// What `/healthz` reports as wrong; empty when all is well.
fn health_reasons(app: &App) -> Vec<String> {
    let mut reasons = Vec::new();
    if let Some(why) = app.relay.hub.failure() {
        reasons.push(format!("event log not writable: {why}"));
    }
    if let Some((why, _)) = app.relay.hub.outage() {
        reasons.push(format!("event log unavailable: {why}"));
    }
    if let Some(why) = app.relay.hub.follow_error() {
        reasons.push(format!("event log not followed: {why}"));
    }
    if let Some(why) = app.health.report_failure() {
        reasons.push(format!("a report failed to load: {why}"));
    }
    reasons.extend(app.relay.hub.warnings());
    reasons
}

/// The answer to a connection over the cap, written straight to the socket (no hyper
/// connection is made for it); its `Content-Length` is counted, not typed.
static BUSY: std::sync::LazyLock<Vec<u8>> = std::sync::LazyLock::new(|| {
    let body = r#"{"type":"about:blank","title":"Service Unavailable","status":503,"detail":"too many connections"}"#;
    format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/problem+json\r\n\
         Connection: close\r\nRetry-After: 1\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
});

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
    let websub = match config.websub.clone() {
        Some(settings) => Some(
            websub::WebSub::start(settings, Arc::clone(&app_relay.hub))
                .map_err(std::io::Error::other)?,
        ),
        None => None,
    };
    let slots = Arc::new(Semaphore::new(config.max_connections));
    let app = Arc::new(App {
        relay: app_relay,
        longpoll_slots: Arc::new(Semaphore::new(config.max_waiters)),
        sse_slots: Arc::new(Semaphore::new(config.max_waiters)),
        sse_sweeper: live::Sweeper::default(),
        config,
        shutdown: shutdown_rx,
        health: Health::default(),
        websub,
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
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(app.config.header_timeout)
        .max_buf_size(64 * 1024)
        // A hard cap: without it a head that arrives in one read may exceed the buffer size.
        .max_header_size(64 * 1024)
        .keep_alive(true);
    // Connections are served by `workers` threads, each with a current-thread runtime: a
    // connection stays on one thread for its whole life, so a request costs no cross-thread
    // wake-up or work stealing. This loop only accepts and hands each socket on, in turn.
    let workers = match app.config.workers {
        0 => Vec::new(),
        n => (0..n)
            .map(|i| Worker::start(i, Arc::clone(&app), http.clone(), grace))
            .collect::<std::io::Result<Vec<_>>>()?,
    };
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(stop);
    app.health.ready.store(true, Ordering::SeqCst);
    let mut next = 0usize;
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
            metrics::get().connections_refused.inc();
            tokio::spawn(async move {
                let mut stream = stream;
                let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(&BUSY)).await;
                let _ = stream.shutdown().await;
            });
            continue;
        };
        if workers.is_empty() {
            connection(&app, &http, &graceful, stream, peer, permit);
            continue;
        }
        // Off this runtime's poller, onto the worker's (a socket is registered with one).
        let stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "cannot hand the connection on");
                continue;
            }
        };
        next = (next + 1) % workers.len();
        workers[next].hand(stream, peer, permit);
    }
    app.health.ready.store(false, Ordering::SeqCst);
    tracing::info!("shutting down: answering waiting requests");
    let _ = shutdown_tx.send(true);
    let finishing: Vec<_> = workers.into_iter().map(Worker::finish).collect();
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some connections did not finish within {grace:?}");
    }
    for done in finishing {
        let _ = done.await;
    }
    let app_for_close = Arc::clone(&app);
    let _ = tokio::task::spawn_blocking(move || app_for_close.relay.close()).await;
    tracing::info!(head = app.relay.hub.head(), "stopped; event log flushed");
    Ok(())
}

/// One accepted connection, served with `http` on the current runtime until it ends.
fn connection(
    app: &Arc<App>,
    http: &http1::Builder,
    graceful: &hyper_util::server::graceful::GracefulShutdown,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let app = Arc::clone(app);
    let service = service_fn(move |req| {
        // Answered here when it can be (see `handle_now`), else in a boxed future: hyper keeps
        // a connection's service future for as long as the connection, so unboxed, every idle
        // keep-alive connection and every SSE stream would hold the largest handler's state
        // (about 2.8 KB) after its answer went out. The answer at hand needs no box.
        match handle_now(&app, peer, req) {
            Ok(res) => Either::Left(std::future::ready(Ok::<_, Infallible>(res))),
            Err(later) => {
                let app = Arc::clone(&app);
                Either::Right(Box::pin(async move {
                    Ok::<_, Infallible>(later.answer(app, peer).await)
                }))
            }
        }
    });
    let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
    // `closable`: an SSE stream whose client stopped reading can close its connection.
    let open = metrics::GaugeGuard::new(&metrics::get().connections_open);
    tokio::spawn(live::closable(conn, peer, (permit, open)));
}

type Handed = (
    std::net::TcpStream,
    SocketAddr,
    tokio::sync::OwnedSemaphorePermit,
);

/// A thread serving connections on its own current-thread runtime (see [`serve`]). State is
/// shared through `App` (tokio's sync types wake tasks on any runtime), so long-polls, SSE
/// and publishes on different workers see each other.
struct Worker {
    tx: tokio::sync::mpsc::UnboundedSender<Handed>,
    done: tokio::sync::oneshot::Receiver<()>,
}

impl Worker {
    fn start(
        index: usize,
        app: Arc<App>,
        http: http1::Builder,
        grace: Duration,
    ) -> std::io::Result<Worker> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Handed>();
        let (done_tx, done) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name(format!("livefeed-http-{index}"))
            .spawn(move || {
                runtime.block_on(async move {
                    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
                    // Ends when `serve` stops accepting (it drops the sender).
                    while let Some((stream, peer, permit)) = rx.recv().await {
                        match tokio::net::TcpStream::from_std(stream) {
                            Ok(stream) => connection(&app, &http, &graceful, stream, peer, permit),
                            Err(e) => {
                                tracing::debug!(%peer, error = %e, "cannot serve the connection")
                            }
                        }
                    }
                    if tokio::time::timeout(grace, graceful.shutdown())
                        .await
                        .is_err()
                    {
                        tracing::warn!("some connections did not finish within {grace:?}");
                    }
                });
                let _ = done_tx.send(());
            })?;
        Ok(Worker { tx, done })
    }

    fn hand(
        &self,
        stream: std::net::TcpStream,
        peer: SocketAddr,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) {
        if self.tx.send((stream, peer, permit)).is_err() {
            tracing::warn!(%peer, "a connection worker has stopped; connection dropped");
        }
    }

    /// Stops handing it connections; resolves once its connections have finished (or the
    /// grace period ran out).
    fn finish(self) -> tokio::sync::oneshot::Receiver<()> {
        drop(self.tx);
        self.done
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_busy_answer_declares_its_own_length() {
        let text = String::from_utf8(super::BUSY.clone()).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let declared: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(declared, body.len());
        serde_json::from_str::<serde_json::Value>(body).unwrap();
    }
}
