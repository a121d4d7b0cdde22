//! A minimal HTTP/1.1 client over one keep-alive TCP connection: enough to drive tens of
//! thousands of long-polls and event streams with a few KiB each, and to measure exactly when a
//! response arrives. Responses are framed by `Content-Length`, `chunked`, or connection close.

use std::io;
use std::net::SocketAddr;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// One connection (or the read half of one: responses to pipelined requests).
pub struct Conn<S = TcpStream> {
    stream: S,
    /// Bytes read but not consumed yet.
    buf: Vec<u8>,
    /// Where unconsumed bytes start in `buf`.
    pos: usize,
}

/// The status line and the headers we care about.
#[derive(Debug, Default, Clone)]
pub struct Head {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub framing: Framing,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    #[default]
    Empty,
    Length(usize),
    Chunked,
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

pub struct Response {
    pub head: Head,
    pub body: Vec<u8>,
}

fn eof() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed")
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

impl Conn<TcpStream> {
    pub async fn connect(addr: SocketAddr) -> io::Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Conn::new(stream))
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
}

impl<S: AsyncRead + Unpin> Conn<S> {
    pub fn new(stream: S) -> Conn<S> {
        Conn {
            stream,
            buf: Vec::with_capacity(2048),
            pos: 0,
        }
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

    /// Reads a status line and headers.
    pub async fn read_head(&mut self, head_request: bool) -> io::Result<Head> {
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
                        let value = String::from_utf8_lossy(h.value).into_owned();
                        if h.name.eq_ignore_ascii_case("content-length") {
                            length = value.trim().parse::<usize>().ok();
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
                Err(e) => return Err(bad(&format!("bad response head: {e}"))),
            }
        }
    }

    /// Reads a whole body.
    pub async fn read_body(&mut self, framing: Framing) -> io::Result<Vec<u8>> {
        match framing {
            Framing::Empty => Ok(Vec::new()),
            Framing::Length(n) => {
                while self.pending().len() < n {
                    self.fill().await?;
                }
                let body = self.pending()[..n].to_vec();
                self.consume(n);
                Ok(body)
            }
            Framing::Chunked => {
                let mut body = Vec::new();
                while let Some(chunk) = self.read_chunk().await? {
                    body.extend_from_slice(&chunk);
                }
                Ok(body)
            }
            Framing::UntilClose => {
                let mut body = self.pending().to_vec();
                self.buf.clear();
                self.pos = 0;
                loop {
                    let mut more = [0u8; 8192];
                    let n = self.stream.read(&mut more).await?;
                    if n == 0 {
                        return Ok(body);
                    }
                    body.extend_from_slice(&more[..n]);
                }
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
                let size = usize::from_str_radix(hex, 16).map_err(|_| bad("bad chunk size"))?;
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
        while self.pending().len() < size + 2 {
            self.fill().await?;
        }
        let data = self.pending()[..size].to_vec();
        self.consume(size + 2);
        Ok(Some(data))
    }

    /// Whatever bytes of a streamed body arrive next (`framing` of its head).
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
                self.buf.clear();
                self.pos = 0;
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

    pub async fn read_response(&mut self, head_request: bool) -> io::Result<Response> {
        let head = self.read_head(head_request).await?;
        let body = self.read_body(head.framing).await?;
        Ok(Response { head, body })
    }
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// An incremental Server-Sent Events parser: feed it bytes, get whole events.
#[derive(Default)]
pub struct SseParser {
    pending: Vec<u8>,
}

#[derive(Debug, Default)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
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

    #[test]
    fn sse_parser_splits_events_across_pushes() {
        let mut p = SseParser::default();
        assert!(
            p.push(b"retry: 2000\n\n: hi\n\nid: 1\nevent: cre")
                .is_empty()
        );
        let evs = p.push(b"ate\ndata: {\"a\":1}\n\nid: 2\r\ndata: x\r\ndata: y\r\n\r\n");
        assert_eq!(evs.len(), 2);
        assert_eq!(evs[0].id.as_deref(), Some("1"));
        assert_eq!(evs[0].event.as_deref(), Some("create"));
        assert_eq!(evs[0].data, "{\"a\":1}");
        assert_eq!(evs[1].data, "x\ny");
    }
}
