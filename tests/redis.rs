//! Several relay nodes on one shared log in Redis Streams, end to end: a real `redis-server`
//! (started here on 127.0.0.1, a free port and a temporary directory, with
//! `deploy/redis/redis.conf`: `appendonly yes`, `appendfsync always`, no snapshots) and real
//! `livefeed serve --store redis://…`
//! processes. Publishers spread over every node; every subscriber of every node must see each
//! seq exactly once, in order; the stream must hold exactly what was acknowledged; and nodes,
//! Redis and connections are killed on the way.
//!
//! Without `redis-server` (Debian package `redis-server`) these tests fail when
//! `LIVEFEED_REQUIRE_REDIS=1` (as in CI), and say loudly that they did not run otherwise.

mod common;

use common::process::{Proc, serve_command};
use common::{LIVE, PATIENCE, SEED, TOKEN, copy_data};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use livefeed::log::event::{Event, Op, Source};
use livefeed::log::redis::RedisStore;
use livefeed::log::store::{Store, StoreError};
use livefeed::model::Entry;

/// An `XRANGE` entry: its id, and its fields with their values.
type StreamEntry = (String, Vec<(String, Vec<u8>)>);

/// `program` on this machine, or `None` after saying loudly that the test does not run (a
/// failure naming the Debian package when `LIVEFEED_REQUIRE_REDIS=1`).
fn tool(program: &str, package: &str) -> Option<PathBuf> {
    let found = [Path::new(program).to_path_buf()]
        .into_iter()
        .chain(["/usr/sbin", "/usr/bin"].map(|d| Path::new(d).join(program)))
        .find(|p| {
            Command::new(p)
                .arg(if program == "nginx" {
                    "-v"
                } else {
                    "--version"
                })
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
    if found.is_none() {
        let why = format!(
            "{program} is not installed (Debian package: {package}; `apt-get install {package}`)"
        );
        if std::env::var("LIVEFEED_REQUIRE_REDIS").as_deref() == Ok("1") {
            panic!("{why}, and LIVEFEED_REQUIRE_REDIS=1 requires it");
        }
        // Straight to stderr: the test harness shows no captured output of a passing test.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "\n*** NOT RUN: {why}; set LIVEFEED_REQUIRE_REDIS=1 to fail instead ***\n"
        );
    }
    found
}

/// A `redis-server` of this test, on its own port and directory.
struct Redis {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    extra: Vec<String>,
}

impl Redis {
    /// Starts one, or `None` (after saying why) when `redis-server` is missing and not required.
    fn start(dir: &Path) -> Option<Redis> {
        Redis::start_with(dir, &[])
    }

    /// [`Redis::start`] with more `redis-server` arguments (later ones win).
    fn start_with(dir: &Path, extra: &[&str]) -> Option<Redis> {
        tool("redis-server", "redis-server")?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = dir.join("redis");
        std::fs::create_dir_all(&dir).unwrap();
        let mut redis = Redis {
            child: None,
            port,
            dir,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        redis.restart();
        Some(redis)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Starts the server (again) on the same port and directory, and waits until it answers.
    fn restart(&mut self) {
        // The configuration the README recommends (appendonly yes, appendfsync always, no
        // snapshots, noeviction), on this test's port and directory.
        let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/redis/redis.conf");
        let child = Command::new("redis-server")
            .arg(conf)
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .arg("--dir")
            .arg(&self.dir)
            .args(["--daemonize", "no"])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + PATIENCE;
        loop {
            let ping = self
                .conn_once()
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c).ok());
            if ping.as_deref() == Some("PONG") {
                return;
            }
            assert!(Instant::now() < deadline, "redis-server did not answer");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn conn_once(&self) -> Option<redis::Connection> {
        redis::Client::open(self.url())
            .ok()?
            .get_connection_with_timeout(Duration::from_secs(2))
            .ok()
    }

    fn conn(&self) -> redis::Connection {
        self.conn_once()
            .expect("a connection to the test's redis-server")
    }

    /// SIGKILL, then reap.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The seqs of the stream's entries, in order, checked against their payloads.
    fn stream(&self) -> Vec<(u64, Value)> {
        let entries: Vec<StreamEntry> = redis::cmd("XRANGE")
            .arg("{livefeed}:events")
            .arg("-")
            .arg("+")
            .query(&mut self.conn())
            .unwrap();
        entries
            .into_iter()
            .map(|(id, fields)| {
                let seq: u64 = id.strip_suffix("-0").unwrap().parse().unwrap();
                let event: Value = serde_json::from_slice(&fields[0].1).unwrap();
                assert_eq!(event["seq"], seq, "entry {id} holds event {event}");
                (seq, event)
            })
            .collect()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts `n` nodes at once on one data directory.
async fn nodes(data: &Path, redis: &Redis, n: usize) -> (Vec<Proc>, Vec<String>) {
    let started = futures_join(
        (0..n)
            .map(|_| {
                let mut cmd = serve_command(data);
                cmd.args(["--store", &redis.url()])
                    .env("LIVEFEED_TOKEN", TOKEN);
                Proc::start(cmd)
            })
            .collect(),
    )
    .await;
    started.into_iter().unzip()
}

async fn futures_join(procs: Vec<Proc>) -> Vec<(Proc, String)> {
    let tasks: Vec<_> = procs
        .into_iter()
        .map(|mut p| {
            tokio::spawn(async move {
                let base = p.ready().await.expect("the node starts");
                (p, base)
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Publishes `title` with `key` to one of `bases` (the `i`-th first, the others after it), and
/// again with the same key after a 503 or a refused connection, until a node answers 201: the
/// answer's seq.
async fn publish_until_taken(
    http: &reqwest::Client,
    bases: &[String],
    i: usize,
    key: &str,
    title: &str,
) -> u64 {
    let deadline = Instant::now() + 2 * PATIENCE;
    for attempt in 0.. {
        assert!(Instant::now() < deadline, "{key} was never taken");
        let base = &bases[(i + attempt) % bases.len()];
        let sent = http
            .post(format!("{base}/stories/{LIVE}/entries"))
            .bearer_auth(TOKEN)
            .header("Idempotency-Key", key)
            .json(&json!({ "title": title, "body": "Text." }))
            .send()
            .await;
        match sent {
            Ok(res) if res.status() == 201 => {
                let body: Value = res.json().await.unwrap();
                return body["seq"].as_u64().unwrap();
            }
            // Refused by a node (503), or by nginx in front of a node that went away (502,
            // 504): the same key again.
            Ok(res) if matches!(res.status().as_u16(), 502..=504) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok(res) => panic!("{key}: {} {}", res.status(), res.text().await.unwrap()),
            // A node that was killed: the next one.
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    unreachable!()
}

/// The epoch a node's `/healthz` names.
async fn epoch_of(http: &reqwest::Client, base: &str) -> String {
    let body: Value = http
        .get(format!("{base}/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["epoch"].as_str().unwrap().to_string()
}

/// `publishers` tasks publishing `each` entries each through `bases`, with the key (and title)
/// `p{p}-{k}`, the first attempt on node `first(p, k)`; each task returns what it got
/// acknowledged.
fn publish_in_parallel(
    http: &reqwest::Client,
    bases: &[String],
    publishers: usize,
    each: usize,
    first: fn(usize, usize) -> usize,
) -> Vec<tokio::task::JoinHandle<Vec<(u64, String)>>> {
    (0..publishers)
        .map(|p| {
            let (http, bases) = (http.clone(), bases.to_vec());
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for k in 0..each {
                    let key = format!("p{p}-{k}");
                    let seq = publish_until_taken(&http, &bases, first(p, k), &key, &key).await;
                    acked.push((seq, key));
                }
                acked
            })
        })
        .collect()
}

/// Every publish the tasks got acknowledged, by seq; a seq acknowledged twice fails the test.
async fn acknowledged(
    publishers: Vec<tokio::task::JoinHandle<Vec<(u64, String)>>>,
) -> BTreeMap<u64, String> {
    let mut acked = BTreeMap::new();
    for p in publishers {
        for (seq, key) in p.await.unwrap() {
            assert!(
                acked.insert(seq, key).is_none(),
                "seq {seq} acknowledged twice"
            );
        }
    }
    acked
}

/// Long-polls `bases[0]` (then the next node when one stops answering) from `after` until
/// `until`, and returns every seq seen, in the order seen.
async fn subscribe(http: reqwest::Client, bases: Vec<String>, after: u64, until: u64) -> Vec<u64> {
    let deadline = Instant::now() + 3 * PATIENCE;
    let (mut cursor, mut seen, mut node) = (after, Vec::new(), 0);
    while cursor < until {
        assert!(
            Instant::now() < deadline,
            "subscriber stuck at {cursor} of {until}"
        );
        let url = format!("{}/live?after={cursor}&timeout=2&limit=1000", bases[node]);
        let body: Value = match http.get(&url).send().await {
            Ok(res) if res.status() == 200 => res.json().await.unwrap(),
            // nginx in front of a node that went away: again, with the same cursor.
            Ok(res) if matches!(res.status().as_u16(), 502 | 504) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            Ok(res) => panic!("{url}: {} {}", res.status(), res.text().await.unwrap()),
            Err(_) => {
                // That node is gone: resume on the next with the same cursor.
                node = (node + 1) % bases.len();
                continue;
            }
        };
        for e in body["events"].as_array().unwrap() {
            seen.push(e["seq"].as_u64().unwrap());
        }
        cursor = body["next"].as_u64().unwrap();
    }
    seen
}

/// The same over Server-Sent Events: `GET /live/events?after=…` on `bases[0]`, resumed on the
/// next node with `Last-Event-ID` when the stream breaks.
async fn subscribe_sse(bases: Vec<String>, after: u64, until: u64) -> Vec<u64> {
    // No overall timeout: the stream stays open; each read has its own below.
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let deadline = Instant::now() + 3 * PATIENCE;
    let (mut last, mut seen, mut node) = (after, Vec::new(), 0);
    'connect: while last < until {
        assert!(
            Instant::now() < deadline,
            "SSE subscriber stuck at {last} of {until}"
        );
        let url = format!("{}/live/events?after={after}", bases[node]);
        let sent = http
            .get(&url)
            .header("Last-Event-ID", last.to_string())
            .send()
            .await;
        let mut res = match sent {
            Ok(res) if res.status() == 200 => res,
            Ok(res) if matches!(res.status().as_u16(), 502 | 504) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            Ok(res) => panic!("{url}: {}", res.status()),
            Err(_) => {
                node = (node + 1) % bases.len();
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let mut buf = String::new();
        while last < until {
            let chunk = match tokio::time::timeout(PATIENCE, res.chunk()).await {
                Ok(Ok(Some(chunk))) => chunk,
                // The node went away: the next one, from the last id seen.
                Ok(Ok(None) | Err(_)) => {
                    node = (node + 1) % bases.len();
                    continue 'connect;
                }
                Err(_) => panic!("no SSE frame from {url} in time (at {last})"),
            };
            buf.push_str(std::str::from_utf8(&chunk).unwrap());
            while let Some(end) = buf.find("\n\n") {
                let frame: String = buf.drain(..end + 2).collect();
                if frame.lines().any(|l| l == "event: reset") {
                    panic!("{url}: reset at {last}: {frame}");
                }
                if let Some(id) = frame.lines().find_map(|l| l.strip_prefix("id: ")) {
                    let seq = common::seq_of_id(id);
                    seen.push(seq);
                    last = seq;
                }
            }
        }
    }
    seen
}

/// Checks that `seen` is exactly `after + 1 ..= until`, in order.
fn exactly_once_in_order(who: &str, seen: &[u64], after: u64, until: u64) {
    let want: Vec<u64> = (after + 1..=until).collect();
    assert_eq!(seen, want, "{who} saw another sequence");
}

/// Three nodes started at once on one data directory and one Redis: the reports are relayed
/// once; then eight publishers spread over all three nodes, long-poll subscribers on each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_share_one_log_and_every_subscriber_sees_each_event_once_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(redis) = Redis::start(tmp.path()) else {
        return;
    };
    let data = copy_data(tmp.path());
    let (_procs, bases) = nodes(&data, &redis, 3).await;
    // The reports became exactly one set of events, whichever node relayed them.
    let titles: Vec<Value> = redis
        .stream()
        .into_iter()
        .map(|(_, e)| e["entry"]["title"].clone())
        .collect();
    assert_eq!(titles.len() as u64, SEED, "{titles:#?}");
    let http = http();
    const PUBLISHERS: usize = 8;
    const EACH: usize = 10;
    let total = SEED + (PUBLISHERS * EACH) as u64;
    let subscribers: Vec<_> = (0..bases.len())
        .map(|i| {
            let mut order = bases.clone();
            order.rotate_left(i);
            tokio::spawn(subscribe(http.clone(), order, 0, total))
        })
        .collect();
    let streams: Vec<_> = (0..bases.len())
        .map(|i| {
            let mut order = bases.clone();
            order.rotate_left(i);
            tokio::spawn(subscribe_sse(order, 0, total))
        })
        .collect();
    let publishers = publish_in_parallel(&http, &bases, PUBLISHERS, EACH, |p, k| p + k);
    let acked = acknowledged(publishers).await;
    assert_eq!(
        acked.keys().copied().collect::<Vec<_>>(),
        (SEED + 1..=total).collect::<Vec<_>>()
    );
    for (i, s) in subscribers.into_iter().enumerate() {
        exactly_once_in_order(
            &format!("subscriber of node {i}"),
            &s.await.unwrap(),
            0,
            total,
        );
    }
    for (i, s) in streams.into_iter().enumerate() {
        let seen = s.await.unwrap();
        exactly_once_in_order(&format!("SSE stream of node {i}"), &seen, 0, total);
    }
    // The stream holds exactly the acknowledged entries, each with its key.
    let stream = redis.stream();
    assert_eq!(stream.len() as u64, total);
    for (seq, event) in &stream[SEED as usize..] {
        assert_eq!(event["idempotency_key"], acked[seq].as_str(), "entry {seq}");
    }
    // Each node counts the appends Redis refused because another node appended first.
    for base in &bases {
        let metrics = http
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let conflicts = metrics
            .lines()
            .find_map(|l| l.strip_prefix("livefeed_store_conflicts_total "))
            .unwrap_or_else(|| panic!("no conflict count at {base}: {metrics}"));
        assert!(conflicts.trim().parse::<u64>().is_ok(), "{conflicts}");
    }
}

/// The same Idempotency-Key sent to two nodes at once makes one entry, and both get its answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_key_sent_to_two_nodes_makes_one_entry() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(redis) = Redis::start(tmp.path()) else {
        return;
    };
    let data = copy_data(tmp.path());
    let (_procs, bases) = nodes(&data, &redis, 2).await;
    let http = http();
    for round in 0..5 {
        let key = format!("same-{round}");
        let (a, b) = tokio::join!(
            publish_until_taken(&http, &bases, 0, &key, "Same"),
            publish_until_taken(&http, &bases, 1, &key, "Same"),
        );
        assert_eq!(a, b, "{key}: two answers");
    }
    let stream = redis.stream();
    assert_eq!(stream.len() as u64, SEED + 5);
    let keys: BTreeSet<&str> = stream
        .iter()
        .filter_map(|(_, e)| e["idempotency_key"].as_str())
        .collect();
    assert_eq!(keys.len(), 5);
}

/// A node killed with SIGKILL while events flow: its subscribers resume on another node with
/// their cursor and miss nothing, see nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_of_a_killed_node_resume_on_another_without_gap_or_duplicate() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(redis) = Redis::start(tmp.path()) else {
        return;
    };
    let data = copy_data(tmp.path());
    let (mut procs, bases) = nodes(&data, &redis, 3).await;
    let http = http();
    const N: u64 = 40;
    let total = SEED + N;
    // Subscribers on node 0 (the one killed), falling back to node 1, then 2.
    let subscribers: Vec<_> = (0..3)
        .map(|_| tokio::spawn(subscribe(http.clone(), bases.clone(), 0, total)))
        .collect();
    let streams: Vec<_> = (0..3)
        .map(|_| tokio::spawn(subscribe_sse(bases.clone(), 0, total)))
        .collect();
    // Publishing only to the nodes that live.
    let survivors = bases[1..].to_vec();
    let publisher = {
        let http = http.clone();
        tokio::spawn(async move {
            for k in 0..N {
                let key = format!("k{k}");
                publish_until_taken(&http, &survivors, k as usize, &key, &key).await;
            }
        })
    };
    // Mid-stream: once a third of the events are in.
    let deadline = Instant::now() + PATIENCE;
    while (redis.stream().len() as u64) < SEED + N / 3 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    procs[0].kill();
    publisher.await.unwrap();
    for s in subscribers {
        exactly_once_in_order("subscriber of the killed node", &s.await.unwrap(), 0, total);
    }
    for s in streams {
        let seen = s.await.unwrap();
        exactly_once_in_order("SSE stream of the killed node", &seen, 0, total);
    }
    assert_eq!(redis.stream().len() as u64, total);
}

/// Redis killed with SIGKILL while publishers publish, and started again from its directory:
/// every acknowledged publish is there once, publishing resumes by itself after the head, and a
/// retry with a key acknowledged before the crash gets the first answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_crash_loses_no_acknowledged_publish_and_publishing_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(mut redis) = Redis::start(tmp.path()) else {
        return;
    };
    let data = copy_data(tmp.path());
    let (_procs, bases) = nodes(&data, &redis, 2).await;
    let http = http();
    const PUBLISHERS: usize = 4;
    const EACH: usize = 15;
    let publishers = publish_in_parallel(&http, &bases, PUBLISHERS, EACH, |p, _k| p);
    let deadline = Instant::now() + PATIENCE;
    while (redis.stream().len() as u64) < SEED + 10 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    redis.kill();
    // Publishes are refused (503) meanwhile; the publishers retry with their keys.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    redis.restart();
    let acked = acknowledged(publishers).await;
    let total = SEED + (PUBLISHERS * EACH) as u64;
    let stream = redis.stream();
    assert_eq!(
        stream.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        (1..=total).collect::<Vec<_>>()
    );
    for (seq, key) in &acked {
        assert_eq!(stream[*seq as usize - 1].1["idempotency_key"], key.as_str());
    }
    // A retry of a publish acknowledged before the crash: its first answer, on either node.
    let (first_seq, first_key) = acked.iter().next().unwrap();
    for i in 0..bases.len() {
        let again = publish_until_taken(&http, &bases, i, first_key, first_key).await;
        assert_eq!(again, *first_seq);
    }
    // A new publish continues at head + 1.
    let next = publish_until_taken(&http, &bases, 0, "after-crash", "After").await;
    assert_eq!(next, total + 1);
    for base in &bases {
        let seen = subscribe(http.clone(), vec![base.clone()], 0, total + 1).await;
        exactly_once_in_order(base, &seen, 0, total + 1);
    }
}

/// FLUSHALL replaces the history: every node moves to a new epoch, old cursors get 410, and
/// publishing goes on in the new history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flushed_redis_is_a_new_epoch_and_old_cursors_get_410() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(redis) = Redis::start(tmp.path()) else {
        return;
    };
    let data = copy_data(tmp.path());
    let (_procs, bases) = nodes(&data, &redis, 2).await;
    let http = http();
    publish_until_taken(&http, &bases, 0, "before", "Before").await;
    let old = epoch_of(&http, &bases[0]).await;
    assert_eq!(epoch_of(&http, &bases[1]).await, old);
    let _: () = redis::cmd("FLUSHALL").query(&mut redis.conn()).unwrap();
    let deadline = Instant::now() + PATIENCE;
    let mut epochs = Vec::new();
    for base in &bases {
        loop {
            let now = epoch_of(&http, base).await;
            if now != old {
                epochs.push(now);
                break;
            }
            assert!(Instant::now() < deadline, "{base} kept epoch {old}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert_eq!(epochs[0], epochs[1], "both nodes serve one new history");
    for base in &bases {
        let res = http
            .get(format!("{base}/live?after={SEED}&epoch={old}&timeout=0"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 410, "{base}");
    }
    // Publishing goes on, in the new history, from 1.
    let seq = publish_until_taken(&http, &bases, 1, "after-flush", "After").await;
    assert_eq!(seq, 1);
    assert_eq!(redis.stream().len(), 1);
}

/// `CLIENT KILL` of the nodes' blocked follow connections while events flow loses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_follow_connections_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(redis) = Redis::start(tmp.path()) else {
        return;
    };
    let data = copy_data(tmp.path());
    let (_procs, bases) = nodes(&data, &redis, 2).await;
    let http = http();
    const N: u64 = 30;
    let total = SEED + N;
    let subscribers: Vec<_> = (0..bases.len())
        .map(|i| tokio::spawn(subscribe(http.clone(), vec![bases[i].clone()], 0, total)))
        .collect();
    let publisher = {
        let (http, bases) = (http.clone(), bases.clone());
        tokio::spawn(async move {
            for k in 0..N {
                let key = format!("k{k}");
                publish_until_taken(&http, &bases, k as usize, &key, &key).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let mut killed = 0;
    while !publisher.is_finished() {
        let list: String = redis::cmd("CLIENT")
            .arg("LIST")
            .query(&mut redis.conn())
            .unwrap();
        for line in list.lines().filter(|l| l.contains("cmd=xread")) {
            let id = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("id="))
                .unwrap();
            let _: Result<i64, _> = redis::cmd("CLIENT")
                .arg("KILL")
                .arg("ID")
                .arg(id)
                .query(&mut redis.conn());
            killed += 1;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    publisher.await.unwrap();
    assert!(killed > 0, "no follow connection was seen to kill");
    for s in subscribers {
        exactly_once_in_order("subscriber", &s.await.unwrap(), 0, total);
    }
}

fn event(seq: u64, key: Option<&str>) -> Event {
    let t = chrono::DateTime::UNIX_EPOCH;
    Event {
        seq,
        op: Op::Create,
        story: "s".into(),
        entry: Entry {
            story: "s".into(),
            id: format!("tag:x,2000:s/{seq}"),
            anchor: seq.to_string(),
            title: "t".into(),
            title_derived: false,
            authors: vec![],
            published: t,
            updated: t,
            time_inferred: false,
            summary: String::new(),
            content_html: String::new(),
            url: String::new(),
            ..Entry::default()
        },
        source: Source::Api,
        idempotency_key: key.map(str::to_string),
        idempotency_fingerprint: None,
        at: None,
        report_anchor: None,
        ended: None,
    }
}

fn seqs_of(events: &[Event]) -> Vec<u64> {
    events.iter().map(|e| e.seq).collect()
}

/// The store's contract, against Redis itself: an append that does not follow the head (behind
/// it, or leaving a gap) or that repeats a recorded key is a conflict naming the head; another
/// epoch is refused until the writer adopts it; reads and waits see what was appended; an
/// unreachable Redis is `Unavailable`, and the same handles work again once it is back.
#[test]
fn the_store_takes_only_appends_that_follow_its_head_in_its_epoch() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(mut redis) = Redis::start(tmp.path()) else {
        return;
    };
    let mut store = RedisStore::new(&redis.url(), "livefeed", 0).unwrap();
    let recovered = store.load().unwrap();
    assert!(recovered.events.is_empty());
    assert!(recovered.warnings.is_empty(), "{:?}", recovered.warnings);
    let epoch = recovered.epoch;
    let reader = store.reader();
    store
        .append(0, &[event(1, None), event(2, Some("a")), event(3, None)])
        .unwrap();
    let conflict = |r: Result<(), StoreError>| match r {
        Err(StoreError::Conflict { head }) => head,
        other => panic!("expected a conflict, got {other:?}"),
    };
    // Behind the head, and a gap after it.
    assert_eq!(conflict(store.append(2, &[event(3, None)])), 3);
    assert_eq!(conflict(store.append(4, &[event(5, None)])), 3);
    // A key already recorded: nothing of the batch is taken.
    assert_eq!(
        conflict(store.append(3, &[event(4, None), event(5, Some("a"))])),
        3
    );
    assert_eq!(redis.stream().len(), 3);
    // A key whose event the stream does not hold (its history lost) is stale: taken over, or
    // its publish would be refused forever. One whose seq holds another event too.
    for (key, seq) in [("stale", 99), ("other", 1)] {
        let _: () = redis::cmd("SET")
            .arg(format!("{{livefeed}}:key:{key}"))
            .arg(seq)
            .query(&mut redis.conn())
            .unwrap();
    }
    store
        .append(3, &[event(4, Some("stale")), event(5, Some("other"))])
        .unwrap();
    let recorded: Vec<u64> = ["stale", "other"]
        .iter()
        .map(|k| {
            redis::cmd("GET")
                .arg(format!("{{livefeed}}:key:{k}"))
                .query(&mut redis.conn())
                .unwrap()
        })
        .collect();
    assert_eq!(recorded, [4, 5]);
    // Reads, in ranges and pages.
    assert_eq!(
        seqs_of(&reader.read(epoch, 0, 5, 100).unwrap()),
        [1, 2, 3, 4, 5]
    );
    assert_eq!(seqs_of(&reader.read(epoch, 1, 2, 100).unwrap()), [2]);
    assert_eq!(seqs_of(&reader.read(epoch, 0, 3, 2).unwrap()), [1, 2]);
    assert_eq!(reader.position().unwrap().head, 5);
    // A wait returns once another handle appends.
    let waiter = {
        let reader = std::sync::Arc::clone(&reader);
        std::thread::spawn(move || reader.wait(5, Duration::from_secs(10)).unwrap())
    };
    std::thread::sleep(Duration::from_millis(200));
    let mut other = RedisStore::new(&redis.url(), "livefeed", 0).unwrap();
    assert_eq!(other.load().unwrap().events.len(), 5);
    other.append(5, &[event(6, Some("b"))]).unwrap();
    assert_eq!(waiter.join().unwrap().head, 6);
    // Another epoch (the history replaced behind the writer's back).
    let _: () = redis::cmd("SET")
        .arg("{livefeed}:epoch")
        .arg("00000000000000ff")
        .query(&mut redis.conn())
        .unwrap();
    assert!(matches!(
        store.append(6, &[event(7, None)]),
        Err(StoreError::EpochChanged { .. })
    ));
    assert!(matches!(
        reader.read(epoch, 0, 6, 10),
        Err(StoreError::EpochChanged { .. })
    ));
    let now = reader.position().unwrap();
    assert_eq!(now.epoch.to_string(), "00000000000000ff");
    store.adopt_epoch(now.epoch);
    store.append(6, &[event(7, None)]).unwrap();
    // Redis gone: unavailable, with a time to retry after; back: the same handles work.
    redis.kill();
    match store.append(7, &[event(8, None)]) {
        Err(StoreError::Unavailable { retry_after, .. }) => {
            assert_eq!(retry_after, Duration::from_secs(1))
        }
        other => panic!("expected unavailable, got {other:?}"),
    }
    assert!(matches!(
        reader.position(),
        Err(StoreError::Unavailable { .. })
    ));
    redis.restart();
    store.append(7, &[event(8, None)]).unwrap();
    assert_eq!(reader.position().unwrap().head, 8);
    assert_eq!(
        redis.stream().iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5, 6, 7, 8]
    );
}

/// A conflict answer carries the events after the refused append's `after` (what the writer
/// missed), so a writer on a shared log catches up without another round trip; a conflict
/// with nothing missed (a recorded key) carries none.
#[test]
fn a_conflict_answer_carries_the_events_the_writer_missed() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(redis) = Redis::start(tmp.path()) else {
        return;
    };
    let mut a = RedisStore::new(&redis.url(), "livefeed", 0).unwrap();
    let mut b = RedisStore::new(&redis.url(), "livefeed", 0).unwrap();
    a.load().unwrap();
    b.load().unwrap();
    a.append(0, &[event(1, None), event(2, Some("k"))]).unwrap();
    a.append(2, &[event(3, None)]).unwrap();
    assert!(matches!(
        b.append(0, &[event(1, None)]),
        Err(StoreError::Conflict { head: 3 })
    ));
    let missed = b.take_missed();
    assert_eq!(seqs_of(&missed), [1, 2, 3]);
    assert_eq!(missed[1].idempotency_key.as_deref(), Some("k"));
    // Taken once.
    assert!(b.take_missed().is_empty());
    // Only what follows `after`.
    assert!(matches!(
        b.append(2, &[event(3, None)]),
        Err(StoreError::Conflict { head: 3 })
    ));
    assert_eq!(seqs_of(&b.take_missed()), [3]);
    // A recorded key at the head: nothing missed.
    assert!(matches!(
        b.append(3, &[event(4, Some("k"))]),
        Err(StoreError::Conflict { head: 3 })
    ));
    assert!(b.take_missed().is_empty());
    b.append(3, &[event(4, None)]).unwrap();
}

/// A Redis that can lose acknowledged appends (appendfsync everysec) is warned about at start
/// and in `/healthz`, and the node serves and publishes all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_can_lose_acknowledged_appends_is_named_in_healthz() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(redis) = Redis::start_with(tmp.path(), &["--appendfsync", "everysec"]) else {
        return;
    };
    let data = copy_data(tmp.path());
    let (procs, bases) = nodes(&data, &redis, 1).await;
    let http = http();
    let health: Value = http
        .get(format!("{}/healthz", bases[0]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "degraded", "{health}");
    let reasons = health["reasons"].to_string();
    assert!(reasons.contains("appendfsync everysec"), "{health}");
    assert!(procs[0].log().contains("appendfsync everysec"));
    let metrics = http
        .get(format!("{}/metrics", bases[0]))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.lines().any(|l| l == "livefeed_store_warnings 1"),
        "{metrics}"
    );
    assert_eq!(
        publish_until_taken(&http, &bases, 0, "k", "Still publishing").await,
        SEED + 1
    );
}

/// Three nodes watch one data directory: a report that gains an entry becomes exactly one
/// event, whichever node relays it, and every node serves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_change_seen_by_three_nodes_is_relayed_once() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(redis) = Redis::start(tmp.path()) else {
        return;
    };
    let data = copy_data(tmp.path());
    let (_procs, bases) = nodes(&data, &redis, 3).await;
    assert_eq!(redis.stream().len() as u64, SEED);
    let path = data.join(format!("{LIVE}.txt"));
    let original = std::fs::read_to_string(&path).unwrap();
    assert!(original.contains("Live updates\n\n"));
    let edited = original.replacen(
        "Live updates\n\n",
        "Live updates\n\nPutin and Cameron agree to keep talking\n\n\
         A Kremlin spokesman said the two leaders would speak again.\n\n\n",
        1,
    );
    // Written whole and renamed over the report, as most editors save.
    let tmp_file = data.join(".edit.tmp");
    std::fs::write(&tmp_file, edited).unwrap();
    std::fs::rename(&tmp_file, &path).unwrap();
    let http = http();
    for base in &bases {
        let seen = subscribe(http.clone(), vec![base.clone()], SEED, SEED + 1).await;
        assert_eq!(seen, [SEED + 1], "{base}");
    }
    // Every watcher has had its look (the debounce is well under this).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stream = redis.stream();
    let titles: Vec<&Value> = stream.iter().map(|(_, e)| &e["entry"]["title"]).collect();
    assert_eq!(stream.len() as u64, SEED + 1, "{titles:#?}");
    assert_eq!(
        stream[SEED as usize].1["entry"]["title"],
        "Putin and Cameron agree to keep talking"
    );
    for base in &bases {
        assert_eq!(common::process::head(&http, base).await, SEED + 1);
    }
}

/// Redis away: a node that nobody publishes to still says so in `/healthz` and `/readyz`, keeps
/// serving what it has, and is well again by itself once Redis is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_says_when_redis_is_away_and_recovers_by_itself() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(mut redis) = Redis::start(tmp.path()) else {
        return;
    };
    let data = copy_data(tmp.path());
    let (_procs, bases) = nodes(&data, &redis, 1).await;
    let http = http();
    let get = |path: &'static str| {
        let (http, base) = (http.clone(), bases[0].clone());
        async move {
            let res = http.get(format!("{base}{path}")).send().await.unwrap();
            let status = res.status().as_u16();
            (status, res.json::<Value>().await.unwrap())
        }
    };
    assert_eq!(get("/readyz").await.0, 200);
    redis.kill();
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (status, body) = get("/healthz").await;
        assert_eq!(status, 200);
        if body["status"] == "degraded" {
            assert!(body["reasons"].to_string().contains("Redis"), "{body}");
            break;
        }
        assert!(Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(get("/readyz").await.0, 503);
    // Reads go on from what the node has.
    let (status, body) = get("/live?after=0&timeout=0").await;
    assert_eq!(
        (status, body["events"].as_array().unwrap().len() as u64),
        (200, SEED)
    );
    redis.restart();
    loop {
        let (_, body) = get("/healthz").await;
        if body["status"] == "ok" {
            break;
        }
        assert!(Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(get("/readyz").await.0, 200);
}

/// `--redis-wait-replicas 1`: a publish is acknowledged only once a replica has it; with none,
/// it is a 503, and the retry with the same key, once a replica follows, gets the first answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_wait_replicas_a_publish_waits_for_a_replica() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(redis) = Redis::start(tmp.path()) else {
        return;
    };
    let data = copy_data(tmp.path());
    let mut cmd = serve_command(&data);
    cmd.args(["--store", &redis.url(), "--redis-wait-replicas", "1"])
        .env("LIVEFEED_TOKEN", TOKEN);
    let mut node = Proc::start(cmd);
    let base = node.ready().await.expect("the node starts");
    let http = http();
    let publish = || {
        http.post(format!("{base}/stories/{LIVE}/entries"))
            .bearer_auth(TOKEN)
            .header("Idempotency-Key", "replicated")
            .json(&json!({ "title": "Replicated", "body": "Text." }))
            .send()
    };
    let res = publish().await.unwrap();
    assert_eq!(res.status(), 503, "no replica yet");
    assert!(res.headers().contains_key("retry-after"));
    // The primary took it; nothing acknowledged it.
    assert_eq!(redis.stream().len() as u64, SEED + 1);
    let replica_dir = tmp.path().join("replica");
    let _replica = Redis::start_with(
        &replica_dir,
        &["--replicaof", "127.0.0.1", &redis.port.to_string()],
    )
    .unwrap();
    let deadline = Instant::now() + PATIENCE;
    loop {
        let res = publish().await.unwrap();
        if res.status() == 201 {
            let body: Value = res.json().await.unwrap();
            assert_eq!(body["seq"], SEED + 1, "the first answer");
            break;
        }
        assert_eq!(res.status(), 503);
        assert!(
            Instant::now() < deadline,
            "never acknowledged with a replica"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(redis.stream().len() as u64, SEED + 1);
}

/// Every node serves the same feed bytes with the same `ETag` and `Last-Modified` for the same
/// log position, so a reader revalidating through a load balancer gets 304s from any node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_serves_the_same_feeds_for_the_same_log_position() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(redis) = Redis::start(tmp.path()) else {
        return;
    };
    let data = copy_data(tmp.path());
    let procs: Vec<Proc> = (0..3)
        .map(|_| {
            let mut cmd = serve_command(&data);
            cmd.args(["--store", &redis.url()])
                .args(["--base-url", "https://news.example.org"])
                .env("LIVEFEED_TOKEN", TOKEN);
            Proc::start(cmd)
        })
        .collect();
    let (_procs, bases): (Vec<Proc>, Vec<String>) = futures_join(procs).await.into_iter().unzip();
    let http = http();
    for k in 0..4 {
        let key = format!("k{k}");
        publish_until_taken(&http, &bases, k, &key, &key).await;
    }
    let head = SEED + 4;
    for base in &bases {
        // Every node has handed the events on before its feeds are compared.
        let seen = subscribe(http.clone(), vec![base.clone()], 0, head).await;
        assert_eq!(seen.len() as u64, head);
    }
    for path in [
        format!("/feeds/{LIVE}.atom"),
        format!("/feeds/{LIVE}.json"),
        "/feeds/all.rss".to_string(),
        format!("/stories/{LIVE}/"),
    ] {
        let mut answers = Vec::new();
        for base in &bases {
            let res = http.get(format!("{base}{path}")).send().await.unwrap();
            assert_eq!(res.status(), 200, "{base}{path}");
            let etag = res.headers()["etag"].to_str().unwrap().to_string();
            let modified = res.headers()["last-modified"].to_str().unwrap().to_string();
            answers.push((etag, modified, res.bytes().await.unwrap()));
        }
        assert!(
            answers.windows(2).all(|w| w[0] == w[1]),
            "{path}: {:?}",
            answers.iter().map(|a| (&a.0, &a.1)).collect::<Vec<_>>()
        );
        // A revalidation with one node's validators is a 304 on every node.
        for base in &bases {
            let res = http
                .get(format!("{base}{path}"))
                .header("If-None-Match", &answers[0].0)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 304, "{base}{path}");
        }
    }
}

