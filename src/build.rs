//! The static build: render a site and write it atomically, or check an existing directory.
//!
//! Output rule: `build` never removes a file it did not write. The directories it writes are
//! marked with [`MARKER`], which lists the files it wrote there; it writes only into a
//! directory that does not exist, is empty, or holds nothing but what that list names. It
//! refuses the data directory, any directory that contains it, and the current directory.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::ingest::site::Site;

/// The file that marks an output directory as livefeed's and lists the files it wrote there.
pub const MARKER: &str = ".livefeed-build";

/// Writing or checking the output failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Site(#[from] crate::ingest::site::SiteError),
    #[error(transparent)]
    Log(#[from] crate::log::store::StoreError),
    #[error(
        "{}: damaged at byte {offset} ({kind}) with intact records after it; `livefeed serve` \
         refuses it too: see `livefeed log check`, then `livefeed log repair`",
        path.display()
    )]
    LogDamaged {
        path: PathBuf,
        offset: usize,
        kind: String,
    },
    #[error(transparent)]
    Snapshot(#[from] crate::log::snapshot::Unreadable),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("refusing to write into {}: {reason}", path.display())]
    Refused { path: PathBuf, reason: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BuildError + '_ {
    move |source| BuildError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What a build renders: the data directory's stories, with its event log replayed over them
/// when it has one.
#[derive(Debug)]
pub struct Input {
    pub site: Site,
    /// The log position the story pages reflect (0 without a log).
    pub seq: u64,
    /// The log read, if any.
    pub log: Option<LogRead>,
}

/// The event log a build read.
#[derive(Debug)]
pub struct LogRead {
    pub path: PathBuf,
    pub events: usize,
    /// A torn tail after the intact records used (the last write cut short, which `serve`
    /// cuts at start; the build leaves the log alone).
    pub torn: Option<usize>,
}

impl LogRead {
    /// What to tell the user: `including N events from PATH`, and any damage.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = vec![format!(
            "including {} events from {}",
            self.events,
            self.path.display()
        )];
        if let Some(offset) = self.torn {
            lines.push(format!(
                "warning: {}: a torn last write at byte {offset} (`livefeed serve` cuts it at \
                 start); built from the intact records before it",
                self.path.display()
            ));
        }
        lines
    }
}

/// Reads `data` for a build. When the data directory has an event log (`DATA/log/events.log`,
/// or in `log_dir` when given, where it must exist), its events are replayed over the reports
/// as `livefeed serve` does at start, so the build shows what was published live. The log is
/// only read: not locked, not repaired, never written, so a running server is not disturbed.
pub fn load(
    data: &Path,
    base_url: Option<&str>,
    log_dir: Option<&Path>,
) -> Result<Input, BuildError> {
    let mut input = load_all(data, base_url, log_dir)?;
    // No renderer reads an entry's blocks (its `content_html` is made from them): freed
    // before rendering, they do not add to a large build's peak memory (a third of the site's).
    for entry in input.site.stories.iter_mut().flat_map(|s| &mut s.entries) {
        entry.blocks = Vec::new();
    }
    Ok(input)
}

