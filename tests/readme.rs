//! The README's examples, run as a reader would run them, against the real binary.

mod common;

use common::process::{Proc, publish};
use common::{PATIENCE, SEED, TOKEN};
use std::io::BufRead;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Instant;

/// The first ```sh block after `marker` in README.md.
fn readme_block(marker: &str) -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let after = &readme[readme.find(marker).expect("the marker is in README.md")..];
    let start = after
        .find("```sh\n")
        .expect("a sh block follows the marker")
        + 6;
    let len = after[start..].find("```").expect("the block ends");
    after[start..start + len].to_string()
}

/// Fails loudly (instead of skipping) when a program the example needs is missing; `.ci/run`
/// installs them.
fn require(program: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{program} is not installed: this test runs the README's shell example, which needs it \
         (apt-get install {program})"
    );
}

/// The dashboard loop prints every event in order; when the server's log is replaced under it
/// (its cursor is then ahead of the new head: a 410), it says so and starts again from the
/// oldest event kept.
#[tokio::test]
async fn the_readme_dashboard_loop_survives_a_410_and_misses_nothing() {
    require("curl");
    require("jq");
    let tmp = tempfile::tempdir().unwrap();
    let data = common::copy_data(tmp.path());
    let mut server = Proc::spawn(&data);
    let base = server.ready().await.expect("the server starts");
    let addr = base.trim_start_matches("http://").to_string();

    let script = readme_block("tests/readme.rs runs this block");
    let mut dashboard = Command::new("bash")
        .args(["-c", &script])
        .env("LIVEFEED_URL", &base)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("bash runs");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stdout = dashboard.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let mut seqs = Vec::new();
    let mut read_until = |last: u64| {
        let deadline = Instant::now() + PATIENCE;
        while seqs.last() != Some(&last) && Instant::now() < deadline {
            if let Ok(line) = rx.recv_timeout(std::time::Duration::from_millis(200)) {
                let event: serde_json::Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("the loop prints JSON lines: {line:?}: {e}"));
                seqs.push(event["seq"].as_u64().expect("a seq"));
            }
        }
    };
    read_until(SEED);
    let http = common::client();
    for title in ["First after start", "Second after start"] {
        assert_eq!(publish(&http, &base, title).await.status(), 201);
    }
    read_until(SEED + 2);

    // Another history on the same address: the log is gone, the seed relayed again.
    assert!(server.terminate());
    std::fs::remove_dir_all(data.join("log")).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_livefeed"));
    cmd.args(["serve", "--listen", &addr, "--data"])
        .arg(&data)
        .env("LIVEFEED_TOKEN", TOKEN)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut server = Proc::start(cmd);
    server
        .ready()
        .await
        .expect("the server starts again on the same address");
    read_until(SEED);

    // SAFETY: kill(2) on the process group of our own child; no memory effects.
    unsafe { libc::kill(-(dashboard.id() as libc::pid_t), libc::SIGKILL) };
    let _ = dashboard.wait();
    let mut stderr = String::new();
    if let Some(mut e) = dashboard.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
    }
    let want: Vec<u64> = (1..=SEED + 2).chain(1..=SEED).collect();
    assert_eq!(
        seqs,
        want,
        "every event once, in order, then the new history\nloop's stderr:\n{stderr}\nserver:\n{}",
        server.log()
    );
    assert!(
        stderr.contains(&format!("cursor {} is gone", SEED + 2)),
        "the 410 is reported:\n{stderr}"
    );
    assert!(server.terminate());
}
