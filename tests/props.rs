//! Property tests: for arbitrary report-like text the normaliser never panics, and whatever it
//! produces renders to well-formed feeds that carry the items' text unchanged.

use chrono::{DateTime, TimeZone, Utc};
use proptest::prelude::*;
use std::collections::HashSet;

use livefeed::ingest::manifest::SiteInfo;
use livefeed::ingest::normalise::{self, StoryMeta};
use livefeed::ingest::site::Site;
use livefeed::layout::story_page_url;
use livefeed::model::{Story, StoryKind};
use livefeed::render::{self, Format};

const BASE: &str = "https://feeds.example.test";

fn meta(kind: Option<StoryKind>) -> StoryMeta {
    let published: DateTime<Utc> = Utc.with_ymd_and_hms(2013, 5, 10, 11, 0, 0).unwrap();
    StoryMeta {
        slug: "prop-story".into(),
        kind,
        template: None,
        url: Some("https://www.itv.com/news/story/2013-05-10/prop/".into()),
        published,
        updated: published + chrono::Duration::hours(26),
        offset: chrono::FixedOffset::east_opt(3600).unwrap(),
        entry_times: Vec::new(),
        fallback_url: story_page_url(BASE, "prop-story"),
    }
}

fn site(story: Story) -> Site {
    Site {
        info: SiteInfo {
            title: "Props <&> ]]>".into(),
            description: String::new(),
            author: "Prop Desk".into(),
            base_url: BASE.into(),
            language: "en-gb".into(),
        },
        base_url: BASE.into(),
        stories: vec![story],
        feed_entries: livefeed::render::DEFAULT_FEED_ENTRIES,
        websub_hub: None,
    }
}

// ---------------------------------------------------------------------------------------------
// Generators: lines of the kinds a saved live page is made of, plus hostile ones.

fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Z][a-z]{1,9}",
        "[a-z]{1,10}",
        Just("Syria".to_string()),
        Just("Putin's".to_string()),
        Just("'impossible'".to_string()),
        Just("&".to_string()),
        Just("]]>".to_string()),
        Just("<script>alert(1)</script>".to_string()),
        Just("<b>".to_string()),
        Just("\"quoted\"".to_string()),
        Just("€".to_string()),
        Just("日本".to_string()),
        Just("😀".to_string()),
    ]
}

fn words(range: std::ops::RangeInclusive<usize>) -> impl Strategy<Value = String> {
    prop::collection::vec(word(), range).prop_map(|w| w.join(" "))
}

fn time_line() -> impl Strategy<Value = String> {
    prop_oneof![
        (1u32..=12, 0u32..60, prop::bool::ANY)
            .prop_map(|(h, m, pm)| format!("{h}:{m:02}{}", if pm { "pm" } else { "am" })),
        (0u32..24, 0u32..60).prop_map(|(h, m)| format!("{h:02}:{m:02}")),
        (1u32..=28, 1u32..=12, 0u32..60)
            .prop_map(|(d, h, m)| format!("{d} May 2013 at {h}:{m:02}pm")),
        Just("Updated 2.34 pm BST".to_string()),
        Just("99:99".to_string()),
    ]
}

fn line() -> impl Strategy<Value = String> {
    prop_oneof![
        // Headline-ish: short, capitalised, no full stop.
        3 => words(2..=8),
        // Sentences.
        4 => words(6..=30).prop_map(|s| format!("{s}.")),
        1 => "[A-Z][a-z]{2,8} [A-Z][a-z]{2,10}".prop_map(|n| format!("  1. {n}")),
        1 => (1u32..20, words(1..=8)).prop_map(|(n, s)| format!("  {n}. {s}")),
        1 => words(1..=10).prop_map(|s| format!("  • {s}")),
        1 => words(1..=5).prop_map(|s| format!("– {s}")),
        1 => (words(2..=10), words(1..=3)).prop_map(|(c, x)| format!("{c} Credit: {x}")),
        1 => (words(2..=10), words(1..=3)).prop_map(|(c, x)| format!("{c} Photo: {x}")),
        1 => words(1..=3).prop_map(|s| format!("by {s} - Africa Correspondent")),
        1 => Just("by - Africa Correspondent".to_string()),
        1 => words(3..=12).prop_map(|s| format!("— {s} (@handle) May 10, 2013")),
        1 => prop_oneof![
            Just("Live updates".to_string()),
            Just("Latest ITV News reports".to_string()),
            Just("Advertisement".to_string()),
            Just("Load more updates".to_string()),
            Just("Back to top".to_string()),
            Just("Share".to_string()),
        ],
        2 => time_line(),
        1 => Just(String::new()),
        1 => Just("   ".to_string()),
        // Arbitrary unicode, control characters included (`.` is anything but `\n`).
        2 => ".{0,40}",
        1 => "[\\x00-\\x1f\\x7f-\\x9f\u{feff}\u{fffe}\u{ffff}a ]{1,12}",
        1 => Just("]]><![CDATA[ &amp; &#0; &#x1; <script>x</script>".to_string()),
    ]
}

