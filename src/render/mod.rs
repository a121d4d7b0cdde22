//! Stories → bytes. One renderer for the static build and the server: the bytes `livefeed
//! build` writes are the bytes `livefeed serve` sends.
//!
//! Architecture invariant: nothing here reads the clock, the disk or the network; the output is
//! a function of the [`Site`] alone, so it is reproducible to the byte.

pub mod atom;
pub mod html;
pub mod json;
pub mod rss;

use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

use crate::ingest::normalise::{story_id, tag_authority};
use crate::ingest::site::Site;
use crate::layout::{FileKey, archive_file, feed_file};
use crate::model::{Entry, Story, Tombstone, newest_first};

/// The slug of the combined feed of every story.
pub const ALL: &str = "all";

pub use crate::ingest::site::DEFAULT_FEED_ENTRIES;

/// The RFC 5005 history namespace (`fh:archive`).
pub const FH_NS: &str = "http://purl.org/syndication/history/1.0";
/// The RFC 6721 tombstones namespace (`at:deleted-entry`).
pub const AT_NS: &str = "http://purl.org/atompub/tombstones/1.0";

/// A time as feeds can carry it: RFC 2822 and RFC 3339 dates have four-digit years, so a time
/// outside years 1–9999 is clamped into them (year 0 exists in neither readers nor Python). Only absurd input makes one (an edit a second
/// after 9999-12-31T23:59:59Z, a report time line in year 20201); chrono would panic writing
/// it as RFC 2822, and write an RFC 3339 date no reader takes.
pub(crate) fn feed_time(t: DateTime<Utc>) -> DateTime<Utc> {
    let first = DateTime::<Utc>::from_timestamp(-62_135_596_800, 0); // 0001-01-01T00:00:00Z
    let last = DateTime::<Utc>::from_timestamp(253_402_300_799, 0); // 9999-12-31T23:59:59Z
    match (first, last) {
        (Some(first), Some(last)) => t.clamp(first, last),
        _ => t,
    }
}

/// A feed format, named by its file extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Format {
    Rss,
    Atom,
    Json,
}

impl Format {
    pub const ALL: [Format; 3] = [Format::Rss, Format::Atom, Format::Json];

    pub fn ext(self) -> &'static str {
        match self {
            Format::Rss => "rss",
            Format::Atom => "atom",
            Format::Json => "json",
        }
    }

    pub fn from_ext(ext: &str) -> Option<Format> {
        Format::ALL.into_iter().find(|f| f.ext() == ext)
    }

    /// The media type, with charset.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Rss => "application/rss+xml; charset=utf-8",
            Format::Atom => "application/atom+xml; charset=utf-8",
            Format::Json => "application/feed+json; charset=utf-8",
        }
    }

    /// The media type for `<link rel="alternate" type=…>`.
    pub fn link_type(self) -> &'static str {
        match self {
            Format::Rss => "application/rss+xml",
            Format::Atom => "application/atom+xml",
            Format::Json => "application/feed+json",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Format::Rss => "RSS",
            Format::Atom => "Atom",
            Format::Json => "JSON Feed",
        }
    }
}

/// What one feed is made of: a story, or every story together.
#[derive(Debug, Clone)]
pub struct Feed<'a> {
    pub slug: &'a str,
    pub id: String,
    pub title: &'a str,
    pub description: &'a str,
    /// The page the feed stands for (`rel="alternate"`).
    pub page_url: String,
    /// `{base}/feeds/{slug}.`; add the extension.
    pub(crate) self_base: String,
    /// Newest first.
    pub entries: Vec<&'a Entry>,
    /// The newest item's `updated`; the story's own time when it has no items. Never the clock.
    pub updated: DateTime<Utc>,
    pub author: &'a str,
    pub language: &'a str,
    /// Where this document sits in the feed's RFC 5005 history.
    pub history: History,
    /// Entries deleted lately, newest first (current documents only).
    pub tombstones: Vec<&'a Tombstone>,
    /// When the story ended (current documents only): JSON Feed `expired`, and a line in
    /// every format's description.
    pub ended: Option<DateTime<Utc>>,
    /// The WebSub hub this document advertises (current documents only: archives are no
    /// topics).
    pub hub: Option<String>,
}

