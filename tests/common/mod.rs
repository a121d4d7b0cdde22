//! A harness for the server's integration tests: a temporary copy of `data/`, the real server
//! (`livefeed::http::serve`) on 127.0.0.1:0 in this process, stopped through a oneshot and
//! started again on the same directory, and a small Server-Sent Events reader. Submodules:
//! [`process`] runs the real binary, [`raw`] is a minimal HTTP/1.1 client over raw sockets,
//! [`rng`] a seeded generator for stress schedules.

#![allow(dead_code)]

pub mod process;
pub mod raw;
pub mod rng;

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use livefeed::http::{Config, serve};
use livefeed::ingest::site::Site;
use livefeed::log::store::Store;
use livefeed::log::{Relay, file_store};

/// The publish token of servers started with one.
pub const TOKEN: &str = "test-token-0123456789abcdef";
/// The story with five live entries, and the one-entry article.
pub const LIVE: &str = "disputes-over-syria-summit-plan";
pub const ARTICLE: &str = "anglo-russian-differences-over-syria";
/// Events the seed data makes on first start: five live entries and the article.
pub const SEED: u64 = 6;

/// How long any single wait in a test may take before it fails instead of hanging.
pub const PATIENCE: Duration = Duration::from_secs(20);

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A temporary site: `data/` (the repository's reports and manifest) and `log/` beside it.
/// Copies the repository's data files (the manifest and the reports) into `into/data` and
/// nothing else: what a run left in the checkout (`data/log/` from the README's `serve`) is
/// not a test's input.
pub fn copy_data(into: &Path) -> PathBuf {
    copy_data_from(&repo().join("data"), into)
}

/// [`copy_data`] from any data directory.
pub fn copy_data_from(from: &Path, into: &Path) -> PathBuf {
    let data = into.join("data");
    std::fs::create_dir(&data).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_file() && (name.ends_with(".txt") || name == "stories.toml") {
            std::fs::copy(&path, data.join(&name)).unwrap();
        }
    }
    data
}

pub struct TestSite {
    pub dir: tempfile::TempDir,
    pub token: Option<String>,
    pub config: Config,
}

impl TestSite {
    /// A copy of the repository's data, with publishing on.
    pub fn new() -> TestSite {
        TestSite::with_token(Some(TOKEN))
    }

    pub fn with_token(token: Option<&str>) -> TestSite {
        let dir = tempfile::tempdir().expect("a temporary directory");
        copy_data(dir.path());
        TestSite {
            dir,
            token: token.map(str::to_string),
            config: Config::default(),
        }
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn log(&self) -> PathBuf {
        self.dir.path().join("log")
    }

    /// The files `livefeed build` writes for the data as it is now.
    pub fn static_build(&self) -> std::collections::BTreeMap<String, Vec<u8>> {
        livefeed::render::render_site(&Site::load(&self.data(), None).expect("the data loads"))
    }

    /// Starts the real server on an ephemeral port, watching the data directory.
    pub async fn start(&self) -> Server {
        self.start_with(file_store(&self.log())).await
    }

    /// Starts the server on `store` instead of the embedded file log in [`TestSite::log`].
    pub async fn start_with(&self, store: Box<dyn Store>) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let data = self.data();
        let relay = tokio::task::spawn_blocking(move || {
            let site = Site::load(&data, None).expect("the data loads");
            Relay::open(site, store, 1_000_000).expect("the relay opens")
        })
        .await
        .unwrap();
        let config = Config {
            token: self.token.clone(),
            ..self.config.clone()
        };
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let stop = async move {
            let _ = stop_rx.await;
        };
        let task = tokio::spawn(serve(
            listener,
            relay,
            config,
            Some((self.data(), None)),
            stop,
            Duration::from_secs(5),
        ));
        Server {
            base: format!("http://{addr}"),
            http: client(),
            token: self.token.clone(),
            stop: Some(stop_tx),
            task: Some(task),
        }
    }
}

/// A client that never uses a proxy, asks for no compression, and gives up on a hang.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(90))
        .build()
        .unwrap()
}

