//! Fan-out: N subscribers wait (long-poll or Server-Sent Events), one publisher sends E events
//! at a steady rate, and every subscriber records when each event reaches it. Delivery latency
//! is measured from the moment the publish request is sent to the moment the response (or
//! stream chunk) carrying the event is read by the subscriber.
//!
//! livefeed: `GET /live?after=SEQ&timeout=60` re-polled with `next`, `GET /live/events?after=`,
//! `POST /stories/{story}/entries`. Nchan: `GET /sub?id=CH` re-polled with the previous
//! answer's `Last-Modified`/`Etag` as `If-Modified-Since`/`If-None-Match`, `GET /ev?id=CH`
//! (EventSource), `POST /pub?id=CH`.

use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, watch};

use crate::{procstat, stats};
use h1client::{Conn, SseParser};

#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub enum Server {
    Livefeed,
    Nchan,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub enum Transport {
    Longpoll,
    Sse,
}

#[derive(clap::Args, Debug, Clone)]
pub struct FanoutArgs {
    #[arg(long, value_enum)]
    pub server: Server,
    #[arg(long, value_enum)]
    pub transport: Transport,
    /// The server; given more than once (nodes of one livefeed on a shared log), the
    /// subscribers are spread over them in turn and the publishes go to the first.
    #[arg(long = "addr", required = true)]
    pub addrs: Vec<SocketAddr>,
    #[arg(long, default_value_t = 1000)]
    pub subscribers: usize,
    #[arg(long, default_value_t = 100)]
    pub events: usize,
    /// Publishes per second.
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,
    /// livefeed story to publish into.
    #[arg(long, default_value = "disputes-over-syria-summit-plan")]
    pub story: String,
    /// Nchan channel id.
    #[arg(long, default_value = "bench")]
    pub channel: String,
    /// Server process(es) whose memory and CPU are measured (with their descendants).
    #[arg(long = "pid")]
    pub pids: Vec<u32>,
    /// Characters of body text per published entry.
    #[arg(long, default_value_t = 300)]
    pub payload: usize,
    /// Connections being opened at once.
    #[arg(long, default_value_t = 256)]
    pub connect_concurrency: usize,
    /// How long to wait after the last publish for deliveries.
    #[arg(long, default_value_t = 30.0)]
    pub drain_secs: f64,
    /// How long to wait for every subscriber to be waiting.
    #[arg(long, default_value_t = 180.0)]
    pub ready_secs: f64,
}

struct Shared {
    base: Instant,
    /// When event i was sent: nanoseconds since `base`, plus one (0 = not sent yet).
    sent: Vec<AtomicU64>,
    /// Subscribers that have every event.
    complete: AtomicUsize,
    events: usize,
    host: String,
}

impl Shared {
    fn now(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }
}

#[derive(Deserialize)]
struct Ev {
    entry: EvEntry,
}

#[derive(Deserialize)]
struct EvEntry {
    title: String,
}

#[derive(Deserialize)]
struct Page {
    events: Vec<Ev>,
    next: u64,
}

fn index_of_title(title: &str) -> Option<u32> {
    title.strip_prefix("bench ")?.trim().parse().ok()
}

fn index_of(json: &[u8]) -> Option<u32> {
    let ev: Ev = serde_json::from_slice(json).ok()?;
    index_of_title(&ev.entry.title)
}

/// What one subscriber saw.
#[derive(Default)]
struct Tally {
    /// (event index, arrival in ns since base), first arrivals only.
    recv: Vec<(u32, u64)>,
    seen: Vec<bool>,
    last: Option<u32>,
    dup: u64,
    out_of_order: u64,
    foreign: u64,
    errors: u64,
    reconnects: u64,
    bytes: u64,
    messages: u64,
    connected: bool,
}

impl Tally {
    fn new(events: usize) -> Tally {
        Tally {
            recv: Vec::with_capacity(events),
            seen: vec![false; events],
            ..Tally::default()
        }
    }

    fn record(&mut self, idx: Option<u32>, at: u64, shared: &Shared) {
        self.messages += 1;
        let Some(i) = idx.filter(|&i| (i as usize) < self.seen.len()) else {
            self.foreign += 1;
            return;
        };
        if self.seen[i as usize] {
            self.dup += 1;
            return;
        }
        if self.last.is_some_and(|l| i < l) {
            self.out_of_order += 1;
        }
        self.last = Some(self.last.map_or(i, |l| l.max(i)));
        self.seen[i as usize] = true;
        self.recv.push((i, at));
        if self.recv.len() == shared.events {
            shared.complete.fetch_add(1, Relaxed);
        }
    }
}

