//! The static build: render a site and write it atomically, or check an existing directory.

use std::path::{Path, PathBuf};

/// Writing or checking the output failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BuildError + '_ {
    move |source| BuildError::Io {
        path: path.to_path_buf(),
        source,
    }
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

/// Compares `out` with the files that should be there.
pub fn check(
    files: impl IntoIterator<Item = (String, Vec<u8>)>,
    out: &Path,
) -> Result<Staleness, BuildError> {
    let mut report = Staleness::default();
    let mut names = std::collections::BTreeSet::new();
    for (name, bytes) in files {
        let path = out.join(&name);
        names.insert(name.clone());
        match std::fs::read(&path) {
            Ok(on_disk) if on_disk == bytes => {}
            Ok(_) => report.changed.push(name.clone()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => report.missing.push(name.clone()),
            Err(e) => return Err(io(&path)(e)),
        }
    }
    if out.is_dir() {
        for entry in std::fs::read_dir(out).map_err(io(out))? {
            let entry = entry.map_err(io(out))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !names.contains(&name) {
                report.extra.push(name);
            }
        }
    }
    report.extra.sort();
    Ok(report)
}

/// Writes `files` as the whole content of `out`: into a fresh directory beside it first, then
/// swapped in by rename, so a failure leaves the old output untouched and no half-written file.
pub fn write(
    files: impl IntoIterator<Item = (String, Vec<u8>)>,
    out: &Path,
) -> Result<usize, BuildError> {
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
    let mut count = 0;
    let written = files.into_iter().try_for_each(|(name, bytes)| {
        let path = tmp.join(&name);
        count += 1;
        std::fs::write(&path, bytes).map_err(io(&path))
    });
    if let Err(e) = written {
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
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn write_then_check_then_detect() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("feeds");
        let mut files = BTreeMap::new();
        files.insert("a.rss".to_string(), b"one".to_vec());
        files.insert("b.json".to_string(), b"two".to_vec());
        assert_eq!(check(files.clone(), &out).unwrap().missing.len(), 2);
        write(files.clone(), &out).unwrap();
        assert!(check(files.clone(), &out).unwrap().is_fresh());
        std::fs::write(out.join("a.rss"), b"changed").unwrap();
        std::fs::write(out.join("c.atom"), b"left over").unwrap();
        std::fs::remove_file(out.join("b.json")).unwrap();
        let s = check(files.clone(), &out).unwrap();
        assert_eq!(s.changed, vec!["a.rss"]);
        assert_eq!(s.missing, vec!["b.json"]);
        assert_eq!(s.extra, vec!["c.atom"]);
        write(files.clone(), &out).unwrap();
        assert!(check(files.clone(), &out).unwrap().is_fresh());
        // No temporary directories are left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
