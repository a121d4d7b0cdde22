//! The live transports: long-poll (`GET /live`) and Server-Sent Events (`GET /live/events`).
//! Both read committed events from the hub's memory. A long-poll waits on the hub's head
//! `watch`, which the append itself moves (no per-waiter timer beyond the request's own
//! timeout); SSE streams have no task or timer of their own: one [`Sweeper`] per server wakes
//! them when the head moves, asks idle ones for heartbeats, and closes those that stopped
//! reading.

use atomic_waker::AtomicWaker;
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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

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

pin_project_lite::pin_project! {
    /// One connection's task (see [`closable`]): the connection, the signal that closes it,
    /// and what it holds while open. Written out rather than as an `async` block, which would
    /// keep the connection future twice (about 3.5 KB a connection instead of 0.9).
    pub struct Closable<F, H> {
        #[pin]
        conn: F,
        #[pin]
        closed: tokio::sync::futures::OwnedNotified,
        peer: std::net::SocketAddr,
        hold: Option<H>,
    }
}

impl<F, E, H> Future for Closable<F, H>
where
    F: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        match this.conn.poll(cx) {
            Poll::Ready(Err(e)) => {
                tracing::debug!(peer = %this.peer, error = %e, "connection ended with an error");
            }
            Poll::Ready(Ok(())) => {}
            // Closed by its SSE stream: dropping the connection closes the socket.
            Poll::Pending if this.closed.poll(cx).is_ready() => {}
            Poll::Pending => return Poll::Pending,
        }
        this.hold.take();
        Poll::Ready(())
    }
}

/// Runs one connection so that an SSE stream served on it can close it (see [`Closer`]),
/// holding `hold` (its slot, its gauge) until it ends.
pub fn closable<F, E, H>(
    conn: F,
    peer: std::net::SocketAddr,
    hold: H,
) -> impl Future<Output = ()> + use<F, E, H>
where
    F: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let closer = Closer::default();
    let closed = Arc::clone(&closer.0).notified_owned();
    CONNECTION.scope(
        closer,
        Closable {
            conn,
            closed,
            peer,
            hold: Some(hold),
        },
    )
}

/// What one SSE stream shares with the server's [`Sweeper`]: what its connection holds, how far
/// it got, and how to wake or close it. The stream itself has no task: its body is polled by
/// its connection's task, which the sweeper wakes.
struct Subscriber {
    /// Bytes of frames handed to the connection and not yet written to the socket.
    held: AtomicU64,
    /// Moves each time the connection takes a frame or finishes writing one.
    progress: AtomicU64,
    /// The connection's task while the body waits for the head to move.
    waker: AtomicWaker,
    /// Set by the sweeper when the stream sent nothing for a heartbeat period.
    heartbeat: AtomicBool,
    story: Option<Box<str>>,
    closer: Option<Closer>,
}

impl Subscriber {
    fn wake(&self) {
        self.waker.wake();
    }
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

/// One stream as the sweeper sees it.
struct Watched {
    sub: Arc<Subscriber>,
    /// The head at the last sweep.
    seen: u64,
    /// `progress` at the last sweep, and at the last heartbeat tick.
    progress: u64,
    beat: u64,
    /// Events and bytes committed for it since it last made progress with frames held.
    events: u64,
    bytes: u64,
}

/// The server's one task for all SSE streams (instead of a task per stream): when the head
/// moves it wakes every waiting stream and closes those that stopped reading; every
/// `--heartbeat` it asks idle streams for a keep-alive comment.
///
/// A stream stopped reading when its connection has frames it cannot write (its socket is full)
/// and took or wrote nothing while more than `--sse-queue` events or `--sse-queue-bytes` bytes
/// of frames were committed for it. A stream that reads, however far behind it is, makes
/// progress and is never dropped; one that is dropped reconnects with `Last-Event-ID` and
/// loses nothing.
#[derive(Default)]
pub struct Sweeper {
    started: std::sync::OnceLock<()>,
    /// Set when the sweeper stopped (shutdown): streams end instead of waiting.
    stopped: AtomicBool,
    streams: Mutex<Vec<Watched>>,
    /// The `retry:` frame every stream opens with, made once.
    retry: std::sync::OnceLock<Bytes>,
}

impl Sweeper {
    fn register(&self, app: &Arc<App>, sub: Arc<Subscriber>) {
        self.started.get_or_init(|| {
            tokio::spawn(sweep(Arc::clone(app)));
        });
        let mut streams = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        if streams.len() == streams.capacity() {
            // Forget streams that ended before growing (without appends, no sweep does).
            streams.retain(|w| Arc::strong_count(&w.sub) > 1);
        }
        let progress = sub.progress.load(Ordering::Relaxed);
        streams.push(Watched {
            sub,
            seen: app.relay.hub.head(),
            progress,
            beat: progress,
            events: 0,
            bytes: 0,
        });
    }

