//! RSS 2.0 through the `rss` crate: `atom:link rel="self"`, `content:encoded` beside the
//! description, `dc:creator` for authors, guids that are not permalinks, RFC 2822 dates in UTC.

use rss::extension::atom::{AtomExtension, Link};
use rss::extension::dublincore::DublinCoreExtension;
use rss::{Channel, Guid, Item};

use super::{Feed, Format};

pub fn render(feed: &Feed<'_>) -> Vec<u8> {
    let items: Vec<Item> = feed
        .entries
        .iter()
        .map(|e| Item {
            title: Some(e.title.clone()),
            link: Some(e.url.clone()),
            description: Some(e.summary.clone()),
            guid: Some(Guid {
                value: e.id.clone(),
                permalink: false,
            }),
            pub_date: Some(e.published.to_rfc2822()),
            content: Some(e.content_html.clone()),
            dublin_core_ext: (!e.authors.is_empty()).then(|| DublinCoreExtension {
                creators: e.authors.clone(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .collect();
    let self_link = Link {
        href: feed.self_url(Format::Rss),
        rel: "self".into(),
        mime_type: Some(Format::Rss.link_type().into()),
        ..Default::default()
    };
    let newest_published = feed
        .entries
        .iter()
        .map(|e| e.published)
        .max()
        .unwrap_or(feed.updated);
    let channel = Channel {
        title: feed.title.to_string(),
        link: feed.page_url.clone(),
        description: feed.description.to_string(),
        language: Some(feed.language.to_string()),
        pub_date: Some(newest_published.to_rfc2822()),
        last_build_date: Some(feed.updated.to_rfc2822()),
        generator: Some("livefeed".into()),
        docs: Some("https://www.rssboard.org/rss-specification".into()),
        atom_ext: Some(AtomExtension {
            links: vec![self_link],
        }),
        items,
        ..Default::default()
    };
    let mut out = channel.to_string().into_bytes();
    out.push(b'\n');
    out
}
