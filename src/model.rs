//! The domain: a [`Story`] holds [`Entry`] items; an entry's body is a list of [`Block`]s.
//!
//! These types are what every later stage (rendering, the event log, the transports) speaks.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What kind of page a report was saved from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoryKind {
    /// A live page: a headline, a standfirst, then entries newest first.
    Live,
    /// A single article: one entry.
    Article,
}

/// A structural piece of an entry's body. Text is already cleaned, never escaped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Block {
    Paragraph {
        text: String,
    },
    List {
        ordered: bool,
        items: Vec<String>,
    },
    /// A quotation and the line that attributes it (`– The Prime Minister's spokesman`).
    Quote {
        paragraphs: Vec<String>,
        attribution: Option<String>,
    },
    /// An image or video caption, with its credit (`Credit: …`, `Photo: …`) kept apart.
    Figure {
        caption: String,
        credit: Option<String>,
    },
    /// An embedded post (a tweet): its text and its `— Name (@handle) date` line.
    Embed {
        paragraphs: Vec<String>,
        attribution: String,
    },
}

/// One normalised item: what feeds, pages and live events carry.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Entry {
    /// The story's slug.
    pub story: String,
    /// A `tag:` URI (RFC 4151), stable across re-reads, edits, new entries and hosts.
    pub id: String,
    /// The fragment identifying the entry within its story page.
    pub anchor: String,
    pub title: String,
    /// True when the entry had no headline and `title` was made from its first sentence.
    /// Absent in event logs written before it existed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub title_derived: bool,
    pub authors: Vec<String>,
    pub published: DateTime<Utc>,
    pub updated: DateTime<Utc>,
    /// True when no explicit time was given and the time was inferred from the story's
    /// times and the entry's position.
    pub time_inferred: bool,
    pub summary: String,
    pub content_html: String,
    /// The story page plus the entry's anchor.
    pub url: String,
    /// A key event: listed in the story page's "Key events" box. Absent (false) in older logs.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub key: bool,
    /// Shown first on the story page; at most one entry of a story is pinned (pinning another
    /// unpins it: `log::state`). Absent (false) in older logs.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pinned: bool,
    /// The structure `content_html` was made from; not carried in events or on disk.
    #[serde(skip)]
    pub blocks: Vec<Block>,
}

/// A story and its entries, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Story {
    pub slug: String,
    pub kind: StoryKind,
    pub title: String,
    pub description: String,
    /// The page the story was published on.
    pub url: String,
    pub published: DateTime<Utc>,
    pub updated: DateTime<Utc>,
    pub entries: Vec<Entry>,
    /// The latest deletions (RFC 6721 tombstones), oldest first, at most
    /// [`MAX_TOMBSTONES`]: feeds tell readers to drop these entries. Absent in stories read
    /// from reports.
    #[serde(default)]
    pub tombstones: Vec<Tombstone>,
    /// When the story ended (the manifest's `ended`, or `PUT /stories/{story}` with
    /// `{"state":"ended"}`); `None` while it is live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<DateTime<Utc>>,
    /// The zone its pages show times in (the manifest's `timezone` or `utc_offset`).
    #[serde(skip)]
    pub zone: crate::zone::Zone,
}

/// How many deletions a story remembers for its feeds.
pub const MAX_TOMBSTONES: usize = 50;

/// A deleted entry: its id and when it was deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tombstone {
    pub id: String,
    pub when: DateTime<Utc>,
}

impl Story {
    /// Sorts entries newest first (by `published`, then `updated`, then id), the order every
    /// renderer uses.
    pub fn sort_entries(&mut self) {
        sort_newest_first(&mut self.entries);
    }
}

/// Newest first, with a total tie-break so the order never depends on input order.
pub fn sort_newest_first(entries: &mut [Entry]) {
    entries.sort_by(newest_first);
}

/// The feed order: `published` descending, then `updated` descending, then id.
pub fn newest_first(a: &Entry, b: &Entry) -> std::cmp::Ordering {
    b.published
        .cmp(&a.published)
        .then_with(|| b.updated.cmp(&a.updated))
        .then_with(|| a.id.cmp(&b.id))
}
