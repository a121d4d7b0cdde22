//! Hostile input over real sockets: a table of bad requests, each sent raw on its own
//! connection (so nothing is normalised or refused by a client library first), each with the
//! answer it must get. After every one the server must still answer `/healthz`; at the end
//! every feed must still parse (roxmltree, and Python's feedparser when it is installed) and
//! the accepted hostile text must come out escaped. No handler may panic.
//!
//! Then the limits that need a connection of their own: a client sending its headers one byte
//! a second (closed after the header timeout), connections beyond `max_connections` (a quick
//! 503), and header floods.

mod common;

use common::raw::{self, Conn};
use common::{ARTICLE, LIVE, SEED, Server, TOKEN, TestSite};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The header timeout of the servers in these tests.
const HEADER_TIMEOUT: Duration = Duration::from_secs(2);
/// Their body limit (the default, 1 MiB).
const MAX_BODY: usize = 1024 * 1024;

/// Panics anywhere in this process (a handler task's panic would otherwise only show as a
/// closed connection).
static PANICS: AtomicUsize = AtomicUsize::new(0);

fn count_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            default(info);
        }));
    });
}

fn site() -> TestSite {
    count_panics();
    let mut site = TestSite::new();
    site.config.header_timeout = HEADER_TIMEOUT;
    site.config.max_body = MAX_BODY;
    site
}

/// What a bad request must get.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// This status, with an `application/problem+json` body naming the problem.
    Problem(u16),
    /// This status from the HTTP layer (hyper), before any handler: no body is promised.
    Protocol(u16),
    /// Accepted (the text is cleaned and escaped on the way out).
    Accepted(u16),
}

struct Case {
    name: &'static str,
    request: Vec<u8>,
    expect: Expect,
}

fn get(path: &str) -> Vec<u8> {
    raw::request("GET", path, &[("Connection", "close")], None)
}

fn get_with(path: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut all = vec![("Connection", "close")];
    all.extend_from_slice(headers);
    raw::request("GET", path, &all, None)
}

fn bare(method: &str, path: &str) -> Vec<u8> {
    raw::request(method, path, &[("Connection", "close")], None)
}