/// A document's RFC 5005 links, each a URL base like [`Feed::self_base`] (add the extension).
#[derive(Debug, Clone, Default, Hash)]
pub struct History {
    /// An archive document (`fh:archive`), not the current one.
    pub archive: bool,
    /// The next older archive document.
    pub(crate) prev_archive: Option<String>,
    /// The next newer archive document (archives only).
    pub(crate) next_archive: Option<String>,
    /// The current document (archives only).
    pub current: Option<String>,
}

impl History {
    pub fn url(base: &Option<String>, format: Format) -> Option<String> {
        base.as_ref().map(|b| format!("{b}{}", format.ext()))
    }
}

/// How many archive documents a feed of `total` entries has with `n` per page: archive page
/// `k` holds the entries `k*n+1 ..= (k+1)*n` counted from the oldest, and a page is cut only
/// once `n` newer entries exist beyond it, so the current document always carries the newest
/// `n` entries at least (and fewer than `2n`). `n == 0` means no archives.
pub(crate) fn archive_pages(total: usize, n: usize) -> usize {
    total
        .checked_div(n)
        .map_or(0, |pages| pages.saturating_sub(1))
}

/// The URL base of archive page `k` of the feed whose URL base is `self_base` (`…/feeds/{slug}.`).
fn archive_base(self_base: &str, k: usize) -> String {
    crate::layout::archive_base(self_base, k)
}

/// Splits a whole-history feed into its current document and its archive documents (oldest
/// first; see [`archive_pages`]). Each archive document is a function of its own entries and
/// whether a newer archive exists, so a full page changes only when one of its entries is
/// edited or deleted (a delete, or an entry published with an older time, shifts the later
/// pages by one), and once when the next page is cut (it gains `next-archive`).
pub(crate) fn paged<'a>(feed: Feed<'a>, n: usize) -> (Feed<'a>, Vec<Feed<'a>>) {
    let total = feed.entries.len();
    let pages = archive_pages(total, n);
    let archives = (0..pages)
        .map(|k| {
            // Newest first: page k is the slice ending `k*n` from the end.
            let entries: Vec<&Entry> = feed.entries[total - (k + 1) * n..total - k * n].to_vec();
            Feed {
                self_base: archive_base(&feed.self_base, k),
                updated: newest(&entries, feed.updated),
                entries,
                history: History {
                    archive: true,
                    prev_archive: (k > 0).then(|| archive_base(&feed.self_base, k - 1)),
                    next_archive: (k + 1 < pages).then(|| archive_base(&feed.self_base, k + 1)),
                    current: Some(feed.self_base.clone()),
                },
                tombstones: Vec::new(),
                // An archive document never changes once full: the end is the current one's.
                ended: None,
                hub: None,
                ..feed.clone()
            }
        })
        .collect();
    let mut current = feed;
    current.entries.truncate(total - pages * n);
    if pages > 0 {
        current.history.prev_archive = Some(archive_base(&current.self_base, pages - 1));
    }
    if n > 0 {
        current.tombstones.truncate(n);
    }
    (current, archives)
}

impl Feed<'_> {
    /// A hash of everything the renderers read, so an unchanged archive page is not rendered
    /// again (`log::renderer`).
    pub(crate) fn fingerprint(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::hash::DefaultHasher::new();
        (
            self.id.as_str(),
            self.title,
            self.description,
            &self.page_url,
        )
            .hash(&mut h);
        (&self.self_base, self.updated, self.author, self.language).hash(&mut h);
        (&self.history, self.ended, &self.hub).hash(&mut h);
        for t in &self.tombstones {
            (&t.id, t.when).hash(&mut h);
        }
        for e in &self.entries {
            (&e.id, &e.story, &e.title, e.title_derived, &e.authors).hash(&mut h);
            (e.published, e.updated, e.time_inferred, &e.summary).hash(&mut h);
            (&e.content_html, &e.url, e.key, e.pinned).hash(&mut h);
        }
        h.finish()
    }

    /// The feed's description, with a line saying so once the story has ended.
    pub(crate) fn description_text(&self) -> std::borrow::Cow<'_, str> {
        match self.ended {
            None => self.description.into(),
            Some(t) => format!(
                "{} (This story has ended: coverage ended {}.)",
                self.description.trim_end(),
                t.format("%-d %B %Y %H:%M UTC")
            )
            .into(),
        }
    }

    /// A guess at the rendered size, so output buffers are allocated once.
    pub(crate) fn size_hint(&self) -> usize {
        size_hint(&self.entries)
    }

    pub(crate) fn self_url(&self, format: Format) -> String {
        format!("{}{}", self.self_base, format.ext())
    }
}

