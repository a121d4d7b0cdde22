//! Ids: one entry, one id, forever (issue 8, points 7–9). The normaliser's anchors, then the
//! relay's: report and API entries in one namespace, ids never reused, stable across restarts.

use chrono::{DateTime, FixedOffset, Utc};
use std::collections::HashSet;

use livefeed::model::Story;
use livefeed::normalise::{StoryMeta, normalise};

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn live_meta(slug: &str) -> StoryMeta {
    StoryMeta {
        slug: slug.to_string(),
        kind: None,
        url: Some(format!("https://news.example.test/{slug}/")),
        published: utc("2013-05-10T12:00:00+01:00"),
        updated: utc("2013-05-11T12:00:00+01:00"),
        offset: FixedOffset::east_opt(3600).unwrap(),
        entry_times: Vec::new(),
        fallback_url: format!("https://livefeed.example.org/stories/{slug}"),
    }
}

/// A live report: entries newest first, each a headline and one paragraph.
fn live_report(entries: &[(&str, &str)]) -> String {
    let mut text = String::from(
        "A story for ids\n\nThe standfirst of the story, which says what it is about.\n\n\
         Live updates\n\n",
    );
    for (headline, body) in entries {
        text.push_str(&format!("{headline}\n\n{body}\n\n"));
    }
    text
}

fn anchors(s: &Story) -> Vec<(&str, &str)> {
    s.entries
        .iter()
        .map(|e| (e.title.as_str(), e.anchor.as_str()))
        .collect()
}

fn assert_distinct_ids(s: &Story) {
    let mut seen = HashSet::new();
    for e in &s.entries {
        assert!(
            seen.insert(&e.id),
            "duplicate id {}: {:?}",
            e.id,
            anchors(s)
        );
    }
}

#[test]
fn a_numbered_duplicate_never_takes_another_headlines_anchor() {
    // Newest first: "Foo 2" is the newest; the two "Foo" entries are older.
    let text = live_report(&[
        (
            "Foo 2",
            "The newest entry, whose headline ends in a number.",
        ),
        ("Foo", "The middle entry repeats the oldest headline."),
        ("Foo", "The oldest entry."),
    ]);
    let s = normalise(&text, &live_meta("ids")).unwrap();
    assert_eq!(s.entries.len(), 3, "{:?}", anchors(&s));
    assert_distinct_ids(&s);
    // Deterministic: the same report gives the same ids.
    let again = normalise(&text, &live_meta("ids")).unwrap();
    assert_eq!(anchors(&s), anchors(&again));

    // Whatever order the headlines come in.
    for order in [
        [("Foo", "a."), ("Foo 2", "b."), ("Foo", "c.")],
        [("Foo", "a."), ("Foo", "b."), ("Foo 2", "c.")],
        [("Foo 2", "a."), ("Foo 2", "b."), ("Foo", "c.")],
    ] {
        let s = normalise(&live_report(&order), &live_meta("ids")).unwrap();
        assert_eq!(s.entries.len(), 3);
        assert_distinct_ids(&s);
    }
}

#[test]
fn an_entry_added_above_never_changes_the_anchors_below() {
    let older = [
        ("Foo", "The middle entry repeats the oldest headline."),
        ("Foo", "The oldest entry."),
    ];
    let before = normalise(&live_report(&older), &live_meta("ids")).unwrap();
    let mut added = vec![("Foo 2", "A new entry whose headline is an older anchor.")];
    added.extend(older);
    let after = normalise(&live_report(&added), &live_meta("ids")).unwrap();
    assert_distinct_ids(&after);
    assert_eq!(anchors(&after)[1..], anchors(&before)[..]);
}

#[test]
fn non_latin_headlines_give_readable_distinct_anchors() {
    let text = live_report(&[
        ("Путин встретился с Кэмероном", "Первый абзац."),
        ("Переговоры в Сочи", "Второй абзац."),
        ("Ελληνικά νέα", "Τέταρτη παράγραφος."),
    ]);
    let s = normalise(&text, &live_meta("ids")).unwrap();
    assert_eq!(s.entries.len(), 3, "{:?}", anchors(&s));
    assert_distinct_ids(&s);
    let got: Vec<&str> = s.entries.iter().map(|e| e.anchor.as_str()).collect();
    assert_eq!(got[0], "putin-vstretilsia-s-kemeronom", "{got:?}");
    assert_eq!(got[1], "peregovory-v-sochi", "{got:?}");
    for a in &got {
        assert!(!a.starts_with("entry"), "{got:?}");
        assert!(
            a.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
            "{got:?}"
        );
    }
}
