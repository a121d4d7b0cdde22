//! The data manifest (`data/stories.toml`): the site, and per story its slug, page address,
//! kind, times and optional per-entry times.

use chrono::{DateTime, FixedOffset, Utc};
use serde::Deserialize;
use std::path::{Path, PathBuf};

use crate::ingest::normalise::{EntryTime, StoryMeta};
use crate::layout::story_page_url;
use crate::model::StoryKind;
use crate::zone::Zone;

/// The manifest's file name inside a data directory.
pub const MANIFEST: &str = "stories.toml";

/// The manifest could not be used. Carries the file and, where known, the line.
#[derive(Debug, thiserror::Error)]
#[error("{}{}: {message}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct ManifestError {
    pub path: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub site: SiteInfo,
    #[serde(default, rename = "story")]
    pub stories: Vec<StoryEntry>,
}

/// Site-wide settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteInfo {
    pub title: String,
    #[serde(default)]
    pub description: String,
    /// The default author of every feed (Atom needs one).
    pub author: String,
    /// The public address the feeds are published under; `--base-url` overrides it.
    pub base_url: String,
    #[serde(default = "default_language")]
    pub language: String,
}

fn default_language() -> String {
    "en-gb".to_string()
}

/// One story in the manifest.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoryEntry {
    pub slug: String,
    /// The report file, relative to the data directory; defaults to `{slug}.txt`.
    pub file: Option<String>,
    pub kind: StoryKind,
    pub url: String,
    #[serde(deserialize_with = "date_time")]
    pub published: DateTime<FixedOffset>,
    #[serde(deserialize_with = "date_time")]
    pub updated: DateTime<FixedOffset>,
    /// When the story ended (its page and feeds say so; JSON Feed `expired`); absent while it
    /// is live. `PUT /stories/{story}` changes it at run time.
    #[serde(default, deserialize_with = "optional_date_time")]
    pub ended: Option<DateTime<FixedOffset>>,
    /// False when the time of day of `published`/`updated` is a documented default rather
    /// than a known fact. Informational.
    #[serde(default = "yes")]
    pub time_of_day_known: bool,
    /// The zone of time lines without one, e.g. `+01:00`; defaults to `published`'s offset.
    pub utc_offset: Option<String>,
    /// The IANA zone the story's pages show times in (`Europe/London`: BST or GMT by date);
    /// by default the fixed `utc_offset`.
    pub timezone: Option<String>,
    /// The page template's profile (`bbc-live`, `guardian`, `itv`, `local`, `generic`);
    /// by default the page's content chooses.
    pub template: Option<String>,
    #[serde(default, rename = "entry")]
    pub entries: Vec<EntryTimeEntry>,
}

fn yes() -> bool {
    true
}

/// An explicit time for one entry, matched on its title.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntryTimeEntry {
    pub title: String,
    #[serde(deserialize_with = "date_time")]
    pub published: DateTime<FixedOffset>,
    #[serde(default, deserialize_with = "optional_date_time")]
    pub updated: Option<DateTime<FixedOffset>>,
}

/// The form every date in the manifest takes, for messages.
pub const DATE_FORMAT: &str =
    "an RFC 3339 date and time with its UTC offset, like \"2013-05-10T12:00:00+01:00\"";

/// A date in the manifest: a string or a TOML date-time, RFC 3339 with an offset. The error
/// says what was expected (the default one only says what went wrong, e.g. "premature end of
/// input").
fn date_time<'de, D: serde::Deserializer<'de>>(d: D) -> Result<DateTime<FixedOffset>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Text(String),
        Toml(toml::value::Datetime),
    }
    let text = match Raw::deserialize(d) {
        Ok(Raw::Text(s)) => s,
        Ok(Raw::Toml(t)) => t.to_string(),
        Err(_) => return Err(serde::de::Error::custom(format!("expected {DATE_FORMAT}"))),
    };
    DateTime::parse_from_rfc3339(text.trim())
        .map_err(|e| serde::de::Error::custom(format!("{text:?} is not {DATE_FORMAT} ({e})")))
}

fn optional_date_time<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<DateTime<FixedOffset>>, D::Error> {
    date_time(d).map(Some)
}

