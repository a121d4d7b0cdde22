//! Durable storage of the event log behind two traits, [`Store`] (the writer's side) and
//! [`Reader`] (shared: followers, readers of old cursors, snapshots), with the embedded
//! default: an append-only file of checksummed records.
//!
//! Record layout: `len: u32 LE | crc32(payload): u32 LE | payload` where the payload is the
//! event's JSON. Recovery reads records in order and stops at the first one that is torn
//! (shorter than its length) or fails its checksum or does not continue the `seq` sequence.
//!
//! Damage policy. Only an unacknowledged write can be torn, and only at the end, so damage is
//! taken for a torn tail only when that is proven: no record with a valid checksum and a
//! plausible `seq` starts anywhere after the damaged point. A torn tail is cut at start (with a
//! warning; a copy is saved first unless the damage is a plain short record). Any other damage
//! keeps every byte: opening fails with [`StoreError::Damaged`], and the operator decides with
//! `livefeed log check` and `livefeed log repair` ([`repair`]), which saves the original aside
//! (never replacing an earlier copy) before cutting.
//!
//! The log directory is locked (an advisory `flock` on `LOCK`, which holds the owner's pid) by
//! the process that writes it, so two servers never hand out the same `seq`.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::event::Event;

/// The largest record accepted when reading (a guard against a corrupt length).
pub const MAX_RECORD: usize = 16 * 1024 * 1024;
const HEADER: usize = 8;
/// The log file's name in its directory.
pub const LOG_FILE: &str = "events.log";
/// The lock file's name in the log directory.
pub const LOCK_FILE: &str = "LOCK";
/// The file holding the log's [`Epoch`], in hex, in the log directory.
pub const EPOCH_FILE: &str = "EPOCH";

/// The epoch of the log in `dir`: read from its file, or made (and written, durably) when the
/// history is new (`fresh`) or predates epochs.
fn epoch_of(dir: &Path, fresh: bool, writable: bool) -> Result<Epoch, StoreError> {
    let path = dir.join(EPOCH_FILE);
    if !fresh {
        if let Some(epoch) = std::fs::read_to_string(&path)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            return Ok(epoch);
        }
    }
    let epoch = Epoch::random();
    if writable {
        write_epoch(dir, epoch)?;
    }
    Ok(epoch)
}

/// Replaces the epoch file atomically: a temporary file, synced, renamed over it, then the
/// directory synced.
fn write_epoch(dir: &Path, epoch: Epoch) -> Result<(), StoreError> {
    let path = dir.join(EPOCH_FILE);
    let tmp = dir.join(format!("{EPOCH_FILE}.tmp"));
    let write = || -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        writeln!(f, "{epoch}")?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        fsync_dir(dir)
    };
    write().map_err(io_error(&path))
}

/// Storage failed. The relay stops accepting publishes after one of these.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Damage that is not a torn tail: intact records follow it. Nothing was changed.
    #[error(
        "{path}: the event log is damaged at byte {offset} ({kind}); {before} intact records \
         come before the damage and {after} intact records after it, so this is not a torn \
         last write and nothing was cut. Look with `livefeed log check --log-dir {dir}`; \
         `livefeed log repair --log-dir {dir}` saves the file aside and cuts the log at byte \
         {offset}, dropping the damaged bytes and the {after} records after them",
        path = path.display(),
        dir = path.parent().unwrap_or(Path::new(".")).display()
    )]
    Damaged {
        path: PathBuf,
        offset: u64,
        kind: String,
        before: usize,
        after: usize,
    },
    /// An event that cannot be one record (the writer refuses such changes before this).
    #[error("event {seq} cannot be written to the log: {why}")]
    Record { seq: u64, why: RecordError },
    /// The store cannot be reached now (a shared engine's outage); the same append may succeed
    /// later.
    #[error("the event log is unavailable: {reason}")]
    Unavailable {
        reason: String,
        retry_after: std::time::Duration,
    },
    /// Another writer appended first: the log's head is `head`, not what the append followed.
    #[error("another writer appended first (the log's head is {head})")]
    Conflict { head: u64 },
    /// The log's history was replaced: cursors of the old one mean nothing in it.
    #[error("the event log's history was replaced (epoch {found}, expected {expected})")]
    EpochChanged { expected: Epoch, found: Epoch },
    /// The events a read asked for were compacted away (a snapshot covers them): the log
    /// holds seqs from `oldest` on.
    #[error("the event log no longer holds those events: it starts at seq {oldest}")]
    Compacted { oldest: u64 },
    /// The log was compacted (it starts after seq 1) but no usable snapshot covers what it no
    /// longer holds, so the stories cannot be rebuilt from it. Nothing was changed.
    #[error(
        "{}: the event log starts at seq {oldest} and no usable snapshot covers the events \
         before it ({why}); restore the `snapshot` file of this log",
        path.display()
    )]
    Uncovered {
        path: PathBuf,
        oldest: u64,
        why: String,
    },
    /// Another process holds the log directory's lock.
    #[error(
        "{}: the event log is in use by another livefeed process ({holder}); stop it, or give \
         this one another --data or --log-dir",
        path.display()
    )]
    Locked { path: PathBuf, holder: String },
}

/// A log's identity: a random number made with its history. A log whose history was replaced
/// (recreated, cut by `log repair`, restored from an old copy, flushed) has another epoch, so a
/// cursor into the old history is refused, never answered with events of the new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Epoch(pub u64);

impl Epoch {
    /// A new epoch, from the operating system's random source.
    pub(crate) fn random() -> Epoch {
        let mut bytes = [0u8; 8];
        // Without the OS source (never seen on Linux), the clock still tells histories apart.
        if getrandom::fill(&mut bytes).is_err() {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            bytes = (nanos ^ u64::from(std::process::id()).rotate_left(32)).to_le_bytes();
        }
        Epoch(u64::from_le_bytes(bytes))
    }
}

impl std::fmt::Display for Epoch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl std::str::FromStr for Epoch {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<Epoch, Self::Err> {
        u64::from_str_radix(s, 16).map(Epoch)
    }
}

/// Where a log stands: its epoch and its last seq.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    pub epoch: Epoch,
    pub head: u64,
}

impl StoreError {
    /// Whether the same append may succeed later: the store is unreachable for now, or another
    /// writer got there first or the history was replaced (catch up and decide again).
    pub(crate) fn retryable(&self) -> bool {
        matches!(
            self,
            StoreError::Unavailable { .. }
                | StoreError::Conflict { .. }
                | StoreError::EpochChanged { .. }
        )
    }
}

/// Where the log lives: the writer's side of it.
///
/// The writer proposes events whose seqs follow the head it has seen (`after + 1`, …); the
/// store accepts them all, durably, or refuses them all: [`StoreError::Conflict`] when another
/// writer appended first (the writer catches up through [`Reader::read`] and decides again),
/// [`StoreError::Unavailable`] when it cannot be reached now (retry later), anything else when
/// it must stop. Idempotency keys travel inside the events, so a key and its answer are
/// recorded with the record, atomically.
pub trait Store: Send {
    /// Recovers the log (cutting a torn tail; any other damage fails) and returns its events.
    fn load(&mut self) -> Result<Recovered, StoreError>;
    /// Appends events whose seqs are `after + 1`, `after + 2`, … and returns once they are
    /// durable (one sync for the whole batch); a conflict when the head is not `after`.
    fn append(&mut self, after: u64, events: &[Event]) -> Result<(), StoreError>;
    /// The read side, shared by the follower, the hub and the writer's catch-up (after
    /// [`Store::load`]).
    fn reader(&self) -> Arc<dyn Reader>;
    /// The writer now decides on the history of `epoch` (it rebuilt after a replaced history):
    /// a store that checks epochs at append takes appends for that one from now on.
    fn adopt_epoch(&mut self, _epoch: Epoch) {}
    /// The events after the refused append's `after` that the store sent with its last
    /// [`StoreError::Conflict`] (oldest first, maybe not all of them): the writer catches up on
    /// them without another round trip. Empty for a store that sends none.
    fn take_missed(&mut self) -> Vec<Event> {
        Vec::new()
    }
}

