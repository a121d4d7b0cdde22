//! Atom 1.0 (RFC 4287) through `atom_syndication`: self and alternate links, a feed-level
//! author so every entry has one, HTML content, RFC 3339 dates in UTC. Strings pass through
//! [`clean`]: XML 1.0 cannot carry control characters, whatever built the entry.

use atom_syndication::extension::{Extension, ExtensionMap};
use atom_syndication::{Content, Entry, Feed as AtomFeed, Generator, Link, Person, Text};
use chrono::{DateTime, FixedOffset, Utc};
use std::collections::BTreeMap;

use super::{AT_NS, FH_NS, Feed, Format, History};
use crate::text::clean;

fn fixed(t: DateTime<Utc>) -> DateTime<FixedOffset> {
    super::feed_time(t).fixed_offset()
}

fn link(href: &str, rel: &str, mime: Option<&str>) -> Link {
    Link {
        href: clean(href),
        rel: rel.to_string(),
        mime_type: mime.map(str::to_string),
        ..Default::default()
    }
}

fn person(name: &str) -> Person {
    Person {
        name: clean(name),
        ..Default::default()
    }
}

/// The RFC 5005 links (`prev-archive`, `next-archive`, `current`) of a document in `format`,
/// as `(rel, href)`.
pub(super) fn history_links(h: &History, format: Format) -> Vec<(&'static str, String)> {
    [
        ("prev-archive", &h.prev_archive),
        ("next-archive", &h.next_archive),
        ("current", &h.current),
    ]
    .into_iter()
    .filter_map(|(rel, base)| History::url(base, format).map(|u| (rel, u)))
    .collect()
}

/// One extension element, such as `fh:archive`.
pub(super) fn element(name: &str, attrs: &[(&str, String)]) -> Extension {
    Extension {
        name: name.to_string(),
        attrs: attrs
            .iter()
            .map(|(k, v)| (k.to_string(), clean(v)))
            .collect(),
        ..Default::default()
    }
}

/// `fh:archive` (RFC 5005 §4) on archive documents and `at:deleted-entry` (RFC 6721) for each
/// tombstone, with the namespaces they need.
fn extensions(feed: &Feed<'_>) -> (ExtensionMap, BTreeMap<String, String>) {
    let mut map = ExtensionMap::new();
    let mut namespaces = BTreeMap::new();
    if feed.history.archive {
        namespaces.insert("fh".to_string(), FH_NS.to_string());
        map.entry("fh".into())
            .or_default()
            .insert("archive".into(), vec![element("fh:archive", &[])]);
    }
    if !feed.tombstones.is_empty() {
        namespaces.insert("at".to_string(), AT_NS.to_string());
        let deleted = feed
            .tombstones
            .iter()
            .map(|t| {
                let when = fixed(t.when).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                element("at:deleted-entry", &[("ref", t.id.clone()), ("when", when)])
            })
            .collect();
        map.entry("at".into())
            .or_default()
            .insert("deleted-entry".into(), deleted);
    }
    (map, namespaces)
}

/// Renders the feed a chunk of entries at a time (see [`super::chunked`]), so a feed of
/// 100,000 entries never holds 100,000 `atom_syndication::Entry` copies of its text at once.
/// The bytes are those of [`render_whole`]: an entry's markup does not depend on the others,
/// and what stands around the entries does not depend on them at all.
pub fn render(feed: &Feed<'_>) -> Vec<u8> {
    let whole = || render_whole(feed, &feed.entries);
    if feed.entries.len() <= super::CHUNK {
        return whole();
    }
    let empty = render_whole(feed, &[]);
    let first = render_whole(feed, &feed.entries[..1]);
    let entries_at = |doc: &[u8]| super::find(doc, b"<entry>");
    let Some(at) = entries_at(&first).filter(|&at| at <= empty.len() && first[..at] == empty[..at])
    else {
        return whole();
    };
    let (head, tail) = empty.split_at(at);
    super::chunked(
        feed,
        head,
        tail,
        |entries| render_whole(feed, entries),
        |doc| {
            let end = doc.len().checked_sub(tail.len())?;
            (doc.starts_with(head) && doc[at..].starts_with(b"<entry>") && doc[end..] == *tail)
                .then_some(at..end)
        },
    )
    .unwrap_or_else(whole)
}

/// The whole feed, with `chosen` as its entries.
pub(super) fn render_whole(feed: &Feed<'_>, chosen: &[&crate::model::Entry]) -> Vec<u8> {
    let entries: Vec<Entry> = chosen
        .iter()
        .map(|e| Entry {
            id: clean(&e.id),
            title: Text::plain(clean(&e.title)),
            updated: fixed(e.updated),
            published: Some(fixed(e.published)),
            authors: e.authors.iter().map(|a| person(a)).collect(),
            links: vec![link(&e.url, "alternate", Some("text/html"))],
            summary: Some(Text::plain(clean(&e.summary))),
            content: Some(Content {
                value: Some(clean(&e.content_html)),
                content_type: Some("html".into()),
                ..Default::default()
            }),
            ..Default::default()
        })
        .collect();
    let mut links = vec![
        link(
            &feed.self_url(Format::Atom),
            "self",
            Some(Format::Atom.link_type()),
        ),
        link(&feed.page_url, "alternate", Some("text/html")),
    ];
    for (rel, href) in history_links(&feed.history, Format::Atom) {
        links.push(link(&href, rel, Some(Format::Atom.link_type())));
    }
    // WebSub §4: the hub subscribers subscribe at.
    if let Some(hub) = &feed.hub {
        links.push(link(hub, "hub", None));
    }
    let (extensions, namespaces) = extensions(feed);
    let atom = AtomFeed {
        id: clean(&feed.id),
        title: Text::plain(clean(feed.title)),
        subtitle: Some(Text::plain(clean(&feed.description_text()))),
        updated: fixed(feed.updated),
        authors: vec![person(feed.author)],
        links,
        extensions,
        namespaces,
        generator: Some(Generator {
            value: "livefeed".into(),
            ..Default::default()
        }),
        lang: Some(clean(feed.language)),
        entries,
        ..Default::default()
    };
    // Writing into a Vec cannot fail.
    let mut out = atom
        .write_to(Vec::with_capacity(super::size_hint(chosen)))
        .unwrap_or_default();
    out.push(b'\n');
    out
}
