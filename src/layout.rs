//! The site's layout: where every file lives, as a URL path on the server and as a file in a
//! static build (the same tree, so every link works on both). The only module that spells
//! paths; everything else names a file by its [`FileKey`] and asks here for its path or URL.

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
