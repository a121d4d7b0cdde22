//! Relaying report files: when a report (or the manifest) in the data directory changes, read
//! the data again and send each story's differences to the writer.

use notify::{RecursiveMode, Watcher};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

use super::App;
use crate::site::Site;

/// How long to wait for a burst of file events to settle before reading.
const SETTLE: Duration = Duration::from_millis(150);

/// Watches `data` until the server stops. Errors are logged; the relay keeps its last state.
pub fn spawn(
    app: Arc<App>,
    data: PathBuf,
    base_url: Option<String>,
) -> notify::Result<notify::RecommendedWatcher> {
    let (tx, mut rx) = mpsc::channel::<()>(16);
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(event) = res {
            let relevant = event
                .paths
                .iter()
                .any(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("txt" | "toml")));
            if relevant && !event.kind.is_access() {
                let _ = tx.try_send(());
            }
        }
    })?;
    watcher.watch(&data, RecursiveMode::NonRecursive)?;
    tokio::spawn(async move {
        let mut shutdown = app.shutdown.clone();
        loop {
            tokio::select! {
                got = rx.recv() => if got.is_none() { return },
                _ = shutdown.changed() => return,
            }
            tokio::time::sleep(SETTLE).await;
            while rx.try_recv().is_ok() {}
            let (dir, base) = (data.clone(), base_url.clone());
            let loaded =
                tokio::task::spawn_blocking(move || Site::load(&dir, base.as_deref())).await;
            match loaded {
                Ok(Ok(site)) => {
                    let mut total = 0;
                    for story in site.stories {
                        total += app.relay.sync_report(story).await;
                    }
                    tracing::info!(
                        events = total,
                        "data directory changed; relayed the differences"
                    );
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "data directory changed but cannot be read; keeping the last good state")
                }
                Err(e) => tracing::error!(error = %e, "reading the data directory failed"),
            }
        }
    });
    Ok(watcher)
}
