//! Snapshots of the relay's state, so a start reads the newest snapshot and the log after it
//! rather than all history. The writer hands a copy of its committed state to the snapshot
//! thread every `--snapshot-every` events (and once more when it stops); the thread encodes it
//! and asks the store to keep it (atomically: see `store::Reader::save_snapshot`). Publishing
//! never waits for it: a copy is skipped while the previous one is still being written.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};

use super::state::{Projection, State};
use super::store::{Position, Reader};
use super::writer::{KeyRecord, Keys};

/// By default, a snapshot every this many events.
pub const DEFAULT_EVERY: u64 = 10_000;

/// What a snapshot holds: the stories as the log made them, and the idempotency keys still
/// live (their events may be older than the snapshot).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Snapshot {
    pub(crate) projection: Projection,
    pub keys: Vec<(String, KeyRecord)>,
}

/// A snapshot has bytes the store checked but this build cannot read.
#[derive(Debug, thiserror::Error)]
#[error(
    "the snapshot of the event log cannot be read ({0}); the log holds everything it had: move \
     the `snapshot` file out of the log directory and start again"
)]
pub struct Unreadable(String);

pub fn decode(payload: &[u8]) -> Result<Snapshot, Unreadable> {
    serde_json::from_slice(payload).map_err(|e| Unreadable(e.to_string()))
}

/// A copy of the writer's state, taken after `seq`.
pub(crate) struct Take {
    /// The history the state belongs to (a store keeps a snapshot only of its own).
    pub epoch: super::store::Epoch,
    pub seq: u64,
    pub state: Box<State>,
    pub keys: Vec<(String, KeyRecord)>,
}

/// The writer's side: when to take a copy.
pub(crate) struct Taker {
    tx: SyncSender<Take>,
    every: u64,
    since: u64,
}

impl Taker {
    /// `since`: the events the state has that no snapshot has yet (those read at start).
    pub(crate) fn new(every: u64, since: u64) -> (Taker, Receiver<Take>) {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        (
            Taker {
                tx,
                every: every.max(1),
                since,
            },
            rx,
        )
    }

    /// Counts `n` more events; takes a copy once enough came (or `now`, when stopping) of the
    /// state at `at`.
    pub(crate) fn after(&mut self, n: u64, at: Position, state: &State, keys: &Keys, now: bool) {
        self.since += n;
        if self.since == 0 || (!now && self.since < self.every) {
            return;
        }
        let take = Take {
            epoch: at.epoch,
            seq: at.head,
            state: Box::new(state.clone()),
            keys: keys.entries(),
        };
        let sent = if now {
            self.tx.send(take).is_ok()
        } else {
            match self.tx.try_send(take) {
                Ok(()) => true,
                // Still writing the last one: try again at the next batch.
                Err(TrySendError::Full(_)) => false,
                Err(TrySendError::Disconnected(_)) => true,
            }
        };
        if sent {
            self.since = 0;
        }
    }
}

/// The snapshot thread: encodes each copy and hands it to the store; then, with `keep` (the
/// events the log retains behind its head, `--keep-events`), lets the store compact what is
/// both older than that and covered by the snapshot just kept.
pub(crate) fn run(rx: Receiver<Take>, reader: Arc<dyn Reader>, keep: Option<u64>) {
    for mut take in rx {
        let started = std::time::Instant::now();
        let snapshot = Snapshot {
            projection: take.state.projection(),
            keys: std::mem::take(&mut take.keys),
        };
        drop(take.state);
        let payload = match serde_json::to_vec(&snapshot) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "snapshot not written: it cannot be encoded");
                continue;
            }
        };
        drop(snapshot);
        match reader.save_snapshot(take.epoch, take.seq, &payload) {
            Ok(true) => {
                tracing::info!(
                    seq = take.seq,
                    bytes = payload.len(),
                    took = ?started.elapsed(),
                    "snapshot written"
                );
                if let Some(keep) = keep {
                    // The snapshot is at the writer's head: what lies `keep` behind it goes.
                    let upto = take.seq.saturating_sub(keep.max(1));
                    if let Err(e) = reader.compact(upto) {
                        tracing::warn!(error = %e, upto, "compacting the event log failed");
                    }
                }
            }
            Ok(false) => tracing::debug!(seq = take.seq, "the store keeps no snapshot of this"),
            Err(e) => tracing::warn!(error = %e, seq = take.seq, "snapshot not written"),
        }
    }
}