/// A guess at the size of a document of `entries`, so output buffers are allocated once.
pub(crate) fn size_hint(entries: &[&Entry]) -> usize {
    4096 + entries
        .iter()
        .map(|e| 512 + e.content_html.len() + e.summary.len() + e.title.len() + 2 * e.url.len())
        .sum::<usize>()
}

/// Entries the RSS and Atom renderers turn into their crates' values at a time.
pub(crate) const CHUNK: usize = 256;

/// Where `needle` first occurs in `hay`.
pub(crate) fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A large feed rendered [`CHUNK`] entries at a time: `head`, then the entries' markup cut out
/// of each chunk's document by `body` (`None` when a document is not as expected, and then
/// the caller renders the feed whole), then `tail`. The feed crates need owned copies of
/// every string they write; rendered whole, a feed of 100,000 entries holds a copy of all
/// its text beside the output, rendered in chunks only a chunk's.
pub(crate) fn chunked(
    feed: &Feed<'_>,
    head: &[u8],
    tail: &[u8],
    render: impl Fn(&[&Entry]) -> Vec<u8>,
    body: impl Fn(&[u8]) -> Option<std::ops::Range<usize>>,
) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(feed.size_hint());
    out.extend_from_slice(head);
    for chunk in feed.entries.chunks(CHUNK) {
        let doc = render(chunk);
        out.extend_from_slice(doc.get(body(&doc)?)?);
    }
    out.extend_from_slice(tail);
    Some(out)
}

fn newest(entries: &[&Entry], fallback: DateTime<Utc>) -> DateTime<Utc> {
    entries.iter().map(|e| e.updated).max().unwrap_or(fallback)
}

/// The feed of one story.
pub fn story_feed<'a>(site: &'a Site, story: &'a Story) -> Feed<'a> {
    let mut entries: Vec<&Entry> = story.entries.iter().collect();
    entries.sort_by(|a, b| newest_first(a, b));
    Feed {
        slug: &story.slug,
        id: story_id(
            &tag_authority(Some(&story.url)),
            story.published,
            &story.slug,
        ),
        title: &story.title,
        description: if story.description.is_empty() {
            &story.title
        } else {
            &story.description
        },
        page_url: story.url.clone(),
        self_base: crate::layout::feed_base(&site.base_url, &story.slug),
        updated: newest(&entries, story.published),
        entries,
        author: &site.info.author,
        language: &site.info.language,
        history: History::default(),
        tombstones: story.tombstones.iter().rev().collect(),
        ended: story.ended,
        hub: site.websub_hub.clone(),
    }
}

/// The combined feed of every story.
pub fn all_feed(site: &Site) -> Feed<'_> {
    let mut entries: Vec<&Entry> = site.stories.iter().flat_map(|s| &s.entries).collect();
    entries.sort_by(|a, b| newest_first(a, b));
    let first = site.stories.iter().map(|s| s.published).min();
    let since = first.unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
    let mut tombstones: Vec<&Tombstone> = site.stories.iter().flat_map(|s| &s.tombstones).collect();
    tombstones.sort_by(|a, b| b.when.cmp(&a.when).then_with(|| a.id.cmp(&b.id)));
    tombstones.truncate(crate::model::MAX_TOMBSTONES);
    Feed {
        slug: ALL,
        id: story_id(&tag_authority(Some(&site.base_url)), since, ALL),
        title: &site.info.title,
        description: if site.info.description.is_empty() {
            &site.info.title
        } else {
            &site.info.description
        },
        page_url: format!("{}/", site.base_url),
        self_base: crate::layout::feed_base(&site.base_url, ALL),
        updated: newest(&entries, since),
        entries,
        author: &site.info.author,
        language: &site.info.language,
        history: History::default(),
        tombstones,
        ended: None,
        hub: site.websub_hub.clone(),
    }
}

/// Renders one feed in one format.
pub fn render_feed(feed: &Feed<'_>, format: Format) -> Vec<u8> {
    match format {
        Format::Rss => rss::render(feed),
        Format::Atom => atom::render(feed),
        Format::Json => json::render(feed),
    }
}

