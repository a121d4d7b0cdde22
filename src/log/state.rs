//! The relay's view of every story: the data directory's stories with the log applied.
//! Pure: events in, stories out. Each owner changes only its own copy: the writer (the working
//! copy it decides on and the committed one), the renderer (a replica fed by the follower).

use chrono::{DateTime, Duration, Utc};
use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};

use super::event::{Event, Op, Source};
pub use crate::ingest::input::EntryInput;
use crate::ingest::normalise::{entry_id, tag_authority};
use crate::ingest::site::Site;
use crate::model::{Entry, Story, newest_first, sort_newest_first};
use crate::text::slugify;

/// The stories as the log makes them.
#[derive(Debug, Clone)]
pub struct State {
    pub site: Site,
    /// Each story's own last-update time from the manifest, before any event.
    base_updated: HashMap<String, DateTime<Utc>>,
    /// Where each live entry came from.
    origin: HashMap<String, Source>,
    /// Every anchor any event ever carried, by story (`{slug}/{anchor}`): live or deleted, from
    /// a report or the API. None is ever given to another entry, so no id is reused.
    given: HashSet<String>,
    /// Live report entries: id → the anchor the normaliser gives the entry in its report
    /// (usually the entry's own; another when the relay had to give it a fresh one).
    report_anchor: HashMap<String, String>,
    /// Report entries the API edited or deleted, by story: while the report still has them,
    /// they are the publisher's and re-reads leave them alone.
    handed_over: HashMap<String, Vec<Handed>>,
    /// Stories whose entries are out of feed order until [`State::settle`]: with the length of
    /// the prefix still in order when entries were only appended, `None` when any may be out.
    unsorted: HashMap<String, Option<usize>>,
    /// Events of stories not in the manifest (removed from it), by slug, in log order: kept so
    /// that a story added back finds its history (its ids and anchors are never reused).
    dormant: HashMap<String, Vec<Event>>,
    /// Stories removed from the manifest while serving, with their entries, likewise.
    hidden: HashMap<String, Story>,
    /// Per story (and the combined feeds): whether every event so far moved its newest
    /// `updated` strictly forward, and that second (see `cache::dates_move_forward`).
    forward: HashMap<String, (bool, i64)>,
    /// Stories whose lifecycle an event set (it then wins over the manifest's `ended`).
    lifecycle: HashSet<String>,
}

/// What a snapshot keeps of a [`State`]: the stories and what the log taught about them,
/// without the site's configuration (which comes from the run that reads it).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Projection {
    stories: Vec<Story>,
    base_updated: HashMap<String, DateTime<Utc>>,
    origin: HashMap<String, Source>,
    given: HashSet<String>,
    report_anchor: HashMap<String, String>,
    handed_over: HashMap<String, Vec<Handed>>,
    dormant: HashMap<String, Vec<Event>>,
    hidden: HashMap<String, Story>,
    #[serde(default)]
    forward: HashMap<String, (bool, i64)>,
    #[serde(default)]
    lifecycle: HashSet<String>,
}

fn anchor_key(slug: &str, anchor: &str) -> String {
    format!("{slug}/{anchor}")
}

impl State {
    /// The stories of `site` with no entries yet; events fill them.
    pub fn empty(mut site: Site) -> State {
        let base_updated = site
            .stories
            .iter()
            .map(|s| (s.slug.clone(), s.updated))
            .collect();
        for s in &mut site.stories {
            s.entries.clear();
        }
        State {
            site,
            base_updated,
            origin: HashMap::new(),
            given: HashSet::new(),
            report_anchor: HashMap::new(),
            handed_over: HashMap::new(),
            unsorted: HashMap::new(),
            dormant: HashMap::new(),
            hidden: HashMap::new(),
            forward: HashMap::new(),
            lifecycle: HashSet::new(),
        }
    }

