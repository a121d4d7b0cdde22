//! The site's layout: where every file lives, as a URL path on the server and as a file in a
//! static build (the same tree, so every link works on both), and what every other URL path of
//! the server names ([`Target`]). The only module that spells URL paths; everything else names
//! a file by its [`FileKey`] (or a route by its [`Target`]) and asks here for its path or URL.

use crate::render::{ALL, Format};

/// One file of the site.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FileKey {
    /// The index page: `/`.
    Index,
    /// A story's page: `/stories/{slug}/`.
    Page(String),
    /// The current document of a feed (a story's, or [`ALL`]): `/feeds/{slug}.{ext}`.
    Feed(String, Format),
    /// Archive document `k` (RFC 5005) of a feed: `/feeds/{slug}/archive/{k}.{ext}`.
    Archive(String, usize, Format),
}

impl FileKey {
    /// The URL path it is served at (a story page also answers without its trailing slash).
    pub fn path(&self) -> String {
        match self {
            FileKey::Index => "/".to_string(),
            FileKey::Page(slug) => format!("/stories/{slug}/"),
            FileKey::Feed(slug, f) => format!("/feeds/{}", feed_file(slug, *f)),
            FileKey::Archive(slug, k, f) => format!("/feeds/{}", archive_file(slug, *k, *f)),
        }
    }

    /// Where a static build writes it, relative to the output directory.
    pub fn output_file(&self) -> String {
        match self {
            FileKey::Index => "index.html".to_string(),
            FileKey::Page(slug) => format!("stories/{slug}/index.html"),
            _ => self.path().trim_start_matches('/').to_string(),
        }
    }

    /// Its public URL under `base_url`.
    pub fn url(&self, base_url: &str) -> String {
        format!("{}{}", base_url.trim_end_matches('/'), self.path())
    }

    /// The file a URL path names, if any (`/stories/{slug}` with or without its slash).
    pub fn parse(path: &str) -> Option<FileKey> {
        if path == "/" {
            return Some(FileKey::Index);
        }
        if let Some(rest) = path.strip_prefix("/stories/") {
            let slug = rest.strip_suffix('/').unwrap_or(rest);
            return (!slug.is_empty() && !slug.contains('/')).then(|| FileKey::Page(slug.into()));
        }
        let file = path.strip_prefix("/feeds/")?;
        let (name, ext) = file.rsplit_once('.')?;
        if name.is_empty() || name.starts_with('/') || name.ends_with('/') {
            return None;
        }
        let format = Format::from_ext(ext)?;
        match name.split_once("/archive/") {
            Some((slug, k)) if !slug.contains('/') && k.bytes().all(|b| b.is_ascii_digit()) => {
                let k = k.parse().ok()?;
                Some(FileKey::Archive(slug.into(), k, format))
            }
            Some(_) => None,
            None => (!name.contains('/')).then(|| FileKey::Feed(name.into(), format)),
        }
    }

    /// The story whose content it shows ([`ALL`] for the combined feeds and the index).
    pub fn story(&self) -> &str {
        match self {
            FileKey::Index => ALL,
            FileKey::Page(slug) | FileKey::Feed(slug, _) | FileKey::Archive(slug, _, _) => slug,
        }
    }

    /// A story's own files: its current feeds and its page.
    pub fn story_files(slug: &str) -> Vec<FileKey> {
        Format::ALL
            .iter()
            .map(|&f| FileKey::Feed(slug.to_string(), f))
            .chain([FileKey::Page(slug.to_string())])
            .collect()
    }
}

/// A feed's file name (`{slug}.{ext}`).
pub fn feed_file(slug: &str, format: Format) -> String {
    format!("{slug}.{}", format.ext())
}

/// An archive document's file name under `feeds/`.
pub fn archive_file(slug: &str, k: usize, format: Format) -> String {
    format!("{slug}/archive/{k}.{}", format.ext())
}