/// `--store` names the engine: a value that is neither `file:DIR` nor a Redis URL is refused
/// naming both forms; `file:DIR` puts the embedded log there; an unreachable Redis stops the
/// start with the URL named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_flag_names_the_engine() {
    let tmp = tempfile::tempdir().unwrap();
    let data = copy_data(tmp.path());
    for bad in ["mysql://db", "file:", "redis://"] {
        let out = serve_command(&data)
            .args(["--store", bad])
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{bad}: {err}");
        assert!(err.contains("--store"), "{bad}: {err}");
    }
    let out = serve_command(&data)
        .args(["--store", "file:x", "--log-dir", "y"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "--store and --log-dir conflict");
    // The embedded log where `file:` says.
    let log = tmp.path().join("elsewhere");
    let mut cmd = serve_command(&data);
    cmd.arg("--store")
        .arg(format!("file:{}", log.display()))
        .env("LIVEFEED_TOKEN", TOKEN);
    let mut node = Proc::start(cmd);
    node.ready().await.expect("the node starts");
    assert!(log.join("events.log").is_file());
    assert!(!data.join("log").exists());
    assert!(node.terminate());
    // Nothing listens on the port of a listener just closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("redis://:hunter2-secret@127.0.0.1:{port}/0");
    let out = serve_command(&data)
        .args(["--store", &url])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(&format!("--store redis://:***@127.0.0.1:{port}/0")),
        "{err}"
    );
    assert!(
        !err.contains("hunter2"),
        "the password is never shown: {err}"
    );
}

