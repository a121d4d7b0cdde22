//! The read side of the relay, fed by the follower: the newest committed events in memory
//! (older ones read back through the store's `Reader`), the head as a `watch` channel that
//! wakes every waiter on append, and the rendered files. Readers take a lock only to copy out
//! `Arc`s; nothing here is held across an `.await`.

use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use tokio::sync::watch;

use super::event::{Event, Op};
use super::store::{Epoch, Reader, StoreError};
use crate::layout::FileKey;

/// A committed event, serialised once: every long-poll page and every SSE stream shares these
/// bytes (reference-counted `Bytes`), so a subscriber never holds a copy of its own.
#[derive(Debug)]
pub struct Committed {
    pub seq: u64,
    pub op: Op,
    pub story: String,
    /// The public JSON of the event (a view into `frame`).
    pub json: Bytes,
    /// The Server-Sent Events frame `id: EPOCH:SEQ\nevent: OP\ndata: JSON\n\n` (the epoch in
    /// the id, so that a stream resumed on another history is told, never served its seqs).
    pub frame: Bytes,
}

impl Committed {
    pub(crate) fn from_event(e: &Event, epoch: Epoch) -> Committed {
        let json = e.wire_json();
        let head = format!("id: {epoch}:{}\nevent: {}\ndata: ", e.seq, e.op.as_str());
        let mut frame = Vec::with_capacity(head.len() + json.len() + 2);
        frame.extend_from_slice(head.as_bytes());
        frame.extend_from_slice(&json);
        frame.extend_from_slice(b"\n\n");
        let frame = Bytes::from(frame);
        Committed {
            seq: e.seq,
            op: e.op,
            story: e.story.clone(),
            json: frame.slice(head.len()..frame.len() - 2),
            frame,
        }
    }
}

/// A cursor the log cannot serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CursorGone {
    pub oldest: u64,
    pub head: u64,
    /// The history the log holds now (a cursor of another epoch names nothing in it).
    pub epoch: Epoch,
}

/// Events after a cursor.
#[derive(Debug, Default)]
pub struct Page {
    pub events: Vec<Arc<Committed>>,
    /// The cursor to send next: past everything examined, matching or not.
    pub next: u64,
    pub head: u64,
}

/// A rendered file with its validators and its compressed form, made once per version.
#[derive(Debug)]
pub struct CachedFile {
    pub content_type: &'static str,
    pub body: Bytes,
    pub gzip: Bytes,
    /// Strong validator of the identity body; the gzip body's is this with `-gz` inside.
    pub etag: String,
    pub(crate) etag_gzip: String,
    /// The content's time, whole seconds (see `log::cache`): the server's `Last-Modified`.
    pub modified: std::time::SystemTime,
    /// Whether `If-Modified-Since` may be honoured for this version: no other version of
    /// this path was ever served with the same `Last-Modified` (see [`Hub::set_files`]).
    pub(crate) ims: bool,
    /// The latest `Last-Modified` any version of this path had, this one included.
    pub(crate) newest_modified: std::time::SystemTime,
    /// The log position this version reflects.
    pub seq: u64,
    /// What the transport derives from this version, made once on first use (the HTTP
    /// server keeps its response headers here: see `respond::cached_file` in `src/http/`). Opaque, so the
    /// log and the renderer know nothing of HTTP.
    pub headers: OnceLock<Box<dyn std::any::Any + Send + Sync>>,
}

#[derive(Default)]
struct Log {
    events: VecDeque<Arc<Committed>>,
    /// The bytes `events` hold (their frames; the JSON is a view into the frame).
    bytes: usize,
    head: u64,
    /// The seq of each story's latest event.
    story_head: HashMap<String, u64>,
}

