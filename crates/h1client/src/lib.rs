//! A small HTTP/1.1 client over one connection, shared by livefeed's tests (`tests/common/raw.rs`)
//! and its load generator (`bench/loadgen`): keep-alive, pipelining (a read half of its own),
//! responses framed by `Content-Length` or `chunked` (read to close only when the response has
//! neither, as HTTP/1.1 says), streamed bodies chunk by chunk, and Server-Sent Events.
//!
//! Hand-written on `httparse` rather than a full client: the load generator drives tens of
//! thousands of long-polls and event streams with a few KiB each and times exactly when a
//! response arrives, and the tests send requests no full client can express (hostile input).
//!
//! A response must be exactly as long as it says: bytes after its end on a connection the
//! server closes are an error ([`Conn::expect_closed`]), and a body cut short is
//! `UnexpectedEof`.

use std::io;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, ToSocketAddrs};

/// One connection (or the read half of one: responses to pipelined requests).
pub struct Conn<S = TcpStream> {
    stream: S,
    /// Bytes read but not consumed yet.
    buf: Vec<u8>,
    /// Where unconsumed bytes start in `buf`.
    pos: usize,
}

/// A status line and headers.
#[derive(Debug, Default, Clone)]
pub struct Head {
    pub status: u16,
    /// Names as the server spelled them; [`Head::header`] compares without case.
    pub headers: Vec<(String, String)>,
    pub framing: Framing,
}

/// How a response body ends.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (HEAD, 204, 304).
    #[default]
    Empty,
    Length(usize),
    Chunked,
    /// Neither length nor chunked: the body ends when the server closes.
    UntilClose,
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A whole response.
#[derive(Debug, Clone)]
pub struct Response {
    pub head: Head,
    pub body: Vec<u8>,
}

impl Response {
    pub fn status(&self) -> u16 {
        self.head.status
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn eof() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed")
}

fn bad(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

impl Conn<TcpStream> {
    /// Connects (with `TCP_NODELAY`).
    pub async fn connect(addr: impl ToSocketAddrs) -> io::Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Conn::new(stream))
    }

    /// Connects to a base URL's `host:port` (`http://127.0.0.1:8080/` or `127.0.0.1:8080`).
    pub async fn connect_url(base: &str) -> io::Result<Conn> {
        let addr = base.trim_start_matches("http://").trim_end_matches('/');
        Conn::connect(addr).await
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    pub async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// Sends a request and reads its whole response.
    pub async fn roundtrip(&mut self, request: &[u8]) -> io::Result<Response> {
        self.send(request).await?;
        self.read_response(request.starts_with(b"HEAD ")).await
    }

    /// `GET path` on this connection (kept alive), with extra header lines.
    pub async fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> io::Result<Response> {
        self.roundtrip(&request("GET", path, headers, None)).await
    }
}

impl<S: AsyncRead + Unpin> Conn<S> {
    pub fn new(stream: S) -> Conn<S> {
        Conn {
            stream,
            buf: Vec::with_capacity(2048),
            pos: 0,
        }
    }

    /// The socket itself, for tests that write or read byte by byte.
    pub fn stream(&mut self) -> &mut S {
        &mut self.stream
    }