/// One file of a static build, not yet rendered.
enum Job<'a> {
    Feed(Feed<'a>, Format),
    /// Archive page `k` of a feed.
    Archive(Feed<'a>, usize, Format),
    Index,
    /// A story page (in the site layout only), reflecting the log up to `seq`.
    Page(&'a Story, u64),
}

impl Job<'_> {
    /// The file's name, known before it is rendered.
    fn name(&self, layout: Layout) -> String {
        match (self, layout) {
            (Job::Feed(feed, format), Layout::Flat) => feed_file(feed.slug, *format),
            (Job::Feed(feed, format), Layout::Site) => {
                FileKey::Feed(feed.slug.to_string(), *format).output_file()
            }
            (Job::Archive(feed, k, format), Layout::Flat) => archive_file(feed.slug, *k, *format),
            (Job::Archive(feed, k, format), Layout::Site) => {
                FileKey::Archive(feed.slug.to_string(), *k, *format).output_file()
            }
            (Job::Index, _) => FileKey::Index.output_file(),
            (Job::Page(story, _), _) => FileKey::Page(story.slug.clone()).output_file(),
        }
    }

    fn render(&self, site: &Site, layout: Layout) -> (String, Vec<u8>) {
        let bytes = match self {
            Job::Feed(feed, format) | Job::Archive(feed, _, format) => render_feed(feed, *format),
            Job::Index => html::index(site).into_bytes(),
            Job::Page(story, seq) => html::story_page(site, story, *seq).into_bytes(),
        };
        (self.name(layout), bytes)
    }
}

/// How file names are laid out.
#[derive(Clone, Copy)]
enum Layout {
    /// The feeds by file name (`all.rss`) and `index.html`.
    Flat,
    /// The site as served: `feeds/{slug}.{ext}`, `stories/{slug}/index.html`, `index.html`.
    Site,
}

fn site_jobs(site: &Site, seq: u64) -> Vec<Job<'_>> {
    let mut jobs = jobs(site);
    jobs.extend(site.stories.iter().map(|s| Job::Page(s, seq)));
    jobs
}

fn jobs(site: &Site) -> Vec<Job<'_>> {
    let mut feeds: Vec<Feed<'_>> = site.stories.iter().map(|s| story_feed(site, s)).collect();
    feeds.push(all_feed(site));
    let mut jobs = Vec::with_capacity(feeds.len() * 3 + 1);
    for feed in feeds {
        let (current, archives) = paged(feed, site.feed_entries);
        for format in Format::ALL {
            jobs.push(Job::Feed(current.clone(), format));
        }
        for (k, archive) in archives.into_iter().enumerate() {
            for format in Format::ALL {
                jobs.push(Job::Archive(archive.clone(), k, format));
            }
        }
    }
    jobs.push(Job::Index);
    jobs
}

/// The feeds and the index by file name: three feeds per story (`{slug}.rss`…), three for
/// `all`, and `index.html`. Rendered one at a time, in order. (The static build writes them in
/// the site layout, with the story pages: [`site_files`].)
pub fn files(site: &Site) -> impl Iterator<Item = (String, Vec<u8>)> + '_ {
    jobs(site)
        .into_iter()
        .map(move |job| job.render(site, Layout::Flat))
}

/// Every file of a static build, by path relative to the output directory, in the layout of
/// the server's URLs, so the output works served as it is under the base URL:
/// `feeds/{slug}.{rss,atom,json}` (every story and `all`), `stories/{slug}/index.html` (the
/// page `livefeed serve` sends at `/stories/{slug}/`, reflecting the log up to `seq`) and
/// `index.html`. Rendered one at a time, in order.
pub fn site_files(site: &Site, seq: u64) -> impl Iterator<Item = (String, Vec<u8>)> + '_ {
    site_jobs(site, seq)
        .into_iter()
        .map(move |job| job.render(site, Layout::Site))
}

/// Like [`site_files`], rendered on every core, handed to `consume` as they finish (in no
/// fixed order; each file's bytes are the same as ever). At most a few files are in memory at
/// once.
pub fn with_files_parallel<R>(
    site: &Site,
    seq: u64,
    consume: impl FnOnce(&mut dyn Iterator<Item = (String, Vec<u8>)>) -> R,
) -> R {
    with_some_files_parallel(site, seq, |_| true, consume)
}

