//! Operating the real binary: the access log (parsed as JSON, never holding the token or a
//! body), `/metrics` (checked by `promtool`, and moving after a publish, a long-poll and an
//! SSE stream), `/healthz` and `/readyz` across a log failure and a broken data directory,
//! and CORS preflights for publishing pages (`--cors-publish-origin`).

mod common;

use common::process::{Proc, full_disk_command, serve_command};
use common::{LIVE, PATIENCE, TOKEN, TestSite};
use serde_json::{Value, json};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(PATIENCE)
        .build()
        .unwrap()
}

/// Waits until the process has logged a line `pick` accepts, and returns it.
async fn logged(proc: &Proc, pick: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(line) = proc.log().lines().find(|l| pick(l)) {
            return line.to_string();
        }
        assert!(Instant::now() < deadline, "never logged:\n{}", proc.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits for `/readyz` to answer 200: the server has started (its data directory watched,
/// its signal handlers installed).
async fn ready(http: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + PATIENCE;
    while http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .unwrap()
        .status()
        != 200
    {
        assert!(Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn publish(http: &reqwest::Client, base: &str, title: &str, body: &str) -> Value {
    let res = http
        .post(format!("{base}/stories/{LIVE}/entries"))
        .bearer_auth(TOKEN)
        .json(&json!({ "title": title, "body": body }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    res.json().await.unwrap()
}

/// `serve` with the token and `args`.
fn spawn_with(data: &Path, args: &[&str]) -> Proc {
    let mut cmd = serve_command(data);
    cmd.env("LIVEFEED_TOKEN", TOKEN).args(args);
    Proc::start(cmd)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_has_one_json_line_per_request_and_never_the_token_or_body() {
    let site = TestSite::new();
    let mut proc = spawn_with(&site.data(), &["--log-format", "json"]);
    // Every line is JSON, the start-up line included.
    let serving: Value =
        serde_json::from_str(&logged(&proc, |l| l.contains("livefeed serving")).await).unwrap();
    let base = format!("http://{}", serving["addr"].as_str().unwrap());
    let http = client();
    let feed = http
        .get(format!("{base}/feeds/{LIVE}.json?x=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(feed.status(), 200);
    let feed_len = feed.bytes().await.unwrap().len() as u64;
    let secret_body = "a-body-marker-that-must-stay-out-of-logs";
    let ack = publish(&http, &base, "Logged publish", secret_body).await;
    let publish_line = logged(&proc, |l| l.contains("\"method\":\"POST\"")).await;
    logged(&proc, |l| l.contains(&format!("/feeds/{LIVE}.json"))).await;
    assert!(proc.terminate());
    let log = proc.log();
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let access: Vec<&Value> = lines
        .iter()
        .filter(|l| l["target"] == "livefeed::access")
        .collect();
    assert_eq!(access.len(), 2, "one line per request:\n{log}");
    let get = access
        .iter()
        .find(|l| l["method"] == "GET")
        .expect("the GET is logged");
    assert_eq!(
        get["path"],
        format!("/feeds/{LIVE}.json"),
        "the path, no query"
    );
    assert_eq!(get["status"], 200);
    assert_eq!(get["bytes"], feed_len);
    assert!(get["duration_ms"].as_f64().unwrap() >= 0.0, "{get}");
    assert!(
        get["client"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{get}"
    );
    assert_eq!(get["level"], "INFO");
    let post: Value = serde_json::from_str(&publish_line).unwrap();
    assert_eq!(post["path"], format!("/stories/{LIVE}/entries"));
    assert_eq!(post["status"], 201);
    assert_eq!(post["story"], LIVE);
    assert_eq!(post["id"], ack["id"]);
    assert_eq!(post["seq"], ack["seq"]);
    assert!(
        !log.contains(TOKEN),
        "the token leaked into the log:\n{log}"
    );
    assert!(
        !log.contains(secret_body),
        "a body leaked into the log:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_goes_to_a_file_or_nowhere() {
    let site = TestSite::new();
    let file = site.dir.path().join("access.log");
    let mut proc = spawn_with(&site.data(), &["--access-log", file.to_str().unwrap()]);
    let base = proc.ready().await.unwrap();
    let http = client();
    assert_eq!(
        http.get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert!(proc.terminate());
    let written = std::fs::read_to_string(&file).unwrap();
    assert_eq!(written.lines().count(), 1, "{written}");
    assert!(
        written.contains("path=/healthz") && written.contains("status=200"),
        "{written}"
    );
    assert!(!proc.log().contains("/healthz"), "{}", proc.log());

    let mut proc = spawn_with(&site.data(), &["--access-log", "off"]);
    let base = proc.ready().await.unwrap();
    http.get(format!("{base}/healthz")).send().await.unwrap();
    assert!(proc.terminate());
    assert!(!proc.log().contains("/healthz"), "{}", proc.log());
}

/// The value of the sample `series` (name and labels, as exposed), if exposed.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.trim().parse().unwrap())
}

async fn scrape(http: &reqwest::Client, base: &str) -> String {
    let res = http.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    res.text().await.unwrap()
}

/// Scrapes until `series` reaches `want` (moving metrics are set a moment after the answer).
async fn until(http: &reqwest::Client, base: &str, series: &str, want: f64) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let text = scrape(http, base).await;
        if sample(&text, series) == Some(want) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{series} never reached {want}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `promtool check metrics` on `text`; fails loudly when promtool is missing.
fn promtool(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("promtool is needed (apt-get install prometheus): {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_pass_promtool_and_move_with_publishes_long_polls_and_sse() {
    let site = TestSite::new();
    let mut proc = spawn_with(&site.data(), &["--access-log", "off"]);
    let base = proc.ready().await.unwrap();
    let http = client();
    let before = scrape(&http, &base).await;
    promtool(&before);
    let build = before
        .lines()
        .find(|l| l.starts_with("livefeed_build_info{"))
        .expect("build info");
    assert!(
        build.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION")))
            && build.contains("commit=\"")
            && build.ends_with(" 1"),
        "{build}"
    );
    for name in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
        "livefeed_report_files_watched",
    ] {
        assert!(sample(&before, name).unwrap() > 0.0, "{name}:\n{before}");
    }
    let head = sample(&before, "livefeed_log_head_seq").unwrap();
    assert_eq!(sample(&before, "livefeed_log_oldest_seq"), Some(1.0));
    let get = |text: &str, series: &str| sample(text, series).unwrap_or(0.0);

    // A feed GET.
    http.get(format!("{base}/feeds/{LIVE}.json"))
        .send()
        .await
        .unwrap();
    until(
        &http,
        &base,
        "livefeed_http_requests_total{route=\"feed\",status=\"200\"}",
        1.0,
    )
    .await;

    // A long-poll, woken by a publish.
    let poll = tokio::spawn({
        let (http, base) = (http.clone(), base.clone());
        async move {
            let res = http
                .get(format!("{base}/live?after={head}&timeout=20"))
                .send()
                .await
                .unwrap();
            res.json::<Value>().await.unwrap()
        }
    });
    until(
        &http,
        &base,
        "livefeed_waiting_subscribers{transport=\"longpoll\"}",
        1.0,
    )
    .await;
    // An SSE stream.
    let mut sse = http
        .get(format!("{base}/live/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(sse.status(), 200);
    until(
        &http,
        &base,
        "livefeed_waiting_subscribers{transport=\"sse\"}",
        1.0,
    )
    .await;
    let ack = publish(&http, &base, "Counted", "Text.").await;
    let woke = poll.await.unwrap();
    assert_eq!(woke["events"][0]["seq"], ack["seq"]);
    let mut seen = String::new();
    while !seen.contains(&format!(":{}\nevent: ", ack["seq"])) {
        let chunk = tokio::time::timeout(PATIENCE, sse.chunk())
            .await
            .expect("an SSE frame in time")
            .unwrap()
            .expect("the stream stays open");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    let after = until(
        &http,
        &base,
        "livefeed_events_delivered_total{transport=\"sse\"}",
        1.0,
    )
    .await;
    promtool(&after);
    let moved = [
        ("livefeed_log_head_seq", 1.0),
        (
            "livefeed_events_appended_total{op=\"create\",source=\"api\"}",
            1.0,
        ),
        ("livefeed_log_fsync_batches_total", 1.0),
        ("livefeed_log_fsync_batch_events_count", 1.0),
        ("livefeed_publish_sync_seconds_count", 1.0),
        ("livefeed_publish_request_duration_seconds_count", 1.0),
        (
            "livefeed_http_requests_total{route=\"publish\",status=\"201\"}",
            1.0,
        ),
        ("livefeed_longpoll_wake_delay_seconds_count", 1.0),
        (
            "livefeed_events_delivered_total{transport=\"longpoll\"}",
            1.0,
        ),
        ("livefeed_feed_request_duration_seconds_count", 1.0),
    ];
    // A request's duration is observed when its answer is done, which may be a moment after the
    // client has it: scrape again until every series moved (or the patience runs out).
    let deadline = Instant::now() + PATIENCE;
    let mut after = after;
    while Instant::now() < deadline
        && moved
            .iter()
            .any(|(series, by)| get(&after, series) - get(&before, series) != *by)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
        after = scrape(&http, &base).await;
    }
    for (series, by) in moved {
        assert_eq!(
            get(&after, series) - get(&before, series),
            by,
            "{series}:\n{after}"
        );
    }
    // The SSE subscriber leaves; the gauge follows. Renders of the published change count.
    drop(sse);
    until(
        &http,
        &base,
        "livefeed_waiting_subscribers{transport=\"sse\"}",
        0.0,
    )
    .await;
    let deadline = Instant::now() + PATIENCE;
    while get(
        &scrape(&http, &base).await,
        "livefeed_rendered_versions_total",
    ) < 1.0
    {
        assert!(Instant::now() < deadline, "no render counted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(proc.terminate());
}

/// A full disk from the first publish on, as the real binary feels it: RLIMIT_FSIZE at the
/// log's size (SIGXFSZ ignored, so a write that grows a file fails with EFBIG).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_once_the_log_fails_and_healthz_says_why() {
    let site = TestSite::new();
    let data = site.data();
    let mut proc = Proc::spawn(&data);
    let base = proc.ready().await.unwrap();
    ready(&client(), &base).await;
    assert!(proc.terminate(), "{}", proc.log());
    let limit = std::fs::metadata(data.join("log").join("events.log"))
        .unwrap()
        .len() as libc::rlim_t;
    let mut proc = Proc::start(full_disk_command(&data, limit));
    let base = proc.ready().await.unwrap();
    let http = client();
    let health = |path: &'static str| {
        let (http, base) = (http.clone(), base.clone());
        async move {
            let res = http.get(format!("{base}{path}")).send().await.unwrap();
            let status = res.status().as_u16();
            (status, res.json::<Value>().await.unwrap())
        }
    };
    let (status, ready) = health("/readyz").await;
    assert_eq!(
        (status, &ready["status"]),
        (200, &json!("ready")),
        "{ready}"
    );
    let (status, healthz) = health("/healthz").await;
    assert_eq!(status, 200);
    assert_eq!(healthz["status"], "ok", "{healthz}");
    assert_eq!(healthz["reasons"], json!([]));

    let res = http
        .post(format!("{base}/stories/{LIVE}/entries"))
        .bearer_auth(TOKEN)
        .json(&json!({ "title": "Too big", "body": "Text." }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503);

    let (status, ready) = health("/readyz").await;
    assert_eq!(status, 503, "{ready}");
    assert!(
        ready["reasons"].to_string().contains("publishes"),
        "{ready}"
    );
    // Reads are still served: healthy, but degraded, saying why.
    let (status, healthz) = health("/healthz").await;
    assert_eq!(status, 200);
    assert_eq!(healthz["status"], "degraded", "{healthz}");
    assert!(
        healthz["reasons"]
            .to_string()
            .contains("event log not writable"),
        "{healthz}"
    );
    assert!(proc.terminate());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_is_degraded_while_the_data_directory_fails_to_load() {
    let site = TestSite::new();
    let data = site.data();
    let mut proc = Proc::spawn(&data);
    let base = proc.ready().await.unwrap();
    let http = client();
    let healthz = || async {
        let res = http.get(format!("{base}/healthz")).send().await.unwrap();
        assert_eq!(res.status(), 200);
        res.json::<Value>().await.unwrap()
    };
    // Ready once the data directory is watched.
    ready(&http, &base).await;
    let manifest = data.join("stories.toml");
    let good = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, "this is [not toml").unwrap();
    let deadline = Instant::now() + PATIENCE;
    let mut health = healthz().await;
    while health["status"] != "degraded" {
        assert!(Instant::now() < deadline, "never degraded: {health}");
        tokio::time::sleep(Duration::from_millis(50)).await;
        health = healthz().await;
    }
    assert!(
        health["reasons"].to_string().contains("failed to load"),
        "{health}"
    );
    // Repaired: healthy again.
    std::fs::write(&manifest, good).unwrap();
    let deadline = Instant::now() + PATIENCE;
    while health["status"] != "ok" {
        assert!(Instant::now() < deadline, "never recovered: {health}");
        tokio::time::sleep(Duration::from_millis(50)).await;
        health = healthz().await;
    }
    assert!(proc.terminate());
}

const NEWSROOM: &str = "https://newsroom.example";
const DESK: &str = "http://desk.example:8443";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_origins_may_publish_from_a_browser_and_others_may_not() {
    let site = TestSite::new();
    let mut proc = spawn_with(
        &site.data(),
        &[
            "--cors-publish-origin",
            NEWSROOM,
            "--cors-publish-origin",
            DESK,
        ],
    );
    let base = proc.ready().await.unwrap();
    let http = client();
    let entries = format!("{base}/stories/{LIVE}/entries");
    let preflight = |url: String, origin: &'static str, method: &'static str| {
        http.request(reqwest::Method::OPTIONS, url)
            .header("Origin", origin)
            .header("Access-Control-Request-Method", method)
            .header(
                "Access-Control-Request-Headers",
                "authorization, content-type, idempotency-key",
            )
            .send()
    };
    let lower = |res: &reqwest::Response, name: &str| {
        res.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_ascii_lowercase())
    };
    for (url, origin, method) in [
        (entries.clone(), NEWSROOM, "POST"),
        (format!("{entries}/some-id"), DESK, "DELETE"),
    ] {
        let res = preflight(url, origin, method).await.unwrap();
        assert_eq!(res.status(), 204, "{origin}");
        assert_eq!(res.headers()["access-control-allow-origin"], origin);
        assert!(lower(&res, "vary").unwrap().contains("origin"), "{res:?}");
        let methods = lower(&res, "access-control-allow-methods").unwrap();
        for m in ["post", "put", "delete"] {
            assert!(methods.contains(m), "{methods}");
        }
        let headers = lower(&res, "access-control-allow-headers").unwrap();
        for h in ["authorization", "content-type", "idempotency-key"] {
            assert!(headers.contains(h), "{headers}");
        }
        assert!(res.headers().contains_key("access-control-max-age"));
    }
    // Another origin: 403, no CORS headers at all.
    let res = preflight(entries.clone(), "https://evil.example", "POST")
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    assert!(
        !res.headers()
            .keys()
            .any(|k| k.as_str().starts_with("access-control-")),
        "{res:?}"
    );
    // The publish itself, from the allowed origin, names it.
    let res = http
        .post(&entries)
        .header("Origin", NEWSROOM)
        .bearer_auth(TOKEN)
        .json(&json!({ "title": "From the newsroom", "body": "Text." }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    assert_eq!(res.headers()["access-control-allow-origin"], NEWSROOM);
    // From another origin it carries no CORS header (a browser would not show it).
    let res = http
        .post(&entries)
        .header("Origin", "https://evil.example")
        .bearer_auth(TOKEN)
        .json(&json!({ "title": "From elsewhere", "body": "Text." }))
        .send()
        .await
        .unwrap();
    assert!(res.headers().get("access-control-allow-origin").is_none());
    // Reads stay open to every origin.
    let res = http
        .get(format!("{base}/feeds/{LIVE}.json"))
        .header("Origin", NEWSROOM)
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["access-control-allow-origin"], "*");
    assert!(proc.terminate());
}

/// `--max-waiters` is a cap of each server, not of the process: two servers in one process
/// (as in these tests, or an embedder's) do not take each other's slots, and the cap still
/// holds for each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_waiter_caps_belong_to_each_server() {
    let mut site_a = TestSite::new();
    site_a.config.max_waiters = 1;
    let mut site_b = TestSite::new();
    site_b.config.max_waiters = 1;
    let (a, b) = (site_a.start().await, site_b.start().await);
    let head = a.head().await;
    let waiting = {
        let url = a.url(&format!("/live?after={head}&timeout=30"));
        let http = a.http.clone();
        tokio::spawn(async move { http.get(url).send().await.unwrap().status() })
    };
    let sse_a = a.get("/live/events").await;
    assert_eq!(sse_a.status(), 200);
    let text = until(
        &a.http,
        &a.base,
        "livefeed_waiting_subscribers{transport=\"longpoll\"}",
        1.0,
    )
    .await;
    assert_eq!(
        sample(&text, "livefeed_waiting_subscribers{transport=\"sse\"}"),
        Some(1.0)
    );
    // The other server has its own slots…
    let (status, _) = b.live(&format!("after={head}&timeout=1")).await;
    assert_eq!(status, 200);
    let sse_b = b.get("/live/events").await;
    assert_eq!(sse_b.status(), 200);
    // …and this one is full.
    let (status, _) = a.live(&format!("after={head}&timeout=1")).await;
    assert_eq!(status, 503);
    assert_eq!(a.get("/live/events").await.status(), 503);
    drop((sse_a, sse_b));
    a.stop().await;
    assert_eq!(waiting.await.unwrap(), 200);
    b.stop().await;
}

/// An origin that no browser would send (a path, a trailing slash, no scheme) could never
/// match: refused at start, saying what is expected.
#[test]
fn a_cors_origin_that_cannot_match_is_refused_at_start() {
    for bad in [
        "https://newsroom.example/",
        "newsroom.example",
        "https://a.example/x",
    ] {
        let site = TestSite::new();
        let out = serve_command(&site.data())
            .args(["--cors-publish-origin", bad])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{bad}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("expected an origin such as"), "{bad}: {err}");
        assert!(!site.data().join("log").exists(), "{bad}: nothing written");
    }
}
