//! The relay's view of every story: the data directory's stories with the log applied.
//! Pure: events in, stories out. Owned by the writer, the only place that changes it.

use chrono::{DateTime, Duration, Utc};
use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};

use super::event::{Event, Op, Source};
use crate::model::{Entry, Story, StoryKind, newest_first, sort_newest_first};
use crate::normalise::{self, entry_id, tag_authority};
use crate::site::Site;
use crate::text::{clean, slugify, squash};

/// The stories as the log makes them.
#[derive(Debug, Clone)]
pub struct State {
    pub site: Site,
    /// Each story's own last-update time from the manifest, before any event.
    base_updated: HashMap<String, DateTime<Utc>>,
    /// Where each live entry came from.
    origin: HashMap<String, Source>,
    /// Ids deleted through the API: a report that still has them does not bring them back.
    removed_by_api: HashSet<String>,
    /// How many live entries use each anchor, by story: `{slug}/{anchor}` → count.
    anchors: HashMap<String, usize>,
    /// Stories whose entries are out of feed order until [`State::settle`]: with the length of
    /// the prefix still in order when entries were only appended, `None` when any may be out.
    unsorted: HashMap<String, Option<usize>>,
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
            removed_by_api: HashSet::new(),
            anchors: HashMap::new(),
            unsorted: HashMap::new(),
        }
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

    /// Applies one event. Events for unknown stories are ignored (a story removed from the
    /// manifest keeps its history in the log but is no longer served).
    pub fn apply(&mut self, event: &Event) {
        self.apply_unsorted(event);
        self.settle();
    }

    /// Applies one event but leaves the story's entries out of feed order until [`settle`]
    /// (everything else is up to date), so a batch of events costs one sort, not one each.
    /// Creating an entry with a new id (the common case) is O(1).
    ///
    /// [`settle`]: State::settle
    pub fn apply_unsorted(&mut self, event: &Event) {
        let Some(story) = self.site.stories.iter_mut().find(|s| s.slug == event.story) else {
            return;
        };
        // `origin` holds the id of every live entry: an unknown id needs no search.
        let pos = if self.origin.contains_key(&event.entry.id) {
            story.entries.iter().position(|e| e.id == event.entry.id)
        } else {
            None
        };
        let mut recompute_updated = false;
        match (event.op, pos) {
            (Op::Create | Op::Update, Some(i)) => {
                let old = std::mem::replace(&mut story.entries[i], event.entry.clone());
                count_anchor(&mut self.anchors, &story.slug, &old.anchor, false);
                count_anchor(&mut self.anchors, &story.slug, &event.entry.anchor, true);
                self.unsorted.insert(story.slug.clone(), None);
                recompute_updated = true;
            }
            (Op::Create | Op::Update, None) => {
                count_anchor(&mut self.anchors, &story.slug, &event.entry.anchor, true);
                let in_order = story.entries.len();
                story.entries.push(event.entry.clone());
                if !self.unsorted.contains_key(&story.slug) {
                    self.unsorted.insert(story.slug.clone(), Some(in_order));
                }
            }
            (Op::Delete, Some(i)) => {
                let old = story.entries.remove(i);
                count_anchor(&mut self.anchors, &story.slug, &old.anchor, false);
                if let Some(Some(in_order)) = self.unsorted.get_mut(&story.slug) {
                    if i < *in_order {
                        *in_order -= 1;
                    }
                }
                recompute_updated = true;
            }
            (Op::Delete, None) => {}
        }
        match event.op {
            Op::Delete => {
                self.origin.remove(&event.entry.id);
                if event.source == Source::Api {
                    self.removed_by_api.insert(event.entry.id.clone());
                }
            }
            _ => {
                self.origin.insert(event.entry.id.clone(), event.source);
                self.removed_by_api.remove(&event.entry.id);
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

    /// Puts the entries of every story changed by [`State::apply_unsorted`] back in feed order.
    pub fn settle(&mut self) {
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
    pub fn diff_report(&self, fresh: &Story) -> Vec<(Op, Entry)> {
        let Some(current) = self.story(&fresh.slug) else {
            return Vec::new();
        };
        let mut changes = Vec::new();
        let mut creates: Vec<&Entry> = Vec::new();
        for new in &fresh.entries {
            match current.entries.iter().find(|e| e.id == new.id) {
                None if self.removed_by_api.contains(&new.id) => {}
                None => creates.push(new),
                Some(old) if same_content(old, new) => {}
                Some(old) if self.origin(&old.id) != Some(Source::Report) => {}
                Some(old) => {
                    let mut edited = new.clone();
                    edited.published = old.published;
                    edited.time_inferred = old.time_inferred;
                    edited.updated = new.updated.max(old.updated + Duration::seconds(1));
                    changes.push((Op::Update, edited));
                }
            }
        }
        for old in &current.entries {
            let from_report = self.origin(&old.id) == Some(Source::Report);
            if from_report && !fresh.entries.iter().any(|e| e.id == old.id) {
                changes.push((Op::Delete, old.clone()));
            }
        }
        creates.sort_by(|a, b| crate::model::newest_first(b, a));
        let mut out: Vec<(Op, Entry)> = creates
            .into_iter()
            .map(|e| (Op::Create, e.clone()))
            .collect();
        out.extend(changes);
        out
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
        let taken = |a: &str| {
            self.anchors
                .get(&anchor_key(slug, a))
                .is_some_and(|n| *n > 0)
        };
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
            url: format!("{}#{anchor}", story.url),
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
        };
        fill_body(&mut entry, input);
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
        fill_body(&mut entry, input);
        entry
    }
}

fn same_content(a: &Entry, b: &Entry) -> bool {
    a.title == b.title && a.authors == b.authors && a.content_html == b.content_html
}

/// What a publisher sends, already checked and cleaned.
#[derive(Debug, Clone, PartialEq)]
pub struct EntryInput {
    pub title: String,
    /// Body text in the report style: paragraphs separated by blank lines, `•` lists,
    /// `– attribution` lines, captions with `Credit:`.
    pub body: String,
    pub authors: Option<Vec<String>>,
    pub published: Option<DateTime<Utc>>,
}

impl EntryInput {
    /// Cleans publisher text: control characters dropped, whitespace squashed in one-line fields.
    pub fn cleaned(
        title: &str,
        body: &str,
        authors: Option<Vec<String>>,
        published: Option<DateTime<Utc>>,
    ) -> EntryInput {
        EntryInput {
            title: squash(&clean(title)),
            body: clean(&body.replace("\r\n", "\n")),
            authors: authors.map(|a| {
                a.iter()
                    .map(|s| squash(&clean(s)))
                    .filter(|s| !s.is_empty())
                    .collect()
            }),
            published,
        }
    }
}

/// Normalises the body text like an article's and fills the entry's HTML, summary and authors.
fn fill_body(entry: &mut Entry, input: &EntryInput) {
    // The title line makes the text an article; its body lines become the entry's blocks.
    let text = format!(
        "{}\n\n{}",
        if input.title.is_empty() {
            "Untitled"
        } else {
            &input.title
        },
        input.body
    );
    let blocks_and_authors = normalise::parse(&text, Some(StoryKind::Article))
        .ok()
        .and_then(|r| r.entries.into_iter().next())
        .map(|raw| (raw.blocks, raw.authors))
        .unwrap_or_default();
    let (blocks, body_authors) = blocks_and_authors;
    entry.content_html = normalise::body::to_html(&blocks);
    entry.summary = normalise::body::summary(&blocks, &entry.title);
    entry.blocks = blocks;
    entry.authors = match &input.authors {
        Some(a) => a.clone(),
        None if !body_authors.is_empty() => body_authors,
        None => std::mem::take(&mut entry.authors),
    };
}

/// Counts an anchor in or out of use.
fn count_anchor(anchors: &mut HashMap<String, usize>, slug: &str, anchor: &str, add: bool) {
    let key = anchor_key(slug, anchor);
    if add {
        *anchors.entry(key).or_insert(0) += 1;
    } else if let Some(n) = anchors.get_mut(&key) {
        *n -= 1;
        if *n == 0 {
            anchors.remove(&key);
        }
    }
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
        }
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
