//! The checks behind the fuzz targets. Each takes the fuzzer's bytes, runs them through the
//! library and panics when a promise is broken (a panic inside the library is a finding too).
//!
//! This file is also compiled into `tests/fuzz_corpus.rs` (`#[path]`), which replays every
//! file of `fuzz/corpus/<target>/` through the same functions in a plain `cargo test`: that is
//! how CI, on the stable toolchain, checks that the corpus (and every input a fuzzer once
//! crashed on) still passes. So: only `livefeed`, `chrono`, `serde_json` and `roxmltree`.

use chrono::{DateTime, FixedOffset, TimeZone, Utc};
use livefeed::http::query::{self, LiveQuery};
use livefeed::http::route::{self, Method, Route, StatusCode};
use livefeed::ingest::manifest::{Manifest, SiteInfo};
use livefeed::ingest::normalise::{self, StoryMeta};
use livefeed::ingest::site::Site;
use livefeed::layout::{FileKey, Target, story_page_url};
use livefeed::log::store;
use livefeed::model::{Story, StoryKind};
use livefeed::render::{self, Format};
use std::collections::HashSet;

const BASE: &str = "https://feeds.example.test";

fn meta(kind: Option<StoryKind>) -> StoryMeta {
    let published: DateTime<Utc> = Utc.with_ymd_and_hms(2013, 5, 10, 11, 0, 0).unwrap();
    StoryMeta {
        slug: "fuzz-story".into(),
        kind,
        template: None,
        url: Some("https://www.itv.com/news/story/2013-05-10/fuzz/".into()),
        published,
        updated: published + chrono::Duration::hours(26),
        offset: FixedOffset::east_opt(3600).unwrap(),
        entry_times: Vec::new(),
        fallback_url: story_page_url(BASE, "fuzz-story"),
    }
}

fn site_of(story: Story) -> Site {
    Site {
        info: SiteInfo {
            title: "Fuzz <&> ]]>".into(),
            description: String::new(),
            author: "Fuzz Desk".into(),
            base_url: BASE.into(),
            language: "en-gb".into(),
        },
        base_url: BASE.into(),
        stories: vec![story],
        feed_entries: livefeed::render::DEFAULT_FEED_ENTRIES,
        websub_hub: None,
    }
}

/// What a normalised story promises: unique `tag:` ids, non-empty titles, `updated` strictly
/// decreasing down the page, and feeds that are well-formed XML / JSON with every item.
fn check_story(story: &Story) {
    let mut seen = HashSet::new();
    for e in &story.entries {
        assert!(seen.insert(&e.id), "duplicate id {}", e.id);
        assert!(e.id.starts_with("tag:"), "id {} is not a tag: URI", e.id);
        assert!(!e.title.trim().is_empty(), "an empty title");
    }
    for pair in story.entries.windows(2) {
        assert!(
            pair[0].updated > pair[1].updated,
            "updated not strictly decreasing: {:?} then {:?}",
            pair[0].updated,
            pair[1].updated
        );
    }
    let site = site_of(story.clone());
    let feed = render::story_feed(&site, story);
    for format in Format::ALL {
        let bytes = render::render_feed(&feed, format);
        let text = std::str::from_utf8(&bytes).expect("a feed is UTF-8");
        let items = match format {
            Format::Json => {
                let v: serde_json::Value = serde_json::from_str(text).expect("JSON Feed parses");
                v["items"].as_array().map_or(0, Vec::len)
            }
            _ => {
                let doc = roxmltree::Document::parse(text)
                    .unwrap_or_else(|e| panic!("{format:?} is not well-formed: {e}"));
                let item = if format == Format::Rss {
                    "item"
                } else {
                    "entry"
                };
                doc.descendants()
                    .filter(|n| n.tag_name().name() == item)
                    .count()
            }
        };
        assert_eq!(items, story.entries.len(), "{format:?} has every item");
    }
    let page = render::html::story_page(&site, story, 0);
    // Its JSON-LD, its time script and its live script; no text adds one.
    assert_eq!(
        page.matches("<script").count(),
        3,
        "only the page's own scripts"
    );
}

/// Report bytes, as `livefeed build` reads a file: decode, then normalise as a live page, as an
/// article, and as whatever the report says it is.
pub fn normalise(data: &[u8]) {
    let Ok(text) = normalise::decode(data) else {
        return;
    };
    assert!(
        !text.chars().any(|c| c.is_control() && c != '\n'),
        "decode leaves no control characters"
    );
    for kind in [None, Some(StoryKind::Live), Some(StoryKind::Article)] {
        let meta = meta(kind);
        let Ok(story) = normalise::normalise(&text, &meta) else {
            continue;
        };
        assert_eq!(
            normalise::normalise(&text, &meta).ok().as_ref(),
            Some(&story),
            "the same text gives the same story"
        );
        check_story(&story);
    }
}

/// A small live page with untimed and timed entries, normalised with every story of a
/// manifest: the manifest's times drive time inference.
const REPORT: &str = "Fuzz page\n\nA standfirst.\n\nLive updates\n\n2:34pm\n\n\
                      Newest entry\n\nText.\n\nMiddle entry\n\nText.\n\n\
                      10 May 2013 at 9:05am\n\nOldest entry\n\nText.\n";