fn load_all(
    data: &Path,
    base_url: Option<&str>,
    log_dir: Option<&Path>,
) -> Result<Input, BuildError> {
    use crate::log::{state::State, store};
    let site = Site::load(data, base_url)?;
    let dir = log_dir.map_or_else(|| data.join("log"), Path::to_path_buf);
    let path = dir.join(store::LOG_FILE);
    let has_log = store::segments(&dir).is_ok_and(|found| !found.is_empty());
    if log_dir.is_none() && !has_log {
        return Ok(Input {
            site,
            seq: 0,
            log: None,
        });
    }
    // A log of several segments (rolled, perhaps compacted) is read from its snapshot when it
    // needs one.
    if store::last_segment(&dir)?.0 > 1 {
        let back = store::read_back(&dir)?;
        let state = match &back.snapshot {
            Some(saved) => {
                let snap = crate::log::snapshot::decode(&saved.payload)?;
                State::replay_from(snap.projection, saved.seq, site, &back.events)
            }
            None => State::replay(site, &back.events),
        };
        let seq = back
            .events
            .last()
            .map(|e| e.seq)
            .or(back.snapshot.as_ref().map(|s| s.seq))
            .unwrap_or(0);
        return Ok(Input {
            site: state.site,
            seq,
            log: Some(LogRead {
                path: back.path,
                events: back.events.len(),
                torn: back.torn.map(|at| at as usize),
            }),
        });
    }
    // `inspect` reads the file in one go, read-only, and takes no lock.
    let scan = store::inspect(&dir)?;
    let seq = scan.head();
    let torn = match &scan.damage {
        None => None,
        Some(found) if found.torn_tail() => Some(found.offset),
        Some(found) => {
            return Err(BuildError::LogDamaged {
                path,
                offset: found.offset,
                kind: format!("{:?}", found.kind),
            });
        }
    };
    let state = State::replay(site, &scan.events);
    Ok(Input {
        site: state.site,
        seq,
        log: Some(LogRead {
            path,
            events: scan.events.len(),
            torn,
        }),
    })
}

/// How an output directory differs from what the data gives.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Staleness {
    pub missing: Vec<String>,
    pub changed: Vec<String>,
    pub extra: Vec<String>,
}

impl Staleness {
    pub fn is_fresh(&self) -> bool {
        self.missing.is_empty() && self.changed.is_empty() && self.extra.is_empty()
    }

    /// One line per stale file: `missing feeds/x.rss`.
    pub fn lines(&self, out: &Path) -> Vec<String> {
        let name = |f: &String| out.join(f).display().to_string();
        self.missing
            .iter()
            .map(|f| format!("missing  {}", name(f)))
            .chain(self.changed.iter().map(|f| format!("stale    {}", name(f))))
            .chain(self.extra.iter().map(|f| format!("extra    {}", name(f))))
            .collect()
    }
}

/// Compares `out` with the files that should be there (the marker among them).
pub fn check(
    files: impl IntoIterator<Item = (String, Vec<u8>)>,
    out: &Path,
) -> Result<Staleness, BuildError> {
    let mut report = Staleness::default();
    let mut names = BTreeSet::new();
    let mut compare = |name: &str, bytes: &[u8]| -> Result<(), BuildError> {
        let path = out.join(name);
        match std::fs::read(&path) {
            Ok(on_disk) if on_disk == bytes => {}
            Ok(_) => report.changed.push(name.to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                report.missing.push(name.to_string())
            }
            Err(e) => return Err(io(&path)(e)),
        }
        Ok(())
    };
    for (name, bytes) in files {
        compare(&name, &bytes)?;
        names.insert(name);
    }
    compare(MARKER, &marker(&names))?;
    names.insert(MARKER.to_string());
    if out.is_dir() {
        report
            .extra
            .extend(tree(out)?.into_iter().filter(|n| !names.contains(n)));
    }
    report.missing.sort();
    report.changed.sort();
    report.extra.sort();
    Ok(report)
}

/// The marker's content: the files a build wrote, sorted, so builds stay reproducible.
fn marker(names: &BTreeSet<String>) -> Vec<u8> {
    let mut text = String::from(
        "# Written by `livefeed build`: it owns the files listed below, replaces them on every\n\
         # build and never writes into a directory holding any other file.\n",
    );
    for name in names.iter().filter(|n| n.as_str() != MARKER) {
        text.push_str(name);
        text.push('\n');
    }
    text.into_bytes()
}

/// Every file under `dir`, by `/`-separated path relative to it (symbolic links are not
/// followed: a link is listed as a file). Empty directories are not listed.
fn tree(dir: &Path) -> Result<Vec<String>, BuildError> {
    let mut found = Vec::new();
    let mut pending = vec![(dir.to_path_buf(), String::new())];
    while let Some((path, prefix)) = pending.pop() {
        for entry in std::fs::read_dir(&path).map_err(io(&path))? {
            let entry = entry.map_err(io(&path))?;
            let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
            if entry.file_type().map_err(io(&entry.path()))?.is_dir() {
                pending.push((entry.path(), format!("{name}/")));
            } else {
                found.push(name);
            }
        }
    }
    Ok(found)
}