    /// Serves a story added to the manifest: `story`'s metadata (its entries are ignored; the
    /// report's come as events). A story served before (removed from the manifest, or known
    /// only from the log) gets its history back. False when it is already served.
    pub fn add_story(&mut self, mut story: Story) -> bool {
        if self.site.story(&story.slug).is_some() {
            return false;
        }
        let slug = story.slug.clone();
        self.base_updated.insert(slug.clone(), story.updated);
        story.entries = match self.hidden.remove(&slug) {
            Some(old) => old.entries,
            None => Vec::new(),
        };
        self.site.stories.push(story);
        self.unsorted.insert(slug.clone(), None);
        for event in self.dormant.remove(&slug).unwrap_or_default() {
            self.apply_unsorted(&event);
        }
        self.settle();
        true
    }

    /// Stops serving a story removed from the manifest; its history is kept (see
    /// [`State::add_story`]). False when it was not served.
    pub fn remove_story(&mut self, slug: &str) -> bool {
        let Some(i) = self.site.stories.iter().position(|s| s.slug == slug) else {
            return false;
        };
        let story = self.site.stories.remove(i);
        self.unsorted.remove(slug);
        self.hidden.insert(slug.to_string(), story);
        true
    }

    pub fn story(&self, slug: &str) -> Option<&Story> {
        self.site.story(slug)
    }

    pub fn find(&self, slug: &str, id_or_anchor: &str) -> Option<&Entry> {
        self.story(slug)?
            .entries
            .iter()
            .find(|e| e.id == id_or_anchor || e.anchor == id_or_anchor)
    }

    pub fn origin(&self, id: &str) -> Option<Source> {
        self.origin.get(id).copied()
    }

    /// Applies one event but leaves the story's entries out of feed order until [`settle`]
    /// (everything else is up to date), so a batch of events costs one sort, not one each.
    /// Creating an entry with a new id (the common case) is O(1). Events of a story not in the
    /// manifest are kept aside, not served (a story removed from the manifest keeps its history
    /// in the log and gets it back when it is added again).
    ///
    /// [`settle`]: State::settle
    pub(crate) fn apply_unsorted(&mut self, event: &Event) {
        let t = (event.op != Op::Delete).then(|| event.entry.updated.timestamp());
        for key in [event.story.as_str(), crate::render::ALL] {
            let (ok, last) = self
                .forward
                .entry(key.to_string())
                .or_insert((true, i64::MIN));
            match t {
                Some(t) if *ok && t > *last => *last = t,
                _ => *ok = false,
            }
        }
        let Some(story) = self.site.stories.iter_mut().find(|s| s.slug == event.story) else {
            if !self.hidden.contains_key(&event.story) {
                self.dormant
                    .entry(event.story.clone())
                    .or_default()
                    .push(event.clone());
            }
            return;
        };
        if event.op == Op::State {
            // The story's lifecycle: no entry changes.
            story.ended = event.ended;
            self.lifecycle.insert(event.story.clone());
            return;
        }
        // At most one pinned entry: pinning one unpins the story's others (on replay too).
        if event.entry.pinned && event.op != Op::Delete {
            for e in story.entries.iter_mut().filter(|e| e.id != event.entry.id) {
                e.pinned = false;
            }
        }
        // `origin` holds the id of every live entry: an unknown id needs no search.
        let pos = if self.origin.contains_key(&event.entry.id) {
            story.entries.iter().position(|e| e.id == event.entry.id)
        } else {
            None
        };
        // The API takes a report entry: remember how the report shows it, to leave it alone.
        if event.source == Source::Api {
            if let Some(anchor) = self.report_anchor.remove(&event.entry.id) {
                let content = pos.map_or(0, |i| content_hash(&story.entries[i]));
                let handed = self.handed_over.entry(story.slug.clone()).or_default();
                handed.push(Handed { anchor, content });
            }
        }
        let mut recompute_updated = false;
        match (event.op, pos) {
            (Op::Create | Op::Update, Some(i)) => {
                story.entries[i] = event.entry.clone();
                self.unsorted.insert(story.slug.clone(), None);
                recompute_updated = true;
            }
            (Op::Create | Op::Update, None) => {
                let in_order = story.entries.len();
                story.entries.push(event.entry.clone());
                if !self.unsorted.contains_key(&story.slug) {
                    self.unsorted.insert(story.slug.clone(), Some(in_order));
                }
            }
            (Op::Delete, Some(i)) => {
                story.entries.remove(i);
                // An RFC 6721 tombstone for the feeds, the latest few kept.
                story.tombstones.push(crate::model::Tombstone {
                    id: event.entry.id.clone(),
                    when: event.at.unwrap_or(event.entry.updated),
                });
                let over = story
                    .tombstones
                    .len()
                    .saturating_sub(crate::model::MAX_TOMBSTONES);
                story.tombstones.drain(..over);
                if let Some(Some(in_order)) = self.unsorted.get_mut(&story.slug) {
                    if i < *in_order {
                        *in_order -= 1;
                    }
                }
                recompute_updated = true;
            }
            (Op::Delete, None) | (Op::State, _) => {}
        }
        self.given
            .insert(anchor_key(&story.slug, &event.entry.anchor));
        let id = &event.entry.id;
        match (event.op, event.source) {
            (_, Source::Api) => {}
            (Op::Delete, Source::Report) => {
                self.report_anchor.remove(id);
            }
            (_, Source::Report) => {
                let a = event.report_anchor.as_ref().unwrap_or(&event.entry.anchor);
                self.report_anchor.insert(id.clone(), a.clone());
            }
        }
        match event.op {
            Op::Delete => {
                self.origin.remove(id);
            }
            _ => {
                self.origin.insert(id.clone(), event.source);
            }
        }
        let base = self
            .base_updated
            .get(&story.slug)
            .copied()
            .unwrap_or(story.updated);
        if recompute_updated || story.entries.len() <= 1 {
            story.updated = story
                .entries
                .iter()
                .map(|e| e.updated)
                .max()
                .map_or(base, |u| u.max(base));
        } else if event.op != Op::Delete {
            // A new entry can only move the newest update forward.
            story.updated = story.updated.max(event.entry.updated).max(base);
        }
    }