    /// The head moved to `now`: wakes every stream, and closes those that stopped reading.
    fn head_moved(&self, app: &App, now: u64) {
        let (queue, queue_bytes) = (
            app.config.sse_queue as u64,
            app.config.sse_queue_bytes as u64,
        );
        let mut streams = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        streams.retain_mut(|w| {
            if Arc::strong_count(&w.sub) == 1 {
                return false; // the stream ended
            }
            w.sub.wake();
            let moved = w.sub.progress.load(Ordering::Relaxed);
            if moved != w.progress || w.sub.held.load(Ordering::Relaxed) == 0 {
                (w.events, w.bytes) = (0, 0);
                w.progress = moved;
            } else {
                let (n, b) = app.relay.hub.span(w.seen, now, w.sub.story.as_deref());
                w.events += n;
                w.bytes += b;
                if w.events > queue || w.bytes > queue_bytes {
                    tracing::debug!(
                        events = w.events,
                        bytes = w.bytes,
                        "SSE subscriber stopped reading; closing it"
                    );
                    metrics::get().sse_dropped.inc();
                    if let Some(closer) = &w.sub.closer {
                        closer.close();
                    }
                    return false;
                }
            }
            w.seen = now;
            true
        });
    }

    /// A heartbeat period passed: streams that sent and wrote nothing since the last one send
    /// a keep-alive comment.
    fn tick(&self) {
        let mut streams = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        for w in streams.iter_mut() {
            let moved = w.sub.progress.load(Ordering::Relaxed);
            if moved == w.beat {
                w.sub.heartbeat.store(true, Ordering::Relaxed);
                w.sub.wake();
            }
            w.beat = moved;
        }
    }

    /// The server shuts down: every stream ends.
    fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        let streams = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        for w in streams.iter() {
            w.sub.wake();
        }
    }
}

/// The sweeper's task; see [`Sweeper`].
async fn sweep(app: Arc<App>) {
    let mut head = app.relay.hub.subscribe();
    let mut shutdown = app.shutdown.clone();
    let period = app.config.heartbeat;
    let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let sweeper = &app.sse_sweeper;
    loop {
        tokio::select! {
            changed = head.changed() => {
                if changed.is_err() {
                    break;
                }
                let now = *head.borrow_and_update();
                sweeper.head_moved(&app, now);
            }
            _ = beat.tick() => sweeper.tick(),
            _ = shutdown.changed() => break,
        }
    }
    sweeper.stop();
}

/// Events read from the hub at once; they are shared, so this bounds only the work per read.
const BATCH: usize = 16;

/// The body of one SSE stream. It pulls events from the hub by cursor, only when hyper asks
/// for the next frame, that is at the pace the client reads: catching up from far behind is
/// reading the log, not a queue to drain. Nothing is pushed to it, so it holds nothing but the
/// frames hyper has not written yet (shared with the hub). Waiting for the head, it holds no
/// future or timer: the [`Sweeper`] wakes it.
struct SseBody {
    app: Arc<App>,
    sub: Arc<Subscriber>,
    cursor: u64,
    /// The history `cursor` belongs to.
    epoch: Epoch,
    /// Frames of this stream alone (`retry:`, `reset`), sent before any event.
    notices: VecDeque<Bytes>,
    /// The rest of the last page read (its own allocation, reused).
    batch: std::vec::IntoIter<Arc<Committed>>,
    /// A page being read back from the log (a cursor older than memory), on a blocking thread.
    fetch: Option<tokio::task::JoinHandle<Result<Page, CursorGone>>>,
    done: bool,
    _connected: (tokio::sync::OwnedSemaphorePermit, GaugeGuard),
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