/// A running server.
pub struct Server {
    pub base: String,
    pub http: reqwest::Client,
    pub token: Option<String>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Shuts the server down gracefully and waits until it has stopped (the log flushed).
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let task = self.task.take().unwrap();
        let result = tokio::time::timeout(PATIENCE, task)
            .await
            .expect("the server stops in time")
            .expect("the server task does not panic");
        result.expect("the server stops cleanly");
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.unwrap()
    }

    /// `GET /live?{query}`: the status and the JSON body.
    pub async fn live(&self, query: &str) -> (reqwest::StatusCode, Value) {
        let res = self.get(&format!("/live?{query}")).await;
        let status = res.status();
        (status, res.json().await.unwrap())
    }

    /// Every event after `after`, read with `timeout=0` pages.
    pub async fn events_after(&self, after: u64) -> Vec<Value> {
        let mut cursor = after;
        let mut out = Vec::new();
        loop {
            let (status, body) = self
                .live(&format!("after={cursor}&timeout=0&limit=1000"))
                .await;
            assert_eq!(status, 200, "{body}");
            let events = body["events"].as_array().unwrap();
            if events.is_empty() {
                return out;
            }
            out.extend(events.iter().cloned());
            cursor = body["next"].as_u64().unwrap();
        }
    }

    /// Long-polls from `after` until `n` events have arrived (or fails after [`PATIENCE`]).
    pub async fn wait_for_events(&self, after: u64, n: usize) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        let mut cursor = after;
        let mut out = Vec::new();
        while out.len() < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "only {} of {n} events after {after} arrived: {out:#?}",
                out.len()
            );
            let (status, body) = self.live(&format!("after={cursor}&timeout=2")).await;
            assert_eq!(status, 200, "{body}");
            out.extend(body["events"].as_array().unwrap().iter().cloned());
            cursor = body["next"].as_u64().unwrap();
        }
        out
    }

    /// The head of the log, from `/healthz`.
    pub async fn head(&self) -> u64 {
        let body: Value = self.get("/healthz").await.json().await.unwrap();
        body["head"].as_u64().unwrap()
    }

    /// A request to a publishing route with the server's token.
    pub fn authed(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let req = self.http.request(method, self.url(path));
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    /// Publishes an entry and returns the 201 answer (`id`, `seq`, `url`, `op`).
    pub async fn publish(&self, story: &str, title: &str, body: &str) -> Value {
        let res = self
            .authed(reqwest::Method::POST, &format!("/stories/{story}/entries"))
            .json(&json!({ "title": title, "body": body }))
            .send()
            .await
            .unwrap();
        let status = res.status();
        let answer: Value = res.json().await.unwrap();
        assert_eq!(status, 201, "{answer}");
        answer
    }
}

/// The anchor of an entry from its `url` (the part after `#`).
pub fn anchor(url: &str) -> &str {
    url.rsplit_once('#')
        .map(|(_, a)| a)
        .expect("the url has an anchor")
}

/// Percent-encodes everything but unreserved characters, for a path segment.
pub fn encode_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Decompresses a gzip body.
pub fn gunzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("a valid gzip stream");
    out
}

/// One Server-Sent Events frame (the lines up to a blank line).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Frame {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: Option<String>,
    pub retry: Option<u64>,
    pub comments: Vec<String>,
}

/// A live event read from the SSE stream.
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub seq: u64,
    /// The frame's `id:` as sent (`EPOCH:SEQ`); empty for in-band notices.
    pub id: String,
    pub op: String,
    pub data: Value,
}

/// Reads a `text/event-stream` response frame by frame with `chunk()`.
pub struct Sse {
    res: reqwest::Response,
    buf: Vec<u8>,
    /// Every frame read so far, in order (comments and `retry:` included).
    pub frames: Vec<Frame>,
}

