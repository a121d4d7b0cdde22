//! Atom 1.0 (RFC 4287) through `atom_syndication`: self and alternate links, a feed-level
//! author so every entry has one, HTML content, RFC 3339 dates in UTC.

use atom_syndication::{Content, Entry, Feed as AtomFeed, Generator, Link, Person, Text};
use chrono::{DateTime, FixedOffset, Utc};

use super::{Feed, Format};

fn fixed(t: DateTime<Utc>) -> DateTime<FixedOffset> {
    t.fixed_offset()
}

fn link(href: &str, rel: &str, mime: Option<&str>) -> Link {
    Link {
        href: href.to_string(),
        rel: rel.to_string(),
        mime_type: mime.map(str::to_string),
        ..Default::default()
    }
}

fn person(name: &str) -> Person {
    Person {
        name: name.to_string(),
        ..Default::default()
    }
}

pub fn render(feed: &Feed<'_>) -> Vec<u8> {
    let entries: Vec<Entry> = feed
        .entries
        .iter()
        .map(|e| Entry {
            id: e.id.clone(),
            title: Text::plain(e.title.clone()),
            updated: fixed(e.updated),
            published: Some(fixed(e.published)),
            authors: e.authors.iter().map(|a| person(a)).collect(),
            links: vec![link(&e.url, "alternate", Some("text/html"))],
            summary: Some(Text::plain(e.summary.clone())),
            content: Some(Content {
                value: Some(e.content_html.clone()),
                content_type: Some("html".into()),
                ..Default::default()
            }),
            ..Default::default()
        })
        .collect();
    let atom = AtomFeed {
        id: feed.id.clone(),
        title: Text::plain(feed.title),
        subtitle: Some(Text::plain(feed.description)),
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
        lang: Some(feed.language.to_string()),
        entries,
        ..Default::default()
    };
    let mut out = atom.to_string().into_bytes();
    out.push(b'\n');
    out
}
