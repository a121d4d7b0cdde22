//! The writer and the follower against the `Store` seam's every answer, through the in-memory
//! log (`log::memstore`): another writer appending first (a conflict), an outage, and a
//! replaced history (a new epoch). Real server, real HTTP.

mod common;

use common::{PATIENCE, Sse, TestSite};
use livefeed::log::event::Event;
use livefeed::log::memstore::MemoryLog;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::time::Duration;

const STORY: &str = "disputes-over-syria-summit-plan";

/// An event another writer made: a copy of one of the log's creates, as a new entry.
fn foreign_create(log: &MemoryLog, title: &str) -> Event {
    let mut e = log
        .events()
        .into_iter()
        .find(|e| e.story == STORY)
        .expect("the reports' events are in the log");
    let anchor = format!(
        "from-another-node-{}",
        title.to_lowercase().replace(' ', "-")
    );
    e.entry.id = format!("tag:other.example,2026:{STORY}/{anchor}");
    e.entry.anchor = anchor;
    e.entry.title = title.to_string();
    e
}

fn seqs(events: &[Value]) -> Vec<u64> {
    events.iter().map(|e| e["seq"].as_u64().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflict_is_caught_up_and_decided_again_and_the_publish_lands_once() {
    let site = TestSite::new();
    let log = MemoryLog::new();
    let server = site.start_with(log.store()).await;
    let head = server.head().await;
    assert_eq!(head, log.events().len() as u64);

    // Another node appends first: our writer's append is refused, it reads the other
    // node's event, decides again and appends after it.
    log.race_next_append(vec![foreign_create(&log, "Elsewhere")]);
    let ack = server.publish(STORY, "Ours", "Published here.").await;
    assert_eq!(ack["seq"], head + 2, "{ack}");

    let events = server.events_after(head).await;
    assert_eq!(seqs(&events), vec![head + 1, head + 2]);
    assert_eq!(events[0]["entry"]["title"], "Elsewhere");
    assert_eq!(events[1]["entry"]["title"], "Ours");
    // The store holds each exactly once, gapless.
    let stored = log.events();
    assert_eq!(stored.len() as u64, head + 2);
    assert!(stored.iter().zip(1..).all(|(e, seq)| e.seq == seq));
    assert_eq!(stored.iter().filter(|e| e.entry.title == "Ours").count(), 1);
    // The other node's entry is in the feed too: the follower fed the renderer.
    let feed = server
        .get(&format!("/feeds/{STORY}.json"))
        .await
        .text()
        .await
        .unwrap();
    assert!(feed.contains("Elsewhere") && feed.contains("Ours"));
    server.stop().await;
}

/// Other nodes winning the race again and again: that batch is answered 503 with
/// `Retry-After`, but it is no outage: the very next publish is taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_keeps_losing_the_race_is_503_but_the_next_publish_is_taken() {
    let site = TestSite::new();
    let log = MemoryLog::new();
    let server = site.start_with(log.store()).await;
    for i in 0..40 {
        log.race_next_append(vec![foreign_create(&log, &format!("Elsewhere {i}"))]);
    }
    let res = server
        .authed(reqwest::Method::POST, &format!("/stories/{STORY}/entries"))
        .json(&json!({ "title": "Unlucky", "body": "Text." }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    assert!(res.headers().contains_key("retry-after"));
    // Drain what is left of the race, then publish at once: no outage holds it back.
    loop {
        let res = server
            .authed(reqwest::Method::POST, &format!("/stories/{STORY}/entries"))
            .json(&json!({ "title": "Lucky", "body": "Text." }))
            .send()
            .await
            .unwrap();
        match res.status().as_u16() {
            201 => break,
            503 => {
                let problem: Value = res.json().await.unwrap();
                assert!(
                    problem["detail"]
                        .as_str()
                        .unwrap()
                        .contains("kept appending first"),
                    "an outage refused the publish: {problem}"
                );
            }
            other => panic!("{other}"),
        }
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_answers_503_keeps_reads_serving_and_publishing_resumes_alone() {
    let site = TestSite::new();
    let log = MemoryLog::new();
    let server = site.start_with(log.store()).await;
    let head = server.head().await;
    let publish = |key: &'static str| {
        server
            .authed(reqwest::Method::POST, &format!("/stories/{STORY}/entries"))
            .header("Idempotency-Key", key)
            .json(&json!({ "title": "During the outage", "body": "Text." }))
            .send()
    };

    log.set_outage(Some("connection refused"));
    let res = publish("k-1").await.unwrap();
    assert_eq!(res.status(), 503);
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    let problem: Value = res.json().await.unwrap();
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("connection refused"),
        "{problem}"
    );
    // Reads keep serving what the node has.
    assert_eq!(
        server.get(&format!("/feeds/{STORY}.atom")).await.status(),
        200
    );
    let (status, page) = server.live("after=0&timeout=0&limit=5").await;
    assert_eq!(status, 200);
    assert_eq!(page["events"].as_array().unwrap().len(), 5);
    let health: Value = server.get("/healthz").await.json().await.unwrap();
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(server.get("/readyz").await.status(), 503);
    // Nothing was written.
    assert_eq!(log.events().len() as u64, head);

    log.set_outage(None);
    // The client retries after Retry-After with the same key: one entry, answered 201.
    tokio::time::sleep(Duration::from_secs(retry)).await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let ack: Value = loop {
        let res = publish("k-1").await.unwrap();
        if res.status() == 201 {
            break res.json().await.unwrap();
        }
        assert_eq!(res.status(), 503);
        assert!(
            tokio::time::Instant::now() < deadline,
            "publishing never resumed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(ack["seq"], head + 1);
    let again = publish("k-1").await.unwrap();
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["seq"], ack["seq"]);
    assert_eq!(log.events().len() as u64, head + 1, "acknowledged once");
    assert_eq!(seqs(&server.events_after(head).await), vec![head + 1]);
    let health: Value = server.get("/healthz").await.json().await.unwrap();
    assert_eq!(health["status"], "ok", "{health}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_history_refuses_old_cursors_and_never_serves_them_new_events() {
    let site = TestSite::new();
    let log = MemoryLog::new();
    let server = site.start_with(log.store()).await;
    server.publish(STORY, "Before", "Old history.").await;
    let (status, page) = server.live("after=0&timeout=0&limit=1").await;
    assert_eq!(status, 200);
    let old_epoch = page["epoch"].as_str().unwrap().to_string();
    assert_eq!(old_epoch, log.epoch().to_string());
    let old_head = server.head().await;

    // A client waiting at the head of the old history, and an SSE stream.
    let waiting = tokio::spawn({
        let url = server.url(&format!(
            "/live?after={old_head}&epoch={old_epoch}&timeout=20"
        ));
        async move {
            let res = common::client().get(url).send().await.unwrap();
            (res.status(), res.json::<Value>().await.unwrap())
        }
    });
    let mut sse = Sse::connect(&server, "", Some(old_head)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The store comes back with an older, shorter history (restored from an old copy) that
    // then grows: its seqs overlap the old ones but name other events.
    let mut kept: Vec<Event> = log.events().into_iter().take(3).collect();
    for (i, title) in ["New one", "New two"].iter().enumerate() {
        let mut e = foreign_create(&log, title);
        e.seq = 4 + i as u64;
        kept.push(e);
    }
    let new_epoch = log.replace_history(kept).to_string();
    assert_ne!(new_epoch, old_epoch);

    let (status, body) = tokio::time::timeout(PATIENCE, waiting)
        .await
        .expect("the waiting poll is answered")
        .unwrap();
    assert_eq!(status, 410, "{body}");
    assert_eq!(body["epoch"], new_epoch.as_str());
    assert_eq!(body["head"], 5);
    let reset = tokio::time::timeout(PATIENCE, async {
        loop {
            let frame = sse.frame().await;
            if frame.event.as_deref() == Some("reset") {
                return frame;
            }
            assert_ne!(
                frame.event.as_deref(),
                Some("create"),
                "an event of another history on an old stream: {frame:?}"
            );
        }
    })
    .await
    .expect("the SSE stream is told");
    let data: Value = serde_json::from_str(reset.data.as_deref().unwrap()).unwrap();
    assert_eq!(data["epoch"], new_epoch.as_str());

    // Old cursors are refused, whatever their number; the new history is served.
    for after in [0, 2, 4, old_head] {
        let (status, body) = server
            .live(&format!("after={after}&epoch={old_epoch}&timeout=0"))
            .await;
        assert_eq!(status, 410, "after={after}: {body}");
    }
    let (status, body) = server
        .live(&format!("after=3&epoch={new_epoch}&timeout=0"))
        .await;
    assert_eq!(status, 200, "{body}");
    let titles: HashSet<&str> = body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["entry"]["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, HashSet::from(["New one", "New two"]));
    // And publishing goes on after the new history's head.
    let ack = server.publish(STORY, "After", "New history.").await;
    assert_eq!(ack["seq"], 6);
    server.stop().await;
}

/// The stories a relay serves, as the bytes of its feeds and pages.
fn served(
    relay: &livefeed::log::Relay,
    site: &livefeed::ingest::site::Site,
) -> Vec<(livefeed::layout::FileKey, Vec<u8>)> {
    use livefeed::layout::FileKey;
    let all = FileKey::Feed("all".into(), livefeed::render::Format::Atom);
    let mut paths = vec![FileKey::Index, all];
    for s in &site.stories {
        paths.extend(FileKey::story_files(&s.slug));
    }
    paths
        .into_iter()
        .map(|p| {
            let body = relay
                .hub
                .file(&p)
                .unwrap_or_else(|| panic!("{p:?} is served"))
                .body
                .to_vec();
            (p, body)
        })
        .collect()
}

fn copy_log(from: &std::path::Path, to: &std::path::Path, snapshot: bool) {
    std::fs::create_dir_all(to).unwrap();
    for name in ["events.log", "EPOCH", "snapshot"] {
        if name == "snapshot" && !snapshot {
            continue;
        }
        std::fs::copy(from.join(name), to.join(name)).unwrap();
    }
}

fn snapshot_seq(log: &std::path::Path) -> Option<u64> {
    let bytes = std::fs::read(log.join("snapshot")).ok()?;
    let line = bytes.split(|&b| b == b'\n').next()?;
    serde_json::from_slice::<Value>(line).ok()?["seq"].as_u64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_reads_the_snapshot_and_only_the_log_after_it() {
    use livefeed::ingest::site::Site;
    use livefeed::log::state::EntryInput;
    use livefeed::log::{Options, Relay, file_store, hub::Memory};
    let test = TestSite::new();
    let load = || Site::load(&test.data(), None).unwrap();
    let options = Options {
        memory: Memory {
            events: 40,
            bytes: 1 << 20,
        },
        snapshot_every: 100,
        keep_events: None,
    };
    let open = |dir: &std::path::Path| {
        let (site, dir) = (load(), dir.to_path_buf());
        tokio::task::spawn_blocking(move || Relay::open_with(site, file_store(&dir), options))
    };
    let relay = open(&test.log()).await.unwrap().unwrap();
    let seed = relay.hub.head();
    const N: u64 = 250;
    for i in 0..N {
        let input = EntryInput::cleaned(&format!("Update {i}"), "Text.", None, None);
        relay.publish(STORY, input, None).await.unwrap();
    }
    let head = seed + N;
    // The periodic snapshots are written off the publish path: wait for the one near 200.
    let deadline = std::time::Instant::now() + PATIENCE;
    while snapshot_seq(&test.log()).is_none_or(|s| s < 200) {
        assert!(
            std::time::Instant::now() < deadline,
            "no snapshot was written: {:?}",
            std::fs::read_dir(test.log())
                .map(|d| d.map(|e| e.unwrap().file_name()).collect::<Vec<_>>())
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The log as a crash would leave it now, with and without its snapshot.
    let crashed = tempfile::tempdir().unwrap();
    let (with, without) = (crashed.path().join("with"), crashed.path().join("without"));
    copy_log(&test.log(), &with, true);
    copy_log(&test.log(), &without, false);
    let taken = snapshot_seq(&with).unwrap();
    assert!(taken < head, "the copy has events after its snapshot");

    let from_snapshot = open(&with).await.unwrap().unwrap();
    let started = from_snapshot.started();
    assert_eq!(started.snapshot, Some(taken));
    assert_eq!(
        started.events_read as u64,
        head - taken,
        "only the log after it"
    );
    let replayed = open(&without).await.unwrap().unwrap();
    assert_eq!(replayed.started().snapshot, None);
    assert_eq!(replayed.started().events_read as u64, head);
    // The same stories either way, to the byte.
    let site = load();
    assert_eq!(from_snapshot.hub.head(), head);
    assert_eq!(served(&from_snapshot, &site), served(&replayed, &site));
    // A cursor older than the snapshot and than memory is read back from the log.
    let page = std::sync::Arc::clone(&from_snapshot.hub)
        .page_any(0, None, 1000)
        .await
        .unwrap();
    let got: Vec<u64> = page.events.iter().map(|e| e.seq).collect();
    assert_eq!(got.first(), Some(&1));
    assert!(got.windows(2).all(|w| w[1] == w[0] + 1), "in order, no gap");
    drop((from_snapshot, replayed, relay));
}

/// A replaced history is read page by page, not whole: the follower and the writer rebuild
/// from it holding one page of events at a time (`MemoryLog::largest_read`), and serve it all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_history_is_rebuilt_page_by_page() {
    const EVENTS: u64 = 1500;
    // The follower's and the writer's page (`follower::BATCH`, `writer::MAX_BATCH`).
    const PAGE: usize = 1024;
    let site = TestSite::new();
    let log = MemoryLog::new();
    let server = site.start_with(log.store()).await;
    server.publish(STORY, "Before", "Old history.").await;
    let history: Vec<Event> = (0..EVENTS)
        .map(|i| foreign_create(&log, &format!("Restored {i}")))
        .collect();
    let epoch = log.replace_history(history).to_string();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let body: Value = server.get("/healthz").await.json().await.unwrap();
        if body["epoch"] == epoch.as_str() && body["head"] == EVENTS {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not followed: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The writer rebuilds when it next decides.
    let ack = server.publish(STORY, "After", "New history.").await;
    assert_eq!(ack["seq"], EVENTS + 1);
    assert!(
        log.largest_read() <= PAGE,
        "one read returned {} events",
        log.largest_read()
    );
    let events = server.events_after(0).await;
    assert_eq!(seqs(&events), (1..=EVENTS + 1).collect::<Vec<_>>());
    assert_eq!(events[0]["entry"]["title"], "Restored 0");
    let feed = server
        .get(&format!("/feeds/{STORY}.json"))
        .await
        .text()
        .await
        .unwrap();
    assert!(feed.contains("After") && !feed.contains("Before"), "{feed}");
    server.stop().await;
}

/// `livefeed serve` on `data` with publishing on, a log that retains `keep` events, snapshots
/// every `every` events and segments of `segment` bytes. Settings through the environment.
fn retaining(data: &std::path::Path, keep: u64, every: u64, segment: u64) -> common::process::Proc {
    let mut cmd = common::process::serve_command(data);
    cmd.env("LIVEFEED_TOKEN", common::TOKEN)
        .env("LIVEFEED_KEEP_EVENTS", keep.to_string())
        .env("LIVEFEED_SNAPSHOT_EVERY", every.to_string())
        .env("LIVEFEED_SEGMENT_BYTES", segment.to_string());
    common::process::Proc::start(cmd)
}

/// The log's files in `dir` (segments, snapshot), sorted by name.
fn log_files(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("events") && n.ends_with(".log"))
        .collect();
    names.sort();
    names
}

async fn publish_n(http: &reqwest::Client, base: &str, n: usize) {
    for i in 0..n {
        let res = common::process::publish(http, base, &format!("Retained {i}")).await;
        assert_eq!(res.status(), 201);
    }
}

/// The live story's JSON feed, with the server's address (an ephemeral port) taken out.
async fn feed(http: &reqwest::Client, base: &str) -> String {
    let res = http
        .get(format!("{base}/feeds/{}.json", common::LIVE))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.text().await.unwrap().replace(base, "BASE")
}

/// The head, from `/healthz` (a long-poll from 0 is a 410 once the log is compacted).
async fn head_of(http: &reqwest::Client, base: &str) -> u64 {
    let health: Value = http
        .get(format!("{base}/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    health["head"].as_u64().expect("/healthz has the head")
}

/// The answer to a long-poll from `after`: status and body.
async fn poll(http: &reqwest::Client, base: &str, after: u64) -> (u16, Value) {
    let res = http
        .get(format!("{base}/live?after={after}&timeout=0&limit=1000"))
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

/// With a small `--keep-events`, snapshots and small segments, the log deletes the segments a
/// snapshot covers: a cursor older than what it retains gets 410 with `oldest`, one at
/// `oldest - 1` gets its events; the log keeps at least `--keep-events` events; a restart
/// loads the compacted log and serves the same feed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_keep_events_compacts_the_log_and_old_cursors_get_410() {
    let site = TestSite::new();
    let log = site.data().join("log");
    let http = common::client();
    let (keep, every, segment) = (20, 10, 2048);
    let mut server = retaining(&site.data(), keep, every, segment);
    let base = server.ready().await.unwrap();
    publish_n(&http, &base, 200).await;
    let head = head_of(&http, &base).await;
    // The last snapshot (and its compaction) is written off the publish path.
    let deadline = std::time::Instant::now() + PATIENCE;
    while log_files(&log).contains(&"events.log".to_string()) {
        assert!(
            std::time::Instant::now() < deadline,
            "the first segment was never deleted: {:?}\n{}",
            log_files(&log),
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, gone) = poll(&http, &base, 0).await;
    assert_eq!(status, 410, "{gone}");
    let oldest = gone["oldest"].as_u64().unwrap();
    assert!(oldest > 1, "{gone}");
    assert!(
        oldest + keep <= head + 1,
        "at least {keep} retained: {gone}"
    );
    assert_eq!(gone["head"].as_u64(), Some(head), "{gone}");
    let (status, page) = poll(&http, &base, oldest - 1).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["events"][0]["seq"].as_u64(), Some(oldest), "{page}");
    // SSE from the same old cursor: a `reset` naming `oldest`.
    let mut sse = http
        .get(format!("{base}/live/events"))
        .header("Last-Event-ID", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(sse.status(), 200);
    let mut text = String::new();
    while !text.contains("event: reset\ndata: ") || !text.contains("}\n") {
        let chunk = tokio::time::timeout(PATIENCE, sse.chunk())
            .await
            .expect("a reset in time")
            .unwrap()
            .expect("the stream stays open");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let data = text
        .split("event: reset\ndata: ")
        .nth(1)
        .and_then(|d| d.lines().next())
        .unwrap();
    let reset: Value = serde_json::from_str(data).unwrap();
    assert_eq!(reset["oldest"].as_u64(), Some(oldest), "{text}");
    drop(sse);
    // The disk holds a bounded log: segments of ~2 KiB, about keep + every events' worth.
    let bytes: u64 = log_files(&log)
        .iter()
        .map(|n| std::fs::metadata(log.join(n)).unwrap().len())
        .sum();
    assert!(bytes < 20 * segment, "{bytes} bytes: {:?}", log_files(&log));
    let before = feed(&http, &base).await;
    assert!(server.terminate(), "{}", server.log());

    // A restart loads the compacted log from its snapshot and serves the same bytes.
    let mut server = retaining(&site.data(), keep, every, segment);
    let base = server.ready().await.unwrap();
    assert_eq!(head_of(&http, &base).await, head);
    assert_eq!(feed(&http, &base).await, before);
    let (status, gone) = poll(&http, &base, 0).await;
    assert_eq!(status, 410, "{gone}");
    assert!(gone["oldest"].as_u64().unwrap() > 1, "{gone}");
    // And it goes on publishing.
    publish_n(&http, &base, 1).await;
    assert_eq!(head_of(&http, &base).await, head + 1);
    assert!(server.terminate(), "{}", server.log());
}

/// Segments are deleted only once a snapshot covers them: without one, every segment stays
/// (and a crash then, after rolls, still loads, replaying them all); the snapshot written at a
/// clean stop lets them go. A crash after that snapshot but before or midway through the
/// deletions leaves a log that loads and serves the same feed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_go_only_once_a_snapshot_covers_them_and_a_crash_between_roll_and_delete_loads() {
    let site = TestSite::new();
    let log = site.data().join("log");
    let http = common::client();
    let (keep, never, segment) = (20, 1_000_000, 2048);
    let mut server = retaining(&site.data(), keep, never, segment);
    let base = server.ready().await.unwrap();
    publish_n(&http, &base, 150).await;
    let head = head_of(&http, &base).await;
    let rolled = log_files(&log);
    assert!(rolled.len() >= 4, "the log rolled: {rolled:?}");
    assert!(rolled.contains(&"events.log".to_string()), "{rolled:?}");
    assert!(!log.join("snapshot").exists(), "no snapshot yet");
    let (status, page) = poll(&http, &base, 0).await;
    assert_eq!(status, 200, "nothing compacted without a snapshot: {page}");
    // A crash now: every segment, no snapshot.
    let uncovered = tempfile::tempdir().unwrap();
    copy_dir(&log, uncovered.path());
    let before = feed(&http, &base).await;
    // A clean stop writes a snapshot; the segments it covers go.
    assert!(server.terminate(), "{}", server.log());
    let left = log_files(&log);
    assert!(!left.contains(&"events.log".to_string()), "{left:?}");
    assert!(left.len() < rolled.len(), "{left:?} of {rolled:?}");
    assert_eq!(snapshot_seq(&log), Some(head));

    let check = |what: &'static str, dir: std::path::PathBuf| {
        let http = http.clone();
        let before = before.clone();
        async move {
            let mut server = retaining(&dir, keep, never, segment);
            let base = server
                .ready()
                .await
                .unwrap_or_else(|| panic!("{what}: it loads:\n{}", server.log()));
            assert_eq!(head_of(&http, &base).await, head, "{what}");
            assert_eq!(feed(&http, &base).await, before, "{what}");
            server.kill();
        }
    };
    // Every segment and no snapshot (a crash after rolls): replayed whole.
    let data = copy_site(&site, "uncovered");
    replace_log(&data, uncovered.path(), None);
    check("rolled, no snapshot", data).await;
    // The snapshot written, nothing deleted yet.
    let data = copy_site(&site, "undeleted");
    replace_log(&data, uncovered.path(), Some(&log.join("snapshot")));
    check("snapshot written, nothing deleted", data).await;
    // The snapshot written, the first segment deleted, the others not.
    let data = copy_site(&site, "midway");
    replace_log(&data, uncovered.path(), Some(&log.join("snapshot")));
    std::fs::remove_file(data.join("log").join("events.log")).unwrap();
    check("midway through the deletions", data).await;
    // And the compacted log itself.
    check("compacted", site.data()).await;
    // `livefeed build` reads a compacted log from its snapshot: the same site as from every
    // segment.
    let whole = copy_site(&site, "whole");
    replace_log(&whole, uncovered.path(), None);
    assert_eq!(build(&site.data()), build(&whole));
}

/// The files `livefeed build` writes for `data` (and its log), by path.
fn build(data: &std::path::Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let out = data.parent().unwrap().join(format!(
        "out-{}",
        data.parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy()
    ));
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_livefeed"))
        .args(["build", "--data"])
        .arg(data)
        .arg("--out")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success(), "livefeed build of {}", data.display());
    let mut files = std::collections::BTreeMap::new();
    let mut dirs = vec![out.clone()];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                let name = path.strip_prefix(&out).unwrap().display().to_string();
                files.insert(name, std::fs::read(&path).unwrap());
            }
        }
    }
    files
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() && e.file_name() != "LOCK" {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// Replaces the log of the data directory `data` with the files in `log`, and `snapshot`.
fn replace_log(data: &std::path::Path, log: &std::path::Path, snapshot: Option<&std::path::Path>) {
    let dir = data.join("log");
    let _ = std::fs::remove_dir_all(&dir);
    copy_dir(log, &dir);
    if let Some(snapshot) = snapshot {
        std::fs::copy(snapshot, dir.join("snapshot")).unwrap();
    }
}

/// A copy of the site's data (reports and manifest, no log) under `name`.
fn copy_site(site: &TestSite, name: &str) -> std::path::PathBuf {
    let into = site.dir.path().join(name);
    std::fs::create_dir_all(&into).unwrap();
    common::copy_data_from(&site.data(), &into)
}