    /// What a snapshot keeps (entries in feed order).
    pub(crate) fn projection(&mut self) -> Projection {
        self.settle();
        Projection {
            stories: self.site.stories.clone(),
            base_updated: self.base_updated.clone(),
            origin: self.origin.clone(),
            given: self.given.clone(),
            report_anchor: self.report_anchor.clone(),
            handed_over: self.handed_over.clone(),
            dormant: self.dormant.clone(),
            hidden: self.hidden.clone(),
            forward: self.forward.clone(),
            lifecycle: self.lifecycle.clone(),
        }
    }

    /// Which contents went only through states of their own `Last-Modified` (see
    /// `cache::dates_move_forward`, which works out the same from events in memory).
    pub(crate) fn dates_move_forward(&self) -> HashMap<String, bool> {
        self.forward
            .iter()
            .map(|(k, (ok, _))| (k.clone(), *ok))
            .collect()
    }

    /// The state a snapshot kept, under `site`'s configuration and manifest as they are now:
    /// stories added to the manifest since are served (with their history, if the log has
    /// one), stories removed are kept aside, every story's metadata is the manifest's, and
    /// entries the API made link to their story pages under `site`'s base URL.
    pub fn restore(p: Projection, site: Site) -> State {
        let manifest = site.stories.clone();
        let mut state = State {
            site: Site {
                stories: p.stories,
                ..site
            },
            base_updated: p.base_updated,
            origin: p.origin,
            given: p.given,
            report_anchor: p.report_anchor,
            handed_over: p.handed_over,
            unsorted: HashMap::new(),
            dormant: p.dormant,
            hidden: p.hidden,
            forward: p.forward,
            lifecycle: p.lifecycle,
        };
        let gone: Vec<String> = state
            .site
            .stories
            .iter()
            .filter(|s| !manifest.iter().any(|m| m.slug == s.slug))
            .map(|s| s.slug.clone())
            .collect();
        for slug in gone {
            state.remove_story(&slug);
        }
        for m in &manifest {
            match state.site.stories.iter_mut().find(|s| s.slug == m.slug) {
                Some(kept) => {
                    let entries = std::mem::take(&mut kept.entries);
                    let tombstones = std::mem::take(&mut kept.tombstones);
                    let updated = kept.updated.max(m.updated);
                    let ended = match state.lifecycle.contains(&m.slug) {
                        true => kept.ended,
                        false => m.ended,
                    };
                    *kept = Story {
                        entries,
                        tombstones,
                        updated,
                        ended,
                        ..m.clone()
                    };
                    state.base_updated.insert(m.slug.clone(), m.updated);
                }
                None => {
                    state.add_story(Story {
                        entries: Vec::new(),
                        ..m.clone()
                    });
                }
            }
        }
        state
            .site
            .stories
            .sort_by_key(|s| manifest.iter().position(|m| m.slug == s.slug));
        let base = state.site.base_url.clone();
        for story in &mut state.site.stories {
            let ours = crate::layout::story_page_url(&base, &story.slug);
            for e in &mut story.entries {
                let api = state.origin.get(&e.id) == Some(&Source::Api);
                if api && e.url.split_once('#').is_some_and(|(page, _)| page != ours) {
                    e.url = format!("{ours}#{}", e.anchor);
                }
            }
        }
        state
    }

