//! The single writer: turns commands into events, makes them durable with one sync per batch
//! (group commit), then publishes them to the hub and re-renders what changed.
//!
//! Architecture invariant: only this thread assigns `seq` and changes the [`State`], so seq is
//! gapless and a publish is answered only after its event is on disk.

use chrono::{SubsecRound, Utc};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

use super::event::{Event, Op, Source};
use super::hub::{Committed, Hub};
use super::renderer;
use super::state::{EntryInput, State};
use super::store::Store;
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
}

pub type Reply = oneshot::Sender<Result<Ack, ChangeError>>;

/// A request to the writer.
pub enum Command {
    Publish {
        story: String,
        input: EntryInput,
        key: Option<String>,
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
    /// A report was read again: relay the differences.
    Sync {
        fresh: Story,
        reply: Option<oneshot::Sender<usize>>,
    },
}

/// The most commands folded into one sync.
const MAX_BATCH: usize = 1024;

pub struct Writer {
    pub state: State,
    pub store: Box<dyn Store>,
    pub hub: Arc<Hub>,
    pub next_seq: u64,
    /// Idempotency keys of publishes, with their first answer.
    pub keys: HashMap<String, Ack>,
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
        key: Option<String>,
    ) -> Event {
        let seq = self.next_seq;
        self.next_seq += 1;
        let event = Event {
            seq,
            op,
            story: entry.story.clone(),
            entry,
            source,
            idempotency_key: key,
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
                if let Some(first) = key.as_ref().and_then(|k| self.keys.get(k)) {
                    let ack = Ack {
                        replayed: true,
                        ..first.clone()
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
                let event = self.event(Op::Create, entry, Source::Api, key.clone());
                let ack = Self::ack(&event);
                if let Some(k) = key {
                    self.keys.insert(k, ack.clone());
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
            Command::Sync { fresh, reply } => {
                if failed {
                    return;
                }
                self.state.settle();
                let changes = self.state.diff_report(&fresh);
                let n = changes.len();
                for (op, entry) in changes {
                    let event = self.event(op, entry, Source::Report, None);
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
            crate::metrics::get().record_append(events.len(), started.elapsed());
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