/// The files the marker in `dir` lists (none when there is no marker).
fn owned(dir: &Path) -> Result<BTreeSet<String>, BuildError> {
    let path = dir.join(MARKER);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(text
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_string)
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeSet::new()),
        Err(e) => Err(io(&path)(e)),
    }
}

/// `path` made absolute with symlinks resolved, also when its last components do not exist
/// yet: the longest existing prefix is canonicalised and the rest normalised lexically.
fn resolved(path: &Path) -> Result<PathBuf, BuildError> {
    let absolute = std::path::absolute(path).map_err(io(path))?;
    let mut existing = absolute.as_path();
    let mut rest = Vec::new();
    loop {
        match existing.canonicalize() {
            Ok(mut base) => {
                for part in rest.iter().rev() {
                    match *part {
                        std::path::Component::ParentDir => {
                            base.pop();
                        }
                        std::path::Component::Normal(name) => base.push(name),
                        _ => {}
                    }
                }
                return Ok(base);
            }
            Err(_) => {
                let (Some(parent), Some(last)) =
                    (existing.parent(), existing.components().next_back())
                else {
                    return Ok(absolute);
                };
                rest.push(last);
                existing = parent;
            }
        }
    }
}

/// Refuses an output directory where a build would destroy what it did not write: the data
/// directory, a directory that contains it, the current directory, or a directory holding
/// files no earlier build listed in its marker.
pub fn guard(out: &Path, data: &Path) -> Result<(), BuildError> {
    let refuse = |reason: String| {
        Err(BuildError::Refused {
            path: out.to_path_buf(),
            reason,
        })
    };
    let (out_abs, data_abs) = (resolved(out)?, resolved(data)?);
    let here = resolved(Path::new("."))?;
    if out_abs == here {
        return refuse(
            "it is the current directory, and a build replaces its output directory whole; \
             name a directory of its own, such as `--out feeds`"
                .into(),
        );
    }
    if data_abs.starts_with(&out_abs) {
        let what = if data_abs == out_abs {
            "it is the data directory".to_string()
        } else {
            format!("it contains the data directory {}", data.display())
        };
        return refuse(format!(
            "{what}, and a build replaces its output directory whole; name a directory of its \
             own, such as `--out feeds`"
        ));
    }
    match std::fs::metadata(out) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return refuse("it is a file, not a directory".into()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(out)(e)),
    }
    let listed = owned(out)?;
    let mut foreign: Vec<String> = tree(out)?
        .into_iter()
        .filter(|name| name != MARKER && !listed.contains(name))
        .collect();
    if foreign.is_empty() {
        return Ok(());
    }
    foreign.sort();
    let shown = foreign
        .iter()
        .take(5)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    let more = match foreign.len() {
        n if n > 5 => format!(" and {} more", n - 5),
        _ => String::new(),
    };
    refuse(format!(
        "it holds files livefeed build did not write ({shown}{more}), and a build replaces its \
         output directory whole; build into a new or empty directory, or move those files away \
         (a directory a build wrote lists its files in {MARKER}; output of a build older than \
         this rule has no such list: delete it and build again)"
    ))
}

