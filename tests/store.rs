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
