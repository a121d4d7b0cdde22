//! An event log in memory that answers what a shared engine can answer: conflicts (another
//! writer appended first), outages, a replaced history (a new epoch). Tests drive the writer and
//! the follower through it; it is also the smallest example of the [`Store`] seam.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use super::event::Event;
use super::store::{Epoch, Position, Reader, Recovered, Store, StoreError};

/// The log itself, shared by its [`MemoryStore`] writer handles, its readers and the test that
/// injects faults.
pub struct MemoryLog {
    inner: Mutex<Inner>,
    appended: Condvar,
}

struct Inner {
    epoch: Epoch,
    events: Vec<Event>,
    /// While set, every call fails with [`StoreError::Unavailable`] and this reason.
    outage: Option<String>,
    /// Appended, renumbered, one batch just before each of the next writer appends: another
    /// writer got there first, so that append is a conflict.
    racing: VecDeque<Vec<Event>>,
    closed: bool,
    /// Events returned by reads, for tests that count what a start-up read…
    read: usize,
    /// …and the most one read returned, for tests that bound what a reader holds at once.
    largest_read: usize,
}

impl MemoryLog {
    pub fn new() -> Arc<MemoryLog> {
        Arc::new(MemoryLog {
            inner: Mutex::new(Inner {
                epoch: Epoch::random(),
                events: Vec::new(),
                outage: None,
                racing: VecDeque::new(),
                closed: false,
                read: 0,
                largest_read: 0,
            }),
            appended: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A writer's handle on this log.
    pub fn store(self: &Arc<Self>) -> Box<dyn Store> {
        Box::new(MemoryStore(Arc::clone(self)))
    }

    /// Starts (`Some(reason)`) or ends (`None`) an outage.
    pub fn set_outage(&self, reason: Option<&str>) {
        self.lock().outage = reason.map(str::to_string);
        self.appended.notify_all();
    }

    /// Makes another writer append `events` (renumbered after the head) just before the next
    /// append of this log's writer, which then gets a conflict (called again, before the one
    /// after it, and so on).
    pub fn race_next_append(&self, events: Vec<Event>) {
        self.lock().racing.push_back(events);
    }

    /// Replaces the whole history (a flush, or a restore from an old copy): a new epoch.
    pub fn replace_history(&self, events: Vec<Event>) -> Epoch {
        let mut inner = self.lock();
        inner.epoch = Epoch::random();
        inner.events = renumbered(events, 0);
        let epoch = inner.epoch;
        drop(inner);
        self.appended.notify_all();
        epoch
    }

    /// Every event the log holds.
    pub fn events(&self) -> Vec<Event> {
        self.lock().events.clone()
    }

    pub fn epoch(&self) -> Epoch {
        self.lock().epoch
    }

    /// How many events reads have returned so far.
    pub fn events_read(&self) -> usize {
        self.lock().read
    }

    /// The most events one read has returned so far.
    pub fn largest_read(&self) -> usize {
        self.lock().largest_read
    }

    fn unavailable(inner: &Inner) -> Result<(), StoreError> {
        match &inner.outage {
            Some(reason) => Err(StoreError::Unavailable {
                reason: reason.clone(),
                retry_after: Duration::from_secs(1),
            }),
            None => Ok(()),
        }
    }
}

fn renumbered(events: impl IntoIterator<Item = Event>, head: u64) -> Vec<Event> {
    events
        .into_iter()
        .zip(head + 1..)
        .map(|(e, seq)| Event { seq, ..e })
        .collect()
}

/// A writer's handle on a [`MemoryLog`].
pub struct MemoryStore(pub Arc<MemoryLog>);

impl Store for MemoryStore {
    fn load(&mut self) -> Result<Recovered, StoreError> {
        let mut inner = self.0.lock();
        MemoryLog::unavailable(&inner)?;
        inner.read += inner.events.len();
        Ok(Recovered {
            events: inner.events.clone(),
            epoch: inner.epoch,
            ..Recovered::default()
        })
    }

    fn append(&mut self, after: u64, events: &[Event]) -> Result<(), StoreError> {
        let mut inner = self.0.lock();
        MemoryLog::unavailable(&inner)?;
        if let Some(racing) = inner.racing.pop_front() {
            let head = inner.events.len() as u64;
            let racing = renumbered(racing, head);
            inner.events.extend(racing);
            self.0.appended.notify_all();
        }
        let head = inner.events.len() as u64;
        let follows = events
            .iter()
            .enumerate()
            .all(|(i, e)| e.seq == after + 1 + i as u64);
        if head != after || !follows {
            return Err(StoreError::Conflict { head });
        }
        inner.events.extend_from_slice(events);
        drop(inner);
        self.0.appended.notify_all();
        Ok(())
    }

    fn reader(&self) -> Arc<dyn Reader> {
        Arc::clone(&self.0) as Arc<dyn Reader>
    }
}

impl Reader for MemoryLog {
    fn position(&self) -> Result<Position, StoreError> {
        let inner = self.lock();
        MemoryLog::unavailable(&inner)?;
        Ok(Position {
            epoch: inner.epoch,
            head: inner.events.len() as u64,
        })
    }

    fn wait(&self, after: u64, timeout: Duration) -> Result<Position, StoreError> {
        let epoch = self.lock().epoch;
        let inner = self.lock();
        let (inner, _) = self
            .appended
            .wait_timeout_while(inner, timeout, |i| {
                i.events.len() as u64 <= after
                    && !i.closed
                    && i.outage.is_none()
                    && i.epoch == epoch
            })
            .unwrap_or_else(|p| p.into_inner());
        MemoryLog::unavailable(&inner)?;
        Ok(Position {
            epoch: inner.epoch,
            head: inner.events.len() as u64,
        })
    }

    fn read(
        &self,
        epoch: Epoch,
        after: u64,
        until: u64,
        max: usize,
    ) -> Result<Vec<Event>, StoreError> {
        let mut inner = self.lock();
        MemoryLog::unavailable(&inner)?;
        if inner.epoch != epoch {
            return Err(StoreError::EpochChanged {
                expected: epoch,
                found: inner.epoch,
            });
        }
        let out: Vec<Event> = inner
            .events
            .iter()
            .filter(|e| e.seq > after && e.seq <= until)
            .take(max)
            .cloned()
            .collect();
        inner.read += out.len();
        inner.largest_read = inner.largest_read.max(out.len());
        Ok(out)
    }

    fn close(&self) {
        self.lock().closed = true;
        self.appended.notify_all();
    }
}

/// The reader of a store that was never loaded: empty, and never waits.
pub struct Closed;

impl Reader for Closed {
    fn position(&self) -> Result<Position, StoreError> {
        Ok(Position::default())
    }

    fn wait(&self, _after: u64, timeout: Duration) -> Result<Position, StoreError> {
        std::thread::sleep(timeout);
        Ok(Position::default())
    }

    fn read(&self, _: Epoch, _: u64, _: u64, _: usize) -> Result<Vec<Event>, StoreError> {
        Ok(Vec::new())
    }

    fn close(&self) {}
}