/// The log read back and followed. Blocking: callers run it on their own thread or a blocking
/// task, never on the async runtime.
pub trait Reader: Send + Sync {
    /// The log's epoch and head now.
    fn position(&self) -> Result<Position, StoreError>;
    /// Waits until the head passes `after`, or `timeout`, or [`Reader::close`]; returns the
    /// position then.
    fn wait(&self, after: u64, timeout: std::time::Duration) -> Result<Position, StoreError>;
    /// Events with `after < seq <= until`, oldest first, at most `max` of them, from the
    /// history of `epoch` ([`StoreError::EpochChanged`] when the log has another).
    fn read(
        &self,
        epoch: Epoch,
        after: u64,
        until: u64,
        max: usize,
    ) -> Result<Vec<Event>, StoreError>;
    /// Wakes every [`Reader::wait`]: the relay is closing.
    fn close(&self);
    /// Keeps `payload`, a snapshot of the relay's state after `seq` of `epoch`'s history,
    /// durably and atomically, so the next start reads it and the log after it only. False
    /// when this store keeps no snapshots (or `seq` is no longer at hand, or the history is
    /// another).
    fn save_snapshot(&self, epoch: Epoch, seq: u64, payload: &[u8]) -> Result<bool, StoreError> {
        let _ = (epoch, seq, payload);
        Ok(false)
    }
    /// The newest snapshot this store keeps of `epoch`'s history, for rebuilding after the
    /// history was replaced (a store that compacts must keep one, or the rebuild could not
    /// start); `None` when it keeps none.
    fn snapshot(&self, epoch: Epoch) -> Result<Option<SavedSnapshot>, StoreError> {
        let _ = epoch;
        Ok(None)
    }
    /// The oldest seq the log still holds (1 until it is compacted), as this reader last saw
    /// it: cheap, never a round trip. A read of anything older is [`StoreError::Compacted`].
    fn oldest(&self) -> u64 {
        1
    }
    /// Drops events with seqs up to `upto`, but never one the stored snapshot does not cover
    /// (`upto` is lowered to the snapshot's seq) and never the head; returns the oldest seq
    /// the log holds afterwards. A store that does not compact keeps everything.
    fn compact(&self, upto: u64) -> Result<u64, StoreError> {
        let _ = upto;
        Ok(self.oldest())
    }
}

/// Every how many records the file log's reader remembers an offset.
const INDEX_EVERY: u64 = 256;
/// The newest appended events the file log's reader keeps in memory for the follower.
const TAIL_EVENTS: usize = 4096;
/// By default, the file log rolls to a new segment once the current one holds this many
/// bytes: compaction deletes whole segments, so the disk holds at most about one segment more
/// than what is retained.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 * 1024 * 1024;

/// The file of the segment whose first record is seq `base`: `events.log` for the first one
/// (so a log written before segments is its own first segment), `events-<base>.log` (20
/// digits, so names sort by seq) for the others.
pub fn segment_path(dir: &Path, base: u64) -> PathBuf {
    if base == 1 {
        dir.join(LOG_FILE)
    } else {
        dir.join(format!("events-{base:020}.log"))
    }
}

/// The segments in `dir`, `(first seq, file)`, oldest first.
pub fn segments(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut found = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(found),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let base = if name == LOG_FILE {
            Some(1)
        } else {
            name.strip_prefix("events-")
                .and_then(|n| n.strip_suffix(".log"))
                .filter(|n| n.len() == 20 && n.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|n| n.parse::<u64>().ok())
                .filter(|&b| b > 1)
        };
        if let Some(base) = base {
            found.push((base, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

/// One segment file of the log as the reader knows it.
#[derive(Debug, Clone)]
struct Segment {
    /// The seq of its first record.
    base: u64,
    path: PathBuf,
    /// `(seq, offset)` of every `INDEX_EVERY`-th record, in order.
    index: Vec<(u64, u64)>,
    /// Where its last record ends.
    end: u64,
}

#[derive(Debug, Default)]
struct Segments {
    /// Oldest first; the last one is appended to.
    list: Vec<Segment>,
    /// The seq of the snapshot kept on disk (0: none): nothing after it is ever compacted.
    snapshot: u64,
}

/// The file log read back: its segments with a sparse index of record offsets, the newest
/// appended events in memory, and a fresh read-only handle per read of older ones.
pub struct FileReader {
    dir: PathBuf,
    epoch: Epoch,
    segments: Mutex<Segments>,
    tail: Mutex<Tail>,
    appended: std::sync::Condvar,
}

#[derive(Default)]
struct Tail {
    events: std::collections::VecDeque<Event>,
    /// `(seq, segment's first seq, offset after its record)` of the newest records, for
    /// snapshots.
    ends: std::collections::VecDeque<(u64, u64, u64)>,
    head: u64,
    closed: bool,
}

impl FileReader {
    /// Notes the records of an append that started at byte `at` of the last segment, and
    /// wakes the follower.
    fn appended(&self, events: &[Event], sizes: &[usize], mut at: u64) {
        let mut ends = Vec::with_capacity(events.len());
        {
            let mut segments = self.segments.lock().unwrap_or_else(|p| p.into_inner());
            let Some(last) = segments.list.last_mut() else {
                return;
            };
            for (e, size) in events.iter().zip(sizes) {
                if (e.seq - last.base) % INDEX_EVERY == 0 {
                    last.index.push((e.seq, at));
                }
                at += *size as u64;
                ends.push((e.seq, last.base, at));
            }
            last.end = at;
        }
        let mut tail = self.tail.lock().unwrap_or_else(|p| p.into_inner());
        for e in events {
            tail.head = e.seq;
            tail.events.push_back(e.clone());
        }
        let over = tail.events.len().saturating_sub(TAIL_EVENTS);
        tail.events.drain(..over);
        tail.ends.extend(ends);
        let over = tail.ends.len().saturating_sub(TAIL_EVENTS);
        tail.ends.drain(..over);
        drop(tail);
        self.appended.notify_all();
    }

    /// Appends go to a new (empty) segment from now on.
    fn rolled(&self, base: u64, path: PathBuf) {
        let mut segments = self.segments.lock().unwrap_or_else(|p| p.into_inner());
        segments.list.push(Segment {
            base,
            path,
            index: Vec::new(),
            end: 0,
        });
    }

    fn position_now(&self) -> Position {
        let tail = self.tail.lock().unwrap_or_else(|p| p.into_inner());
        Position {
            epoch: self.epoch,
            head: tail.head,
        }
    }

    fn oldest_now(&self) -> u64 {
        let segments = self.segments.lock().unwrap_or_else(|p| p.into_inner());
        segments.list.first().map_or(1, |s| s.base)
    }

    fn read_file(&self, after: u64, until: u64, max: usize) -> Result<Vec<Event>, StoreError> {
        // The segments from the one holding `after + 1` on, and where to start in the first.
        let (plan, start) = {
            let segments = self.segments.lock().unwrap_or_else(|p| p.into_inner());
            let oldest = segments.list.first().map_or(1, |s| s.base);
            if after.saturating_add(1) < oldest {
                return Err(StoreError::Compacted { oldest });
            }
            let i = segments
                .list
                .partition_point(|s| s.base <= after.saturating_add(1))
                .saturating_sub(1);
            let plan: Vec<(PathBuf, u64)> = segments.list[i..]
                .iter()
                .map(|s| (s.path.clone(), s.end))
                .collect();
            let start = segments.list.get(i).map_or(0, |s| {
                let j = s
                    .index
                    .partition_point(|(seq, _)| *seq <= after.saturating_add(1));
                j.checked_sub(1).map_or(0, |j| s.index[j].1)
            });
            (plan, start)
        };
        let mut out = Vec::new();
        let mut record = Vec::new();
        for (n, (path, end)) in plan.into_iter().enumerate() {
            let io = |source| StoreError::Io {
                path: path.clone(),
                source,
            };
            let file = match File::open(&path) {
                Ok(f) => f,
                // Compacted since the plan was made.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(StoreError::Compacted {
                        oldest: self.oldest_now(),
                    });
                }
                Err(e) => return Err(io(e)),
            };
            let mut file = std::io::BufReader::new(file);
            let mut at = if n == 0 { start } else { 0 };
            file.seek(SeekFrom::Start(at)).map_err(io)?;
            while at < end && out.len() < max {
                let mut header = [0u8; HEADER];
                file.read_exact(&mut header).map_err(io)?;
                let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
                if len > MAX_RECORD {
                    return Err(io(std::io::Error::other(format!(
                        "record at byte {at} claims {len} bytes"
                    ))));
                }
                record.clear();
                record.extend_from_slice(&header);
                record.resize(HEADER + len, 0);
                file.read_exact(&mut record[HEADER..]).map_err(io)?;
                let (event, used) = decode(&record).map_err(|damage| {
                    io(std::io::Error::other(format!(
                        "record at byte {at}: {damage:?} (it was intact at start)"
                    )))
                })?;
                at += used as u64;
                if event.seq > until {
                    return Ok(out);
                }
                if event.seq > after {
                    out.push(event);
                }
            }
            if out.len() >= max {
                break;
            }
        }
        Ok(out)
    }
}

impl Reader for FileReader {
    fn position(&self) -> Result<Position, StoreError> {
        Ok(self.position_now())
    }

    fn wait(&self, after: u64, timeout: std::time::Duration) -> Result<Position, StoreError> {
        let tail = self.tail.lock().unwrap_or_else(|p| p.into_inner());
        let (tail, _) = self
            .appended
            .wait_timeout_while(tail, timeout, |t| t.head <= after && !t.closed)
            .unwrap_or_else(|p| p.into_inner());
        Ok(Position {
            epoch: self.epoch,
            head: tail.head,
        })
    }

    fn read(
        &self,
        epoch: Epoch,
        after: u64,
        until: u64,
        max: usize,
    ) -> Result<Vec<Event>, StoreError> {
        if epoch != self.epoch {
            return Err(StoreError::EpochChanged {
                expected: epoch,
                found: self.epoch,
            });
        }
        let oldest = self.oldest_now();
        if after.saturating_add(1) < oldest {
            return Err(StoreError::Compacted { oldest });
        }
        {
            // The newest events, as the follower asks for them, come from memory.
            let tail = self.tail.lock().unwrap_or_else(|p| p.into_inner());
            if tail.events.front().is_some_and(|e| e.seq <= after + 1) {
                return Ok(tail
                    .events
                    .iter()
                    .filter(|e| e.seq > after && e.seq <= until)
                    .take(max)
                    .cloned()
                    .collect());
            }
        }
        self.read_file(after, until, max)
    }

    fn close(&self) {
        self.tail.lock().unwrap_or_else(|p| p.into_inner()).closed = true;
        self.appended.notify_all();
    }

    fn save_snapshot(&self, epoch: Epoch, seq: u64, payload: &[u8]) -> Result<bool, StoreError> {
        if epoch != self.epoch {
            return Ok(false);
        }
        let (segment, offset) = {
            let tail = self.tail.lock().unwrap_or_else(|p| p.into_inner());
            match tail.ends.iter().find(|(s, _, _)| *s == seq) {
                Some((_, segment, end)) => (*segment, *end),
                None => return Ok(false),
            }
        };
        let dir = self.dir.as_path();
        let path = dir.join(SNAPSHOT_FILE);
        let tmp = dir.join(format!("{SNAPSHOT_FILE}.tmp"));
        let header = SnapshotHeader {
            format: SNAPSHOT_FORMAT,
            epoch: self.epoch.to_string(),
            seq,
            segment,
            offset,
            len: payload.len() as u64,
            crc: crc32fast::hash(payload),
        };
        let write = || -> std::io::Result<()> {
            let mut f = std::io::BufWriter::new(File::create(&tmp)?);
            serde_json::to_writer(&mut f, &header)?;
            f.write_all(b"\n")?;
            f.write_all(payload)?;
            let f = f.into_inner().map_err(|e| e.into_error())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            fsync_dir(dir)
        };
        write().map_err(io_error(&path))?;
        let mut segments = self.segments.lock().unwrap_or_else(|p| p.into_inner());
        segments.snapshot = segments.snapshot.max(seq);
        Ok(true)
    }

    fn oldest(&self) -> u64 {
        self.oldest_now()
    }

    /// Deletes whole segments, oldest first, whose every record is at most `upto` and covered
    /// by the snapshot on disk; never the last one (appended to). They leave the reader's list
    /// before their files go, so a read sees either the segment or [`StoreError::Compacted`].
    /// A crash between two deletions leaves a shorter run of whole segments: still a log.
    fn compact(&self, upto: u64) -> Result<u64, StoreError> {
        // Never the head's segment: the head is known from the log itself after a start.
        let head = self.position_now().head;
        let (doomed, oldest) = {
            let mut segments = self.segments.lock().unwrap_or_else(|p| p.into_inner());
            let upto = upto.min(segments.snapshot).min(head.saturating_sub(1));
            let list = &segments.list;
            let mut n = 0;
            while n + 1 < list.len() && list[n + 1].base - 1 <= upto {
                n += 1;
            }
            let doomed: Vec<PathBuf> = segments.list.drain(..n).map(|s| s.path).collect();
            (doomed, segments.list.first().map_or(1, |s| s.base))
        };
        if doomed.is_empty() {
            return Ok(oldest);
        }
        for path in &doomed {
            match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error(path)(e)),
            }
        }
        fsync_dir(&self.dir).map_err(io_error(&self.dir))?;
        tracing::info!(
            segments = doomed.len(),
            oldest,
            "event log compacted: segments a snapshot covers deleted"
        );
        Ok(oldest)
    }
}