    fn pending(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    fn consume(&mut self, n: usize) {
        self.pos += n;
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
    }

    /// Reads more bytes; an error at end of stream.
    async fn fill(&mut self) -> io::Result<()> {
        if self.pos > 0 && self.pos * 2 >= self.buf.len() {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        if self.buf.capacity() - self.buf.len() < 1024 {
            self.buf.reserve(4096);
        }
        let n = self.stream.read_buf(&mut self.buf).await?;
        if n == 0 { Err(eof()) } else { Ok(()) }
    }

    /// Reads a status line and headers, skipping interim `100 Continue` answers.
    pub async fn read_head(&mut self, head_request: bool) -> io::Result<Head> {
        loop {
            let head = self.read_one_head(head_request).await?;
            if head.status != 100 {
                return Ok(head);
            }
        }
    }

    async fn read_one_head(&mut self, head_request: bool) -> io::Result<Head> {
        loop {
            let mut storage = [httparse::EMPTY_HEADER; 48];
            let mut res = httparse::Response::new(&mut storage);
            match res.parse(self.pending()) {
                Ok(httparse::Status::Complete(used)) => {
                    let status = res.code.unwrap_or(0);
                    let mut head = Head {
                        status,
                        headers: Vec::with_capacity(res.headers.len()),
                        framing: Framing::UntilClose,
                    };
                    let mut length = None;
                    let mut chunked = false;
                    for h in res.headers.iter() {
                        let value = String::from_utf8_lossy(h.value).trim().to_string();
                        if h.name.eq_ignore_ascii_case("content-length") {
                            let n = value
                                .parse::<usize>()
                                .map_err(|_| bad(format!("bad Content-Length {value:?}")))?;
                            if length.is_some_and(|m| m != n) {
                                return Err(bad("two different Content-Length headers"));
                            }
                            length = Some(n);
                        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                            chunked = value.to_ascii_lowercase().contains("chunked");
                        }
                        head.headers.push((h.name.to_string(), value));
                    }
                    head.framing = if head_request
                        || status == 204
                        || status == 304
                        || (100..200).contains(&status)
                    {
                        Framing::Empty
                    } else if chunked {
                        Framing::Chunked
                    } else if let Some(n) = length {
                        Framing::Length(n)
                    } else {
                        Framing::UntilClose
                    };
                    self.consume(used);
                    return Ok(head);
                }
                Ok(httparse::Status::Partial) => {
                    if self.pending().len() > 64 * 1024 {
                        return Err(bad("response head over 64 KiB"));
                    }
                    self.fill().await?;
                }
                Err(e) => return Err(bad(format!("bad response head: {e}"))),
            }
        }
    }

    /// Reads a whole body.
    pub async fn read_body(&mut self, framing: Framing) -> io::Result<Vec<u8>> {
        match framing {
            Framing::Empty => Ok(Vec::new()),
            Framing::Length(n) => self.read_exact_bytes(n).await,
            Framing::Chunked => {
                let mut body = Vec::new();
                while let Some(chunk) = self.read_chunk().await? {
                    body.extend_from_slice(&chunk);
                }
                Ok(body)
            }
            Framing::UntilClose => {
                loop {
                    match self.fill().await {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
                        Err(e) => return Err(e),
                    }
                }
                let body = self.pending().to_vec();
                self.consume(body.len());
                Ok(body)
            }
        }
    }

    /// One chunk of a chunked body; `None` after the last one (trailers skipped).
    pub async fn read_chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        let size = loop {
            if let Some(end) = find(self.pending(), b"\r\n") {
                let line = std::str::from_utf8(&self.pending()[..end])
                    .map_err(|_| bad("chunk size is not ASCII"))?;
                let hex = line.split(';').next().unwrap_or("").trim();
                let size = usize::from_str_radix(hex, 16)
                    .map_err(|_| bad(format!("bad chunk size {line:?}")))?;
                self.consume(end + 2);
                break size;
            }
            if self.pending().len() > 1024 {
                return Err(bad("chunk size line too long"));
            }
            self.fill().await?;
        };
        if size == 0 {
            // Trailers, then an empty line.
            loop {
                if let Some(end) = find(self.pending(), b"\r\n") {
                    self.consume(end + 2);
                    if end == 0 {
                        return Ok(None);
                    }
                    continue;
                }
                self.fill().await?;
            }
        }
        let mut data = self.read_exact_bytes(size + 2).await?;
        if !data.ends_with(b"\r\n") {
            return Err(bad("a chunk longer than its size line says"));
        }
        data.truncate(size);
        Ok(Some(data))
    }

    /// Whatever bytes of a streamed body arrive next (`framing` of its head); `None` at its end.
    pub async fn read_stream(&mut self, framing: Framing) -> io::Result<Option<Vec<u8>>> {
        match framing {
            Framing::Chunked => self.read_chunk().await,
            Framing::UntilClose => {
                if self.pending().is_empty() {
                    match self.fill().await {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
                        Err(e) => return Err(e),
                    }
                }
                let data = self.pending().to_vec();
                self.consume(data.len());
                Ok(Some(data))
            }
            other => {
                let body = self.read_body(other).await?;
                Ok((!body.is_empty()).then_some(body))
            }
        }
    }

    /// A CRLF-terminated line, without the CRLF (for RESP).
    pub async fn read_line(&mut self) -> io::Result<Vec<u8>> {
        loop {
            if let Some(end) = find(self.pending(), b"\r\n") {
                let line = self.pending()[..end].to_vec();
                self.consume(end + 2);
                return Ok(line);
            }
            self.fill().await?;
        }
    }

    pub async fn read_exact_bytes(&mut self, n: usize) -> io::Result<Vec<u8>> {
        while self.pending().len() < n {
            self.fill().await?;
        }
        let data = self.pending()[..n].to_vec();
        self.consume(n);
        Ok(data)
    }

    /// A whole response: head, then the body its framing says.
    pub async fn read_response(&mut self, head_request: bool) -> io::Result<Response> {
        let head = self.read_head(head_request).await?;
        let body = self.read_body(head.framing).await?;
        Ok(Response { head, body })
    }

    /// After the last response on a connection the server closes: waits up to `wait` for the
    /// close. A byte more is an error (the response was longer than its framing said, or the
    /// server wrote something after it); so is the connection still open after `wait`.
    pub async fn expect_closed(&mut self, wait: Duration) -> io::Result<()> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if !self.pending().is_empty() {
                return Err(bad(format!(
                    "{} bytes after the end of the response: {:?}",
                    self.pending().len(),
                    String::from_utf8_lossy(self.pending())
                )));
            }
            match tokio::time::timeout_at(deadline, self.fill()).await {
                Err(_) => return Err(io::Error::new(io::ErrorKind::TimedOut, "still open")),
                Ok(Ok(())) => {}
                Ok(Err(e))
                    if matches!(
                        e.kind(),
                        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
                    ) =>
                {
                    return Ok(());
                }
                Ok(Err(e)) => return Err(e),
            }
        }
    }

