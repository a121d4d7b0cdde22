//! The story page as readers and search engines see it: times in the story's zone in one
//! format, the server's and the page script's alike (the script is run under Node), inferred
//! times shown as a day only, and schema.org `LiveBlogPosting` JSON-LD that matches the
//! entries, served over real HTTP and kept in step with publishes.

mod common;

use chrono::{DateTime, FixedOffset, Utc};
use common::{ARTICLE, LIVE, TestSite, anchor};
use livefeed::ingest::site::Site;
use livefeed::model::Story;
use livefeed::render::html;
use livefeed::zone::Zone;
use scraper::{Html, Selector};
use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;

fn data_site() -> Site {
    Site::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("data"), None).expect("data/ loads")
}

fn sel(s: &str) -> Selector {
    Selector::parse(s).unwrap()
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// Instants around the clock changes, at day boundaries, with nanoseconds (as live events
/// carry), and in winter and summer.
const INSTANTS: [&str; 10] = [
    "2013-03-31T00:59:59Z",
    "2013-03-31T01:00:00Z",
    "2013-10-27T00:59:00Z",
    "2013-10-27T01:00:00Z",
    "2013-05-10T23:30:00Z",
    "2013-05-10T13:34:00+00:00",
    "2013-12-31T23:59:00Z",
    "2026-11-29T22:19:23.123456789Z",
    "2026-06-01T00:00:00.5+00:00",
    "2027-01-09T07:05:00Z",
];

/// The page's time script and the zone from `<main>`'s data attributes, run under Node over
/// `INSTANTS`: one line per instant and kind (exact, then inferred).
fn script_times(page: &str) -> Vec<String> {
    let doc = Html::parse_document(page);
    let main = doc.select(&sel("main#entries")).next().expect("<main>");
    let attr = |name: &str| main.value().attr(name).unwrap_or("").to_string();
    let zone = json!({
        "tz": attr("data-tz"),
        "offset": attr("data-tz-offset").parse::<i64>().unwrap_or(0),
        "names": serde_json::from_str::<Value>(&attr("data-tz-names")).expect("data-tz-names is JSON"),
    });
    let code = format!(
        "var zone = {zone};\n{}.forEach(function (iso) {{\n  \
         console.log(lfShown(iso, false, zone));\n  console.log(lfShown(iso, true, zone));\n  \
         console.log(lfIsoDay(iso, zone));\n}});\n",
        json!(INSTANTS)
    );
    node_with_time_script(page, &code)
}

fn server_times(zone: &Zone) -> Vec<String> {
    INSTANTS
        .iter()
        .flat_map(|iso| {
            let t = at(iso);
            [zone.shown(t, false), zone.shown(t, true), zone.iso_day(t)]
        })
        .collect()
}

/// The live story's page, with `story`'s zone replaced by `zone`.
fn page_in(zone: Zone) -> (Story, String) {
    let site = data_site();
    let mut story = site.story(LIVE).unwrap().clone();
    story.zone = zone;
    let page = html::story_page(&site, &story, 0);
    (story, page)
}

#[test]
fn the_page_script_formats_times_exactly_as_the_server_does() {
    let zones = [
        Zone::named("Europe/London").unwrap(),
        Zone::named("America/New_York").unwrap(),
        Zone::named("Asia/Kolkata").unwrap(),
        Zone::default(),
        Zone::Fixed(FixedOffset::west_opt(5 * 3600 + 1800).unwrap()),
    ];
    for zone in zones {
        let (_, page) = page_in(zone);
        let server = server_times(&zone);
        assert_eq!(script_times(&page), server, "{zone:?}");
    }
    // The format itself, for London across the autumn change.
    let london = server_times(&Zone::named("Europe/London").unwrap());
    assert_eq!(london[6], "01:59 BST, 27 October 2013");
    assert_eq!(london[9], "01:00 GMT, 27 October 2013");
}

#[test]
fn story_pages_and_the_index_show_times_in_the_story_zone() {
    let site = data_site();
    let story = site.story(LIVE).unwrap();
    assert_eq!(
        story.zone.name(),
        Some("Europe/London"),
        "data/ names the zone"
    );
    let page = Html::parse_document(&html::story_page(&site, story, 0));
    let times: Vec<_> = page.select(&sel("main article .meta > time")).collect();
    assert_eq!(times.len(), story.entries.len());
    for (t, e) in times.iter().zip(&story.entries) {
        let text = t.text().collect::<String>();
        let datetime = t.value().attr("datetime").unwrap();
        if e.time_inferred {
            // Only what is known: the day, said to be approximate; no hh:mm.
            assert_eq!(text, story.zone.shown(e.published, true));
            assert!(text.ends_with(" (time approximate)"), "{text}");
            assert!(!text.contains(':'), "{text}");
            assert_eq!(datetime, story.zone.iso_day(e.published));
            assert!(t.value().attr("data-approx").is_some());
        } else {
            assert_eq!(text, story.zone.exact(e.published));
            assert_eq!(t.value().attr("title"), Some(text.as_str()));
            assert_eq!(at(datetime), e.published);
        }
    }
    // The seed's live entries all have inferred times: none shows an hour.
    assert!(story.entries.iter().all(|e| e.time_inferred));
    let article = site.story(ARTICLE).unwrap();
    let page = Html::parse_document(&html::story_page(&site, article, 0));
    let t = page
        .select(&sel("main article .meta > time"))
        .next()
        .unwrap();
    // 11:00 UTC on 16 June 2013 is noon in London, in summer time.
    assert_eq!(t.text().collect::<String>(), "12:00 BST, 16 June 2013");
    let index = Html::parse_document(&html::index(&site));
    let shown: Vec<String> = index
        .select(&sel("li time"))
        .map(|t| t.text().collect())
        .collect();
    // The live story was last updated by its newest entry, whose time is inferred.
    assert_eq!(
        shown,
        ["11 May 2013 (time approximate)", "12:00 BST, 16 June 2013"]
    );
}

/// Runs `code` under Node after the page's time script; its output lines.
fn node_with_time_script(page: &str, code: &str) -> Vec<String> {
    let doc = Html::parse_document(page);
    let script = doc
        .select(&sel("script"))
        .map(|s| s.text().collect::<String>())
        .find(|s| s.contains("function lfAgo"))
        .expect("the page carries the time script");
    let out = Command::new("node")
        .arg("-e")
        .arg(format!("{script}\n{code}"))
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run `node` ({e}); install Debian's `nodejs` package (.ci/run does)")
        });
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn relative_times_read_like_a_live_blog() {
    let (_, page) = page_in(Zone::named("Europe/London").unwrap());
    let seconds = [
        -600,
        -30,
        0,
        59,
        60,
        5 * 60 + 59,
        3599,
        3600,
        23 * 3600,
        86_400,
        5 * 86_400,
        40 * 86_400,
    ];
    let code = format!(
        "var now = Date.parse('2026-11-29T12:00:00Z');\n{}.forEach(function (s) {{ console.log(lfAgo(now - s * 1000, now) || '-'); }});",
        json!(seconds)
    );
    assert_eq!(
        node_with_time_script(&page, &code),
        [
            "-",
            "just now",
            "just now",
            "just now",
            "1 min ago",
            "5 min ago",
            "59 min ago",
            "1 h ago",
            "23 h ago",
            "1 day ago",
            "5 days ago",
            "-"
        ]
    );
    // The script refreshes them every 30 s and puts the exact time on hover.
    assert!(page.contains("setInterval(refresh, 30000)"));
    assert!(page.contains("s.title = t.title"));
}