/// [`with_files_parallel`] for the files whose name `keep` accepts; the others are not
/// rendered.
pub fn with_some_files_parallel<R>(
    site: &Site,
    seq: u64,
    keep: impl Fn(&str) -> bool,
    consume: impl FnOnce(&mut dyn Iterator<Item = (String, Vec<u8>)>) -> R,
) -> R {
    let mut jobs = site_jobs(site, seq);
    jobs.retain(|job| keep(&job.name(Layout::Site)));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 4);
    let (tx, rx) = std::sync::mpsc::sync_channel(0);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            let tx = tx.clone();
            let (jobs, next) = (&jobs, &next);
            scope.spawn(move || {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(job) = jobs.get(i) else { break };
                    if tx.send(job.render(site, Layout::Site)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        // The receiver is dropped before the scope joins, so workers never block forever.
        let mut received = rx.into_iter();
        consume(&mut received)
    })
}

/// The feeds and the index (see [`files`]), collected by name.
pub fn render_site(site: &Site) -> BTreeMap<String, Vec<u8>> {
    files(site).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A feed several chunks long, with what changes an RSS or Atom document around its
    /// entries: entries with and without authors (the `dc` namespace), tombstones, archive
    /// links, a hub, text that needs escaping and a CDATA end inside content.
    fn entries(n: usize) -> Vec<Entry> {
        let t0 = DateTime::<Utc>::from_timestamp(1_370_000_000, 0).unwrap_or_default();
        (0..n)
            .map(|i| Entry {
                story: "big".into(),
                id: format!("tag:example.org,2013-05-01:big/e{i}"),
                anchor: format!("e{i}"),
                title: format!("Update {i} <&> 'quoted' \"too\""),
                authors: if i % 3 == 1 {
                    vec![format!("A {i}"), "B".into()]
                } else {
                    vec![]
                },
                published: t0 + chrono::Duration::seconds(i as i64),
                updated: t0 + chrono::Duration::seconds(2 * i as i64),
                summary: format!("Summary {i} & <more> ]]> text"),
                content_html: format!("<p>Entry {i} &amp; ]]&gt; ]]> done</p>"),
                url: format!("https://example.org/stories/big#e{i}"),
                ..Default::default()
            })
            .collect()
    }

    #[test]
    fn chunked_rendering_gives_the_whole_document() {
        let all = entries(3 * CHUNK + 7);
        let tomb = Tombstone {
            id: "tag:example.org,2013-05-01:big/gone".into(),
            when: all[0].updated,
        };
        for (first_with_authors, archive, tombstones) in [
            (0, false, true),
            (1, true, false),
            (2 * CHUNK, false, false),
        ] {
            // Authors only from `first_with_authors` on: the header's namespaces must still
            // be those of every item.
            let mut feed_entries: Vec<&Entry> = all.iter().rev().collect();
            let without: Vec<Entry> = all
                .iter()
                .rev()
                .enumerate()
                .map(|(i, e)| Entry {
                    authors: if i < first_with_authors {
                        vec![]
                    } else {
                        e.authors.clone()
                    },
                    ..e.clone()
                })
                .collect();
            if first_with_authors > 0 {
                feed_entries = without.iter().collect();
            }
            let feed = Feed {
                slug: "big",
                id: "tag:example.org,2013-05-01:big".into(),
                title: "Big & <bold>",
                description: "A big story",
                page_url: "https://example.org/stories/big".into(),
                self_base: "https://example.org/feeds/big.".into(),
                updated: all[all.len() - 1].updated,
                entries: feed_entries,
                author: "Bench",
                language: "en-gb",
                history: History {
                    archive,
                    prev_archive: Some("https://example.org/feeds/big/archive/0.".into()),
                    next_archive: archive
                        .then(|| "https://example.org/feeds/big/archive/2.".into()),
                    current: archive.then(|| "https://example.org/feeds/big.".into()),
                },
                tombstones: if tombstones { vec![&tomb] } else { vec![] },
                ended: None,
                hub: Some("https://example.org/websub".into()),
            };
            let newest = feed
                .entries
                .iter()
                .map(|e| e.published)
                .max()
                .unwrap_or(feed.updated);
            let rss_whole = rss::render_whole(&feed, &feed.entries, newest);
            assert_eq!(
                String::from_utf8_lossy(&rss::render(&feed)),
                String::from_utf8_lossy(&rss_whole)
            );
            let atom_whole = atom::render_whole(&feed, &feed.entries);
            assert_eq!(
                String::from_utf8_lossy(&atom::render(&feed)),
                String::from_utf8_lossy(&atom_whole)
            );
        }
    }
}