/// A manifest (`stories.toml`), as `livefeed` reads one.
pub fn manifest(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lines = text.split('\n').count();
    match Manifest::parse(text, std::path::Path::new("stories.toml")) {
        Err(e) => {
            if let Some(line) = e.line {
                assert!(line >= 1 && line <= lines, "line {line} of {lines}");
            }
            assert!(!e.to_string().is_empty());
        }
        Ok(m) => {
            let mut slugs = HashSet::new();
            for s in &m.stories {
                assert!(livefeed::ingest::manifest::valid_slug(&s.slug) && s.slug != "all");
                assert!(slugs.insert(&s.slug), "slug {} twice", s.slug);
                assert!(s.updated >= s.published);
                let meta = s.meta(&m.site.base_url);
                if let Ok(story) = normalise::normalise(REPORT, &meta) {
                    check_story(&story);
                }
            }
        }
    }
}

/// A query string of `GET /live` (without the `?`).
pub fn live_query(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(q) = LiveQuery::parse(text) {
        if let Some(limit) = q.limit {
            assert!((1..=query::MAX_LIMIT).contains(&limit));
        }
        if let Some(timeout) = q.timeout {
            assert!(timeout <= query::MAX_TIMEOUT);
        }
        if let Some(story) = &q.story {
            assert!(livefeed::ingest::manifest::valid_slug(story), "{story:?}");
        }
    }
    if let Some(decoded) = query::percent_decode(text) {
        assert!(decoded.len() <= text.len());
    }
}

/// Checks one log image: `decode_all` keeps a prefix of whole records with seq 1, 2, 3…,
/// reports damage exactly when it stopped early, and what it kept encodes back to records
/// that decode to the same events.
fn check_image(buf: &[u8]) {
    if let Ok((event, used)) = store::decode(buf) {
        assert!(used <= buf.len());
        let mut again = Vec::new();
        store::encode(&event, &mut again).expect("a decoded event encodes");
        assert_eq!(store::decode(&again).ok(), Some((event, again.len())));
    }
    let (events, good, damage) = store::decode_all(buf);
    assert!(good <= buf.len());
    assert_eq!(damage.is_none(), good == buf.len(), "{damage:?} at {good}");
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.seq, i as u64 + 1);
    }
    let mut re = Vec::new();
    for e in &events {
        store::encode(e, &mut re).expect("a decoded event encodes");
    }
    let (again, n, d) = store::decode_all(&re);
    assert_eq!((again, n, d), (events, re.len(), None));
}

/// Log bytes, two ways: as a raw log image (what recovery reads), and as newline-separated
/// event payloads that get a correct length and checksum first, so the fuzzer reaches the
/// event decoder without having to forge a CRC.
pub fn log_record(data: &[u8]) {
    check_image(data);
    let mut framed = Vec::new();
    for payload in data.split(|&b| b == b'\n').filter(|p| !p.is_empty()) {
        framed.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        framed.extend_from_slice(&crc32(payload).to_le_bytes());
        framed.extend_from_slice(payload);
    }
    check_image(&framed);
}

/// CRC-32 (IEEE), as the log uses; bitwise, to need no dependency here.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A request line, `METHOD target` (the target's `?` starts its query), and optionally a second
/// line with the `Access-Control-Request-Method` of a preflight: the router must answer any of
/// them without panicking, the same way twice; a file it routes to is one whose path names it
/// again; a slug is one segment; an entry's id survives its own path; a refusal is a 4xx, and
/// a 405's `Allow` never lists the method refused.
pub fn route(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (line, preflight) = match text.split_once('\n') {
        Some((line, p)) => (line, Some(p)),
        None => (text, None),
    };
    let (method, target) = line.split_once(' ').unwrap_or(("GET", line));
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return;
    };
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let routed = route::route(&method, path, query, preflight);
    assert_eq!(
        routed,
        route::route(&method, path, query, preflight),
        "deterministic"
    );
    match routed {
        Ok(Route::File(key)) => {
            assert_eq!(FileKey::parse(&key.path()).as_ref(), Some(&key), "{key:?}");
            assert_eq!(Target::parse(&key.path()), Ok(Target::File(key.clone())));
            assert!(method == Method::GET || method == Method::HEAD);
        }
        Ok(r) => {
            if let Some(slug) = r.story() {
                assert!(!slug.is_empty() && !slug.contains('/') && slug != "." && slug != "..");
            }
            if let Route::Edit(slug, id) | Route::Delete(slug, id) = &r {
                let again = Target::Entry(slug.clone(), id.clone()).path();
                assert_eq!(
                    route::route(&method, &again, None, None),
                    Ok(r.clone()),
                    "{again}"
                );
            }
        }
        Err(p) => {
            assert!(p.status.is_client_error(), "{}", p.status);
            if p.status == StatusCode::METHOD_NOT_ALLOWED {
                let allow = p.allow.expect("a 405 names what is allowed");
                assert!(!allow.split(", ").any(|m| m == method.as_str()), "{allow}");
            }
        }
    }
}
