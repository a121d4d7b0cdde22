//! A data directory read into memory: the manifest and every story, normalised.

use chrono::{DateTime, Offset, Utc};
use std::path::{Path, PathBuf};

use crate::ingest::manifest::{MANIFEST, Manifest, ManifestError, SiteInfo};
use crate::ingest::normalise::{self, ParseError, StoryMeta};
use crate::layout::story_page_url;
use crate::model::Story;
use crate::text::slugify;

/// Reading the data failed. Each variant names the file (and line) to fix.
#[derive(Debug, thiserror::Error)]
pub enum SiteError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{}: no such data directory (expected a directory holding {MANIFEST} and the report \
         files); pass --data DIR or set LIVEFEED_DATA",
        dir.display()
    )]
    NoDataDir { dir: PathBuf },
    #[error(
        "{}: not found; the data directory must hold the manifest (pass --data DIR or set \
         LIVEFEED_DATA to the directory that has it)",
        path.display()
    )]
    NoManifest { path: PathBuf },
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("{}:{}: {}", path.display(), source.line(), report_message(source))]
    Report { path: PathBuf, source: ParseError },
}

fn report_message(e: &ParseError) -> String {
    // The ParseError's own message starts with "line N: "; the path form already has it.
    let s = e.to_string();
    s.split_once(": ")
        .map_or(s.clone(), |(_, rest)| rest.to_string())
}

/// The default of `--feed-entries`: entries a current feed document carries at least.
pub const DEFAULT_FEED_ENTRIES: usize = 50;

/// Everything the renderers need: site settings and stories (entries newest first).
#[derive(Debug, Clone)]
pub struct Site {
    pub info: SiteInfo,
    /// The public address; feeds live at `{base_url}/feeds/…`.
    pub base_url: String,
    pub stories: Vec<Story>,
    /// Entries the current feed documents carry at least (`--feed-entries`); older ones are
    /// in RFC 5005 archive documents (see `render::paged`).
    pub feed_entries: usize,
    /// The WebSub hub the current feeds advertise (`rel="hub"`, JSON Feed `hubs`); none by
    /// default (`serve` sets its own `/websub`, `build --websub-hub` one given).
    pub websub_hub: Option<String>,
}

fn read(path: &Path) -> Result<Vec<u8>, SiteError> {
    std::fs::read(path).map_err(|source| SiteError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads and normalises one report file.
pub fn read_report(path: &Path, meta: &StoryMeta) -> Result<Story, SiteError> {
    let report_err = |source| SiteError::Report {
        path: path.to_path_buf(),
        source,
    };
    let text = normalise::decode(&read(path)?).map_err(report_err)?;
    normalise::normalise(&text, meta).map_err(report_err)
}

/// A report with no entry is served as an empty feed; most likely it is the wrong file or
/// its time lines were not recognised, so say so (not an error: a story may start empty).
fn warn_if_empty(path: &Path, story: &Story) {
    if story.entries.is_empty() {
        tracing::warn!(
            file = %path.display(),
            "{}: the report yields no entries (its feeds will be empty); entries start at a \
             time line such as \"12:30\" followed by a headline",
            path.display()
        );
    }
}

/// Loads the manifest of `data_dir`. `base_url` overrides the manifest's.
pub fn load_manifest(data_dir: &Path) -> Result<Manifest, SiteError> {
    let path = data_dir.join(MANIFEST);
    if !data_dir.is_dir() {
        return Err(SiteError::NoDataDir {
            dir: data_dir.to_path_buf(),
        });
    }
    if !path.exists() {
        return Err(SiteError::NoManifest { path });
    }
    let bytes = read(&path)?;
    let text = String::from_utf8_lossy(&bytes);
    Ok(Manifest::parse(&text, &path)?)
}

impl Site {
    /// Loads a data directory: `stories.toml` and the report files it names.
    pub fn load(data_dir: &Path, base_url: Option<&str>) -> Result<Site, SiteError> {
        let manifest = load_manifest(data_dir)?;
        let base_url = base_url
            .unwrap_or(&manifest.site.base_url)
            .trim_end_matches('/')
            .to_string();
        let stories = manifest
            .stories
            .iter()
            .map(|s| {
                let path = data_dir.join(s.file_name());
                let mut story = read_report(&path, &s.meta(&base_url))?;
                story.zone = s.zone();
                story.ended = s.ended.map(|t| t.with_timezone(&chrono::Utc));
                warn_if_empty(&path, &story);
                Ok(story)
            })
            .collect::<Result<Vec<_>, SiteError>>()?;
        Ok(Site {
            info: manifest.site,
            base_url,
            stories,
            feed_entries: DEFAULT_FEED_ENTRIES,
            websub_hub: None,
        })
    }

    /// Reads report files with no manifest: the slug comes from the file name, the kind from
    /// the text, and times from the reports' own time lines, else [`DEFAULT_EPOCH`].
    pub fn from_files(paths: &[PathBuf], base_url: &str) -> Result<Site, SiteError> {
        let base_url = base_url.trim_end_matches('/').to_string();
        let epoch = default_epoch();
        let stories = paths
            .iter()
            .map(|path| {
                let stem = path
                    .file_stem()
                    .map(|s| s.to_string_lossy())
                    .unwrap_or_default();
                let slug = match slugify(&stem, 80) {
                    s if s.is_empty() || s == "all" => "story".to_string(),
                    s => s,
                };
                let meta = StoryMeta {
                    kind: None,
                    template: None,
                    url: None,
                    published: epoch,
                    updated: epoch,
                    offset: Utc.fix(),
                    entry_times: Vec::new(),
                    fallback_url: story_page_url(&base_url, &slug),
                    slug,
                };
                let story = read_report(path, &meta)?;
                warn_if_empty(path, &story);
                Ok(story)
            })
            .collect::<Result<Vec<_>, SiteError>>()?;
        let info = SiteInfo {
            title: "livefeed".into(),
            description: String::new(),
            author: "livefeed".into(),
            base_url: base_url.clone(),
            language: "en-gb".into(),
        };
        Ok(Site {
            info,
            base_url,
            stories,
            feed_entries: DEFAULT_FEED_ENTRIES,
            websub_hub: None,
        })
    }

    /// Finds a story by slug.
    pub fn story(&self, slug: &str) -> Option<&Story> {
        self.stories.iter().find(|s| s.slug == slug)
    }
}

/// The time given to reports read without a manifest: 2000-01-01T00:00:00Z. Fixed, so that
/// `livefeed items FILE` prints the same thing every run.
pub const DEFAULT_EPOCH: &str = "2000-01-01T00:00:00Z";

fn default_epoch() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(DEFAULT_EPOCH)
        .map(|d| d.with_timezone(&Utc))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}