/// A report: lines joined by `\n`, `\r\n` or a lone `\r`.
fn report() -> impl Strategy<Value = String> {
    prop::collection::vec((line(), 0u8..10), 0..40).prop_map(|lines| {
        let mut out = String::new();
        for (l, eol) in lines {
            out.push_str(&l);
            out.push_str(match eol {
                0 => "\r\n",
                1 => "\r",
                _ => "\n",
            });
        }
        out
    })
}

/// A report shaped like a live page: title, standfirst, header, then entries.
fn live_report() -> impl Strategy<Value = String> {
    (
        words(2..=8),
        words(6..=20),
        prop::collection::vec(
            (
                prop::option::of(time_line()),
                words(2..=8),
                prop::collection::vec(line(), 0..6),
            ),
            0..12,
        ),
        prop::bool::ANY,
    )
        .prop_map(|(title, standfirst, entries, crlf)| {
            let mut lines = vec![title, format!("{standfirst}."), "Live updates".into()];
            for (time, headline, body) in entries {
                lines.extend(time);
                lines.push(headline);
                lines.extend(body);
                lines.push(String::new());
            }
            lines.push("Back to top".into());
            lines.join(if crlf { "\r\n" } else { "\n" })
        })
}

fn kind() -> impl Strategy<Value = Option<StoryKind>> {
    prop_oneof![
        Just(None),
        Just(Some(StoryKind::Live)),
        Just(Some(StoryKind::Article)),
    ]
}

// ---------------------------------------------------------------------------------------------
// Checks.

fn has_xml_illegal_char(s: &str) -> bool {
    s.chars().any(|c| {
        let c = c as u32;
        !(c == 0x9
            || c == 0xA
            || c == 0xD
            || (0x20..=0xD7FF).contains(&c)
            || (0xE000..=0xFFFD).contains(&c)
            || (0x10000..=0x10FFFF).contains(&c))
    })
}

/// The text of the first child element called `name` (in any namespace), CDATA included.
fn child_text<'a>(node: roxmltree::Node<'a, 'a>, ns: Option<&str>, name: &str) -> Option<String> {
    node.children()
        .find(|c| {
            c.is_element()
                && c.tag_name().name() == name
                && (ns.is_none() || c.tag_name().namespace() == ns)
        })
        .map(|c| {
            c.children()
                .filter(|t| t.is_text())
                .filter_map(|t| t.text())
                .collect()
        })
}

const ATOM_NS: &str = "http://www.w3.org/2005/Atom";
const CONTENT_NS: &str = "http://purl.org/rss/1.0/modules/content/";

