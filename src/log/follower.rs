//! The follower: the one path from the log to every reader. It waits for what the store holds
//! after its cursor (the writer's own appends and, on a shared engine, other writers' alike)
//! and hands it on in seq order: to the renderer, then to the hub, which wakes long-polls and
//! SSE streams. Nothing reaches a reader that the store does not hold.
//!
//! A read that does not continue at `cursor + 1` is a gap: reported and read again, never
//! skipped. A log with another epoch had its history replaced: the follower rebuilds the
//! stories from the new history and resets the hub, so cursors of the old one get a 410.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::event::Event;
use super::hub::{Committed, Hub};
use super::renderer;
use super::store::{Position, Reader, StoreError};
use crate::ingest::site::Site;

/// The most events handed on at once.
const BATCH: usize = 1024;
/// How long one wait lasts before the follower looks at its stop flag again.
const WAIT: Duration = Duration::from_millis(250);

/// How far the follower has handed events on: the writer waits on it before it answers, so a
/// publisher that got seq N finds N in every read that follows.
#[derive(Default)]
pub(crate) struct Delivered {
    seq: Mutex<u64>,
    moved: Condvar,
}

impl Delivered {
    pub(crate) fn new(seq: u64) -> Delivered {
        Delivered {
            seq: Mutex::new(seq),
            moved: Condvar::new(),
        }
    }

    /// How far events were handed on.
    pub(crate) fn seq(&self) -> u64 {
        *self.seq.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set(&self, seq: u64) {
        *self.seq.lock().unwrap_or_else(|p| p.into_inner()) = seq;
        self.moved.notify_all();
    }

    /// Waits until events up to `seq` were handed on, for at most `limit`; false on timeout.
    pub(crate) fn wait_for(&self, seq: u64, limit: Duration) -> bool {
        let guard = self.seq.lock().unwrap_or_else(|p| p.into_inner());
        let (guard, _) = self
            .moved
            .wait_timeout_while(guard, limit, |s| *s < seq)
            .unwrap_or_else(|p| p.into_inner());
        *guard >= seq
    }
}

pub(crate) struct Follower {
    pub reader: Arc<dyn Reader>,
    pub hub: Arc<Hub>,
    pub render: Sender<renderer::Msg>,
    /// The history followed and the last seq handed on.
    pub at: Position,
    pub delivered: Arc<Delivered>,
    /// The stories as configured, to rebuild from when the history is replaced.
    pub site: Site,
    /// Set when the relay closes: the follower hands on what the store holds, then stops.
    pub stop: Arc<AtomicBool>,
}

impl Follower {
    pub(crate) fn run(mut self) {
        let mut backoff = Duration::from_millis(50);
        let mut failing = false;
        loop {
            let stopping = self.stop.load(Ordering::Acquire);
            let pos = match self.reader.wait(self.at.head, WAIT) {
                Ok(pos) => {
                    if failing {
                        failing = false;
                        self.hub.set_follow_error(None);
                        tracing::info!("following the event log again");
                    }
                    pos
                }
                Err(e) => {
                    if stopping {
                        break;
                    }
                    // Said in /healthz and /readyz until the store answers again.
                    failing = true;
                    self.hub.set_follow_error(Some(e.to_string()));
                    tracing::warn!(error = %e, retry_in = ?backoff, "following the event log failed; retrying");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                    continue;
                }
            };
            backoff = Duration::from_millis(50);
            if pos.epoch != self.at.epoch {
                self.reset(pos);
                continue;
            }
            if self.catch_up(pos.head) {
                // Trimmed past this node's cursor (it fell behind, on a shared log): start
                // again from the snapshot, as for a new history.
                self.reset(pos);
                continue;
            }
            if stopping && self.at.head >= pos.head {
                break;
            }
        }
        tracing::debug!(head = self.at.head, "event log follower stopped");
    }

    /// Hands on every event up to `head`; true when the log no longer holds what follows the
    /// cursor (compacted past it).
    fn catch_up(&mut self, head: u64) -> bool {
        while self.at.head < head {
            let events = match self.reader.read(self.at.epoch, self.at.head, head, BATCH) {
                Ok(events) => events,
                Err(StoreError::Compacted { oldest }) => {
                    tracing::warn!(
                        after = self.at.head,
                        oldest,
                        "the event log was compacted past this node's cursor; rebuilding from its snapshot"
                    );
                    return true;
                }
                Err(StoreError::EpochChanged { .. }) => return false,
                Err(e) => {
                    tracing::warn!(error = %e, after = self.at.head, "reading the event log failed; retrying");
                    return false;
                }
            };
            let Some(first) = events.first() else {
                return false;
            };
            let contiguous = events
                .iter()
                .zip(self.at.head + 1..)
                .all(|(e, seq)| e.seq == seq);
            if first.seq != self.at.head + 1 || !contiguous {
                tracing::error!(
                    after = self.at.head,
                    got = first.seq,
                    "the event log returned a gap; reading again"
                );
                std::thread::sleep(Duration::from_millis(50));
                return false;
            }
            let last = events.last().map_or(self.at.head, |e| e.seq);
            let epoch = self.at.epoch;
            let committed: Vec<Committed> = events
                .iter()
                .map(|e| Committed::from_event(e, epoch))
                .collect();
            // The renderer first: a reader that sees an event and then asks for a feed finds
            // the renderer already has it (see `Relay::fresh`).
            let _ = self.render.send(renderer::Msg::Events(events));
            crate::metrics::get().record_visible();
            self.hub.commit(committed);
            self.at.head = last;
            self.delivered.set(last);
        }
        false
    }

    /// The history was replaced: rebuild the stories from the new one, a page at a time, and
    /// serve it alone (the hub keeps the last page; older cursors are read back from the log).
    fn reset(&mut self, pos: Position) {
        if pos.epoch != self.at.epoch {
            tracing::warn!(
                old_epoch = %self.at.epoch,
                new_epoch = %pos.epoch,
                head = pos.head,
                "the event log's history was replaced; serving the new one, old cursors get 410"
            );
        }
        let rebuilt = match super::rebuild_paged(&self.site, self.reader.as_ref(), pos) {
            Ok(rebuilt) => rebuilt,
            Err(e) => {
                tracing::warn!(error = %e, "the replaced event log cannot be read back; retrying");
                std::thread::sleep(WAIT);
                return;
            }
        };
        let (state, head, last) = (rebuilt.state, rebuilt.head, rebuilt.last);
        let _ = self.render.send(renderer::Msg::Reset {
            state: Box::new(state),
            seq: head,
        });
        let before = last.first().map_or(head, |e| e.seq - 1);
        self.hub.reset(
            pos.epoch,
            before,
            last.iter().map(|e| Committed::from_event(e, pos.epoch)),
        );
        self.at = Position {
            epoch: pos.epoch,
            head,
        };
        self.delivered.set(head);
    }
}

/// Reads the history of `pos` after `from` up to its head, [`BATCH`] events at a time, handing
/// each page to `page` in seq order: a rebuild never holds the whole history. Returns the seq
/// of the last event read, and why it stopped early if it did.
pub(crate) fn read_pages(
    reader: &dyn Reader,
    from: u64,
    pos: Position,
    mut page: impl FnMut(Vec<Event>),
) -> (u64, Result<(), StoreError>) {
    let mut after = from;
    while after < pos.head {
        match reader.read(pos.epoch, after, pos.head, BATCH) {
            Ok(events) => {
                let Some(last) = events.last().map(|e| e.seq) else {
                    break;
                };
                after = last;
                page(events);
            }
            Err(e) => return (after, Err(e)),
        }
    }
    (after, Ok(()))
}
