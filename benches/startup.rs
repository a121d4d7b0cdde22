//! Start-up time and memory of the relay over a log of N events: a full replay (no snapshot:
//! how every start worked before snapshots) against a start from a snapshot. Each start runs in
//! a child process of its own, so its peak resident memory is its own. Prints numbers; asserts
//! no timing.
//!
//! `cargo bench --bench startup -- [N ...]` (default 10000 100000 1000000)
//!
//! The events: creates until each story holds 2,000 entries, then edits of them in turn (and a
//! delete and a create now and then), so the number of events grows while the stories stay the
//! size of a long live page; what grows is what a start reads, not what it renders.

use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use livefeed::ingest::site::Site;
use livefeed::log::event::{Event, Op, Source};
use livefeed::log::store::{FileStore, Store};
use livefeed::log::{Options, Relay, file_store, hub::Memory};
use livefeed::model::Entry;

const POOL: u64 = 2_000;

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data")
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmHWM:"))?.to_string();
            line.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(0)
}

fn entry(story: &str, n: u64, version: u64, t: DateTime<Utc>) -> Entry {
    let anchor = format!("update-{n}");
    Entry {
        story: story.to_string(),
        id: format!("tag:bench.example,2026:{story}/{anchor}"),
        url: format!("http://127.0.0.1/stories/{story}/#{anchor}"),
        anchor,
        title: format!("Update {n}, version {version}"),
        published: t,
        updated: t + Duration::seconds(version as i64),
        summary: format!("What happened in update {n}."),
        content_html: format!(
            "<p>What happened in update {n}, told in a paragraph of ordinary length for a live \
             page, version {version}.</p>"
        ),
        ..Entry::default()
    }
}

/// Writes a log of `n` events into `dir` (through the file store, so it is what a server
/// writes).
fn make_log(dir: &Path, n: u64, stories: &[String]) {
    let _ = std::fs::remove_dir_all(dir);
    let mut store = FileStore::new(dir);
    store.load().expect("a new log");
    let t0 = DateTime::<Utc>::UNIX_EPOCH + Duration::days(20_000);
    let mut batch = Vec::with_capacity(1000);
    let mut head = 0u64;
    for seq in 1..=n {
        let s = (seq as usize) % stories.len();
        let story = &stories[s];
        let k = seq / stories.len() as u64;
        let (op, entry) = if k < POOL {
            (
                Op::Create,
                entry(story, k, 0, t0 + Duration::seconds(k as i64)),
            )
        } else {
            let i = k % POOL;
            let op = match k % 97 {
                0 => Op::Delete,
                1 => Op::Create,
                _ => Op::Update,
            };
            (
                op,
                entry(story, i, k / POOL, t0 + Duration::seconds(i as i64)),
            )
        };
        batch.push(Event {
            seq,
            op,
            story: story.clone(),
            entry,
            source: Source::Api,
            idempotency_key: None,
            idempotency_fingerprint: None,
            at: Some(t0),
            report_anchor: None,
            ended: None,
        });
        if batch.len() == 1000 || seq == n {
            store.append(head, &batch).expect("appended");
            head = seq;
            batch.clear();
        }
    }
}

/// In the child: open the relay on `log`, time it, close it (which writes a snapshot).
fn child(log: &Path) {
    let site = Site::load(&data_dir(), None).expect("the data loads");
    let started = Instant::now();
    let relay = Relay::open_with(
        site,
        file_store(log),
        Options {
            memory: Memory::default(),
            snapshot_every: u64::MAX,
            keep_events: None,
        },
    )
    .expect("the relay opens");
    let took = started.elapsed();
    let s = relay.started();
    let rss = peak_rss_kib();
    drop(relay);
    println!(
        "{} {} {} {}",
        took.as_secs_f64(),
        rss,
        s.events_read,
        s.snapshot.map_or(-1, |v| v as i64)
    );
}

fn run_child(log: &Path) -> (f64, u64, u64, i64) {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--child"])
        .arg(log)
        .env("RUST_LOG", "off")
        .output()
        .expect("the child runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or_default();
    let f: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        f.len(),
        4,
        "child said: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        f[0].parse().unwrap(),
        f[1].parse().unwrap(),
        f[2].parse().unwrap(),
        f[3].parse().unwrap(),
    )
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        return child(Path::new(&args[1]));
    }
    let sizes: Vec<u64> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let sizes = if sizes.is_empty() {
        vec![10_000, 100_000, 1_000_000]
    } else {
        sizes
    };
    let stories: Vec<String> = Site::load(&data_dir(), None)
        .expect("the data loads")
        .stories
        .iter()
        .map(|s| s.slug.clone())
        .collect();
    let work = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/startup-bench");
    println!(
        "events      log MB  | full replay: s     peak RSS MiB | snapshot + tail: s  peak RSS MiB  events read"
    );
    for n in sizes {
        let log = work.join(n.to_string());
        make_log(&log, n, &stories);
        let mb = std::fs::metadata(log.join("events.log")).map_or(0, |m| m.len()) as f64 / 1e6;
        let (full, full_rss, read, snap) = run_child(&log);
        assert_eq!(snap, -1, "the first start has no snapshot");
        assert!(read >= n);
        // The first start wrote a snapshot when it stopped: the second reads it.
        let (fast, fast_rss, tail, snap) = run_child(&log);
        assert!(snap >= n as i64, "the second start used the snapshot");
        println!(
            "{n:>9}  {mb:>7.1}  | {full:>13.3}  {:>15.1} | {fast:>18.3}  {:>12.1}  {tail:>11}",
            full_rss as f64 / 1024.0,
            fast_rss as f64 / 1024.0,
        );
        let _ = std::fs::remove_dir_all(&log);
    }
}
