//! Rendering into the hub's cache: each file rendered once per version, compressed once, with
//! its validators computed once. The same renderer as the static build.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use std::hash::{Hash, Hasher};
use std::io::Write;

use super::hub::CachedFile;
use crate::model::Story;
use crate::render::{self, ALL, Format, html};
use crate::site::Site;

/// The URL path of a feed.
pub fn feed_path(slug: &str, format: Format) -> String {
    format!("/feeds/{}", render::feed_file(slug, format))
}

/// The URL path of a story page.
pub fn story_path(slug: &str) -> String {
    format!("/stories/{slug}")
}

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

/// An HTTP date (RFC 9110 IMF-fixdate).
pub fn http_date(t: DateTime<Utc>) -> String {
    t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

pub fn cached(
    content_type: &'static str,
    body: Vec<u8>,
    modified: DateTime<Utc>,
    seq: u64,
) -> CachedFile {
    let tag = digest(&body);
    CachedFile {
        content_type,
        gzip: gzip(&body),
        body: Bytes::from(body),
        etag: format!("\"{tag:016x}\""),
        etag_gzip: format!("\"{tag:016x}-gz\""),
        last_modified: http_date(modified),
        seq,
        headers: std::sync::OnceLock::new(),
    }
}

const HTML: &str = "text/html; charset=utf-8";

/// Renders what changes when `stories` change: their feeds and pages, the combined feed and
/// the index. `modified` is the commit time, used for `Last-Modified`.
pub fn render_changed(
    site: &Site,
    stories: &[&Story],
    seq: u64,
    modified: DateTime<Utc>,
) -> Vec<(String, CachedFile)> {
    let mut out = Vec::new();
    for story in stories {
        let feed = render::story_feed(site, story);
        for format in Format::ALL {
            let body = render::render_feed(&feed, format);
            out.push((
                feed_path(&story.slug, format),
                cached(format.content_type(), body, modified, seq),
            ));
        }
        let page = html::story_page(site, story, seq).into_bytes();
        out.push((story_path(&story.slug), cached(HTML, page, modified, seq)));
    }
    let all = render::all_feed(site);
    for format in Format::ALL {
        let body = render::render_feed(&all, format);
        out.push((
            feed_path(ALL, format),
            cached(format.content_type(), body, modified, seq),
        ));
    }
    out.push((
        "/".to_string(),
        cached(HTML, html::index(site).into_bytes(), modified, seq),
    ));
    out
}
