//! The log, the source of truth, and everything fed from it: one ordered event log behind
//! every transport.
//!
//! A change is decided by the single [`writer`], appended by a store, and only then applied.
//! [`store`] holds the seam (the [`store::Store`] and [`store::Reader`] traits) and the embedded
//! file log; [`redis`] shares one log between nodes; [`memstore`] keeps it in memory for tests.
//! The [`follower`] reads what the store holds after its cursor and hands it to the
//! [`renderer`] thread (which renders changed stories off the publish path, once per version,
//! through [`cache`]) and to the [`hub`], the read side every connection uses. [`state`] is the
//! projection (the stories with the log applied), [`event`] what the log stores, and
//! [`snapshot`] keeps the projection so a start reads a snapshot and the log after it.
//! [`Relay`] opens the log and owns these threads.

pub mod cache;
pub mod event;
mod follower;
pub mod hub;
pub mod memstore;
pub mod redis;
pub mod renderer;
pub mod snapshot;
pub mod state;
pub mod store;
pub mod writer;

use chrono::Utc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};

use crate::ingest::site::Site;
use crate::model::Story;
use hub::{Committed, Hub};
use state::{EntryInput, State};
use store::{Reader, Store, StoreError};
pub use writer::{Ack, ChangeError, StoriesChanged};
use writer::{Command, Writer};

/// Opening the relay failed.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Snapshot(#[from] snapshot::Unreadable),
}

/// How the relay keeps its memory and its snapshots.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub memory: hub::Memory,
    /// A snapshot of the state every this many events (see [`snapshot`]).
    pub snapshot_every: u64,
    /// How many events the log retains behind its head (`--keep-events`): older ones are
    /// compacted away once a snapshot covers them. `None`: the log keeps everything.
    pub keep_events: Option<u64>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            memory: hub::Memory::default(),
            snapshot_every: snapshot::DEFAULT_EVERY,
            keep_events: None,
        }
    }
}

/// What the relay read to start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Started {
    /// The seq of the snapshot it started from, if any.
    pub snapshot: Option<u64>,
    /// The events it read from the log (those after the snapshot).
    pub events_read: usize,
}

/// A handle to the relay, shared by every connection.
pub struct Relay {
    pub hub: Arc<Hub>,
    tx: Mutex<Option<mpsc::Sender<Command>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Asks the renderer for an immediate render; dropped (with the writer's) on close.
    render_tx: Mutex<Option<std::sync::mpsc::Sender<renderer::Msg>>>,
    renderer: Mutex<Option<std::thread::JoinHandle<()>>>,
    follower: Mutex<Option<std::thread::JoinHandle<()>>>,
    snapshotter: Mutex<Option<std::thread::JoinHandle<()>>>,
    stop_following: Arc<AtomicBool>,
    reader: Arc<dyn Reader>,
    started: Started,
}

impl Relay {
    /// Opens the log, replays it over the data's stories (or, on first start, turns the data's
    /// entries into `create` events, oldest first), relays report changes made while stopped,
    /// renders every file and starts the writer, the follower and the renderer.
    pub fn open(
        site: Site,
        store: Box<dyn Store>,
        memory: impl Into<hub::Memory>,
    ) -> Result<Relay, RelayError> {
        let options = Options {
            memory: memory.into(),
            ..Options::default()
        };
        Relay::open_with(site, store, options)
    }