/// The public URL of a feed.
pub fn feed_url(base_url: &str, slug: &str, format: Format) -> String {
    FileKey::Feed(slug.to_string(), format).url(base_url)
}

/// A feed's URL without its extension (`{base}/feeds/{slug}.`): RFC 5005 links add theirs.
pub fn feed_base(base_url: &str, slug: &str) -> String {
    format!("{}/feeds/{slug}.", base_url.trim_end_matches('/'))
}

/// Archive document `k`'s URL base, from its feed's ([`feed_base`]).
pub fn archive_base(feed_base: &str, k: usize) -> String {
    format!("{}/archive/{k}.", feed_base.trim_end_matches('.'))
}

/// The public URL of a story's page on this site: a directory URL, so that the same link works
/// on `livefeed serve` and on a static server holding the build's `stories/{slug}/index.html`.
pub fn story_page_url(base_url: &str, slug: &str) -> String {
    FileKey::Page(slug.to_string()).url(base_url)
}

/// The URL of the WebSub hub of a server at `base_url` (`POST {base}/websub`).
pub fn websub_url(base_url: &str) -> String {
    format!(
        "{}{}",
        base_url.trim_end_matches('/'),
        Target::WebSub.path()
    )
}

/// The URL of the SSE stream of a server at `base_url`, without its query.
pub fn live_events_url(base_url: &str) -> String {
    format!(
        "{}{}",
        base_url.trim_end_matches('/'),
        Target::LiveEvents.path()
    )
}

/// What a URL path of the server names: a rendered file, a story's publishing API, the live
/// transports, the WebSub hub, or an operations endpoint. Methods are the router's business
/// (`route` in `src/http/`); this is the path alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A rendered file, by every path it answers at (`/index.html` and
    /// `/stories/{slug}/index.html` too, the static build's file names).
    File(FileKey),
    /// `/stories/{slug}` without its slash: the story's page, and its lifecycle (`PUT`).
    Story(String),
    /// `/stories/{slug}/entries`.
    Entries(String),
    /// `/stories/{slug}/entries/{id}`, the id one percent-encoded segment (a `tag:` URI holds
    /// `/`).
    Entry(String, String),
    /// `/live`: the long-poll.
    Live,
    /// `/live/events`: Server-Sent Events.
    LiveEvents,
    /// `/websub`: the WebSub hub.
    WebSub,
    Healthz,
    Readyz,
    Metrics,
}

/// A URL path that names nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path is not valid percent-encoded UTF-8")]
    Encoding { read: bool },
    #[error("nothing at this path")]
    NotFound { read: bool },
}

impl PathError {
    /// Whether the path is on the read side (`/`, `/feeds/…`, `/live…`, a story's page), whose
    /// answers, errors included, carry the CORS headers; never a publishing path.
    pub fn read(&self) -> bool {
        match self {
            PathError::Encoding { read } | PathError::NotFound { read } => *read,
        }
    }
}

impl Target {
    /// Its URL path (percent-encoding the segments that need it).
    pub fn path(&self) -> String {
        // Everything but the unreserved characters of RFC 3986 §2.3 is encoded in a segment.
        const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
            .remove(b'-')
            .remove(b'.')
            .remove(b'_')
            .remove(b'~');
        let seg = |s: &str| percent_encoding::utf8_percent_encode(s, SEGMENT).to_string();
        match self {
            Target::File(key) => key.path(),
            Target::Story(slug) => format!("/stories/{}", seg(slug)),
            Target::Entries(slug) => format!("/stories/{}/entries", seg(slug)),
            Target::Entry(slug, id) => format!("/stories/{}/entries/{}", seg(slug), seg(id)),
            Target::Live => "/live".into(),
            Target::LiveEvents => "/live/events".into(),
            Target::WebSub => "/websub".into(),
            Target::Healthz => "/healthz".into(),
            Target::Readyz => "/readyz".into(),
            Target::Metrics => "/metrics".into(),
        }
    }

