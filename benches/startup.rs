//! Start-up time and memory of the relay over a log of N events: a full replay (no snapshot:
//! how every start worked before snapshots) against a start from a snapshot. Each start runs in
//! a child process of its own, so its peak resident memory is its own. Prints numbers; asserts
//! no timing.
//!
//! `cargo bench --bench startup -- [N ...] [--rounds R] [--work DIR] [--json]` (default sizes
//! 10000 100000 1000000; `--json`: one JSON line per size and round, which `bench/run` reads)
//!
//! The events: creates until each story holds 2,000 entries, then edits of them in turn (and a
//! delete and a create now and then), so the number of events grows while the stories stay the
//! size of a long live page; what grows is what a start reads, not what it renders.

use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use livefeed::ingest::site::Site;
use livefeed::log::event::{Event, Op, Source};
use livefeed::log::snapshot::DEFAULT_EVERY;
use livefeed::log::store::{FileStore, SNAPSHOT_FILE, Store};
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
    extend_log(dir, n, stories);
}

/// Appends events to the log in `dir` until its head is `n`; returns the head it had.
fn extend_log(dir: &Path, n: u64, stories: &[String]) -> u64 {
    let mut store = FileStore::new(dir);
    let from = store
        .load()
        .expect("the log loads")
        .events
        .last()
        .map_or(0, |e| e.seq);
    let t0 = DateTime::<Utc>::UNIX_EPOCH + Duration::days(20_000);
    let mut batch = Vec::with_capacity(1000);
    let mut head = from;
    for seq in from + 1..=n {
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
    from
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
    // `--json`: one JSON object per size and round (for bench/run) instead of the table.
    let json = args.iter().any(|a| a == "--json");
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
    };
    let rounds: usize = flag("--rounds").and_then(|r| r.parse().ok()).unwrap_or(1);
    let work = flag("--work").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("target/startup-bench"),
        PathBuf::from,
    );
    let sizes: Vec<u64> = args
        .iter()
        .enumerate()
        .filter(|(i, _)| *i == 0 || !["--rounds", "--work"].contains(&args[i - 1].as_str()))
        .filter_map(|(_, a)| a.parse().ok())
        .collect();
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
    if !json {
        println!(
            "events      log MB  | full replay: s     peak RSS MiB | snapshot + tail: s  peak RSS MiB  events read"
        );
    }
    for n in sizes {
        let log = work.join(n.to_string());
        // A server snapshots every DEFAULT_EVERY events, so a restart reads up to that many
        // after its snapshot: the snapshot here is that far behind the head (a tenth of a small
        // log).
        let tail = (DEFAULT_EVERY - 1).min(n / 10);
        make_log(&log, n - tail, &stories);
        // The snapshot at n - tail (written by this start when it stops), kept aside.
        let (_, _, _, snap) = run_child(&log);
        assert_eq!(snap, -1, "the first start has no snapshot");
        let kept = work.join(format!("{n}.snapshot"));
        std::fs::rename(log.join(SNAPSHOT_FILE), &kept).expect("the start wrote a snapshot");
        // The start added the reports' own events: the snapshot is at `at`.
        let at = extend_log(&log, n, &stories);
        let mb = std::fs::metadata(log.join("events.log")).map_or(0, |m| m.len()) as f64 / 1e6;
        for round in 1..=rounds {
            // A full replay of all n, without a snapshot; then a start from the snapshot at
            // n - tail and the tail after it.
            let _ = std::fs::remove_file(log.join(SNAPSHOT_FILE));
            let (full, full_rss, read, snap) = run_child(&log);
            assert_eq!(snap, -1, "a full replay");
            assert!(read >= n);
            std::fs::copy(&kept, log.join(SNAPSHOT_FILE)).expect("the snapshot is put back");
            let (fast, fast_rss, tail_read, snap) = run_child(&log);
            assert_eq!(snap, at as i64, "the start used the snapshot");
            assert_eq!(tail_read, n - at, "the start read the tail only");
            if json {
                println!(
                    "{{\"events\":{n},\"round\":{round},\"log_mb\":{mb:.1},\"full_replay_s\":{full},\"full_replay_rss_kib\":{full_rss},\"full_replay_events_read\":{read},\"seconds\":{fast},\"peak_rss_kib\":{fast_rss},\"events_read\":{tail_read}}}"
                );
            } else {
                println!(
                    "{n:>9}  {mb:>7.1}  | {full:>13.3}  {:>15.1} | {fast:>18.3}  {:>12.1}  {tail_read:>11}",
                    full_rss as f64 / 1024.0,
                    fast_rss as f64 / 1024.0,
                );
            }
        }
        let _ = std::fs::remove_dir_all(&log);
        let _ = std::fs::remove_file(&kept);
    }
}
