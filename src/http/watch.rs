//! Relaying report files: when a report (or the manifest) in the data directory changes, wait
//! until the directory has settled, read the data again and send each story's differences to
//! the writer.
//!
//! An editor that saves in place truncates the file and then writes it, perhaps in pieces; a
//! reading in between would relay every partial state (entries deleted, then created again).
//! So a change is read only once every report has kept the same size, modification time and
//! content for a quiet period (`Config::report_settle`) with no file event in it, and is
//! relayed only if the files did not move while they were read. A file renamed into place
//! settles at once, after one quiet period.

use notify::{RecursiveMode, Watcher};
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;
use tokio::sync::mpsc;

use super::App;
use crate::ingest::site::Site;

fn relevant(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("txt" | "toml")
    )
}

fn is_report(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "txt")
}

/// What is known of one data file: enough to tell that it is still being written.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    len: u64,
    modified: Option<SystemTime>,
    /// Of the content; the standard hasher is enough to notice a change (nobody chooses it).
    hash: u64,
}

/// Every report and manifest in `dir`; a file that cannot be read counts as absent.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Seen> {
    let mut out = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if !relevant(&path) {
            continue;
        }
        let (Ok(meta), Ok(content)) = (std::fs::metadata(&path), std::fs::read(&path)) else {
            continue;
        };
        let mut h = std::collections::hash_map::DefaultHasher::new();
        content.hash(&mut h);
        out.insert(
            path,
            Seen {
                len: meta.len(),
                modified: meta.modified().ok(),
                hash: h.finish(),
            },
        );
    }
    out
}

async fn snapshot_of(dir: &Path) -> BTreeMap<PathBuf, Seen> {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || snapshot(&dir))
        .await
        .unwrap_or_default()
}

/// The content of each file, without times: what decides whether there is anything to relay.
fn contents(s: &BTreeMap<PathBuf, Seen>) -> BTreeMap<PathBuf, (u64, u64)> {
    s.iter()
        .map(|(p, seen)| (p.clone(), (seen.len, seen.hash)))
        .collect()
}

/// SIGHUP, where there is one: asks for the data to be read again.
struct Hangup {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl Hangup {
    fn new() -> Hangup {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let signal = signal(SignalKind::hangup())
                .map_err(|e| tracing::warn!(error = %e, "cannot handle SIGHUP"))
                .ok();
            Hangup { signal }
        }
        #[cfg(not(unix))]
        Hangup {}
    }

    /// The next SIGHUP; never, without one.
    async fn recv(&mut self) {
        #[cfg(unix)]
        if let Some(s) = &mut self.signal {
            if s.recv().await.is_some() {
                return;
            }
        }
        std::future::pending::<()>().await
    }
}

/// Watches `data` until the server stops. Errors are logged; the relay keeps its last state.
pub fn spawn(
    app: Arc<App>,
    data: PathBuf,
    base_url: Option<String>,
) -> notify::Result<notify::RecommendedWatcher> {
    let (tx, mut rx) = mpsc::channel::<()>(16);
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(event) = res {
            if event.paths.iter().any(|p| relevant(p)) && !event.kind.is_access() {
                let _ = tx.try_send(());
            }
        }
    })?;
    watcher.watch(&data, RecursiveMode::NonRecursive)?;
    crate::metrics::get()
        .report_files_watched
        .set(snapshot(&data).keys().filter(|p| is_report(p)).count() as i64);
    let mut hup = Hangup::new();
    tokio::spawn(async move {
        let mut shutdown = app.shutdown.clone();
        let quiet = app.config.report_settle;
        // What the last relayed reading saw; `None` until the first.
        let mut relayed: Option<BTreeMap<PathBuf, (u64, u64)>> = None;
        loop {
            tokio::select! {
                got = rx.recv() => if got.is_none() { return },
                _ = hup.recv() => {
                    tracing::info!(dir = %data.display(), "SIGHUP: reading the manifest and the reports again");
                    // Read again even when the files look as they did.
                    relayed = None;
                }
                _ = shutdown.changed() => return,
            }
            loop {
                // Settle: the same files, sizes, times and contents across a quiet period.
                let mut before = snapshot_of(&data).await;
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(quiet) => {}
                        _ = shutdown.changed() => return,
                    }
                    let mut stirred = false;
                    while rx.try_recv().is_ok() {
                        stirred = true;
                    }
                    let now = snapshot_of(&data).await;
                    if !stirred && now == before {
                        break;
                    }
                    before = now;
                }
                let seen = contents(&before);
                crate::metrics::get()
                    .report_files_watched
                    .set(seen.keys().filter(|p| is_report(p)).count() as i64);
                if relayed.as_ref() == Some(&seen) {
                    tracing::debug!("data files rewritten with what was already relayed");
                    break;
                }
                let (dir, base) = (data.clone(), base_url.clone());
                let loaded =
                    tokio::task::spawn_blocking(move || Site::load(&dir, base.as_deref())).await;
                if snapshot_of(&data).await != before {
                    // Written to while being read: settle again.
                    continue;
                }
                match loaded {
                    Ok(Ok(site)) => {
                        let changed = app.relay.sync_stories(&site).await;
                        for slug in &changed.added {
                            tracing::info!(story = %slug, "stories.toml: story added; serving it");
                        }
                        for slug in &changed.removed {
                            tracing::info!(story = %slug, "stories.toml: story removed; no longer serving it (its history stays in the log)");
                        }
                        let mut total = 0;
                        for story in site.stories {
                            total += app.relay.sync_report(story).await;
                        }
                        relayed = Some(seen);
                        app.health.report_ok();
                        tracing::info!(
                            events = total,
                            "data directory changed; relayed the differences"
                        );
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "data directory changed but cannot be read; keeping the last good state");
                        app.health.report_failed(e.to_string());
                    }
                    Err(e) => tracing::error!(error = %e, "reading the data directory failed"),
                }
                break;
            }
        }
    });
    Ok(watcher)
}
