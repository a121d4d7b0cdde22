//! Links that work where they are served: `livefeed serve` with no `--base-url`, and the output
//! of `livefeed build` served by a real static server (Python's `http.server`), are crawled
//! from the index over real HTTP. Every link, self link and autodiscovery link that points at
//! the server resolves there (200), every `#anchor` is an `id` on its page, every feed's self
//! link is the address it was fetched from, and nothing points at the manifest's placeholder
//! host.

mod common;

use common::process::{Proc, serve_command};
use common::{ARTICLE, LIVE, PATIENCE, TOKEN, anchor, client, copy_data};
use reqwest::Url;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

/// The manifest's `base_url`: a placeholder no link may point at when served elsewhere.
const PLACEHOLDER: &str = "livefeed.example.org";

/// Every story's slug and the combined feed's.
const SLUGS: [&str; 3] = ["all", LIVE, ARTICLE];

/// A link found on a page.
#[derive(Debug)]
struct Link {
    from: String,
    to: Url,
}

/// What a page is made of.
#[derive(Debug, Default)]
struct Page {
    links: Vec<Url>,
    /// Feeds: their self links.
    selfs: Vec<String>,
    /// HTML: every `id`.
    ids: BTreeSet<String>,
}

fn join(base: &Url, href: &str) -> Option<Url> {
    base.join(href.trim()).ok()
}

fn html_page(url: &Url, body: &str) -> Page {
    let doc = scraper::Html::parse_document(body);
    let mut page = Page::default();
    let linked = scraper::Selector::parse("[href], [src]").unwrap();
    for el in doc.select(&linked) {
        for attr in ["href", "src"] {
            if let Some(v) = el.value().attr(attr) {
                page.links.extend(join(url, v));
            }
        }
    }
    let with_id = scraper::Selector::parse("[id]").unwrap();
    page.ids = doc
        .select(&with_id)
        .filter_map(|el| el.value().attr("id").map(str::to_string))
        .collect();
    page
}

fn xml_page(url: &Url, body: &str) -> Page {
    let doc = roxmltree::Document::parse(body)
        .unwrap_or_else(|e| panic!("{url}: not well-formed XML: {e}"));
    let mut page = Page::default();
    for node in doc.descendants().filter(|n| n.is_element()) {
        let name = node.tag_name().name();
        if let Some(href) = node.attribute("href") {
            // A WebSub hub is an endpoint to POST to, not a page.
            if node.attribute("rel") == Some("hub") {
                continue;
            }
            if node.attribute("rel") == Some("self") {
                page.selfs.push(href.to_string());
            }
            page.links.extend(join(url, href));
        }
        if let Some(v) = node.attribute("url") {
            page.links.extend(join(url, v));
        }
        // RSS `<link>` (Atom's has an href and no text) and Atom `<icon>`/`<logo>`.
        if matches!(name, "link" | "icon" | "logo") && node.attribute("href").is_none() {
            if let Some(text) = node.text().filter(|t| !t.trim().is_empty()) {
                page.links.extend(join(url, text));
            }
        }
    }
    page
}

fn json_page(url: &Url, body: &str) -> Page {
    let doc: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{url}: not JSON: {e}"));
    let mut page = Page::default();
    let mut add = |v: &Value| {
        if let Some(s) = v.as_str() {
            page.links.extend(join(url, s));
        }
    };
    for key in ["home_page_url", "feed_url", "next_url", "icon", "favicon"] {
        add(&doc[key]);
    }
    for item in doc["items"].as_array().into_iter().flatten() {
        for key in ["url", "external_url", "image", "banner_image"] {
            add(&item[key]);
        }
    }
    if let Some(s) = doc["feed_url"].as_str() {
        page.selfs.push(s.to_string());
    }
    page
}

/// What a crawl found.
#[derive(Debug, Default)]
struct Crawl {
    /// Every address fetched (no fragment), with its status.
    status: BTreeMap<String, u16>,
    /// The ids of every HTML page fetched.
    ids: BTreeMap<String, BTreeSet<String>>,
    links: Vec<Link>,
    problems: Vec<String>,
}

fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// Fetches `start` and everything it links to on its own origin, transitively.
async fn crawl(start: &str) -> Crawl {
    let http = client();
    let start = Url::parse(start).unwrap();
    let mut crawl = Crawl::default();
    let mut queue = vec![start.clone()];
    while let Some(url) = queue.pop() {
        if crawl.status.contains_key(url.as_str()) {
            continue;
        }
        let res = http.get(url.clone()).send().await.unwrap();
        let status = res.status().as_u16();
        crawl.status.insert(url.to_string(), status);
        if status != 200 {
            continue;
        }
        let body = res.text().await.unwrap();
        let path = url.path().to_string();
        let page = if path.ends_with(".rss") || path.ends_with(".atom") {
            xml_page(&url, &body)
        } else if path.ends_with(".json") {
            json_page(&url, &body)
        } else {
            html_page(&url, &body)
        };
        if path.ends_with(".rss") || path.ends_with(".atom") || path.ends_with(".json") {
            if page.selfs != [url.to_string()] {
                crawl.problems.push(format!(
                    "{url}: self links {:?}, not the address it was fetched from",
                    page.selfs
                ));
            }
        } else {
            crawl.ids.insert(url.to_string(), page.ids);
        }
        for to in page.links {
            if to.as_str().contains(PLACEHOLDER) {
                crawl
                    .problems
                    .push(format!("{url}: a link to the placeholder: {to}"));
            }
            if same_origin(&to, &start) {
                let mut target = to.clone();
                target.set_fragment(None);
                queue.push(target);
            }
            crawl.links.push(Link {
                from: url.to_string(),
                to,
            });
        }
    }
    // Every link on the origin resolved, and every anchor is on its page.
    for link in &crawl.links {
        if !same_origin(&link.to, &start) {
            continue;
        }
        let mut target = link.to.clone();
        target.set_fragment(None);
        match crawl.status.get(target.as_str()) {
            Some(200) => {}
            other => crawl.problems.push(format!(
                "{}: broken link {} ({other:?})",
                link.from, link.to
            )),
        }
        if let Some(fragment) = link.to.fragment() {
            let ids = crawl.ids.get(target.as_str());
            if !ids.is_some_and(|ids| ids.contains(fragment)) {
                crawl.problems.push(format!(
                    "{}: {} has no element with id {fragment:?}",
                    link.from, target
                ));
            }
        }
    }
    crawl
}

/// Fails with every problem found, and unless every feed and story page was reached under
/// `base` (no trailing slash).
#[track_caller]
fn assert_whole(crawl: &Crawl, base: &str) {
    assert!(
        crawl.problems.is_empty(),
        "{} problems:\n{}",
        crawl.problems.len(),
        crawl.problems.join("\n")
    );
    let mut expected = vec![format!("{base}/")];
    for slug in SLUGS {
        for ext in ["rss", "atom", "json"] {
            expected.push(format!("{base}/feeds/{slug}.{ext}"));
        }
    }
    for slug in [LIVE, ARTICLE] {
        expected.push(format!("{base}/stories/{slug}/"));
    }
    for url in &expected {
        assert_eq!(
            crawl.status.get(url),
            Some(&200),
            "{url} not reached from the index; fetched: {:#?}",
            crawl.status
        );
    }
    let local = crawl
        .links
        .iter()
        .filter(|l| l.to.as_str().starts_with(base));
    assert!(
        local.count() > 30,
        "too few links followed: {:#?}",
        crawl.links
    );
}

