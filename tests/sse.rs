//! Server-Sent Events bounds over real sockets: frames are shared and a subscriber that stops
//! reading is closed once it falls `--sse-queue` events or `--sse-queue-bytes` bytes behind
//! while its socket is full; one that reads, however far behind it starts, is never closed.

mod common;

use common::{LIVE, PATIENCE, SEED, Server, Sse, TestSite};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// The tests here read process-wide metrics: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// An entry body of about `len` bytes of text.
fn body_of(i: usize, len: usize) -> String {
    let mut s = format!("Entry {i}. ");
    while s.len() < len {
        s.push_str("Negotiators met again in Geneva to discuss the plan. ");
    }
    s
}

/// A `/metrics` sample by exact series name, if present.
async fn metric(server: &Server, series: &str) -> Option<u64> {
    let text = server.get("/metrics").await.text().await.unwrap();
    text.lines().find_map(|l| {
        let (name, value) = l.rsplit_once(' ')?;
        (name == series).then(|| value.parse::<f64>().ok().map(|v| v as u64))?
    })
}

const SSE_WAITING: &str = "livefeed_waiting_subscribers{transport=\"sse\"}";
const OPEN: &str = "livefeed_connections_open";
const HELD: &str = "livefeed_sse_held_bytes";

/// Opens an SSE stream with a small receive buffer and never reads from it.
async fn stalled_client(server: &Server) -> TcpStream {
    let addr = server.base.trim_start_matches("http://").parse().unwrap();
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    stream
        .write_all(b"GET /live/events HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .unwrap();
    stream
}

/// Reads until the server closes the connection; `None` if it is still open after `wait`.
async fn read_until_closed(stream: &mut TcpStream, wait: Duration) -> Option<usize> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(total),
            Ok(Ok(n)) => total += n,
        }
    }
}