/// Checks a base URL: absolute, http or https, with a host, and no query, fragment or
/// credentials (it prefixes every link). The reason when it is not.
pub fn check_base_url(s: &str) -> Result<(), String> {
    let parsed = url::Url::parse(s).map_err(|e| format!("{s:?} is not a URL ({e})"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("{s:?} is not an http:// or https:// URL"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(format!("{s:?} has no host"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(format!(
            "{s:?} has a query or fragment; give the site's address only"
        ));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(format!(
            "{s:?} holds credentials; give the public address only"
        ));
    }
    if s.trim() != s || s.contains(char::is_whitespace) {
        return Err(format!("{s:?} contains spaces"));
    }
    Ok(())
}

/// A slug names files and URL paths: lowercase ASCII letters, digits and inner dashes.
pub fn valid_slug(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 100
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn line_of(text: &str, offset: usize) -> usize {
    1 + text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
}

impl Manifest {
    /// Parses and checks a manifest. `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Manifest, ManifestError> {
        let err = |line: Option<usize>, message: String| ManifestError {
            path: path.to_path_buf(),
            line,
            message,
        };
        let manifest: Manifest = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start));
            err(line, e.message().to_string())
        })?;
        // Line of the n-th `[[story]]` table, for messages about a story.
        let story_lines: Vec<usize> = text
            .lines()
            .enumerate()
            .filter(|(_, l)| l.trim() == "[[story]]")
            .map(|(i, _)| i + 1)
            .collect();
        if let Err(why) = check_base_url(&manifest.site.base_url) {
            let line = text
                .lines()
                .position(|l| l.trim_start().starts_with("base_url"))
                .map(|i| i + 1);
            return Err(err(
                line,
                format!(
                    "site.base_url: {why}; expected an absolute http(s) URL like https://news.example.org"
                ),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, s) in manifest.stories.iter().enumerate() {
            let line = story_lines.get(i).copied();
            if !valid_slug(&s.slug) || s.slug == "all" {
                return Err(err(
                    line,
                    format!(
                        "story slug {:?} must be lowercase letters, digits and dashes, and not \"all\"",
                        s.slug
                    ),
                ));
            }
            if !seen.insert(&s.slug) {
                return Err(err(line, format!("story slug {:?} is used twice", s.slug)));
            }
            if !s.url.starts_with("http://") && !s.url.starts_with("https://") {
                return Err(err(
                    line,
                    format!("story {:?}: url must be http(s)", s.slug),
                ));
            }
            if let Some(t) = &s.template {
                if crate::ingest::normalise::profile::by_name(t).is_none() {
                    let names: Vec<&str> = crate::ingest::normalise::profile::ALL
                        .iter()
                        .map(|p| p.name)
                        .collect();
                    return Err(err(
                        line,
                        format!(
                            "story {:?}: unknown template {t:?} (one of {})",
                            s.slug,
                            names.join(", ")
                        ),
                    ));
                }
            }
            if s.updated < s.published {
                return Err(err(
                    line,
                    format!("story {:?}: updated is before published", s.slug),
                ));
            }
            if s.ended.is_some_and(|e| e < s.published) {
                return Err(err(
                    line,
                    format!("story {:?}: ended is before published", s.slug),
                ));
            }
            if let Some(file) = &s.file {
                if file.contains(['/', '\\']) || file.starts_with('.') {
                    return Err(err(
                        line,
                        format!(
                            "story {:?}: file must be a plain name in the data directory",
                            s.slug
                        ),
                    ));
                }
            }
            if let Some(tz) = &s.timezone {
                if Zone::named(tz).is_none() {
                    return Err(err(
                        line,
                        format!(
                            "story {:?}: timezone {tz:?} is not an IANA zone name like \"Europe/London\"",
                            s.slug
                        ),
                    ));
                }
            }
            if let Some(off) = &s.utc_offset {
                if parse_offset(off).is_none() {
                    return Err(err(
                        line,
                        format!("story {:?}: utc_offset {off:?} is not like +01:00", s.slug),
                    ));
                }
            }
        }
        Ok(manifest)
    }
}

/// Parses `+01:00`, `-05:30`, `Z`.
pub fn parse_offset(s: &str) -> Option<FixedOffset> {
    if s == "Z" {
        return FixedOffset::east_opt(0);
    }
    let sign = match s.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let (h, m) = s[1..].split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
    if h > 23 || m > 59 {
        return None;
    }
    FixedOffset::east_opt(sign * (h * 3600 + m * 60))
}

impl StoryEntry {
    /// The report file's name inside the data directory.
    pub fn file_name(&self) -> String {
        self.file
            .clone()
            .unwrap_or_else(|| format!("{}.txt", self.slug))
    }

    /// The zone the story's pages show times in: `timezone`, else the fixed offset of its
    /// time lines.
    pub fn zone(&self) -> Zone {
        self.timezone
            .as_deref()
            .and_then(Zone::named)
            .unwrap_or_else(|| Zone::Fixed(self.offset()))
    }

    /// The offset of time lines that carry no zone: `utc_offset`, else `published`'s.
    fn offset(&self) -> FixedOffset {
        self.utc_offset
            .as_deref()
            .and_then(parse_offset)
            .unwrap_or(*self.published.offset())
    }

    /// What the normaliser needs to know about this story.
    pub fn meta(&self, base_url: &str) -> StoryMeta {
        StoryMeta {
            slug: self.slug.clone(),
            kind: Some(self.kind),
            template: self.template.clone(),
            url: Some(self.url.clone()),
            published: self.published.with_timezone(&Utc),
            updated: self.updated.with_timezone(&Utc),
            offset: self.offset(),
            entry_times: self
                .entries
                .iter()
                .map(|e| EntryTime {
                    title: e.title.clone(),
                    published: e.published.with_timezone(&Utc),
                    updated: e.updated.map(|u| u.with_timezone(&Utc)),
                })
                .collect(),
            fallback_url: story_page_url(base_url, &self.slug),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[site]
title = "T"
author = "A"
base_url = "https://example.org"

[[story]]
slug = "one"
kind = "live"
url = "https://www.itv.com/news/x/"
published = "2013-05-10T12:00:00+01:00"
updated = "2013-05-11T12:00:00+01:00"
"#;

    #[test]
    fn parses_and_defaults() {
        let m = Manifest::parse(GOOD, Path::new("stories.toml")).unwrap();
        assert_eq!(m.stories[0].file_name(), "one.txt");
        let meta = m.stories[0].meta("https://example.org/");
        assert_eq!(meta.offset, FixedOffset::east_opt(3600).unwrap());
        assert_eq!(meta.fallback_url, "https://example.org/stories/one/");
    }

    #[test]
    fn errors_name_file_and_line() {
        let bad = GOOD.replace("kind = \"live\"", "kind = \"live\"\ntemplate = \"bbc\"");
        let e = Manifest::parse(&bad, Path::new("m.toml")).unwrap_err();
        assert!(e.to_string().contains("unknown template \"bbc\""), "{e}");
        let ok = GOOD.replace(
            "kind = \"live\"",
            "kind = \"live\"\ntemplate = \"bbc-live\"",
        );
        let m = Manifest::parse(&ok, Path::new("m.toml")).unwrap();
        assert_eq!(
            m.stories[0].meta("https://x.org").template.as_deref(),
            Some("bbc-live")
        );
        let bad = GOOD.replace("kind = \"live\"", "kind = \"blog\"");
        let e = Manifest::parse(&bad, Path::new("data/stories.toml")).unwrap_err();
        assert_eq!(e.line, Some(9));
        assert!(e.to_string().starts_with("data/stories.toml:9: "), "{e}");
        let bad = GOOD.replace("slug = \"one\"", "slug = \"../etc\"");
        let e = Manifest::parse(&bad, Path::new("m.toml")).unwrap_err();
        assert_eq!(e.line, Some(7));
        let bad = GOOD.replace("2013-05-11", "2013-05-01");
        assert!(
            Manifest::parse(&bad, Path::new("m"))
                .unwrap_err()
                .message
                .contains("before")
        );
    }

    #[test]
    fn timezone_names_an_iana_zone() {
        let m = Manifest::parse(GOOD, Path::new("m.toml")).unwrap();
        assert_eq!(
            m.stories[0].zone(),
            Zone::Fixed(FixedOffset::east_opt(3600).unwrap())
        );
        let with = GOOD.replace(
            "kind = \"live\"",
            "kind = \"live\"\ntimezone = \"Europe/London\"",
        );
        let m = Manifest::parse(&with, Path::new("m.toml")).unwrap();
        assert_eq!(m.stories[0].zone().name(), Some("Europe/London"));
        let bad = GOOD.replace("kind = \"live\"", "kind = \"live\"\ntimezone = \"BST\"");
        let e = Manifest::parse(&bad, Path::new("m.toml")).unwrap_err();
        assert_eq!(e.line, Some(7));
        assert!(
            e.to_string()
                .contains("timezone \"BST\" is not an IANA zone"),
            "{e}"
        );
    }

    #[test]
    fn ended_is_a_date_after_published() {
        let m = Manifest::parse(GOOD, Path::new("m.toml")).unwrap();
        assert_eq!(m.stories[0].ended, None);
        let with = GOOD.replace(
            "kind = \"live\"",
            "kind = \"live\"\nended = \"2013-05-12T18:00:00+01:00\"",
        );
        let m = Manifest::parse(&with, Path::new("m.toml")).unwrap();
        assert_eq!(
            m.stories[0]
                .ended
                .map(|t| t.with_timezone(&Utc).to_rfc3339()),
            Some("2013-05-12T17:00:00+00:00".to_string())
        );
        let before = with.replace("2013-05-12T18", "2013-05-09T18");
        let e = Manifest::parse(&before, Path::new("m.toml")).unwrap_err();
        assert_eq!(e.line, Some(7));
        assert!(e.to_string().contains("ended is before published"), "{e}");
        let bad = with.replace("2013-05-12T18:00:00+01:00", "yesterday");
        let e = Manifest::parse(&bad, Path::new("data/stories.toml")).unwrap_err();
        assert!(e.to_string().starts_with("data/stories.toml:10"), "{e}");
        assert!(e.to_string().contains("RFC 3339"), "{e}");
    }

    #[test]
    fn offsets() {
        assert_eq!(parse_offset("+01:00"), FixedOffset::east_opt(3600));
        assert_eq!(
            parse_offset("-05:30"),
            FixedOffset::east_opt(-(5 * 3600 + 1800))
        );
        assert_eq!(parse_offset("1:00"), None);
        assert_eq!(parse_offset("+99:00"), None);
    }
}