/// Writes `files` (and the [`MARKER`] listing them) as the whole content of `out`: into a fresh
/// directory beside it first, then swapped in by rename, so a failure leaves the old output
/// untouched and no half-written file. Refuses what [`guard`] refuses, before writing anything.
pub fn write(
    files: impl IntoIterator<Item = (String, Vec<u8>)>,
    out: &Path,
    data: &Path,
) -> Result<usize, BuildError> {
    guard(out, data)?;
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(io(&parent))?;
    let base = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    let tmp = parent.join(format!(".{base}.tmp-{}", std::process::id()));
    let old = parent.join(format!(".{base}.old-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir(&tmp).map_err(io(&tmp))?;
    let mut names = BTreeSet::new();
    let written = files.into_iter().try_for_each(|(name, bytes)| {
        let path = tmp.join(&name);
        names.insert(name);
        if let Some(dir) = path.parent().filter(|d| *d != tmp) {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
        }
        std::fs::write(&path, bytes).map_err(io(&path))
    });
    let marked = written.and_then(|()| {
        let path = tmp.join(MARKER);
        std::fs::write(&path, marker(&names)).map_err(io(&path))
    });
    if let Err(e) = marked {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    let had_old = out.exists();
    if had_old {
        std::fs::rename(out, &old).map_err(io(out))?;
    }
    if let Err(e) = std::fs::rename(&tmp, out) {
        if had_old {
            let _ = std::fs::rename(&old, out);
        }
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(io(out)(e));
    }
    if had_old {
        std::fs::remove_dir_all(&old).map_err(io(&old))?;
    }
    Ok(names.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn files() -> BTreeMap<String, Vec<u8>> {
        let mut files = BTreeMap::new();
        files.insert("a.rss".to_string(), b"one".to_vec());
        files.insert("b.json".to_string(), b"two".to_vec());
        files
    }

    #[test]
    fn write_then_check_then_detect() {
        let dir = tempfile::tempdir().unwrap();
        let (out, data) = (dir.path().join("feeds"), dir.path().join("data"));
        let files = files();
        assert_eq!(check(files.clone(), &out).unwrap().missing.len(), 3);
        write(files.clone(), &out, &data).unwrap();
        assert!(check(files.clone(), &out).unwrap().is_fresh());
        std::fs::write(out.join("a.rss"), b"changed").unwrap();
        std::fs::write(out.join("c.atom"), b"left over").unwrap();
        std::fs::remove_file(out.join("b.json")).unwrap();
        let s = check(files.clone(), &out).unwrap();
        assert_eq!(s.changed, vec!["a.rss"]);
        assert_eq!(s.missing, vec!["b.json"]);
        assert_eq!(s.extra, vec!["c.atom"]);
        // c.atom is not livefeed's: the build refuses rather than delete it.
        let refused = write(files.clone(), &out, &data).unwrap_err().to_string();
        assert!(refused.contains("c.atom"), "{refused}");
        assert_eq!(std::fs::read(out.join("c.atom")).unwrap(), b"left over");
        std::fs::remove_file(out.join("c.atom")).unwrap();
        write(files.clone(), &out, &data).unwrap();
        assert!(check(files.clone(), &out).unwrap().is_fresh());
        // A file livefeed wrote and no longer writes goes; nothing else is left behind.
        let mut fewer = files.clone();
        fewer.remove("b.json");
        write(fewer.clone(), &out, &data).unwrap();
        assert!(check(fewer, &out).unwrap().is_fresh());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn refuses_directories_it_does_not_own() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("site/data");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(data.join("stories.toml"), b"keep me").unwrap();
        for out in [
            data.clone(),
            dir.path().join("site"),
            dir.path().to_path_buf(),
            data.join("../../site/./data"),
        ] {
            let err = write(files(), &out, &data).unwrap_err();
            assert!(matches!(err, BuildError::Refused { .. }), "{out:?}: {err}");
        }
        // A symbolic link to the data directory is the data directory.
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&data, &link).unwrap();
        assert!(write(files(), &link, &data).is_err());
        // A directory of someone else's files.
        let other = dir.path().join("other");
        std::fs::create_dir(&other).unwrap();
        std::fs::write(other.join("notes.txt"), b"mine").unwrap();
        let err = write(files(), &other, &data).unwrap_err().to_string();
        assert!(err.contains("notes.txt"), "{err}");
        assert_eq!(
            std::fs::read(data.join("stories.toml")).unwrap(),
            b"keep me"
        );
        assert_eq!(std::fs::read(other.join("notes.txt")).unwrap(), b"mine");
        // An empty directory is fine.
        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        write(files(), &empty, &data).unwrap();
    }
}