async fn open(addr: SocketAddr, gate: &Semaphore, tally: &mut Tally) -> Option<Conn> {
    let _permit = gate.acquire().await.ok()?;
    for attempt in 0..20u64 {
        match Conn::connect(addr).await {
            Ok(c) => {
                tally.connected = true;
                return Some(c);
            }
            Err(_) => {
                tally.errors += 1;
                tokio::time::sleep(Duration::from_millis(50 * (attempt + 1))).await;
            }
        }
    }
    None
}

/// Resolves when the run is over.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    while !*stop.borrow() {
        if stop.changed().await.is_err() {
            return;
        }
    }
}

async fn longpoll_subscriber(
    addr: SocketAddr,
    args: Arc<FanoutArgs>,
    shared: Arc<Shared>,
    gate: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
    mut cursor: u64,
) -> Tally {
    let mut tally = Tally::new(shared.events);
    // Nchan's cursor: the previous answer's Last-Modified and Etag.
    let mut since: Option<(String, String)> = None;
    let mut conn: Option<Conn> = None;
    loop {
        if *stop.borrow() {
            break;
        }
        if conn.is_none() {
            if tally.connected {
                tally.reconnects += 1;
            }
            conn = open(addr, &gate, &mut tally).await;
            if conn.is_none() {
                break;
            }
        }
        let Some(c) = conn.as_mut() else { break };
        let request = match args.server {
            Server::Livefeed => format!(
                "GET /live?after={cursor}&timeout=60 HTTP/1.1\r\nHost: {}\r\n\r\n",
                shared.host
            ),
            Server::Nchan => match &since {
                Some((lm, etag)) => format!(
                    "GET /sub?id={} HTTP/1.1\r\nHost: {}\r\nIf-Modified-Since: {lm}\r\nIf-None-Match: {etag}\r\n\r\n",
                    args.channel, shared.host
                ),
                None => format!(
                    "GET /sub?id={} HTTP/1.1\r\nHost: {}\r\n\r\n",
                    args.channel, shared.host
                ),
            },
        };
        if c.send(request.as_bytes()).await.is_err() {
            tally.errors += 1;
            conn = None;
            continue;
        }
        let res = tokio::select! {
            r = c.read_response(false) => r,
            _ = stopped(&mut stop) => break,
        };
        let at = shared.now();
        let res = match res {
            Ok(r) => r,
            Err(_) => {
                tally.errors += 1;
                conn = None;
                continue;
            }
        };
        if res
            .head
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
        {
            conn = None;
        }
        match (args.server, res.head.status) {
            (Server::Livefeed, 200) => match serde_json::from_slice::<Page>(&res.body) {
                Ok(page) => {
                    if !page.events.is_empty() {
                        tally.bytes += res.body.len() as u64;
                    }
                    for ev in &page.events {
                        tally.record(index_of_title(&ev.entry.title), at, &shared);
                    }
                    cursor = page.next;
                }
                Err(_) => tally.errors += 1,
            },
            (Server::Nchan, 200) => {
                tally.bytes += res.body.len() as u64;
                tally.record(index_of(&res.body), at, &shared);
                let lm = res.head.header("last-modified").unwrap_or("").to_string();
                let etag = res.head.header("etag").unwrap_or("").to_string();
                since = Some((lm, etag));
            }
            // Nchan's answer to a long-poll that timed out; poll again from the same cursor.
            (Server::Nchan, 304 | 408) => {}
            _ => {
                tally.errors += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    tally
}

async fn sse_subscriber(
    addr: SocketAddr,
    args: Arc<FanoutArgs>,
    shared: Arc<Shared>,
    gate: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
    cursor: u64,
) -> Tally {
    let mut tally = Tally::new(shared.events);
    let mut last_id: Option<String> = None;
    'connect: loop {
        if *stop.borrow() {
            break;
        }
        if tally.connected {
            tally.reconnects += 1;
        }
        let Some(mut c) = open(addr, &gate, &mut tally).await else {
            break;
        };
        let path = match args.server {
            Server::Livefeed => format!("/live/events?after={cursor}"),
            Server::Nchan => format!("/ev?id={}", args.channel),
        };
        let resume = last_id
            .as_ref()
            .map(|id| format!("Last-Event-ID: {id}\r\n"))
            .unwrap_or_default();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n{resume}\r\n",
            shared.host
        );
        if c.send(request.as_bytes()).await.is_err() {
            tally.errors += 1;
            continue;
        }
        let head = tokio::select! {
            r = c.read_head(false) => r,
            _ = stopped(&mut stop) => break,
        };
        let head = match head {
            Ok(h) if h.status == 200 => h,
            _ => {
                tally.errors += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let mut parser = SseParser::default();
        loop {
            let chunk = tokio::select! {
                r = c.read_stream(head.framing) => r,
                _ = stopped(&mut stop) => break 'connect,
            };
            let at = shared.now();
            match chunk {
                Ok(Some(bytes)) => {
                    for ev in parser.push(&bytes) {
                        tally.bytes += ev.data.len() as u64;
                        if ev.id.is_some() {
                            last_id.clone_from(&ev.id);
                        }
                        tally.record(index_of(ev.data.as_bytes()), at, &shared);
                    }
                }
                Ok(None) | Err(_) => {
                    tally.errors += 1;
                    continue 'connect;
                }
            }
        }
    }
    tally
}

/// Long-polls or SSE streams waiting on the servers, as they count them.
async fn waiting(args: &FanoutArgs, host: &str) -> std::io::Result<usize> {
    let mut total = 0;
    for addr in &args.addrs {
        total += waiting_at(*addr, args, host).await?;
    }
    Ok(total)
}

async fn waiting_at(addr: SocketAddr, args: &FanoutArgs, host: &str) -> std::io::Result<usize> {
    let mut c = Conn::connect(addr).await?;
    let path = match args.server {
        Server::Livefeed => "/metrics",
        Server::Nchan => "/nchan_status",
    };
    let res = c
        .roundtrip(
            format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
    let text = String::from_utf8_lossy(&res.body);
    let key = match (args.server, args.transport) {
        (Server::Livefeed, Transport::Longpoll) => {
            "livefeed_waiting_subscribers{transport=\"longpoll\"}"
        }
        (Server::Livefeed, Transport::Sse) => "livefeed_waiting_subscribers{transport=\"sse\"}",
        (Server::Nchan, _) => "subscribers:",
    };
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0))
}

/// The log head of a livefeed server.
pub async fn livefeed_head(addr: SocketAddr) -> anyhow::Result<u64> {
    let mut c = Conn::connect(addr).await?;
    let res = c
        .roundtrip(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await?;
    let v: Value = serde_json::from_slice(&res.body)?;
    v["head"]
        .as_u64()
        .ok_or_else(|| anyhow::anyhow!("no head in /healthz: {v}"))
}

pub fn filler(chars: usize, i: usize) -> String {
    let words = [
        "officials",
        "said",
        "the",
        "talks",
        "in",
        "Sochi",
        "went",
        "on",
        "late",
        "into",
        "night",
        "with",
        "leaders",
        "agreeing",
        "to",
        "meet",
        "again",
    ];
    let mut s = String::with_capacity(chars + 16);
    let mut k = i;
    while s.len() < chars {
        s.push_str(words[k % words.len()]);
        s.push(' ');
        k += 7;
    }
    s.truncate(chars);
    s.trim_end().to_string()
}

fn publish_request(args: &FanoutArgs, host: &str, token: &str, i: usize) -> Vec<u8> {
    let text = filler(args.payload, i);
    match args.server {
        Server::Livefeed => {
            let body = json!({ "title": format!("bench {i}"), "body": text }).to_string();
            format!(
                "POST /stories/{}/entries HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                args.story,
                body.len()
            )
            .into_bytes()
        }
        Server::Nchan => {
            // The same shape and about the same size as the event livefeed relays.
            let body = json!({
                "seq": i + 1, "op": "create", "story": args.story,
                "entry": {
                    "story": args.story,
                    "id": format!("tag:www.itv.com,2013-05-10:{}/bench-{i}", args.story),
                    "title": format!("bench {i}"),
                    "published": "2013-05-11T12:00:00Z", "updated": "2013-05-11T12:00:00Z",
                    "summary": text, "content_html": format!("<p>{text}</p>"),
                    "url": format!("https://www.itv.com/news/story/2013-05-10/x/#bench-{i}"),
                }
            })
            .to_string();
            format!(
                "POST /pub?id={} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                args.channel,
                body.len()
            )
            .into_bytes()
        }
    }
}

/// Sends event i at `start + i / rate` whatever happened to the earlier ones: requests are
/// pipelined on one connection (so the server takes them in order) and acknowledgements read as
/// they come. A slow acknowledgement never delays the schedule.
async fn publisher(args: Arc<FanoutArgs>, shared: Arc<Shared>) -> (Vec<u64>, u64) {
    let token = std::env::var("LIVEFEED_TOKEN").unwrap_or_default();
    let stream = match tokio::net::TcpStream::connect(args.addrs[0]).await {
        Ok(s) => s,
        Err(_) => return (Vec::new(), shared.events as u64),
    };
    let _ = stream.set_nodelay(true);
    let (rd, mut wr) = stream.into_split();
    let events = shared.events;
    let acks = {
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let mut reader = Conn::new(rd);
            let mut latencies = Vec::with_capacity(events);
            let mut errors = 0u64;
            for i in 0..events {
                let answer =
                    tokio::time::timeout(Duration::from_secs(60), reader.read_response(false))
                        .await;
                match answer.unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into())) {
                    Ok(res) if (200..=202).contains(&res.head.status) => {
                        let sent = shared.sent[i].load(Relaxed);
                        latencies.push(shared.now().saturating_sub(sent.saturating_sub(1)));
                    }
                    Ok(_) => errors += 1,
                    Err(_) => {
                        errors += (events - i) as u64;
                        break;
                    }
                }
            }
            (latencies, errors)
        })
    };
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate.max(0.001)));
    let mut write_errors = 0u64;
    for i in 0..events {
        tick.tick().await;
        let request = publish_request(&args, &shared.host, &token, i);
        shared.sent[i].store(shared.now() + 1, Relaxed);
        if tokio::io::AsyncWriteExt::write_all(&mut wr, &request)
            .await
            .is_err()
        {
            write_errors += (events - i) as u64;
            break;
        }
    }
    match acks.await {
        Ok((latencies, errors)) => (latencies, errors.max(write_errors)),
        Err(_) => (Vec::new(), events as u64),
    }
}

