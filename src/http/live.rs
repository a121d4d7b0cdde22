//! The live transports: long-poll (`GET /live`) and Server-Sent Events (`GET /live/events`).
//! Both read committed events from the hub's memory and wait on its head `watch`, which the
//! append itself moves: no polling, no per-waiter timer beyond the request's own timeout.

use bytes::{BufMut, Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::{Body as HttpBody, Frame};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Response, StatusCode};
use serde_json::json;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::fmt::Write;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::watch;

use super::App;
use super::query::{DEFAULT_LIMIT, DEFAULT_TIMEOUT, LiveQuery};
use super::respond::{Body, cors, full, problem};
use crate::log::hub::{Committed, CursorGone, Page};
use crate::log::store::Epoch;
use crate::metrics::{self, GaugeGuard};

fn gone(g: CursorGone) -> Response<Body> {
    let mut res = problem(
        StatusCode::GONE,
        &format!(
            "this cursor cannot be served: the log holds seq {} to {}; start again from after={}",
            g.oldest,
            g.head,
            g.oldest.saturating_sub(1)
        ),
        json!({ "oldest": g.oldest, "head": g.head, "epoch": g.epoch.to_string() }),
    );
    cors(res.headers_mut());
    res
}

fn page_response(page: &Page, epoch: Epoch) -> Response<Body> {
    if !page.events.is_empty() {
        metrics::get()
            .delivered_longpoll
            .inc_by(page.events.len() as u64);
    }
    let size: usize = page.events.iter().map(|e| e.json.len() + 1).sum::<usize>() + 64;
    let mut body = BytesMut::with_capacity(size);
    body.put_slice(b"{\"events\":[");
    for (i, e) in page.events.iter().enumerate() {
        if i > 0 {
            body.put_u8(b',');
        }
        body.put_slice(&e.json);
    }
    let _ = write!(
        body,
        "],\"next\":{},\"head\":{},\"epoch\":\"{epoch}\"}}",
        page.next, page.head
    );
    let mut res = Response::new(full(body.freeze()));
    // The same headers on every page: made once, copied out (a fan-out answers thousands).
    static HEADERS: std::sync::LazyLock<HeaderMap> = std::sync::LazyLock::new(|| {
        let mut h = HeaderMap::with_capacity(8);
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        cors(&mut h);
        h
    });
    *res.headers_mut() = HEADERS.clone();
    res
}

fn too_many() -> Response<Body> {
    problem(
        StatusCode::SERVICE_UNAVAILABLE,
        "too many waiting subscribers; retry shortly",
        serde_json::Value::Null,
    )
}

/// `GET /live?after=SEQ&story=SLUG&limit=N&timeout=SECS`.
pub async fn long_poll(app: Arc<App>, q: LiveQuery) -> Response<Body> {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    let timeout = Duration::from_secs(q.timeout.unwrap_or(DEFAULT_TIMEOUT));
    let story = q.story.as_deref();
    let mut cursor = q.after.unwrap_or(0);
    // Subscribe before the first read, so an append between the read and the wait still wakes us.
    let mut head = app.relay.hub.subscribe();
    let mut shutdown = app.shutdown.clone();
    let hub = || Arc::clone(&app.relay.hub);
    // A cursor of another history names nothing in this one.
    let epoch = app.relay.hub.epoch();
    if q.epoch.is_some_and(|e| e != epoch) {
        return gone(app.relay.hub.gone());
    }
    let first = match hub()
        .page_any(cursor, story.map(str::to_string), limit)
        .await
    {
        Ok(page) => page,
        Err(g) => return gone(g),
    };
    if !first.events.is_empty() || timeout.is_zero() || *shutdown.borrow() {
        return page_response(&first, epoch);
    }
    cursor = first.next;
    // The cap is this server's own semaphore, not the process-wide gauge.
    let Ok(_slot) = app.longpoll_slots.try_acquire() else {
        return too_many();
    };
    let _waiting = GaugeGuard::new(&metrics::get().longpoll_waiting);
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            changed = head.changed() => {
                if changed.is_err() {
                    break;
                }
                if app.relay.hub.epoch() != epoch {
                    // The history was replaced while we waited.
                    return gone(app.relay.hub.gone());
                }
                match hub().page_any(cursor, story.map(str::to_string), limit).await {
                    Ok(page) if !page.events.is_empty() => {
                        metrics::get().record_wake();
                        return page_response(&page, epoch);
                    }
                    Ok(page) => cursor = page.next,
                    Err(g) => return gone(g),
                }
            }
            _ = &mut deadline => break,
            _ = shutdown.changed() => break,
        }
    }
    let head = app.relay.hub.head();
    page_response(
        &Page {
            events: Vec::new(),
            next: cursor,
            head,
        },
        epoch,
    )
}

/// The connection an SSE stream is served on, so that the stream can close it when its client
/// stops reading: hyper stops polling a body whose socket is full, so the body alone could not.
#[derive(Clone, Default)]
pub struct Closer(Arc<tokio::sync::Notify>);