    /// What a server says on its own before it closes the connection, within `wait`: `None`
    /// when it closes without a word, else the one response it sent (which must end where its
    /// framing says, with the close right after it).
    pub async fn read_until_closed(&mut self, wait: Duration) -> io::Result<Option<Response>> {
        let deadline = tokio::time::Instant::now() + wait;
        if self.pending().is_empty() {
            match tokio::time::timeout_at(deadline, self.fill()).await {
                Err(_) => return Err(io::Error::new(io::ErrorKind::TimedOut, "still open")),
                Ok(Ok(())) => {}
                Ok(Err(e))
                    if matches!(
                        e.kind(),
                        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
                    ) =>
                {
                    return Ok(None);
                }
                Ok(Err(e)) => return Err(e),
            }
        }
        let res = tokio::time::timeout_at(deadline, self.read_response(false))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "response not finished"))??;
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        self.expect_closed(left).await?;
        Ok(Some(res))
    }
}

/// An HTTP/1.1 request with `Host: test`, the given header lines and an optional body (with
/// its `Content-Length`).
pub fn request(method: &str, path: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\nHost: test\r\n").into_bytes();
    for (name, value) in headers {
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    if let Some(body) = body {
        out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    if let Some(body) = body {
        out.extend_from_slice(body);
    }
    out
}

/// Where `needle` starts in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    // Scan for the first byte with the standard library's fast search, then compare.
    let mut from = 0;
    while let Some(i) = hay[from..].iter().position(|&b| b == needle[0]) {
        let at = from + i;
        if hay[at..].starts_with(needle) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// An incremental Server-Sent Events parser: feed it bytes, get whole events.
#[derive(Default)]
pub struct SseParser {
    pending: Vec<u8>,
}

/// One event. `id` is kept as sent (`7`, or `EPOCH:7`), to be sent back as `Last-Event-ID`.
#[derive(Debug, Default)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
}

impl SseEvent {
    /// The sequence number in `id`: `N`, or the `N` of `EPOCH:N`.
    pub fn seq(&self) -> Option<u64> {
        let id = self.id.as_deref()?;
        id.rsplit(':').next()?.parse().ok()
    }
}

impl SseParser {
    /// Adds bytes and returns the events they complete (comments and `retry:` dropped).
    pub fn push(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        self.pending.extend_from_slice(bytes);
        let mut out = Vec::new();
        loop {
            // An event ends at a blank line (LF LF, or CRLF CRLF).
            let lf = find(&self.pending, b"\n\n").map(|i| (i, 2));
            let crlf = find(&self.pending, b"\r\n\r\n").map(|i| (i, 4));
            let end = match (lf, crlf) {
                (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
                (a, b) => a.or(b),
            };
            let Some((at, sep)) = end else { break };
            let block: Vec<u8> = self.pending.drain(..at + sep).collect();
            let text = String::from_utf8_lossy(&block[..at]);
            let mut ev = SseEvent::default();
            let mut has_data = false;
            for line in text.split('\n') {
                let line = line.strip_suffix('\r').unwrap_or(line);
                if line.starts_with(':') || line.is_empty() {
                    continue;
                }
                let (field, value) = match line.split_once(':') {
                    Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                    None => (line, ""),
                };
                match field {
                    "id" => ev.id = Some(value.to_string()),
                    "event" => ev.event = Some(value.to_string()),
                    "data" => {
                        if has_data {
                            ev.data.push('\n');
                        }
                        ev.data.push_str(value);
                        has_data = true;
                    }
                    _ => {}
                }
            }
            if has_data {
                out.push(ev);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::duplex;

    /// A connection whose server side has written `answer` and then closed.
    async fn served(answer: &[u8]) -> Conn<tokio::io::DuplexStream> {
        let (client, mut server) = duplex(64 * 1024);
        server.write_all(answer).await.unwrap();
        drop(server);
        Conn::new(client)
    }

    #[tokio::test]
    async fn a_body_longer_than_its_content_length_is_an_error() {
        // The shape of the bug issue 9 names: Content-Length 94 on a 97-byte body.
        let body = "x".repeat(97);
        let answer = format!(
            "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 94\r\n\r\n{body}"
        );
        let mut c = served(answer.as_bytes()).await;
        let res = c.read_response(false).await.unwrap();
        assert_eq!(res.body.len(), 94);
        let err = c.expect_closed(Duration::from_secs(1)).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        let mut c = served(answer.as_bytes()).await;
        let err = c
            .read_until_closed(Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("3 bytes after"), "{err}");
    }

    #[tokio::test]
    async fn a_body_shorter_than_its_content_length_is_an_error() {
        let mut c =
            served(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nConnection: close\r\n\r\nshort")
                .await;
        let err = c.read_response(false).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[tokio::test]
    async fn keep_alive_responses_are_framed_one_after_the_other() {
        let mut c = served(
            b"HTTP/1.1 100 Continue\r\n\r\n\
              HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc\
              HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nde\r\n1;x=y\r\nf\r\n0\r\nT: 1\r\n\r\n\
              HTTP/1.1 304 Not Modified\r\nETag: \"1\"\r\n\r\n",
        )
        .await;
        let a = c.read_response(false).await.unwrap();
        assert_eq!((a.status(), a.text().as_str()), (200, "abc"));
        let b = c.read_response(false).await.unwrap();
        assert_eq!(
            (b.head.framing, b.text().as_str()),
            (Framing::Chunked, "def")
        );
        let n = c.read_response(false).await.unwrap();
        assert_eq!((n.status(), n.head.header("etag")), (304, Some("\"1\"")));
        c.expect_closed(Duration::from_secs(1)).await.unwrap();
    }

    #[tokio::test]
    async fn a_chunk_longer_than_its_size_is_an_error() {
        let mut c =
            served(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n")
                .await;
        assert!(c.read_response(false).await.is_err());
    }

    #[tokio::test]
    async fn a_server_that_closes_without_a_word_is_none() {
        let mut c = served(b"").await;
        assert!(
            c.read_until_closed(Duration::from_secs(1))
                .await
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn sse_parser_splits_events_across_pushes() {
        let mut p = SseParser::default();
        assert!(
            p.push(b"retry: 2000\n\n: hi\n\nid: 1\nevent: cre")
                .is_empty()
        );
        let evs = p.push(b"ate\ndata: {\"a\":1}\n\nid: 3f2a:2\r\ndata: x\r\ndata: y\r\n\r\n");
        assert_eq!(evs.len(), 2);
        assert_eq!(evs[0].id.as_deref(), Some("1"));
        assert_eq!(evs[0].seq(), Some(1));
        assert_eq!(evs[0].event.as_deref(), Some("create"));
        assert_eq!(evs[0].data, "{\"a\":1}");
        assert_eq!(evs[1].id.as_deref(), Some("3f2a:2"));
        assert_eq!(evs[1].seq(), Some(2));
        assert_eq!(evs[1].data, "x\ny");
    }

    #[test]
    fn find_finds() {
        assert_eq!(find(b"abcabd", b"abd"), Some(3));
        assert_eq!(find(b"ab", b"abc"), None);
        assert_eq!(find(b"\xff\n\n", b"\n\n"), Some(1));
    }
}
