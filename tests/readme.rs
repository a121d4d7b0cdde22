//! The README's examples, run as a reader would run them, against the real binary.

mod common;

use common::process::{Proc, publish, serve_command};
use common::{PATIENCE, TOKEN};
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

/// The dashboard loop, started on a cursor the server no longer keeps (a 410), restarts from
/// the oldest kept event and then prints every event, in order, exactly once.
#[tokio::test]
async fn the_readme_dashboard_loop_survives_a_410_and_misses_nothing() {
    require("curl");
    require("jq");
    let tmp = tempfile::tempdir().unwrap();
    let data = common::copy_data(tmp.path());
    // The seed makes 6 events; memory keeps 3, so the loop's cursor 0 is gone.
    let mut cmd = serve_command(&data);
    cmd.args(["--keep-events", "3"])
        .env("LIVEFEED_TOKEN", TOKEN);
    let mut server = Proc::start(cmd);
    let base = server.ready().await.expect("the server starts");

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
    let mut read_until = |last: u64, published: &[&str]| {
        let deadline = Instant::now() + PATIENCE;
        while seqs.last() != Some(&last) && Instant::now() < deadline {
            if let Ok(line) = rx.recv_timeout(std::time::Duration::from_millis(200)) {
                let event: serde_json::Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("the loop prints JSON lines: {line:?}: {e}"));
                if let Some(title) = event["title"].as_str().filter(|t| published.contains(t)) {
                    assert_eq!(event["op"], "create", "{title}");
                }
                seqs.push(event["seq"].as_u64().expect("a seq"));
            }
        }
    };
    // What the server keeps of the seed, after the 410 sent the loop back to the oldest kept.
    read_until(6, &[]);
    let http = common::client();
    let titles = ["First after start", "Second after start"];
    for title in titles {
        assert_eq!(publish(&http, &base, title).await.status(), 201);
    }
    read_until(8, &titles);
    // SAFETY: kill(2) on the process group of our own child; no memory effects.
    unsafe { libc::kill(-(dashboard.id() as libc::pid_t), libc::SIGKILL) };
    let _ = dashboard.wait();
    let mut stderr = String::new();
    if let Some(mut e) = dashboard.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
    }
    assert_eq!(
        seqs,
        [4, 5, 6, 7, 8],
        "every kept event once, in order\nloop's stderr:\n{stderr}\nserver:\n{}",
        server.log()
    );
    assert!(
        stderr.contains("cursor 0 is gone"),
        "the 410 is reported:\n{stderr}"
    );
    assert!(server.terminate());
}