/// An authorised request with a JSON (or any) body.
fn authed(method: &str, path: &str, body: &[u8]) -> Vec<u8> {
    let auth = format!("Bearer {TOKEN}");
    raw::request(
        method,
        path,
        &[
            ("Connection", "close"),
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        Some(body),
    )
}

fn post(body: &[u8]) -> Vec<u8> {
    authed("POST", &format!("/stories/{LIVE}/entries"), body)
}

fn post_json(value: Value) -> Vec<u8> {
    post(value.to_string().as_bytes())
}

/// The hostile titles and bodies that are accepted; each must come out escaped.
const SCRIPT_TITLE: &str = "<script>alert('hostile-title')</script>";
const SCRIPT_BODY: &str = "Before <script>alert('hostile-body')</script> after.\n\n<img src=x onerror=alert('hostile-img')>";
const CDATA_TITLE: &str = "Ends a CDATA ]]> section";
const CDATA_BODY: &str = "]]> then <![CDATA[ and ]]> again &amp; &lt;";

// One line per case reads as a table; rustfmt would spread each over five.
#[rustfmt::skip]
fn cases() -> Vec<Case> {
    use Expect::*;
    let live = format!("/stories/{LIVE}/entries");
    let entry = format!("{live}/may-summit-on-syria-is-impossible-says-russian-official");
    let mut cases = vec![
        // Cursors.
        Case { name: "cursor not a number", request: get("/live?after=abc"), expect: Problem(400) },
        Case { name: "negative cursor", request: get("/live?after=-1"), expect: Problem(400) },
        Case { name: "cursor with a sign", request: get("/live?after=%2B5"), expect: Problem(400) },
        Case { name: "cursor in hex", request: get("/live?after=0x10"), expect: Problem(400) },
        Case { name: "cursor in exponent form", request: get("/live?after=1e3"), expect: Problem(400) },
        Case { name: "empty cursor", request: get("/live?after="), expect: Problem(400) },
        Case { name: "cursor with a space", request: get("/live?after=%201"), expect: Problem(400) },
        Case { name: "cursor with a NUL", request: get("/live?after=1%00"), expect: Problem(400) },
        Case { name: "cursor given twice", request: get("/live?after=1&after=2"), expect: Problem(400) },
        Case { name: "cursor u64::MAX + 1", request: get("/live?after=18446744073709551616"), expect: Problem(400) },
        Case { name: "huge cursor (60 digits)", request: get(&format!("/live?after={}", "9".repeat(60))), expect: Problem(400) },
        Case { name: "cursor u64::MAX (ahead of the log)", request: get("/live?after=18446744073709551615"), expect: Problem(410) },
        Case { name: "cursor ahead of the log", request: get("/live?after=1000000"), expect: Problem(410) },
        Case { name: "bad percent-escape", request: get("/live?after=%zz"), expect: Problem(400) },
        Case { name: "truncated percent-escape", request: get("/live?after=1%"), expect: Problem(400) },
        Case { name: "invalid UTF-8 in the query", request: get("/live?story=%ff%fe"), expect: Problem(400) },
        Case { name: "unknown parameter", request: get("/live?aftr=1"), expect: Problem(400) },
        Case { name: "story not a slug", request: get("/live?story=..%2Fetc"), expect: Problem(400) },
        Case { name: "unknown story", request: get("/live?story=no-such-story"), expect: Problem(404) },
        // Limits and timeouts.
        Case { name: "limit 0", request: get("/live?limit=0"), expect: Problem(400) },
        Case { name: "limit above the maximum", request: get("/live?limit=1001"), expect: Problem(400) },
        Case { name: "limit overflowing u64", request: get("/live?limit=99999999999999999999999"), expect: Problem(400) },
        Case { name: "negative limit", request: get("/live?limit=-5"), expect: Problem(400) },
        Case { name: "timeout above the maximum", request: get("/live?timeout=61"), expect: Problem(400) },
        Case { name: "timeout u64::MAX", request: get("/live?timeout=18446744073709551615"), expect: Problem(400) },
        Case { name: "negative timeout", request: get("/live?timeout=-1"), expect: Problem(400) },
        Case { name: "fractional timeout", request: get("/live?timeout=1.5"), expect: Problem(400) },
        // Server-Sent Events cursors.
        Case { name: "SSE bad after", request: get("/live/events?after=x"), expect: Problem(400) },
        Case { name: "Last-Event-ID not a number", request: get_with("/live/events", &[("Last-Event-ID", "abc")]), expect: Problem(400) },
        Case { name: "Last-Event-ID negative", request: get_with("/live/events", &[("Last-Event-ID", "-1")]), expect: Problem(400) },
        Case { name: "Last-Event-ID overflowing u64", request: get_with("/live/events", &[("Last-Event-ID", "99999999999999999999")]), expect: Problem(400) },
        Case { name: "Last-Event-ID of 30 digits", request: get_with("/live/events", &[("Last-Event-ID", &"9".repeat(30))]), expect: Problem(400) },
        // Unknown routes and methods.
        Case { name: "unknown route", request: get("/admin"), expect: Problem(404) },
        Case { name: "unknown feed", request: get("/feeds/nope.rss"), expect: Problem(404) },
        Case { name: "unknown feed format", request: get("/feeds/all.xml"), expect: Problem(404) },
        Case { name: "unknown story page", request: get("/stories/nope"), expect: Problem(404) },
        Case { name: "too deep a path", request: get("/feeds/all.rss/x/y"), expect: Problem(404) },
        Case { name: "DELETE on a feed", request: bare("DELETE", "/feeds/all.rss"), expect: Problem(405) },
        Case { name: "PUT on the index", request: bare("PUT", "/"), expect: Problem(405) },
        Case { name: "POST on /live", request: bare("POST", "/live"), expect: Problem(405) },
        Case { name: "PATCH on an entry", request: bare("PATCH", &entry), expect: Problem(405) },
        Case { name: "GET on the publish route", request: bare("GET", &live), expect: Problem(405) },
        Case { name: "an invented method", request: bare("BREW", "/"), expect: Problem(405) },
        Case { name: "TRACE", request: bare("TRACE", "/healthz"), expect: Problem(405) },
        // Path traversal, raw and encoded.
        Case { name: "traversal /feeds/../Cargo.toml", request: get("/feeds/../Cargo.toml"), expect: Problem(404) },
        Case { name: "traversal /../../etc/passwd", request: get("/../../etc/passwd"), expect: Problem(404) },
        Case { name: "traversal %2e%2e", request: get("/feeds/%2e%2e/Cargo.toml"), expect: Problem(404) },
        Case { name: "traversal ..%2f", request: get("/feeds/..%2fCargo.toml"), expect: Problem(404) },
        Case { name: "traversal %2e%2e%2f", request: get("/feeds/%2e%2e%2f%2e%2e%2fCargo.toml"), expect: Problem(404) },
        Case { name: "traversal %2f in a story", request: get("/stories/..%2F..%2Fsrc%2Fmain.rs"), expect: Problem(404) },
        Case { name: "traversal with %5c backslashes", request: get("/feeds/..%5c..%5cCargo.toml"), expect: Problem(404) },
        Case { name: "traversal with raw backslashes", request: get("/feeds/..\\..\\Cargo.toml"), expect: Problem(404) },
        Case { name: "NUL in the path", request: get("/feeds/all.rss%00.txt"), expect: Problem(404) },
        Case { name: "double-encoded traversal", request: get("/feeds/%252e%252e%252fCargo.toml"), expect: Problem(404) },
        Case { name: "invalid UTF-8 in the path (encoded)", request: get("/feeds/%ff%fe.rss"), expect: Problem(400) },
        Case { name: "absolute-form URI to another host", request: get("http://example.org/feeds/../Cargo.toml"), expect: Problem(404) },
        // Publishing: authorisation and the request itself.
        Case { name: "publish without a token", request: raw::request("POST", &live, &[("Connection", "close"), ("Content-Type", "application/json")], Some(b"{}")), expect: Problem(401) },
        Case { name: "publish with a wrong token", request: raw::request("POST", &live, &[("Connection", "close"), ("Authorization", "Bearer wrong-token-wrong-token"), ("Content-Type", "application/json")], Some(b"{}")), expect: Problem(401) },
        Case { name: "token with a control character", request: raw::request("POST", &live, &[("Connection", "close"), ("Authorization", &format!("Bearer {TOKEN}\x01")), ("Content-Type", "application/json")], Some(b"{}")), expect: Protocol(400) },
        Case { name: "publish as form data", request: raw::request("POST", &live, &[("Connection", "close"), ("Authorization", &format!("Bearer {TOKEN}")), ("Content-Type", "application/x-www-form-urlencoded")], Some(b"title=x&body=y")), expect: Problem(415) },
        Case { name: "publish to an unknown story", request: authed("POST", "/stories/nope/entries", br#"{"title":"t","body":"b"}"#), expect: Problem(404) },
        Case { name: "edit an unknown entry", request: authed("PUT", &format!("{live}/nope"), br#"{"title":"t","body":"b"}"#), expect: Problem(404) },
        Case { name: "delete in an unknown story", request: authed("DELETE", "/stories/nope/entries/x", b""), expect: Problem(404) },
        Case { name: "invalid JSON", request: post(br#"{"title": "unterminated"#), expect: Problem(400) },
        Case { name: "JSON with a trailing comma", request: post(br#"{"title":"t","body":"b",}"#), expect: Problem(400) },
        Case { name: "JSON array, not an object", request: post(b"[]"), expect: Problem(400) },
        Case { name: "JSON null", request: post(b"null"), expect: Problem(400) },
        Case { name: "empty body", request: post(b""), expect: Problem(400) },
        Case { name: "JSON nested 100,000 deep", request: post(&[b'['; 100_000]), expect: Problem(400) },
        Case { name: "title a number", request: post_json(json!({ "title": 5, "body": "b" })), expect: Problem(400) },
        Case { name: "body an array", request: post_json(json!({ "title": "t", "body": ["b"] })), expect: Problem(400) },
        Case { name: "authors not strings", request: post_json(json!({ "title": "t", "body": "b", "authors": [1, 2] })), expect: Problem(400) },
        Case { name: "published not a date", request: post_json(json!({ "title": "t", "body": "b", "published": "yesterday" })), expect: Problem(400) },
        Case { name: "published out of range", request: post_json(json!({ "title": "t", "body": "b", "published": "99999-01-01T00:00:00Z" })), expect: Problem(400) },
        Case { name: "unknown field", request: post_json(json!({ "title": "t", "body": "b", "admin": true })), expect: Problem(400) },
        Case { name: "title only control characters", request: post_json(json!({ "title": "\u{1}\u{7}\u{1b}", "body": "b" })), expect: Problem(400) },
        Case { name: "title of 10,000 characters", request: post_json(json!({ "title": "x".repeat(10_000), "body": "b" })), expect: Problem(400) },
        Case { name: "lone surrogate escape in JSON", request: post(br#"{"title":"\ud800","body":"b"}"#), expect: Problem(400) },
        Case { name: "invalid UTF-8 in the body", request: post(b"{\"title\":\"caf\xe9\",\"body\":\"b\"}"), expect: Problem(400) },
        Case { name: "Idempotency-Key with a space", request: raw::request("POST", &live, &[("Connection", "close"), ("Authorization", &format!("Bearer {TOKEN}")), ("Content-Type", "application/json"), ("Idempotency-Key", "a b")], Some(br#"{"title":"t","body":"b"}"#)), expect: Problem(400) },
        Case { name: "Idempotency-Key of 300 characters", request: raw::request("POST", &live, &[("Connection", "close"), ("Authorization", &format!("Bearer {TOKEN}")), ("Content-Type", "application/json"), ("Idempotency-Key", &"k".repeat(300))], Some(br#"{"title":"t","body":"b"}"#)), expect: Problem(400) },
        Case { name: "Content-Length not a number", request: format!("POST {live} HTTP/1.1\r\nHost: t\r\nContent-Length: abc\r\n\r\n").into_bytes(), expect: Protocol(400) },
        Case { name: "two different Content-Lengths", request: format!("POST {live} HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!").into_bytes(), expect: Protocol(400) },
        Case { name: "bad chunk size", request: format!("POST {live} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{{}}\r\n0\r\n\r\n").into_bytes(), expect: Problem(400) },
        // Hostile text that is accepted, cleaned and escaped.
        Case { name: "control characters in title and body", request: post_json(json!({ "title": "Bell\u{7} and \u{1b}[31mescape\u{0}", "body": "NUL\u{0} DEL\u{7f} C1\u{85} BOM\u{feff} non-char\u{fffe} text" })), expect: Accepted(201) },
        Case { name: "]]> in title and body", request: post_json(json!({ "title": CDATA_TITLE, "body": CDATA_BODY })), expect: Accepted(201) },
        Case { name: "<script> in title and body", request: post_json(json!({ "title": SCRIPT_TITLE, "body": SCRIPT_BODY })), expect: Accepted(201) },
        Case { name: "<script> in an author", request: post_json(json!({ "title": "Author check", "body": "b", "authors": ["<script>alert('hostile-author')</script>"] })), expect: Accepted(201) },
        Case { name: "published in year 9999", request: post_json(json!({ "title": "Far future", "body": "b", "published": "9999-12-31T23:59:59Z" })), expect: Accepted(201) },
        Case { name: "an edit one second past year 9999", request: authed("PUT", &format!("{live}/far-future"), br#"{"title":"Far future","body":"edited"}"#), expect: Accepted(200) },
        Case { name: "published in year 0", request: post_json(json!({ "title": "Far past", "body": "b", "published": "0000-01-01T00:00:00Z" })), expect: Accepted(201) },
        // Not HTTP at all.
        Case { name: "garbage request line", request: b"GARBAGE\r\n\r\n".to_vec(), expect: Protocol(400) },
        Case { name: "binary junk", request: vec![0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03, b'\r', b'\n', b'\r', b'\n'], expect: Protocol(400) },
        Case { name: "invalid UTF-8 in the raw path", request: b"GET /feeds/\xff\xfe.rss HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".to_vec(), expect: Protocol(400) },
        Case { name: "control character in the path", request: b"GET /feeds/\x01.rss HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".to_vec(), expect: Protocol(400) },
        Case { name: "header without a colon", request: b"GET / HTTP/1.1\r\nHost: t\r\nNoColonHere\r\n\r\n".to_vec(), expect: Protocol(400) },
        Case { name: "header name with a space", request: b"GET / HTTP/1.1\r\nHost: t\r\nBad Name: x\r\n\r\n".to_vec(), expect: Protocol(400) },
    ];
    // Header floods.
    let mut many = String::from("GET /healthz HTTP/1.1\r\nHost: t\r\n");
    for i in 0..500 {
        many.push_str(&format!("X-Flood-{i}: {i}\r\n"));
    }
    many.push_str("\r\n");
    cases.push(Case {
        name: "500 headers",
        request: many.into_bytes(),
        expect: Protocol(431),
    });
    cases.push(Case {
        name: "one 100 KB header",
        request: format!(
            "GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
            "a".repeat(100 * 1024)
        )
        .into_bytes(),
        expect: Protocol(431),
    });
    cases.push(Case {
        name: "a 100 KB URI",
        request: format!(
            "GET /live?after={} HTTP/1.1\r\nHost: t\r\n\r\n",
            "1".repeat(100 * 1024)
        )
        .into_bytes(),
        expect: Protocol(431),
    });
    cases
}

/// Sends `request` on a new connection and reads until the server closes it: the status
/// (`None` when it closed without answering) and the raw answer.
async fn send_raw(server: &Server, request: &[u8]) -> (Option<u16>, String) {
    let mut conn = Conn::connect_url(&server.base).await.unwrap();
    // The server may answer (and close) before reading it all; write on the side.
    let (mut read, mut write) = conn.stream().split();
    let body = request.to_vec();
    let writing = async move {
        use tokio::io::AsyncWriteExt;
        let _ = write.write_all(&body).await;
        let _ = write.flush().await;
        // Keep the write side open: a half-close could end a request early.
        std::future::pending::<()>().await;
    };
    // Until the server closes, or (for an answer on a kept-alive connection) the idle
    // connection is closed after the header timeout.
    let mut out = Vec::new();
    let reading = async {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    };
    let _ = tokio::time::timeout(HEADER_TIMEOUT * 3, async {
        tokio::select! {
            () = reading => {},
            () = writing => unreachable!(),
        }
    })
    .await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|s| s.get(..3))
        .and_then(|s| s.parse().ok());
    (status, text)
}

/// The answer's body (after the head).
fn body_of(answer: &str) -> &str {
    answer.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

async fn healthy(server: &Server) {
    let mut conn = Conn::connect_url(&server.base)
        .await
        .expect("the server still accepts connections");
    let res = conn.get("/healthz", &[]).await.expect("it answers");
    assert_eq!(res.status(), 200, "{}", res.text());
}

/// Fetches every feed, parses the XML ones with roxmltree and the JSON ones with serde, and
/// returns them by file name.
async fn feeds(server: &Server) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for slug in [LIVE, ARTICLE, "all"] {
        for ext in ["rss", "atom", "json"] {
            let name = format!("{slug}.{ext}");
            let res = server.get(&format!("/feeds/{name}")).await;
            assert_eq!(res.status(), 200, "{name}");
            let bytes = res.bytes().await.unwrap().to_vec();
            let text = std::str::from_utf8(&bytes).expect("feeds are UTF-8");
            if ext == "json" {
                serde_json::from_str::<Value>(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            } else {
                roxmltree::Document::parse(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            }
            out.push((name, bytes));
        }
    }
    out
}

/// Runs `scripts/conformance.py` over the feeds when feedparser can be imported (from
/// `target/pydeps`, where `.ci/run` installs it); `false` when it cannot.
fn feedparser_conformance(files: &[(String, Vec<u8>)]) -> bool {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let pydeps = repo.join("target/pydeps");
    let has_feedparser = std::process::Command::new("python3")
        .args(["-c", "import feedparser"])
        .env("PYTHONPATH", &pydeps)
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_feedparser {
        eprintln!("feedparser not installed in target/pydeps: checked with roxmltree only");
        return false;
    }
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in files {
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    let out = std::process::Command::new("python3")
        .arg(repo.join("scripts/conformance.py"))
        .arg(dir.path())
        .env("PYTHONPATH", &pydeps)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "feedparser conformance failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    true
}

/// Every text node of the elements named `name` (any namespace), XML-unescaped.
fn texts(xml: &str, name: &str) -> Vec<String> {
    let doc = roxmltree::Document::parse(xml).unwrap();
    doc.descendants()
        .filter(|n| n.tag_name().name() == name)
        .map(|n| n.text().unwrap_or("").to_string())
        .collect()
}

/// The accepted hostile text is in every feed, escaped: as text in titles, never as markup.
fn assert_escaped(files: &[(String, Vec<u8>)]) {
    for (name, bytes) in files {
        if !name.starts_with(LIVE) && !name.starts_with("all") {
            continue;
        }
        let text = std::str::from_utf8(bytes).unwrap();
        let (titles, html): (Vec<String>, Vec<String>) = if name.ends_with(".json") {
            let feed: Value = serde_json::from_str(text).unwrap();
            let items = feed["items"].as_array().unwrap();
            (
                items
                    .iter()
                    .map(|i| i["title"].as_str().unwrap().to_string())
                    .collect(),
                items
                    .iter()
                    .map(|i| i["content_html"].as_str().unwrap_or("").to_string())
                    .collect(),
            )
        } else if name.ends_with(".rss") {
            // Both the description (the summary) and content:encoded are HTML to a reader.
            let mut html = texts(text, "description");
            html.extend(texts(text, "encoded"));
            (texts(text, "title"), html)
        } else {
            (texts(text, "title"), texts(text, "content"))
        };
        // Titles are text: the payload is there as written, for the reader to escape.
        for title in [SCRIPT_TITLE, CDATA_TITLE] {
            assert!(
                titles.iter().any(|t| t == title),
                "{name}: title {title:?} in {titles:?}"
            );
        }
        // Bodies are HTML: the payload is there as escaped text, never as an element.
        let all_html = html.join("\n");
        for needle in ["<script", "<img", "onerror=alert", "<![CDATA["] {
            let markup = all_html.match_indices(needle).any(|(at, _)| {
                needle != "onerror=alert" || !all_html[..at].ends_with("&lt;img src=x ")
            });
            assert!(!markup, "{name}: {needle} as markup in {all_html}");
        }
        assert!(
            all_html.contains("&lt;script&gt;alert('hostile-body')&lt;/script&gt;")
                || all_html.contains("&lt;script&gt;alert(&#39;hostile-body&#39;)&lt;/script&gt;")
                || all_html
                    .contains("&lt;script&gt;alert(&#x27;hostile-body&#x27;)&lt;/script&gt;"),
            "{name}: {all_html}"
        );
        assert!(
            all_html.contains("]]&gt; then &lt;![CDATA[ and ]]&gt; again &amp;amp; &amp;lt;"),
            "{name}: {all_html}"
        );
        // Control characters were removed, everywhere.
        assert!(
            !text
                .chars()
                .any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r'),
            "{name} carries a control character"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_request_gets_its_documented_answer_and_the_feeds_stay_valid() {
    let site = site();
    let server = site.start().await;
    let cases = cases();
    let mut failures = Vec::new();
    let mut accepted = 0;
    for case in &cases {
        let (status, answer) = send_raw(&server, &case.request).await;
        let ok = match case.expect {
            Expect::Problem(want) => {
                status == Some(want)
                    && answer
                        .to_ascii_lowercase()
                        .contains("content-type: application/problem+json")
                    && serde_json::from_str::<Value>(body_of(&answer))
                        .is_ok_and(|b| b["status"] == want && b["detail"].is_string())
            }
            Expect::Protocol(want) => status == Some(want),
            Expect::Accepted(want) => status == Some(want),
        };
        if matches!(case.expect, Expect::Accepted(_)) && ok {
            accepted += 1;
        }
        if !ok {
            failures.push(format!(
                "{}: expected {:?}, got {status:?}: {}",
                case.name,
                case.expect,
                answer.chars().take(400).collect::<String>()
            ));
        }
        healthy(&server).await;
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // A 10 MB body, declared and chunked: refused without reading it all.
    for chunked in [false, true] {
        let big = vec![b'x'; 10 * 1024 * 1024];
        let mut request = format!(
            "POST /stories/{LIVE}/entries HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {TOKEN}\r\n\
             Content-Type: application/json\r\n"
        )
        .into_bytes();
        if chunked {
            request.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
            for piece in big.chunks(64 * 1024) {
                request.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
                request.extend_from_slice(piece);
                request.extend_from_slice(b"\r\n");
            }
            request.extend_from_slice(b"0\r\n\r\n");
        } else {
            request.extend_from_slice(format!("Content-Length: {}\r\n\r\n", big.len()).as_bytes());
            request.extend_from_slice(&big);
        }
        let started = Instant::now();
        let (status, answer) = send_raw(&server, &request).await;
        assert_eq!(status, Some(413), "chunked: {chunked}: {answer}");
        assert!(started.elapsed() < Duration::from_secs(5));
        healthy(&server).await;
    }
    // Nothing refused made an event; the accepted ones did.
    assert_eq!(server.head().await, SEED + accepted);

    let files = feeds(&server).await;
    assert_escaped(&files);
    let feedparser = feedparser_conformance(&files);
    // The story page too: the payload is escaped text, and the page's one script is its own.
    let page = server
        .get(&format!("/stories/{LIVE}"))
        .await
        .text()
        .await
        .unwrap();
    // Its JSON-LD, its time script and its live script.
    assert_eq!(page.matches("<script").count(), 3, "{page}");
    assert!(!page.contains("alert('hostile"), "{page}");
    assert!(page.contains("&lt;script&gt;"));
    assert_eq!(PANICS.load(Ordering::SeqCst), 0, "a handler panicked");
    server.stop().await;
    eprintln!(
        "hostile: {} kinds of bad request (+2 ten-megabyte bodies) answered as documented, \
         {accepted} hostile texts accepted and escaped; feeds checked with roxmltree{}",
        cases.len(),
        if feedparser { " and feedparser" } else { "" }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_sending_headers_one_byte_a_second_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let site = site();
    let server = site.start().await;
    let mut conn = Conn::connect_url(&server.base).await.unwrap();
    let started = Instant::now();
    let request = b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let mut sent = 0;
    let mut buf = [0u8; 1024];
    let closed_after = loop {
        if sent < request.len()
            && conn
                .stream()
                .write_all(&request[sent..=sent])
                .await
                .is_err()
        {
            break started.elapsed();
        }
        sent += 1;
        // Wait a second for the server, reading whatever it says.
        match tokio::time::timeout(Duration::from_secs(1), conn.stream().read(&mut buf)).await {
            Err(_) => {}
            Ok(Ok(0)) | Ok(Err(_)) => break started.elapsed(),
            Ok(Ok(n)) => {
                let said = String::from_utf8_lossy(&buf[..n]);
                // hyper may say 408 before closing; anything else is wrong.
                assert!(said.starts_with("HTTP/1.1 408"), "{said}");
            }
        }
        assert!(
            started.elapsed() < HEADER_TIMEOUT * 4,
            "still open after {sent} bytes"
        );
    };
    assert!(
        closed_after >= HEADER_TIMEOUT - Duration::from_millis(100)
            && closed_after < HEADER_TIMEOUT + Duration::from_secs(2),
        "closed after {closed_after:?} and {sent} bytes"
    );
    assert!(sent < request.len(), "the whole head was sent");
    healthy(&server).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_get_a_quick_503() {
    const CAP: usize = 8;
    let mut site = site();
    site.config.max_connections = CAP;
    let server = site.start().await;
    // CAP connections, each holding a long-poll.
    let mut held = Vec::new();
    for _ in 0..CAP {
        let mut conn = Conn::connect_url(&server.base).await.unwrap();
        conn.send(&raw::request(
            "GET",
            &format!("/live?after={SEED}&timeout=30"),
            &[],
            None,
        ))
        .await
        .unwrap();
        held.push(conn);
    }
    // Let the server take them all.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for attempt in 0..3 {
        let started = Instant::now();
        let mut conn = Conn::connect_url(&server.base).await.unwrap();
        // Read by its Content-Length, then the close: a body longer or shorter than its
        // header says fails here.
        let answer = conn
            .read_until_closed(Duration::from_secs(2))
            .await
            .expect("one whole answer, then the close")
            .expect("an answer before the close");
        assert_eq!(answer.status(), 503, "attempt {attempt}: {}", answer.text());
        assert_eq!(answer.head.header("retry-after"), Some("1"));
        let body: Value = serde_json::from_slice(&answer.body).unwrap();
        assert_eq!(body["status"], 503);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
    }
    // One held connection goes; a new one is served again.
    drop(held.pop());
    let deadline = Instant::now() + common::PATIENCE;
    loop {
        let mut conn = Conn::connect_url(&server.base).await.unwrap();
        match conn.get("/healthz", &[("Connection", "close")]).await {
            Ok(res) if res.status() == 200 => break,
            other => assert!(Instant::now() < deadline, "{other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(held);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_kept_alive_connection_is_closed_after_the_header_timeout() {
    let site = site();
    let server = site.start().await;
    let mut conn = Conn::connect_url(&server.base).await.unwrap();
    let res = conn.get("/healthz", &[]).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_ne!(res.head.header("connection"), Some("close"));
    // Kept alive, then idle: the next request head does not come.
    let started = Instant::now();
    let rest = conn
        .read_until_closed(HEADER_TIMEOUT * 3)
        .await
        .expect("the server closes the idle connection");
    let idle = started.elapsed();
    assert!(rest.as_ref().is_none_or(|r| r.status() == 408), "{rest:?}");
    assert!(
        idle >= HEADER_TIMEOUT - Duration::from_millis(100)
            && idle < HEADER_TIMEOUT + Duration::from_secs(2),
        "{idle:?}"
    );
    server.stop().await;
}

/// Sends `request` on a new connection and reads one whole answer.
async fn answer(server: &Server, request: &[u8]) -> raw::Response {
    let mut conn = Conn::connect_url(&server.base).await.unwrap();
    conn.send(request).await.unwrap();
    tokio::time::timeout(common::PATIENCE, conn.read_response(false))
        .await
        .expect("an answer in time")
        .expect("a whole answer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_without_host_or_with_two_is_400() {
    let site = site();
    let server = site.start().await;
    let feed = format!("/feeds/{LIVE}.rss");
    for (name, request, status) in [
        (
            "HTTP/1.1 without Host",
            format!("GET {feed} HTTP/1.1\r\nConnection: close\r\n\r\n"),
            400,
        ),
        (
            "two Host lines",
            format!("GET {feed} HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n"),
            400,
        ),
        (
            "two equal Host lines",
            format!("GET {feed} HTTP/1.1\r\nHost: a\r\nHost: a\r\nConnection: close\r\n\r\n"),
            400,
        ),
        (
            "a Host that is no host",
            format!("GET {feed} HTTP/1.1\r\nHost: a b/c\r\nConnection: close\r\n\r\n"),
            400,
        ),
        (
            "a Host with user info",
            format!("GET {feed} HTTP/1.1\r\nHost: user@a\r\nConnection: close\r\n\r\n"),
            400,
        ),
        // Allowed: HTTP/1.0 without Host, an empty Host, a host with a port.
        (
            "HTTP/1.0 without Host",
            format!("GET {feed} HTTP/1.0\r\n\r\n"),
            200,
        ),
        (
            "an empty Host",
            format!("GET {feed} HTTP/1.1\r\nHost:\r\nConnection: close\r\n\r\n"),
            200,
        ),
        (
            "a Host with a port",
            format!("GET {feed} HTTP/1.1\r\nHost: example.org:8080\r\nConnection: close\r\n\r\n"),
            200,
        ),
    ] {
        let res = answer(&server, request.as_bytes()).await;
        assert_eq!(res.status(), status, "{name}");
        if status == 400 {
            let body: Value = serde_json::from_slice(&res.body).unwrap();
            assert_eq!(body["header"], "Host", "{name}");
        }
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_none_match_over_several_lines_is_one_list() {
    let site = site();
    let server = site.start().await;
    let feed = format!("/feeds/{LIVE}.atom");
    let etag = answer(&server, &get(&feed))
        .await
        .head
        .header("etag")
        .unwrap()
        .to_string();
    let request = get_with(
        &feed,
        &[("If-None-Match", "\"other\""), ("If-None-Match", &etag)],
    );
    assert_eq!(answer(&server, &request).await.status(), 304);
    let request = get_with(
        &feed,
        &[("If-None-Match", &etag), ("If-None-Match", "\"other\"")],
    );
    assert_eq!(answer(&server, &request).await.status(), 304);
    let request = get_with(
        &feed,
        &[("If-None-Match", "\"a\""), ("If-None-Match", "\"b\"")],
    );
    assert_eq!(answer(&server, &request).await.status(), 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_encoding_q_values_are_read_as_the_rfc_says() {
    let site = site();
    let server = site.start().await;
    let feed = format!("/feeds/{LIVE}.json");
    for (value, gzip) in [
        ("gzip", true),
        ("GZIP;Q=0.5", true),
        ("gzip; Q=1", true),
        ("gzip;q=0, *", false),
        ("*, gzip;Q=0", false),
        ("gzip;q=0.000", false),
        ("identity, *;q=0.5", true),
        ("*;Q=0", false),
        ("br", false),
    ] {
        let res = answer(&server, &get_with(&feed, &[("Accept-Encoding", value)])).await;
        assert_eq!(res.status(), 200, "{value}");
        assert_eq!(
            res.head.header("content-encoding") == Some("gzip"),
            gzip,
            "Accept-Encoding: {value}"
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_modified_since_in_the_obsolete_date_formats_is_honoured() {
    let site = site();
    let server = site.start().await;
    let feed = format!("/feeds/{LIVE}.rss");
    let modified = answer(&server, &get(&feed))
        .await
        .head
        .header("last-modified")
        .unwrap()
        .to_string();
    let time = chrono::DateTime::parse_from_rfc2822(&modified).unwrap();
    // RFC 9110 §5.6.7: IMF-fixdate, the obsolete RFC 850 form, and asctime.
    for date in [
        modified.clone(),
        time.format("%A, %d-%b-%y %H:%M:%S GMT").to_string(),
        time.format("%a %b %e %H:%M:%S %Y").to_string(),
    ] {
        let res = answer(&server, &get_with(&feed, &[("If-Modified-Since", &date)])).await;
        assert_eq!(res.status(), 304, "If-Modified-Since: {date}");
    }
    // A second earlier: modified since.
    let earlier = time - chrono::Duration::seconds(1);
    let date = earlier.format("%a %b %e %H:%M:%S %Y").to_string();
    let res = answer(&server, &get_with(&feed, &[("If-Modified-Since", &date)])).await;
    assert_eq!(res.status(), 200, "If-Modified-Since: {date}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bearer_scheme_is_case_insensitive() {
    let site = site();
    let server = site.start().await;
    for (i, scheme) in ["bearer", "BEARER", "BeArEr"].into_iter().enumerate() {
        let body = json!({ "title": format!("Scheme {i}"), "body": "b" }).to_string();
        let auth = format!("{scheme} {TOKEN}");
        let request = raw::request(
            "POST",
            &format!("/stories/{LIVE}/entries"),
            &[
                ("Connection", "close"),
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            Some(body.as_bytes()),
        );
        let res = answer(&server, &request).await;
        assert_eq!(res.status(), 201, "{scheme}: {}", res.text());
    }
    // Another scheme is still refused.
    let request = raw::request(
        "POST",
        &format!("/stories/{LIVE}/entries"),
        &[
            ("Connection", "close"),
            ("Authorization", &format!("Basic {TOKEN}")),
            ("Content-Type", "application/json"),
        ],
        Some(b"{\"title\":\"t\",\"body\":\"b\"}"),
    );
    assert_eq!(answer(&server, &request).await.status(), 401);
    server.stop().await;
}

/// Sets the child's open-file limit (soft and hard) before it runs.
fn with_descriptor_limit(cmd: &mut std::process::Command, limit: u64) {
    use std::os::unix::process::CommandExt;
    // SAFETY: setrlimit(2) is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: limit as libc::rlim_t,
                rlim_max: limit as libc::rlim_t,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cap_above_the_descriptor_limit_is_lowered_and_the_extra_get_503() {
    const LIMIT: u64 = 256;
    let site = site();
    let mut cmd = common::process::serve_command(&site.data());
    cmd.args(["--max-connections", "1000"]);
    with_descriptor_limit(&mut cmd, LIMIT);
    let mut proc = common::process::Proc::start(cmd);
    let base = proc.ready().await.expect("the server starts");
    // More connections than the process may hold descriptors for; each asks for /healthz and
    // keeps its connection open. Every one must be answered: 200 within the cap, 503 beyond.
    let mut held = Vec::new();
    let (mut ok, mut busy) = (0, 0);
    for i in 0..LIMIT as usize + 60 {
        let mut conn = Conn::connect_url(&base).await.unwrap();
        conn.send(&raw::request("GET", "/healthz", &[], None))
            .await
            .unwrap();
        let res = tokio::time::timeout(Duration::from_secs(5), conn.read_response(false))
            .await
            .unwrap_or_else(|_| panic!("connection {i} got no answer:\n{}", proc.log()))
            .unwrap_or_else(|e| panic!("connection {i}: {e}"));
        match res.status() {
            200 => ok += 1,
            503 => busy += 1,
            other => panic!("connection {i}: {other}"),
        }
        held.push(conn);
    }
    assert!(busy > 0 && ok > 100, "{ok} served, {busy} refused");
    let log = proc.log();
    assert!(log.contains("--max-connections lowered"), "{log}");
    drop(held);
    proc.kill();
}