    /// The stories with `events` (a whole history, read from the log) applied, as the relay
    /// starts with them: entries the API made under another base URL follow the story pages
    /// to this site's.
    pub(crate) fn from_log(site: Site, events: &[Event]) -> State {
        let mut state = State::empty(site);
        for event in events {
            state.apply_logged(event);
        }
        state.settle();
        state
    }

    /// Applies an event read back from the log (see [`State::rebased`]); [`State::settle`]
    /// once done.
    pub(crate) fn apply_logged(&mut self, event: &Event) {
        match self.rebased(event) {
            Some(moved) => self.apply_unsorted(&moved),
            None => self.apply_unsorted(event),
        }
    }

    /// The stories as `livefeed serve` would start with them over `events` (read from the log
    /// without writing or locking it), for `livefeed build`: the events replayed, then what
    /// the reports in `site` say that the log does not know yet, applied in memory only (as
    /// `Relay::open` does, without the writer). An entry published through the API under
    /// another base URL (a server's own address) links to its place under `site`'s.
    pub fn replay(site: Site, events: &[Event]) -> State {
        let fresh = site.stories.clone();
        let state = State::from_log(site, events);
        let head = events.last().map_or(0, |e| e.seq);
        state.with_reports(&fresh, head)
    }

    /// [`State::replay`] of a compacted log: the stories its snapshot kept (`projection`,
    /// taken at `seq`), then the events after it, then what the reports add.
    pub(crate) fn replay_from(
        projection: Projection,
        seq: u64,
        site: Site,
        events: &[Event],
    ) -> State {
        let fresh = site.stories.clone();
        let mut state = State::restore(projection, site);
        for e in events {
            match state.rebased(e) {
                Some(moved) => state.apply_unsorted(&moved),
                None => state.apply_unsorted(e),
            }
        }
        state.settle();
        let head = events.last().map_or(seq, |e| e.seq);
        state.with_reports(&fresh, head)
    }

    /// The report changes the log does not have yet, applied after `head`, as a start would
    /// relay them.
    fn with_reports(self, fresh: &[Story], head: u64) -> State {
        let mut state = self;
        let mut changes: Vec<ReportChange> =
            fresh.iter().flat_map(|f| state.diff_report(f)).collect();
        changes.sort_by_key(|c| (c.op != Op::Create, c.entry.published));
        for (seq, change) in (head + 1..).zip(changes) {
            state.apply_unsorted(&Event {
                seq,
                op: change.op,
                story: change.entry.story.clone(),
                entry: change.entry,
                source: Source::Report,
                idempotency_key: None,
                idempotency_fingerprint: None,
                at: None,
                report_anchor: change.report_anchor,
                ended: None,
            });
        }
        state.settle();
        state
    }