    /// [`Relay::open`] with every option.
    pub fn open_with(
        site: Site,
        mut store: Box<dyn Store>,
        options: Options,
    ) -> Result<Relay, RelayError> {
        // Damage with intact records after it is an error here: nothing is cut without the
        // operator (`livefeed log repair`). A torn tail was cut by `load`.
        let recovered = store.load()?;
        if let Some(reason) = &recovered.reason {
            tracing::warn!(
                dropped_bytes = recovered.dropped_bytes,
                kept_events = recovered.events.len(),
                reason = %reason,
                saved_copy = ?recovered.saved_copy,
                cut = recovered.read_only.is_none(),
                "event log was damaged; kept every intact record before the damage"
            );
        }
        let reader = store.reader();
        let hub = Arc::new(Hub::new(options.memory));
        hub.set_history(Arc::clone(&reader));
        hub.set_epoch(recovered.epoch);
        for why in &recovered.warnings {
            hub.warn(why.clone());
        }
        crate::metrics::get()
            .store_warnings
            .set(recovered.warnings.len() as i64);
        if let Some(why) = &recovered.read_only {
            tracing::error!(reason = %why, "event log is read-only; serving what it holds, publishing off");
            hub.fail_because(format!("read-only: {why}"));
        }
        // Every event carries its entry's anchor: the state relearns each anchor ever given.
        let started = Started {
            snapshot: recovered.snapshot.as_ref().map(|s| s.seq),
            events_read: recovered.events.len(),
        };
        let (committed, keys) = rebuild(&site, recovered.snapshot.as_ref(), &recovered.events)?;
        let at = store::Position {
            epoch: recovered.epoch,
            head: recovered
                .events
                .last()
                .map(|e| e.seq)
                .or(started.snapshot)
                .unwrap_or(0),
        };
        // The hub starts at the head (a snapshot's seq when nothing follows it), with the
        // events read; older ones are read back from the log.
        hub.reset(
            at.epoch,
            started.snapshot.unwrap_or(0),
            recovered
                .events
                .iter()
                .map(|e| Committed::from_event(e, at.epoch)),
        );
        tracing::info!(
            events = recovered.events.len(),
            snapshot = ?started.snapshot,
            head = at.head,
            epoch = %at.epoch,
            "event log opened"
        );
        drop(recovered);

        let mut writer = Writer {
            state: committed.clone(),
            committed,
            site: site.clone(),
            store,
            reader: Arc::clone(&reader),
            hub: Arc::clone(&hub),
            at,
            keys,
            render: None,
            delivered: Arc::new(follower::Delivered::new(at.head)),
            snapshots: None,
        };
        writer.relay_reports_at_start(&site.stories);
        writer.delivered = Arc::new(follower::Delivered::new(hub.head()));
        hub.set_dates_move_forward(writer.state.dates_move_forward());
        let all: Vec<&Story> = writer.state.site.stories.iter().collect();
        hub.set_files(cache::render_changed(
            &writer.state.site,
            &all,
            hub.head(),
            Utc::now(),
        ));
        hub.set_rendered(hub.head());

        let thread_error = |what: &str, e| StoreError::Io {
            path: what.into(),
            source: e,
        };
        let (render_tx, render_rx) = std::sync::mpsc::channel();
        let renderer = renderer::Renderer {
            state: writer.state.clone(),
            hub: Arc::clone(&hub),
            seq: writer.at.head,
        };
        let render_handle = std::thread::Builder::new()
            .name("livefeed-render".into())
            .spawn(move || renderer.run(render_rx))
            .map_err(|e| thread_error("render thread", e))?;
        let since = writer.at.head - started.snapshot.unwrap_or(0);
        let (taker, takes) = snapshot::Taker::new(options.snapshot_every, since);
        writer.snapshots = Some(taker);
        let snapshot_reader = Arc::clone(&reader);
        let snapshot_handle = std::thread::Builder::new()
            .name("livefeed-snapshot".into())
            .spawn(move || snapshot::run(takes, snapshot_reader, options.keep_events))
            .map_err(|e| thread_error("snapshot thread", e))?;
        let stop_following = Arc::new(AtomicBool::new(false));
        let follower = follower::Follower {
            reader: Arc::clone(&reader),
            hub: Arc::clone(&hub),
            render: render_tx.clone(),
            // From what the hub has: on a shared log the writer may have read further at start.
            at: store::Position {
                epoch: writer.at.epoch,
                head: hub.head(),
            },
            delivered: Arc::clone(&writer.delivered),
            site,
            stop: Arc::clone(&stop_following),
        };
        let follow_handle = std::thread::Builder::new()
            .name("livefeed-follow".into())
            .spawn(move || follower.run())
            .map_err(|e| thread_error("follower thread", e))?;
        writer.render = Some(render_tx.clone());
        let (tx, rx) = mpsc::channel(4096);
        let handle = match std::thread::Builder::new()
            .name("livefeed-writer".into())
            .spawn(move || writer.run(rx))
        {
            Ok(handle) => handle,
            Err(e) => {
                // The follower would wait on the log forever: stop it before failing. (The
                // renderer and the snapshot thread end once their senders, dropped here, are.)
                stop_following.store(true, Ordering::Release);
                reader.close();
                let _ = follow_handle.join();
                return Err(thread_error("writer thread", e).into());
            }
        };
        Ok(Relay {
            hub,
            tx: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(handle)),
            render_tx: Mutex::new(Some(render_tx)),
            renderer: Mutex::new(Some(render_handle)),
            follower: Mutex::new(Some(follow_handle)),
            snapshotter: Mutex::new(Some(snapshot_handle)),
            stop_following,
            reader,
            started,
        })
    }