/// What recovery found.
#[derive(Debug, Default)]
pub struct Recovered {
    /// The events after the snapshot (all of them without one).
    pub events: Vec<Event>,
    /// The log's epoch (made with it).
    pub epoch: Epoch,
    /// The newest snapshot the store holds of the relay's state, when there is a usable one:
    /// `events` continue after its seq.
    pub snapshot: Option<SavedSnapshot>,
    /// Bytes cut off the end of the log, and why; empty when the log was clean.
    pub dropped_bytes: u64,
    pub(crate) reason: Option<String>,
    /// Where the original file was saved before a torn tail that was not a plain short record
    /// was cut.
    pub saved_copy: Option<PathBuf>,
    /// Set when the log can be read but not written: why. The relay then serves read-only.
    pub(crate) read_only: Option<String>,
    /// What the store's settings risk (a shared engine that may lose acknowledged appends):
    /// logged, and listed by `/healthz`; publishing goes on.
    pub warnings: Vec<String>,
}

/// A snapshot of the relay's state as the store keeps it: opaque bytes, taken at `seq`.
#[derive(Debug, Clone)]
pub struct SavedSnapshot {
    pub seq: u64,
    pub payload: Vec<u8>,
}

/// The snapshot file's name in the log directory.
pub const SNAPSHOT_FILE: &str = "snapshot";
/// The snapshot file's layout version; a file of another version is ignored (full replay).
/// Version 1 predates segments: its offset is in `events.log`, the segment of seq 1.
const SNAPSHOT_FORMAT: u32 = 2;

fn first_segment() -> u64 {
    1
}

/// The first line of the snapshot file; the payload follows it.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct SnapshotHeader {
    format: u32,
    epoch: String,
    seq: u64,
    /// The segment (its first seq) holding the record after `seq`…
    #[serde(default = "first_segment")]
    segment: u64,
    /// …and where in it that record starts.
    offset: u64,
    len: u64,
    crc: u32,
}

/// The snapshot in `dir` when it belongs to this history and checks out; why not otherwise.
fn read_snapshot(dir: &Path, epoch: Epoch) -> Result<Option<(SnapshotHeader, Vec<u8>)>, String> {
    let bytes = match std::fs::read(dir.join(SNAPSHOT_FILE)) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let nl = bytes
        .iter()
        .position(|&b| b == b'\n')
        .ok_or("no header line")?;
    let header: SnapshotHeader =
        serde_json::from_slice(&bytes[..nl]).map_err(|e| format!("header: {e}"))?;
    let payload = bytes[nl + 1..].to_vec();
    if header.format != SNAPSHOT_FORMAT && header.format != 1 {
        return Err(format!(
            "format {} (this build reads {SNAPSHOT_FORMAT})",
            header.format
        ));
    }
    if header.epoch != epoch.to_string() {
        return Err(format!("of another history (epoch {})", header.epoch));
    }
    if payload.len() as u64 != header.len || crc32fast::hash(&payload) != header.crc {
        return Err("its checksum does not match".into());
    }
    Ok(Some((header, payload)))
}