    /// `event` with its entry's link moved to this site's story page, when the API made it on
    /// a story page under another base URL (`{other}/stories/{slug}/#{anchor}`).
    pub(crate) fn rebased(&self, event: &Event) -> Option<Event> {
        if event.source != Source::Api {
            return None;
        }
        let (page, anchor) = event.entry.url.split_once('#')?;
        let slug = &event.story;
        let ours = crate::layout::story_page_url(&self.site.base_url, slug);
        let path = crate::layout::FileKey::Page(slug.clone()).path();
        let on_a_page = page.ends_with(&path) || page.ends_with(path.trim_end_matches('/'));
        if !on_a_page || anchor != event.entry.anchor || page == ours {
            return None;
        }
        let mut moved = event.clone();
        moved.entry.url = format!("{ours}#{anchor}");
        Some(moved)
    }

    /// Puts the entries of every story changed by [`State::apply_unsorted`] back in feed order.
    pub(crate) fn settle(&mut self) {
        for (slug, in_order) in std::mem::take(&mut self.unsorted) {
            if let Some(story) = self.site.stories.iter_mut().find(|s| s.slug == slug) {
                match in_order {
                    Some(n) => merge_appended(&mut story.entries, n),
                    None => story.sort_entries(),
                }
            }
        }
    }

    /// The changes that bring a story's report-made entries in line with a fresh reading of
    /// its report: new → create, changed → update (same id, publication time kept), gone →
    /// delete. Entries the API published, edited or deleted belong to the publisher from then
    /// on and are left alone. Creates come oldest first.
    ///
    /// The normaliser numbers repeated headlines by position, so its anchor for an entry can
    /// change when another entry goes; and it does not know the anchors the API or deleted
    /// entries hold. So fresh entries are matched to the live report entries first by anchor
    /// and content together, then by identical content (the entry moved: it keeps its id),
    /// then by the normaliser's anchor (the entry was edited). A new entry whose anchor was
    /// ever given gets a fresh one, and the event records the normaliser's, so later readings
    /// (and restarts) find it again.
    pub(crate) fn diff_report(&mut self, fresh: &Story) -> Vec<ReportChange> {
        let slug = fresh.slug.as_str();
        let Some(current) = self.site.story(slug) else {
            return Vec::new();
        };
        let live: Vec<&Entry> = current
            .entries
            .iter()
            .filter(|e| self.origin.get(&e.id) == Some(&Source::Report))
            .collect();
        let known = &self.report_anchor;
        let mut by_content: HashMap<ContentKey, Vec<usize>> = HashMap::new();
        let mut by_anchor: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, e) in live.iter().enumerate() {
            by_content.entry(content_key(e)).or_default().push(i);
            by_anchor
                .entry(report_anchor_of(known, e))
                .or_default()
                .push(i);
        }
        let mut used = vec![false; live.len()];
        let mut matched: Vec<Option<usize>> = vec![None; fresh.entries.len()];
        let take = |candidates: Option<&Vec<usize>>,
                    used: &mut Vec<bool>,
                    ok: &dyn Fn(usize) -> bool|
         -> Option<usize> {
            let i = candidates?.iter().copied().find(|&i| !used[i] && ok(i))?;
            used[i] = true;
            Some(i)
        };
        // Same anchor and content: nothing changed.
        for (f, m) in fresh.entries.iter().zip(matched.iter_mut()) {
            let same = |i: usize| same_content(live[i], f);
            *m = take(by_anchor.get(f.anchor.as_str()), &mut used, &same);
        }
        // Same content under another anchor: the entry moved and keeps its id.
        for (f, m) in fresh.entries.iter().zip(matched.iter_mut()) {
            if m.is_none() {
                *m = take(by_content.get(&content_key(f)), &mut used, &|_| true);
            }
        }
        // The publisher's entries, first by content (they may have moved), then by anchor (the
        // report edited them): skipped. Those the report no longer has are forgotten, so a
        // new entry that later takes the same headline is the report's again.
        let mut handed = self.handed_over.remove(slug).unwrap_or_default();
        let mut kept: Vec<Handed> = Vec::new();
        let mut theirs = vec![false; fresh.entries.len()];
        for ((f, m), skip) in fresh.entries.iter().zip(&matched).zip(theirs.iter_mut()) {
            if m.is_none() && !handed.is_empty() {
                let hash = content_hash(f);
                if let Some(i) = handed.iter().position(|h| h.content == hash) {
                    let h = handed.swap_remove(i);
                    kept.push(Handed {
                        anchor: f.anchor.clone(),
                        ..h
                    });
                    *skip = true;
                }
            }
        }
        // Same anchor, other content: the entry was edited.
        for ((f, m), skip) in fresh
            .entries
            .iter()
            .zip(matched.iter_mut())
            .zip(theirs.iter_mut())
        {
            if m.is_some() || *skip {
                continue;
            }
            *m = take(by_anchor.get(f.anchor.as_str()), &mut used, &|_| true);
            if m.is_none() {
                if let Some(i) = handed.iter().position(|h| h.anchor == f.anchor) {
                    let h = handed.swap_remove(i);
                    kept.push(Handed {
                        content: content_hash(f),
                        ..h
                    });
                    *skip = true;
                }
            }
        }
        if !kept.is_empty() {
            self.handed_over.insert(slug.to_string(), kept);
        }