    /// What the relay read to start (a snapshot, and how many events after it).
    pub fn started(&self) -> Started {
        self.started
    }

    fn sender(&self) -> Option<mpsc::Sender<Command>> {
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    async fn request(
        &self,
        make: impl FnOnce(writer::Reply) -> Command,
    ) -> Result<Ack, ChangeError> {
        let (reply, rx) = oneshot::channel();
        let closed = || ChangeError::Storage("the relay is shutting down".into());
        let tx = self.sender().ok_or_else(closed)?;
        tx.send(make(reply)).await.map_err(|_| closed())?;
        rx.await.map_err(|_| closed())?
    }

    /// Publishes a new entry; answers once it is durable. A known `key` returns the first answer.
    pub async fn publish(
        &self,
        story: &str,
        input: EntryInput,
        key: Option<String>,
    ) -> Result<Ack, ChangeError> {
        let story = story.to_string();
        // Hashed here, on the caller's task, not on the single writer thread.
        let key = key.map(|key| writer::IdempotencyKey {
            fingerprint: writer::fingerprint(&story, &input),
            key,
        });
        self.request(|reply| Command::Publish {
            story,
            input,
            key,
            reply,
        })
        .await
    }

    pub async fn edit(&self, story: &str, id: &str, input: EntryInput) -> Result<Ack, ChangeError> {
        let (story, id) = (story.to_string(), id.to_string());
        self.request(|reply| Command::Edit {
            story,
            id,
            input,
            reply,
        })
        .await
    }

    pub async fn delete(&self, story: &str, id: &str) -> Result<Ack, ChangeError> {
        let (story, id) = (story.to_string(), id.to_string());
        self.request(|reply| Command::Delete { story, id, reply })
            .await
    }

    /// Ends a story (`ended` set: the time it ended) or makes it live again (`None`): a
    /// `state` event, durable and relayed like an entry's.
    pub async fn set_state(
        &self,
        story: &str,
        ended: Option<chrono::DateTime<Utc>>,
    ) -> Result<Ack, ChangeError> {
        let story = story.to_string();
        self.request(|reply| Command::Lifecycle {
            story,
            ended,
            reply,
        })
        .await
    }

    /// Serves the stories of a fresh reading of the manifest: those added to it are served
    /// (empty until their reports are synced: [`Relay::sync_report`]), those removed from it
    /// are no longer served (their history stays in the log). Returns once the change is
    /// rendered (or after a few seconds).
    pub(crate) async fn sync_stories(&self, site: &Site) -> StoriesChanged {
        let (reply, rx) = oneshot::channel();
        let Some(tx) = self.sender() else {
            return StoriesChanged::default();
        };
        // Metadata only: the entries come through `sync_report`.
        let fresh = site
            .stories
            .iter()
            .map(|s| Story {
                slug: s.slug.clone(),
                kind: s.kind,
                title: s.title.clone(),
                description: s.description.clone(),
                url: s.url.clone(),
                published: s.published,
                updated: s.updated,
                entries: Vec::new(),
                tombstones: Vec::new(),
                ended: s.ended,
                zone: s.zone,
            })
            .collect();
        if tx.send(Command::Stories { fresh, reply }).await.is_err() {
            return StoriesChanged::default();
        }
        let mut changed = rx.await.unwrap_or_default();
        if let Some(rendered) = changed.rendered.take() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), rendered).await;
        }
        changed
    }

    /// Relays the differences between a fresh reading of a report and the log; returns how
    /// many events it made.
    pub async fn sync_report(&self, fresh: Story) -> usize {
        let (reply, rx) = oneshot::channel();
        let Some(tx) = self.sender() else { return 0 };
        if tx
            .send(Command::Sync {
                fresh,
                reply: Some(reply),
            })
            .await
            .is_err()
        {
            return 0;
        }
        rx.await.unwrap_or(0)
    }

    /// Waits (for at most a few seconds) until the file at `path` reflects every event already
    /// visible to readers, asking the renderer to hurry: a reader that got an acknowledgement
    /// or an event, then fetches a feed, finds it there.
    pub async fn fresh(&self, key: &crate::layout::FileKey) {
        let Some(need) = self.hub.stale(key) else {
            return;
        };
        if let Some(tx) = self
            .render_tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            let _ = tx.send(renderer::Msg::Urgent);
        }
        if !self
            .hub
            .wait_rendered(need, std::time::Duration::from_secs(5))
            .await
        {
            tracing::warn!(
                path = %key.path(),
                need,
                "files did not catch up within 5 s; serving the last rendering"
            );
        }
    }

    /// Stops accepting changes, lets the writer finish what it has, the follower hand it on,
    /// and waits for them and for the renderer to stop.
    pub fn close(&self) {
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(handle) = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = handle.join();
        }
        // The writer's last snapshot is written before the relay reports closed.
        if let Some(handle) = self
            .snapshotter
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            let _ = handle.join();
        }
        self.stop_following.store(true, Ordering::Release);
        self.reader.close();
        if let Some(handle) = self
            .follower
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            let _ = handle.join();
        }
        self.render_tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(handle) = self
            .renderer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            let _ = handle.join();
        }
    }
}