/// nginx (from Debian) in front, with `deploy/redis/nginx-nodes.conf`, its addresses replaced.
struct Nginx {
    child: Child,
    base: String,
}

impl Nginx {
    fn start(dir: &Path, nodes: &[String]) -> Option<Nginx> {
        let nginx = tool("nginx", "nginx")?;
        let dir = dir.join("nginx");
        std::fs::create_dir_all(dir.join("logs")).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let shipped = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/redis/nginx-nodes.conf"),
        )
        .unwrap();
        let mut site = shipped.replace(
            "listen 127.0.0.1:8080;",
            &format!("listen 127.0.0.1:{port};"),
        );
        for (i, node) in nodes.iter().enumerate() {
            let from = format!("server 127.0.0.1:{} ", 8081 + i);
            assert!(site.contains(&from), "the shipped config lists {from}");
            site = site.replace(
                &from,
                &format!("server {} ", node.trim_start_matches("http://")),
            );
        }
        std::fs::write(dir.join("nodes.conf"), site).unwrap();
        let d = dir.display();
        let main = format!(
            "worker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/logs/error.log;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n\
             proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n\
             uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
             include {d}/nodes.conf;\n}}\n"
        );
        std::fs::write(dir.join("nginx.conf"), main).unwrap();
        let child = Command::new(nginx)
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx starts");
        let deadline = Instant::now() + PATIENCE;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nginx did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(Nginx {
            child,
            base: format!("http://127.0.0.1:{port}"),
        })
    }
}