/// Opens `stalled` streams that never read and one that reads everything, publishes entries of
/// 100 KB until the server has closed the stalled ones (or `most` entries), then checks that
/// every stalled stream was closed by the server, that the reader got every event in order,
/// and that the bytes held for connections stayed bounded and went back to zero.
async fn stalled_subscribers_are_closed(site: TestSite, stalled: usize, most: usize) {
    let server = site.start().await;
    let mut reader = Sse::connect(&server, &format!("after={SEED}"), None).await;
    // Open connections before the stalled ones: this test's client and the reader.
    let baseline = metric(&server, OPEN).await.unwrap();
    let mut clients = Vec::new();
    for _ in 0..stalled {
        clients.push(stalled_client(&server).await);
    }
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while metric(&server, SSE_WAITING).await != Some(stalled as u64 + 1) {
        assert!(tokio::time::Instant::now() < deadline, "streams open");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let reading = tokio::spawn(async move {
        let mut seqs = Vec::new();
        loop {
            let e = reader.event().await;
            if e.op == "create" && e.data["entry"]["title"] == "last" {
                return seqs;
            }
            seqs.push(e.seq);
        }
    });
    // What one connection may hold: hyper buffers body frames up to 64 KiB, and one frame
    // (about 100 KB here) may go over it; frames are shared, so this is no copy anyway.
    let per_connection = 64 * 1024 + 2 * 128 * 1024;
    let mut held_max = 0;
    let mut published = 0;
    while published < most {
        published += 1;
        server
            .publish(
                LIVE,
                &format!("Large {published}"),
                &body_of(published, 100_000),
            )
            .await;
        let held = metric(&server, HELD).await.unwrap_or(0);
        held_max = held_max.max(held);
        if metric(&server, SSE_WAITING).await == Some(1) {
            break;
        }
    }
    server.publish(LIVE, "last", "The end.").await;
    eprintln!("published {published} entries of 100 KB; held at most {held_max} bytes");
    // The server closed every stalled stream itself, while it was still not reading.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let open = metric(&server, OPEN).await.unwrap();
        if open <= baseline + 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{open} connections open, {baseline} before the {stalled} stalled streams: \
             the server did not close them after {published} entries of 100 KB"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // What was in flight arrives, then the end.
    for (i, client) in clients.iter_mut().enumerate() {
        let got = read_until_closed(client, PATIENCE).await;
        assert!(
            got.is_some(),
            "stalled stream {i} was not closed after {published} entries of 100 KB"
        );
    }
    let seqs = tokio::time::timeout(PATIENCE, reading)
        .await
        .expect("the reader gets every event")
        .unwrap();
    let expected: Vec<u64> = (SEED + 1..=SEED + published as u64).collect();
    assert_eq!(
        seqs, expected,
        "the reading stream got every event once, in order"
    );
    assert!(
        held_max <= (stalled as u64 + 1) * per_connection,
        "bytes held for connections stayed bounded: {held_max}"
    );
    let dropped = metric(&server, "livefeed_sse_dropped_total").await.unwrap();
    assert!(dropped >= stalled as u64, "dropped: {dropped}");
    // Memory returns when they leave.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while metric(&server, HELD).await != Some(0) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "held bytes go back to zero"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_stops_reading_is_closed_after_the_queue_in_events() {
    let _serial = SERIAL.lock().await;
    let mut site = TestSite::new();
    site.config.sse_queue = 8;
    stalled_subscribers_are_closed(site, 6, 200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_stops_reading_is_closed_after_the_queue_in_bytes() {
    let _serial = SERIAL.lock().await;
    let mut site = TestSite::new();
    site.config.sse_queue = 1_000_000;
    site.config.sse_queue_bytes = 300_000;
    stalled_subscribers_are_closed(site, 6, 200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_catching_up_from_far_behind_is_not_cut_off() {
    let _serial = SERIAL.lock().await;
    let mut site = TestSite::new();
    site.config.sse_queue = 1;
    let server = site.start().await;
    // 500 events in the log, of about 5 KB each: more than the sockets buffer, so the stream
    // has to wait for the client again and again.
    let server = std::sync::Arc::new(server);
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..10 {
        let server = std::sync::Arc::clone(&server);
        tasks.spawn(async move {
            for n in (w..500 - SEED as usize).step_by(10) {
                server
                    .publish(LIVE, &format!("Backlog {n}"), &body_of(n, 5_000))
                    .await;
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    assert_eq!(server.head().await, 500);
    let dropped_before = metric(&server, "livefeed_sse_dropped_total").await;

    let mut sse = Sse::connect(&server, "after=0", None).await;
    let mut seqs = Vec::new();
    while seqs.len() < 500 {
        seqs.push(sse.event().await.seq);
    }
    assert_eq!(
        seqs,
        (1..=500).collect::<Vec<u64>>(),
        "every event once, in order"
    );
    // Still connected, nothing more to read: then a new event arrives live.
    assert!(sse.try_event(Duration::from_millis(500)).await.is_none());
    let ack = server.publish(LIVE, "Live again", "Text.").await;
    assert_eq!(sse.event().await.seq, ack["seq"].as_u64().unwrap());
    assert_eq!(
        metric(&server, "livefeed_sse_dropped_total").await,
        dropped_before,
        "nobody was dropped"
    );
    drop(sse);
    std::sync::Arc::into_inner(server).unwrap().stop().await;
}

/// An SSE stream costs the task of its connection and nothing more: stalled readers are found
/// by one sweeper per server, not by a task per stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sse_stream_has_no_task_of_its_own() {
    let _serial = SERIAL.lock().await;
    let server = TestSite::new().start().await;
    let waiting = |n: u64| {
        let server = &server;
        async move {
            let deadline = tokio::time::Instant::now() + PATIENCE;
            while metric(server, SSE_WAITING).await != Some(n) {
                assert!(tokio::time::Instant::now() < deadline, "{n} streams open");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    // One stream first: whatever the server starts once for SSE is running by then.
    let _first = stalled_client(&server).await;
    waiting(1).await;
    let tasks = || {
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
    };
    let before = tasks();
    const N: usize = 40;
    let mut clients = Vec::new();
    for _ in 0..N {
        clients.push(stalled_client(&server).await);
    }
    waiting(N as u64 + 1).await;
    let added = tasks().saturating_sub(before);
    assert!(
        added <= N + N / 4,
        "{N} more SSE streams added {added} tasks: more than one per connection"
    );
    drop(clients);
    server.stop().await;
}

/// SSE ids are `EPOCH:SEQ`. `Last-Event-ID` takes one back, or a bare seq (read as the current
/// epoch, so older clients keep working); an id of another history starts with a `reset`
/// naming this one, never with events of the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_ids_carry_the_epoch_and_resume_with_or_without_it() {
    let server = TestSite::new().start().await;
    let health: serde_json::Value = server.get("/healthz").await.json().await.unwrap();
    let epoch = health["epoch"].as_str().unwrap().to_string();

    let mut sse = Sse::connect(&server, "after=0", None).await;
    let first = sse.event().await;
    assert_eq!(first.id, format!("{epoch}:1"));
    drop(sse);
    // Resumed with the id as sent: what came after it.
    let mut sse = Sse::connect_with_id(&server, "", &format!("{epoch}:2")).await;
    let e = sse.event().await;
    assert_eq!((e.seq, e.id.as_str()), (3, format!("{epoch}:3").as_str()));
    drop(sse);
    // A bare seq is a seq of the current epoch.
    let mut sse = Sse::connect_with_id(&server, "", "4").await;
    assert_eq!(sse.event().await.seq, 5);
    drop(sse);
    // Another history: a reset naming this one and its head, then only what comes next.
    let other = if epoch == "0123456789abcdef" {
        "fedcba9876543210"
    } else {
        "0123456789abcdef"
    };
    let mut sse = Sse::connect_with_id(&server, "after=0", &format!("{other}:2")).await;
    let reset = sse.event().await;
    assert_eq!(reset.op, "reset", "{:?}", reset.data);
    assert_eq!(reset.data["epoch"], epoch.as_str());
    assert_eq!(reset.data["head"], SEED);
    let ack = server.publish(LIVE, "After the reset", "Text.").await;
    let e = sse.event().await;
    assert_eq!(e.seq, ack["seq"].as_u64().unwrap(), "{:?}", e.data);
    drop(sse);
    // Malformed ids are refused, as before.
    for bad in [
        ":3".to_string(),
        "xyz:3".to_string(),
        "+1:3".to_string(),
        format!("{epoch}:"),
        format!("{epoch}:x"),
        format!("{epoch}:3:4"),
        format!("0{epoch}:3"),
    ] {
        let res = server
            .http
            .get(server.url("/live/events"))
            .header("Last-Event-ID", &bad)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400, "Last-Event-ID {bad:?}");
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(body["parameter"], "Last-Event-ID");
    }
    server.stop().await;
}