/// Checks the records of a segment whose first seq is `base` up to byte `offset` without
/// decoding them: each length within bounds, each checksum right, the last ending exactly at
/// `offset`. Returns the sparse index of their offsets and the seq after them; why not, when
/// anything is off.
fn check_prefix(file: &mut File, base: u64, offset: u64) -> Result<(Vec<(u64, u64)>, u64), String> {
    let mut r = std::io::BufReader::with_capacity(1 << 20, &mut *file);
    r.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
    let (mut at, mut seq) = (0u64, base);
    let mut index = Vec::new();
    let mut payload = Vec::new();
    while at < offset {
        let mut header = [0u8; HEADER];
        r.read_exact(&mut header).map_err(|e| e.to_string())?;
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as u64;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if len as usize > MAX_RECORD || at + HEADER as u64 + len > offset {
            return Err(format!(
                "record at byte {at} runs past the snapshot's offset"
            ));
        }
        payload.resize(len as usize, 0);
        r.read_exact(&mut payload).map_err(|e| e.to_string())?;
        if crc32fast::hash(&payload) != crc {
            return Err(format!("record at byte {at} fails its checksum"));
        }
        if (seq - base) % INDEX_EVERY == 0 {
            index.push((seq, at));
        }
        seq += 1;
        at += HEADER as u64 + len;
    }
    Ok((index, seq))
}

/// Encodes one record. An event whose payload would be larger than [`MAX_RECORD`] is refused:
/// written, it would be read back as damage at the next start.
pub fn encode(event: &Event, out: &mut Vec<u8>) -> Result<(), RecordError> {
    let payload = serde_json::to_vec(event).map_err(|e| RecordError::Json(e.to_string()))?;
    if payload.len() > MAX_RECORD {
        return Err(RecordError::TooLarge(payload.len()));
    }
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(())
}

/// Why an event cannot be one record of the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("{0} bytes is more than one log record holds ({MAX_RECORD} bytes)")]
    TooLarge(usize),
    #[error("the event does not serialise: {0}")]
    Json(String),
}

/// The largest entry (as JSON) an event may carry: a record less room for the event's other
/// fields, which are bounded by the request limits (story slug, key, fingerprint).
pub const MAX_ENTRY: usize = MAX_RECORD - 64 * 1024;

/// Whether `entry` fits in one record; counted without keeping the JSON.
pub(crate) fn entry_fits(entry: &crate::model::Entry) -> Result<(), RecordError> {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    serde_json::to_writer(&mut count, entry).map_err(|e| RecordError::Json(e.to_string()))?;
    if count.0 > MAX_ENTRY {
        return Err(RecordError::TooLarge(count.0));
    }
    Ok(())
}

/// Why decoding stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum Damage {
    Torn,
    Checksum,
    BadLength(usize),
    BadPayload(String),
}

/// Decodes the record at the start of `buf`: the event and the bytes it took.
pub fn decode(buf: &[u8]) -> Result<(Event, usize), Damage> {
    if buf.len() < HEADER {
        return Err(Damage::Torn);
    }
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    let crc = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
    if len == 0 || len > MAX_RECORD {
        return Err(Damage::BadLength(len));
    }
    let Some(payload) = buf.get(HEADER..HEADER + len) else {
        return Err(Damage::Torn);
    };
    if crc32fast::hash(payload) != crc {
        return Err(Damage::Checksum);
    }
    let event = serde_json::from_slice(payload).map_err(|e| Damage::BadPayload(e.to_string()))?;
    Ok((event, HEADER + len))
}

/// Reads a whole log image: the good events, and where and why it stopped.
pub fn decode_all(buf: &[u8]) -> (Vec<Event>, usize, Option<Damage>) {
    decode_all_from(buf, 1)
}

/// [`decode_all`] of a part of a log whose first record is seq `first`.
pub(crate) fn decode_all_from(buf: &[u8], first: u64) -> (Vec<Event>, usize, Option<Damage>) {
    let mut events: Vec<Event> = Vec::new();
    let mut at = 0;
    while at < buf.len() {
        match decode(&buf[at..]) {
            Ok((event, used)) => {
                let expected = events.last().map_or(first, |e| e.seq + 1);
                if event.seq != expected {
                    return (
                        events,
                        at,
                        Some(Damage::BadPayload(format!(
                            "seq {} where {expected} was expected",
                            event.seq
                        ))),
                    );
                }
                events.push(event);
                at += used;
            }
            Err(d) => return (events, at, Some(d)),
        }
    }
    (events, at, None)
}

/// Damage found in a log image, with what follows it.
#[derive(Debug, PartialEq, Eq)]
pub struct Found {
    /// Where the intact prefix ends: the log would be cut here.
    pub offset: usize,
    pub kind: Damage,
    /// Where the first intact record after the damage starts, if any.
    pub next_intact: Option<usize>,
    /// Records with a valid checksum from `next_intact` on, and their first and last seq.
    pub intact_after: usize,
    pub seqs_after: Option<(u64, u64)>,
}

impl Found {
    /// Proven torn: nothing decodable follows the damaged point.
    pub fn torn_tail(&self) -> bool {
        self.next_intact.is_none()
    }
}

/// A log image read in full: the intact prefix and the damage after it, if any.
#[derive(Debug)]
pub struct Scan {
    pub events: Vec<Event>,
    /// The image's length in bytes.
    pub len: usize,
    pub damage: Option<Found>,
}

impl Scan {
    /// The seq of the last intact record before the damage (0 for none).
    pub fn head(&self) -> u64 {
        self.events.last().map_or(0, |e| e.seq)
    }
}

/// Reads a log image and, on damage, searches every later byte offset for a record that
/// decodes with a valid checksum and a seq after the intact prefix's. A corrupt length field
/// hides where the next record starts, hence the byte-by-byte search; it is cheap because a
/// record's JSON payload has no zero bytes, so nearly every offset fails the length check.
pub fn scan(buf: &[u8]) -> Scan {
    scan_from(buf, 1)
}

/// [`scan`] of a part of a log whose first record is seq `first` (the tail after a snapshot);
/// offsets are within `buf`.
pub(crate) fn scan_from(buf: &[u8], first: u64) -> Scan {
    let (events, good, damage) = decode_all_from(buf, first);
    let damage = damage.map(|kind| {
        let last = events.last().map_or(first - 1, |e| e.seq);
        // A record with a valid checksum at the damaged point itself (a seq out of order) is
        // never a torn write.
        let from = if decode(&buf[good..]).is_ok() {
            good
        } else {
            good + 1
        };
        let next_intact = (from..buf.len())
            .find(|&at| decode(&buf[at..]).is_ok_and(|(e, _)| at == good || e.seq > last));
        let (mut intact_after, mut seqs_after) = (0, None::<(u64, u64)>);
        if let Some(mut at) = next_intact {
            while let Ok((e, used)) = decode(&buf[at..]) {
                intact_after += 1;
                seqs_after = Some(seqs_after.map_or((e.seq, e.seq), |(a, _)| (a, e.seq)));
                at += used;
            }
        }
        // "Torn" only means the record's length runs past the end of the image; with intact
        // records after it, it is the length field that is damaged.
        let kind = match (kind, next_intact) {
            (Damage::Torn, Some(_)) if buf.len() - good >= HEADER => {
                Damage::BadLength(u32::from_le_bytes([
                    buf[good],
                    buf[good + 1],
                    buf[good + 2],
                    buf[good + 3],
                ]) as usize)
            }
            (kind, _) => kind,
        };
        Found {
            offset: good,
            kind,
            next_intact,
            intact_after,
            seqs_after,
        }
    });
    Scan {
        len: buf.len(),
        events,
        damage,
    }
}

/// Fsyncs a directory, so the names created or renamed in it survive a power cut.
pub(crate) fn fsync_dir(path: &Path) -> std::io::Result<()> {
    File::open(path)?.sync_all()?;
    #[cfg(test)]
    tests::SYNCED_DIRS.with(|s| s.borrow_mut().push(path.to_path_buf()));
    Ok(())
}