pub async fn run(args: FanoutArgs) -> anyhow::Result<Map<String, Value>> {
    let args = Arc::new(args);
    let n = args.subscribers;
    let e = args.events;
    let shared = Arc::new(Shared {
        base: Instant::now(),
        sent: (0..e).map(|_| AtomicU64::new(0)).collect(),
        complete: AtomicUsize::new(0),
        events: e,
        host: args.addrs[0].to_string(),
    });
    let cursor = match args.server {
        Server::Livefeed => {
            // Every node answers from the same log position before anyone subscribes.
            let head = livefeed_head(args.addrs[0]).await?;
            for addr in &args.addrs[1..] {
                let deadline = Instant::now() + Duration::from_secs(30);
                while livefeed_head(*addr).await? < head {
                    anyhow::ensure!(Instant::now() < deadline, "{addr} stays behind head {head}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            head
        }
        Server::Nchan => 0,
    };
    let pids = args.pids.clone();
    let mem_base = procstat::pss_kib(&pids);
    let rss_base = procstat::rss_kib(&pids);
    let cpu_start = procstat::cpu_seconds(&pids);

    let (stop_tx, stop_rx) = watch::channel(false);
    let gate = Arc::new(Semaphore::new(args.connect_concurrency.max(1)));
    let started = Instant::now();
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        let addr = args.addrs[i % args.addrs.len()];
        let (a, s, g, st) = (
            Arc::clone(&args),
            Arc::clone(&shared),
            Arc::clone(&gate),
            stop_rx.clone(),
        );
        handles.push(match args.transport {
            Transport::Longpoll => tokio::spawn(longpoll_subscriber(addr, a, s, g, st, cursor)),
            Transport::Sse => tokio::spawn(sse_subscriber(addr, a, s, g, st, cursor)),
        });
    }
    // Wait until the server holds every subscriber.
    let host = shared.host.clone();
    let deadline = Instant::now() + Duration::from_secs_f64(args.ready_secs);
    let mut held = 0;
    while Instant::now() < deadline {
        held = waiting(&args, &host).await.unwrap_or(0);
        if held >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let connect_s = started.elapsed().as_secs_f64();
    let ready = held >= n;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mem_waiting = procstat::pss_kib(&pids);
    let rss_waiting = procstat::rss_kib(&pids);

    let publish_started = Instant::now();
    let (mut publish_lat, publish_errors) = if ready {
        publisher(Arc::clone(&args), Arc::clone(&shared)).await
    } else {
        (Vec::new(), 0)
    };
    let publish_s = publish_started.elapsed().as_secs_f64();
    let drain_deadline = Instant::now() + Duration::from_secs_f64(args.drain_secs);
    while ready && shared.complete.load(Relaxed) < n && Instant::now() < drain_deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let delivered_s = publish_started.elapsed().as_secs_f64();
    let mem_after = procstat::pss_kib(&pids);
    let cpu_s = procstat::cpu_seconds(&pids) - cpu_start;
    let _ = stop_tx.send(true);

    let mut latencies: Vec<u64> = Vec::with_capacity(n * e);
    // Per event: when the last subscriber got it.
    let mut last_arrival = vec![0u64; e];
    let mut delivered_to = vec![0usize; e];
    let (mut dup, mut ooo, mut foreign, mut errors, mut reconnects) = (0, 0, 0, 0, 0);
    let (mut bytes, mut messages, mut received) = (0u64, 0u64, 0usize);
    let mut subscribers_complete = 0usize;
    for h in handles {
        let t = h.await?;
        dup += t.dup;
        ooo += t.out_of_order;
        foreign += t.foreign;
        errors += t.errors;
        reconnects += t.reconnects;
        bytes += t.bytes;
        messages += t.messages;
        received += t.recv.len();
        if t.recv.len() == e {
            subscribers_complete += 1;
        }
        for (i, at) in t.recv {
            let sent = shared.sent[i as usize].load(Relaxed);
            if sent == 0 || at + 1 < sent {
                foreign += 1;
                continue;
            }
            let lat = at + 1 - sent;
            latencies.push(lat);
            last_arrival[i as usize] = last_arrival[i as usize].max(lat);
            delivered_to[i as usize] += 1;
        }
    }
    let mut out = Map::new();
    let server = match args.server {
        Server::Livefeed => "livefeed",
        Server::Nchan => "nchan",
    };
    let transport = match args.transport {
        Transport::Longpoll => "longpoll",
        Transport::Sse => "sse",
    };
    out.insert("server".into(), json!(server));
    out.insert("transport".into(), json!(transport));
    out.insert("subscribers".into(), json!(n));
    out.insert("nodes".into(), json!(args.addrs.len()));
    out.insert("events".into(), json!(e));
    out.insert("rate".into(), json!(args.rate));
    out.insert("ready".into(), json!(ready));
    out.insert("held_at_start".into(), json!(held));
    out.insert("connect_s".into(), json!(round3(connect_s)));
    out.insert("publish_s".into(), json!(round3(publish_s)));
    out.insert("delivered_s".into(), json!(round3(delivered_s)));
    for (k, v) in stats::summary(&mut latencies, "") {
        out.insert(k, v);
    }
    // Time for an event to reach every subscriber that got it.
    let mut all: Vec<u64> = last_arrival
        .iter()
        .zip(&delivered_to)
        .filter(|(_, d)| **d > 0)
        .map(|(l, _)| *l)
        .collect();
    for (k, v) in stats::summary(&mut all, "all_") {
        out.insert(k, v);
    }
    let expected = (n * e) as u64;
    out.insert("expected".into(), json!(expected));
    out.insert("delivered".into(), json!(received));
    out.insert("lost".into(), json!(expected - received as u64));
    out.insert("duplicated".into(), json!(dup));
    out.insert("out_of_order".into(), json!(ooo));
    out.insert("foreign".into(), json!(foreign));
    out.insert("subscribers_complete".into(), json!(subscribers_complete));
    out.insert("errors".into(), json!(errors));
    out.insert("reconnects".into(), json!(reconnects));
    out.insert(
        "bytes_per_event".into(),
        json!(bytes.checked_div(messages).unwrap_or(0)),
    );
    for (k, v) in stats::summary(&mut publish_lat, "publish_") {
        out.insert(k, v);
    }
    out.insert("publish_errors".into(), json!(publish_errors));
    out.insert("mem_base_kib".into(), json!(mem_base));
    out.insert("mem_waiting_kib".into(), json!(mem_waiting));
    out.insert("mem_after_kib".into(), json!(mem_after));
    out.insert("rss_base_kib".into(), json!(rss_base));
    out.insert("rss_waiting_kib".into(), json!(rss_waiting));
    out.insert(
        "mem_per_subscriber_kib".into(),
        json!(round3(
            (mem_waiting as f64 - mem_base as f64) / n.max(1) as f64
        )),
    );
    out.insert("server_cpu_s".into(), json!(round3(cpu_s)));
    Ok(out)
}

pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
