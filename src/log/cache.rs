//! Rendering into the hub's cache: each file rendered once per version, compressed once, with
//! its validators computed once. The same renderer as the static build.

use bytes::Bytes;
use chrono::{DateTime, SubsecRound, Utc};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::io::Write;

use super::event::Op;
use super::hub::CachedFile;
use crate::ingest::site::Site;
use crate::layout::FileKey;
use crate::model::Story;
use crate::render::{self, ALL, Format, html};

fn digest(bytes: &[u8]) -> u64 {
    // SipHash with fixed keys: the same bytes give the same tag on every run and host.
    let mut h = std::hash::DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

/// Above this size a file is compressed at the fastest level: a story that large is being
/// re-rendered while it grows, and level 6 would cost several times as long for a few percent.
const FAST_GZIP_OVER: usize = 1 << 20;

fn gzip(bytes: &[u8]) -> Bytes {
    let level = if bytes.len() > FAST_GZIP_OVER {
        flate2::Compression::fast()
    } else {
        flate2::Compression::default()
    };
    let mut enc = flate2::write::GzEncoder::new(Vec::with_capacity(bytes.len() / 4), level);
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(bytes);
    Bytes::from(enc.finish().unwrap_or_default())
}

/// `modified` is the content's time (whole seconds are kept). `honest` says it is that time,
/// not the clock it was clamped to, so a restart gives the same date (see [`Hub::set_files`],
/// which decides whether `If-Modified-Since` may be honoured).
///
/// [`Hub::set_files`]: super::hub::Hub::set_files
pub(crate) fn cached(
    content_type: &'static str,
    body: Vec<u8>,
    modified: DateTime<Utc>,
    honest: bool,
    seq: u64,
) -> CachedFile {
    let tag = digest(&body);
    let modified = modified.trunc_subsecs(0);
    let time = std::time::SystemTime::from(modified);
    CachedFile {
        content_type,
        gzip: gzip(&body),
        body: Bytes::from(body),
        etag: format!("\"{tag:016x}\""),
        etag_gzip: format!("\"{tag:016x}-gz\""),
        modified: time,
        ims: honest,
        newest_modified: time,
        seq,
        headers: std::sync::OnceLock::new(),
    }
}

/// Which contents went only through states of their own `Last-Modified`: true for a story
/// when every event of it, in order, moved its newest `updated` strictly forward (by whole
/// seconds) and none was a delete; the same over every event for the combined feeds and the
/// index (under [`ALL`]). Then a client whose `If-Modified-Since` is the current date holds the
/// current version, whichever of the states it was served. A story with no event is absent
/// (one state only). `events` are `(op, story, public JSON)`, in seq order; each is read once.
pub(crate) fn dates_move_forward<'a>(
    events: impl Iterator<Item = (Op, &'a str, &'a [u8])>,
) -> HashMap<String, bool> {
    #[derive(serde::Deserialize)]
    struct Wire {
        entry: WireEntry,
    }
    #[derive(serde::Deserialize)]
    struct WireEntry {
        updated: DateTime<Utc>,
    }
    // Per story (and `all`): still moving forward, and the newest second so far.
    let mut newest: HashMap<String, (bool, i64)> = HashMap::new();
    let mut step = |key: &str, t: Option<i64>| {
        let (ok, last) = newest.entry(key.to_string()).or_insert((true, i64::MIN));
        match t {
            Some(t) if *ok && t > *last => *last = t,
            _ => *ok = false,
        }
    };
    for (op, story, json) in events {
        let t = match op {
            Op::Delete => None,
            _ => serde_json::from_slice::<Wire>(json)
                .ok()
                .map(|w| w.entry.updated.timestamp()),
        };
        step(story, t);
        step(ALL, t);
    }
    newest.into_iter().map(|(k, (ok, _))| (k, ok)).collect()
}

const HTML: &str = "text/html; charset=utf-8";

/// The fingerprints of the archive pages last rendered, by URL path base
/// (`/feeds/{slug}/archive/{k}`), so a render skips the pages that did not change.
pub type ArchiveMemo = HashMap<(String, usize), u64>;

