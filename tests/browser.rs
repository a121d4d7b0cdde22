//! The story page in a real browser: headless Chromium (Debian's `chromium`) driven through
//! `chromedriver` (Debian's `chromium-driver`) with fantoccini, against the real binary. Without
//! a reload the page shows a publish, an edit's "Updated" mark, a delete, a key event in the
//! key events box, the "N new updates" bar when the reader has scrolled down, and "Ended" once
//! the story ends (after which it stops listening). Screenshots at a desktop and a phone width
//! go to `target/screenshots/` (CI keeps them).
//!
//! Without chromium or chromedriver the test fails, naming the packages, unless
//! `LIVEFEED_SKIP_BROWSER=1` is set.

mod common;

use common::process::Proc;
use common::{LIVE, TOKEN};
use fantoccini::{Client, ClientBuilder};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long the page may take to show a change.
const SHOWN_WITHIN: Duration = Duration::from_secs(10);

fn on_path(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(tool))
            .find(|p| p.is_file())
    })
}

/// `chromedriver` on a free port, killed when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    async fn start(exe: &Path) -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(exe)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let driver = Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let http = common::client();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let ready = http
                .get(format!("{}/status", driver.url))
                .send()
                .await
                .ok()
                .filter(|r| r.status().is_success());
            if ready.is_some() {
                return driver;
            }
            assert!(Instant::now() < deadline, "chromedriver did not answer");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn browser(driver: &Driver, chromium: &Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1280,1000",
                     "--hide-scrollbars"],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a Chromium session")
}

/// Runs `script` (a function body returning a value) in the page.
async fn js(page: &Client, script: &str) -> Value {
    page.execute(script, vec![])
        .await
        .unwrap_or_else(|e| panic!("{script}: {e}"))
}

