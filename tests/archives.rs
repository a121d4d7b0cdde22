//! RFC 5005 archived feeds and RFC 6721 tombstones, over real HTTP against the real binary
//! (`livefeed serve --feed-entries 3`): every current feed's `prev-archive` chain (RSS, Atom,
//! JSON Feed `next_url`) holds every entry exactly once, and a deleted entry leaves an
//! `at:deleted-entry` in Atom and a `_livefeed.deleted` in the JSON Feed.

mod common;

use common::process::{Proc, serve_command};
use common::{ARTICLE, LIVE, TOKEN, anchor, client, copy_data, encode_segment};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};

const ATOM: &str = "http://www.w3.org/2005/Atom";
const FH: &str = "http://purl.org/syndication/history/1.0";
const AT: &str = "http://purl.org/atompub/tombstones/1.0";
const N: usize = 3;

async fn start(dir: &std::path::Path) -> (Proc, String) {
    let data = copy_data(dir);
    let mut cmd = serve_command(&data);
    cmd.env("LIVEFEED_TOKEN", TOKEN)
        .args(["--feed-entries", &N.to_string()]);
    let mut proc = Proc::start(cmd);
    let base = proc.ready().await.expect("the server starts");
    (proc, base)
}

async fn publish(http: &reqwest::Client, base: &str, story: &str, title: &str) -> Value {
    let res = http
        .post(format!("{base}/stories/{story}/entries"))
        .bearer_auth(TOKEN)
        .json(&json!({ "title": title, "body": format!("{title}: the text of it.") }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    res.json().await.unwrap()
}

/// One feed document, read: its entry ids and its RFC 5005 markers.
#[derive(Debug, Default)]
struct Doc {
    ids: Vec<String>,
    prev: Option<String>,
    next: Option<String>,
    current: Option<String>,
    archive: bool,
    /// `(ref, when)` of each `at:deleted-entry`, or each `_livefeed.deleted` item.
    deleted: Vec<(String, String)>,
}

fn parse(ext: &str, body: &str) -> Doc {
    let mut doc = Doc::default();
    if ext == "json" {
        let v: Value = serde_json::from_str(body).expect("a JSON Feed parses");
        assert_eq!(v["version"], "https://jsonfeed.org/version/1.1");
        doc.ids = v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_string())
            .collect();
        doc.prev = v["next_url"].as_str().map(str::to_string);
        for d in v["_livefeed"]["deleted"].as_array().into_iter().flatten() {
            let when = d["when"].as_str().unwrap().to_string();
            doc.deleted
                .push((d["id"].as_str().unwrap().to_string(), when));
        }
        return doc;
    }
    let xml = roxmltree::Document::parse(body).expect("the XML parses");
    let root = xml.root_element();
    let channel = if ext == "rss" {
        assert_eq!(root.tag_name().name(), "rss");
        root.children().find(|n| n.has_tag_name("channel")).unwrap()
    } else {
        assert!(root.has_tag_name((ATOM, "feed")));
        root
    };
    for node in channel.children().filter(|n| n.is_element()) {
        let name = node.tag_name();
        match (name.namespace(), name.name()) {
            (Some(ATOM), "link") => {
                let href = node.attribute("href").map(str::to_string);
                match node.attribute("rel") {
                    Some("prev-archive") => doc.prev = href,
                    Some("next-archive") => doc.next = href,
                    Some("current") => doc.current = href,
                    _ => {}
                }
            }
            (Some(FH), "archive") => doc.archive = true,
            (Some(AT), "deleted-entry") => doc.deleted.push((
                node.attribute("ref").unwrap().to_string(),
                node.attribute("when").unwrap().to_string(),
            )),
            (None, "item") => doc.ids.push(
                node.children()
                    .find(|n| n.has_tag_name("guid"))
                    .and_then(|n| n.text())
                    .unwrap()
                    .to_string(),
            ),
            (Some(ATOM), "entry") => doc.ids.push(
                node.children()
                    .find(|n| n.has_tag_name((ATOM, "id")))
                    .and_then(|n| n.text())
                    .unwrap()
                    .to_string(),
            ),
            _ => {}
        }
    }
    doc
}

async fn get(http: &reqwest::Client, url: &str) -> (reqwest::header::HeaderMap, String) {
    let res = http.get(url).send().await.unwrap();
    assert_eq!(res.status(), 200, "{url}");
    let headers = res.headers().clone();
    (headers, res.text().await.unwrap())
}

#[tokio::test]
async fn every_prev_archive_chain_holds_every_entry_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let (_proc, base) = start(dir.path()).await;
    let http = client();
    for i in 0..10 {
        publish(&http, &base, LIVE, &format!("Update number {i}")).await;
    }
    publish(&http, &base, ARTICLE, "A note on the article").await;

    // The truth: every entry id per story, from the event log over /live.
    let mut expected: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let live: Value = http
        .get(format!("{base}/live?after=0&timeout=0&limit=1000"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for e in live["events"].as_array().unwrap() {
        assert_ne!(e["op"], "delete");
        let (story, id) = (
            e["story"].as_str().unwrap(),
            e["entry"]["id"].as_str().unwrap(),
        );
        expected.entry(story.into()).or_default().insert(id.into());
        expected.entry("all".into()).or_default().insert(id.into());
    }
    assert!(expected[LIVE].len() >= 4 * N, "enough entries for archives");

    let mut archives_seen = 0;
    for (slug, want) in &expected {
        for ext in ["rss", "atom", "json"] {
            let current_url = format!("{base}/feeds/{slug}.{ext}");
            let (_, body) = get(&http, &current_url).await;
            let current = parse(ext, &body);
            assert!(!current.archive, "{current_url} is not an archive");
            let total = want.len();
            let n_current = current.ids.len();
            if total >= N {
                assert!(
                    (N..2 * N).contains(&n_current),
                    "{current_url}: the newest {N} at least, fewer than {}: {n_current}",
                    2 * N
                );
            } else {
                assert_eq!(n_current, total, "{current_url}");
            }
            let mut seen: Vec<String> = current.ids.clone();
            let mut next_url = current_url.clone();
            let mut link = current.prev.clone();
            while let Some(url) = link {
                let (headers, body) = get(&http, &url).await;
                archives_seen += 1;
                let cache = headers["cache-control"].to_str().unwrap();
                assert!(cache.contains("max-age=86400"), "{url}: {cache}");
                assert!(headers.contains_key("etag"), "{url} has an ETag");
                let doc = parse(ext, &body);
                assert_eq!(doc.ids.len(), N, "{url}: a full page");
                if ext != "json" {
                    assert!(doc.archive, "{url} carries fh:archive");
                    assert_eq!(doc.current.as_deref(), Some(current_url.as_str()), "{url}");
                    if next_url != current_url {
                        assert_eq!(doc.next.as_deref(), Some(next_url.as_str()), "{url}");
                    } else {
                        assert_eq!(doc.next, None, "{url}: the newest archive");
                    }
                }
                seen.extend(doc.ids);
                next_url = url;
                link = doc.prev;
            }
            let unique: BTreeSet<String> = seen.iter().cloned().collect();
            assert_eq!(unique.len(), seen.len(), "{current_url}: an entry twice");
            assert_eq!(&unique, want, "{current_url}: every entry");
        }
    }
    assert!(
        archives_seen >= 9,
        "archives were followed: {archives_seen}"
    );
}

/// A full archive page that is not the newest keeps its bytes and ETag while entries are
/// published; editing one of its entries re-renders it (new ETag), and only it.
#[tokio::test]
async fn full_archive_pages_change_only_when_their_entries_do() {
    let dir = tempfile::tempdir().unwrap();
    let (_proc, base) = start(dir.path()).await;
    let http = client();
    // 5 seed entries + 10 = 15: archive pages 0..=3, the current document the newest 3.
    for i in 0..10 {
        publish(&http, &base, LIVE, &format!("Before {i}")).await;
    }
    let page = |k: usize| format!("{base}/feeds/{LIVE}/archive/{k}.atom");
    let (h0, first) = get(&http, &page(0)).await;
    let (h1, second) = get(&http, &page(1)).await;
    assert!(
        parse("atom", &first).next.is_some(),
        "page 0 is not the newest"
    );
    for i in 0..6 {
        publish(&http, &base, LIVE, &format!("After {i}")).await;
    }
    let (h0_after, first_after) = get(&http, &page(0)).await;
    assert_eq!(first_after, first, "a full page does not change");
    assert_eq!(h0_after["etag"], h0["etag"]);
    assert!(
        get(&http, &page(5)).await.1.contains("fh:archive"),
        "new pages were cut"
    );

    // Edit the oldest entry (on page 0): page 0 changes, page 1 does not.
    let oldest = parse("atom", &first).ids.last().unwrap().clone();
    let res = http
        .put(format!(
            "{base}/stories/{LIVE}/entries/{}",
            encode_segment(&oldest)
        ))
        .bearer_auth(TOKEN)
        .json(&json!({ "title": "Corrected oldest entry", "body": "Corrected text." }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let (h0_edited, edited) = get(&http, &page(0)).await;
    assert_ne!(
        h0_edited["etag"], h0["etag"],
        "the edited page has a new ETag"
    );
    assert!(edited.contains("Corrected oldest entry"));
    assert_eq!(parse("atom", &edited).ids, parse("atom", &first).ids);
    let (h1_after, second_after) = get(&http, &page(1)).await;
    assert_eq!(second_after, second, "the other pages stay");
    assert_eq!(h1_after["etag"], h1["etag"]);
}

#[tokio::test]
async fn a_deleted_entry_leaves_a_tombstone_in_atom_and_json_feed() {
    let dir = tempfile::tempdir().unwrap();
    let (_proc, base) = start(dir.path()).await;
    let http = client();
    let kept = publish(&http, &base, LIVE, "This one stays").await;
    let gone = publish(&http, &base, LIVE, "This one goes").await;
    let id = gone["id"].as_str().unwrap();
    let res = http
        .delete(format!(
            "{base}/stories/{LIVE}/entries/{}",
            anchor(gone["url"].as_str().unwrap())
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    for slug in [LIVE, "all"] {
        for ext in ["atom", "json"] {
            let (_, body) = get(&http, &format!("{base}/feeds/{slug}.{ext}")).await;
            let doc = parse(ext, &body);
            assert!(
                !doc.ids.iter().any(|i| i == id),
                "{slug}.{ext}: the item is gone"
            );
            assert!(
                doc.ids.iter().any(|i| i == kept["id"].as_str().unwrap()),
                "{slug}.{ext}: the other stays"
            );
            let refs: Vec<&str> = doc.deleted.iter().map(|(r, _)| r.as_str()).collect();
            assert_eq!(
                refs,
                [id],
                "{slug}.{ext}: one tombstone, for the deleted entry"
            );
            let when = &doc.deleted[0].1;
            assert!(
                chrono::DateTime::parse_from_rfc3339(when).is_ok(),
                "{slug}.{ext}: when={when}"
            );
        }
        // RSS has no tombstones; the item is gone there too.
        let (_, body) = get(&http, &format!("{base}/feeds/{slug}.rss")).await;
        assert!(!parse("rss", &body).ids.iter().any(|i| i == id));
    }
}

/// `livefeed build --feed-entries 2` writes the archives where their links point, and the
/// chains from the written current feeds hold every entry once; `--check` sees them fresh.
#[test]
fn the_build_writes_the_archives_its_feeds_link_to() {
    let dir = tempfile::tempdir().unwrap();
    let data = copy_data(dir.path());
    let out = dir.path().join("public");
    let base = "https://news.example.org";
    let build = |check: bool| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_livefeed"));
        cmd.arg("build")
            .arg("--data")
            .arg(&data)
            .arg("--out")
            .arg(&out)
            .args(["--base-url", base, "--feed-entries", "2"]);
        if check {
            cmd.arg("--check");
        }
        let output = cmd.output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    build(false);
    build(true);
    let read = |url: &str| {
        let path = url.strip_prefix(base).expect("a link under the base URL");
        std::fs::read_to_string(out.join(path.trim_start_matches('/')))
            .unwrap_or_else(|e| panic!("{url}: {e}"))
    };
    let full: Value = serde_json::from_str(&read(&format!("{base}/feeds/all.json"))).unwrap();
    let mut archives = 0;
    for ext in ["rss", "atom", "json"] {
        let mut ids = parse(ext, &read(&format!("{base}/feeds/all.{ext}"))).ids;
        let mut link = parse(ext, &read(&format!("{base}/feeds/all.{ext}"))).prev;
        assert!(link.is_some(), "all.{ext} links an archive");
        while let Some(url) = link {
            let doc = parse(ext, &read(&url));
            assert_eq!(doc.ids.len(), 2, "{url}");
            archives += 1;
            ids.extend(doc.ids);
            link = doc.prev;
        }
        let unique: BTreeSet<&String> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len(), "all.{ext}: an entry twice");
        // The seed data: five live entries and the article.
        assert_eq!(ids.len(), 6, "all.{ext}: every entry");
    }
    assert_eq!(archives, 6);
    assert!(full["next_url"].is_string());
}
