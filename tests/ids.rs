//! Ids: one entry, one id, forever (issue 8, points 7–9). The normaliser's anchors, then the
//! relay's: report and API entries in one namespace, ids never reused, stable across restarts.

use chrono::{DateTime, FixedOffset, Utc};
use std::collections::HashSet;

use livefeed::ingest::normalise::{StoryMeta, normalise};
use livefeed::model::Story;

/// Every event the relay holds, from memory and, before it, from the log (a restart starts
/// from a snapshot with only the log after it in memory).
fn every_event(relay: &livefeed::log::Relay) -> livefeed::log::hub::Page {
    let mut all = livefeed::log::hub::Page::default();
    loop {
        let page = match relay.hub.page(all.next, None, usize::MAX) {
            Ok(page) => page,
            Err(_) => relay
                .hub
                .page_from_history(all.next, None, usize::MAX)
                .unwrap(),
        };
        if page.events.is_empty() {
            return all;
        }
        all.next = page.next;
        all.head = page.head;
        all.events.extend(page.events);
    }
}

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
        template: None,
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

/// Bodies long enough to read as paragraphs, not as headlines.
const A: &str = "The first body says what happened this morning.";
const B: &str = "The second body adds a quote from the minister.";
const C: &str = "The third body closes the day with a summary.";

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
        [("Foo", A), ("Foo 2", B), ("Foo", C)],
        [("Foo", A), ("Foo", B), ("Foo 2", C)],
        [("Foo 2", A), ("Foo 2", B), ("Foo", C)],
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
    use livefeed::ingest::manifest::SiteInfo;
    use livefeed::ingest::site::Site;
    use livefeed::log::state::EntryInput;
    use livefeed::log::{Relay, file_store};
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
                feed_entries: livefeed::render::DEFAULT_FEED_ENTRIES,
                websub_hub: None,
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
        let page = super::every_event(relay);
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

// ---------------------------------------------------------------------------------------------
// The property: random report edits and API changes, with restarts in between.

mod property {
    use super::relay::{Harness, SLUG, input};
    use proptest::prelude::*;
    use serde_json::Value;
    use std::collections::{BTreeMap, BTreeSet, HashMap};

    /// Headlines that repeat, end in numbers that numbered duplicates also end in, and are not
    /// Latin.
    const HEADLINES: &[&str] = &[
        "Foo",
        "Foo 2",
        "Foo 3",
        "Bar",
        "Путин в Сочи",
        "Путин в Сочи 2",
        "Ελληνικά νέα",
        "Переговоры",
    ];

    #[derive(Debug, Clone)]
    enum Step {
        ReportAdd { headline: usize, at: usize },
        ReportRemove { at: usize },
        ReportRetitle { at: usize, headline: usize },
        ReportEdit { at: usize },
        ApiPublish { headline: usize },
        ApiEdit { pick: usize },
        ApiDelete { pick: usize },
        Restart,
    }

    fn step() -> impl Strategy<Value = Step> {
        let h = 0..HEADLINES.len();
        prop_oneof![
            4 => (h.clone(), any::<usize>()).prop_map(|(headline, at)| Step::ReportAdd { headline, at }),
            2 => any::<usize>().prop_map(|at| Step::ReportRemove { at }),
            1 => (any::<usize>(), h.clone()).prop_map(|(at, headline)| Step::ReportRetitle { at, headline }),
            1 => any::<usize>().prop_map(|at| Step::ReportEdit { at }),
            3 => h.prop_map(|headline| Step::ApiPublish { headline }),
            1 => any::<usize>().prop_map(|pick| Step::ApiEdit { pick }),
            2 => any::<usize>().prop_map(|pick| Step::ApiDelete { pick }),
            1 => Just(Step::Restart),
        ]
    }

    /// One entry of the report as the model knows it: its identity token is in its body.
    #[derive(Debug, Clone)]
    struct ReportEntry {
        headline: String,
        token: String,
        version: u32,
        /// The API edited or deleted it: the report no longer changes it (and the model
        /// edits it no more).
        handed_over: bool,
        /// Retitled or edited: a retitled entry may get a new id (never another's).
        touched: bool,
    }

    fn body(token: &str, version: u32) -> String {
        format!("The entry {token} says version {version}.")
    }

    /// The identity token in an entry's HTML.
    fn token_of(html: &str) -> String {
        let start = html
            .find("tok")
            .unwrap_or_else(|| panic!("no token in {html:?}"));
        let end = html[start..].find('x').expect("tokens end in x") + start;
        html[start..=end].to_string()
    }

    struct Run {
        h: Harness,
        report: Vec<ReportEntry>,
        /// Identities live through the API (published there, or report entries it edited).
        api_live: BTreeSet<String>,
        /// Identities deleted through the API: never live again.
        deleted: BTreeSet<String>,
        /// Every id ever seen → the identity it belonged to.
        owner: HashMap<String, String>,
        next_token: u32,
    }

    impl Run {
        fn token(&mut self) -> String {
            self.next_token += 1;
            format!("tok{}x", self.next_token)
        }

        fn write_report(&mut self) {
            self.h.entries = self
                .report
                .iter()
                .map(|e| (e.headline.clone(), body(&e.token, e.version)))
                .collect();
        }

