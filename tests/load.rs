//! Exactly once, in order, under load: 2,000 long-poll and 500 Server-Sent Events subscribers
//! follow the log from the start while 8 publishers send 500 events at once. A quarter of the
//! subscribers drop their connection midway and come back with their cursor (`after=` for
//! long-poll, `Last-Event-ID` for SSE) on a new connection. Every subscriber must end with
//! exactly seq 1..head, in order: no gap, no duplicate.
//!
//! Subscribers use a minimal raw HTTP/1.1 client (`common::raw`) so that 2,500 of them fit a
//! debug build on two cores; a quarter of the long-pollers ask again at once, the others spend
//! up to 100, 300 or 500 ms on each page first, as a dashboard rendering it would.
//!
//! The random schedule is printed; `LIVEFEED_TEST_SEED=<n>` replays it.

mod common;

use common::raw::{self, Conn};
use common::rng::Rng;
use common::{LIVE, SEED, TOKEN, TestSite};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Long-poll requests answered, for the figures.
static POLLS: AtomicUsize = AtomicUsize::new(0);

const LONG_POLLERS: usize = 2000;
const SSE_SUBSCRIBERS: usize = 500;
const PUBLISHERS: usize = 8;
const EVENTS: u64 = 500;
/// One subscriber in this many drops its connection midway and resumes.
const DROP_ONE_IN: usize = 4;
/// How long the whole run may take before the test fails instead of hanging.
const RUN_LIMIT: Duration = Duration::from_secs(100);

/// What one subscriber does: when to drop its connection (the seq after which it leaves) and
/// how long it stays away.
#[derive(Clone, Copy)]
struct Plan {
    drop_after: Option<u64>,
    away: Duration,
    /// For long-poll: how long the abandoned request waits before it is dropped.
    abandon_after: Duration,
    /// For long-poll: the most time spent on a page before asking for the next (a dashboard
    /// rendering it), drawn afresh for each page; 0 asks again at once.
    think_ms: u64,
}

