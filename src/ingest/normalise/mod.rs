//! Reports → stories and items. Pure: text in, values out, no I/O.
//!
//! `lines` classifies each line, `parse` groups lines into entries, `time` resolves and infers
//! times, `body` turns blocks into HTML and summaries; this module assigns ids and assembles
//! the [`Story`].

pub mod body;
pub mod lines;
pub mod parse;
pub mod profile;
pub mod time;

pub use parse::{ParseError, RawEntry, Report, decode, parse};

use chrono::{DateTime, FixedOffset, Utc};
use std::collections::{HashMap, HashSet};

use crate::model::{Block, Entry, Story, StoryKind};
use crate::text::{slugify, squash, truncate_words};

/// What a story needs from outside the report: its slug, address and times.
#[derive(Debug, Clone)]
pub struct StoryMeta {
    pub slug: String,
    /// `None` lets the report decide (a live header means a live page).
    pub kind: Option<StoryKind>,
    /// The page template's profile by name (`bbc-live`); `None` lets the page's content choose.
    pub template: Option<String>,
    /// The page the report was saved from. Its host names the `tag:` URIs.
    pub url: Option<String>,
    pub published: DateTime<Utc>,
    pub updated: DateTime<Utc>,
    /// The offset used for time lines that carry no zone.
    pub offset: FixedOffset,
    /// Explicit per-entry times, matched by entry title.
    pub entry_times: Vec<EntryTime>,
    /// Where pages without an address of their own link: `{base}/stories/{slug}`.
    pub fallback_url: String,
}

/// An explicit time for one entry, matched on its title.
#[derive(Debug, Clone)]
pub struct EntryTime {
    pub title: String,
    pub published: DateTime<Utc>,
    pub updated: Option<DateTime<Utc>>,
}

