//! A deliberately small HTTP/1.1 client over a raw `TcpStream`: keep-alive, `Content-Length`
//! and chunked bodies, and a streamed body read chunk by chunk (for Server-Sent Events). Used
//! where a full client costs too much (thousands of subscribers in a debug build) or cannot
//! express the request (hostile input).

use std::io;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A response head.
#[derive(Debug, Clone)]
pub struct Head {
    pub status: u16,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn chunked(&self) -> bool {
        self.header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
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

fn invalid(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

/// One connection.
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Chunked body being streamed: bytes left in the current chunk, or `None` between chunks.
    chunk_left: Option<usize>,
}

impl Conn {
    /// `addr` is `host:port` (a base URL's `http://` is stripped).
    pub async fn connect(addr: &str) -> io::Result<Conn> {
        let addr = addr.trim_start_matches("http://").trim_end_matches('/');
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: Vec::new(),
            chunk_left: None,
        })
    }

    pub fn stream(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    pub async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// Reads more bytes into the buffer; an error at end of stream.
    async fn fill(&mut self) -> io::Result<()> {
        let mut tmp = [0u8; 16 * 1024];
        let n = self.stream.read(&mut tmp).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        self.buf.extend_from_slice(&tmp[..n]);
        Ok(())
    }

    async fn line(&mut self) -> io::Result<String> {
        loop {
            if let Some(end) = find(&self.buf, b"\r\n") {
                let line = self.take(end + 2);
                return String::from_utf8(line[..end].to_vec()).map_err(|_| invalid("not UTF-8"));
            }
            self.fill().await?;
        }
    }

    /// The first `n` buffered bytes (copied in one go: byte-wise iteration is slow in debug).
    fn take(&mut self, n: usize) -> Vec<u8> {
        let rest = self.buf.split_off(n);
        std::mem::replace(&mut self.buf, rest)
    }

    async fn exact(&mut self, n: usize) -> io::Result<Vec<u8>> {
        while self.buf.len() < n {
            self.fill().await?;
        }
        Ok(self.take(n))
    }

    /// Reads a response head (skipping `100 Continue`).
    pub async fn head(&mut self) -> io::Result<Head> {
        loop {
            let status_line = self.line().await?;
            let status = status_line
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| invalid(format!("bad status line {status_line:?}")))?;
            let mut headers = Vec::new();
            loop {
                let line = self.line().await?;
                if line.is_empty() {
                    break;
                }
                let (name, value) = line
                    .split_once(':')
                    .ok_or_else(|| invalid(format!("bad header {line:?}")))?;
                headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
            }
            if status != 100 {
                self.chunk_left = None;
                return Ok(Head { status, headers });
            }
        }
    }

    /// The next piece of a chunked body, or `None` at its end.
    pub async fn chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        let left = match self.chunk_left {
            Some(n) => n,
            None => {
                let size_line = self.line().await?;
                let size = usize::from_str_radix(size_line.split(';').next().unwrap().trim(), 16)
                    .map_err(|_| invalid(format!("bad chunk size {size_line:?}")))?;
                if size == 0 {
                    // Trailers, then the blank line.
                    while !self.line().await?.is_empty() {}
                    return Ok(None);
                }
                size
            }
        };
        if self.buf.is_empty() {
            self.fill().await?;
        }
        let take = left.min(self.buf.len());
        let data = self.take(take);
        if take == left {
            self.exact(2).await?; // the chunk's CRLF
            self.chunk_left = None;
        } else {
            self.chunk_left = Some(left - take);
        }
        Ok(Some(data))
    }

    /// Reads a whole response: `Content-Length`, chunked, or (for `no_body`) none.
    pub async fn response(&mut self, no_body: bool) -> io::Result<Response> {
        let head = self.head().await?;
        let mut body = Vec::new();
        if no_body || head.status == 204 || head.status == 304 {
        } else if head.chunked() {
            while let Some(piece) = self.chunk().await? {
                body.extend_from_slice(&piece);
            }
        } else if let Some(len) = head.header("content-length") {
            let len: usize = len.parse().map_err(|_| invalid("bad content-length"))?;
            body = self.exact(len).await?;
        } else {
            // Until the server closes.
            loop {
                match self.fill().await {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
                    Err(e) => return Err(e),
                }
            }
            body = std::mem::take(&mut self.buf);
        }
        Ok(Response { head, body })
    }

    /// `GET path` on this connection (kept alive), with extra header lines.
    pub async fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> io::Result<Response> {
        self.send(&request("GET", path, headers, None)).await?;
        self.response(false).await
    }

    /// Everything the server sends until it closes the connection (or `wait` passes: `Err`).
    pub async fn read_to_close(&mut self, wait: Duration) -> io::Result<Vec<u8>> {
        let mut out = std::mem::take(&mut self.buf);
        let mut tmp = [0u8; 16 * 1024];
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.stream.read(&mut tmp)).await {
                Err(_) => return Err(io::Error::new(io::ErrorKind::TimedOut, "still open")),
                Ok(Ok(0)) => return Ok(out),
                // A reset after the answer counts as closed.
                Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(out),
                Ok(Err(e)) => return Err(e),
                Ok(Ok(n)) => out.extend_from_slice(&tmp[..n]),
            }
        }
    }
}

/// An HTTP/1.1 request with `Host`, the given header lines and an optional body.
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
    // `str::find` is the standard library's optimised search; bytes that are not UTF-8 are
    // searched for with the slow path.
    match std::str::from_utf8(hay) {
        Ok(s) if needle.is_ascii() => s.find(std::str::from_utf8(needle).unwrap()),
        _ => hay.windows(needle.len()).position(|w| w == needle),
    }
}
