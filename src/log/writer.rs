//! The single writer: turns commands into events and appends them, a batch at a time (group
//! commit). It decides a batch on a working copy of the projection (seqs proposed after the
//! head it has read), the store takes the batch whole or refuses it, and only then is it
//! applied to the writer's committed copy. On a conflict (another writer appended first) it
//! rolls back, catches up and decides again; during an outage it answers 503 with
//! `Retry-After`. It neither renders nor feeds readers: the follower hands what the store holds
//! to the renderer and the hub (the writer only tells the renderer of stories the manifest
//! added or removed).
//!
//! Architecture invariant: a publish is answered only after the store took its event and the
//! follower made it visible ([`Delivered`]); a retried `Idempotency-Key` gets the first answer.

use chrono::{DateTime, SubsecRound, Utc};
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

use super::event::{Event, Op, Source};
use super::follower::Delivered;
use super::hub::{Committed, Hub};
use super::renderer;
use super::state::{EntryInput, ReportChange, State};
use super::store::{self, Position, Reader, Store, StoreError};
use crate::ingest::site::Site;
use crate::model::{Entry, Story};

/// The answer to an accepted publish, edit or delete.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Ack {
    pub id: String,
    pub seq: u64,
    pub url: String,
    pub op: Op,
    /// True when this answers a retry (same `Idempotency-Key`) of an earlier publish.
    pub replayed: bool,
}

/// Why a change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    #[error("no story {0:?}")]
    UnknownStory(String),
    #[error("no entry {0:?} in this story")]
    UnknownEntry(String),
    #[error("the event log cannot be written; publishing is stopped until a restart: {0}")]
    Storage(String),
    /// The store cannot be reached now; try again after `retry_after`.
    #[error("the event log is unavailable for now ({reason}); try again shortly")]
    Unavailable {
        reason: String,
        retry_after: std::time::Duration,
    },
    #[error(
        "this Idempotency-Key was used for another request (another story or body) within the \
         last 24 hours; send a new key for a new entry"
    )]
    KeyReused,
    #[error("the entry is too large to keep: {0}; send a shorter body")]
    TooLarge(super::store::RecordError),
}

/// How long an `Idempotency-Key` is remembered, from the time of the event it made. A retry
/// within it gets the first answer; after it the key is forgotten (and may publish again).
pub const KEY_TTL: std::time::Duration = std::time::Duration::from_secs(24 * 60 * 60);

/// An `Idempotency-Key` bound to the request that brought it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    pub key: String,
    /// See [`fingerprint`].
    pub(crate) fingerprint: String,
}