impl Closer {
    fn close(&self) {
        // A stored permit: the connection closes even if it is not waiting yet.
        self.0.notify_one();
    }
}

tokio::task_local! {
    static CONNECTION: Closer;
}

/// Runs one connection so that an SSE stream served on it can close it (see [`Closer`]).
/// `None` when it was closed that way.
pub async fn closable<F: Future>(conn: F) -> Option<F::Output> {
    let closer = Closer::default();
    let notify = Arc::clone(&closer.0);
    CONNECTION
        .scope(closer, async move {
            tokio::select! {
                out = conn => Some(out),
                _ = notify.notified() => None,
            }
        })
        .await
}

/// What one SSE subscriber holds, shared by its body and its watchdog.
#[derive(Default)]
struct Subscriber {
    /// Bytes of frames handed to the connection and not yet written to the socket.
    held: AtomicU64,
    /// Moves each time the connection takes a frame or finishes writing one.
    progress: AtomicU64,
}

/// A frame handed to hyper: the hub's shared bytes (no copy), counted as held until hyper has
/// written it to the socket and drops it.
struct Held {
    frame: Bytes,
    sub: Arc<Subscriber>,
}

impl Held {
    fn wrap(frame: Bytes, sub: &Arc<Subscriber>) -> Bytes {
        let n = frame.len() as u64;
        sub.held.fetch_add(n, Ordering::Relaxed);
        sub.progress.fetch_add(1, Ordering::Relaxed);
        metrics::get().sse_held_bytes.inc_by(n as i64);
        Bytes::from_owner(Held {
            frame,
            sub: Arc::clone(sub),
        })
    }
}

impl AsRef<[u8]> for Held {
    fn as_ref(&self) -> &[u8] {
        &self.frame
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let n = self.frame.len() as u64;
        self.sub.held.fetch_sub(n, Ordering::Relaxed);
        self.sub.progress.fetch_add(1, Ordering::Relaxed);
        metrics::get().sse_held_bytes.dec_by(n as i64);
    }
}

/// Events read from the hub at once; they are shared, so this bounds only the work per read.
const BATCH: usize = 16;

enum Wake {
    Head,
    Heartbeat,
    Stop,
}

type Wait = Pin<Box<dyn Future<Output = (Wake, watch::Receiver<u64>)> + Send + Sync>>;

/// The body of one SSE stream. It pulls events from the hub by cursor, only when hyper asks
/// for the next frame, that is at the pace the client reads: catching up from far behind is
/// reading the log, not a queue to drain. Nothing is pushed to it, so it holds nothing but the
/// frames hyper has not written yet (shared with the hub).
struct SseBody {
    app: Arc<App>,
    story: Option<String>,
    cursor: u64,
    /// The history `cursor` belongs to.
    epoch: Epoch,
    sub: Arc<Subscriber>,
    /// Frames of this stream alone (`retry:`, `reset`), sent before any event.
    notices: VecDeque<Bytes>,
    batch: VecDeque<Arc<Committed>>,
    /// Subscribed before the first read, so an append between a read and a wait wakes it.
    head: Option<watch::Receiver<u64>>,
    wait: Option<Wait>,
    /// A page being read back from the log (a cursor older than memory), on a blocking thread.
    fetch: Option<tokio::task::JoinHandle<Result<Page, CursorGone>>>,
    done: bool,
    watchdog: tokio::task::JoinHandle<()>,
    _connected: (tokio::sync::OwnedSemaphorePermit, GaugeGuard),
}

impl Drop for SseBody {
    fn drop(&mut self) {
        self.watchdog.abort();
    }
}

impl SseBody {
    /// Tells the client its cursor cannot be served, and goes on from the head.
    fn reset(&mut self, g: CursorGone) {
        let data =
            json!({ "oldest": g.oldest, "head": g.head, "epoch": g.epoch.to_string() }).to_string();
        self.notices
            .push_back(Bytes::from(format!("event: reset\ndata: {data}\n\n")));
        self.cursor = g.head;
    }

    fn emit(&self, frame: Bytes) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(Some(Ok(Frame::data(Held::wrap(frame, &self.sub)))))
    }

    fn wait(&mut self) -> Option<Wait> {
        let mut head = self.head.take()?;
        let mut shutdown = self.app.shutdown.clone();
        let heartbeat = self.app.config.heartbeat;
        Some(Box::pin(async move {
            let wake = tokio::select! {
                changed = head.changed() => if changed.is_ok() { Wake::Head } else { Wake::Stop },
                _ = tokio::time::sleep(heartbeat) => Wake::Heartbeat,
                _ = shutdown.changed() => Wake::Stop,
            };
            (wake, head)
        }))
    }
}

