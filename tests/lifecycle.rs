//! The live blog's furniture and a story's lifecycle, over real HTTP: key events and a pinned
//! entry (publish API flags, durable in the log, relayed in events, shown on the page and in
//! JSON Feed), "Updated" marks, bylines and share links; `PUT /stories/{story}` ending a story
//! (and reopening it), the manifest's `ended`, and what pages and feeds say then.

mod common;

use common::{ARTICLE, LIVE, Sse, TestSite, anchor};
use reqwest::Method;
use scraper::{Html, Selector};
use serde_json::{Value, json};

fn sel(s: &str) -> Selector {
    Selector::parse(s).unwrap()
}

async fn page(server: &common::Server, slug: &str) -> Html {
    let res = server.get(&format!("/stories/{slug}/")).await;
    assert_eq!(res.status(), 200);
    Html::parse_document(&res.text().await.unwrap())
}

async fn json_feed(server: &common::Server, slug: &str) -> Value {
    server
        .get(&format!("/feeds/{slug}.json"))
        .await
        .json()
        .await
        .unwrap()
}

async fn text(server: &common::Server, path: &str) -> String {
    server.get(path).await.text().await.unwrap()
}

/// Publishes `body` (JSON) to the live story; the 201 answer.
async fn post(server: &common::Server, body: Value) -> Value {
    let res = server
        .authed(Method::POST, &format!("/stories/{LIVE}/entries"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = res.status();
    let answer: Value = res.json().await.unwrap();
    assert_eq!(status, 201, "{answer}");
    answer
}

/// `PUT /stories/{story}` with `body`: status and answer.
async fn set_state(server: &common::Server, slug: &str, body: Value) -> (u16, Value) {
    let res = server
        .authed(Method::PUT, &format!("/stories/{slug}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

fn texts(doc: &Html, css: &str) -> Vec<String> {
    doc.select(&sel(css))
        .map(|e| e.text().collect::<String>().trim().to_string())
        .collect()
}

/// The title of each item of a JSON Feed with `flag` set in its `_livefeed` extension.
fn flagged(feed: &Value, flag: &str) -> Vec<String> {
    feed["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["_livefeed"][flag] == true)
        .map(|i| i["title"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn key_events_and_the_pinned_entry_are_flagged_shown_relayed_and_kept_over_a_restart() {
    let site = TestSite::new();
    let server = site.start().await;
    let head = server.head().await;
    let first = post(
        &server,
        json!({"title": "Talks begin", "body": "Text.", "key": true, "authors": ["Jo Bloggs"]}),
    )
    .await;
    post(
        &server,
        json!({"title": "Pinned summary", "body": "What we know.", "pinned": true}),
    )
    .await;
    let later = post(
        &server,
        json!({"title": "New summary", "body": "Newer.", "pinned": true, "key": true}),
    )
    .await;
    // A flag must be a boolean, named in the problem.
    let res = server
        .authed(Method::POST, &format!("/stories/{LIVE}/entries"))
        .json(&json!({"title": "t", "body": "b", "key": "yes"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let problem: Value = res.json().await.unwrap();
    assert_eq!(problem["field"], "key", "{problem}");

    // The events carry the flags, for the page's script.
    let events = server.wait_for_events(head, 3).await;
    assert_eq!(events[0]["entry"]["key"], true, "{:#}", events[0]);
    assert_eq!(events[1]["entry"]["pinned"], true);
    assert_eq!(events[2]["entry"]["pinned"], true);
    assert!(
        events[0]["entry"].get("pinned").is_none(),
        "false is left out"
    );

    let check = |doc: &Html, feed: &Value| {
        // Key events, newest first, each linking to its entry's anchor.
        assert_eq!(
            texts(doc, "#key-events li a"),
            ["New summary", "Talks begin"]
        );
        let hrefs: Vec<&str> = doc
            .select(&sel("#key-events li a"))
            .map(|a| a.value().attr("href").unwrap())
            .collect();
        assert_eq!(
            hrefs,
            [
                format!("#{}", anchor(later["url"].as_str().unwrap())),
                format!("#{}", anchor(first["url"].as_str().unwrap())),
            ]
        );
        for href in hrefs {
            assert_eq!(doc.select(&sel(href)).count(), 1, "{href} is on the page");
        }
        // One pinned entry, shown first in its slot and not again in the stream: pinning the
        // newer one unpinned the older.
        assert_eq!(texts(doc, "#pinned article h2"), ["Key eventNew summary"]);
        assert!(doc.select(&sel("#pinned[hidden]")).next().is_none());
        assert!(texts(doc, "main article h2").contains(&"Pinned summary".to_string()));
        assert!(!texts(doc, "main article h2").contains(&"Key eventNew summary".to_string()));
        assert_eq!(flagged(feed, "pinned"), ["New summary"]);
        assert_eq!(flagged(feed, "key"), ["New summary", "Talks begin"]);
        // The byline.
        assert!(
            texts(doc, "article .byline").contains(&"By Jo Bloggs".to_string()),
            "{:?}",
            texts(doc, "article .byline")
        );
    };
    check(&page(&server, LIVE).await, &json_feed(&server, LIVE).await);
    server.stop().await;

    // The flags are in the log: a restart keeps them (and the one pin).
    let server = site.start().await;
    check(&page(&server, LIVE).await, &json_feed(&server, LIVE).await);

    // An edit that does not mention the flags keeps them; `pinned: false` unpins.
    let id = common::encode_segment(later["id"].as_str().unwrap());
    let res = server
        .authed(Method::PUT, &format!("/stories/{LIVE}/entries/{id}"))
        .json(&json!({"title": "New summary", "body": "Edited."}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let feed = json_feed(&server, LIVE).await;
    assert_eq!(flagged(&feed, "pinned"), ["New summary"]);
    assert_eq!(flagged(&feed, "key"), ["New summary", "Talks begin"]);
    let res = server
        .authed(Method::PUT, &format!("/stories/{LIVE}/entries/{id}"))
        .json(&json!({"title": "New summary", "body": "Edited.", "pinned": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let doc = page(&server, LIVE).await;
    assert!(doc.select(&sel("#pinned[hidden]")).next().is_some());
    assert_eq!(doc.select(&sel("#pinned article")).count(), 0);
    assert!(flagged(&json_feed(&server, LIVE).await, "pinned").is_empty());
    server.stop().await;
}

#[tokio::test]
async fn the_page_has_updated_marks_share_links_a_way_home_an_icon_and_fits_a_phone() {
    let site = TestSite::new();
    let server = site.start().await;
    // Published ten minutes ago, edited now: "Updated hh:mm" in the story's zone.
    let published = chrono::Utc::now() - chrono::Duration::minutes(10);
    let fresh = post(
        &server,
        json!({"title": "Edited later", "body": "First.", "published": published.to_rfc3339()}),
    )
    .await;
    let doc = page(&server, LIVE).await;
    assert!(texts(&doc, "article .updated").is_empty(), "not edited yet");
    let id = common::encode_segment(fresh["id"].as_str().unwrap());
    let res = server
        .authed(Method::PUT, &format!("/stories/{LIVE}/entries/{id}"))
        .json(&json!({"title": "Edited later", "body": "Second."}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let doc = page(&server, LIVE).await;
    let marks = texts(&doc, "article .updated");
    assert_eq!(marks.len(), 1, "{marks:?}");
    let now = chrono::Utc::now().with_timezone(&chrono_tz::Europe::London);
    let minute = |t: chrono::DateTime<chrono_tz::Tz>| t.format("%H:%M").to_string();
    let before = now - chrono::Duration::minutes(1);
    assert!(
        marks[0] == format!("Updated {}", minute(now))
            || marks[0] == format!("Updated {}", minute(before)),
        "{marks:?}"
    );
    // A share link per entry: its anchor on this page (at the site's base URL, as JSON-LD has it).
    let ld: Value = serde_json::from_str(
        &doc.select(&sel("script[type=\"application/ld+json\"]"))
            .next()
            .unwrap()
            .text()
            .collect::<String>(),
    )
    .unwrap();
    let page_url = ld["url"].as_str().unwrap().to_string();
    let base = page_url
        .trim_end_matches(&format!("/stories/{LIVE}/"))
        .to_string();
    let shares: Vec<&str> = doc
        .select(&sel("article a.share"))
        .map(|a| a.value().attr("href").unwrap())
        .collect();
    let ids: Vec<&str> = doc
        .select(&sel("article"))
        .map(|a| a.value().id().unwrap())
        .collect();
    assert_eq!(shares.len(), ids.len());
    for (share, id) in shares.iter().zip(&ids) {
        assert_eq!(*share, format!("{page_url}#{id}"));
    }
    // Back to the index, a favicon, a viewport, the live badge.
    let home: Vec<&str> = doc
        .select(&sel("header.top a"))
        .map(|a| a.value().attr("href").unwrap())
        .collect();
    assert_eq!(home, [format!("{base}/")]);
    let icon = doc.select(&sel("link[rel=icon]")).next().expect("an icon");
    assert!(
        icon.value()
            .attr("href")
            .unwrap()
            .starts_with("data:image/svg+xml,")
    );
    assert!(
        doc.select(&sel("meta[name=viewport]"))
            .next()
            .is_some_and(|m| m
                .value()
                .attr("content")
                .unwrap()
                .contains("width=device-width"))
    );
    assert_eq!(texts(&doc, "[data-state]"), ["Live"]);
    // The index: every story with its state, latest entry and feeds.
    let index = Html::parse_document(&text(&server, "/").await);
    let stories: Vec<_> = index.select(&sel("ul.stories > li")).collect();
    assert_eq!(stories.len(), 2);
    let live = index
        .select(&sel(&format!("li[data-story={LIVE}]")))
        .next()
        .unwrap();
    let live_text = live.text().collect::<String>();
    assert!(live_text.contains("Live"), "{live_text}");
    assert!(live_text.contains("Latest: Edited later"), "{live_text}");
    let links: Vec<&str> = live
        .select(&sel("a"))
        .map(|a| a.value().attr("href").unwrap())
        .collect();
    assert!(links.contains(&page_url.as_str()), "{links:?}");
    for ext in ["rss", "atom", "json"] {
        let feed = format!("{base}/feeds/{LIVE}.{ext}");
        assert!(links.contains(&feed.as_str()), "{links:?}");
    }
    server.stop().await;
}

#[tokio::test]
async fn a_story_ends_and_reopens_through_the_api_durably_and_subscribers_hear_it() {
    let site = TestSite::new();
    let server = site.start().await;
    let head = server.head().await;
    let mut sse = Sse::connect(&server, &format!("story={LIVE}&after={head}"), None).await;

    // Authorised like publishing; the body checked field by field.
    let res = server
        .http
        .put(server.url(&format!("/stories/{LIVE}")))
        .json(&json!({"state": "ended"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert!(res.headers().get("access-control-allow-origin").is_none());
    // Its preflight is a publishing one: no origin is named, so 403 and no CORS headers.
    let res = server
        .http
        .request(Method::OPTIONS, server.url(&format!("/stories/{LIVE}")))
        .header("Origin", "https://elsewhere.example")
        .header("Access-Control-Request-Method", "PUT")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    assert!(res.headers().get("access-control-allow-origin").is_none());
    for (body, field) in [
        (json!({"state": "over"}), "state"),
        (json!({}), "state"),
        (json!({"state": "ended", "ended": "soon"}), "ended"),
        (json!({"state": "ended", "why": "x"}), "why"),
    ] {
        let (status, problem) = set_state(&server, LIVE, body).await;
        assert_eq!(status, 400, "{problem}");
        assert_eq!(problem["field"], field, "{problem}");
    }
    let (status, _) = set_state(&server, "nope", json!({"state": "ended"})).await;
    assert_eq!(status, 404);

    let (status, answer) = set_state(
        &server,
        LIVE,
        json!({"state": "ended", "ended": "2026-11-29T18:00:00Z"}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["state"], "ended");
    assert_eq!(answer["ended"], "2026-11-29T18:00:00+00:00");
    // Subscribers hear it as a `state` event.
    let event = sse.event().await;
    assert_eq!(event.op, "state");
    assert_eq!(event.data["state"], "ended");
    assert_eq!(event.data["story"], LIVE);
    assert_eq!(event.seq, answer["seq"].as_u64().unwrap());
    assert!(event.data.get("entry").is_none(), "{}", event.data);

    let check_ended = |doc: &Html, feed: &Value, rss: &str, atom: &str| {
        assert_eq!(texts(doc, "[data-state]"), ["Ended"]);
        assert!(doc.select(&sel("main[data-ended]")).next().is_some());
        assert!(doc.select(&sel(".ended-note[hidden]")).next().is_none());
        let ld: Value = serde_json::from_str(
            &doc.select(&sel("script[type=\"application/ld+json\"]"))
                .next()
                .unwrap()
                .text()
                .collect::<String>(),
        )
        .unwrap();
        assert_eq!(ld["coverageEndTime"], "2026-11-29T18:00:00+00:00");
        assert_eq!(feed["expired"], true);
        let rss_doc = roxmltree::Document::parse(rss).unwrap();
        let description = rss_doc
            .descendants()
            .find(|n| n.has_tag_name("description"))
            .and_then(|n| n.text())
            .unwrap();
        assert!(
            description.contains("This story has ended"),
            "{description}"
        );
        let atom_doc = roxmltree::Document::parse(atom).unwrap();
        let subtitle = atom_doc
            .descendants()
            .find(|n| n.has_tag_name("subtitle"))
            .and_then(|n| n.text())
            .unwrap();
        assert!(subtitle.contains("This story has ended"), "{subtitle}");
    };
    check_ended(
        &page(&server, LIVE).await,
        &json_feed(&server, LIVE).await,
        &text(&server, &format!("/feeds/{LIVE}.rss")).await,
        &text(&server, &format!("/feeds/{LIVE}.atom")).await,
    );
    let index = Html::parse_document(&text(&server, "/").await);
    let state: Vec<String> = index
        .select(&sel(&format!("li[data-story={LIVE}] [data-state]")))
        .map(|e| e.text().collect())
        .collect();
    assert_eq!(state, ["Ended"]);
    // The other story is untouched.
    assert!(json_feed(&server, ARTICLE).await.get("expired").is_none());
    // A correction to an ended story is still published.
    post(&server, json!({"title": "Correction", "body": "Fixed."})).await;
    server.stop().await;

    // Durable: a restart replays the end.
    let server = site.start().await;
    check_ended(
        &page(&server, LIVE).await,
        &json_feed(&server, LIVE).await,
        &text(&server, &format!("/feeds/{LIVE}.rss")).await,
        &text(&server, &format!("/feeds/{LIVE}.atom")).await,
    );
    // Reopened.
    let (status, answer) = set_state(&server, LIVE, json!({"state": "live"})).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["state"], "live");
    let doc = page(&server, LIVE).await;
    assert_eq!(texts(&doc, "[data-state]"), ["Live"]);
    assert!(doc.select(&sel("main[data-ended]")).next().is_none());
    assert!(json_feed(&server, LIVE).await.get("expired").is_none());
    server.stop().await;
}

#[tokio::test]
async fn the_manifest_can_end_a_story() {
    let site = TestSite::new();
    let manifest = site.data().join("stories.toml");
    let text_before = std::fs::read_to_string(&manifest).unwrap();
    let with = text_before.replacen(
        "timezone = \"Europe/London\"",
        "timezone = \"Europe/London\"\nended = \"2013-05-11T18:00:00+01:00\"",
        1,
    );
    assert_ne!(with, text_before);
    std::fs::write(&manifest, with).unwrap();
    let server = site.start().await;
    let feed = json_feed(&server, LIVE).await;
    assert_eq!(feed["expired"], true);
    let doc = page(&server, LIVE).await;
    assert_eq!(texts(&doc, "[data-state]"), ["Ended"]);
    // 18:00 BST.
    assert!(
        texts(&doc, ".ended-note")[0].contains("18:00 BST, 11 May 2013"),
        "{:?}",
        texts(&doc, ".ended-note")
    );
    assert!(json_feed(&server, ARTICLE).await.get("expired").is_none());
    server.stop().await;
    // The static build says the same.
    let files = site.static_build();
    let feed: Value = serde_json::from_slice(&files[&format!("{LIVE}.json")]).unwrap();
    assert_eq!(feed["expired"], true);
}