/// Waits until `script` returns `true` in the page; fails naming `what` after [`SHOWN_WITHIN`].
async fn until(page: &Client, what: &str, script: &str) {
    let deadline = Instant::now() + SHOWN_WITHIN;
    while js(page, script).await != Value::Bool(true) {
        assert!(
            Instant::now() < deadline,
            "the page never showed {what} ({script})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A publishing request to the binary at `base`; the JSON answer.
async fn send(http: &reqwest::Client, method: reqwest::Method, url: String, body: Value) -> Value {
    let mut req = http.request(method, url).bearer_auth(TOKEN);
    if !body.is_null() {
        req = req.json(&body);
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    let answer: Value = res.json().await.unwrap();
    assert!(status.is_success(), "{status} {answer}");
    answer
}

fn screenshots() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn the_story_page_follows_the_story_in_a_real_browser() {
    let (Some(chromium), Some(chromedriver)) = (on_path("chromium"), on_path("chromedriver"))
    else {
        if std::env::var("LIVEFEED_SKIP_BROWSER").as_deref() == Ok("1") {
            eprintln!("LIVEFEED_SKIP_BROWSER=1: the browser test is skipped");
            return;
        }
        panic!(
            "the browser test needs Chromium and its WebDriver: `apt-get install chromium \
             chromium-driver` (Debian packages `chromium`, `chromium-driver`), or set \
             LIVEFEED_SKIP_BROWSER=1 to skip it"
        );
    };
    let dir = tempfile::tempdir().unwrap();
    let data = common::copy_data(dir.path());
    let mut server = Proc::spawn(&data);
    let base = server.ready().await.expect("livefeed serves");
    let http = common::client();
    let entries = format!("{base}/stories/{LIVE}/entries");
    let entry_url = |answer: &Value| {
        format!(
            "{entries}/{}",
            common::encode_segment(answer["id"].as_str().unwrap())
        )
    };

    let driver = Driver::start(&chromedriver).await;
    let page = browser(&driver, &chromium).await;
    page.goto(&format!("{base}/stories/{LIVE}/")).await.unwrap();
    until(
        &page,
        "the live badge",
        "return document.querySelector('[data-state]').textContent === 'Live';",
    )
    .await;
    until(
        &page,
        "the script's stream open",
        "return document.getElementById('entries').hasAttribute('data-listening');",
    )
    .await;

    // A publish, at the top (the reader is at the top), with its byline. Published ten
    // minutes ago, so an edit now earns an "Updated" mark.
    let ten_ago = chrono::Utc::now() - chrono::Duration::minutes(10);
    let first = send(
        &http,
        reqwest::Method::POST,
        entries.clone(),
        json!({"title": "Talks resume in Geneva", "body": "Both sides are back at the table.",
               "authors": ["Jo Bloggs"], "published": ten_ago.to_rfc3339()}),
    )
    .await;
    until(
        &page,
        "the published entry first in the stream, with its byline",
        "var a = document.querySelector('main article');
         return !!a && a.querySelector('h2').textContent === 'Talks resume in Geneva'
           && a.querySelector('.byline').textContent === 'By Jo Bloggs';",
    )
    .await;

    // An edit: its text and an "Updated hh:mm" mark.
    send(
        &http,
        reqwest::Method::PUT,
        entry_url(&first),
        json!({"title": "Talks resume in Geneva", "body": "Both sides are back. More soon."}),
    )
    .await;
    until(
        &page,
        "the edit with its Updated mark",
        "var a = document.querySelector('main article');
         var u = a && a.querySelector('.updated');
         return !!u && /^Updated \\d\\d:\\d\\d$/.test(u.textContent)
           && a.textContent.indexOf('More soon.') >= 0;",
    )
    .await;

    // A key event: in the key events box, linking to its entry.
    let key = send(
        &http,
        reqwest::Method::POST,
        entries.clone(),
        json!({"title": "Ceasefire agreed for Aleppo", "body": "A key moment.", "key": true}),
    )
    .await;
    let key_anchor = common::anchor(key["url"].as_str().unwrap()).to_string();
    until(
        &page,
        "the key event in the key events box",
        &format!(
            "var box = document.getElementById('key-events');
             var links = box.querySelectorAll('li a');
             return !box.hidden && links.length === 1
               && links[0].textContent === 'Ceasefire agreed for Aleppo'
               && links[0].getAttribute('href') === '#{key_anchor}'
               && !!document.getElementById('{key_anchor}');"
        ),
    )
    .await;

    // A pinned entry: shown first, in its slot.
    send(
        &http,
        reqwest::Method::POST,
        entries.clone(),
        json!({"title": "What we know so far", "body": "The summary so far.", "pinned": true,
               "authors": ["Sam Smith"]}),
    )
    .await;
    until(
        &page,
        "the pinned entry in its slot",
        "var slot = document.getElementById('pinned');
         return !slot.hidden && slot.querySelector('article h2').textContent === 'What we know so far';",
    )
    .await;

    // A delete.
    let doomed = send(
        &http,
        reqwest::Method::POST,
        entries.clone(),
        json!({"title": "Posted in error", "body": "Oops."}),
    )
    .await;
    let doomed_anchor = common::anchor(doomed["url"].as_str().unwrap()).to_string();
    until(
        &page,
        "the entry to delete",
        &format!("return !!document.getElementById('{doomed_anchor}');"),
    )
    .await;
    send(
        &http,
        reqwest::Method::DELETE,
        entry_url(&doomed),
        Value::Null,
    )
    .await;
    until(
        &page,
        "the deleted entry gone",
        &format!("return !document.getElementById('{doomed_anchor}');"),
    )
    .await;

    // The desktop screenshot: key events, the pinned entry, an edited entry.
    js(&page, "window.scrollTo(0, 0); return true;").await;
    let shots = screenshots();
    std::fs::write(
        shots.join("story-desktop.png"),
        page.screenshot().await.unwrap(),
    )
    .unwrap();

    // Scrolled down, the text stays put: a new entry waits behind the "new updates" bar.
    page.set_window_size(1280, 700).await.unwrap();
    js(
        &page,
        "window.scrollTo(0, document.body.scrollHeight); return true;",
    )
    .await;
    until(
        &page,
        "the reader scrolled past the top of the stream",
        "return document.getElementById('entries').getBoundingClientRect().top < 0;",
    )
    .await;
    let scrolled = js(&page, "return window.scrollY;").await;
    send(
        &http,
        reqwest::Method::POST,
        entries.clone(),
        json!({"title": "Foreign ministers to meet on Monday", "body": "Later news."}),
    )
    .await;
    until(
        &page,
        "the new updates bar",
        "var bar = document.getElementById('new-bar');
         return !bar.hidden && bar.textContent === '1 new update';",
    )
    .await;
    assert_eq!(
        js(&page, "return window.scrollY;").await,
        scrolled,
        "the text moved under the reader"
    );
    assert_eq!(
        js(
            &page,
            "return Array.prototype.some.call(document.querySelectorAll('article h2'),
               function (h) { return h.textContent === 'Foreign ministers to meet on Monday'; });"
        )
        .await,
        false,
        "the new entry waits for the reader"
    );
    // Clicking the bar shows it, at the top, and takes the reader there.
    page.find(fantoccini::Locator::Id("new-bar"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        &page,
        "the waiting entry shown at the top and the bar gone",
        "var a = document.querySelector('main article');
         return document.getElementById('new-bar').hidden
           && a.querySelector('h2').textContent === 'Foreign ministers to meet on Monday'
           && document.getElementById('entries').getBoundingClientRect().top >= 0;",
    )
    .await;

    // A phone: no sideways scrolling, and its screenshot.
    page.set_window_size(375, 812).await.unwrap();
    js(&page, "window.scrollTo(0, 0); return true;").await;
    until(
        &page,
        "a phone-width viewport",
        "return window.innerWidth <= 400;",
    )
    .await;
    assert_eq!(
        js(
            &page,
            "return document.documentElement.scrollWidth <= window.innerWidth;"
        )
        .await,
        true,
        "the page scrolls sideways on a phone"
    );
    std::fs::write(
        shots.join("story-phone.png"),
        page.screenshot().await.unwrap(),
    )
    .unwrap();

    // The story ends: "Ended", and the page stops listening.
    send(
        &http,
        reqwest::Method::PUT,
        format!("{base}/stories/{LIVE}"),
        json!({"state": "ended"}),
    )
    .await;
    until(
        &page,
        "the Ended badge and note",
        "return document.querySelector('[data-state]').textContent === 'Ended'
           && !document.querySelector('.ended-note').hidden;",
    )
    .await;
    send(
        &http,
        reqwest::Method::POST,
        entries.clone(),
        json!({"title": "Correction: the meeting is on Tuesday", "body": "Published after the end."}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        js(
            &page,
            "return document.body.textContent.indexOf('Correction: the meeting is on Tuesday') < 0;"
        )
        .await,
        true,
        "an ended page still follows the stream"
    );
    // A fresh load shows the correction (publishing to an ended story works).
    page.refresh().await.unwrap();
    until(
        &page,
        "the correction after a reload",
        "return document.body.textContent.indexOf('Correction: the meeting is on Tuesday') >= 0;",
    )
    .await;

    page.close().await.unwrap();
    drop(driver);
    assert!(server.terminate(), "livefeed stops cleanly");
}