impl HttpBody for SseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            if let Some(frame) = this.notices.pop_front() {
                return this.emit(frame);
            }
            if let Some(e) = this.batch.pop_front() {
                metrics::get().delivered_sse.inc();
                return this.emit(e.frame.clone());
            }
            if let Some(wait) = this.wait.as_mut() {
                let (wake, head) = std::task::ready!(wait.as_mut().poll(cx));
                this.wait = None;
                this.head = Some(head);
                match wake {
                    Wake::Head => {}
                    Wake::Heartbeat => return this.emit(Bytes::from_static(b": keep-alive\n\n")),
                    Wake::Stop => {
                        this.done = true;
                        continue;
                    }
                }
            }
            let hub = &this.app.relay.hub;
            if hub.epoch() != this.epoch && this.fetch.is_none() {
                // The history was replaced: say so, and go on from the new one's head.
                let g = hub.gone();
                this.reset(g);
                this.epoch = g.epoch;
                continue;
            }
            let page = if let Some(fetch) = this.fetch.as_mut() {
                let read = std::task::ready!(Pin::new(fetch).poll(cx));
                this.fetch = None;
                read.unwrap_or_else(|_| Err(hub.gone()))
            } else {
                // Memory first; the log only for a cursor older than memory.
                match hub.page(this.cursor, this.story.as_deref(), BATCH) {
                    Err(_) if hub.needs_history(this.cursor) => {
                        let (hub, story, cursor) =
                            (Arc::clone(hub), this.story.clone(), this.cursor);
                        this.fetch = Some(tokio::task::spawn_blocking(move || {
                            hub.page_from_history(cursor, story, BATCH)
                        }));
                        continue;
                    }
                    answer => answer,
                }
            };
            match page {
                Ok(page) => {
                    this.cursor = page.next;
                    if page.events.is_empty() {
                        if *this.app.shutdown.borrow() {
                            this.done = true;
                            continue;
                        }
                        match this.wait() {
                            Some(wait) => this.wait = Some(wait),
                            None => this.done = true,
                        }
                    } else {
                        this.batch.extend(page.events);
                    }
                }
                Err(g) => this.reset(g),
            }
        }
    }
}

/// `GET /live/events?after=SEQ&story=SLUG`, resumable with `Last-Event-ID`.
pub fn sse(app: Arc<App>, q: LiveQuery, last_event_id: Option<u64>) -> Response<Body> {
    // The cap is this server's own semaphore, held by the body, not the process-wide gauge.
    let Ok(slot) = Arc::clone(&app.sse_slots).try_acquire_owned() else {
        return too_many();
    };
    let start = last_event_id
        .or(q.after)
        .unwrap_or_else(|| app.relay.hub.head());
    // A cursor of another history (`epoch=` from an earlier answer) starts with a reset.
    let epoch = q.epoch.unwrap_or_else(|| app.relay.hub.epoch());
    let head = app.relay.hub.subscribe();
    let sub = Arc::new(Subscriber::default());
    let watchdog = tokio::spawn(watchdog(
        Arc::clone(&app),
        q.story.clone(),
        Arc::clone(&sub),
        CONNECTION.try_with(Closer::clone).ok(),
    ));
    let body = SseBody {
        story: q.story,
        cursor: start,
        epoch,
        sub,
        notices: VecDeque::from([Bytes::from(format!(
            "retry: {}\n\n",
            app.config.sse_retry_ms
        ))]),
        batch: VecDeque::new(),
        head: Some(head),
        wait: None,
        fetch: None,
        done: false,
        watchdog,
        _connected: (slot, GaugeGuard::new(&metrics::get().sse_connected)),
        app,
    };
    let mut res = Response::new(body.boxed());
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::HeaderName::from_static("x-accel-buffering"),
        HeaderValue::from_static("no"),
    );
    cors(h);
    res
}

/// Closes the connection of a subscriber that does not read: one whose connection has frames
/// it cannot write (its socket is full) and has taken or written nothing while more than
/// `--sse-queue` events or `--sse-queue-bytes` bytes of frames were committed for it. A
/// subscriber that reads, however far behind it is, makes progress and is never dropped; one
/// that is dropped reconnects with `Last-Event-ID` and loses nothing.
async fn watchdog(
    app: Arc<App>,
    story: Option<String>,
    sub: Arc<Subscriber>,
    closer: Option<Closer>,
) {
    let mut head = app.relay.hub.subscribe();
    let mut shutdown = app.shutdown.clone();
    let mut seen = *head.borrow_and_update();
    let mut progress = sub.progress.load(Ordering::Relaxed);
    let (mut events, mut bytes) = (0u64, 0u64);
    loop {
        tokio::select! {
            changed = head.changed() => if changed.is_err() { return },
            _ = shutdown.changed() => return,
        }
        let now = *head.borrow_and_update();
        let moved = sub.progress.load(Ordering::Relaxed);
        if moved != progress || sub.held.load(Ordering::Relaxed) == 0 {
            (events, bytes) = (0, 0);
            progress = moved;
        } else {
            let (n, b) = app.relay.hub.span(seen, now, story.as_deref());
            events += n;
            bytes += b;
            if events > app.config.sse_queue as u64 || bytes > app.config.sse_queue_bytes as u64 {
                tracing::debug!(events, bytes, "SSE subscriber stopped reading; closing it");
                metrics::get().sse_dropped.inc();
                if let Some(closer) = closer {
                    closer.close();
                }
                return;
            }
        }
        seen = now;
    }
}
