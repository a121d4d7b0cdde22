//! The access log: one `tracing` event per request (target [`TARGET`]), written when its
//! response body has been sent or abandoned, so that streamed answers (SSE) log their real
//! size and duration. `main` routes the target to stderr, a file, or nowhere
//! (`--access-log`), as text or JSON (`--log-format`).

use bytes::Bytes;
use hyper::Method;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use super::Published;
use super::respond::Body;

/// The `tracing` target of access lines.
pub const TARGET: &str = "livefeed::access";

/// What one access line says besides the bytes sent.
pub struct Line {
    pub method: Method,
    /// The path only: the query, headers and body never reach the log.
    pub path: String,
    pub status: u16,
    pub peer: SocketAddr,
    pub start: Instant,
    pub published: Option<Published>,
}

/// A response body that counts the bytes it yields and logs the request when dropped.
pub struct Logged {
    inner: Body,
    bytes: u64,
    line: Line,
}

impl Logged {
    pub fn new(inner: Body, line: Line) -> Logged {
        Logged {
            inner,
            bytes: 0,
            line,
        }
    }
}

impl HttpBody for Logged {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                self.bytes += data.len() as u64;
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        let l = &self.line;
        let duration_ms = l.start.elapsed().as_secs_f64() * 1000.0;
        match &l.published {
            Some(p) => tracing::info!(
                target: TARGET,
                method = %l.method,
                path = %l.path,
                status = l.status,
                bytes = self.bytes,
                duration_ms,
                client = %l.peer,
                story = %p.story,
                id = %p.id,
                seq = p.seq,
                "request"
            ),
            None => tracing::info!(
                target: TARGET,
                method = %l.method,
                path = %l.path,
                status = l.status,
                bytes = self.bytes,
                duration_ms,
                client = %l.peer,
                "request"
            ),
        }
    }
}