/// The `tag:` authority for a story: the host of its page, or a reserved name when it has none.
pub fn tag_authority(url: Option<&str>) -> String {
    url.and_then(|u| u.split_once("://"))
        .map(|(_, rest)| rest.split(['/', '?', '#']).next().unwrap_or_default())
        .map(|host| host.rsplit_once('@').map_or(host, |(_, h)| h))
        .map(|host| {
            host.split(':')
                .next()
                .unwrap_or_default()
                .to_ascii_lowercase()
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "livefeed.invalid".to_string())
}

/// The `tag:` URI (RFC 4151) of an entry. It depends only on the story's page host and
/// publication date, the story slug and the entry's anchor: never on the server's base URL or
/// on the entry's text beyond its headline.
pub fn entry_id(
    authority: &str,
    story_published: DateTime<Utc>,
    slug: &str,
    anchor: &str,
) -> String {
    format!(
        "tag:{authority},{}:{slug}/{anchor}",
        story_published.format("%Y-%m-%d")
    )
}

/// The `tag:` URI of a story (its feed id).
pub fn story_id(authority: &str, story_published: DateTime<Utc>, slug: &str) -> String {
    format!(
        "tag:{authority},{}:{slug}",
        story_published.format("%Y-%m-%d")
    )
}

/// The longest derived title, in characters.
const DERIVED_TITLE_CHARS: usize = 90;

/// A title for an entry without a headline: the first sentence of its first text, shortened at
/// a word boundary.
fn derived_title(blocks: &[Block]) -> String {
    // The text comes first; a caption only when there is nothing else.
    let text = blocks
        .iter()
        .find_map(|b| match b {
            Block::Paragraph { text } => Some(text.clone()),
            Block::Embed { paragraphs, .. } | Block::Quote { paragraphs, .. } => {
                paragraphs.first().cloned()
            }
            Block::List { items, .. } => items.first().cloned(),
            Block::Figure { .. } => None,
        })
        .or_else(|| {
            blocks.iter().find_map(|b| match b {
                Block::Figure { caption, .. } if !caption.is_empty() => Some(caption.clone()),
                _ => None,
            })
        });
    match text {
        Some(t) => {
            let text = squash(&t);
            let sentence = match first_sentence(&text) {
                "" => text.as_str(),
                s => s,
            };
            if sentence.is_empty() {
                return "Update".to_string();
            }
            let title = truncate_words(sentence, DERIVED_TITLE_CHARS);
            // `…markets,…` reads badly: the cut drops the punctuation it fell on.
            match title.strip_suffix('…') {
                Some(cut) => format!("{}…", cut.trim_end_matches([',', ';', ':', '-', '–', '—'])),
                None => title,
            }
        }
        None => "Update".to_string(),
    }
}

/// The first sentence of a text, without its full stop: up to the first `.`, `!` or `?`
/// followed by a space and a capital, not after an initial or a short abbreviation (`Mr.`).
fn first_sentence(text: &str) -> &str {
    for (i, c) in text.char_indices() {
        if !matches!(c, '.' | '!' | '?') {
            continue;
        }
        let after = &text[i + 1..];
        let next_starts = after
            .strip_prefix(' ')
            .is_some_and(|a| a.starts_with(|c: char| c.is_uppercase() || "\"'‘“".contains(c)));
        if !next_starts {
            continue;
        }
        let word = text[..i].rsplit(' ').next().unwrap_or_default();
        let abbreviation = c == '.'
            && (word.chars().count() <= 2 && word.starts_with(char::is_uppercase)
                || [
                    "Mr", "Mrs", "Ms", "Dr", "St", "Prof", "Sir", "Rev", "Gen", "Lt", "Col",
                ]
                .contains(&word));
        if abbreviation || i == 0 || text[..i].ends_with(' ') {
            continue;
        }
        return if c == '.' { &text[..i] } else { &text[..=i] };
    }
    text.strip_suffix('.').unwrap_or(text)
}

/// The anchor base for an entry: its headline's slug, else its explicit time, else its first words.
fn anchor_base(headline: Option<&str>, explicit: Option<DateTime<Utc>>, title: &str) -> String {
    if let Some(h) = headline {
        let s = slugify(h, 80);
        if !s.is_empty() {
            return s;
        }
    }
    if let Some(t) = explicit {
        return format!("at-{}", t.format("%Y%m%dt%H%M"));
    }
    let s = slugify(title, 48);
    if s.is_empty() {
        "entry".to_string()
    } else {
        format!("entry-{s}")
    }
}

/// Parses and normalises one report into a story.
pub fn normalise(text: &str, meta: &StoryMeta) -> Result<Story, ParseError> {
    let report = parse::parse_with(text, meta.kind, meta.template.as_deref())?;
    Ok(assemble(report, meta))
}

/// Turns a parsed report into a story: titles, times, anchors, ids, HTML and summaries.
pub fn assemble(report: Report, meta: &StoryMeta) -> Story {
    let page = meta
        .url
        .clone()
        .unwrap_or_else(|| meta.fallback_url.clone());
    let authority = tag_authority(meta.url.as_deref());
    let raws = report.entries;

    let titles: Vec<String> = raws
        .iter()
        .map(|r| match &r.headline {
            Some(h) => squash(h),
            None => derived_title(&r.blocks),
        })
        .collect();

    // Times: manifest by title, then the entry's own time line; then inference.
    let lines: Vec<_> = raws.iter().map(|r| r.time).collect();
    let from_lines = time::resolve_time_lines(&lines, meta.updated, meta.offset);
    let by_title: HashMap<&str, &EntryTime> = meta
        .entry_times
        .iter()
        .map(|t| (t.title.as_str(), t))
        .collect();
    let explicit: Vec<Option<DateTime<Utc>>> = titles
        .iter()
        .zip(&from_lines)
        .map(|(title, line)| by_title.get(title.as_str()).map(|t| t.published).or(*line))
        .collect();
    let times: Vec<(DateTime<Utc>, bool)> = match report.kind {
        StoryKind::Article => explicit
            .iter()
            .map(|e| (e.unwrap_or(meta.published), false))
            .collect(),
        StoryKind::Live => time::infer_times(&explicit, meta.published, meta.updated),
    };

    // Anchors, given oldest first so entries added above change nothing below: an entry takes
    // its base unless an older entry already has that anchor, else the first free `{base}-{n}`.
    // "Taken" covers numbered anchors too, so "Foo 2" above two "Foo" cannot share `foo-2`.
    let mut anchors = vec![String::new(); raws.len()];
    let mut taken: HashSet<String> = HashSet::new();
    for i in (0..raws.len()).rev() {
        let base = anchor_base(raws[i].headline.as_deref(), explicit[i], &titles[i]);
        let anchor = if taken.contains(&base) {
            (2..)
                .map(|n| format!("{base}-{n}"))
                .find(|a| !taken.contains(a))
                .unwrap_or_default()
        } else {
            base
        };
        taken.insert(anchor.clone());
        anchors[i] = anchor;
    }

    let mut entries: Vec<Entry> = raws
        .into_iter()
        .zip(titles)
        .zip(anchors)
        .zip(times)
        .map(|(((raw, title), anchor), (published, inferred))| {
            let manifest = by_title.get(title.as_str());
            let updated = match (report.kind, manifest.and_then(|t| t.updated)) {
                (_, Some(u)) => u.max(published),
                (StoryKind::Article, None) => meta.updated.max(published),
                (StoryKind::Live, None) => published,
            };
            Entry {
                story: meta.slug.clone(),
                id: entry_id(&authority, meta.published, &meta.slug, &anchor),
                url: format!("{page}#{anchor}"),
                anchor,
                summary: body::summary(&raw.blocks, &title),
                content_html: body::to_html(&raw.blocks),
                title,
                title_derived: raw.headline.is_none(),
                authors: raw.authors,
                published,
                updated,
                time_inferred: inferred,
                blocks: raw.blocks,
                key: false,
                pinned: false,
            }
        })
        .collect();
    crate::model::sort_newest_first(&mut entries);
    let updated = entries
        .iter()
        .map(|e| e.updated)
        .max()
        .unwrap_or(meta.updated)
        .max(meta.updated);
    Story {
        slug: meta.slug.clone(),
        kind: report.kind,
        title: report.title,
        description: report.description,
        url: page,
        published: meta.published,
        updated,
        entries,
        tombstones: Vec::new(),
        // Set by the manifest's reader (`Site::load`).
        ended: None,
        // Set by the manifest's reader (`Site::load`); pure normalising knows no zone.
        zone: Default::default(),
    }
}