    /// What a request's URL path names. Split first, then each segment percent-decoded (`+` is
    /// itself in a path: RFC 3986 gives it no meaning there); a `.` or `..` segment, a
    /// backslash or a NUL names nothing.
    pub fn parse(path: &str) -> Result<Target, PathError> {
        // The hot paths, nothing to decode: a feed by a plain file name, and the long-poll.
        if let Some(file) = path.strip_prefix("/feeds/") {
            let plain =
                !file.is_empty() && file != "." && file != ".." && !file.contains(['/', '%', '\\']);
            if plain {
                return FileKey::parse(path)
                    .map(Target::File)
                    .ok_or(PathError::NotFound { read: true });
            }
        }
        if path == "/live" {
            return Ok(Target::Live);
        }
        let raw: Vec<&str> = path.split('/').skip(1).collect();
        let read = match raw.as_slice() {
            [""] | ["index.html"] | ["feeds" | "live", ..] => true,
            ["stories", _, third, ..] => *third != "entries",
            ["stories", ..] => true,
            _ => false,
        };
        let Ok(decoded) = raw
            .iter()
            .map(|s| percent_encoding::percent_decode_str(s).decode_utf8())
            .collect::<Result<Vec<_>, _>>()
        else {
            return Err(PathError::Encoding { read });
        };
        let segments: Vec<&str> = decoded.iter().map(|s| s.as_ref()).collect();
        let not_found = PathError::NotFound { read };
        if segments
            .iter()
            .any(|s| *s == ".." || *s == "." || s.contains(['\\', '\0']))
        {
            return Err(not_found);
        }
        let slug = |s: &str| s.to_string();
        // A story's slug is one segment, also once decoded (an entry's id may hold `/`).
        let one = |s: &str| !s.is_empty() && !s.contains('/');
        Ok(match segments.as_slice() {
            [""] | ["index.html"] => Target::File(FileKey::Index),
            ["feeds", ..] => {
                return FileKey::parse(&format!("/{}", segments.join("/")))
                    .map(Target::File)
                    .ok_or(not_found);
            }
            ["stories", s] if one(s) => Target::Story(slug(s)),
            ["stories", s, "" | "index.html"] if one(s) => Target::File(FileKey::Page(slug(s))),
            ["stories", s, "entries"] if one(s) => Target::Entries(slug(s)),
            ["stories", s, "entries", id] if one(s) => Target::Entry(slug(s), slug(id)),
            ["live"] => Target::Live,
            ["live", "events"] => Target::LiveEvents,
            ["websub"] => Target::WebSub,
            ["healthz"] => Target::Healthz,
            ["readyz"] => Target::Readyz,
            ["metrics"] => Target::Metrics,
            _ => return Err(not_found),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_parses_back_from_its_path() {
        let keys = [
            FileKey::Index,
            FileKey::Page("a-b".into()),
            FileKey::Feed("a-b".into(), Format::Rss),
            FileKey::Feed(ALL.into(), Format::Json),
            FileKey::Archive("a.b".into(), 3, Format::Atom),
        ];
        for key in keys {
            assert_eq!(FileKey::parse(&key.path()), Some(key.clone()), "{key:?}");
        }
        assert_eq!(
            FileKey::parse("/stories/a-b"),
            Some(FileKey::Page("a-b".into()))
        );
        for bad in [
            "/feeds/a",
            "/feeds/a.xml",
            "/feeds/.atom",
            "/feeds/a/b.rss",
            "/feeds/a/archive/x.rss",
            "/stories/",
            "/stories/a/b",
            "/other",
        ] {
            assert_eq!(FileKey::parse(bad), None, "{bad}");
        }
        assert_eq!(FileKey::Archive("s".into(), 2, Format::Rss).story(), "s");
        assert_eq!(FileKey::Index.story(), ALL);
        assert_eq!(
            FileKey::Page("s".into()).output_file(),
            "stories/s/index.html"
        );
        assert_eq!(
            FileKey::Archive("s".into(), 0, Format::Json).output_file(),
            "feeds/s/archive/0.json"
        );
    }
}
