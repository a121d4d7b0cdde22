//! Atom 1.0 (RFC 4287) through `atom_syndication`: self and alternate links, a feed-level
//! author so every entry has one, HTML content, RFC 3339 dates in UTC. Strings pass through
//! [`clean`]: XML 1.0 cannot carry control characters, whatever built the entry.

use atom_syndication::{Content, Entry, Feed as AtomFeed, Generator, Link, Person, Text};
use chrono::{DateTime, FixedOffset, Utc};

use super::{Feed, Format};
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

pub fn render(feed: &Feed<'_>) -> Vec<u8> {
    let entries: Vec<Entry> = feed
        .entries
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
    let atom = AtomFeed {
        id: clean(&feed.id),
        title: Text::plain(clean(feed.title)),
        subtitle: Some(Text::plain(clean(feed.description))),
        updated: fixed(feed.updated),
        authors: vec![person(feed.author)],
        links: vec![
            link(
                &feed.self_url(Format::Atom),
                "self",
                Some(Format::Atom.link_type()),
            ),
            link(&feed.page_url, "alternate", Some("text/html")),
        ],
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
        .write_to(Vec::with_capacity(feed.size_hint()))
        .unwrap_or_default();
    out.push(b'\n');
    out
}