/// The JSON-LD of a page, parsed.
fn json_ld(page: &str) -> Value {
    let doc = Html::parse_document(page);
    let scripts: Vec<String> = doc
        .select(&sel("script[type=\"application/ld+json\"]"))
        .map(|s| s.text().collect::<String>())
        .collect();
    assert_eq!(scripts.len(), 1, "one JSON-LD block");
    serde_json::from_str(&scripts[0]).expect("the JSON-LD parses")
}

/// Checks the page's JSON-LD against its entries (the story's JSON Feed, and the page's own
/// articles): count, order, headlines, urls with their anchors, dates, authors.
async fn check_json_ld(server: &common::Server, slug: &str) -> Value {
    let page = server
        .get(&format!("/stories/{slug}/"))
        .await
        .text()
        .await
        .unwrap();
    let ld = json_ld(&page);
    let feed: Value = server
        .get(&format!("/feeds/{slug}.json"))
        .await
        .json()
        .await
        .unwrap();
    let items = feed["items"].as_array().unwrap();
    assert_eq!(ld["@context"], "https://schema.org");
    assert_eq!(ld["@type"], "LiveBlogPosting");
    assert_eq!(ld["headline"], feed["title"]);
    let page_url = ld["url"].as_str().unwrap().to_string();
    assert!(
        page_url.ends_with(&format!("/stories/{slug}/")),
        "{page_url}"
    );
    assert_eq!(ld["mainEntityOfPage"], page_url.as_str());
    for key in ["datePublished", "dateModified", "coverageStartTime"] {
        DateTime::parse_from_rfc3339(ld[key].as_str().unwrap()).expect(key);
    }
    assert!(ld.get("coverageEndTime").is_none(), "no story has ended");
    let updates = ld["liveBlogUpdate"].as_array().unwrap();
    assert_eq!(updates.len(), items.len());
    let doc = Html::parse_document(&page);
    let articles: Vec<String> = doc
        .select(&sel("main article"))
        .map(|a| a.value().id().unwrap().to_string())
        .collect();
    assert_eq!(updates.len(), articles.len());
    let shown: Vec<&str> = doc
        .select(&sel("main article .meta > time"))
        .map(|t| t.value().attr("datetime").unwrap())
        .collect();
    for (((u, item), id), datetime) in updates.iter().zip(items).zip(&articles).zip(shown) {
        assert_eq!(u["@type"], "BlogPosting");
        assert_eq!(u["headline"], item["title"]);
        assert_eq!(
            u["url"].as_str().unwrap(),
            format!("{page_url}#{}", anchor(item["url"].as_str().unwrap())),
            "the url is the entry's anchor on this page"
        );
        assert_eq!(anchor(u["url"].as_str().unwrap()), id);
        // The date the page shows: the instant, or for an inferred time its day only.
        let inferred = item["_livefeed"]["time_inferred"] == true;
        let published = u["datePublished"].as_str().unwrap();
        if inferred {
            assert_eq!(published, datetime);
            assert_eq!(published.len(), "2013-05-10".len(), "{published}");
        } else {
            let instant = |s: &str| DateTime::parse_from_rfc3339(s).unwrap();
            assert_eq!(
                instant(published),
                instant(item["date_published"].as_str().unwrap())
            );
            assert_eq!(instant(published), instant(datetime));
        }
        assert!(!u["articleBody"].as_str().unwrap().is_empty());
        let authors: Vec<Value> = item["authors"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|p| json!({"@type": "Person", "name": p["name"]}))
                    .collect()
            })
            .unwrap_or_default();
        match u.get("author") {
            Some(a) => assert_eq!(a.as_array().unwrap(), &authors),
            None => assert!(authors.is_empty(), "{item}"),
        }
    }
    ld
}