impl Drop for Nginx {
    /// SIGTERM, so the master stops its workers (a SIGKILLed master leaves them running), then
    /// SIGKILL if it has not exited within a few seconds.
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid has no memory effects.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The same through nginx in front of three nodes: publishers and long-poll and SSE subscribers
/// all talk to nginx alone; one node is killed with SIGKILL mid-stream; every subscriber sees
/// each event once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_nginx_in_front_of_three_nodes_nothing_is_lost_when_one_dies() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(redis) = Redis::start(tmp.path()) else {
        return;
    };
    let data = copy_data(tmp.path());
    let (mut procs, bases) = nodes(&data, &redis, 3).await;
    let Some(nginx) = Nginx::start(tmp.path(), &bases) else {
        return;
    };
    let front = vec![nginx.base.clone()];
    let http = http();
    const PUBLISHERS: usize = 4;
    const EACH: usize = 10;
    let total = SEED + (PUBLISHERS * EACH) as u64;
    let subscribers: Vec<_> = (0..3)
        .map(|_| tokio::spawn(subscribe(http.clone(), front.clone(), 0, total)))
        .collect();
    let streams: Vec<_> = (0..3)
        .map(|_| tokio::spawn(subscribe_sse(front.clone(), 0, total)))
        .collect();
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|p| {
            let (http, front) = (http.clone(), front.clone());
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for k in 0..EACH {
                    let key = format!("p{p}-{k}");
                    acked.push(publish_until_taken(&http, &front, 0, &key, &key).await);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                acked
            })
        })
        .collect();
    let deadline = Instant::now() + PATIENCE;
    while (redis.stream().len() as u64) < SEED + 10 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    procs[1].kill();
    let mut acked = BTreeSet::new();
    for p in publishers {
        for seq in p.await.unwrap() {
            assert!(acked.insert(seq), "seq {seq} acknowledged twice");
        }
    }
    assert_eq!(acked.len(), PUBLISHERS * EACH);
    for s in subscribers {
        exactly_once_in_order("long-poll through nginx", &s.await.unwrap(), 0, total);
    }
    for s in streams {
        exactly_once_in_order("SSE through nginx", &s.await.unwrap(), 0, total);
    }
    assert_eq!(redis.stream().len() as u64, total);
}