/// Every rendered file of a one-story site: RSS and Atom are well-formed XML carrying the
/// entries' text unchanged, JSON Feed is JSON, and all three list the same ids in order.
fn check_rendered(story: &Story, exact_text: bool) -> Result<(), TestCaseError> {
    let site = site(story.clone());
    let files = render::render_site(&site);
    prop_assert_eq!(files.len(), 7);
    for feed in [render::story_feed(&site, story), render::all_feed(&site)] {
        let ids: Vec<&str> = feed.entries.iter().map(|e| e.id.as_str()).collect();

        let rss_bytes = render::render_feed(&feed, Format::Rss);
        let rss =
            std::str::from_utf8(&rss_bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(
            !has_xml_illegal_char(rss),
            "RSS has a character XML forbids"
        );
        let doc = roxmltree::Document::parse(rss)
            .map_err(|e| TestCaseError::fail(format!("RSS is not XML: {e}\n{rss}")))?;
        let channel = doc
            .root_element()
            .children()
            .find(|n| n.has_tag_name("channel"))
            .ok_or_else(|| TestCaseError::fail("no channel"))?;
        let items: Vec<_> = channel
            .children()
            .filter(|n| n.has_tag_name("item"))
            .collect();
        prop_assert_eq!(items.len(), feed.entries.len());
        for (item, e) in items.iter().zip(&feed.entries).filter(|_| exact_text) {
            prop_assert_eq!(child_text(*item, None, "guid"), Some(e.id.clone()));
            prop_assert_eq!(child_text(*item, None, "title"), Some(e.title.clone()));
            prop_assert_eq!(
                child_text(*item, Some(CONTENT_NS), "encoded"),
                Some(e.content_html.clone())
            );
            // RSS readers take the description as HTML: the summary is in it as escaped text.
            prop_assert_eq!(
                child_text(*item, None, "description"),
                Some(
                    e.summary
                        .replace('&', "&amp;")
                        .replace('<', "&lt;")
                        .replace('>', "&gt;")
                )
            );
        }

        let atom_bytes = render::render_feed(&feed, Format::Atom);
        let atom =
            std::str::from_utf8(&atom_bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(
            !has_xml_illegal_char(atom),
            "Atom has a character XML forbids"
        );
        let doc = roxmltree::Document::parse(atom)
            .map_err(|e| TestCaseError::fail(format!("Atom is not XML: {e}\n{atom}")))?;
        let entries: Vec<_> = doc
            .root_element()
            .children()
            .filter(|n| n.has_tag_name((ATOM_NS, "entry")))
            .collect();
        prop_assert_eq!(entries.len(), feed.entries.len());
        for (node, e) in entries.iter().zip(&feed.entries).filter(|_| exact_text) {
            prop_assert_eq!(child_text(*node, Some(ATOM_NS), "id"), Some(e.id.clone()));
            prop_assert_eq!(
                child_text(*node, Some(ATOM_NS), "title"),
                Some(e.title.clone())
            );
            prop_assert_eq!(
                child_text(*node, Some(ATOM_NS), "content"),
                Some(e.content_html.clone())
            );
        }

        let json_bytes = render::render_feed(&feed, Format::Json);
        let json: serde_json::Value = serde_json::from_slice(&json_bytes)
            .map_err(|e| TestCaseError::fail(format!("JSON Feed is not JSON: {e}")))?;
        let json_ids: Vec<&str> = json["items"]
            .as_array()
            .ok_or_else(|| TestCaseError::fail("no items array"))?
            .iter()
            .filter_map(|i| i["id"].as_str())
            .collect();
        prop_assert_eq!(&json_ids, &ids);
    }
    Ok(())
}

/// Ids unique, `updated` strictly decreasing, text free of what XML cannot carry.
fn check_story(story: &Story) -> Result<(), TestCaseError> {
    let mut seen = HashSet::new();
    for e in &story.entries {
        prop_assert!(seen.insert(&e.id), "duplicate id {}", e.id);
        prop_assert!(e.id.starts_with("tag:"), "id {} is not a tag: URI", e.id);
        prop_assert!(!e.title.trim().is_empty(), "empty title");
    }
    for pair in story.entries.windows(2) {
        prop_assert!(
            pair[0].updated > pair[1].updated,
            "updated not strictly decreasing: {} ({}) then {} ({})",
            pair[0].title,
            pair[0].updated,
            pair[1].title,
            pair[1].updated
        );
    }
    Ok(())
}

/// 128 cases per property keeps the file under ~10 s in debug; `PROPTEST_CASES=5000` for a
/// longer hunt.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(128)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    /// The pipeline the CLI uses: bytes → `decode` → `normalise` → feeds.
    #[test]
    fn decoded_reports_render_to_valid_feeds(text in report(), kind in kind()) {
        let meta = meta(kind);
        let Ok(decoded) = normalise::decode(text.as_bytes()) else {
            return Err(TestCaseError::fail("valid UTF-8 was rejected"));
        };
        if let Ok(story) = normalise::normalise(&decoded, &meta) {
            check_story(&story)?;
            check_rendered(&story, true)?;
            let again = normalise::normalise(&decoded, &meta);
            prop_assert_eq!(Ok(story), again);
        }
    }

    /// `normalise` called directly on raw text (no `decode`): still no panic, no invalid XML.
    #[test]
    fn raw_text_renders_to_valid_feeds(text in report(), kind in kind()) {
        let meta = meta(kind);
        if let Ok(story) = normalise::normalise(&text, &meta) {
            check_story(&story)?;
            check_rendered(&story, false)?;
            prop_assert_eq!(Ok(story), normalise::normalise(&text, &meta));
        }
    }

    /// Pages shaped like live pages: mostly parsed into several entries.
    #[test]
    fn live_pages_keep_their_invariants(text in live_report()) {
        let meta = meta(Some(StoryKind::Live));
        let decoded = normalise::decode(text.as_bytes())
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let story = normalise::normalise(&decoded, &meta)
            .map_err(|e| TestCaseError::fail(format!("{e}\n{decoded}")))?;
        check_story(&story)?;
        check_rendered(&story, true)?;
        prop_assert_eq!(Ok(story), normalise::normalise(&decoded, &meta));
    }

    /// Arbitrary bytes: `decode` either accepts them or names a line within the input.
    #[test]
    fn arbitrary_bytes_decode_or_name_a_line(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        match normalise::decode(&bytes) {
            Ok(text) => {
                prop_assert!(!has_xml_illegal_char(&text));
                let _ = normalise::normalise(&text, &meta(None));
            }
            Err(e) => {
                let lines = 1 + bytes.iter().filter(|&&b| b == b'\n').count();
                prop_assert!((1..=lines).contains(&e.line()), "line {} of {}", e.line(), lines);
            }
        }
    }
}

/// The checker itself must reject what it is meant to catch.
#[test]
fn roxmltree_rejects_control_characters() {
    assert!(roxmltree::Document::parse("<a>\u{1}</a>").is_err());
    assert!(roxmltree::Document::parse("<a>&#1;</a>").is_err());
    assert!(roxmltree::Document::parse("<a><![CDATA[x]]>]]></a>").is_err());
}
