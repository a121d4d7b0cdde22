//! The embedded log's durability promises, with the real binary: damage in the middle of the
//! log stops `serve` and keeps every byte, `livefeed log check` and `livefeed log repair` let
//! the operator look and decide, saved copies never replace one another, one data directory
//! has one server, and a log that cannot be written at start means serving read-only.

mod common;

use common::client;
use common::process::{Proc, full_disk_command, head, publish, serve_command};
use common::{LIVE, SEED, TOKEN, TestSite};
use livefeed::log::store;
use serde_json::Value;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn log_file(data: &Path) -> PathBuf {
    data.join("log").join("events.log")
}

/// `livefeed log ACTION --data DATA`: exit success, stdout, stderr.
fn log_cmd(action: &str, data: &Path) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_livefeed"))
        .args(["log", action, "--data"])
        .arg(data)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// Starts the binary on `data`, publishes `titles`, stops it; the log image and where each
/// record starts.
async fn log_with_published(data: &Path, titles: &[&str]) -> (Vec<u8>, Vec<usize>) {
    let mut proc = Proc::spawn(data);
    let base = proc.ready().await.unwrap();
    let http = client();
    for title in titles {
        assert_eq!(publish(&http, &base, title).await.status(), 201);
    }
    assert!(proc.terminate());
    let image = std::fs::read(log_file(data)).unwrap();
    let mut starts = Vec::new();
    let mut at = 0;
    while at < image.len() {
        starts.push(at);
        at += store::decode(&image[at..]).expect("a clean log").1;
    }
    (image, starts)
}

