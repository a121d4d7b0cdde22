//! The single writer: turns commands into events, makes them durable with one sync per batch
//! (group commit), then hands them to the render thread and makes them visible in the hub.
//!
//! Architecture invariant: only this thread assigns `seq` and changes the [`State`], so seq is
//! gapless and a publish is answered only after its event is on disk.

use chrono::{DateTime, SubsecRound, Utc};
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

use super::event::{Event, Op, Source};
use super::hub::{Committed, Hub};
use super::renderer;
use super::state::{EntryInput, ReportChange, State};
use super::store::{self, Store};
use crate::model::{Entry, Story};

/// The answer to an accepted publish, edit or delete.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    pub fingerprint: String,
}

/// A fingerprint of a publish: method, story and cleaned body, hashed (SHA-256, hex), so a key
/// reused for another request is told apart from a retry.
pub fn fingerprint(story: &str, input: &EntryInput) -> String {
    let canonical = serde_json::json!({ "method": "POST", "story": story, "entry": input });
    let digest = Sha256::digest(canonical.to_string().as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a key was used for, and its first answer.
#[derive(Debug, Clone)]
pub struct KeyRecord {
    pub ack: Ack,
    pub story: String,
    /// `None` for keys from logs written before fingerprints were stored: those match any body.
    pub fingerprint: Option<String>,
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
    pub fn insert_event(&mut self, e: &Event) {
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
    pub fn prune(&mut self, now: DateTime<Utc>) {
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

pub struct Writer {
    pub state: State,
    pub store: Box<dyn Store>,
    pub hub: Arc<Hub>,
    pub next_seq: u64,
    /// Idempotency keys of publishes, with what they were used for and their first answer.
    pub keys: Keys,
    /// Where durable events go to be rendered into files (see [`renderer`]).
    pub render: Option<std::sync::mpsc::Sender<renderer::Msg>>,
}

enum Pending {
    Ack(Reply, Ack),
    Count(oneshot::Sender<usize>, usize),
}

impl Writer {
    /// Runs until every sender is gone; each batch is synced before its answers are sent.
    pub fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        while let Some(first) = rx.blocking_recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(c) => batch.push(c),
                    Err(_) => break,
                }
            }
            self.process(batch);
        }
        tracing::info!(head = self.next_seq - 1, "event log writer stopped");
    }

    /// Assigns the next seq to a change and applies it to the state.
    pub(crate) fn event(
        &mut self,
        op: Op,
        entry: Entry,
        source: Source,
        key: Option<IdempotencyKey>,
    ) -> Event {
        self.make_event(op, entry, source, key, None)
    }

    /// The event of one change a report reading makes.
    pub(crate) fn report_event(&mut self, change: ReportChange) -> Event {
        self.make_event(
            change.op,
            change.entry,
            Source::Report,
            None,
            change.report_anchor,
        )
    }

    fn make_event(
        &mut self,
        op: Op,
        entry: Entry,
        source: Source,
        key: Option<IdempotencyKey>,
        report_anchor: Option<String>,
    ) -> Event {
        let seq = self.next_seq;
        self.next_seq += 1;
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

    pub(crate) fn ack(event: &Event) -> Ack {
        Ack {
            id: event.entry.id.clone(),
            seq: event.seq,
            url: event.entry.url.clone(),
            op: event.op,
            replayed: false,
        }
    }

    /// Turns one command into events (applied to the state at once, so later commands in the
    /// batch see them), or answers it straight away when it is refused or a replay.
    fn prepare(&mut self, cmd: Command, events: &mut Vec<Event>, pending: &mut Vec<Pending>) {
        // Whole seconds: feeds carry second precision, and edits step by at least one.
        let now = Utc::now().trunc_subsecs(0);
        let failed = self.hub.failed();
        let hub = Arc::clone(&self.hub);
        let storage = move || {
            let why = hub.failure().unwrap_or("an earlier write failed");
            ChangeError::Storage(why.to_string())
        };
        match cmd {
            Command::Publish {
                story,
                input,
                key,
                reply,
            } => {
                let first = key.as_ref().and_then(|k| {
                    let first = self.keys.get(&k.key, now)?;
                    Some(first.matches(&story, k).then(|| first.ack.clone()))
                });
                if let Some(first) = first {
                    // The same key for another request: refused, never a silent drop.
                    let Some(first) = first else {
                        let _ = reply.send(Err(ChangeError::KeyReused));
                        return;
                    };
                    let ack = Ack {
                        replayed: true,
                        ..first
                    };
                    if events.iter().any(|e| e.seq == ack.seq) {
                        // The first publish is in this batch, not durable yet: answer with it.
                        pending.push(Pending::Ack(reply, ack));
                    } else {
                        let _ = reply.send(Ok(ack));
                    }
                    return;
                }
                if failed {
                    let _ = reply.send(Err(storage()));
                    return;
                }
                let Some(entry) = self.state.new_entry(&story, &input, now) else {
                    let _ = reply.send(Err(ChangeError::UnknownStory(story)));
                    return;
                };
                if let Err(why) = store::entry_fits(&entry) {
                    let _ = reply.send(Err(ChangeError::TooLarge(why)));
                    return;
                }
                let keyed = key.is_some();
                let event = self.event(Op::Create, entry, Source::Api, key);
                let ack = Self::ack(&event);
                if keyed {
                    self.keys.prune(now);
                    self.keys.insert_event(&event);
                }
                events.push(event);
                pending.push(Pending::Ack(reply, ack));
            }
            Command::Edit {
                story,
                id,
                input,
                reply,
            } => {
                if failed {
                    let _ = reply.send(Err(storage()));
                    return;
                }
                let entry = match self.lookup(&story, &id) {
                    Ok(old) => self.state.edited(old, &input, now),
                    Err(e) => {
                        let _ = reply.send(Err(e));
                        return;
                    }
                };
                if let Err(why) = store::entry_fits(&entry) {
                    let _ = reply.send(Err(ChangeError::TooLarge(why)));
                    return;
                }
                // An edit or delete through the API hands the entry to the publisher.
                let source = Source::Api;
                let event = self.event(Op::Update, entry, source, None);
                pending.push(Pending::Ack(reply, Self::ack(&event)));
                events.push(event);
            }
            Command::Delete { story, id, reply } => {
                if failed {
                    let _ = reply.send(Err(storage()));
                    return;
                }
                let entry = match self.lookup(&story, &id) {
                    Ok(old) => old.clone(),
                    Err(e) => {
                        let _ = reply.send(Err(e));
                        return;
                    }
                };
                // An edit or delete through the API hands the entry to the publisher.
                let source = Source::Api;
                let event = self.event(Op::Delete, entry, source, None);
                pending.push(Pending::Ack(reply, Self::ack(&event)));
                events.push(event);
            }
            Command::Lifecycle {
                story,
                ended,
                reply,
            } => {
                if failed {
                    let _ = reply.send(Err(storage()));
                    return;
                }
                if self.state.story(&story).is_none() {
                    let _ = reply.send(Err(ChangeError::UnknownStory(story)));
                    return;
                }
                let event = Event {
                    seq: self.next_seq,
                    op: Op::State,
                    story: story.clone(),
                    entry: Entry {
                        story,
                        ..Entry::default()
                    },
                    source: Source::Api,
                    idempotency_key: None,
                    idempotency_fingerprint: None,
                    at: Some(now),
                    report_anchor: None,
                    ended,
                };
                self.next_seq += 1;
                self.state.apply_unsorted(&event);
                pending.push(Pending::Ack(reply, Self::ack(&event)));
                events.push(event);
            }
            Command::Stories { fresh, reply } => {
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
                for slug in &removed {
                    self.state.remove_story(slug);
                }
                for story in &add {
                    self.state.add_story(story.clone());
                }
                let mut changed = StoriesChanged {
                    added: add.iter().map(|s| s.slug.clone()).collect(),
                    removed: removed.clone(),
                    rendered: None,
                };
                if let (Some(render), false) = (&self.render, add.is_empty() && removed.is_empty())
                {
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
            Command::Sync { fresh, reply } => {
                if failed {
                    return;
                }
                self.state.settle();
                let changes = fitting(self.state.diff_report(&fresh));
                let n = changes.len();
                for change in changes {
                    let event = self.report_event(change);
                    events.push(event);
                }
                if let Some(reply) = reply {
                    pending.push(Pending::Count(reply, n));
                }
            }
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

    fn process(&mut self, batch: Vec<Command>) {
        let mut events = Vec::new();
        let mut pending = Vec::new();
        for cmd in batch {
            self.prepare(cmd, &mut events, &mut pending);
        }
        if !events.is_empty() {
            let started = std::time::Instant::now();
            if let Err(e) = self.store.append(&events) {
                tracing::error!(error = %e, "event log write failed; publishing stopped");
                self.hub.fail();
                // A retry must not be told that a publish that never reached the disk succeeded.
                for k in events.iter().filter_map(|e| e.idempotency_key.as_ref()) {
                    self.keys.remove(k);
                }
                for p in pending {
                    if let Pending::Ack(reply, _) = p {
                        let _ = reply.send(Err(ChangeError::Storage(e.to_string())));
                    }
                }
                return;
            }
            crate::metrics::get()
                .record_append(events.iter().map(|e| (e.op, e.source)), started.elapsed());
            self.publish(events);
        }
        for p in pending {
            match p {
                Pending::Ack(reply, ack) => {
                    let _ = reply.send(Ok(ack));
                }
                Pending::Count(reply, n) => {
                    let _ = reply.send(n);
                }
            }
        }
    }

    /// Makes durable events visible: hands them to the renderer, which re-renders the stories
    /// they touch on its own thread, then wakes the waiters. In that order, so a reader that
    /// sees an event and finds a file older than it knows the renderer already has the event.
    fn publish(&self, events: Vec<Event>) {
        let committed: Vec<Committed> = events.iter().map(Committed::from_event).collect();
        if let Some(render) = &self.render {
            let _ = render.send(renderer::Msg::Events(events));
        }
        self.hub.commit(committed);
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