/// Creates `dir` and any missing parents, fsyncing each parent after a directory is made in it.
fn create_dirs(dir: &Path) -> std::io::Result<()> {
    let missing: Vec<&Path> = dir.ancestors().take_while(|p| !p.exists()).collect();
    for d in missing.into_iter().rev() {
        match std::fs::create_dir(d) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
        let parent = match d.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        fsync_dir(parent)?;
    }
    Ok(())
}

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Takes the log directory's advisory lock and writes our pid into `LOCK`. `None` when the
/// directory cannot be written and `LOCK` does not exist: a read-only log needs no lock.
fn lock(dir: &Path) -> Result<Option<File>, StoreError> {
    let path = dir.join(LOCK_FILE);
    let err = io_error(&path);
    let (file, writable) = match OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
    {
        Ok(f) => (f, true),
        Err(_) => match File::open(&path) {
            Ok(f) => (f, false),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(err(e)),
        },
    };
    // Fully qualified: newer std has an inherent `File::try_lock` with another error type.
    match fs4::FileExt::try_lock(&file) {
        Ok(()) => {}
        Err(fs4::TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = (&file).read_to_string(&mut pid);
            let holder = match pid.trim().parse::<u32>() {
                Ok(pid) => format!("pid {pid}"),
                Err(_) => "a process that has not written its pid yet".to_string(),
            };
            return Err(StoreError::Locked {
                path: path.clone(),
                holder,
            });
        }
        Err(fs4::TryLockError::Error(e)) => return Err(err(e)),
    }
    if writable {
        let mut f = &file;
        f.set_len(0)
            .and_then(|()| f.write_all(std::process::id().to_string().as_bytes()))
            .map_err(&err)?;
    }
    Ok(Some(file))
}

/// Saves `image` aside as `events.log.damaged-<offset>` (or `…-<offset>.2`, `.3`, … : a copy
/// never replaces another) and fsyncs the copy and the directory, before anything is cut.
fn save_aside(log: &Path, offset: usize, image: &[u8]) -> Result<PathBuf, StoreError> {
    let base = log.with_extension(format!("log.damaged-{offset}"));
    for n in 1.. {
        let copy = if n == 1 {
            base.clone()
        } else {
            PathBuf::from(format!("{}.{n}", base.display()))
        };
        let mut file = match OpenOptions::new().write(true).create_new(true).open(&copy) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_error(&copy)(e)),
        };
        file.write_all(image)
            .and_then(|()| file.sync_all())
            .map_err(io_error(&copy))?;
        if let Some(dir) = copy.parent() {
            fsync_dir(dir).map_err(io_error(dir))?;
        }
        return Ok(copy);
    }
    unreachable!("1.. does not end")
}

/// Reads the log in `dir` without changing anything (no lock: a reader cannot hurt a writer).
/// Only the last segment is read: it is the one appended to, where a write can be torn (a
/// start checks the others and names any damage in them).
pub fn inspect(dir: &Path) -> Result<Scan, StoreError> {
    let (base, path) = last_segment(dir)?;
    let image = std::fs::read(&path).map_err(io_error(&path))?;
    Ok(scan_from(&image, base))
}

/// The segment appended to: the newest in `dir` (`events.log` when there is none yet).
pub fn last_segment(dir: &Path) -> Result<(u64, PathBuf), StoreError> {
    let found = segments(dir).map_err(io_error(dir))?;
    Ok(found
        .into_iter()
        .next_back()
        .unwrap_or_else(|| (1, dir.join(LOG_FILE))))
}

/// A log read back whole without changing anything (no lock), for a build: the newest usable
/// snapshot when the log needs it, and the events after it.
#[derive(Debug)]
pub struct ReadBack {
    /// The events after `snapshot` (all of them without one), up to any torn tail.
    pub events: Vec<Event>,
    pub snapshot: Option<SavedSnapshot>,
    /// Where a torn tail of the last segment starts, if it has one (left alone).
    pub torn: Option<u64>,
    /// The last segment.
    pub path: PathBuf,
}

/// Reads a log of several segments as [`Store::load`] would, read-only. A log that still
/// starts at seq 1 is read whole; a compacted one from its snapshot.
pub fn read_back(dir: &Path) -> Result<ReadBack, StoreError> {
    let found = segments(dir).map_err(io_error(dir))?;
    let Some((_, last_path)) = found.last().cloned() else {
        let path = dir.join(LOG_FILE);
        return Err(io_error(&path)(std::io::ErrorKind::NotFound.into()));
    };
    let mut last = File::open(&last_path).map_err(io_error(&last_path))?;
    let store = FileStore::new(dir);
    let oldest = found[0].0;
    let snapshot = if oldest > 1 {
        let epoch = epoch_of(dir, false, false)?;
        match read_snapshot(dir, epoch) {
            Ok(Some(found)) => Some(found),
            Ok(None) => None,
            Err(why) => {
                return Err(StoreError::Uncovered {
                    path: dir.join(SNAPSHOT_FILE),
                    oldest,
                    why,
                });
            }
        }
    } else {
        None
    };
    let loaded = match store.read_segments(&found, &mut last, snapshot.as_ref().map(|s| &s.0)) {
        Ok(loaded) => loaded,
        Err(LoadError::Snapshot(why)) => {
            return Err(StoreError::Uncovered {
                path: dir.join(SNAPSHOT_FILE),
                oldest,
                why,
            });
        }
        Err(LoadError::Store(e)) => return Err(e),
    };
    Ok(ReadBack {
        events: loaded.events,
        snapshot: snapshot.map(|(h, payload)| SavedSnapshot {
            seq: h.seq,
            payload,
        }),
        torn: loaded.torn.map(|(at, _)| at),
        path: last_path,
    })
}

/// What [`repair`] did.
#[derive(Debug)]
pub struct Repair {
    pub scan: Scan,
    /// Where the original was saved; `None` when the log was clean and nothing was done.
    pub saved_copy: Option<PathBuf>,
}

/// Cuts the log in `dir` at its first damage, after saving the whole original aside. Takes the
/// log directory's lock, so it never runs beside a server.
pub fn repair(dir: &Path) -> Result<Repair, StoreError> {
    let _lock = lock(dir)?;
    let (base, path) = last_segment(dir)?;
    let err = io_error(&path);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(&err)?;
    let mut image = Vec::new();
    file.read_to_end(&mut image).map_err(&err)?;
    let scan = scan_from(&image, base);
    let Some(found) = &scan.damage else {
        return Ok(Repair {
            scan,
            saved_copy: None,
        });
    };
    let copy = save_aside(&path, found.offset, &image)?;
    file.set_len(found.offset as u64)
        .and_then(|()| file.sync_all())
        .map_err(&err)?;
    // Records were dropped: cursors past the cut would name other events from now on.
    write_epoch(dir, Epoch::random())?;
    Ok(Repair {
        scan,
        saved_copy: Some(copy),
    })
}

/// The embedded default: the log in a directory, as segment files (`events.log`, then
/// `events-<first seq>.log`, see [`segment_path`]).
pub struct FileStore {
    dir: PathBuf,
    /// The segment appended to.
    path: PathBuf,
    file: Option<File>,
    /// Held while the store lives: the advisory lock on the log directory.
    lock: Option<File>,
    buf: Vec<u8>,
    /// The sizes of the records in `buf`.
    sizes: Vec<usize>,
    reader: Option<Arc<FileReader>>,
    /// Roll to a new segment once the current one holds this many bytes.
    segment_bytes: u64,
}

/// What reading the segments found, before anything is cut.
struct Loaded {
    events: Vec<Event>,
    segments: Vec<Segment>,
    ends: std::collections::VecDeque<(u64, u64, u64)>,
    /// Damage proven to be a torn tail of the last segment: where to cut it, and why.
    torn: Option<(u64, Damage)>,
}

/// Why reading the segments stopped: a doubt about the snapshot (read again without it), or
/// an answer for the caller.
enum LoadError {
    Snapshot(String),
    Store(StoreError),
}

impl From<StoreError> for LoadError {
    fn from(e: StoreError) -> LoadError {
        LoadError::Store(e)
    }
}

impl FileStore {
    pub fn new(dir: &Path) -> FileStore {
        FileStore {
            dir: dir.to_path_buf(),
            path: dir.join(LOG_FILE),
            file: None,
            lock: None,
            buf: Vec::new(),
            sizes: Vec::new(),
            reader: None,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
        }
    }

    /// Rolls to a new segment once the current one holds `bytes` bytes (at least one record
    /// per segment).
    pub fn segment_bytes(mut self, bytes: u64) -> FileStore {
        self.segment_bytes = bytes.max(1);
        self
    }