/// The relay's threads end with it: dropping the last handle stops the writer (after what it
/// has) and the renderer, and waits for them, so the log's lock is free once it returns.
impl Drop for Relay {
    fn drop(&mut self) {
        self.close();
    }
}

/// The stories and the live idempotency keys of a history: its snapshot (when the store kept
/// one), then the events after it.
pub(crate) fn rebuild(
    site: &Site,
    saved: Option<&store::SavedSnapshot>,
    events: &[event::Event],
) -> Result<(State, writer::Keys), snapshot::Unreadable> {
    let mut keys = writer::Keys::default();
    let state = match saved {
        Some(saved) => {
            let snap = snapshot::decode(&saved.payload)?;
            for (key, record) in snap.keys {
                keys.insert(key, record);
            }
            let mut state = State::restore(snap.projection, site.clone());
            for e in events {
                match state.rebased(e) {
                    Some(moved) => state.apply_unsorted(&moved),
                    None => state.apply_unsorted(e),
                }
            }
            state.settle();
            state
        }
        None => State::from_log(site.clone(), events),
    };
    for e in events {
        keys.insert_event(e);
    }
    keys.prune(Utc::now());
    Ok((state, keys))
}

/// A history rebuilt for a writer or follower that must start over (the history was replaced,
/// or compacted past it): its snapshot, if the store keeps one, then the events after it,
/// applied a page at a time as they are read, so a rebuild never holds the whole history.
pub(crate) struct Rebuilt {
    pub(crate) state: State,
    pub(crate) keys: writer::Keys,
    /// The seq the rebuilt stories are at.
    pub(crate) head: u64,
    /// The last page read: what the hub keeps (older cursors are read back from the log).
    pub(crate) last: Vec<event::Event>,
    /// The seq of the snapshot it started from.
    pub(crate) snapshot: Option<u64>,
    /// Events read after the snapshot.
    pub(crate) events: usize,
}

/// Why a history could not be rebuilt; the caller tries again later.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RebuildError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Snapshot(#[from] snapshot::Unreadable),
}

/// Rebuilds the stories of `pos`'s history (see [`Rebuilt`]).
pub(crate) fn rebuild_paged(
    site: &Site,
    reader: &dyn Reader,
    pos: store::Position,
) -> Result<Rebuilt, RebuildError> {
    let saved = reader.snapshot(pos.epoch)?;
    let mut keys = writer::Keys::default();
    let mut state = match &saved {
        Some(saved) => {
            let snap = snapshot::decode(&saved.payload)?;
            for (key, record) in snap.keys {
                keys.insert(key, record);
            }
            State::restore(snap.projection, site.clone())
        }
        None => State::empty(site.clone()),
    };
    let base = saved.as_ref().map_or(0, |s| s.seq);
    let (mut last, mut events) = (Vec::new(), 0);
    let (head, read) = follower::read_pages(reader, base, pos, |page| {
        for e in &page {
            state.apply_logged(e);
            keys.insert_event(e);
        }
        events += page.len();
        last = page;
    });
    read?;
    state.settle();
    keys.prune(Utc::now());
    Ok(Rebuilt {
        state,
        keys,
        head,
        last,
        snapshot: saved.map(|s| s.seq),
        events,
    })
}

/// Opens the embedded file store in `dir`.
pub fn file_store(dir: &std::path::Path) -> Box<dyn Store> {
    Box::new(store::FileStore::new(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropping_the_relay_stops_its_threads_and_frees_the_log() {
        let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data");
        let dir = tempfile::tempdir().unwrap();
        for _ in 0..20 {
            let site = Site::load(&data, None).unwrap();
            let relay = Relay::open(site, file_store(dir.path()), 1000).unwrap();
            drop(relay);
            // The writer owned the store and its lock: a new relay opens at once.
        }
    }
}
