//! The relay's view of every story: the data directory's stories with the log applied.
//! Pure: events in, stories out. Owned by the writer, the only place that changes it.

use chrono::{DateTime, Duration, Utc};
use std::collections::{HashMap, HashSet};

use super::event::{Event, Op, Source};
use crate::model::{Entry, Story, StoryKind};
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
        let Some(story) = self.site.stories.iter_mut().find(|s| s.slug == event.story) else {
            return;
        };
        let pos = story.entries.iter().position(|e| e.id == event.entry.id);
        match (event.op, pos) {
            (Op::Create | Op::Update, Some(i)) => story.entries[i] = event.entry.clone(),
            (Op::Create | Op::Update, None) => story.entries.push(event.entry.clone()),
            (Op::Delete, Some(i)) => {
                story.entries.remove(i);
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
        story.sort_entries();
        let base = self
            .base_updated
            .get(&story.slug)
            .copied()
            .unwrap_or(story.updated);
        story.updated = story
            .entries
            .iter()
            .map(|e| e.updated)
            .max()
            .map_or(base, |u| u.max(base));
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
        let taken = |a: &str| story.entries.iter().any(|e| e.anchor == a);
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