/// Redis killed (-9) and restarted while long-poll and SSE subscribers and publishers all go
/// through nginx in front of three nodes: every acknowledged publish is in the stream once,
/// every subscriber sees every event once and in order, whichever node nginx sends it to.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn through_nginx_a_redis_crash_loses_nothing_for_long_poll_and_sse() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(mut redis) = Redis::start(tmp.path()) else {
        return;
    };
    let data = copy_data(tmp.path());
    let (_procs, bases) = nodes(&data, &redis, 3).await;
    let Some(nginx) = Nginx::start(tmp.path(), &bases) else {
        return;
    };
    let front = vec![nginx.base.clone()];
    let http = http();
    const PUBLISHERS: usize = 4;
    const EACH: usize = 12;
    let total = SEED + (PUBLISHERS * EACH) as u64;
    let subscribers: Vec<_> = (0..3)
        .map(|_| tokio::spawn(subscribe(http.clone(), front.clone(), 0, total)))
        .collect();
    let streams: Vec<_> = (0..3)
        .map(|_| tokio::spawn(subscribe_sse(front.clone(), 0, total)))
        .collect();
    let publishers = publish_in_parallel(&http, &front, PUBLISHERS, EACH, |_p, _k| 0);
    let deadline = Instant::now() + PATIENCE;
    while (redis.stream().len() as u64) < SEED + 10 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    redis.kill();
    // Publishes through nginx are refused (503) meanwhile; the publishers retry with their keys.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    redis.restart();
    let acked = acknowledged(publishers).await;
    assert_eq!(
        acked.keys().copied().collect::<Vec<_>>(),
        (SEED + 1..=total).collect::<Vec<_>>()
    );
    for s in subscribers {
        exactly_once_in_order("long-poll through nginx", &s.await.unwrap(), 0, total);
    }
    for s in streams {
        exactly_once_in_order("SSE through nginx", &s.await.unwrap(), 0, total);
    }
    let stream = redis.stream();
    assert_eq!(stream.len() as u64, total);
    for (seq, key) in &acked {
        assert_eq!(stream[*seq as usize - 1].1["idempotency_key"], key.as_str());
    }
}