impl Sse {
    /// Opens `GET /live/events?{query}`, with `Last-Event-ID` when given.
    pub async fn connect(server: &Server, query: &str, last_event_id: Option<u64>) -> Sse {
        // No overall timeout: the stream stays open; each read has its own below.
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let mut req = http.get(server.url(&format!("/live/events?{query}")));
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id.to_string());
        }
        Sse::open(req).await
    }

    /// Opens `GET /live/events?{query}` with `Last-Event-ID: {id}` exactly as given.
    pub async fn connect_with_id(server: &Server, query: &str, id: &str) -> Sse {
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let req = http
            .get(server.url(&format!("/live/events?{query}")))
            .header("Last-Event-ID", id);
        Sse::open(req).await
    }

    async fn open(req: reqwest::RequestBuilder) -> Sse {
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(
            res.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        assert_eq!(res.headers()["cache-control"], "no-store");
        assert_eq!(res.headers()["access-control-allow-origin"], "*");
        Sse {
            res,
            buf: Vec::new(),
            frames: Vec::new(),
        }
    }

    /// The next frame; fails the test if none comes within [`PATIENCE`] or the stream ends.
    pub async fn frame(&mut self) -> Frame {
        self.try_frame(PATIENCE)
            .await
            .expect("an SSE frame arrives in time")
    }

    /// The next frame within `wait`, or `None`.
    pub async fn try_frame(&mut self, wait: Duration) -> Option<Frame> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let raw: Vec<u8> = self.buf.drain(..end + 2).collect();
                let frame = parse_frame(std::str::from_utf8(&raw[..end]).expect("UTF-8 frames"));
                self.frames.push(frame.clone());
                return Some(frame);
            }
            match tokio::time::timeout_at(deadline, self.res.chunk()).await {
                Err(_) => return None,
                Ok(Ok(Some(bytes))) => self.buf.extend_from_slice(&bytes),
                Ok(Ok(None)) => panic!("the SSE stream ended; unread: {:?}", self.buf),
                Ok(Err(e)) => panic!("reading the SSE stream failed: {e}"),
            }
        }
    }

    /// The next event frame (skipping `retry:` and comment frames).
    pub async fn event(&mut self) -> SseEvent {
        loop {
            let frame = self.frame().await;
            if let Some(event) = as_event(&frame) {
                return event;
            }
        }
    }

    /// The next event within `wait`, or `None` when none came.
    pub async fn try_event(&mut self, wait: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let frame = self.try_frame(left).await?;
            if let Some(event) = as_event(&frame) {
                return Some(event);
            }
        }
    }
}

fn as_event(frame: &Frame) -> Option<SseEvent> {
    let data = frame.data.as_ref()?;
    let op = frame.event.clone().unwrap_or_else(|| "message".into());
    let data: Value = serde_json::from_str(data).expect("SSE data is JSON");
    let seq = match &frame.id {
        Some(id) => {
            let seq = seq_of_id(id);
            assert_eq!(data["seq"], seq, "id: and the data's seq agree");
            assert_eq!(data["op"], op.as_str(), "event: and the data's op agree");
            seq
        }
        // In-band notices (`reset`) carry no id.
        None => 0,
    };
    let id = frame.id.clone().unwrap_or_default();
    Some(SseEvent { seq, id, op, data })
}

/// The seq of an SSE `id:` (`EPOCH:SEQ`, the epoch in hexadecimal).
pub fn seq_of_id(id: &str) -> u64 {
    let (epoch, seq) = id
        .split_once(':')
        .unwrap_or_else(|| panic!("SSE id {id:?} is EPOCH:SEQ"));
    assert!(
        epoch.len() == 16 && epoch.bytes().all(|b| b.is_ascii_hexdigit()),
        "SSE id {id:?}: the epoch is 16 hexadecimal digits"
    );
    seq.parse()
        .unwrap_or_else(|_| panic!("SSE id {id:?}: SEQ is a number"))
}

/// Parses one frame's lines as the SSE specification reads them.
pub fn parse_frame(text: &str) -> Frame {
    let mut frame = Frame::default();
    for line in text.split('\n') {
        if let Some(comment) = line.strip_prefix(':') {
            frame.comments.push(comment.trim().to_string());
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "id" => frame.id = Some(value.to_string()),
            "event" => frame.event = Some(value.to_string()),
            "data" => {
                let data = frame.data.get_or_insert_with(String::new);
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(value);
            }
            "retry" => frame.retry = Some(value.parse().expect("retry: is a number")),
            other => panic!("unexpected SSE field {other:?} in {text:?}"),
        }
    }
    frame
}

/// Raises this process's soft limit on open files to `needed` (servers it starts inherit it);
/// fails naming `ulimit -Hn` when the hard limit is lower.
pub fn raise_fd_limit(needed: u64) {
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        if lim.rlim_cur < needed as libc::rlim_t {
            assert!(
                lim.rlim_max >= needed as libc::rlim_t,
                "this test needs {needed} open files; the hard limit is {} (raise `ulimit -Hn`)",
                lim.rlim_max
            );
            lim.rlim_cur = needed as libc::rlim_t;
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
        }
    }
}