async fn publish(base: &str, title: &str) -> Value {
    let res = client()
        .post(format!("{base}/stories/{LIVE}/entries"))
        .bearer_auth(TOKEN)
        .json(&json!({ "title": title, "body": "Text of the entry." }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    res.json().await.unwrap()
}

/// `livefeed serve` as the README runs it (no `--base-url`): every link resolves on it.
#[tokio::test]
async fn serve_without_a_base_url_links_to_itself() {
    let tmp = tempfile::tempdir().unwrap();
    let data = copy_data(tmp.path());
    let mut proc = Proc::start({
        let mut cmd = serve_command(&data);
        cmd.env("LIVEFEED_TOKEN", TOKEN);
        cmd
    });
    let base = proc.ready().await.expect("the server starts");
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");
    publish(&base, "Talks resume in Geneva").await;
    let crawl = crawl(&format!("{base}/")).await;
    assert_whole(&crawl, &base);
    // The paths the static build writes are served too, with the same page.
    for (static_path, path) in [
        ("/index.html", "/".to_string()),
        (
            &format!("/stories/{LIVE}/index.html"),
            format!("/stories/{LIVE}/"),
        ),
        (&format!("/stories/{LIVE}"), format!("/stories/{LIVE}/")),
    ] {
        let http = client();
        let a = http
            .get(format!("{base}{static_path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(a.status(), 200, "{static_path}");
        let b = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(
            a.text().await.unwrap(),
            b.text().await.unwrap(),
            "{static_path}"
        );
    }
    assert!(proc.terminate(), "{}", proc.log());
}

/// Point 3: an entry published through the API links to its anchor on livefeed's own story
/// page; a report entry edited through the API keeps its link to the publisher's page.
#[tokio::test]
async fn api_entries_link_to_their_anchor_on_the_story_page() {
    let tmp = tempfile::tempdir().unwrap();
    let data = copy_data(tmp.path());
    let mut proc = Proc::spawn(&data);
    let base = proc.ready().await.expect("the server starts");
    let answer = publish(&base, "Ceasefire talks end").await;
    let url = answer["url"].as_str().unwrap();
    let anchor = anchor(url);
    assert_eq!(url, format!("{base}/stories/{LIVE}/#{anchor}"));
    let http = client();
    let page = http
        .get(format!("{base}/stories/{LIVE}/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let page = html_page(&Url::parse(url).unwrap(), &page);
    assert!(
        page.ids.contains(anchor),
        "no id {anchor:?}: {:?}",
        page.ids
    );
    let feed: Value = http
        .get(format!("{base}/feeds/{LIVE}.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let items = feed["items"].as_array().unwrap();
    let item = items.iter().find(|i| i["id"] == answer["id"]).unwrap();
    assert_eq!(item["url"], url);
    // A report entry edited through the API is still the publisher's page's.
    let report = items
        .iter()
        .find(|i| {
            i["url"]
                .as_str()
                .unwrap()
                .starts_with("https://www.itv.com/")
        })
        .expect("a report entry links to the publisher's page");
    let id = report["id"].as_str().unwrap();
    let res = http
        .put(format!(
            "{base}/stories/{LIVE}/entries/{}",
            common::encode_segment(id)
        ))
        .bearer_auth(TOKEN)
        .json(&json!({ "title": "Edited", "body": "Edited text." }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let edited: Value = res.json().await.unwrap();
    assert_eq!(edited["url"], report["url"]);
    assert!(proc.terminate(), "{}", proc.log());
}

/// A free port on 127.0.0.1 (bound, read and let go: the static server takes it next).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `python3 -m http.server` on `dir`, stopped when dropped.
struct StaticServer(Child);

impl StaticServer {
    fn start(dir: &Path, port: u16) -> StaticServer {
        let child = Command::new("python3")
            .args([
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--directory",
            ])
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("python3 runs Python's http.server (apt-get install python3): {e}")
            });
        let server = StaticServer(child);
        let deadline = Instant::now() + PATIENCE;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "http.server did not start on {port}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        server
    }
}

impl Drop for StaticServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn build(data: &Path, out: &Path, base_url: &str) {
    build_with(data, out, base_url, &[]);
}

fn build_with(data: &Path, out: &Path, base_url: &str, extra: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_livefeed"))
        .args(["build", "--data"])
        .arg(data)
        .arg("--out")
        .arg(out)
        .args(["--base-url", base_url])
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Point 2: the build's output, served as it is by a static server at `--base-url`, is a site
/// whose every link works: at the root of a host, and under a path.
#[tokio::test]
async fn the_build_works_served_by_a_static_server() {
    let tmp = tempfile::tempdir().unwrap();
    let data = copy_data(tmp.path());
    // At the root of the host.
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let out = tmp.path().join("public");
    build(&data, &out, &base);
    {
        let _server = StaticServer::start(&out, port);
        let crawl = crawl(&format!("{base}/")).await;
        assert_whole(&crawl, &base);
    }
    // Under a path: the output directory is `news/` of the served directory.
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}/news");
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).unwrap();
    build(&data, &root.join("news"), &format!("{base}/"));
    let _server = StaticServer::start(&root, port);
    let crawl = crawl(&format!("{base}/")).await;
    assert_whole(&crawl, &base);
}

/// `data-seq="…"` emptied.
fn without_seq(page: &str) -> String {
    match page.split_once("data-seq=\"") {
        Some((head, rest)) => {
            let tail = rest.split_once('"').map_or("", |(_, t)| t);
            format!("{head}data-seq=\"\"{tail}")
        }
        None => page.to_string(),
    }
}

/// The build's pages and feeds are the bytes the server sends for the same state: a build
/// over the server's log with the server's base URL and WebSub hub gives the server's files.
#[tokio::test]
async fn the_build_over_a_log_is_what_the_server_sends() {
    let tmp = tempfile::tempdir().unwrap();
    let data = copy_data(tmp.path());
    let mut proc = Proc::spawn(&data);
    let base = proc.ready().await.expect("the server starts");
    publish(&base, "Ministers meet again").await;
    let out = tmp.path().join("public");
    // While the server runs: the build only reads the log. The server's feeds advertise its
    // hub; the build's only when told of one.
    build_with(
        &data,
        &out,
        &base,
        &["--websub-hub", &format!("{base}/websub")],
    );
    let http = client();
    let mut paths = vec![("index.html".to_string(), "/".to_string())];
    for slug in SLUGS {
        for ext in ["rss", "atom", "json"] {
            paths.push((
                format!("feeds/{slug}.{ext}"),
                format!("/feeds/{slug}.{ext}"),
            ));
        }
    }
    for slug in [LIVE, ARTICLE] {
        paths.push((
            format!("stories/{slug}/index.html"),
            format!("/stories/{slug}/"),
        ));
    }
    for (file, path) in paths {
        let built = std::fs::read_to_string(out.join(&file)).unwrap();
        let served = http
            .get(format!("{base}{path}"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        // A story page says which log position it reflects; the server's renderer gives a
        // page the head of the render that last changed it, the build the log's head.
        assert_eq!(
            without_seq(&built),
            without_seq(&served),
            "{file} differs from {path}"
        );
    }
    assert!(proc.terminate(), "{}", proc.log());
}

/// Listening on every address (`0.0.0.0`), links name the loopback address with the bound
/// port, not an address no client can connect to.
#[tokio::test]
async fn serve_on_every_address_links_to_loopback() {
    let tmp = tempfile::tempdir().unwrap();
    let data = copy_data(tmp.path());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_livefeed"));
    cmd.args(["serve", "--listen", "0.0.0.0:0", "--data"])
        .arg(&data)
        .env_remove("LIVEFEED_TOKEN")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut proc = Proc::start(cmd);
    let bound = proc.ready().await.expect("the server starts");
    let port = bound.rsplit_once(':').unwrap().1;
    let base = format!("http://127.0.0.1:{port}");
    let crawl = crawl(&format!("{base}/")).await;
    assert_whole(&crawl, &base);
    assert!(proc.terminate(), "{}", proc.log());
}

/// An entry published through the API links to its anchor on the story page of the base URL
/// the server runs under now, also after a restart under another one (another port).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_entry_links_follow_the_base_url_across_restarts() {
    use common::process::{Proc, publish, serve_command};
    let tmp = tempfile::tempdir().unwrap();
    let data = common::copy_data(tmp.path());
    let start = |base: &str| {
        let mut cmd = serve_command(&data);
        cmd.args(["--base-url", base])
            .env("LIVEFEED_TOKEN", common::TOKEN);
        Proc::start(cmd)
    };
    let http = common::client();
    let mut first = start("http://first.example");
    let addr = first.ready().await.unwrap();
    let res = publish(&http, &addr, "Linked entry").await;
    assert_eq!(res.status(), 201);
    assert!(first.terminate());

    let mut second = start("http://second.example/news");
    let addr = second.ready().await.unwrap();
    let feed: serde_json::Value = http
        .get(format!("{addr}/feeds/{}.json", common::LIVE))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let item = feed["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["title"] == "Linked entry")
        .expect("the entry is in the feed");
    let url = item["url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!(
            "http://second.example/news/stories/{}/#",
            common::LIVE
        )),
        "{url}"
    );
    assert!(second.terminate());
}