    fn stopping(&self) -> bool {
        *self.app.shutdown.borrow() || self.app.sse_sweeper.stopped.load(Ordering::SeqCst)
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
            if let Some(e) = this.batch.next() {
                metrics::get().delivered_sse.inc();
                return this.emit(e.frame.clone());
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
                match hub.page(this.cursor, this.sub.story.as_deref(), BATCH) {
                    Err(_) if hub.needs_history(this.cursor) => {
                        let (hub, story, cursor) = (
                            Arc::clone(hub),
                            this.sub.story.as_deref().map(str::to_string),
                            this.cursor,
                        );
                        this.fetch = Some(tokio::task::spawn_blocking(move || {
                            hub.page_from_history(cursor, story, BATCH)
                        }));
                        continue;
                    }
                    answer => answer,
                }
            };
            match page {
                Ok(page) if page.events.is_empty() => {
                    this.cursor = page.next;
                    // Registered before looking again, so that a move in between still wakes it.
                    this.sub.waker.register(cx.waker());
                    if this.stopping() {
                        this.done = true;
                        continue;
                    }
                    // Behind the page's head the watch is about to move (the sweeper then
                    // wakes it); ahead of it, there is more to read now.
                    if hub.head() > page.head || hub.epoch() != this.epoch {
                        continue;
                    }
                    if this.sub.heartbeat.swap(false, Ordering::Relaxed) {
                        return this.emit(Bytes::from_static(b": keep-alive\n\n"));
                    }
                    return Poll::Pending;
                }
                Ok(page) => {
                    this.cursor = page.next;
                    this.sub.heartbeat.store(false, Ordering::Relaxed);
                    this.batch = page.events.into_iter();
                }
                Err(g) => this.reset(g),
            }
        }
    }
}

/// A `Last-Event-ID`: `EPOCH:SEQ` as the stream sends it, or a bare `SEQ` (of the current
/// epoch, as clients from before epochs send it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastEventId {
    pub epoch: Option<Epoch>,
    pub seq: u64,
}

impl std::str::FromStr for LastEventId {
    type Err = ();
    fn from_str(s: &str) -> Result<LastEventId, ()> {
        fn digits(s: &str, radix: u32, most: usize) -> bool {
            !s.is_empty() && s.len() <= most && s.chars().all(|c| c.is_digit(radix))
        }
        let (epoch, seq) = match s.split_once(':') {
            Some((e, seq)) if digits(e, 16, 16) => (Some(e.parse().map_err(|_| ())?), seq),
            Some(_) => return Err(()),
            None => (None, s),
        };
        if !digits(seq, 10, 20) {
            return Err(());
        }
        Ok(LastEventId {
            epoch,
            seq: seq.parse().map_err(|_| ())?,
        })
    }
}

/// `GET /live/events?after=SEQ&story=SLUG`, resumable with `Last-Event-ID`.
pub fn sse(app: Arc<App>, q: LiveQuery, last_event_id: Option<LastEventId>) -> Response<Body> {
    // The cap is this server's own semaphore, held by the body, not the process-wide gauge.
    let Ok(slot) = Arc::clone(&app.sse_slots).try_acquire_owned() else {
        return too_many();
    };
    let current = app.relay.hub.epoch();
    let (start, epoch) = match last_event_id {
        // A bare seq is one of the current history.
        Some(id) => (id.seq, id.epoch.unwrap_or(current)),
        // A cursor of another history (`epoch=` from an earlier answer) starts with a reset.
        None => (
            q.after.unwrap_or_else(|| app.relay.hub.head()),
            q.epoch.unwrap_or(current),
        ),
    };
    let sub = Arc::new(Subscriber {
        held: AtomicU64::new(0),
        progress: AtomicU64::new(0),
        waker: AtomicWaker::new(),
        heartbeat: AtomicBool::new(false),
        story: q.story.map(String::into_boxed_str),
        closer: CONNECTION.try_with(Closer::clone).ok(),
    });
    app.sse_sweeper.register(&app, Arc::clone(&sub));
    let retry = app
        .sse_sweeper
        .retry
        .get_or_init(|| Bytes::from(format!("retry: {}\n\n", app.config.sse_retry_ms)))
        .clone();
    let body = SseBody {
        sub,
        cursor: start,
        epoch,
        notices: VecDeque::from([retry]),
        batch: Vec::new().into_iter(),
        fetch: None,
        done: false,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_event_ids_are_epoch_and_seq_or_a_bare_seq() {
        let id = |s: &str| s.parse::<LastEventId>();
        assert_eq!(
            id("00000000000000ff:12"),
            Ok(LastEventId {
                epoch: Some(Epoch(255)),
                seq: 12
            })
        );
        assert_eq!(
            id("12"),
            Ok(LastEventId {
                epoch: None,
                seq: 12
            })
        );
        for bad in [
            "",
            ":",
            ":1",
            "ff:",
            "x:1",
            "+1:1",
            "1:+1",
            "-1",
            "1:2:3",
            "1 :2",
            "10000000000000000:1",
            "99999999999999999999",
        ] {
            assert_eq!(id(bad), Err(()), "{bad:?}");
        }
    }
}