/// Shared by the writer (which appends) and every connection (which reads).
pub struct Hub {
    log: RwLock<Log>,
    head_tx: watch::Sender<u64>,
    files: RwLock<HashMap<FileKey, Arc<CachedFile>>>,
    /// The seq the rendered files reflect: every event up to it is in them.
    rendered_tx: watch::Sender<u64>,
    /// Lock-free copies of the head and of the rendered seq, for the feed read path.
    head_seq: AtomicU64,
    rendered_seq: AtomicU64,
    /// Set when storage failed: publishing stops until a restart recovers the log.
    failed: AtomicBool,
    /// Set while the store is unreachable (a shared engine's outage): why, and until when
    /// publishes are answered 503 without trying it again.
    outage: std::sync::Mutex<Option<(String, std::time::Instant)>>,
    /// The epoch of the history the events in memory belong to.
    epoch: AtomicU64,
    /// Why publishing is off, for `/healthz` (the first reason given wins).
    failure: std::sync::OnceLock<String>,
    /// How many events, and how many bytes of them, to keep in memory; older cursors are
    /// answered from `history`, or get a 410 without one.
    memory: Memory,
    /// The log read back, for cursors older than memory.
    history: OnceLock<Arc<dyn Reader>>,
    /// What the stories' whole history says about `Last-Modified` moving forward, for when
    /// memory does not hold all of it (a start from a snapshot).
    forward: std::sync::Mutex<Option<HashMap<String, bool>>>,
    /// What is risky but not fatal (a store that may lose acknowledged appends), for
    /// `/healthz`; publishing goes on.
    warnings: std::sync::Mutex<Vec<String>>,
    /// Why the follower cannot read the store now (a shared engine's outage), for `/healthz`
    /// and `/readyz`; cleared when it reads again.
    follow_error: std::sync::Mutex<Option<String>>,
}

/// How much of the log the hub keeps in memory (at least the newest event).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    pub events: usize,
    pub bytes: usize,
}

impl Default for Memory {
    fn default() -> Memory {
        Memory {
            events: 1_000_000,
            bytes: 64 * 1024 * 1024,
        }
    }
}

impl From<usize> for Memory {
    /// A cap in events, with the default cap in bytes.
    fn from(events: usize) -> Memory {
        Memory {
            events,
            ..Memory::default()
        }
    }
}

/// The most events one read of the history examines: a page for one story among many moves
/// its cursor past the others in steps of this size.
const HISTORY_STEP: usize = 4096;

impl Hub {
    pub fn new(memory: impl Into<Memory>) -> Hub {
        Hub {
            log: RwLock::new(Log::default()),
            head_tx: watch::channel(0).0,
            files: RwLock::new(HashMap::new()),
            rendered_tx: watch::channel(0).0,
            head_seq: AtomicU64::new(0),
            rendered_seq: AtomicU64::new(0),
            failed: AtomicBool::new(false),
            outage: std::sync::Mutex::new(None),
            epoch: AtomicU64::new(0),
            failure: std::sync::OnceLock::new(),
            memory: memory.into(),
            history: OnceLock::new(),
            forward: std::sync::Mutex::new(None),
            warnings: std::sync::Mutex::new(Vec::new()),
            follow_error: std::sync::Mutex::new(None),
        }
    }

    /// The follower cannot read the store (`Some(why)`), or reads it again (`None`).
    pub(crate) fn set_follow_error(&self, why: Option<String>) {
        *self.follow_error.lock().unwrap_or_else(|p| p.into_inner()) = why;
    }