fn plan(rng: &mut Rng, i: usize, head: u64) -> Plan {
    Plan {
        drop_after: (i % DROP_ONE_IN == 0).then(|| rng.range(SEED, head - 20)),
        away: Duration::from_millis(rng.range(0, 400)),
        abandon_after: Duration::from_millis(rng.range(0, 100)),
        think_ms: [0, 100, 300, 500][i / DROP_ONE_IN % 4],
    }
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        // The server closes a keep-alive connection idle for its header timeout (10 s); a
        // client must not pick one up just as it closes.
        .pool_idle_timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// The seqs, `next` and `head` of a long-poll answer. The body is
/// `{"events":[{"seq":N,…},…],"next":N,"head":N}`; inside JSON strings a `"` is always escaped,
/// so `{"seq":` can only start an event. (A full JSON parse of 1.2 million events is what
/// would make this test slow in a debug build; some subscribers cross-check with serde.)
fn scan_page(body: &[u8], full_check: bool) -> (Vec<u64>, u64, u64) {
    let text = std::str::from_utf8(body).expect("a UTF-8 body");
    assert!(text.starts_with("{\"events\":["), "{text}");
    let number = |from: usize| -> u64 {
        let digits: String = text[from..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits
            .parse()
            .unwrap_or_else(|_| panic!("a number at {from}: {text}"))
    };
    let seqs: Vec<u64> = text
        .match_indices("{\"seq\":")
        .map(|(at, m)| number(at + m.len()))
        .collect();
    let tail = text.rfind("],\"next\":").expect("a next cursor");
    let next = number(tail + "],\"next\":".len());
    let head_at = text.rfind(",\"head\":").expect("a head");
    let head = number(head_at + ",\"head\":".len());
    if full_check {
        let page: Value = serde_json::from_str(text).unwrap();
        let parsed: Vec<u64> = page["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(parsed, seqs);
        assert_eq!(
            (page["next"].as_u64(), page["head"].as_u64()),
            (Some(next), Some(head))
        );
    }
    (seqs, next, head)
}

/// Follows the log with long-polls until `head`; returns every seq received, in order.
async fn long_poller(
    base: String,
    i: usize,
    plan: Plan,
    head: u64,
    ready: Arc<AtomicUsize>,
    resumed: Arc<AtomicUsize>,
) -> Vec<u64> {
    let mut got = Vec::new();
    let mut cursor = 0;
    let mut first = true;
    let mut dropped = false;
    let mut think_rng = Rng(i as u64);
    let mut conn = Conn::connect_url(&base).await.unwrap();
    while cursor < head {
        let path = format!("/live?after={cursor}&timeout=30&limit=1000");
        if !dropped && plan.drop_after.is_some_and(|d| cursor >= d) {
            // Hang up in the middle of a request (waiting, or being answered), stay away a
            // while, and come back on a new connection with the same cursor.
            conn.send(&raw::request("GET", &path, &[], None))
                .await
                .unwrap();
            let answer = tokio::time::timeout(plan.abandon_after, conn.read_response(false)).await;
            // The request may have been answered; the answer is thrown away unread all the same.
            drop(answer);
            drop(conn);
            tokio::time::sleep(plan.away).await;
            conn = Conn::connect_url(&base).await.unwrap();
            dropped = true;
            resumed.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let res = match conn.get(&path, &[]).await {
            Ok(res) => res,
            Err(_) => {
                // A kept-alive connection the server closed as idle (its header timeout): a
                // client opens a new one and asks again with the same cursor.
                conn = Conn::connect_url(&base).await.unwrap();
                conn.get(&path, &[]).await.unwrap()
            }
        };
        POLLS.fetch_add(1, Ordering::Relaxed);
        assert_eq!(res.status(), 200, "{}", res.text());
        let (seqs, next, page_head) = scan_page(&res.body, i % 50 == 0);
        assert!(next >= cursor && next <= page_head, "{cursor} → {next}");
        got.extend(seqs);
        cursor = next;
        if plan.think_ms > 0 {
            let think = think_rng.range(0, plan.think_ms);
            tokio::time::sleep(Duration::from_millis(think)).await;
        }
        if first {
            first = false;
            ready.fetch_add(1, Ordering::Relaxed);
        }
    }
    got
}

/// Opens `GET /live/events` (from the start, or with `Last-Event-ID`) and checks the head.
async fn open_sse(base: &str, last_event_id: Option<u64>) -> Conn {
    let mut conn = Conn::connect_url(base).await.unwrap();
    let id = last_event_id.map(|id| id.to_string());
    let (path, headers) = match &id {
        None => ("/live/events?after=0", vec![]),
        Some(id) => ("/live/events", vec![("Last-Event-ID", id.as_str())]),
    };
    conn.send(&raw::request("GET", path, &headers, None))
        .await
        .unwrap();
    let head = conn.read_head(false).await.unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-type"), Some("text/event-stream"));
    conn
}

/// Follows the SSE stream from the start until `head`; returns every seq received.
async fn sse_subscriber(
    base: String,
    plan: Plan,
    head: u64,
    ready: Arc<AtomicUsize>,
    resumed: Arc<AtomicUsize>,
) -> Vec<u64> {
    let mut got: Vec<u64> = Vec::new();
    let mut conn = open_sse(&base, None).await;
    ready.fetch_add(1, Ordering::Relaxed);
    let mut dropped = false;
    let mut buf: Vec<u8> = Vec::new();
    while got.last().copied().unwrap_or(0) < head {
        let Some(end) = raw::find(&buf, b"\n\n") else {
            let chunk = tokio::time::timeout(common::PATIENCE, conn.read_chunk())
                .await
                .expect("an SSE frame in time")
                .unwrap()
                .expect("the stream stays open");
            buf.extend_from_slice(&chunk);
            continue;
        };
        let rest = buf.split_off(end + 2);
        let frame = String::from_utf8(std::mem::replace(&mut buf, rest)).unwrap();
        let mut lines = frame.trim_end().lines();
        let Some(id) = lines.clone().find_map(|l| l.strip_prefix("id: ")) else {
            // `retry:` and keep-alive comments; a `reset` would carry no id and is a failure.
            assert!(!frame.contains("event: reset"), "{frame}");
            continue;
        };
        let seq = common::seq_of_id(id);
        let op = lines.find_map(|l| l.strip_prefix("event: ")).unwrap();
        let data = frame
            .lines()
            .find_map(|l| l.strip_prefix("data: "))
            .unwrap();
        assert!(
            data.starts_with(&format!("{{\"seq\":{seq},\"op\":\"{op}\"")),
            "{frame}"
        );
        got.push(seq);
        if !dropped && plan.drop_after.is_some_and(|d| seq >= d) {
            drop(conn);
            buf.clear();
            tokio::time::sleep(plan.away).await;
            // Resume as a browser does: the same stream (no `after`), Last-Event-ID set.
            conn = open_sse(&base, Some(seq)).await;
            dropped = true;
            resumed.fetch_add(1, Ordering::Relaxed);
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_subscriber_gets_every_event_once_in_order_under_load() {
    let started = Instant::now();
    common::raise_fd_limit(2 * (LONG_POLLERS + SSE_SUBSCRIBERS) as u64 + 1024);
    let mut rng = Rng::from_env();
    let site = TestSite::new();
    let server = site.start().await;
    let head = SEED + EVENTS;
    let ready = Arc::new(AtomicUsize::new(0));
    let resumed = Arc::new(AtomicUsize::new(0));

    let mut long_pollers = Vec::new();
    for i in 0..LONG_POLLERS {
        long_pollers.push(tokio::spawn(long_poller(
            server.base.clone(),
            i,
            plan(&mut rng, i, head),
            head,
            Arc::clone(&ready),
            Arc::clone(&resumed),
        )));
    }
    let sse: Vec<_> = (0..SSE_SUBSCRIBERS)
        .map(|i| {
            tokio::spawn(sse_subscriber(
                server.base.clone(),
                plan(&mut rng, i, head),
                head,
                Arc::clone(&ready),
                Arc::clone(&resumed),
            ))
        })
        .collect();
    // Publish once every subscriber is connected and has its first answer.
    let deadline = Instant::now() + common::PATIENCE;
    while ready.load(Ordering::Relaxed) < LONG_POLLERS + SSE_SUBSCRIBERS {
        assert!(
            Instant::now() < deadline,
            "only {} subscribers connected",
            ready.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let connected = started.elapsed();

    let publish_started = Instant::now();
    // The publishers run on their own thread and runtime, as separate processes would: the
    // subscribers' work in this runtime does not hold them up.
    let base = server.base.clone();
    let publishing_thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let publishers: Vec<_> = (0..PUBLISHERS)
                .map(|p| {
                    let base = base.clone();
                    tokio::spawn(async move {
                        let http = http_client();
                        let mut seqs = Vec::new();
                        for i in (p as u64..EVENTS).step_by(PUBLISHERS) {
                            let res = http
                                .post(format!("{base}/stories/{LIVE}/entries"))
                                .bearer_auth(TOKEN)
                                .json(&json!({ "title": format!("Load {i}"), "body": "Text." }))
                                .send()
                                .await
                                .unwrap();
                            assert_eq!(res.status(), 201);
                            let ack: Value = res.json().await.unwrap();
                            seqs.push(ack["seq"].as_u64().unwrap());
                        }
                        seqs
                    })
                })
                .collect();
            let mut acked = Vec::new();
            for p in publishers {
                acked.extend(p.await.unwrap());
            }
            acked
        })
    });
    let mut acked = tokio::task::spawn_blocking(move || publishing_thread.join().unwrap())
        .await
        .unwrap();
    acked.sort_unstable();
    assert_eq!(acked, (SEED + 1..=head).collect::<Vec<_>>());
    let publishing = publish_started.elapsed();

    let expected: Vec<u64> = (1..=head).collect();
    let results = tokio::time::timeout(RUN_LIMIT.saturating_sub(started.elapsed()), async {
        let mut lp = Vec::new();
        for t in long_pollers {
            lp.push(t.await.unwrap());
        }
        let mut ss = Vec::new();
        for t in sse {
            ss.push(t.await.unwrap());
        }
        (lp, ss)
    })
    .await
    .expect("every subscriber reaches the head in time");
    let (lp, ss) = results;
    for (i, got) in lp.iter().enumerate() {
        assert_eq!(got, &expected, "long-poll subscriber {i}");
    }
    for (i, got) in ss.iter().enumerate() {
        assert_eq!(got, &expected, "SSE subscriber {i}");
    }
    assert_eq!(server.head().await, head);
    let checked = (lp.len() + ss.len()) as u64 * head;
    eprintln!(
        "load: {} long-poll + {} SSE subscribers × {head} events = {checked} deliveries checked \
         in order; {} resumed after a disconnect; {} long-polls answered; connected in \
         {connected:.1?}, {EVENTS} publishes in {publishing:.1?}, all in {:.1?}",
        lp.len(),
        ss.len(),
        resumed.load(Ordering::Relaxed),
        POLLS.load(Ordering::Relaxed),
        started.elapsed()
    );
    server.stop().await;
}