/// Copies saved aside in the log directory, sorted.
fn saved_copies(data: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(data.join("log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains(".damaged-"))
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_length_bit_in_the_middle_stops_serve_until_the_operator_repairs() {
    let site = TestSite::new();
    let data = site.data();
    let (image, starts) = log_with_published(&data, &["P1", "P2", "P3", "P4"]).await;
    let bad = SEED as usize + 1; // the record with seq SEED + 2
    let mut damaged = image.clone();
    // A flipped bit in the length field: the record's end is lost, the ones after are intact.
    damaged[starts[bad] + 2] ^= 0x01;
    std::fs::write(log_file(&data), &damaged).unwrap();

    // `serve` refuses, saying what is damaged and how to proceed, and keeps every byte.
    let mut proc = Proc::spawn(&data);
    assert!(
        proc.ready().await.is_none(),
        "serve started:\n{}",
        proc.log()
    );
    assert!(!proc.wait());
    let log = proc.log();
    for needle in [
        format!("at byte {}", starts[bad]),
        format!("{} intact records come before", bad),
        "2 intact records after".to_string(),
        "livefeed log check".to_string(),
        "livefeed log repair".to_string(),
    ] {
        assert!(log.contains(&needle), "{needle:?} not in:\n{log}");
    }
    assert_eq!(std::fs::read(log_file(&data)).unwrap(), damaged);
    assert!(saved_copies(&data).is_empty());

    // `log check` reports it, changes nothing, exits 1.
    let (ok, out, err) = log_cmd("check", &data);
    assert!(!ok, "{out}{err}");
    assert!(out.contains(&format!("head seq {bad}")), "{out}");
    assert!(
        out.contains("BadLength") && out.contains(&format!("at byte {}", starts[bad])),
        "{out}"
    );
    let (a, b) = (SEED + 3, SEED + 4);
    assert!(
        out.contains(&format!("2 intact records follow it (seq {a} to {b}")),
        "{out}"
    );
    assert_eq!(std::fs::read(log_file(&data)).unwrap(), damaged);

    // `log repair` saves the original, cuts, and says what it dropped.
    let (ok, out, err) = log_cmd("repair", &data);
    assert!(ok, "{out}{err}");
    let copy = log_file(&data).with_extension(format!("log.damaged-{}", starts[bad]));
    assert_eq!(saved_copies(&data), vec![copy.clone()]);
    assert_eq!(std::fs::read(&copy).unwrap(), damaged);
    assert!(out.contains(&copy.display().to_string()), "{out}");
    let dropped = damaged.len() - starts[bad];
    assert!(
        out.contains(&format!(
            "dropped {dropped} bytes: the damaged record(s) (seq {0} to {0}) and 2 intact \
             records (seq {a} to {b})",
            SEED + 2
        )),
        "{out}"
    );
    assert_eq!(
        std::fs::read(log_file(&data)).unwrap(),
        &image[..starts[bad]]
    );
    let (ok, out, _) = log_cmd("check", &data);
    assert!(ok && out.contains("damage: none"), "{out}");

    // Serving resumes from the kept prefix.
    let mut proc = Proc::spawn(&data);
    let base = proc.ready().await.expect("serve starts after the repair");
    let http = client();
    assert_eq!(head(&http, &base).await, bad as u64);
    assert!(proc.terminate());

    // The same damage again at the same offset: the first copy is kept, a second one made.
    let (image2, starts2) = {
        let mut proc = Proc::spawn(&data);
        let base = proc.ready().await.unwrap();
        for t in ["Q1", "Q2"] {
            assert_eq!(publish(&http, &base, t).await.status(), 201);
        }
        assert!(proc.terminate());
        let image = std::fs::read(log_file(&data)).unwrap();
        let mut starts = Vec::new();
        let mut at = 0;
        while at < image.len() {
            starts.push(at);
            at += store::decode(&image[at..]).unwrap().1;
        }
        (image, starts)
    };
    assert_eq!(starts2[bad], starts[bad]);
    let mut damaged2 = image2.clone();
    damaged2[starts2[bad] + 2] ^= 0x01;
    std::fs::write(log_file(&data), &damaged2).unwrap();
    let (ok, out, err) = log_cmd("repair", &data);
    assert!(ok, "{out}{err}");
    let second = PathBuf::from(format!("{}.2", copy.display()));
    assert_eq!(saved_copies(&data), vec![copy.clone(), second.clone()]);
    assert_eq!(
        std::fs::read(&copy).unwrap(),
        damaged,
        "the first copy is untouched"
    );
    assert_eq!(std::fs::read(&second).unwrap(), damaged2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_tail_is_reported_by_check_and_cut_by_serve() {
    let site = TestSite::new();
    let data = site.data();
    let (image, starts) = log_with_published(&data, &["T1"]).await;
    let last = *starts.last().unwrap();
    std::fs::write(log_file(&data), &image[..image.len() - 3]).unwrap();
    let (ok, out, _) = log_cmd("check", &data);
    assert!(!ok, "{out}");
    assert!(
        out.contains(&format!("Torn at byte {last}")) && out.contains("a torn tail"),
        "{out}"
    );
    let mut proc = Proc::spawn(&data);
    let base = proc.ready().await.expect("a torn tail does not stop serve");
    assert_eq!(head(&client(), &base).await, SEED);
    proc.kill();
    assert_eq!(std::fs::read(log_file(&data)).unwrap(), &image[..last]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_one_data_directory_refuses_naming_the_first() {
    let site = TestSite::new();
    let data = site.data();
    let mut first = Proc::spawn(&data);
    let base = first.ready().await.unwrap();
    let mut second = Proc::spawn(&data);
    assert!(
        second.ready().await.is_none(),
        "two servers on one log:\n{}",
        second.log()
    );
    assert!(!second.wait());
    let log = second.log();
    assert!(
        log.contains(&format!(
            "in use by another livefeed process (pid {})",
            first.pid()
        )),
        "{log}"
    );
    // Repair takes the same lock.
    let (ok, out, err) = log_cmd("repair", &data);
    assert!(!ok, "{out}");
    assert!(err.contains(&format!("pid {}", first.pid())), "{err}");
    // The first is unharmed; once it stops, the directory is free.
    let http = client();
    assert_eq!(publish(&http, &base, "Still here").await.status(), 201);
    assert!(first.terminate());
    let mut third = Proc::spawn(&data);
    assert!(third.ready().await.is_some(), "{}", third.log());
    third.kill();
}

/// Adds a new entry to the live report (so the next start has an event to write).
fn edit_report(data: &Path) {
    let path = data.join(format!("{LIVE}.txt"));
    let report = std::fs::read_to_string(&path).unwrap();
    let entry = "Written while the disk was full\n\nA sentence that must not be lost.\n\n\n";
    let report = report.replacen("Live updates\n\n", &format!("Live updates\n\n{entry}"), 1);
    std::fs::write(&path, report).unwrap();
}

async fn assert_read_only(proc: &mut Proc, seqs: u64, why: &str) {
    let base = proc
        .ready()
        .await
        .unwrap_or_else(|| panic!("serve exited instead of serving read-only:\n{}", proc.log()));
    let http = client();
    // Reads work from the log as it is.
    assert_eq!(head(&http, &base).await, seqs);
    let feed = http
        .get(format!("{base}/feeds/{LIVE}.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(feed.status(), 200);
    let feed = feed.text().await.unwrap();
    assert!(feed.contains("R1"), "{feed}");
    // Publishing answers 503 with Retry-After and a problem body.
    let res = publish(&http, &base, "Refused").await;
    assert_eq!(res.status(), 503);
    assert!(res.headers().get("retry-after").is_some(), "{res:?}");
    assert_eq!(
        res.headers()["content-type"],
        "application/problem+json",
        "{res:?}"
    );
    let problem: Value = res.json().await.unwrap();
    assert!(
        problem["detail"].as_str().unwrap().contains("read-only"),
        "{problem}"
    );
    // /healthz: still serving reads (200), degraded, and says why; /readyz: 503.
    let res = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let health: Value = res.json().await.unwrap();
    assert_eq!(health["status"], "degraded", "{health}");
    assert!(health["reasons"].to_string().contains(why), "{health}");
    let res = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(
        head(&http, &base).await,
        seqs,
        "nothing unwritten is visible"
    );
}

/// A full disk at start, as root can feel it: RLIMIT_FSIZE at the log's size makes every
/// write that grows a file fail (EFBIG; SIGXFSZ ignored so it is an error, not a kill).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restarted_on_a_full_disk_serves_read_only() {
    let site = TestSite::new();
    let data = site.data();
    let (image, _) = log_with_published(&data, &["R1", "R2"]).await;
    edit_report(&data);
    let limit = image.len() as libc::rlim_t;
    let mut proc = Proc::start(full_disk_command(&data, limit));
    assert_read_only(&mut proc, SEED + 2, "cannot be written").await;
    assert!(proc.terminate());
    assert_eq!(
        std::fs::read(log_file(&data)).unwrap(),
        image,
        "log unchanged"
    );

    // On a working disk the report change is relayed as usual.
    let mut proc = Proc::spawn(&data);
    let base = proc.ready().await.unwrap();
    assert_eq!(head(&client(), &base).await, SEED + 3);
    proc.kill();
}

/// A log file the server may read but not write (mode 0444, the server not root: root ignores
/// file modes, so the child drops to `nobody`). Skipped where that user cannot be used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_that_cannot_be_opened_for_writing_is_served_read_only() {
    use std::os::unix::fs::PermissionsExt;
    let site = TestSite::new();
    let data = site.data();
    let (image, _) = log_with_published(&data, &["R1"]).await;
    edit_report(&data);
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        // Not root: the mode alone refuses writes.
        std::fs::set_permissions(log_file(&data), std::fs::Permissions::from_mode(0o444)).unwrap();
        let mut proc = Proc::spawn(&data);
        assert_read_only(&mut proc, SEED + 1, "cannot be opened for writing").await;
        return;
    }
    let nobody: libc::uid_t = 65534;
    // Readable by `nobody` all the way down; writable by root alone.
    let mut dir = log_file(&data);
    while dir.pop() {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        if dir == site.dir.path() {
            break;
        }
    }
    for entry in std::fs::read_dir(&data).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
    std::fs::set_permissions(log_file(&data), std::fs::Permissions::from_mode(0o444)).unwrap();
    let mut cmd = serve_command(&data);
    cmd.env("LIVEFEED_TOKEN", TOKEN);
    // SAFETY: only async-signal-safe calls (setgid, setuid) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setgid(nobody) != 0 || libc::setuid(nobody) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut proc = Proc::start(cmd);
    assert_read_only(&mut proc, SEED + 1, "cannot be opened for writing").await;
    assert!(proc.terminate());
    assert_eq!(
        std::fs::read(log_file(&data)).unwrap(),
        image,
        "log unchanged"
    );
}

/// An entry too large for one log record (16 MiB) is refused with 413 before anything is
/// written: acknowledged, it would make the log unreadable at the next start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_too_large_for_a_log_record_is_refused_not_acknowledged() {
    let mut site = TestSite::new();
    site.config.max_body = 64 * 1024 * 1024;
    let server = site.start().await;
    // Paragraphs of `<` and `"`: every character grows when escaped into the entry's HTML.
    let body = "<\"<\"<\"<\"<\"<\"\n\n".repeat(600_000);
    let res = server
        .authed(reqwest::Method::POST, &format!("/stories/{LIVE}/entries"))
        .json(&serde_json::json!({ "title": "Huge", "body": body }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    let problem: Value = res.json().await.unwrap();
    assert!(
        problem["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("log record"),
        "{problem}"
    );
    // Publishing goes on, and the log opens again with every acknowledged event.
    let small = server.publish(LIVE, "Small", "Fine.").await;
    assert_eq!(small["seq"], SEED + 1);
    server.stop().await;
    let server = site.start().await;
    assert_eq!(server.head().await, SEED + 1);
    server.stop().await;
}

/// A cursor older than the events kept in memory is answered from the log on disk, by
/// long-poll (all stories and one) and by SSE, in order and exactly once; also after a restart,
/// when the log's index is rebuilt. 410 is left for cursors the log does not hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursors_older_than_memory_are_read_back_from_the_log() {
    let site = TestSite::new();
    let start = || {
        let mut cmd = serve_command(&site.data());
        // Memory holds a few events' frames; the log retains them all (`--keep-events`).
        cmd.args(["--memory-bytes", "2000"])
            .env("LIVEFEED_TOKEN", TOKEN);
        Proc::start(cmd)
    };
    let http = client();
    let mut server = start();
    let base = server.ready().await.unwrap();
    // More than one stretch of the log's index (every 256 records).
    let total = SEED + 300;
    for i in 0..300 {
        assert_eq!(
            publish(&http, &base, &format!("Entry {i}")).await.status(),
            201
        );
    }
    let long_poll_all = |base: String, story: Option<&'static str>| {
        let http = http.clone();
        async move {
            let (mut cursor, mut seqs) = (0, Vec::new());
            loop {
                let story = story.map_or(String::new(), |s| format!("&story={s}"));
                let res = http
                    .get(format!(
                        "{base}/live?after={cursor}&timeout=0&limit=50{story}"
                    ))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), 200, "after={cursor}");
                let page: Value = res.json().await.unwrap();
                for e in page["events"].as_array().unwrap() {
                    seqs.push(e["seq"].as_u64().unwrap());
                }
                cursor = page["next"].as_u64().unwrap();
                if cursor >= page["head"].as_u64().unwrap() {
                    return seqs;
                }
            }
        }
    };
    let every: Vec<u64> = (1..=total).collect();
    assert_eq!(long_poll_all(base.clone(), None).await, every);
    // One story among many: only its events, the cursor moving past the others.
    let article = long_poll_all(base.clone(), Some(common::ARTICLE)).await;
    assert_eq!(article.len(), 1, "{article:?}");

    // SSE from the start: every event once, in order.
    let mut res = http
        .get(format!("{base}/live/events?after=0"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let (mut text, mut ids) = (String::new(), Vec::new());
    while ids.last() != Some(&total) {
        let chunk = tokio::time::timeout(common::PATIENCE, res.chunk())
            .await
            .expect("SSE goes on")
            .unwrap()
            .expect("the stream stays open");
        text.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = text.find("\n\n") {
            let frame: String = text.drain(..end + 2).collect();
            assert!(!frame.contains("event: reset"), "{frame}");
            if let Some(id) = frame.lines().find_map(|l| l.strip_prefix("id: ")) {
                ids.push(common::seq_of_id(id));
            }
        }
    }
    assert_eq!(ids, every);
    drop(res);

    // After a restart the index is rebuilt from the file.
    assert!(server.terminate());
    let mut server = start();
    let base = server.ready().await.unwrap();
    assert_eq!(long_poll_all(base.clone(), None).await, every);
    // Ahead of the log is still a 410.
    let res = http
        .get(format!("{base}/live?after={}", total + 5))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 410);
    let gone: Value = res.json().await.unwrap();
    assert_eq!(gone["oldest"], 1, "{gone}");
    assert!(server.terminate());
}