        let reserved: HashSet<&str> = fresh.entries.iter().map(|e| e.anchor.as_str()).collect();
        let mut allocated: HashSet<String> = HashSet::new();
        let mut remap: Vec<(String, String)> = Vec::new();
        let mut changes = Vec::new();
        let mut creates: Vec<ReportChange> = Vec::new();
        for ((f, m), skip) in fresh.entries.iter().zip(&matched).zip(theirs) {
            if skip {
                continue;
            }
            let Some(i) = *m else {
                let free =
                    |a: &str| !self.given.contains(&anchor_key(slug, a)) && !allocated.contains(a);
                let anchor = if free(&f.anchor) {
                    f.anchor.clone()
                } else {
                    (2..)
                        .map(|n| format!("{}-{n}", f.anchor))
                        .find(|a| free(a) && !reserved.contains(a.as_str()))
                        .unwrap_or_default()
                };
                allocated.insert(anchor.clone());
                creates.push(ReportChange {
                    op: Op::Create,
                    report_anchor: (anchor != f.anchor).then(|| f.anchor.clone()),
                    entry: with_anchor(f, &anchor),
                });
                continue;
            };
            let old = live[i];
            if same_content(old, f) {
                if report_anchor_of(known, old) != f.anchor {
                    remap.push((old.id.clone(), f.anchor.clone()));
                }
                continue;
            }
            let mut edited = with_anchor(f, &old.anchor);
            edited.published = old.published;
            edited.time_inferred = old.time_inferred;
            edited.updated = f.updated.max(old.updated + Duration::seconds(1));
            changes.push(ReportChange {
                op: Op::Update,
                report_anchor: (old.anchor != f.anchor).then(|| f.anchor.clone()),
                entry: edited,
            });
        }
        for (i, old) in live.iter().enumerate() {
            if !used[i] {
                changes.push(ReportChange {
                    op: Op::Delete,
                    entry: (*old).clone(),
                    report_anchor: None,
                });
            }
        }
        // An entry that kept its content but not its place: no event, only the new reading.
        for (id, a) in remap {
            self.report_anchor.insert(id, a);
        }
        creates.sort_by(|a, b| crate::model::newest_first(&b.entry, &a.entry));
        creates.extend(changes);
        creates
    }

    /// A new entry for `story` from what a publisher sent. The anchor comes from the title,
    /// numbered when taken; the id follows from it as for report entries.
    pub fn new_entry(&self, slug: &str, input: &EntryInput, now: DateTime<Utc>) -> Option<Entry> {
        let story = self.story(slug)?;
        let title = input.title.clone();
        let base = match slugify(&title, 80) {
            s if s.is_empty() => "entry".to_string(),
            s => s,
        };
        // Never an anchor given before, live or deleted: a feed reader would take the new
        // entry for the old one.
        let taken = |a: &str| self.given.contains(&anchor_key(slug, a));
        let anchor = (1..)
            .map(|n| {
                if n == 1 {
                    base.clone()
                } else {
                    format!("{base}-{n}")
                }
            })
            .find(|a| !taken(a))?;
        let authority = tag_authority(Some(&story.url));
        let published = input.published.unwrap_or(now);
        let mut entry = Entry {
            story: slug.to_string(),
            id: entry_id(&authority, story.published, slug, &anchor),
            // Its place is livefeed's own story page (the publisher's page has no such anchor).
            url: format!(
                "{}#{anchor}",
                crate::layout::story_page_url(&self.site.base_url, slug)
            ),
            anchor,
            title,
            title_derived: false,
            authors: Vec::new(),
            published,
            updated: published,
            time_inferred: false,
            summary: String::new(),
            content_html: String::new(),
            blocks: Vec::new(),
            key: input.key.unwrap_or(false),
            pinned: input.pinned.unwrap_or(false),
        };
        input.content.fill(&mut entry);
        Some(entry)
    }

    /// An edited copy of an entry: new text, same id and publication time, a later `updated`.
    pub fn edited(&self, old: &Entry, input: &EntryInput, now: DateTime<Utc>) -> Entry {
        let mut entry = old.clone();
        entry.title = input.title.clone();
        entry.title_derived = false;
        entry.updated = now.max(old.updated + Duration::seconds(1));
        if let Some(p) = input.published {
            entry.published = p;
        }
        // Flags not sent are kept.
        entry.key = input.key.unwrap_or(old.key);
        entry.pinned = input.pinned.unwrap_or(old.pinned);
        input.content.fill(&mut entry);
        entry
    }
}

