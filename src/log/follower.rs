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

use super::hub::{Committed, Hub};
use super::renderer;
use super::state::State;
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
            self.catch_up(pos.head);
            if stopping && self.at.head >= pos.head {
                break;
            }
        }
        tracing::debug!(head = self.at.head, "event log follower stopped");
    }

    /// Hands on every event up to `head`.
    fn catch_up(&mut self, head: u64) {
        while self.at.head < head {
            let events = match self.reader.read(self.at.epoch, self.at.head, head, BATCH) {
                Ok(events) => events,
                Err(StoreError::EpochChanged { .. }) => return,
                Err(e) => {
                    tracing::warn!(error = %e, after = self.at.head, "reading the event log failed; retrying");
                    return;
                }
            };
            let Some(first) = events.first() else {
                return;
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
                return;
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
    }

    /// The history was replaced: rebuild the stories from the new one and serve it alone.
    fn reset(&mut self, pos: Position) {
        tracing::warn!(
            old_epoch = %self.at.epoch,
            new_epoch = %pos.epoch,
            head = pos.head,
            "the event log's history was replaced; serving the new one, old cursors get 410"
        );
        let mut events = Vec::new();
        while (events.len() as u64) < pos.head {
            let after = events.len() as u64;
            match self.reader.read(pos.epoch, after, pos.head, 64 * BATCH) {
                Ok(more) if !more.is_empty() => events.extend(more),
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "reading the replaced event log failed; retrying");
                    return;
                }
            }
        }
        let head = events.last().map_or(0, |e| e.seq);
        let state = State::from_log(self.site.clone(), &events);
        let _ = self.render.send(renderer::Msg::Reset {
            state: Box::new(state),
            seq: head,
        });
        self.hub.reset(
            pos.epoch,
            head,
            events.iter().map(|e| Committed::from_event(e, pos.epoch)),
        );
        self.at = Position {
            epoch: pos.epoch,
            head,
        };
        self.delivered.set(head);
    }
}