    /// The segment appended to (`events.log` until the log first rolls).
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, source: std::io::Error) -> StoreError {
        StoreError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// Opens the last segment for appending, or, when that is refused, for reading only (with
    /// why).
    fn open(&self) -> Result<(File, Option<String>), StoreError> {
        let dir = self.dir.as_path();
        let existed = self.path.exists();
        match OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&self.path)
        {
            Ok(file) => {
                if !existed {
                    fsync_dir(dir).map_err(io_error(dir))?;
                }
                Ok((file, None))
            }
            Err(write_error) => {
                let why = format!(
                    "{}: cannot be opened for writing: {write_error}",
                    self.path.display()
                );
                // Not even readable: report why it could not be opened for writing.
                let file = File::open(&self.path).map_err(|_| self.io(write_error))?;
                Ok((file, Some(why)))
            }
        }
    }

    /// Reads every segment: those the snapshot covers are checked (lengths and checksums, no
    /// decoding) and indexed, the rest decoded. Only the last segment may end torn.
    fn read_segments(
        &self,
        found: &[(u64, PathBuf)],
        last: &mut File,
        snapshot: Option<&SnapshotHeader>,
    ) -> Result<Loaded, LoadError> {
        // Where the record after the snapshot is: its segment and offset.
        let at = match snapshot {
            None => None,
            Some(h) => {
                let i = found
                    .partition_point(|(base, _)| *base <= h.seq + 1)
                    .checked_sub(1)
                    .ok_or_else(|| {
                        LoadError::Snapshot(format!("taken at seq {}, before the log", h.seq))
                    })?;
                let base = found[i].0;
                let offset = if base == h.segment {
                    h.offset
                } else if base == h.seq + 1 {
                    0
                } else {
                    return Err(LoadError::Snapshot(format!(
                        "its segment (seq {}) is not in the log",
                        h.segment
                    )));
                };
                Some((base, offset, h.seq + 1))
            }
        };
        if at.is_none() && found[0].0 > 1 {
            return Err(LoadError::Store(StoreError::Uncovered {
                path: found[0].1.clone(),
                oldest: found[0].0,
                why: "there is none".into(),
            }));
        }
        let mut loaded = Loaded {
            events: Vec::new(),
            segments: Vec::new(),
            ends: std::collections::VecDeque::new(),
            torn: None,
        };
        let mut next = found[0].0;
        for (i, (base, path)) in found.iter().enumerate() {
            let is_last = i + 1 == found.len();
            let io = |source| StoreError::Io {
                path: path.clone(),
                source,
            };
            if *base != next {
                return Err(LoadError::Store(StoreError::Damaged {
                    path: path.clone(),
                    offset: 0,
                    kind: format!(
                        "segment starts at seq {base} but the one before ends at seq {}",
                        next - 1
                    ),
                    before: (next - found[0].0) as usize,
                    after: 0,
                }));
            }
            let mut opened;
            let file: &mut File = if is_last {
                &mut *last
            } else {
                opened = File::open(path).map_err(io)?;
                &mut opened
            };
            let len = file.metadata().map_err(io)?.len();
            // Checked without decoding up to `start`; decoded from there.
            let (mut index, start, first) = match at {
                Some((at_base, offset, after)) if *base == at_base => {
                    if offset > len {
                        return Err(LoadError::Snapshot(format!(
                            "taken at byte {offset} of a segment of {len} bytes"
                        )));
                    }
                    let (index, seq) =
                        check_prefix(file, *base, offset).map_err(LoadError::Snapshot)?;
                    if seq != after {
                        return Err(LoadError::Snapshot(format!(
                            "{} records before its offset, not {}",
                            seq - base,
                            after - base
                        )));
                    }
                    loaded.ends.push_back((after - 1, *base, offset));
                    (index, offset, after)
                }
                Some((at_base, _, _)) if *base < at_base => {
                    let (index, seq) =
                        check_prefix(file, *base, len).map_err(LoadError::Snapshot)?;
                    loaded.segments.push(Segment {
                        base: *base,
                        path: path.clone(),
                        index,
                        end: len,
                    });
                    next = seq;
                    continue;
                }
                _ => (Vec::new(), 0, *base),
            };
            let mut image = Vec::new();
            file.seek(SeekFrom::Start(start))
                .and_then(|_| file.read_to_end(&mut image))
                .map_err(io)?;
            let scan = scan_from(&image, first);
            let mut good = image.len() as u64;
            if let Some(damage) = scan.damage {
                good = damage.offset as u64;
                if !is_last || !damage.torn_tail() {
                    // Acknowledged records follow: keep every byte and let the operator decide.
                    return Err(LoadError::Store(StoreError::Damaged {
                        path: path.clone(),
                        offset: start + good,
                        kind: format!("{:?}", damage.kind),
                        before: (first - found[0].0) as usize + scan.events.len(),
                        after: damage.intact_after,
                    }));
                }
                loaded.torn = Some((start + good, damage.kind));
            }
            // Record boundaries from the headers alone: the part read decoded cleanly.
            let (mut off, mut seq) = (0usize, first);
            while (off as u64) < good && off + HEADER <= image.len() {
                if (seq - base) % INDEX_EVERY == 0 {
                    index.push((seq, start + off as u64));
                }
                let len = u32::from_le_bytes([
                    image[off],
                    image[off + 1],
                    image[off + 2],
                    image[off + 3],
                ]);
                off += HEADER + len as usize;
                loaded.ends.push_back((seq, *base, start + off as u64));
                seq += 1;
            }
            let over = loaded.ends.len().saturating_sub(TAIL_EVENTS);
            loaded.ends.drain(..over);
            next = scan.events.last().map_or(first, |e| e.seq + 1);
            loaded.events.extend(scan.events);
            loaded.segments.push(Segment {
                base: *base,
                path: path.clone(),
                index,
                end: start + good,
            });
        }
        Ok(loaded)
    }
}

impl Store for FileStore {
    fn load(&mut self) -> Result<Recovered, StoreError> {
        let dir = self.dir.clone();
        create_dirs(&dir).map_err(io_error(&dir))?;
        self.lock = lock(&dir)?;
        let mut found = segments(&dir).map_err(io_error(&dir))?;
        if found.is_empty() {
            found.push((1, dir.join(LOG_FILE)));
        }
        self.path = found[found.len() - 1].1.clone();
        let (mut file, read_only) = self.open()?;
        let mut total = 0;
        for (_, path) in &found {
            total += std::fs::metadata(path).map_err(io_error(path))?.len();
        }
        let epoch = epoch_of(&dir, total == 0 && found[0].0 == 1, read_only.is_none())?;
        // With a snapshot of this history, only the records after it are decoded; those before
        // it are checked (lengths and checksums, no decoding) and indexed. Any doubt about them
        // and the whole log is read as without a snapshot, so damage is found as before (a
        // compacted log has no such fallback: it needs its snapshot).
        let mut snapshot = match read_snapshot(&dir, epoch) {
            Ok(found) => found,
            Err(why) => {
                if found[0].0 > 1 {
                    return Err(StoreError::Uncovered {
                        path: dir.join(SNAPSHOT_FILE),
                        oldest: found[0].0,
                        why,
                    });
                }
                tracing::warn!(reason = %why, "snapshot not used; reading the whole event log");
                None
            }
        };
        let loaded = match self.read_segments(&found, &mut file, snapshot.as_ref().map(|s| &s.0)) {
            Ok(loaded) => loaded,
            Err(LoadError::Snapshot(why)) if found[0].0 == 1 => {
                tracing::warn!(reason = %why, "snapshot not used; reading the whole event log");
                snapshot = None;
                match self.read_segments(&found, &mut file, None) {
                    Ok(loaded) => loaded,
                    // Read without a snapshot, no answer doubts one; said as the outer arm
                    // does rather than a panic on a start-up path.
                    Err(LoadError::Snapshot(why)) => {
                        self.lock = None;
                        return Err(StoreError::Uncovered {
                            path: dir.join(SNAPSHOT_FILE),
                            oldest: found[0].0,
                            why,
                        });
                    }
                    Err(LoadError::Store(e)) => {
                        self.lock = None;
                        return Err(e);
                    }
                }
            }
            Err(LoadError::Snapshot(why)) => {
                self.lock = None;
                return Err(StoreError::Uncovered {
                    path: dir.join(SNAPSHOT_FILE),
                    oldest: found[0].0,
                    why,
                });
            }
            Err(LoadError::Store(e)) => {
                self.lock = None;
                return Err(e);
            }
        };
        let snapshot_seq = snapshot.as_ref().map_or(0, |(h, _)| h.seq);
        let oldest = found[0].0;
        let head = loaded
            .events
            .last()
            .map(|e| e.seq)
            .unwrap_or_else(|| snapshot_seq.max(oldest - 1));
        let mut recovered = Recovered {
            events: loaded.events,
            epoch,
            snapshot: snapshot.map(|(h, payload)| SavedSnapshot {
                seq: h.seq,
                payload,
            }),
            read_only,
            ..Recovered::default()
        };
        let mut segments_read = loaded.segments;
        if let Some((good, kind)) = loaded.torn {
            let len = file.metadata().map_err(|e| self.io(e))?.len();
            recovered.dropped_bytes = len - good;
            recovered.reason = Some(format!(
                "{kind:?} at byte {good} of {}",
                self.path.display()
            ));
            if recovered.read_only.is_none() {
                if kind != Damage::Torn {
                    // A full-length record that fails its checks may have been acknowledged
                    // and then rotted: keep the original for the operator.
                    let whole = std::fs::read(&self.path).map_err(|e| self.io(e))?;
                    recovered.saved_copy = Some(save_aside(&self.path, good as usize, &whole)?);
                }
                file.set_len(good).map_err(|e| self.io(e))?;
                file.sync_all().map_err(|e| self.io(e))?;
            }
        }
        file.seek(SeekFrom::End(0)).map_err(|e| self.io(e))?;
        self.file = Some(file);
        if let Some(last) = segments_read.last_mut() {
            last.index.retain(|(seq, _)| *seq <= head);
        }
        let tail_from = recovered.events.len().saturating_sub(TAIL_EVENTS);
        self.reader = Some(Arc::new(FileReader {
            dir,
            epoch,
            segments: Mutex::new(Segments {
                list: segments_read,
                snapshot: snapshot_seq,
            }),
            tail: Mutex::new(Tail {
                events: recovered.events[tail_from..].iter().cloned().collect(),
                ends: loaded.ends,
                head,
                closed: false,
            }),
            appended: std::sync::Condvar::new(),
        }));
        Ok(recovered)
    }