#[tokio::test]
async fn served_pages_carry_live_blog_json_ld_in_step_with_the_entries() {
    let site = TestSite::new();
    let server = site.start().await;
    let before = check_json_ld(&server, LIVE).await;
    check_json_ld(&server, ARTICLE).await;
    let n = before["liveBlogUpdate"].as_array().unwrap().len();
    assert!(n >= 5, "{before}");

    // A publish with authors: the re-rendered page has it first.
    let res = server
        .authed(reqwest::Method::POST, &format!("/stories/{LIVE}/entries"))
        .json(&json!({"title": "Talks resume", "body": "Both sides met again.", "authors": ["Jane Doe", "Ali Khan"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let after = check_json_ld(&server, LIVE).await;
    let updates = after["liveBlogUpdate"].as_array().unwrap();
    assert_eq!(updates.len(), n + 1);
    assert_eq!(updates[0]["headline"], "Talks resume");
    assert_eq!(updates[0]["articleBody"], "Both sides met again.");
    assert_eq!(
        updates[0]["author"],
        json!([{"@type": "Person", "name": "Jane Doe"}, {"@type": "Person", "name": "Ali Khan"}])
    );
    assert_eq!(updates[0]["datePublished"], after["dateModified"]);
    // The re-rendered page shows the new entry's time in the story's zone, in the one format.
    let page = server
        .get(&format!("/stories/{LIVE}/"))
        .await
        .text()
        .await
        .unwrap();
    let doc = Html::parse_document(&page);
    let main = doc.select(&sel("main#entries")).next().unwrap();
    assert_eq!(main.value().attr("data-tz"), Some("Europe/London"));
    let t = doc
        .select(&sel("main article .meta > time"))
        .next()
        .unwrap();
    let published = at(updates[0]["datePublished"].as_str().unwrap());
    let london = Zone::named("Europe/London").unwrap();
    assert_eq!(t.text().collect::<String>(), london.exact(published));
    server.stop().await;
}

#[tokio::test]
async fn an_entry_title_cannot_break_out_of_the_json_ld() {
    let site = TestSite::new();
    let server = site.start().await;
    let title = "</script><script>alert('1')</script><!-- x & y";
    server.publish(LIVE, title, "</SCRIPT> body").await;
    let page = server
        .get(&format!("/stories/{LIVE}/"))
        .await
        .text()
        .await
        .unwrap();
    let start = page.find("<script type=\"application/ld+json\">").unwrap();
    let block = &page[start..];
    let block = &block[..block.find("</script>").unwrap()];
    assert!(!block.to_ascii_lowercase().contains("</script"), "{block}");
    assert!(!block.contains("<!--"), "{block}");
    let ld = json_ld(&page);
    assert_eq!(ld["liveBlogUpdate"][0]["headline"], title);
    // Nothing the title carried became an element: the page has its own scripts only.
    let doc = Html::parse_document(&page);
    assert_eq!(doc.select(&sel("script")).count(), 3);
    assert!(!page.contains("<script>alert("));
    server.stop().await;
}

#[test]
fn the_page_scripts_are_valid_javascript() {
    let (_, page) = page_in(Zone::default());
    let doc = Html::parse_document(&page);
    let scripts: Vec<String> = doc
        .select(&sel("script:not([type])"))
        .map(|s| s.text().collect())
        .collect();
    assert_eq!(scripts.len(), 2, "the time script and the live script");
    // Compiled, not run: the live script needs a DOM and an EventSource.
    let code = format!(
        "{}.forEach(function (s) {{ new Function(s); }}); console.log('ok');",
        json!(scripts)
    );
    assert_eq!(node_with_time_script(&page, &code), ["ok"]);
}

#[test]
fn the_live_script_streams_from_under_the_pages_base_url() {
    // A site served under a path: the stream is there too, not at the host's root.
    let mut site = data_site();
    let base = "https://example.test/news/live";
    site.base_url = base.into();
    let story = site.stories[0].clone();
    let page = html::story_page(&site, &story, 7);
    let doc = Html::parse_document(&page);
    let main = doc.select(&sel("main#entries")).next().expect("main");
    assert_eq!(
        main.value().attr("data-events"),
        Some(format!("{base}/live/events").as_str())
    );
    let live = doc
        .select(&sel("script:not([type])"))
        .map(|s| s.text().collect::<String>())
        .find(|s| s.contains("EventSource"))
        .expect("the live script");
    assert!(live.contains("new EventSource(events + '?story="), "{live}");
    assert!(!live.contains("'/live"), "no host-root path in the script");
}