    /// Why the follower cannot read the store now.
    pub(crate) fn follow_error(&self) -> Option<String> {
        self.follow_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Notes something risky but not fatal, listed by `/healthz` (publishing goes on).
    pub fn warn(&self, why: impl Into<String>) {
        self.warnings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(why.into());
    }

    /// What [`Hub::warn`] noted.
    pub fn warnings(&self) -> Vec<String> {
        self.warnings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Makes committed events visible and wakes every waiter.
    pub fn commit(&self, events: impl IntoIterator<Item = Committed>) {
        let head = {
            let mut log = self.log.write().unwrap_or_else(|p| p.into_inner());
            for e in events {
                log.head = e.seq;
                match log.story_head.get_mut(&e.story) {
                    Some(seq) => *seq = e.seq,
                    None => {
                        log.story_head.insert(e.story.clone(), e.seq);
                    }
                }
                log.bytes += e.frame.len();
                log.events.push_back(Arc::new(e));
            }
            while log.events.len() > 1
                && (log.events.len() > self.memory.events || log.bytes > self.memory.bytes)
            {
                if let Some(e) = log.events.pop_front() {
                    log.bytes -= e.frame.len();
                }
            }
            self.head_seq.store(log.head, Ordering::Release);
            log.head
        };
        self.head_tx.send_replace(head);
    }

    pub fn head(&self) -> u64 {
        *self.head_tx.borrow()
    }

    /// The oldest seq still served (the log's first when it can be read back) and the head.
    pub(crate) fn bounds(&self) -> (u64, u64) {
        let log = self.log.read().unwrap_or_else(|p| p.into_inner());
        let in_memory = log.events.front().map_or(log.head + 1, |e| e.seq);
        match self.history.get() {
            Some(history) => (in_memory.min(history.oldest()), log.head),
            None => (in_memory, log.head),
        }
    }

    /// Lets cursors older than memory be answered from the log itself.
    pub(crate) fn set_history(&self, history: Arc<dyn Reader>) {
        let _ = self.history.set(history);
    }

    /// Tells the hub, for every story, whether its whole history moved `Last-Modified`
    /// forward (`State::dates_move_forward`).
    pub(crate) fn set_dates_move_forward(&self, forward: HashMap<String, bool>) {
        *self.forward.lock().unwrap_or_else(|p| p.into_inner()) = Some(forward);
    }

    /// The epoch of the history served.
    pub fn epoch(&self) -> Epoch {
        Epoch(self.epoch.load(Ordering::Acquire))
    }

    pub(crate) fn set_epoch(&self, epoch: Epoch) {
        self.epoch.store(epoch.0, Ordering::Release);
    }

    /// The log's history was replaced: forgets every event of the old one and serves the new
    /// one: its newest `events`, up to `head`. Waiters wake; cursors of the old epoch are
    /// refused from now on.
    pub fn reset(&self, epoch: Epoch, head: u64, events: impl IntoIterator<Item = Committed>) {
        {
            let mut log = self.log.write().unwrap_or_else(|p| p.into_inner());
            *log = Log {
                head,
                ..Log::default()
            };
            self.head_seq.store(head, Ordering::Release);
            self.set_epoch(epoch);
        }
        self.commit(events);
        // Wake every waiter even when the head did not move: their epoch did.
        self.head_tx.send_modify(|_| {});
    }

    /// Whether a page after `after` must be read from the log rather than memory: a cursor
    /// older than memory, or one ahead of this node's head (on a shared log, another node may
    /// have served it: the log says whether it exists).
    pub(crate) fn needs_history(&self, after: u64) -> bool {
        if self.history.get().is_none() {
            return false;
        }
        let log = self.log.read().unwrap_or_else(|p| p.into_inner());
        let oldest = log.events.front().map_or(log.head + 1, |e| e.seq);
        after.saturating_add(1) < oldest || after > log.head
    }

    /// A cursor ahead of this node's head. When the log holds it (another node served it:
    /// several nodes share the log and this one is a moment behind), or when the log cannot be
    /// asked now (an outage: the cursor is neither served nor known to be gone), the answer is
    /// "nothing yet": the caller waits on the head as for any cursor at the head, and the
    /// follower hands the events on once it has them. Only a cursor the log does not hold is
    /// gone: answering 410 for a lagging node or during an outage would send the client back
    /// to the start (a replay of what it has already seen).
    fn page_ahead(&self, history: &Arc<dyn Reader>, after: u64) -> Result<Page, CursorGone> {
        let held = history
            .position()
            .map_or(true, |pos| pos.epoch == self.epoch() && pos.head >= after);
        if !held {
            return Err(self.gone());
        }
        Ok(Page {
            events: Vec::new(),
            next: after,
            head: self.head(),
        })
    }

    /// [`Hub::page`] for any cursor: one older than memory is read from the log on a blocking
    /// thread (never on the runtime), up to the oldest event in memory.
    pub async fn page_any(
        self: Arc<Self>,
        after: u64,
        story: Option<String>,
        limit: usize,
    ) -> Result<Page, CursorGone> {
        // Memory first: the usual wake-up takes one read lock; the log only when memory refuses.
        match self.page(after, story.as_deref(), limit) {
            Err(_) if self.needs_history(after) => {}
            answer => return answer,
        }
        let hub = Arc::clone(&self);
        let read = tokio::task::spawn_blocking(move || hub.page_from_history(after, story, limit));
        match read.await {
            Ok(page) => page,
            Err(e) => {
                tracing::error!(error = %e, "reading the event log back failed");
                Err(self.gone())
            }
        }
    }

    /// The answer for a cursor that cannot be served now.
    pub fn gone(&self) -> CursorGone {
        let (oldest, head) = self.bounds();
        CursorGone {
            oldest,
            head,
            epoch: self.epoch(),
        }
    }

    /// Blocking (run it on a blocking thread): events after `after` from the log, up to the
    /// first event in memory.
    pub fn page_from_history(
        &self,
        after: u64,
        story: Option<String>,
        limit: usize,
    ) -> Result<Page, CursorGone> {
        let Some(history) = self.history.get() else {
            return Err(self.gone());
        };
        if after > self.head() {
            return self.page_ahead(history, after);
        }
        let (until, head) = {
            let log = self.log.read().unwrap_or_else(|p| p.into_inner());
            (log.events.front().map_or(log.head, |e| e.seq - 1), log.head)
        };
        let events = history
            .read(self.epoch(), after, until, HISTORY_STEP)
            .map_err(|e| {
                match e {
                    // An old cursor: the answer is a 410 with `oldest`, nothing went wrong.
                    StoreError::Compacted { .. } => {}
                    e => tracing::error!(error = %e, after, "reading the event log back failed"),
                }
                self.gone()
            })?;
        let mut page = Page {
            events: Vec::new(),
            next: after,
            head,
        };
        for e in &events {
            if page.events.len() >= limit {
                break;
            }
            if story.as_deref().is_none_or(|s| s == e.story) {
                page.events
                    .push(Arc::new(Committed::from_event(e, self.epoch())));
            }
            page.next = e.seq;
        }
        Ok(page)
    }

    /// A receiver that wakes when the head moves.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.head_tx.subscribe()
    }

    /// Up to `limit` events after `after`, for `story` (or all). `after` must lie between the
    /// event before the oldest kept and the head.
    pub fn page(&self, after: u64, story: Option<&str>, limit: usize) -> Result<Page, CursorGone> {
        let log = self.log.read().unwrap_or_else(|p| p.into_inner());
        let oldest = log.events.front().map_or(log.head + 1, |e| e.seq);
        if after > log.head || after + 1 < oldest {
            // Older than memory is served by `page_any` when the log can be read back.
            let oldest = match self.history.get() {
                Some(history) => oldest.min(history.oldest()),
                None => oldest,
            };
            return Err(CursorGone {
                oldest,
                head: log.head,
                epoch: self.epoch(),
            });
        }
        let start = (after + 1 - oldest) as usize;
        let mut page = Page {
            events: Vec::new(),
            next: after,
            head: log.head,
        };
        for e in log.events.range(start..) {
            if page.events.len() >= limit {
                break;
            }
            if story.is_none_or(|s| s == e.story) {
                page.events.push(Arc::clone(e));
            }
            page.next = e.seq;
        }
        Ok(page)
    }

    /// How many events, and how many bytes of SSE frames, for `story` (or all) lie in
    /// `(after, until]`, counting only what the log still holds.
    pub(crate) fn span(&self, after: u64, until: u64, story: Option<&str>) -> (u64, u64) {
        let log = self.log.read().unwrap_or_else(|p| p.into_inner());
        let Some(oldest) = log.events.front().map(|e| e.seq) else {
            return (0, 0);
        };
        let start = (after + 1).saturating_sub(oldest) as usize;
        let (mut n, mut bytes) = (0, 0);
        for e in log.events.range(start.min(log.events.len())..) {
            if e.seq > until {
                break;
            }
            if story.is_none_or(|s| s == e.story) {
                n += 1;
                bytes += e.frame.len() as u64;
            }
        }
        (n, bytes)
    }

    pub fn file(&self, key: &FileKey) -> Option<Arc<CachedFile>> {
        self.files
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()
    }

    /// Publishes new versions of files. A version's `Last-Modified` is honoured in
    /// `If-Modified-Since` only when it is later than that of every earlier version of the
    /// path: two versions made within one second share the date, and a client holding the
    /// older must not be told it has the newer. The first version a process serves has no
    /// earlier one in memory: it is trusted only when the log shows every change to its
    /// content moved the date forward (see [`super::cache::dates_move_forward`]).
    pub(crate) fn set_files(&self, files: impl IntoIterator<Item = (FileKey, CachedFile)>) {
        // Read from the log once, and only when a path has no earlier version (at start);
        // `None` inside when older events are gone from memory and nothing can be proven.
        let mut forward: Option<Option<HashMap<String, bool>>> = None;
        let mut map = self.files.write().unwrap_or_else(|p| p.into_inner());
        for (path, mut file) in files {
            match map.get(&path) {
                Some(old) if old.etag == file.etag && old.modified == file.modified => {
                    file.ims = old.ims;
                    file.newest_modified = old.newest_modified;
                }
                Some(old) => {
                    file.ims = file.modified > old.newest_modified;
                    file.newest_modified = file.modified.max(old.newest_modified);
                }
                None => {
                    let forward = forward.get_or_insert_with(|| {
                        let log = self.log.read().unwrap_or_else(|p| p.into_inner());
                        // Memory must hold the whole history (a start from a snapshot holds
                        // only what follows it).
                        let whole = match log.events.front() {
                            Some(e) => e.seq == 1,
                            None => log.head == 0,
                        };
                        if !whole {
                            return self
                                .forward
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .clone();
                        }
                        Some(super::cache::dates_move_forward(
                            log.events
                                .iter()
                                .map(|e| (e.op, e.story.as_str(), &e.json[..])),
                        ))
                    });
                    let story = path.story();
                    file.ims = file.ims
                        && forward
                            .as_ref()
                            .is_some_and(|f| f.get(story).copied().unwrap_or(true));
                }
            }
            map.insert(path, Arc::new(file));
        }
    }

    /// Stops serving files (a story removed from the manifest).
    pub(crate) fn remove_files(&self, paths: &[FileKey]) {
        let mut map = self.files.write().unwrap_or_else(|p| p.into_inner());
        for path in paths {
            map.remove(path);
        }
    }

    /// Records that the files now reflect every event up to `seq`.
    pub(crate) fn set_rendered(&self, seq: u64) {
        self.rendered_seq.fetch_max(seq, Ordering::AcqRel);
        self.rendered_tx.send_if_modified(|r| {
            let moved = seq > *r;
            *r = (*r).max(seq);
            moved
        });
    }

    /// The seq the file at `path` must reflect but does not yet: its story's latest event (any
    /// event for the combined feeds and the index). `None` when it is up to date.
    pub fn stale(&self, key: &FileKey) -> Option<u64> {
        // Everything committed is rendered: the usual case, answered without a lock.
        if self.rendered_seq.load(Ordering::Acquire) >= self.head_seq.load(Ordering::Acquire) {
            return None;
        }
        let story = key.story();
        let need = {
            let log = self.log.read().unwrap_or_else(|p| p.into_inner());
            if story == crate::render::ALL {
                log.head
            } else {
                log.story_head.get(story).copied().unwrap_or(0)
            }
        };
        (need > *self.rendered_tx.borrow()).then_some(need)
    }

    /// Waits until the files reflect `seq`, for at most `limit`; false on timeout.
    pub(crate) async fn wait_rendered(&self, seq: u64, limit: std::time::Duration) -> bool {
        let mut rx = self.rendered_tx.subscribe();
        matches!(
            tokio::time::timeout(limit, rx.wait_for(|r| *r >= seq)).await,
            Ok(Ok(_))
        )
    }

    pub fn fail(&self) {
        self.fail_because("a write to the event log failed; publishing is off until a restart");
    }

    /// Stops publishing, saying why (the first reason is kept).
    pub(crate) fn fail_because(&self, reason: impl Into<String>) {
        let _ = self.failure.set(reason.into());
        self.failed.store(true, Ordering::SeqCst);
    }

    /// The store cannot be reached: publishes are answered 503 for `retry_after` without trying
    /// it, then tried again.
    pub fn set_outage(&self, reason: String, retry_after: std::time::Duration) {
        let until = std::time::Instant::now() + retry_after;
        *self.outage.lock().unwrap_or_else(|p| p.into_inner()) = Some((reason, until));
    }

    pub(crate) fn clear_outage(&self) {
        self.outage.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    /// Why the store is unreachable, and how long until it is tried again (zero: try now).
    pub fn outage(&self) -> Option<(String, std::time::Duration)> {
        let outage = self.outage.lock().unwrap_or_else(|p| p.into_inner());
        outage.as_ref().map(|(why, until)| {
            (
                why.clone(),
                until.saturating_duration_since(std::time::Instant::now()),
            )
        })
    }

    /// Why publishing is off, when it is.
    pub(crate) fn failure(&self) -> Option<&str> {
        self.failure.get().map(String::as_str)
    }

    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::event::Event;
    use crate::log::memstore::MemoryLog;

    use crate::log::event::sample as event;

    /// Several nodes on one log: a cursor another node served, ahead of this node by a moment,
    /// is "nothing yet" (the caller waits on the head) and is served once this node's follower
    /// hands the events on; so is any cursor while the log cannot be asked (an outage: a
    /// lagging node must not send its clients back to the start). A cursor the log does not
    /// hold is gone.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cursor_the_log_holds_but_this_node_has_not_handed_on_yet_is_not_gone() {
        let log = MemoryLog::new();
        let mut store = log.store();
        let recovered = store.load().unwrap();
        let events: Vec<Event> = (1..=5).map(event).collect();
        store.append(0, &events).unwrap();
        let hub = Arc::new(Hub::new(100));
        hub.set_epoch(recovered.epoch);
        hub.set_history(store.reader());
        let epoch = recovered.epoch;
        hub.commit(events[..3].iter().map(|e| Committed::from_event(e, epoch)));
        let seqs = |page: &Page| page.events.iter().map(|e| e.seq).collect::<Vec<_>>();
        let page = Arc::clone(&hub).page_any(4, None, 10).await.unwrap();
        assert_eq!((seqs(&page), page.next, page.head), (vec![], 4, 3));
        // The log cannot be asked: not gone either, even for a cursor it may not hold.
        log.set_outage(Some("test"));
        let page = Arc::clone(&hub).page_any(9, None, 10).await.unwrap();
        assert_eq!((seqs(&page), page.next), (vec![], 9));
        log.set_outage(None);
        // The follower hands 4 and 5 on.
        hub.commit(events[3..].iter().map(|e| Committed::from_event(e, epoch)));
        let page = Arc::clone(&hub).page_any(4, None, 10).await.unwrap();
        assert_eq!(seqs(&page), [5]);
        let gone = Arc::clone(&hub).page_any(9, None, 10).await.unwrap_err();
        assert_eq!(gone.head, 5);
    }
}