fn same_content(a: &Entry, b: &Entry) -> bool {
    content_key(a) == content_key(b)
}

/// What makes two readings of a report entry the same entry: its text.
type ContentKey<'a> = (&'a str, &'a [String], &'a str);

fn content_key(e: &Entry) -> ContentKey<'_> {
    (&e.title, &e.authors, &e.content_html)
}

/// A report entry the API edited or deleted, as the report last showed it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Handed {
    /// The normaliser's anchor for it.
    anchor: String,
    /// A hash of its [`content_key`].
    content: u64,
}

/// A hash of an entry's text, to know it again without keeping a copy.
fn content_hash(e: &Entry) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    content_key(e).hash(&mut h);
    h.finish()
}

/// The normaliser's anchor of a live report entry.
fn report_anchor_of<'a>(known: &'a HashMap<String, String>, e: &'a Entry) -> &'a str {
    known.get(&e.id).map_or(e.anchor.as_str(), String::as_str)
}

/// A fresh report entry under the anchor the relay gives it: the id and address follow.
fn with_anchor(fresh: &Entry, anchor: &str) -> Entry {
    let mut e = fresh.clone();
    if anchor != fresh.anchor {
        let swap = |s: &str, sep: char| match s.strip_suffix(&fresh.anchor) {
            Some(head) if head.ends_with(sep) => format!("{head}{anchor}"),
            _ => format!("{s}{sep}{anchor}"),
        };
        e.id = swap(&fresh.id, '/');
        e.url = swap(&fresh.url, '#');
        e.anchor = anchor.to_string();
    }
    e
}

/// One change a reading of a report makes.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportChange {
    pub op: Op,
    pub entry: Entry,
    /// The normaliser's anchor for the entry, when the relay gave it another.
    pub report_anchor: Option<String>,
}