/// A fingerprint of a publish: method, story and cleaned body, hashed (SHA-256, hex), so a key
/// reused for another request is told apart from a retry.
pub(crate) fn fingerprint(story: &str, input: &EntryInput) -> String {
    let canonical = serde_json::json!({ "method": "POST", "story": story, "entry": input });
    let digest = Sha256::digest(canonical.to_string().as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a key was used for, and its first answer.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct KeyRecord {
    pub ack: Ack,
    pub story: String,
    /// `None` for keys from logs written before fingerprints were stored: those match any body.
    pub(crate) fingerprint: Option<String>,
    pub at: DateTime<Utc>,
}

impl KeyRecord {
    fn expired(&self, now: DateTime<Utc>) -> bool {
        chrono::Duration::from_std(KEY_TTL).is_ok_and(|ttl| self.at + ttl <= now)
    }

    fn matches(&self, story: &str, key: &IdempotencyKey) -> bool {
        self.story == story
            && self
                .fingerprint
                .as_ref()
                .is_none_or(|f| *f == key.fingerprint)
    }
}

/// The idempotency keys within [`KEY_TTL`], with an index by time so expired ones are dropped
/// as new ones come in and the map stays bounded by the keys of one period.
#[derive(Debug, Default)]
pub struct Keys {
    map: HashMap<String, KeyRecord>,
    by_time: BTreeSet<(DateTime<Utc>, String)>,
}

impl Keys {
    /// The live record of `key` (an expired one not yet dropped counts as gone).
    pub fn get(&self, key: &str, now: DateTime<Utc>) -> Option<&KeyRecord> {
        self.map.get(key).filter(|r| !r.expired(now))
    }

    pub fn insert(&mut self, key: String, record: KeyRecord) {
        self.by_time.insert((record.at, key.clone()));
        if let Some(old) = self.map.insert(key.clone(), record) {
            self.by_time.remove(&(old.at, key));
        }
    }

    pub fn remove(&mut self, key: &str) {
        if let Some(old) = self.map.remove(key) {
            self.by_time.remove(&(old.at, key.to_string()));
        }
    }

    /// Remembers the key of a logged publish (on replay and when it is made).
    pub(crate) fn insert_event(&mut self, e: &Event) {
        let Some(key) = &e.idempotency_key else {
            return;
        };
        let record = KeyRecord {
            ack: Writer::ack(e),
            story: e.story.clone(),
            fingerprint: e.idempotency_fingerprint.clone(),
            // Older logs have no event time: an API create's `updated` is when it was made.
            at: e.at.unwrap_or(e.entry.updated),
        };
        self.insert(key.clone(), record);
    }

    /// Forgets every key older than [`KEY_TTL`].
    pub(crate) fn prune(&mut self, now: DateTime<Utc>) {
        while let Some((at, key)) = self.by_time.first().cloned() {
            let expired = self.map.get(&key).is_none_or(|r| r.expired(now));
            if !expired {
                break;
            }
            self.by_time.pop_first();
            if self.map.get(&key).is_some_and(|r| r.at == at) {
                self.map.remove(&key);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Every live key with its record, for a snapshot.
    pub fn entries(&self) -> Vec<(String, KeyRecord)> {
        self.map
            .iter()
            .map(|(k, r)| (k.clone(), r.clone()))
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

pub type Reply = oneshot::Sender<Result<Ack, ChangeError>>;

/// A request to the writer.
pub enum Command {
    Publish {
        story: String,
        input: EntryInput,
        key: Option<IdempotencyKey>,
        reply: Reply,
    },
    Edit {
        story: String,
        id: String,
        input: EntryInput,
        reply: Reply,
    },
    Delete {
        story: String,
        id: String,
        reply: Reply,
    },
    /// `PUT /stories/{story}`: end the story (`ended` set) or make it live again.
    Lifecycle {
        story: String,
        ended: Option<DateTime<Utc>>,
        reply: Reply,
    },
    /// The manifest was read again: serve the stories added to it, stop serving those removed.
    Stories {
        fresh: Vec<Story>,
        reply: oneshot::Sender<StoriesChanged>,
    },
    /// A report was read again: relay the differences.
    Sync {
        fresh: Story,
        reply: Option<oneshot::Sender<usize>>,
    },
}

/// What a manifest reading changed.
#[derive(Debug, Default)]
pub struct StoriesChanged {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Answers once the renderer has rendered the change (the new stories' files exist).
    pub rendered: Option<oneshot::Receiver<()>>,
}

/// The most commands folded into one sync.
const MAX_BATCH: usize = 1024;
/// How many times a batch is decided again after conflicts before its publishes are answered
/// 503 (another writer keeps winning the race).
const MAX_CONFLICTS: usize = 16;
/// How long an answer waits for the follower to make its events visible.
const DELIVERY: std::time::Duration = std::time::Duration::from_secs(5);

pub struct Writer {
    /// The stories the decisions of the batch at hand are made on: `committed` plus the
    /// events decided so far in it.
    pub state: State,
    /// The stories with every event the store holds applied, up to `at.head`.
    pub committed: State,
    /// The stories as configured (the manifest), to rebuild from when the history is replaced.
    pub site: Site,
    pub store: Box<dyn Store>,
    pub reader: Arc<dyn Reader>,
    pub hub: Arc<Hub>,
    /// The history written to and the last seq it holds (as far as this writer has read).
    pub at: Position,
    /// Idempotency keys of publishes, with what they were used for and their first answer.
    pub keys: Keys,
    /// The render thread, told about manifest changes (events reach it through the follower).
    pub render: Option<std::sync::mpsc::Sender<renderer::Msg>>,
    /// How far the follower has made events visible.
    pub(crate) delivered: Arc<Delivered>,
    /// Copies of the committed state for the snapshot thread.
    pub(crate) snapshots: Option<super::snapshot::Taker>,
}

/// What one command comes to.
enum Outcome {
    /// Answered now: refused, or a retry of a publish already durable.
    Now(Result<Ack, ChangeError>),
    /// Answered once the batch is durable and visible (or with why it is not).
    Durable(Ack),
    /// A retry of a publish already durable (an earlier batch) but maybe not visible yet:
    /// answered once the follower made it visible, whatever becomes of this batch.
    Visible(Ack),
    /// A report reading: how many events it made.
    Count(usize),
}

impl Writer {
    /// Runs until every sender is gone; each batch is synced before its answers are sent.
    pub fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        // Answers wait for the follower on a thread of their own, so the writer decides and
        // appends the next batch while the follower makes the last one visible.
        let (answers, pending) = std::sync::mpsc::channel::<Answers>();
        let delivered = Arc::clone(&self.delivered);
        let answerer = std::thread::Builder::new()
            .name("livefeed-answer".into())
            .spawn(move || {
                for a in pending {
                    a.send(&delivered);
                }
            });
        let (answers, answerer) = match answerer {
            Ok(handle) => (Some(answers), Some(handle)),
            Err(e) => {
                tracing::warn!(error = %e, "no answer thread; the writer answers itself");
                (None, None)
            }
        };
        while let Some(first) = rx.blocking_recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(c) => batch.push(c),
                    Err(_) => break,
                }
            }
            let done = self.process(batch);
            match (&answers, done) {
                (_, None) => {}
                (Some(tx), Some(a)) => {
                    if let Err(std::sync::mpsc::SendError(a)) = tx.send(a) {
                        a.send(&self.delivered);
                    }
                }
                (None, Some(a)) => a.send(&self.delivered),
            }
        }
        // Every answer is sent before the writer is done.
        drop(answers);
        if let Some(answerer) = answerer {
            let _ = answerer.join();
        }
        // A last snapshot, so the next start reads little of the log.
        if let Some(taker) = &mut self.snapshots {
            taker.after(0, self.at, &self.committed, &self.keys, true);
        }
        self.snapshots = None;
        tracing::info!(head = self.at.head, "event log writer stopped");
    }

    /// The event of one change, with the next seq, applied to the working state.
    pub(crate) fn event(
        &mut self,
        op: Op,
        entry: Entry,
        source: Source,
        key: Option<IdempotencyKey>,
        report_anchor: Option<String>,
        seq: u64,
    ) -> Event {
        let (idempotency_key, idempotency_fingerprint) =
            key.map_or((None, None), |k| (Some(k.key), Some(k.fingerprint)));
        let event = Event {
            seq,
            op,
            story: entry.story.clone(),
            entry,
            source,
            idempotency_key,
            idempotency_fingerprint,
            at: Some(Utc::now().trunc_subsecs(0)),
            report_anchor,
            ended: None,
        };
        // The writer never needs its entries in feed order except to diff a report (it settles
        // them first); the renderer keeps its own ordered replica. So an event costs O(1) here.
        self.state.apply_unsorted(&event);
        event
    }

    /// The event of one change a report reading makes.
    pub(crate) fn report_event(&mut self, change: ReportChange, seq: u64) -> Event {
        self.event(
            change.op,
            change.entry,
            Source::Report,
            None,
            change.report_anchor,
            seq,
        )
    }

    pub(crate) fn ack(event: &Event) -> Ack {
        Ack {
            id: event.entry.id.clone(),
            seq: event.seq,
            url: event.entry.url.clone(),
            op: event.op,
            replayed: false,
        }
    }

    /// Decides what one command comes to: its events (applied to the working state, so later
    /// commands in the batch see them) and its answer.
    fn decide(
        &mut self,
        cmd: &Command,
        now: DateTime<Utc>,
        events: &mut Vec<Event>,
        keyed: &mut Vec<String>,
    ) -> Outcome {
        let next = self.at.head + 1 + events.len() as u64;
        let refused = |e| Outcome::Now(Err(e));
        let failure = self
            .hub
            .failure()
            .map(|why| ChangeError::Storage(why.to_string()));
        match cmd {
            Command::Publish {
                story, input, key, ..
            } => {
                if let Some(k) = key {
                    if let Some(first) = self.keys.get(&k.key, now) {
                        // The same key for another request: refused, never a silent drop.
                        if !first.matches(story, k) {
                            return refused(ChangeError::KeyReused);
                        }
                        let ack = Ack {
                            replayed: true,
                            ..first.ack.clone()
                        };
                        // The first publish may be in this batch, not durable yet, or
                        // durable but not yet visible (its answer still on its way).
                        return if ack.seq > self.at.head {
                            Outcome::Durable(ack)
                        } else if ack.seq > self.delivered.seq() {
                            Outcome::Visible(ack)
                        } else {
                            Outcome::Now(Ok(ack))
                        };
                    }
                }
                if let Some(failure) = failure {
                    return refused(failure);
                }
                if let Some((why, wait)) = self.hub.outage() {
                    if !wait.is_zero() {
                        return refused(ChangeError::Unavailable {
                            reason: why,
                            retry_after: wait,
                        });
                    }
                }
                let Some(entry) = self.state.new_entry(story, input, now) else {
                    return refused(ChangeError::UnknownStory(story.clone()));
                };
                if let Err(why) = store::entry_fits(&entry) {
                    return refused(ChangeError::TooLarge(why));
                }
                let event = self.event(Op::Create, entry, Source::Api, key.clone(), None, next);
                if key.is_some() {
                    self.keys.prune(now);
                    self.keys.insert_event(&event);
                    keyed.extend(event.idempotency_key.clone());
                }
                let ack = Self::ack(&event);
                events.push(event);
                Outcome::Durable(ack)
            }
            Command::Edit {
                story, id, input, ..
            } => {
                if let Some(failure) = failure {
                    return refused(failure);
                }
                let entry = match self.lookup(story, id) {
                    Ok(old) => self.state.edited(old, input, now),
                    Err(e) => return refused(e),
                };
                if let Err(why) = store::entry_fits(&entry) {
                    return refused(ChangeError::TooLarge(why));
                }
                // An edit or delete through the API hands the entry to the publisher.
                let event = self.event(Op::Update, entry, Source::Api, None, None, next);
                let ack = Self::ack(&event);
                events.push(event);
                Outcome::Durable(ack)
            }
            Command::Delete { story, id, .. } => {
                if let Some(failure) = failure {
                    return refused(failure);
                }
                let entry = match self.lookup(story, id) {
                    Ok(old) => old.clone(),
                    Err(e) => return refused(e),
                };
                let event = self.event(Op::Delete, entry, Source::Api, None, None, next);
                let ack = Self::ack(&event);
                events.push(event);
                Outcome::Durable(ack)
            }
            Command::Lifecycle { story, ended, .. } => {
                if let Some(failure) = failure {
                    return refused(failure);
                }
                if self.state.story(story).is_none() {
                    return refused(ChangeError::UnknownStory(story.clone()));
                }
                let event = Event {
                    seq: next,
                    op: Op::State,
                    story: story.clone(),
                    entry: Entry {
                        story: story.clone(),
                        ..Entry::default()
                    },
                    source: Source::Api,
                    idempotency_key: None,
                    idempotency_fingerprint: None,
                    at: Some(now),
                    report_anchor: None,
                    ended: *ended,
                };
                self.state.apply_unsorted(&event);
                let ack = Self::ack(&event);
                events.push(event);
                Outcome::Durable(ack)
            }
            Command::Sync { fresh, .. } => {
                if self.hub.failed() {
                    return Outcome::Count(0);
                }
                self.state.settle();
                let changes = fitting(self.state.diff_report(fresh));
                let n = changes.len();
                for change in changes {
                    let seq = self.at.head + 1 + events.len() as u64;
                    let event = self.report_event(change, seq);
                    events.push(event);
                }
                Outcome::Count(n)
            }
            Command::Stories { .. } => Outcome::Count(0),
        }
    }

    fn lookup(&self, story: &str, id: &str) -> Result<&Entry, ChangeError> {
        if self.state.story(story).is_none() {
            return Err(ChangeError::UnknownStory(story.to_string()));
        }
        self.state
            .find(story, id)
            .ok_or_else(|| ChangeError::UnknownEntry(id.to_string()))
    }

    /// Serves the stories of a fresh reading of the manifest (no event: the log keeps every
    /// story's history whether it is served or not).
    fn stories(&mut self, fresh: Vec<Story>, reply: oneshot::Sender<StoriesChanged>) {
        let removed: Vec<String> = self
            .state
            .site
            .stories
            .iter()
            .filter(|s| !fresh.iter().any(|f| f.slug == s.slug))
            .map(|s| s.slug.clone())
            .collect();
        let add: Vec<Story> = fresh
            .into_iter()
            .filter(|f| self.state.story(&f.slug).is_none())
            .map(|f| Story {
                entries: Vec::new(),
                ..f
            })
            .collect();
        for state in [&mut self.state, &mut self.committed] {
            for slug in &removed {
                state.remove_story(slug);
            }
            for story in &add {
                state.add_story(story.clone());
            }
        }
        self.site.stories.retain(|s| !removed.contains(&s.slug));
        self.site.stories.extend(add.iter().cloned());
        let mut changed = StoriesChanged {
            added: add.iter().map(|s| s.slug.clone()).collect(),
            removed: removed.clone(),
            rendered: None,
        };
        if let (Some(render), false) = (&self.render, add.is_empty() && removed.is_empty()) {
            let (done, rendered) = oneshot::channel();
            let msg = renderer::Msg::Stories {
                add,
                remove: removed,
                done: Some(done),
            };
            if render.send(msg).is_ok() {
                changed.rendered = Some(rendered);
            }
        }
        let _ = reply.send(changed);
    }

    /// Applies what other writers appended since `at.head` (nothing, with one writer), or
    /// rebuilds everything when the log's history was replaced.
    fn catch_up(&mut self) {
        let Ok(pos) = self.reader.position() else {
            // Unreachable: the append will say so.
            return;
        };
        self.catch_up_to(pos);
    }

    /// [`Writer::catch_up`] to `pos`, read elsewhere.
    fn catch_up_to(&mut self, pos: Position) {
        if pos.epoch != self.at.epoch {
            self.rebuild(pos);
            return;
        }
        while self.at.head < pos.head {
            match self
                .reader
                .read(self.at.epoch, self.at.head, pos.head, MAX_BATCH)
            {
                // Trimmed past this writer's head (other nodes appended and compacted while it
                // was idle): decide on the snapshot and what follows it.
                Err(StoreError::Compacted { .. }) => {
                    self.rebuild(pos);
                    return;
                }
                Ok(events) if !events.is_empty() => {
                    for e in &events {
                        self.committed.apply_unsorted(e);
                        self.state.apply_unsorted(e);
                        self.keys.insert_event(e);
                        self.at.head = e.seq;
                    }
                }
                _ => break,
            }
        }
    }

    /// Applies events another writer appended right after this writer's head (those a
    /// conflict answer carried); stops at the first that does not follow it.
    fn apply_missed(&mut self, events: &[Event]) {
        for e in events {
            if e.seq != self.at.head + 1 {
                return;
            }
            self.committed.apply_unsorted(e);
            self.state.apply_unsorted(e);
            self.keys.insert_event(e);
            self.at.head = e.seq;
        }
    }

    /// The log's history was replaced: the stories are what the new one makes (read a page at
    /// a time from its snapshot: see [`super::rebuild_paged`]).
    fn rebuild(&mut self, pos: Position) {
        let rebuilt = match super::rebuild_paged(&self.site, self.reader.as_ref(), pos) {
            Ok(rebuilt) => rebuilt,
            Err(e) => {
                // Decided again at the next append, which finds the epoch still new.
                tracing::warn!(error = %e, "writer: the replaced event log cannot be read back");
                return;
            }
        };
        tracing::warn!(epoch = %pos.epoch, snapshot = ?rebuilt.snapshot, events = rebuilt.events, "writer: rebuilt from the event log (its history was replaced, or compacted past this writer); deciding on it");
        self.committed = rebuilt.state;
        self.state = self.committed.clone();
        self.keys = rebuilt.keys;
        self.store.adopt_epoch(pos.epoch);
        self.at = Position {
            epoch: pos.epoch,
            head: rebuilt.head,
        };
    }

    /// Relays everything the reports say that the log does not know yet (all of it on first
    /// start: creates in time order across stories), before the relay serves. A log that
    /// cannot take them leaves the relay read-only, serving exactly what is durable.
    pub(crate) fn relay_reports_at_start(&mut self, fresh: &[Story]) {
        for _ in 0..MAX_CONFLICTS {
            // On a shared log another node may have relayed them already: what it appended
            // is read first, and only the differences left are relayed.
            self.catch_up();
            self.state.settle();
            let mut changes = fitting(
                fresh
                    .iter()
                    .flat_map(|fresh| self.state.diff_report(fresh))
                    .collect(),
            );
            changes.sort_by_key(|c| (c.op != Op::Create, c.entry.published));
            if changes.is_empty() {
                return;
            }
            if self.hub.failed() {
                tracing::warn!(
                    changes = changes.len(),
                    "report changes not relayed: the event log is read-only"
                );
                return;
            }
            let events: Vec<Event> = changes
                .into_iter()
                .zip(self.at.head + 1..)
                .map(|(c, seq)| self.report_event(c, seq))
                .collect();
            self.state.settle();
            match self.store.append(self.at.head, &events) {
                Ok(()) => {
                    for e in &events {
                        self.committed.apply_unsorted(e);
                    }
                    self.committed.settle();
                    self.at.head += events.len() as u64;
                    // Before any reader exists: the hub starts with them, the follower after.
                    self.hub.commit(
                        events
                            .iter()
                            .map(|e| Committed::from_event(e, self.at.epoch)),
                    );
                    tracing::info!(
                        events = events.len(),
                        "relayed report contents not yet in the log"
                    );
                    return;
                }
                Err(StoreError::Conflict { head }) => {
                    self.rollback(&[]);
                    // The catch-up reads what the store sent, too.
                    drop(self.store.take_missed());
                    tracing::debug!(head, "another writer appended first; relaying again");
                }
                Err(StoreError::EpochChanged { found, .. }) => {
                    // A shared log whose history was replaced: the catch-up rebuilds on it.
                    self.rollback(&[]);
                    tracing::debug!(epoch = %found, "the event log's history was replaced; relaying again");
                }
                Err(e) if e.retryable() => {
                    // The report watcher relays them once the log is back.
                    self.rollback(&[]);
                    tracing::warn!(error = %e, "report changes not relayed at start: the event log is unavailable");
                    return;
                }
                Err(e) => {
                    // Disk full or a log that refuses writes: serve what is durable, read-only.
                    tracing::error!(error = %e, "event log write failed at start; serving read-only, publishing off");
                    self.hub
                        .fail_because(format!("read-only: the event log cannot be written: {e}"));
                    self.rollback(&[]);
                    return;
                }
            }
        }
    }

    /// Undoes the decisions of a batch the store did not take.
    fn rollback(&mut self, keyed: &[String]) {
        for k in keyed {
            self.keys.remove(k);
        }
        self.state = self.committed.clone();
    }

    /// Decides and appends a batch; returns its answers, to be sent once visible.
    fn process(&mut self, batch: Vec<Command>) -> Option<Answers> {
        let mut rest = Vec::with_capacity(batch.len());
        for cmd in batch {
            match cmd {
                Command::Stories { fresh, reply } => self.stories(fresh, reply),
                other => rest.push(other),
            }
        }
        if rest.is_empty() {
            return None;
        }
        let mut conflicts = 0;
        let mut behind = false;
        loop {
            // What this writer knows another writer appended (the follower read it), or, after
            // a refused append, whatever the log holds now. Otherwise the batch is decided on
            // the head this writer appended last: a shared log refuses it if another writer
            // appended since (a conflict, caught up on and decided again), so a round trip
            // per batch to ask the head is saved.
            let seen = self.delivered.seq();
            if behind {
                self.catch_up();
            } else if seen > self.at.head {
                // A read without asking the head (an epoch the follower moved to refuses it,
                // and the append then says so).
                self.catch_up_to(Position {
                    epoch: self.at.epoch,
                    head: seen,
                });
            }
            // Whole seconds: feeds carry second precision, and edits step by at least one.
            let now = Utc::now().trunc_subsecs(0);
            let mut events = Vec::new();
            let mut keyed = Vec::new();
            let outcomes: Vec<Outcome> = rest
                .iter()
                .map(|c| self.decide(c, now, &mut events, &mut keyed))
                .collect();
            if events.is_empty() {
                return Some(Answers::new(rest, outcomes, None, 0));
            }
            let started = std::time::Instant::now();
            match self.store.append(self.at.head, &events) {
                Ok(()) => {
                    crate::metrics::get()
                        .record_append(events.iter().map(|e| (e.op, e.source)), started.elapsed());
                    for e in &events {
                        self.committed.apply_unsorted(e);
                    }
                    self.at.head += events.len() as u64;
                    self.hub.clear_outage();
                    if let Some(taker) = &mut self.snapshots {
                        let n = events.len() as u64;
                        taker.after(n, self.at, &self.committed, &self.keys, false);
                    }
                    // Answered once visible: a publisher that got seq N finds N when it reads.
                    return Some(Answers::new(rest, outcomes, None, self.at.head));
                }
                Err(e) => {
                    self.rollback(&keyed);
                    match e {
                        StoreError::Conflict { head } if conflicts < MAX_CONFLICTS => {
                            conflicts += 1;
                            crate::metrics::get().store_conflicts.inc();
                            // What the store sent with its refusal: read again only past it.
                            let missed = self.store.take_missed();
                            self.apply_missed(&missed);
                            behind = self.at.head < head || missed.is_empty();
                            tracing::debug!(head, "another writer appended first; deciding again");
                        }
                        StoreError::EpochChanged { found, .. } if conflicts < MAX_CONFLICTS => {
                            // A shared log whose history was replaced (a flush, a restore):
                            // the catch-up rebuilds on the new one and decides again.
                            conflicts += 1;
                            behind = true;
                            tracing::debug!(epoch = %found, "the event log's history was replaced; deciding again");
                        }
                        e @ (StoreError::Conflict { .. } | StoreError::EpochChanged { .. }) => {
                            // Other writers kept appending first: this batch is answered 503,
                            // but the store is reachable, so it is no outage (which would
                            // refuse every publish for a while): the next batch tries at once.
                            tracing::warn!(error = %e, conflicts, "other writers kept appending first; this batch is answered 503");
                            let why = ChangeError::Unavailable {
                                reason: format!("other nodes kept appending first ({e})"),
                                retry_after: std::time::Duration::from_secs(1),
                            };
                            return Some(Answers::new(rest, outcomes, Some(why), 0));
                        }
                        e if e.retryable() => {
                            let retry_after = match &e {
                                StoreError::Unavailable { retry_after, .. } => *retry_after,
                                _ => std::time::Duration::from_secs(1),
                            };
                            tracing::warn!(error = %e, "event log unavailable; publishes answered 503 until it returns");
                            self.hub.set_outage(e.to_string(), retry_after);
                            let why = ChangeError::Unavailable {
                                reason: e.to_string(),
                                retry_after,
                            };
                            return Some(Answers::new(rest, outcomes, Some(why), 0));
                        }
                        e => {
                            tracing::error!(error = %e, "event log write failed; publishing stopped");
                            self.hub.fail();
                            // A retry must not be told that a publish that never reached the
                            // disk succeeded.
                            return Some(Answers::new(
                                rest,
                                outcomes,
                                Some(ChangeError::Storage(e.to_string())),
                                0,
                            ));
                        }
                    }
                }
            }
        }
    }
}

/// The answers of a batch, sent once the follower made what they name visible.
struct Answers {
    batch: Vec<Command>,
    outcomes: Vec<Outcome>,
    failed: Option<ChangeError>,
    /// The last seq the answers name: they wait until the follower handed it on.
    visible_at: u64,
}

impl Answers {
    /// `appended`: the head after the batch's append (0 when nothing was appended).
    fn new(
        batch: Vec<Command>,
        outcomes: Vec<Outcome>,
        failed: Option<ChangeError>,
        appended: u64,
    ) -> Answers {
        let replays = outcomes.iter().map(|o| match o {
            Outcome::Visible(ack) => ack.seq,
            _ => 0,
        });
        let visible_at = replays.fold(appended, u64::max);
        Answers {
            batch,
            outcomes,
            failed,
            visible_at,
        }
    }

    fn send(self, delivered: &Delivered) {
        if self.visible_at > 0 && !delivered.wait_for(self.visible_at, DELIVERY) {
            tracing::warn!(
                seq = self.visible_at,
                "events are durable but not yet visible after 5 s; answering"
            );
        }
        answer(self.batch, self.outcomes, self.failed);
    }
}

/// Sends each command its answer; `failed` says why the batch's events were not taken.
fn answer(batch: Vec<Command>, outcomes: Vec<Outcome>, failed: Option<ChangeError>) {
    for (cmd, outcome) in batch.into_iter().zip(outcomes) {
        let reply = match cmd {
            Command::Publish { reply, .. }
            | Command::Edit { reply, .. }
            | Command::Delete { reply, .. }
            | Command::Lifecycle { reply, .. } => reply,
            Command::Sync { reply, .. } => {
                let n = match (&outcome, &failed) {
                    (Outcome::Count(n), None) => *n,
                    _ => 0,
                };
                if let Some(reply) = reply {
                    let _ = reply.send(n);
                }
                continue;
            }
            Command::Stories { .. } => continue,
        };
        let result = match (outcome, &failed) {
            (Outcome::Now(result), _) => result,
            (Outcome::Durable(ack), None) => Ok(ack),
            (Outcome::Durable(_), Some(why)) => Err(why.clone()),
            (Outcome::Visible(ack), _) => Ok(ack),
            (Outcome::Count(_), _) => continue,
        };
        let _ = reply.send(result);
    }
}

/// The report changes whose entry fits in one log record; the others are left out with a
/// warning (the report keeps them, and they are tried again when it changes).
pub(crate) fn fitting(changes: Vec<ReportChange>) -> Vec<ReportChange> {
    changes
        .into_iter()
        .filter(|c| match store::entry_fits(&c.entry) {
            Ok(()) => true,
            Err(why) => {
                tracing::warn!(story = %c.entry.story, id = %c.entry.id, error = %why, "report entry not relayed");
                false
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(at: DateTime<Utc>) -> KeyRecord {
        KeyRecord {
            ack: Ack {
                id: "tag:x,2000:s/a".into(),
                seq: 1,
                url: String::new(),
                op: Op::Create,
                replayed: false,
            },
            story: "s".into(),
            fingerprint: Some("f".into()),
            at,
        }
    }

    #[test]
    fn keys_expire_after_the_ttl_and_are_pruned() {
        let now = Utc::now().trunc_subsecs(0);
        let hours = chrono::Duration::hours;
        let mut keys = Keys::default();
        keys.insert("old".into(), record(now - hours(25)));
        keys.insert("edge".into(), record(now - hours(24)));
        keys.insert("new".into(), record(now - hours(1)));
        // An expired key is gone at once, pruned or not.
        assert!(keys.get("old", now).is_none());
        assert!(keys.get("edge", now).is_none());
        assert!(keys.get("new", now).is_some());
        assert_eq!(keys.len(), 3);
        keys.prune(now);
        assert_eq!(keys.len(), 1);
        assert_eq!(keys.by_time.len(), 1);
        // Reusing a key replaces its record and its place in time.
        keys.insert("new".into(), record(now));
        assert_eq!((keys.len(), keys.by_time.len()), (1, 1));
        keys.prune(now + hours(23));
        assert_eq!(keys.len(), 1);
        keys.prune(now + hours(24));
        assert!(keys.is_empty() && keys.by_time.is_empty());
    }

    #[test]
    fn a_key_matches_only_its_own_request() {
        let input = |body: &str| EntryInput::cleaned("T", body, None, None);
        let key = |story: &str, body: &str| IdempotencyKey {
            key: "k".into(),
            fingerprint: fingerprint(story, &input(body)),
        };
        let mut r = record(Utc::now());
        r.fingerprint = Some(key("s", "body").fingerprint);
        assert!(r.matches("s", &key("s", "body")));
        assert!(!r.matches("s", &key("s", "other")));
        assert!(!r.matches("t", &key("t", "body")));
        // Keys from logs without fingerprints match any body of their story.
        r.fingerprint = None;
        assert!(r.matches("s", &key("s", "other")));
        assert!(!r.matches("t", &key("t", "body")));
    }
}