/// Redis comes back with fewer events under the same epoch (a replica promoted that missed
/// writes, a restore from an older copy): the nodes make it a new epoch, so cursors into the
/// lost events get 410, never other events under the same seqs; publishing goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_history_that_lost_events_under_the_same_epoch_becomes_a_new_epoch() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(redis) = Redis::start(tmp.path()) else {
        return;
    };
    let data = copy_data(tmp.path());
    let (_procs, bases) = nodes(&data, &redis, 2).await;
    let http = http();
    for k in 0..6 {
        let key = format!("k{k}");
        publish_until_taken(&http, &bases, k, &key, &key).await;
    }
    let served = SEED + 6;
    for base in &bases {
        let seen = subscribe(http.clone(), vec![base.clone()], 0, served).await;
        assert_eq!(seen.len() as u64, served);
    }
    let old = epoch_of(&http, &bases[0]).await;
    // The stream as a replica that missed the last three appends has it: same epoch key.
    let kept = served - 3;
    let _: () = redis::Script::new(
        r"local e = redis.call('XRANGE', KEYS[1], '-', ARGV[1])
          redis.call('DEL', KEYS[1])
          for _, x in ipairs(e) do redis.call('XADD', KEYS[1], x[1], x[2][1], x[2][2]) end
          for i = 3, 5 do redis.call('DEL', ARGV[2] .. i) end",
    )
    .key("{livefeed}:events")
    .arg(format!("{kept}-0"))
    .arg("{livefeed}:key:k")
    .invoke(&mut redis.conn())
    .unwrap();
    let deadline = Instant::now() + PATIENCE;
    let mut epochs = BTreeSet::new();
    for base in &bases {
        loop {
            let now = epoch_of(&http, base).await;
            if now != old {
                epochs.insert(now);
                break;
            }
            assert!(Instant::now() < deadline, "{base} kept epoch {old}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert_eq!(epochs.len(), 1, "one new history: {epochs:?}");
    for base in &bases {
        let res = http
            .get(format!("{base}/live?after={kept}&epoch={old}&timeout=0"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 410, "{base}");
    }
    // Publishing goes on after what the new history holds.
    let seq = publish_until_taken(&http, &bases, 1, "after-loss", "After").await;
    assert_eq!(seq, kept + 1);
    for base in &bases {
        let seen = subscribe(http.clone(), vec![base.clone()], 0, kept + 1).await;
        exactly_once_in_order(base, &seen, 0, kept + 1);
    }
    assert_eq!(redis.stream().len() as u64, kept + 1);
}

/// An entry deleted on one node and then edited on another is a 404 there, not a resurrection:
/// the second node's writer reads the delete before it decides the edit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_on_one_node_of_an_entry_deleted_on_another_is_a_404() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(redis) = Redis::start(tmp.path()) else {
        return;
    };
    let data = copy_data(tmp.path());
    let (_procs, bases) = nodes(&data, &redis, 2).await;
    let http = http();
    for round in 0..3 {
        let res = http
            .post(format!("{}/stories/{LIVE}/entries", bases[0]))
            .bearer_auth(TOKEN)
            .json(&json!({ "title": format!("Short-lived {round}"), "body": "Text." }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
        let body: Value = res.json().await.unwrap();
        let anchor = body["url"]
            .as_str()
            .unwrap()
            .rsplit('#')
            .next()
            .unwrap()
            .to_string();
        let entry = format!("/stories/{LIVE}/entries/{anchor}");
        let res = http
            .delete(format!("{}{entry}", bases[0]))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success(), "{}", res.status());
        let res = http
            .put(format!("{}{entry}", bases[1]))
            .bearer_auth(TOKEN)
            .json(&json!({ "title": "Back from the dead", "body": "Text." }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 404, "round {round}");
    }
    let stream = redis.stream();
    assert!(
        stream
            .iter()
            .all(|(_, e)| e["entry"]["title"] != "Back from the dead")
    );
    assert_eq!(stream.len() as u64, SEED + 6);
}

/// A node on `redis` that retains `keep` events and snapshots every `every`, with a fixed base
/// URL so feeds compare byte for byte across nodes.
fn retaining_node(data: &Path, redis: &Redis, keep: u64, every: u64) -> Proc {
    let mut cmd = serve_command(data);
    cmd.args(["--store", &redis.url()])
        .args(["--base-url", "https://news.example.org"])
        .env("LIVEFEED_TOKEN", TOKEN)
        .env("LIVEFEED_KEEP_EVENTS", keep.to_string())
        .env("LIVEFEED_SNAPSHOT_EVERY", every.to_string());
    Proc::start(cmd)
}

fn xlen(redis: &Redis) -> u64 {
    redis::cmd("XLEN")
        .arg("{livefeed}:events")
        .query(&mut redis.conn())
        .unwrap()
}

/// What a node serves of the live story: its feeds and page, with their validators.
async fn served(http: &reqwest::Client, base: &str) -> Vec<(String, String, Vec<u8>)> {
    let mut out = Vec::new();
    for path in [
        format!("/feeds/{LIVE}.atom"),
        format!("/feeds/{LIVE}.json"),
        "/feeds/all.rss".to_string(),
        format!("/stories/{LIVE}/"),
    ] {
        let res = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(res.status(), 200, "{base}{path}");
        let etag = res.headers()["etag"].to_str().unwrap().to_string();
        out.push((path, etag, res.bytes().await.unwrap().to_vec()));
    }
    out
}

/// With a small `--keep-events`, the snapshot goes to Redis and the stream is trimmed behind
/// it: XLEN stays bounded, a cursor older than the stream gets 410 with `oldest` (one at
/// `oldest - 1` its events), and a node started after the trim rebuilds from the snapshot and
/// serves the same bytes as the node that saw every event. The head never goes back, so the
/// trim is not taken for lost events: the epoch stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_keep_events_trims_the_stream_and_a_new_node_starts_from_the_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(redis) = Redis::start(tmp.path()) else {
        return;
    };
    let data = copy_data(tmp.path());
    let (keep, every) = (20, 10);
    let mut first = retaining_node(&data, &redis, keep, every);
    let a = first.ready().await.unwrap();
    let http = http();
    let epoch = |base: String| {
        let http = http.clone();
        async move {
            let body: Value = http
                .get(format!("{base}/healthz"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            (
                body["epoch"].as_str().unwrap().to_string(),
                body["head"].as_u64().unwrap(),
            )
        }
    };
    let (before, _) = epoch(a.clone()).await;
    let n = 120;
    for k in 0..n {
        let key = format!("trim-{k}");
        publish_until_taken(&http, std::slice::from_ref(&a), 0, &key, &key).await;
    }
    let head = SEED + n;
    // The snapshot and the trim run off the publish path.
    let deadline = Instant::now() + PATIENCE;
    while xlen(&redis) > keep + every {
        assert!(
            Instant::now() < deadline,
            "the stream holds {} entries:\n{}",
            xlen(&redis),
            first.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stream = redis.stream();
    assert_eq!(stream.last().map(|(seq, _)| *seq), Some(head));
    assert!(stream.windows(2).all(|w| w[1].0 == w[0].0 + 1), "gapless");
    let oldest = stream[0].0;
    assert!(oldest > 1 && oldest + keep <= head + 1, "oldest {oldest}");
    let snapshot: Option<u64> = redis::cmd("HGET")
        .arg("{livefeed}:snapshot")
        .arg("seq")
        .query(&mut redis.conn())
        .unwrap();
    assert!(snapshot.is_some_and(|s| s >= oldest - 1), "{snapshot:?}");

    let gone = |base: String| {
        let http = http.clone();
        async move {
            let res = http
                .get(format!("{base}/live?after=0&timeout=0"))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 410, "{base}");
            let body: Value = res.json().await.unwrap();
            body["oldest"].as_u64().unwrap()
        }
    };
    assert_eq!(gone(a.clone()).await, oldest);
    let page: Value = http
        .get(format!("{a}/live?after={}&timeout=0", oldest - 1))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["events"][0]["seq"].as_u64(), Some(oldest), "{page}");

    // A new node, started after the trim: from the snapshot, the same bytes.
    let mut second = retaining_node(&data, &redis, keep, every);
    let b = second.ready().await.unwrap();
    assert_eq!(
        epoch(b.clone()).await,
        (before.clone(), head),
        "same history, same head"
    );
    assert_eq!(
        epoch(a.clone()).await.0,
        before,
        "a trim is not lost events"
    );
    assert_eq!(served(&http, &a).await, served(&http, &b).await);
    assert!(gone(b.clone()).await > 1);
    // Publishing goes on through the new node; both serve it.
    let seq = publish_until_taken(&http, std::slice::from_ref(&b), 0, "after-trim", "After").await;
    assert_eq!(seq, head + 1);
    for base in [&a, &b] {
        let seen = subscribe(http.clone(), vec![base.clone()], head, head + 1).await;
        assert_eq!(seen, vec![head + 1], "{base}");
    }
    assert_eq!(served(&http, &a).await, served(&http, &b).await);
    // The first node publishes on and trims past the second node's writer, idle meanwhile:
    // its next publish decides on the snapshot and lands once, right after the head.
    for k in 0..3 * (keep + every) {
        let key = format!("more-{k}");
        publish_until_taken(&http, std::slice::from_ref(&a), 0, &key, &key).await;
    }
    let head = head + 1 + 3 * (keep + every);
    let deadline = Instant::now() + PATIENCE;
    while redis.stream()[0].0 <= seq {
        assert!(Instant::now() < deadline, "not trimmed past {seq}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seq = publish_until_taken(&http, std::slice::from_ref(&b), 0, "idle-b", "Idle B").await;
    assert_eq!(seq, head + 1);
    assert!(
        second.log().contains("compacted past this writer"),
        "the second node's writer was trimmed past:\n{}",
        second.log()
    );
    for base in [&a, &b] {
        let seen = subscribe(http.clone(), vec![base.clone()], head, head + 1).await;
        assert_eq!(seen, vec![head + 1], "{base}");
    }
    assert_eq!(served(&http, &a).await, served(&http, &b).await);
    drop((first, second));
}
