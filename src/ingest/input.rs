//! What a publisher sends through the API, made into entry content here — on the request's own
//! task, before the writer sees it: cleaned like report text, and the body normalised like an
//! article's (blocks, HTML, summary, authors). The log only assigns ids, anchors and times.

use chrono::{DateTime, Utc};

use super::normalise;
use crate::model::{Block, Entry, StoryKind};
use crate::text::{clean, squash};

/// What a publisher sends, already checked and cleaned, with its body made into content.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EntryInput {
    pub title: String,
    /// Body text in the report style: paragraphs separated by blank lines, `•` lists,
    /// `– attribution` lines, captions with `Credit:`.
    pub body: String,
    pub authors: Option<Vec<String>>,
    pub published: Option<DateTime<Utc>>,
    /// `key: true` makes it a key event; `None` leaves an edited entry's flag as it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<bool>,
    /// `pinned: true` pins it (and unpins the story's other entry); `None` leaves it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pinned: Option<bool>,
    /// The body made into content (derived from `title`, `body` and `authors`: not part of
    /// the request's fingerprint).
    #[serde(skip)]
    pub content: Content,
}

/// An API body as entry content.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Content {
    pub blocks: Vec<Block>,
    pub html: String,
    pub summary: String,
    /// The authors the request named, else those the body's attribution lines name.
    pub authors: Option<Vec<String>>,
}

impl EntryInput {
    /// Cleans publisher text (control characters dropped, whitespace squashed in one-line
    /// fields) and normalises the body.
    pub fn cleaned(
        title: &str,
        body: &str,
        authors: Option<Vec<String>>,
        published: Option<DateTime<Utc>>,
    ) -> EntryInput {
        let title = squash(&clean(title));
        let body = clean(&body.replace("\r\n", "\n"));
        let authors: Option<Vec<String>> = authors.map(|a| {
            a.iter()
                .map(|s| squash(&clean(s)))
                .filter(|s| !s.is_empty())
                .collect()
        });
        let content = Content::of(&title, &body, authors.clone());
        EntryInput {
            title,
            body,
            authors,
            published,
            key: None,
            pinned: None,
            content,
        }
    }
}

impl Content {
    /// Normalises the body text like an article's (the title line makes the text an article;
    /// its body lines become the entry's blocks).
    fn of(title: &str, body: &str, authors: Option<Vec<String>>) -> Content {
        let text = format!(
            "{}\n\n{body}",
            if title.is_empty() { "Untitled" } else { title }
        );
        let (blocks, body_authors) = normalise::parse(&text, Some(StoryKind::Article))
            .ok()
            .and_then(|r| r.entries.into_iter().next())
            .map(|raw| (raw.blocks, raw.authors))
            .unwrap_or_default();
        Content {
            html: normalise::body::to_html(&blocks),
            summary: normalise::body::summary(&blocks, title),
            authors: authors.or((!body_authors.is_empty()).then_some(body_authors)),
            blocks,
        }
    }

    /// Puts the content into `entry` (its authors kept when none were given or found).
    pub fn fill(&self, entry: &mut Entry) {
        entry.content_html = self.html.clone();
        entry.summary = self.summary.clone();
        entry.blocks = self.blocks.clone();
        if let Some(a) = &self.authors {
            entry.authors = a.clone();
        }
    }
}
