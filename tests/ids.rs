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

// ---------------------------------------------------------------------------------------------
// The relay: report and API entries in one namespace of anchors, never reused.

mod relay {
    use super::*;
    use livefeed::manifest::SiteInfo;
    use livefeed::relay::state::EntryInput;
    use livefeed::relay::{Relay, file_store};
    use livefeed::site::Site;
    use serde_json::Value;
    use std::collections::BTreeMap;

    pub const SLUG: &str = "ids";

    /// A story's report (entries newest first) and the log directory of its relay.
    pub struct Harness {
        pub dir: tempfile::TempDir,
        pub entries: Vec<(String, String)>,
    }

    /// What the log says is live: id → (title, content HTML), and every id ever seen.
    #[derive(Debug, Default, Clone, PartialEq)]
    pub struct View {
        pub live: BTreeMap<String, (String, String)>,
        pub events: usize,
    }

    impl Harness {
        pub fn new() -> Harness {
            Harness {
                dir: tempfile::tempdir().unwrap(),
                entries: Vec::new(),
            }
        }

        pub fn story(&self) -> Story {
            let refs: Vec<(&str, &str)> = self
                .entries
                .iter()
                .map(|(h, b)| (h.as_str(), b.as_str()))
                .collect();
            normalise(&live_report(&refs), &live_meta(SLUG)).unwrap()
        }

        pub fn site(&self) -> Site {
            Site {
                info: SiteInfo {
                    title: "Ids".into(),
                    description: String::new(),
                    author: "Desk".into(),
                    base_url: "https://livefeed.example.org".into(),
                    language: "en-gb".into(),
                },
                base_url: "https://livefeed.example.org".into(),
                stories: vec![self.story()],
            }
        }

        pub fn open(&self) -> Relay {
            Relay::open(self.site(), file_store(self.dir.path()), 1_000_000).unwrap()
        }

        pub async fn sync(&self, relay: &Relay) -> usize {
            relay.sync_report(self.story()).await
        }
    }

    pub fn input(title: &str, body: &str) -> EntryInput {
        EntryInput::cleaned(title, body, None, None)
    }

    /// Folds every event the relay holds into the live entries.
    pub fn view(relay: &Relay) -> View {
        let page = relay.hub.page(0, None, usize::MAX).unwrap();
        let mut v = View {
            events: page.events.len(),
            ..View::default()
        };
        for c in &page.events {
            let e: Value = serde_json::from_slice(&c.json).unwrap();
            let id = e["entry"]["id"].as_str().unwrap().to_string();
            if e["op"] == "delete" {
                v.live.remove(&id);
            } else {
                let title = e["entry"]["title"].as_str().unwrap().to_string();
                let html = e["entry"]["content_html"].as_str().unwrap().to_string();
                v.live.insert(id, (title, html));
            }
        }
        v
    }

    /// The id of the live entry whose body holds `token`.
    pub fn id_of(v: &View, token: &str) -> Option<String> {
        let ids: Vec<&String> = v
            .live
            .iter()
            .filter(|(_, (_, html))| html.contains(token))
            .map(|(id, _)| id)
            .collect();
        assert!(ids.len() <= 1, "{token} is live twice: {ids:?}");
        ids.first().map(|s| s.to_string())
    }

    fn body(token: &str) -> String {
        format!("The entry {token} says something new.")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_report_entry_never_shares_an_id_with_an_api_entry() {
        let mut h = Harness::new();
        h.entries.push(("Foo".into(), body("tok-r1")));
        let relay = h.open();
        // The API publishes the same headline: it takes an anchor of its own.
        let api = relay
            .publish(SLUG, input("Foo", &body("tok-a1")), None)
            .await
            .unwrap();
        // The report then gets a newer entry with the same headline.
        h.entries.insert(0, ("Foo".into(), body("tok-r2")));
        h.sync(&relay).await;
        let v = view(&relay);
        assert_eq!(id_of(&v, "tok-a1"), Some(api.id.clone()), "{v:#?}");
        let r1 = id_of(&v, "tok-r1").expect("the first report entry is live");
        let r2 = id_of(&v, "tok-r2").expect("the new report entry is relayed");
        assert!(r1 != r2 && r2 != api.id && r1 != api.id, "{v:#?}");
        relay.close();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_deleted_id_is_never_given_again() {
        let mut h = Harness::new();
        h.entries.push(("Baz".into(), body("tok-r1")));
        let relay = h.open();
        let first = relay
            .publish(SLUG, input("Bar", &body("tok-a1")), None)
            .await
            .unwrap();
        relay.delete(SLUG, &first.id).await.unwrap();
        let second = relay
            .publish(SLUG, input("Bar", &body("tok-a2")), None)
            .await
            .unwrap();
        assert_ne!(first.id, second.id, "a new entry took a deleted entry's id");

        // A report entry deleted through the API, then removed from the report; a new report
        // entry with the same headline is relayed under a new id.
        let baz = id_of(&view(&relay), "tok-r1").unwrap();
        relay.delete(SLUG, &baz).await.unwrap();
        h.sync(&relay).await;
        assert_eq!(
            id_of(&view(&relay), "tok-r1"),
            None,
            "the publisher's delete holds"
        );
        h.entries.clear();
        h.sync(&relay).await;
        h.entries.push(("Baz".into(), body("tok-r2")));
        h.sync(&relay).await;
        let new = id_of(&view(&relay), "tok-r2").expect("the new report entry is relayed");
        assert_ne!(new, baz);

        // And after a restart, the API still does not reuse either deleted id.
        relay.close();
        let relay = h.open();
        let third = relay
            .publish(SLUG, input("Bar", &body("tok-a3")), None)
            .await
            .unwrap();
        assert!(third.id != first.id && third.id != second.id);
        let baz_api = relay
            .publish(SLUG, input("Baz", &body("tok-a4")), None)
            .await
            .unwrap();
        assert!(baz_api.id != baz && baz_api.id != new);
        relay.close();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn removing_an_older_entry_never_changes_the_id_of_another() {
        let mut h = Harness::new();
        h.entries.push(("Foo".into(), body("tok-new")));
        h.entries.push(("Foo".into(), body("tok-old")));
        let relay = h.open();
        let before = view(&relay);
        let new = id_of(&before, "tok-new").unwrap();
        let old = id_of(&before, "tok-old").unwrap();
        h.entries.pop();
        h.sync(&relay).await;
        let after = view(&relay);
        assert_eq!(id_of(&after, "tok-new"), Some(new.clone()), "{after:#?}");
        assert!(!after.live.contains_key(&old), "{after:#?}");
        relay.close();

        // A restart changes nothing and makes no event.
        let relay = h.open();
        let restarted = view(&relay);
        assert_eq!(restarted, after);
        // The mapping holds after the restart: editing the entry's body keeps its id.
        h.entries[0].1 = format!("{} Corrected.", body("tok-new"));
        h.sync(&relay).await;
        let edited = view(&relay);
        assert_eq!(id_of(&edited, "tok-new"), Some(new.clone()), "{edited:#?}");
        assert!(edited.live[&new].1.contains("Corrected"));
        relay.close();
    }
}