    fn append(&mut self, after: u64, events: &[Event]) -> Result<(), StoreError> {
        let Some(reader) = self.reader.clone() else {
            return Err(self.io(std::io::Error::other("log not opened")));
        };
        // One writer per log (the directory lock), so this only catches a caller's mistake.
        let head = reader.position_now().head;
        let follows = events
            .iter()
            .enumerate()
            .all(|(i, e)| e.seq == after + 1 + i as u64);
        if head != after || !follows {
            return Err(StoreError::Conflict { head });
        }
        self.buf.clear();
        self.sizes.clear();
        for e in events {
            // Nothing is written unless every record of the batch can be read back.
            let before = self.buf.len();
            encode(e, &mut self.buf).map_err(|why| StoreError::Record { seq: e.seq, why })?;
            self.sizes.push(self.buf.len() - before);
        }
        let Some(file) = self.file.as_mut() else {
            return Err(self.io(std::io::Error::other("log not opened")));
        };
        let result = file
            .stream_position()
            .and_then(|at| file.write_all(&self.buf).map(|()| at))
            .and_then(|at| file.sync_data().map(|()| at));
        let at = result.map_err(|e| self.io(e))?;
        reader.appended(events, &self.sizes, at);
        if at + self.buf.len() as u64 >= self.segment_bytes {
            let base = after + events.len() as u64 + 1;
            if let Err(e) = self.roll(&reader, base) {
                // The append is durable; the log stays in this segment and rolls later.
                tracing::warn!(error = %e, "the event log could not roll to a new segment");
            }
        }
        Ok(())
    }

    fn reader(&self) -> Arc<dyn Reader> {
        match &self.reader {
            Some(reader) => Arc::clone(reader) as Arc<dyn Reader>,
            None => Arc::new(crate::log::memstore::Closed),
        }
    }
}

impl FileStore {
    /// Starts segment `base` (empty, made durable with its directory entry) and appends there
    /// from now on. A crash right after leaves an empty last segment: a log that loads.
    fn roll(&mut self, reader: &FileReader, base: u64) -> Result<(), StoreError> {
        let path = segment_path(&self.dir, base);
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create_new(true)
            .open(&path)
            .map_err(io_error(&path))?;
        fsync_dir(&self.dir).map_err(io_error(&self.dir))?;
        self.file = Some(file);
        self.path = path.clone();
        reader.rolled(base, path);
        Ok(())
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    thread_local! {
        /// The directories `fsync_dir` synced on this thread: the seam that makes a missing
        /// directory fsync visible to a test.
        pub static SYNCED_DIRS: RefCell<Vec<PathBuf>> = const { RefCell::new(Vec::new()) };
    }

    use crate::log::event::sample as event;

    #[test]
    fn history_reads_back_any_range_across_appends_and_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let n = 3 * INDEX_EVERY + 5;
        let check = |reader: &FileReader, head: u64| {
            for (after, until, max) in [
                (0, head, usize::MAX),
                (0, 3, usize::MAX),
                (INDEX_EVERY - 1, INDEX_EVERY + 2, usize::MAX),
                (INDEX_EVERY, head, 7),
                (2 * INDEX_EVERY + 17, head, usize::MAX),
                (head - 1, head, usize::MAX),
                (head, head, usize::MAX),
            ] {
                let want: Vec<u64> = (after + 1..=until).take(max).collect();
                // From the file, and through the trait (the newest from memory).
                let got: Vec<u64> = reader
                    .read_file(after, until, max)
                    .unwrap()
                    .iter()
                    .map(|e| e.seq)
                    .collect();
                assert_eq!(got, want, "file: after {after} until {until} max {max}");
                let got: Vec<u64> = Reader::read(reader, reader.epoch, after, until, max)
                    .unwrap()
                    .iter()
                    .map(|e| e.seq)
                    .collect();
                assert_eq!(got, want, "reader: after {after} until {until} max {max}");
            }
        };
        {
            let mut store = FileStore::new(dir.path());
            store.load().unwrap();
            // Batches of uneven sizes, so index points fall inside batches.
            let mut seq = 1;
            for size in [1, 300, 2, 450, 20].iter().cycle() {
                let batch: Vec<Event> = (seq..(seq + size).min(n + 1)).map(event).collect();
                if batch.is_empty() {
                    break;
                }
                seq += batch.len() as u64;
                store.append(batch[0].seq - 1, &batch).unwrap();
            }
            check(store.reader.as_ref().unwrap(), n);
        }
        // The index is rebuilt from the file at the next start.
        let mut store = FileStore::new(dir.path());
        assert_eq!(store.load().unwrap().events.len() as u64, n);
        check(store.reader.as_ref().unwrap(), n);
    }

    #[test]
    fn compaction_deletes_only_whole_segments_a_snapshot_covers() {
        let dir = tempfile::tempdir().unwrap();
        // A segment per record: the log rolls after every append.
        let mut store = FileStore::new(dir.path()).segment_bytes(1);
        store.load().unwrap();
        for seq in 1..=10 {
            store.append(seq - 1, &[event(seq)]).unwrap();
        }
        let reader = store.reader.clone().unwrap();
        assert_eq!(
            segments(dir.path()).unwrap().len(),
            11,
            "ten full, one empty"
        );
        // Without a snapshot nothing goes, whatever is asked.
        assert_eq!(reader.compact(8).unwrap(), 1);
        assert!(dir.path().join(LOG_FILE).exists());
        assert!(reader.save_snapshot(reader.epoch, 5, b"{}").unwrap());
        // Lowered to the snapshot's seq: 1..=5 go, whole segments, oldest first.
        assert_eq!(reader.compact(8).unwrap(), 6);
        assert_eq!(segments(dir.path()).unwrap()[0].0, 6);
        match Reader::read(reader.as_ref(), reader.epoch, 0, 10, 100) {
            Err(StoreError::Compacted { oldest: 6 }) => {}
            other => panic!("{other:?}"),
        }
        let got: Vec<u64> = Reader::read(reader.as_ref(), reader.epoch, 5, 10, 100)
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(got, (6..=10).collect::<Vec<_>>());
        drop((store, reader));
        // A start reads the snapshot and the segments after it, and knows where the log starts.
        let mut store = FileStore::new(dir.path()).segment_bytes(1);
        let recovered = store.load().unwrap();
        assert_eq!(recovered.snapshot.map(|s| s.seq), Some(5));
        assert_eq!(
            recovered.events.iter().map(|e| e.seq).collect::<Vec<_>>(),
            (6..=10).collect::<Vec<_>>()
        );
        assert_eq!(store.reader().oldest(), 6);
        store.append(10, &[event(11)]).unwrap();
        drop(store);
        // Without its snapshot a compacted log cannot be rebuilt: refused, nothing changed.
        std::fs::remove_file(dir.path().join(SNAPSHOT_FILE)).unwrap();
        match FileStore::new(dir.path()).load() {
            Err(StoreError::Uncovered { oldest: 6, .. }) => {}
            other => panic!("{other:?}"),
        }
        assert_eq!(segments(dir.path()).unwrap()[0].0, 6);
    }

