//! The real binary: `livefeed serve` as a child process on an ephemeral port, its stderr (the
//! server log; not a terminal, so no colour codes) read line by line, killed with SIGKILL or
//! stopped with SIGTERM.

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

use super::{PATIENCE, TOKEN};

/// `livefeed serve --data DATA --listen 127.0.0.1:0` at log level `info`, with no token in the
/// environment: add one with `.env("LIVEFEED_TOKEN", …)` or `--token-file`.
pub fn serve_command(data: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_livefeed"));
    cmd.args(["serve", "--data"])
        .arg(data)
        .args(["--listen", "127.0.0.1:0"])
        .env_remove("LIVEFEED_TOKEN")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

/// A running `livefeed serve`.
pub struct Proc {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    rx: mpsc::UnboundedReceiver<String>,
    /// Reads stderr until the process closes it.
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Proc {
    /// Starts the binary on `data` (its log in `data/log`) with publishing on ([`TOKEN`]).
    pub fn spawn(data: &Path) -> Proc {
        let mut cmd = serve_command(data);
        cmd.env("LIVEFEED_TOKEN", TOKEN);
        Proc::start(cmd)
    }

    pub fn start(mut cmd: Command) -> Proc {
        let mut child = cmd.spawn().expect("livefeed starts");
        let stderr = child.stderr.take().expect("stderr is piped");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::unbounded_channel();
        let all = Arc::clone(&lines);
        let reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                all.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        Proc {
            child,
            lines,
            rx,
            reader: Some(reader),
        }
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the "livefeed serving addr=…" line and returns the base URL, or `None` when
    /// the process ended first.
    pub async fn ready(&mut self) -> Option<String> {
        let wait = async {
            while let Some(line) = self.rx.recv().await {
                if line.contains("livefeed serving") {
                    let addr = line
                        .split_whitespace()
                        .find_map(|w| w.strip_prefix("addr="))
                        .expect("the serving line names the address");
                    return Some(format!("http://{addr}"));
                }
            }
            None
        };
        match tokio::time::timeout(PATIENCE, wait).await {
            Ok(found) => found,
            Err(_) => panic!("the server did not start in time:\n{}", self.log()),
        }
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }

    /// SIGTERM (a graceful stop), then reap; true when it exited with status 0.
    pub fn terminate(&mut self) -> bool {
        // SAFETY: kill(2) on our own child's pid has no memory effects.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        self.wait()
    }

    /// Waits for the process to exit; true when it exited with status 0.
    pub fn wait(&mut self) -> bool {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Every line it wrote, up to the end of its stderr.
                if let Some(reader) = self.reader.take() {
                    let _ = reader.join();
                }
                return status.success();
            }
            assert!(
                Instant::now() < deadline,
                "no exit in time:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Everything the server logged so far.
    pub fn log(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.kill();
        }
    }
}

/// Publishes `title` (body "Text.") to the live story of the binary at `base`, with [`TOKEN`].
pub async fn publish(http: &reqwest::Client, base: &str, title: &str) -> reqwest::Response {
    http.post(format!("{base}/stories/{}/entries", super::LIVE))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({ "title": title, "body": "Text." }))
        .send()
        .await
        .unwrap()
}

/// The head seq of the binary at `base`.
pub async fn head(http: &reqwest::Client, base: &str) -> u64 {
    let res = http
        .get(format!("{base}/live?after=0&timeout=0&limit=1000"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    body["head"].as_u64().unwrap()
}

/// `serve` on `data` with publishing on, on a disk that is full beyond `limit` bytes per file, as
/// root can feel it: RLIMIT_FSIZE makes every write that grows a file past it fail (EFBIG;
/// SIGXFSZ ignored, so it is an error, not a kill).
pub fn full_disk_command(data: &Path, limit: libc::rlim_t) -> Command {
    use std::os::unix::process::CommandExt;
    let mut cmd = serve_command(data);
    cmd.env("LIVEFEED_TOKEN", TOKEN);
    // SAFETY: only async-signal-safe calls (setrlimit, signal) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let rl = libc::rlimit {
                rlim_cur: limit,
                rlim_max: libc::RLIM_INFINITY,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &rl) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            Ok(())
        });
    }
    cmd
}
