//! The publish path's security: the token comes only from the environment or a file and never
//! reaches the log (the real binary at log level `trace`), CORS headers only on read routes,
//! and a `<script>` payload published through the API comes out of the story page and every
//! feed as text, never as markup.

mod common;

use common::process::{Proc, serve_command};
use common::{ARTICLE, LIVE, Server, TOKEN, TestSite};
use reqwest::Method;
use serde_json::{Value, json};

async fn publish_status(base: &str, token: &str, title: &str) -> u16 {
    common::client()
        .post(format!("{base}/stories/{LIVE}/entries"))
        .bearer_auth(token)
        .json(&json!({ "title": title, "body": "Text." }))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_comes_from_the_environment_or_a_file_and_is_never_logged() {
    let site = TestSite::new();
    let data = site.data();
    let env_token = "env-token-0123456789-abcdefgh";
    let file_token = "file-token-9876543210-zyxwvuts";
    let wrong = "wrong-token-5555555555-qqqqqqq";
    let token_file = site.dir.path().join("token");
    std::fs::write(&token_file, format!("{file_token}\n")).unwrap();
    let mut logs = String::new();

    // From the environment, at the most verbose log level.
    let mut cmd = serve_command(&data);
    cmd.env("LIVEFEED_TOKEN", env_token)
        .env("RUST_LOG", "trace");
    let mut proc = Proc::start(cmd);
    let base = proc.ready().await.unwrap();
    assert_eq!(publish_status(&base, env_token, "From env").await, 201);
    assert_eq!(publish_status(&base, wrong, "Wrong").await, 401);
    assert_eq!(publish_status(&base, file_token, "Not this one").await, 401);
    assert!(proc.terminate());
    logs.push_str(&proc.log());

    // From a file (its trailing newline trimmed); the file wins over the environment.
    let mut cmd = serve_command(&data);
    cmd.arg("--token-file")
        .arg(&token_file)
        .env("LIVEFEED_TOKEN", env_token)
        .env("RUST_LOG", "trace");
    let mut proc = Proc::start(cmd);
    let base = proc.ready().await.unwrap();
    assert_eq!(publish_status(&base, file_token, "From file").await, 201);
    assert_eq!(publish_status(&base, env_token, "Env ignored").await, 401);
    assert!(proc.terminate());
    logs.push_str(&proc.log());

    // No token: publishing is off, and the log says how to turn it on.
    let mut proc = Proc::start(serve_command(&data));
    let base = proc.ready().await.unwrap();
    assert_eq!(publish_status(&base, env_token, "Off").await, 403);
    assert!(proc.log().contains("publishing is off"));
    assert!(proc.terminate());
    logs.push_str(&proc.log());

    // A token too short to be safe is refused at start, without echoing it.
    let short = "short-tok";
    let mut cmd = serve_command(&data);
    cmd.env("LIVEFEED_TOKEN", short);
    let mut proc = Proc::start(cmd);
    assert!(!proc.wait(), "a short token is refused");
    assert!(
        proc.log().contains("at least 16 characters"),
        "{}",
        proc.log()
    );
    logs.push_str(&proc.log());

    assert!(logs.lines().count() > 20, "trace logging was on:\n{logs}");
    for secret in [env_token, file_token, wrong, short] {
        assert!(!logs.contains(secret), "{secret} in the log:\n{logs}");
    }
    // The only way in is the environment or a file: no command-line flag takes a token.
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_livefeed"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("--token-file"), "{help}");
    assert!(!help.contains("--token "), "{help}");
}

#[test]
fn the_configuration_never_shows_the_token_when_printed() {
    let config = livefeed::http::Config {
        token: Some(TOKEN.to_string()),
        ..Default::default()
    };
    let shown = format!("{config:?} {config:#?}");
    assert!(!shown.contains(TOKEN), "{shown}");
    assert!(shown.contains("redacted"), "{shown}");
}

fn allow_origin(res: &reqwest::Response) -> Option<String> {
    res.headers()
        .get("access-control-allow-origin")
        .map(|v| v.to_str().unwrap().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_headers_are_on_read_routes_only() {
    let mut site = TestSite::new();
    site.config.max_body = 1024;
    let server = site.start().await;
    let http = &server.http;

    // Read routes may be read from any origin.
    for path in [
        "/".to_string(),
        "/feeds/all.rss".into(),
        format!("/feeds/{LIVE}.json"),
        format!("/stories/{LIVE}"),
        "/live?after=0&timeout=0".into(),
        "/live?after=999999".into(),
        "/live?after=x".into(),
    ] {
        let res = server.get(&path).await;
        assert_eq!(allow_origin(&res).as_deref(), Some("*"), "GET {path}");
    }
    let res = http
        .request(Method::OPTIONS, server.url("/feeds/all.atom"))
        .header("Origin", "https://evil.example")
        .header("Access-Control-Request-Method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(allow_origin(&res).as_deref(), Some("*"));
    assert_eq!(
        res.headers()["access-control-allow-methods"],
        "GET, HEAD, OPTIONS"
    );

    // Every answer of a publishing route, success or failure, carries none: a browser page on
    // another origin can neither publish nor read what publishing answers.
    let entries = format!("/stories/{LIVE}/entries");
    let entry = format!("{entries}/may-summit-on-syria-is-impossible-says-russian-official");
    let body = json!({ "title": "CORS check", "body": "Text." });
    let created = server
        .authed(Method::POST, &entries)
        .header("Origin", "https://evil.example")
        .json(&body)
        .send()
        .await
        .unwrap();
    let mut answers = vec![("POST 201", created)];
    let anchor = "cors-check";
    let requests: Vec<(&str, reqwest::RequestBuilder)> = vec![
        (
            "PUT 200",
            server
                .authed(Method::PUT, &format!("{entries}/{anchor}"))
                .json(&body),
        ),
        (
            "DELETE 200",
            server.authed(Method::DELETE, &format!("{entries}/{anchor}")),
        ),
        ("POST 401", http.post(server.url(&entries)).json(&body)),
        ("PUT 401", http.put(server.url(&entry)).json(&body)),
        ("DELETE 401", http.delete(server.url(&entry))),
        (
            "POST 400",
            server.authed(Method::POST, &entries).json(&json!({})),
        ),
        (
            "POST 404",
            server
                .authed(Method::POST, "/stories/nope/entries")
                .json(&body),
        ),
        (
            "POST 413",
            server
                .authed(Method::POST, &entries)
                .json(&json!({ "title": "t", "body": "x".repeat(4096) })),
        ),
        (
            "POST 415",
            server.authed(Method::POST, &entries).body("title=x"),
        ),
        (
            "OPTIONS preflight",
            http.request(Method::OPTIONS, server.url(&entries))
                .header("Origin", "https://evil.example")
                .header("Access-Control-Request-Method", "POST")
                .header("Access-Control-Request-Headers", "authorization"),
        ),
        (
            "OPTIONS preflight on an entry",
            http.request(Method::OPTIONS, server.url(&entry))
                .header("Origin", "https://evil.example")
                .header("Access-Control-Request-Method", "DELETE"),
        ),
    ];
    for (name, req) in requests {
        answers.push((
            name,
            req.header("Origin", "https://evil.example")
                .send()
                .await
                .unwrap(),
        ));
    }
    for (name, res) in &answers {
        let want = name.split(' ').nth(1).and_then(|s| s.parse::<u16>().ok());
        if let Some(want) = want {
            assert_eq!(res.status(), want, "{name}");
        } else {
            // A preflight for a write is refused, so the browser never sends the write.
            assert!(!res.status().is_success(), "{name}: {}", res.status());
        }
        assert_eq!(allow_origin(res), None, "{name}");
        assert!(
            res.headers().get("access-control-allow-methods").is_none(),
            "{name}"
        );
    }
    server.stop().await;

    // Publishing off (403): no CORS either.
    let site = TestSite::with_token(None);
    let server = site.start().await;
    let res = server
        .http
        .post(server.url(&entries))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    assert_eq!(allow_origin(&res), None);
    server.stop().await;
}

/// A payload that must stay text: every way into a page or feed, a marker in each.
const TITLE: &str = "<script>alert('xss-title')</script> & </title></item>]]>";
const BODY: &str = "<script>alert('xss-body')</script>\n\n\
                    <img src=x onerror=alert('xss-img')>\n\n\
                    Quote: \"</script><script>alert('xss-quote')</script>\"\n\n\
                    \x20 • <b onmouseover=alert('xss-li')>item</b>";
const AUTHOR: &str = "<script>alert('xss-author')</script>";
const EDITED: &str = "<svg onload=alert('xss-edit')>";

/// Every text node of elements named `name`, XML-unescaped.
fn texts(xml: &str, name: &str) -> Vec<String> {
    roxmltree::Document::parse(xml)
        .unwrap_or_else(|e| panic!("{e}"))
        .descendants()
        .filter(|n| n.is_element() && n.tag_name().name() == name)
        .map(|n| n.text().unwrap_or("").to_string())
        .collect()
}

/// HTML that a reader will render: no element from the payload (so none of its attributes
/// either), and no more `<script>` elements than the page's own.
#[track_caller]
fn assert_inert(what: &str, html: &str, own_scripts: usize) {
    assert_eq!(
        html.matches("<script").count(),
        own_scripts,
        "{what}: {html}"
    );
    for tag in ["<img", "<svg", "<b ", "<b>", "</item>"] {
        assert!(!html.contains(tag), "{what}: {tag} as markup in {html}");
    }
}

async fn body_text(server: &Server, path: &str) -> String {
    let res = server.get(path).await;
    assert_eq!(res.status(), 200, "{path}");
    res.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_payload_is_text_in_the_page_and_every_feed() {
    let site = TestSite::new();
    let server = site.start().await;
    let entries = format!("/stories/{LIVE}/entries");
    let res = server
        .authed(Method::POST, &entries)
        .json(&json!({ "title": TITLE, "body": BODY, "authors": [AUTHOR] }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let ack: Value = res.json().await.unwrap();
    // And an edit of an existing entry with another payload.
    let res = server
        .authed(
            Method::PUT,
            &format!("{entries}/may-summit-on-syria-is-impossible-says-russian-official"),
        )
        .json(&json!({ "title": EDITED, "body": EDITED }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    // The story page and the index: the page's own script only, the payload escaped.
    let page = body_text(&server, &format!("/stories/{LIVE}")).await;
    assert!(!page.contains("alert('xss"), "{page}");
    // Its JSON-LD, its time script and its live script.
    assert_inert("story page", &page, 3);
    assert_eq!(
        page.matches("</title>").count(),
        1,
        "only the page's own title"
    );
    assert!(page.contains("&lt;script&gt;alert(&#39;xss-title&#39;)&lt;/script&gt;"));
    assert!(page.contains("&lt;svg onload=alert(&#39;xss-edit&#39;)&gt;"));
    let index = body_text(&server, "/").await;
    assert_inert("index", &index, 0);

    for slug in [LIVE, "all"] {
        // RSS: titles are text; description and content:encoded are HTML.
        let rss = body_text(&server, &format!("/feeds/{slug}.rss")).await;
        assert!(texts(&rss, "title").iter().any(|t| t == TITLE), "{rss}");
        assert!(texts(&rss, "title").iter().any(|t| t == EDITED));
        for html in texts(&rss, "description")
            .iter()
            .chain(&texts(&rss, "encoded"))
        {
            assert_inert(&format!("{slug}.rss"), html, 0);
        }
        assert!(texts(&rss, "creator").iter().any(|a| a == AUTHOR));
        // Atom: title and summary are typed text, content is HTML.
        let atom = body_text(&server, &format!("/feeds/{slug}.atom")).await;
        assert!(texts(&atom, "title").iter().any(|t| t == TITLE));
        for html in texts(&atom, "content") {
            assert_inert(&format!("{slug}.atom"), &html, 0);
        }
        // JSON Feed: title and summary are text, content_html is HTML.
        let feed: Value =
            serde_json::from_str(&body_text(&server, &format!("/feeds/{slug}.json")).await)
                .unwrap();
        let items = feed["items"].as_array().unwrap();
        let item = items
            .iter()
            .find(|i| i["id"] == ack["id"])
            .expect("the item");
        assert_eq!(item["title"], TITLE);
        assert_eq!(item["authors"][0]["name"], AUTHOR);
        for item in items {
            assert_inert(
                &format!("{slug}.json"),
                item["content_html"].as_str().unwrap(),
                0,
            );
        }
    }
    for slug in [ARTICLE] {
        let rss = body_text(&server, &format!("/feeds/{slug}.rss")).await;
        assert!(!rss.contains("xss"), "another story is untouched");
    }
    // The live event carries the same escaped HTML.
    let events = server.events_after(common::SEED).await;
    for e in &events {
        assert_inert(
            "live event",
            e["entry"]["content_html"].as_str().unwrap(),
            0,
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_on_read_routes_carry_the_cors_header() {
    let site = TestSite::new();
    let server = site.start().await;
    let http = &server.http;
    for (method, path, status) in [
        (Method::GET, "/feeds/nope.rss", 404),
        (Method::GET, "/feeds/all.xml", 404),
        (Method::GET, "/feeds/all.rss/x/y", 404),
        (Method::GET, "/feeds/..%2fCargo.toml", 404),
        (Method::GET, "/feeds/%ff%fe.rss", 400),
        (Method::GET, "/stories/nope", 404),
        (Method::GET, "/live?story=no-such-story", 404),
        (Method::GET, "/live?after=x", 400),
        (Method::GET, "/live/events?after=x", 400),
        (Method::DELETE, "/feeds/all.rss", 405),
        (Method::PUT, "/", 405),
        (Method::POST, "/live", 405),
        (Method::POST, "/live/events", 405),
        (Method::POST, &format!("/stories/{LIVE}"), 405),
    ] {
        let res = http
            .request(method.clone(), server.url(path))
            .header("Origin", "https://elsewhere.example")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), status, "{method} {path}");
        assert_eq!(allow_origin(&res).as_deref(), Some("*"), "{method} {path}");
    }
    let res = http
        .get(server.url("/live/events"))
        .header("Last-Event-ID", "abc")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(
        allow_origin(&res).as_deref(),
        Some("*"),
        "Last-Event-ID 400"
    );
    // The publishing routes' errors still carry none.
    let res = http
        .get(server.url(&format!("/stories/{LIVE}/entries")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 405);
    assert_eq!(allow_origin(&res), None);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_no_header_can_carry_is_refused_at_start() {
    let site = TestSite::new();
    // 18 bytes but 9 characters: long enough by bytes, never sendable in a header.
    for token in [
        "ééééééééé",
        "ééééééééééééééééééé",
        "token with spaces in it",
    ] {
        let mut cmd = serve_command(&site.data());
        cmd.env("LIVEFEED_TOKEN", token);
        let mut proc = Proc::start(cmd);
        assert!(!proc.wait(), "{token:?} is refused");
        let log = proc.log();
        assert!(log.contains("visible ASCII"), "{log}");
        assert!(!log.contains(token), "the message echoes the token: {log}");
    }
}
