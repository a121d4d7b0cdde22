//! RSS 2.0 through the `rss` crate: `atom:link rel="self"`, `content:encoded` beside the
//! description (the summary, escaped as HTML text), `dc:creator` for authors, guids that are
//! not permalinks, RFC 2822 dates in UTC. Every string passes through [`clean`] on the way
//! in: XML 1.0 cannot carry control characters, whatever built the entry.

use chrono::{DateTime, Utc};
use rss::extension::atom::{AtomExtension, Link};
use rss::extension::dublincore::DublinCoreExtension;
use rss::{Channel, Guid, Item};

use super::{FH_NS, Feed, Format, feed_time};
use crate::text::{Escape, clean, escape};

/// Feed readers take an item's `description` as HTML, so the plain-text summary goes in with
/// `&`, `<` and `>` escaped ([`Escape::Text`]): it reads as the same text and can never become
/// markup.
fn html_text(s: &str) -> String {
    escape(s, Escape::Text)
}

/// An RFC 2822 date (chrono's, which panics outside four-digit years: hence [`feed_time`]).
fn rfc2822(t: DateTime<Utc>) -> String {
    feed_time(t).to_rfc2822()
}

/// The channel's closing tags and the final newline: items are the last thing in it.
const RSS_TAIL: &[u8] = b"</channel></rss>\n";

/// Renders the feed a chunk of items at a time (see [`super::chunked`]), so a feed of 100,000
/// entries never holds 100,000 `rss::Item` copies of its text at once. The bytes are those of
/// [`render_whole`]: an item's markup does not depend on the others, and the channel around
/// the items depends on them only through the namespaces they use (`content` for every item,
/// `dc` for one with authors), which are those of a channel of one entry without authors and
/// one with.
pub fn render(feed: &Feed<'_>) -> Vec<u8> {
    let newest_published = feed
        .entries
        .iter()
        .map(|e| e.published)
        .max()
        .unwrap_or(feed.updated);
    let render_whole =
        |chosen: &[&crate::model::Entry]| render_whole(feed, chosen, newest_published);
    let whole = || render_whole(&feed.entries);
    if feed.entries.len() <= super::CHUNK {
        return whole();
    }
    let mut witnesses: Vec<&crate::model::Entry> = Vec::with_capacity(2);
    witnesses.extend(feed.entries.iter().find(|e| e.authors.is_empty()).copied());
    witnesses.extend(feed.entries.iter().find(|e| !e.authors.is_empty()).copied());
    let header = render_whole(&witnesses);
    let items_at = |doc: &[u8]| super::find(doc, b"<item>");
    let Some(at) = items_at(&header).filter(|_| header.ends_with(RSS_TAIL)) else {
        return whole();
    };
    super::chunked(feed, &header[..at], RSS_TAIL, render_whole, |doc| {
        let end = doc.len().checked_sub(RSS_TAIL.len())?;
        let start = items_at(doc)?;
        doc[end..].starts_with(RSS_TAIL).then_some(start..end)
    })
    .unwrap_or_else(whole)
}

/// The whole channel, with `chosen` as its items (`pubDate`: the newest of all the feed's).
pub(super) fn render_whole(
    feed: &Feed<'_>,
    chosen: &[&crate::model::Entry],
    newest_published: DateTime<Utc>,
) -> Vec<u8> {
    let items: Vec<Item> = chosen
        .iter()
        .map(|e| Item {
            title: Some(clean(&e.title)),
            link: Some(clean(&e.url)),
            description: Some(html_text(&clean(&e.summary))),
            guid: Some(Guid {
                value: clean(&e.id),
                permalink: false,
            }),
            pub_date: Some(rfc2822(e.published)),
            content: Some(clean(&e.content_html)),
            dublin_core_ext: (!e.authors.is_empty()).then(|| DublinCoreExtension {
                creators: e.authors.iter().map(|a| clean(a)).collect(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .collect();
    let self_link = Link {
        href: clean(&feed.self_url(Format::Rss)),
        rel: "self".into(),
        mime_type: Some(Format::Rss.link_type().into()),
        ..Default::default()
    };
    let mut links = vec![self_link];
    // RFC 5005 Appendix B: the history links as `atom:link`, `fh:archive` in the channel.
    for (rel, href) in super::atom::history_links(&feed.history, Format::Rss) {
        links.push(Link {
            href: clean(&href),
            rel: rel.into(),
            mime_type: Some(Format::Rss.link_type().into()),
            ..Default::default()
        });
    }
    // WebSub §4: the hub, as `atom:link rel="hub"` (RSS has no element of its own for it).
    if let Some(hub) = &feed.hub {
        links.push(Link {
            href: clean(hub),
            rel: "hub".into(),
            ..Default::default()
        });
    }
    let mut extensions = rss::extension::ExtensionMap::new();
    let mut namespaces = std::collections::BTreeMap::new();
    if feed.history.archive {
        namespaces.insert("fh".to_string(), FH_NS.to_string());
        let archive = rss::extension::Extension {
            name: "fh:archive".into(),
            ..Default::default()
        };
        extensions
            .entry("fh".into())
            .or_default()
            .insert("archive".into(), vec![archive]);
    }
    let channel = Channel {
        title: clean(feed.title),
        link: clean(&feed.page_url),
        description: clean(&feed.description_text()),
        language: Some(clean(feed.language)),
        pub_date: Some(rfc2822(newest_published)),
        last_build_date: Some(rfc2822(feed.updated)),
        generator: Some("livefeed".into()),
        docs: Some("https://www.rssboard.org/rss-specification".into()),
        atom_ext: Some(AtomExtension { links }),
        extensions,
        namespaces,
        items,
        ..Default::default()
    };
    // Writing into a Vec cannot fail.
    let mut out = channel
        .write_to(Vec::with_capacity(super::size_hint(chosen)))
        .unwrap_or_default();
    out.push(b'\n');
    out
}