/// Renders what changes when `stories` change: their feeds and pages, the combined feed and
/// the index. `Last-Modified` comes from the content (the feed's `updated`: its newest entry's
/// time), so it stays the same across a restart; it is never later than `now` (RFC 9110
/// §8.8.2.1), the time of the render. Every archive page is rendered.
pub(crate) fn render_changed(
    site: &Site,
    stories: &[&Story],
    seq: u64,
    now: DateTime<Utc>,
) -> Vec<(FileKey, CachedFile)> {
    render_changed_since(site, stories, seq, now, &mut ArchiveMemo::new())
}

/// [`render_changed`], skipping the archive pages whose fingerprint is in `memo` (rendered
/// before, unchanged), and recording the ones it renders.
pub(crate) fn render_changed_since(
    site: &Site,
    stories: &[&Story],
    seq: u64,
    now: DateTime<Utc>,
    memo: &mut ArchiveMemo,
) -> Vec<(FileKey, CachedFile)> {
    let mut out = Vec::new();
    let date = |t: DateTime<Utc>| (t.min(now), t <= now);
    let mut feed_files = |feed: render::Feed<'_>, out: &mut Vec<(FileKey, CachedFile)>| {
        let slug = feed.slug.to_string();
        let (current, archives) = render::paged(feed, site.feed_entries);
        let (modified, honest) = date(current.updated);
        for format in Format::ALL {
            let body = render::render_feed(&current, format);
            out.push((
                FileKey::Feed(slug.clone(), format),
                cached(format.content_type(), body, modified, honest, seq),
            ));
        }
        let pages = archives.len();
        for (k, archive) in archives.into_iter().enumerate() {
            let key = (slug.clone(), k);
            let print = archive.fingerprint();
            if memo.get(&key) == Some(&print) {
                continue;
            }
            let (modified, honest) = date(archive.updated);
            for format in Format::ALL {
                let body = render::render_feed(&archive, format);
                out.push((
                    FileKey::Archive(slug.clone(), k, format),
                    cached(format.content_type(), body, modified, honest, seq),
                ));
            }
            memo.insert(key, print);
        }
        // Pages gone after deletes are no longer in the chain; forget them.
        memo.retain(|(s, k), _| *s != slug || *k < pages);
        current.updated
    };
    for story in stories {
        let updated = feed_files(render::story_feed(site, story), &mut out);
        let (modified, honest) = date(updated);
        let page = html::story_page(site, story, seq).into_bytes();
        out.push((
            FileKey::Page(story.slug.clone()),
            cached(HTML, page, modified, honest, seq),
        ));
    }
    let updated = feed_files(render::all_feed(site), &mut out);
    let (modified, honest) = date(updated);
    out.push((
        FileKey::Index,
        cached(HTML, html::index(site).into_bytes(), modified, honest, seq),
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(op: &str, story: &str, updated: &str) -> (Op, String, String) {
        let op_value = match op {
            "delete" => Op::Delete,
            "update" => Op::Update,
            _ => Op::Create,
        };
        let json = format!(
            r#"{{"seq":1,"op":"{op}","story":"{story}","entry":{{"id":"x","updated":"{updated}"}}}}"#
        );
        (op_value, story.to_string(), json)
    }

    #[test]
    fn only_contents_whose_every_change_moved_the_date_forward_qualify() {
        let events = [
            event("create", "a", "2024-01-01T00:00:10Z"),
            event("create", "a", "2024-01-01T00:00:11Z"),
            event("create", "b", "2024-01-01T00:00:20Z"),
            event("delete", "b", "2024-01-01T00:00:20Z"),
            event("create", "c", "2024-01-01T00:00:30Z"),
            event("create", "c", "2024-01-01T00:00:30Z"),
            event("update", "d", "2024-01-01T00:00:40Z"),
        ];
        let forward = dates_move_forward(
            events
                .iter()
                .map(|(op, story, json)| (*op, story.as_str(), json.as_bytes())),
        );
        assert_eq!(forward.get("a"), Some(&true));
        assert_eq!(forward.get("b"), Some(&false), "a delete keeps the date");
        assert_eq!(forward.get("c"), Some(&false), "two changes in one second");
        assert_eq!(forward.get("d"), Some(&true));
        assert_eq!(forward.get(ALL), Some(&false));
    }
}