        /// Checks the relay's whole history against the model.
        fn check(&mut self, relay: &livefeed::log::Relay) -> BTreeMap<String, String> {
            let page = super::every_event(relay);
            let mut live: BTreeMap<String, String> = BTreeMap::new();
            for c in &page.events {
                let e: Value = serde_json::from_slice(&c.json).unwrap();
                let id = e["entry"]["id"].as_str().unwrap().to_string();
                let token = token_of(e["entry"]["content_html"].as_str().unwrap());
                let owner = self
                    .owner
                    .entry(id.clone())
                    .or_insert_with(|| token.clone());
                assert_eq!(*owner, token, "id {id} moved from {owner} to {token}");
                match e["op"].as_str().unwrap() {
                    "create" => {
                        assert!(!live.contains_key(&id), "{id} created while live: {e}");
                        live.insert(id, token);
                    }
                    "update" => {
                        assert!(live.contains_key(&id), "{id} updated while not live");
                        live.insert(id, token);
                    }
                    _ => {
                        assert!(live.remove(&id).is_some(), "{id} deleted while not live");
                    }
                }
            }
            // One live entry per identity, and exactly the identities the model expects.
            let mut tokens: Vec<&String> = live.values().collect();
            tokens.sort();
            let before = tokens.len();
            tokens.dedup();
            assert_eq!(before, tokens.len(), "an identity is live twice: {live:?}");
            let mut want: BTreeSet<String> = self
                .report
                .iter()
                .filter(|e| !e.handed_over)
                .map(|e| e.token.clone())
                .collect();
            want.extend(self.api_live.iter().cloned());
            let got: BTreeSet<String> = live.values().cloned().collect();
            assert_eq!(got, want, "live identities differ from the model");
            for t in &self.deleted {
                assert!(!got.contains(t), "{t} came back after its delete");
            }
            live
        }

        fn live_id(live: &BTreeMap<String, String>, token: &str) -> Option<String> {
            live.iter()
                .find(|(_, t)| *t == token)
                .map(|(id, _)| id.clone())
        }
    }

    fn run(steps: Vec<Step>) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut r = Run {
            h: Harness::new(),
            report: Vec::new(),
            api_live: BTreeSet::new(),
            deleted: BTreeSet::new(),
            owner: HashMap::new(),
            next_token: 0,
        };
        // Two seed entries with one headline.
        for _ in 0..2 {
            let token = r.token();
            r.report.push(ReportEntry {
                headline: "Foo".into(),
                token,
                version: 0,
                handed_over: false,
                touched: false,
            });
        }
        r.write_report();
        let mut relay = r.h.open();
        let mut live = r.check(&relay);
        for step in steps {
            match step {
                Step::ReportAdd { headline, at } => {
                    let token = r.token();
                    let at = at % (r.report.len() + 1);
                    r.report.insert(
                        at,
                        ReportEntry {
                            headline: HEADLINES[headline].into(),
                            token,
                            version: 0,
                            handed_over: false,
                            touched: false,
                        },
                    );
                }
                // A live report with no entry at all reads as one entry (its standfirst).
                Step::ReportRemove { at } if r.report.len() > 1 => {
                    r.report.remove(at % r.report.len());
                }
                Step::ReportRetitle { at, headline } if !r.report.is_empty() => {
                    let n = r.report.len();
                    let e = &mut r.report[at % n];
                    if !e.handed_over {
                        e.headline = HEADLINES[headline].into();
                        e.touched = true;
                    }
                }
                Step::ReportEdit { at } if !r.report.is_empty() => {
                    let n = r.report.len();
                    let e = &mut r.report[at % n];
                    if !e.handed_over {
                        e.version += 1;
                        e.touched = true;
                    }
                }
                Step::ApiPublish { headline } => {
                    let token = r.token();
                    rt.block_on(relay.publish(
                        SLUG,
                        input(HEADLINES[headline], &body(&token, 0)),
                        None,
                    ))
                    .unwrap();
                    r.api_live.insert(token);
                }
                Step::ApiEdit { pick } | Step::ApiDelete { pick } if !live.is_empty() => {
                    let (id, token) = live.iter().nth(pick % live.len()).unwrap();
                    let (id, token) = (id.clone(), token.clone());
                    if let Some(e) = r.report.iter_mut().find(|e| e.token == token) {
                        e.handed_over = true;
                    }
                    if matches!(step, Step::ApiEdit { .. }) {
                        let edit = input("Edited", &body(&token, 1000 + r.next_token));
                        rt.block_on(relay.edit(SLUG, &id, edit)).unwrap();
                        r.api_live.insert(token);
                    } else {
                        rt.block_on(relay.delete(SLUG, &id)).unwrap();
                        r.api_live.remove(&token);
                        r.deleted.insert(token);
                    }
                }
                Step::Restart => {
                    let head = relay.hub.head();
                    relay.close();
                    relay = r.h.open();
                    let after = r.check(&relay);
                    assert_eq!(after, live, "a restart changed the live ids");
                    assert_eq!(relay.hub.head(), head, "a restart made events");
                    continue;
                }
                _ => continue,
            }
            r.write_report();
            rt.block_on(r.h.sync(&relay));
            let new_live = r.check(&relay);
            // Entries no step touched keep their ids.
            for (id, token) in &live {
                if let Some(now) = Run::live_id(&new_live, token) {
                    let touched = r.report.iter().any(|e| &e.token == token && e.touched)
                        || r.api_live.contains(token);
                    if !touched {
                        assert_eq!(&now, id, "{token} changed id");
                    }
                }
            }
            live = new_live;
        }
        relay.close();
        // A final restart: the same ids, no events.
        let relay = r.h.open();
        assert_eq!(r.check(&relay), live, "a restart changed the live ids");
        relay.close();
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        #[test]
        fn ids_are_unique_stable_and_never_reused(steps in proptest::collection::vec(step(), 1..40)) {
            run(steps);
        }
    }
}