/// Restores feed order when `entries[..in_order]` is in order and entries were appended after
/// it: the same result as a stable sort of the whole, but only the appended entries and the
/// ones they sort among are compared (new entries are usually the newest, and go in front).
fn merge_appended(entries: &mut Vec<Entry>, in_order: usize) {
    if in_order >= entries.len() {
        return;
    }
    let mut appended = entries.split_off(in_order);
    sort_newest_first(&mut appended);
    let Some(oldest_new) = appended.last() else {
        return;
    };
    // Entries before `cut` sort before (or level with) every appended one; the rest after.
    let cut = entries.partition_point(|e| newest_first(e, oldest_new) != Ordering::Greater);
    let mut front = Vec::with_capacity(cut + appended.len());
    let mut old = entries.drain(..cut).peekable();
    let mut new = appended.into_iter().peekable();
    loop {
        let take_new = match (old.peek(), new.peek()) {
            (Some(o), Some(n)) => newest_first(n, o) == Ordering::Less,
            (None, Some(_)) => true,
            (_, None) => break,
        };
        match if take_new { new.next() } else { old.next() } {
            Some(e) => front.push(e),
            None => break,
        }
    }
    front.extend(old);
    entries.splice(0..0, front);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::StoryKind;

    fn entry(i: u64, secs: i64) -> Entry {
        let t = DateTime::<Utc>::UNIX_EPOCH + Duration::seconds(secs);
        Entry {
            story: "s".into(),
            id: format!("tag:x,2000:s/{i}"),
            anchor: i.to_string(),
            title: "t".into(),
            title_derived: false,
            authors: vec![],
            published: t,
            updated: t,
            time_inferred: false,
            summary: String::new(),
            content_html: String::new(),
            url: String::new(),
            blocks: vec![],
            key: false,
            pinned: false,
        }
    }

    fn story(slug: &str) -> Story {
        Story {
            slug: slug.into(),
            kind: StoryKind::Live,
            title: slug.into(),
            description: String::new(),
            url: "https://example.org/s".into(),
            published: DateTime::<Utc>::UNIX_EPOCH,
            updated: DateTime::<Utc>::UNIX_EPOCH,
            entries: vec![],
            tombstones: vec![],
            ended: None,
            zone: Default::default(),
        }
    }

    fn create(seq: u64, e: Entry) -> Event {
        Event {
            seq,
            op: Op::Create,
            story: e.story.clone(),
            entry: e,
            source: Source::Api,
            idempotency_key: None,
            idempotency_fingerprint: None,
            at: None,
            report_anchor: None,
            ended: None,
        }
    }

    #[test]
    fn a_story_out_of_the_manifest_keeps_its_history_for_when_it_comes_back() {
        let site = Site {
            info: crate::ingest::manifest::SiteInfo {
                title: "T".into(),
                description: String::new(),
                author: "A".into(),
                base_url: "https://example.org".into(),
                language: "en".into(),
            },
            base_url: "https://example.org".into(),
            stories: vec![story("t")],
            feed_entries: crate::render::DEFAULT_FEED_ENTRIES,
            websub_hub: None,
        };
        let mut state = State::empty(site);
        // Replayed events of "s", a story the manifest no longer has: not served.
        state.apply_unsorted(&create(1, entry(1, 10)));
        state.apply_unsorted(&create(2, entry(2, 20)));
        state.settle();
        assert!(state.story("s").is_none());
        // Added back: its entries and their anchors are known again.
        assert!(state.add_story(story("s")));
        assert!(!state.add_story(story("s")));
        let ids: Vec<&str> = state
            .story("s")
            .unwrap()
            .entries
            .iter()
            .map(|e| e.id.as_str())
            .collect();
        assert_eq!(ids, ["tag:x,2000:s/2", "tag:x,2000:s/1"]);
        let input = EntryInput::cleaned("1", "body", None, None);
        let fresh = state.new_entry("s", &input, Utc::now()).unwrap();
        assert_eq!(
            fresh.anchor, "1-2",
            "an anchor of its history was given again"
        );
        // Removed at run time, then added back: the same.
        assert!(state.remove_story("s"));
        assert!(!state.remove_story("s"));
        assert!(state.story("s").is_none() && state.find("s", "1").is_none());
        assert!(state.add_story(story("s")));
        assert_eq!(state.story("s").unwrap().entries.len(), 2);
    }

    #[test]
    fn merging_appended_entries_equals_a_stable_sort() {
        // A small deterministic generator; many ties on time, so the id decides.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move |m: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % m
        };
        for round in 0..300 {
            let old_len = next(40) as usize;
            let new_len = next(12) as usize;
            let mut entries: Vec<Entry> = (0..old_len as u64)
                .map(|_| entry(next(1000), next(20) as i64))
                .collect();
            sort_newest_first(&mut entries);
            for _ in 0..new_len {
                entries.push(entry(next(1000), next(25) as i64));
            }
            let mut want = entries.clone();
            sort_newest_first(&mut want);
            merge_appended(&mut entries, old_len);
            let ids = |v: &[Entry]| v.iter().map(|e| e.id.clone()).collect::<Vec<_>>();
            assert_eq!(ids(&entries), ids(&want), "round {round}");
        }
    }
}
