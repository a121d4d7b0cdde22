//! `deploy/livefeed.service` as systemd would run it: its `ExecStart` line, with the state
//! directory and the credentials directory moved into a temporary directory, starts, takes a
//! publish with the token from the credential file, writes its log where the unit says, and
//! stops cleanly on SIGTERM.

mod common;

use common::TOKEN;
use common::process::{Proc, publish};
use std::process::{Command, Stdio};

fn unit() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/livefeed.service"
    ))
    .unwrap()
}

fn setting<'a>(unit: &'a str, key: &str) -> &'a str {
    unit.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("the unit sets {key}"))
}

#[tokio::test]
async fn the_service_units_command_line_serves_and_publishes() {
    let unit = unit();
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().display().to_string();
    common::copy_data(tmp.path());
    let creds = tmp.path().join("credentials");
    std::fs::create_dir(&creds).unwrap();
    std::fs::write(creds.join("token"), format!("{TOKEN}\n")).unwrap();

    let exec = setting(&unit, "ExecStart")
        .replace("/var/lib/livefeed", &state)
        .replace("${CREDENTIALS_DIRECTORY}", &creds.display().to_string());
    let mut words = exec.split_whitespace();
    assert_eq!(words.next(), Some("/usr/local/bin/livefeed"));
    let args: Vec<String> = words
        .map(|w| match w {
            "127.0.0.1:8080" => "127.0.0.1:0".to_string(),
            _ => w.to_string(),
        })
        .collect();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_livefeed"));
    cmd.args(&args)
        .current_dir(tmp.path())
        .env_remove("LIVEFEED_TOKEN")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut server = Proc::start(cmd);
    let base = server
        .ready()
        .await
        .expect("the unit's command line starts");

    let res = publish(&common::client(), &base, "From the unit").await;
    assert_eq!(
        res.status(),
        201,
        "the token comes from the credential file"
    );
    assert!(
        tmp.path().join("log/events.log").is_file(),
        "the log is in the state directory"
    );
    assert!(
        server.terminate(),
        "SIGTERM stops it with status 0:\n{}",
        server.log()
    );

    // Enough descriptors for the default caps: connections, waiting long-polls, SSE streams.
    let nofile: u64 = setting(&unit, "LimitNOFILE").parse().unwrap();
    assert!(nofile >= 3 * 20_000, "LimitNOFILE={nofile}");
    for key in [
        "User",
        "StateDirectory",
        "LoadCredential",
        "Restart",
        "ExecReload",
    ] {
        setting(&unit, key);
    }
}

/// The "livefeed serving" line promises a server that SIGTERM stops cleanly (status 0, the log
/// flushed), even when the signal comes the instant the line is written: the handlers are in
/// place before it. SIGHUP right away does not kill it either.
#[tokio::test]
async fn a_signal_right_after_the_serving_line_stops_it_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let data = common::copy_data(tmp.path());
    for round in 0..10 {
        let mut server = Proc::start(common::process::serve_command(&data));
        server.ready().await.expect("the server starts");
        if round % 2 == 1 {
            // SAFETY: kill(2) on our own child's pid has no memory effects.
            unsafe { libc::kill(server.pid() as libc::pid_t, libc::SIGHUP) };
        }
        assert!(server.terminate(), "round {round}:\n{}", server.log());
    }
}
