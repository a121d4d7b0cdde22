//! Crash safety with the real binary: `livefeed serve` is started on a temporary copy of
//! `data/`, killed with SIGKILL at random moments while publishers send entries, and started
//! again on the same directory. Nothing acknowledged may be lost, nothing may be duplicated by a
//! retry, and seq must stay gapless. Then the two kinds of log damage, end to end: a torn last
//! record (cut at every byte offset; cut at start) and a broken checksum in the middle (start
//! refused, every byte kept until `livefeed log repair`).
//!
//! The random schedule is printed; `LIVEFEED_TEST_SEED=<n>` replays it.

mod common;

use common::process::Proc;
use common::rng::Rng;
use common::{LIVE, SEED, TOKEN, TestSite};
use livefeed::log::store;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

fn log_file(data: &Path) -> PathBuf {
    data.join("log").join("events.log")
}

/// Files in the log directory other than the log and its lock (saved copies of damaged logs).
fn saved_copies(data: &Path) -> Vec<PathBuf> {
    let dir = data.join("log");
    let mut out: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|rd| rd.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    out.retain(|p| {
        !["events.log", "LOCK", "EPOCH", "snapshot"]
            .contains(&p.file_name().unwrap().to_str().unwrap())
    });
    out.sort();
    out
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// Every event after 0, read in `timeout=0` pages.
async fn all_events(http: &reqwest::Client, base: &str) -> Vec<Value> {
    let mut cursor = 0;
    let mut out = Vec::new();
    loop {
        let res = http
            .get(format!("{base}/live?after={cursor}&timeout=0&limit=1000"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let body: Value = res.json().await.unwrap();
        let events = body["events"].as_array().unwrap();
        if events.is_empty() {
            return out;
        }
        out.extend(events.iter().cloned());
        cursor = body["next"].as_u64().unwrap();
    }
}

fn seqs(events: &[Value]) -> Vec<u64> {
    events.iter().map(|e| e["seq"].as_u64().unwrap()).collect()
}

async fn publish(http: &reqwest::Client, base: &str, title: &str, key: &str) -> Value {
    let res = http
        .post(format!("{base}/stories/{LIVE}/entries"))
        .bearer_auth(TOKEN)
        .header("Idempotency-Key", key)
        .json(&json!({ "title": title, "body": "Text." }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    res.json().await.unwrap()
}

/// Cuts the log at a random offset inside its trailing run of records that no client was
/// told about (an idempotency key not in `acked`): what a power cut leaves of a batch being
/// written. False when the last record was acknowledged (nothing may be torn then).
fn tear_unacknowledged_tail(log: &Path, acked: &BTreeSet<String>, rng: &mut Rng) -> bool {
    let image = std::fs::read(log).unwrap();
    let mut starts = Vec::new();
    let mut at = 0;
    while at < image.len() {
        match store::decode(&image[at..]) {
            Ok((event, used)) => {
                starts.push((at, event.idempotency_key));
                at += used;
            }
            // A SIGKILL can cut a large write() short (the kernel checks for a fatal signal
            // between pages): the kill itself tore the unacknowledged last batch. Only the end
            // can be torn so: the rest of the image must be shorter than one record says.
            Err(store::Damage::Torn) => return true,
            Err(damage) => panic!("SIGKILL left {damage:?} at byte {at}, not a torn tail"),
        }
    }
    let from = starts
        .iter()
        .rev()
        .take_while(|(_, key)| key.as_ref().is_some_and(|k| !acked.contains(k)))
        .last()
        .map(|(start, _)| *start);
    let Some(from) = from else { return false };
    let cut = rng.range(from as u64, image.len() as u64) as usize;
    std::fs::write(log, &image[..cut]).unwrap();
    true
}

/// The answer to one acknowledged publish.
#[derive(Debug, Clone)]
struct Acked {
    seq: u64,
    id: String,
}

const ENTRIES: usize = 2000;
const PUBLISHERS: usize = 64;
/// SIGKILLs while publishes are in flight (more happen while the server is starting).
const KILLS: usize = 24;

fn crash_title(i: usize) -> String {
    format!("Crash entry {i}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_publishes_survive_repeated_sigkill() {
    let started = Instant::now();
    let site = TestSite::new();
    let data = site.data();
    let mut rng = Rng::from_env();

    let (base_tx, base_rx) = watch::channel::<Option<String>>(None);
    let next = Arc::new(AtomicUsize::new(0));
    let acked_count = Arc::new(AtomicUsize::new(0));
    let failed_attempts = Arc::new(AtomicUsize::new(0));
    let replayed = Arc::new(AtomicUsize::new(0));
    // Requests sent and not yet settled (acknowledged, or failed).
    let in_flight = Arc::new(AtomicUsize::new(0));
    let acks: Arc<Mutex<BTreeMap<usize, Acked>>> = Arc::default();

    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|_| {
            let (mut base_rx, next, acked_count, failed_attempts, replayed, acks) = (
                base_rx.clone(),
                Arc::clone(&next),
                Arc::clone(&acked_count),
                Arc::clone(&failed_attempts),
                Arc::clone(&replayed),
                Arc::clone(&acks),
            );
            let in_flight = Arc::clone(&in_flight);
            tokio::spawn(async move {
                let http = client();
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= ENTRIES {
                        return;
                    }
                    let key = format!("crash-{i}");
                    let body = json!({
                        "title": crash_title(i),
                        "body": format!("Entry {i} of the crash test.\n\n  • one\n  • two"),
                    });
                    loop {
                        let Some(base) = base_rx.borrow_and_update().clone() else {
                            let _ = base_rx.changed().await;
                            continue;
                        };
                        in_flight.fetch_add(1, Ordering::SeqCst);
                        let sent = http
                            .post(format!("{base}/stories/{LIVE}/entries"))
                            .bearer_auth(TOKEN)
                            .header("Idempotency-Key", &key)
                            .json(&body)
                            .send()
                            .await;
                        let failed = match sent {
                            Ok(res) if res.status() == 201 => {
                                let again = res.headers().get("idempotent-replayed").is_some();
                                // The answer only counts once it has been read whole.
                                match res.json::<Value>().await {
                                    Ok(answer) => {
                                        let ack = Acked {
                                            seq: answer["seq"].as_u64().unwrap(),
                                            id: answer["id"].as_str().unwrap().to_string(),
                                        };
                                        acks.lock().unwrap().insert(i, ack);
                                        acked_count.fetch_add(1, Ordering::SeqCst);
                                        if again {
                                            replayed.fetch_add(1, Ordering::SeqCst);
                                        }
                                        in_flight.fetch_sub(1, Ordering::SeqCst);
                                        break;
                                    }
                                    Err(_) => true,
                                }
                            }
                            Ok(res) => {
                                let status = res.status();
                                let text = res.text().await.unwrap_or_default();
                                // 503 is "shutting down"; anything else is a bug.
                                assert_eq!(status, 503, "publish {i}: {text}");
                                true
                            }
                            Err(_) => true,
                        };
                        in_flight.fetch_sub(1, Ordering::SeqCst);
                        if failed {
                            failed_attempts.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                    }
                }
            })
        })
        .collect();
    let all_done = || publishers.iter().all(|p| p.is_finished());

    // The kill points: one acknowledgement count in each of KILLS equal slices of the first 90%
    // of the run, so publishes are still in flight at the last kill however fast they go.
    let slice = ENTRIES * 9 / 10 / KILLS;
    let mut kill_at: std::collections::VecDeque<usize> = (0..KILLS)
        .map(|k| k * slice + rng.range(1, slice as u64) as usize)
        .collect();
    let mut kills = 0;
    let mut kills_while_starting = 0;
    let mut tears = 0;
    let mut logs = Vec::new();
    while !all_done() {
        let mut proc = Proc::spawn(&data);
        // Now and then, kill it while it is still opening the log (not counted in KILLS).
        if kills > 0 && rng.range(0, 6) == 0 {
            tokio::time::sleep(Duration::from_millis(rng.range(0, 40))).await;
            proc.kill();
            logs.push(proc.log());
            kills_while_starting += 1;
            continue;
        }
        let base = proc.ready().await.expect("the server starts");
        let _ = base_tx.send(Some(base));
        let target = kill_at.pop_front().unwrap_or(usize::MAX);
        let deadline = Instant::now() + common::PATIENCE;
        while acked_count.load(Ordering::SeqCst) < target && !all_done() {
            assert!(
                Instant::now() < deadline,
                "no progress: {} acknowledged\n{}",
                acked_count.load(Ordering::SeqCst),
                proc.log()
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        if all_done() {
            let _ = base_tx.send(None);
            assert!(proc.terminate(), "a clean exit on SIGTERM:\n{}", proc.log());
            logs.push(proc.log());
            break;
        }
        // A random moment: publishes are in flight, batches half written or half synced.
        tokio::time::sleep(Duration::from_micros(rng.range(0, 10_000))).await;
        proc.kill();
        let _ = base_tx.send(None);
        logs.push(proc.log());
        kills += 1;
        // Every other time, tear the log's unacknowledged tail too, as a power cut in the
        // middle of a write would (a SIGKILL alone leaves whole writes in the page cache).
        // Only once every request to the killed server has settled is it known which
        // records were acknowledged.
        if rng.range(0, 2) == 0 {
            let deadline = Instant::now() + common::PATIENCE;
            while in_flight.load(Ordering::SeqCst) > 0 {
                assert!(
                    Instant::now() < deadline,
                    "requests to a dead server never settled"
                );
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let acked: BTreeSet<String> = acks
                .lock()
                .unwrap()
                .keys()
                .map(|i| format!("crash-{i}"))
                .collect();
            if tear_unacknowledged_tail(&log_file(&data), &acked, &mut rng) {
                tears += 1;
            }
        }
    }
    for p in publishers {
        p.await.unwrap();
    }
    let acks = acks.lock().unwrap().clone();
    let publishing_took = started.elapsed();

    // Once more, on the same directory, to check what survived.
    let mut proc = Proc::spawn(&data);
    let base = proc
        .ready()
        .await
        .expect("the server starts after the last kill");
    let http = client();
    let events = all_events(&http, &base).await;
    let head = events.len() as u64;
    assert_eq!(
        seqs(&events),
        (1..=head).collect::<Vec<_>>(),
        "seq 1..head with no gap"
    );
    assert_eq!(
        head,
        SEED + ENTRIES as u64,
        "the seed events and one event per entry, nothing duplicated by a retry"
    );
    let mut by_title: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for e in &events {
        assert_eq!(e["op"], "create", "{e}");
        by_title
            .entry(e["entry"]["title"].as_str().unwrap().to_string())
            .or_default()
            .push(e);
    }
    assert_eq!(acks.len(), ENTRIES);
    let mut found_once = 0;
    for (i, ack) in &acks {
        let found = by_title
            .get(&crash_title(*i))
            .map_or(&[][..], Vec::as_slice);
        assert_eq!(found.len(), 1, "entry {i} is in the log exactly once");
        assert_eq!(
            found[0]["seq"], ack.seq,
            "entry {i} has the acknowledged seq"
        );
        assert_eq!(found[0]["entry"]["id"], ack.id.as_str(), "entry {i}");
        found_once += 1;
    }
    // The feeds agree: every entry once along the RFC 5005 archive chain (JSON Feed
    // `next_url`), and the XML feeds parse.
    let mut pages: Vec<Value> = Vec::new();
    let mut next = Some(format!("{base}/feeds/{LIVE}.json"));
    while let Some(url) = next {
        let page: Value = http.get(url).send().await.unwrap().json().await.unwrap();
        next = page["next_url"].as_str().map(str::to_string);
        pages.push(page);
    }
    let current_items = pages[0]["items"].as_array().unwrap().len();
    let titles: Vec<&str> = pages
        .iter()
        .flat_map(|p| p["items"].as_array().unwrap())
        .map(|i| i["title"].as_str().unwrap())
        .collect();
    let unique: BTreeSet<&str> = titles.iter().copied().collect();
    assert_eq!(titles.len(), unique.len(), "no title twice in the feed");
    for i in 0..ENTRIES {
        assert!(
            unique.contains(crash_title(i).as_str()),
            "entry {i} in the feed"
        );
    }
    for (ext, item) in [("rss", "item"), ("atom", "entry")] {
        let xml = http
            .get(format!("{base}/feeds/{LIVE}.{ext}"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let doc = roxmltree::Document::parse(&xml).unwrap_or_else(|e| panic!("{ext}: {e}"));
        let n = doc
            .descendants()
            .filter(|n| n.tag_name().name() == item)
            .count();
        assert_eq!(n, current_items, "{ext} has the JSON Feed's items");
    }
    assert!(proc.terminate(), "a clean exit:\n{}", proc.log());

    // A SIGKILL can only tear the last write: recovery never found damage in the middle.
    assert_eq!(saved_copies(&data), Vec::<PathBuf>::new());
    let image = std::fs::read(log_file(&data)).unwrap();
    let (on_disk, good, damage) = store::decode_all(&image);
    assert_eq!((good, damage), (image.len(), None), "the log is clean");
    assert_eq!(on_disk.len() as u64, head);
    let torn = logs
        .iter()
        .filter(|l| l.contains("event log was damaged"))
        .count();

    assert_eq!(kills, KILLS, "every planned kill happened while publishing");
    eprintln!(
        "crash: {} SIGKILLs survived ({kills} while publishing, {kills_while_starting} while \
         starting), {tears} unacknowledged tails torn as by a power cut, {torn} torn-tail \
         repairs logged on restart; {} entries acknowledged, {} found exactly once, head \
         {head}; {} failed attempts retried, {} answered from the log (Idempotent-Replayed); \
         publishing took {publishing_took:.1?}, all {:.1?}",
        kills + kills_while_starting,
        acks.len(),
        found_once,
        failed_attempts.load(Ordering::SeqCst),
        replayed.load(Ordering::SeqCst),
        started.elapsed()
    );
}

/// Starts the binary, publishes `n` entries, stops it gracefully; returns the log image and the
/// offsets where its records start.
async fn log_with_published(data: &Path, titles: &[&str]) -> (Vec<u8>, Vec<usize>) {
    let mut proc = Proc::spawn(data);
    let base = proc.ready().await.unwrap();
    let http = client();
    for (i, title) in titles.iter().enumerate() {
        publish(&http, &base, title, &format!("k-{i}")).await;
    }
    assert!(proc.terminate());
    let image = std::fs::read(log_file(data)).unwrap();
    let mut starts = Vec::new();
    let mut at = 0;
    while at < image.len() {
        starts.push(at);
        at += store::decode(&image[at..]).expect("a clean log").1;
    }
    assert_eq!(starts.len() as u64, SEED + titles.len() as u64);
    (image, starts)
}

/// The value of `key=` in a log line.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let at = line.find(&format!(" {key}="))? + key.len() + 2;
    line[at..].split_whitespace().next()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_cut_anywhere_in_its_last_record_keeps_every_intact_record() {
    let started = Instant::now();
    // Two directories, so two servers start at a time.
    let sites = [TestSite::new(), TestSite::new()];
    let (image, starts) = log_with_published(&sites[0].data(), &["One", "Two", "z"]).await;
    let last = *starts.last().unwrap();
    let kept = starts.len() as u64 - 1;
    let cuts: Vec<usize> = (last..image.len()).collect();
    let workers: Vec<_> = sites
        .iter()
        .enumerate()
        .map(|(w, site)| {
            let (data, image) = (site.data(), image.clone());
            let mine: Vec<usize> = cuts.iter().copied().skip(w).step_by(2).collect();
            tokio::spawn(async move {
                let http = client();
                std::fs::create_dir_all(data.join("log")).unwrap();
                for cut in mine {
                    std::fs::write(log_file(&data), &image[..cut]).unwrap();
                    let mut proc = Proc::spawn(&data);
                    let base = proc
                        .ready()
                        .await
                        .unwrap_or_else(|| panic!("cut at {cut}: no start\n{}", proc.log()));
                    let log = proc.log();
                    let events = all_events(&http, &base).await;
                    assert_eq!(
                        seqs(&events),
                        (1..=kept).collect::<Vec<_>>(),
                        "cut at {cut}"
                    );
                    let warning = log.lines().find(|l| l.contains("event log was damaged"));
                    if cut == last {
                        // Cut on a record boundary: a clean, shorter log.
                        assert!(warning.is_none(), "cut at {cut}: {log}");
                    } else {
                        let line = warning.unwrap_or_else(|| panic!("cut at {cut}: {log}"));
                        assert!(line.contains("WARN"), "{line}");
                        let dropped = (cut - last).to_string();
                        let kept_s = kept.to_string();
                        assert_eq!(
                            field(line, "dropped_bytes"),
                            Some(dropped.as_str()),
                            "{line}"
                        );
                        assert_eq!(field(line, "kept_events"), Some(kept_s.as_str()), "{line}");
                        assert!(line.contains(&format!("Torn at byte {last}")), "{line}");
                        assert_eq!(field(line, "saved_copy"), Some("None"), "{line}");
                    }
                    proc.kill();
                    // The repair is on disk: the log is exactly the intact records.
                    assert_eq!(std::fs::read(log_file(&data)).unwrap(), &image[..last]);
                    assert!(saved_copies(&data).is_empty(), "a torn tail is not saved");
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    eprintln!(
        "torn tail: {} cuts of a {}-byte last record, each restarted the binary in {:.1?}",
        cuts.len(),
        image.len() - last,
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_checksum_in_the_middle_is_kept_whole_until_the_operator_repairs() {
    let site = TestSite::new();
    let data = site.data();
    let titles = ["P1", "P2", "P3", "P4", "P5", "P6"];
    let (image, starts) = log_with_published(&data, &titles).await;
    // Break the payload of the record with seq SEED + 3 (the third published entry).
    let bad = SEED as usize + 2;
    let mut damaged = image.clone();
    damaged[starts[bad] + 8 + 10] ^= 0x20;
    std::fs::write(log_file(&data), &damaged).unwrap();

    // Acknowledged records follow the damage: the server refuses to start and cuts nothing.
    let mut proc = Proc::spawn(&data);
    assert!(proc.ready().await.is_none(), "started:\n{}", proc.log());
    assert!(!proc.wait());
    let log = proc.log();
    assert!(
        log.contains(&format!("damaged at byte {} (Checksum)", starts[bad])),
        "{log}"
    );
    assert!(log.contains("3 intact records after it"), "{log}");
    assert!(log.contains("livefeed log repair"), "{log}");
    assert_eq!(std::fs::read(log_file(&data)).unwrap(), damaged);
    assert_eq!(saved_copies(&data), Vec::<PathBuf>::new());

    // The operator repairs: the original is kept, byte for byte, then the log is cut.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_livefeed"))
        .args(["log", "repair", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected = log_file(&data).with_extension(format!("log.damaged-{}", starts[bad]));
    assert_eq!(saved_copies(&data), vec![expected.clone()]);
    assert!(stdout.contains(&expected.display().to_string()), "{stdout}");
    let dropped = image.len() - starts[bad];
    assert!(
        stdout.contains(&format!("dropped {dropped} bytes")),
        "{stdout}"
    );
    assert_eq!(std::fs::read(&expected).unwrap(), damaged);
    // The good records after the damage are still readable from the copy by an operator.
    let copy = std::fs::read(&expected).unwrap();
    let mut rest = Vec::new();
    let mut at = starts[bad + 1];
    while at < copy.len() {
        let (e, used) = store::decode(&copy[at..]).expect("an intact record after the damage");
        rest.push(e);
        at += used;
    }
    let rest_titles: Vec<&str> = rest.iter().map(|e| e.entry.title.as_str()).collect();
    assert_eq!(rest_titles, ["P4", "P5", "P6"]);

    // Serving and publishing continue from the kept prefix, and the log is clean again.
    let mut proc = Proc::spawn(&data);
    let base = proc
        .ready()
        .await
        .expect("the server starts after the repair");
    let http = client();
    let events = all_events(&http, &base).await;
    let kept = bad as u64;
    assert_eq!(seqs(&events), (1..=kept).collect::<Vec<_>>());
    let answer = publish(&http, &base, "After the repair", "k-after").await;
    assert_eq!(answer["seq"], kept + 1);
    assert!(proc.terminate());
    let (on_disk, good, damage) = store::decode_all(&std::fs::read(log_file(&data)).unwrap());
    assert_eq!(damage, None, "clean after {good} bytes");
    assert_eq!(on_disk.len() as u64, kept + 1);

    // A second start finds nothing to repair and leaves the copy alone.
    let mut proc = Proc::spawn(&data);
    proc.ready().await.unwrap();
    assert!(
        !proc.log().contains("event log was damaged"),
        "{}",
        proc.log()
    );
    assert_eq!(saved_copies(&data), vec![expected]);
    proc.kill();
}
