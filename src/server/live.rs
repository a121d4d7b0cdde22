//! The live transports: long-poll (`GET /live`) and Server-Sent Events (`GET /live/events`).
//! Both read committed events from the hub's memory and wait on its head `watch`, which the
//! append itself moves: no polling, no per-waiter timer beyond the request's own timeout.

use bytes::{BufMut, Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::{Body as HttpBody, Frame};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Response, StatusCode};
use serde_json::json;
use std::convert::Infallible;
use std::fmt::Write;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::mpsc;

use super::App;
use super::query::{DEFAULT_LIMIT, DEFAULT_TIMEOUT, LiveQuery};
use super::respond::{Body, cors, full, problem};
use crate::metrics::{self, GaugeGuard};
use crate::relay::hub::{CursorGone, Page};

fn gone(g: CursorGone) -> Response<Body> {
    let mut res = problem(
        StatusCode::GONE,
        &format!(
            "this cursor cannot be served: the log holds seq {} to {}; start again from after={}",
            g.oldest,
            g.head,
            g.oldest.saturating_sub(1)
        ),
        json!({ "oldest": g.oldest, "head": g.head }),
    );
    cors(res.headers_mut());
    res
}

fn page_response(page: &Page) -> Response<Body> {
    let size: usize = page.events.iter().map(|e| e.json.len() + 1).sum::<usize>() + 64;
    let mut body = BytesMut::with_capacity(size);
    body.put_slice(b"{\"events\":[");
    for (i, e) in page.events.iter().enumerate() {
        if i > 0 {
            body.put_u8(b',');
        }
        body.put_slice(&e.json);
    }
    let _ = write!(body, "],\"next\":{},\"head\":{}}}", page.next, page.head);
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
    let first = match app.relay.hub.page(cursor, story, limit) {
        Ok(page) => page,
        Err(g) => return gone(g),
    };
    if !first.events.is_empty() || timeout.is_zero() || *shutdown.borrow() {
        return page_response(&first);
    }
    cursor = first.next;
    let m = metrics::get();
    if m.longpoll_waiting
        .load(std::sync::atomic::Ordering::Relaxed) as usize
        >= app.config.max_waiters
    {
        return too_many();
    }
    let _waiting = GaugeGuard::new(&m.longpoll_waiting);
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            changed = head.changed() => {
                if changed.is_err() {
                    break;
                }
                match app.relay.hub.page(cursor, story, limit) {
                    Ok(page) if !page.events.is_empty() => return page_response(&page),
                    Ok(page) => cursor = page.next,
                    Err(g) => return gone(g),
                }
            }
            _ = &mut deadline => break,
            _ = shutdown.changed() => break,
        }
    }
    let head = app.relay.hub.head();
    page_response(&Page {
        events: Vec::new(),
        next: cursor,
        head,
    })
}

/// A response body fed by a bounded channel: the subscriber task pushes, hyper pulls.
struct ChannelBody {
    rx: mpsc::Receiver<Bytes>,
}

impl HttpBody for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

fn sse_event(seq: u64, op: &str, json: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(json.len() + 48);
    b.put_slice(format!("id: {seq}\nevent: {op}\ndata: ").as_bytes());
    b.put_slice(json);
    b.put_slice(b"\n\n");
    b.freeze()
}

/// `GET /live/events?after=SEQ&story=SLUG`, resumable with `Last-Event-ID`.
pub fn sse(app: Arc<App>, q: LiveQuery, last_event_id: Option<u64>) -> Response<Body> {
    let m = metrics::get();
    if m.sse_connected.load(std::sync::atomic::Ordering::Relaxed) as usize >= app.config.max_waiters
    {
        return too_many();
    }
    let (tx, rx) = mpsc::channel::<Bytes>(app.config.sse_queue);
    let start = last_event_id
        .or(q.after)
        .unwrap_or_else(|| app.relay.hub.head());
    let retry = Bytes::from(format!("retry: {}\n\n", app.config.sse_retry_ms));
    let _ = tx.try_send(retry);
    tokio::spawn(feed_subscriber(app, q.story, start, tx));
    let mut res = Response::new(ChannelBody { rx }.boxed());
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

/// Pushes events to one SSE subscriber until it goes away, falls a whole queue behind, or the
/// server shuts down. A dropped subscriber reconnects with `Last-Event-ID` and loses nothing.
async fn feed_subscriber(
    app: Arc<App>,
    story: Option<String>,
    mut cursor: u64,
    tx: mpsc::Sender<Bytes>,
) {
    let _connected = GaugeGuard::new(&metrics::get().sse_connected);
    let mut head = app.relay.hub.subscribe();
    let mut shutdown = app.shutdown.clone();
    let batch = app.config.sse_queue.max(1);
    loop {
        // Send everything we can see, a batch at a time.
        loop {
            match app.relay.hub.page(cursor, story.as_deref(), batch) {
                Ok(page) => {
                    for e in &page.events {
                        if tx
                            .try_send(sse_event(e.seq, e.op.as_str(), &e.json))
                            .is_err()
                        {
                            tracing::debug!(
                                cursor,
                                "SSE subscriber too slow or gone; disconnecting"
                            );
                            return;
                        }
                    }
                    let caught_up = page.next >= page.head;
                    cursor = page.next;
                    if caught_up {
                        break;
                    }
                }
                Err(g) => {
                    let data = json!({ "oldest": g.oldest, "head": g.head }).to_string();
                    let frame = Bytes::from(format!("event: reset\ndata: {data}\n\n"));
                    if tx.try_send(frame).is_err() {
                        return;
                    }
                    cursor = g.head;
                }
            }
        }
        if *shutdown.borrow() {
            return;
        }
        tokio::select! {
            changed = head.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep(app.config.heartbeat) => {
                if tx.try_send(Bytes::from_static(b": keep-alive\n\n")).is_err() {
                    return;
                }
            }
            _ = shutdown.changed() => return,
            _ = tx.closed() => return,
        }
    }
}
