//! JSON Feed 1.1 (https://jsonfeed.org/version/1.1), with a `_livefeed` extension per item
//! saying which story it belongs to, whether its time was inferred and (only when it was)
//! whether its title was derived from its text.

use serde::Serialize;

use super::{Feed, Format};

#[derive(Serialize)]
struct JsonFeed<'a> {
    version: &'static str,
    title: &'a str,
    home_page_url: &'a str,
    feed_url: String,
    description: std::borrow::Cow<'a, str>,
    language: &'a str,
    /// The story has ended: no more items are expected (JSON Feed 1.1 `expired`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    expired: bool,
    authors: [Author<'a>; 1],
    /// The next older page (RFC 5005's `prev-archive`, JSON Feed's pagination).
    #[serde(skip_serializing_if = "Option::is_none")]
    next_url: Option<String>,
    /// The WebSub hub (JSON Feed 1.1 `hubs`).
    #[serde(skip_serializing_if = "Option::is_none")]
    hubs: Option<[Hub<'a>; 1]>,
    items: Vec<Item<'a>>,
    /// Entries deleted lately (as Atom's `at:deleted-entry`), so clients can remove them.
    #[serde(skip_serializing_if = "Option::is_none")]
    _livefeed: Option<FeedExtension<'a>>,
}

#[derive(Serialize)]
struct FeedExtension<'a> {
    deleted: Vec<Deleted<'a>>,
}

#[derive(Serialize)]
struct Deleted<'a> {
    id: &'a str,
    when: String,
}

#[derive(Serialize)]
struct Hub<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    url: &'a str,
}

#[derive(Serialize)]
struct Author<'a> {
    name: &'a str,
}

#[derive(Serialize)]
struct Item<'a> {
    id: &'a str,
    url: &'a str,
    title: &'a str,
    content_html: &'a str,
    summary: &'a str,
    date_published: String,
    date_modified: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    authors: Vec<Author<'a>>,
    _livefeed: Extension<'a>,
}

#[derive(Serialize)]
struct Extension<'a> {
    story: &'a str,
    time_inferred: bool,
    /// The entry had no headline: its title was made from its first sentence.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    title_derived: bool,
    /// A key event of the story.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    key: bool,
    /// The story's pinned entry.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pinned: bool,
}

fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    super::feed_time(t).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

pub fn render(feed: &Feed<'_>) -> Vec<u8> {
    let doc = JsonFeed {
        version: "https://jsonfeed.org/version/1.1",
        title: feed.title,
        home_page_url: &feed.page_url,
        feed_url: feed.self_url(Format::Json),
        description: feed.description_text(),
        language: feed.language,
        expired: feed.ended.is_some(),
        authors: [Author { name: feed.author }],
        next_url: super::History::url(&feed.history.prev_archive, Format::Json),
        hubs: feed.hub.as_deref().map(|url| {
            [Hub {
                kind: "WebSub",
                url,
            }]
        }),
        _livefeed: (!feed.tombstones.is_empty()).then(|| FeedExtension {
            deleted: feed
                .tombstones
                .iter()
                .map(|t| Deleted {
                    id: &t.id,
                    when: rfc3339(t.when),
                })
                .collect(),
        }),
        items: feed
            .entries
            .iter()
            .map(|e| Item {
                id: &e.id,
                url: &e.url,
                title: &e.title,
                content_html: &e.content_html,
                summary: &e.summary,
                date_published: rfc3339(e.published),
                date_modified: rfc3339(e.updated),
                authors: e.authors.iter().map(|a| Author { name: a }).collect(),
                _livefeed: Extension {
                    story: &e.story,
                    time_inferred: e.time_inferred,
                    title_derived: e.title_derived,
                    key: e.key,
                    pinned: e.pinned,
                },
            })
            .collect(),
    };
    // Serialising plain structs of strings and bools cannot fail.
    let mut out = Vec::with_capacity(feed.size_hint());
    if serde_json::to_writer_pretty(&mut out, &doc).is_err() {
        out.clear();
    }
    out.push(b'\n');
    out
}