    #[test]
    fn round_trip_and_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = FileStore::new(dir.path());
        assert!(store.load().unwrap().events.is_empty());
        store.append(0, &[event(1), event(2)]).unwrap();
        store.append(2, &[event(3)]).unwrap();
        let log = store.path().to_path_buf();
        let full = std::fs::read(&log).unwrap();
        // The lock is per open file: a second store on the directory waits for this one.
        drop(store);
        let last_start = {
            let mut v = Vec::new();
            encode(&event(1), &mut v).unwrap();
            encode(&event(2), &mut v).unwrap();
            v.len()
        };
        for cut in last_start..full.len() {
            std::fs::write(&log, &full[..cut]).unwrap();
            let mut s = FileStore::new(dir.path());
            let r = s.load().unwrap();
            assert_eq!(r.events.len(), 2, "cut at {cut}");
            assert_eq!(r.dropped_bytes as usize, cut - last_start);
            assert!(r.saved_copy.is_none());
            // Appending continues cleanly after the repair.
            s.append(2, &[event(3)]).unwrap();
            drop(s);
            assert_eq!(FileStore::new(dir.path()).load().unwrap().events.len(), 3);
        }
    }

    #[test]
    fn checksum_damage_in_the_middle_is_refused_and_kept_whole() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = FileStore::new(dir.path());
        store.load().unwrap();
        store.append(0, &[event(1), event(2), event(3)]).unwrap();
        drop(store);
        let mut image = std::fs::read(dir.path().join(LOG_FILE)).unwrap();
        let mut first = Vec::new();
        encode(&event(1), &mut first).unwrap();
        image[first.len() + HEADER + 3] ^= 0xff; // inside record 2's payload
        std::fs::write(dir.path().join(LOG_FILE), &image).unwrap();
        match FileStore::new(dir.path()).load() {
            Err(StoreError::Damaged {
                offset,
                kind,
                before,
                after,
                ..
            }) => {
                assert_eq!((offset as usize, before, after), (first.len(), 1, 1));
                assert_eq!(kind, "Checksum");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(std::fs::read(dir.path().join(LOG_FILE)).unwrap(), image);
    }

    /// A log of events 1..=n and where each record starts.
    fn log_of(dir: &Path, n: u64) -> (Vec<u8>, Vec<usize>) {
        let mut store = FileStore::new(dir);
        store.load().unwrap();
        let events: Vec<Event> = (1..=n).map(event).collect();
        store.append(events[0].seq - 1, &events).unwrap();
        let image = std::fs::read(store.path()).unwrap();
        let mut starts = vec![0];
        let mut at = 0;
        while at < image.len() {
            at += decode(&image[at..]).unwrap().1;
            starts.push(at);
        }
        starts.pop();
        (image, starts)
    }

    fn copies(dir: &Path) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().contains(".damaged-"))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_flipped_length_bit_in_the_middle_keeps_every_byte_and_refuses_to_open() {
        let dir = tempfile::tempdir().unwrap();
        let (mut image, starts) = log_of(dir.path(), 5);
        // A flipped high bit in record 3's length field: its end, and so record 4's start, is
        // lost, but records 4 and 5 are intact (acknowledged publishes).
        image[starts[2] + 2] ^= 0x01;
        let path = dir.path().join(LOG_FILE);
        std::fs::write(&path, &image).unwrap();
        let err = FileStore::new(dir.path()).load().unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains(&format!("at byte {}", starts[2])),
            "{message}"
        );
        assert!(message.contains("livefeed log repair"), "{message}");
        assert_eq!(std::fs::read(&path).unwrap(), image, "not one byte cut");
        assert!(copies(dir.path()).is_empty());
        // The scan names what follows the damage.
        let found = scan(&image).damage.unwrap();
        assert_eq!(found.offset, starts[2]);
        assert_eq!(found.next_intact, Some(starts[3]));
        assert_eq!((found.intact_after, found.seqs_after), (2, Some((4, 5))));
        assert!(!found.torn_tail());
    }

    #[test]
    fn repair_saves_the_original_then_cuts_and_reports_what_it_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let (mut image, starts) = log_of(dir.path(), 5);
        image[starts[1] + HEADER + 3] ^= 0xff;
        let path = dir.path().join(LOG_FILE);
        std::fs::write(&path, &image).unwrap();
        let done = repair(dir.path()).unwrap();
        let copy = done.saved_copy.unwrap();
        assert_eq!(std::fs::read(&copy).unwrap(), image);
        assert_eq!(std::fs::read(&path).unwrap(), &image[..starts[1]]);
        let found = done.scan.damage.unwrap();
        assert_eq!(found.kind, Damage::Checksum);
        assert_eq!((found.intact_after, found.seqs_after), (3, Some((3, 5))));
        // Clean now: it opens, and a second repair does nothing.
        assert_eq!(FileStore::new(dir.path()).load().unwrap().events.len(), 1);
        assert!(repair(dir.path()).unwrap().saved_copy.is_none());
    }

    #[test]
    fn a_second_damage_at_the_same_offset_never_replaces_the_first_copy() {
        let dir = tempfile::tempdir().unwrap();
        let (image, starts) = log_of(dir.path(), 3);
        let path = dir.path().join(LOG_FILE);
        let mut saved = Vec::new();
        for flip in [0x01u8, 0x02] {
            // Damage inside the last record's payload (a full-length record: a copy is kept).
            let mut damaged = image.clone();
            damaged[starts[2] + HEADER + 3] ^= flip;
            std::fs::write(&path, &damaged).unwrap();
            FileStore::new(dir.path()).load().unwrap();
            saved.push(damaged);
        }
        let found = copies(dir.path());
        assert_eq!(found.len(), 2, "{found:?}");
        let contents: Vec<Vec<u8>> = found.iter().map(|p| std::fs::read(p).unwrap()).collect();
        assert!(contents.contains(&saved[0]) && contents.contains(&saved[1]));
    }

    #[test]
    fn creating_the_log_fsyncs_every_directory_it_made_a_name_in() {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("data");
        let log = data.join("log");
        SYNCED_DIRS.with(|s| s.borrow_mut().clear());
        FileStore::new(&log).load().unwrap();
        let synced = SYNCED_DIRS.with(|s| s.borrow().clone());
        // `data` made in the root, `log` in `data`, `events.log` in `log`.
        for dir in [root.path(), &data, &log] {
            assert!(synced.iter().any(|d| d == dir), "{dir:?} not in {synced:?}");
        }
        // A copy saved aside is a new name too.
        let (mut image, starts) = log_of(&root.path().join("other"), 2);
        image[starts[0] + HEADER + 1] ^= 0x10;
        let other = root.path().join("other");
        std::fs::write(other.join(LOG_FILE), &image).unwrap();
        SYNCED_DIRS.with(|s| s.borrow_mut().clear());
        repair(&other).unwrap();
        let synced = SYNCED_DIRS.with(|s| s.borrow().clone());
        assert!(synced.contains(&other), "{synced:?}");
    }

    #[test]
    fn a_second_store_on_one_directory_is_refused_naming_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let mut first = FileStore::new(dir.path());
        first.load().unwrap();
        let err = FileStore::new(dir.path()).load().unwrap_err();
        let pid = std::process::id().to_string();
        assert!(err.to_string().contains(&format!("pid {pid}")), "{err}");
        assert!(repair(dir.path()).is_err(), "repair takes the same lock");
        drop(first);
        FileStore::new(dir.path()).load().unwrap();
    }
}
