//! Durable storage of the event log behind a small trait, with the embedded default: an
//! append-only file of checksummed records.
//!
//! Record layout: `len: u32 LE | crc32(payload): u32 LE | payload` where the payload is the
//! event's JSON. Recovery reads records in order and stops at the first one that is torn
//! (shorter than its length) or fails its checksum or does not continue the `seq` sequence.
//! What follows is cut off; if anything follows the damage, the whole original file is first
//! copied aside (`events.log.damaged-<offset>`) so nothing is silently thrown away.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::event::Event;

/// The largest record accepted when reading (a guard against a corrupt length).
pub const MAX_RECORD: usize = 16 * 1024 * 1024;
const HEADER: usize = 8;

/// Storage failed. The relay stops accepting publishes after one of these.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Where the log lives. `append` must return only once the events are durable.
pub trait Store: Send {
    /// Reads every event, in order, repairing a damaged tail.
    fn load(&mut self) -> Result<Recovered, StoreError>;
    /// Appends events and makes them durable (one sync for the whole batch).
    fn append(&mut self, events: &[Event]) -> Result<(), StoreError>;
}

/// What recovery found.
#[derive(Debug, Default)]
pub struct Recovered {
    pub events: Vec<Event>,
    /// Bytes cut off the end of the log, and why; empty when the log was clean.
    pub dropped_bytes: u64,
    pub reason: Option<String>,
    /// Where the original file was saved when good-looking data followed the damage.
    pub saved_copy: Option<PathBuf>,
}

/// Encodes one record.
pub fn encode(event: &Event, out: &mut Vec<u8>) {
    // An event is plain data; serialisation does not fail.
    let payload = serde_json::to_vec(event).unwrap_or_default();
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
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
    let mut events: Vec<Event> = Vec::new();
    let mut at = 0;
    while at < buf.len() {
        match decode(&buf[at..]) {
            Ok((event, used)) => {
                let expected = events.last().map_or(1, |e| e.seq + 1);
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

/// The embedded default: `events.log` in a directory.
pub struct FileStore {
    path: PathBuf,
    file: Option<File>,
    buf: Vec<u8>,
}

impl FileStore {
    pub fn new(dir: &Path) -> FileStore {
        FileStore {
            path: dir.join("events.log"),
            file: None,
            buf: Vec::new(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, source: std::io::Error) -> StoreError {
        StoreError::Io {
            path: self.path.clone(),
            source,
        }
    }
}

impl Store for FileStore {
    fn load(&mut self) -> Result<Recovered, StoreError> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| self.io(e))?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&self.path)
            .map_err(|e| self.io(e))?;
        let mut image = Vec::new();
        file.read_to_end(&mut image).map_err(|e| self.io(e))?;
        let (events, good, damage) = decode_all(&image);
        let mut recovered = Recovered {
            events,
            ..Recovered::default()
        };
        if let Some(damage) = damage {
            let dropped = (image.len() - good) as u64;
            let torn_tail = damage == Damage::Torn;
            if !torn_tail {
                // Something other than a torn last write: keep the original for the operator.
                let copy = self.path.with_extension(format!("log.damaged-{good}"));
                std::fs::write(&copy, &image).map_err(|e| self.io(e))?;
                recovered.saved_copy = Some(copy);
            }
            file.set_len(good as u64).map_err(|e| self.io(e))?;
            file.sync_all().map_err(|e| self.io(e))?;
            recovered.dropped_bytes = dropped;
            recovered.reason = Some(format!("{damage:?} at byte {good}"));
        }
        file.seek(SeekFrom::End(0)).map_err(|e| self.io(e))?;
        self.file = Some(file);
        Ok(recovered)
    }

    fn append(&mut self, events: &[Event]) -> Result<(), StoreError> {
        self.buf.clear();
        for e in events {
            encode(e, &mut self.buf);
        }
        let Some(file) = self.file.as_mut() else {
            return Err(self.io(std::io::Error::other("log not opened")));
        };
        let result = file.write_all(&self.buf).and_then(|()| file.sync_data());
        result.map_err(|e| self.io(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Entry;
    use crate::relay::event::{Op, Source};

    fn event(seq: u64) -> Event {
        let t = chrono::DateTime::UNIX_EPOCH;
        Event {
            seq,
            op: Op::Create,
            story: "s".into(),
            entry: Entry {
                story: "s".into(),
                id: format!("tag:x,2000:s/{seq}"),
                anchor: seq.to_string(),
                title: "t".into(),
                title_derived: false,
                authors: vec![],
                published: t,
                updated: t,
                time_inferred: false,
                summary: String::new(),
                content_html: String::new(),
                url: String::new(),
                blocks: vec![],
            },
            source: Source::Api,
            idempotency_key: None,
        }
    }

    #[test]
    fn round_trip_and_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = FileStore::new(dir.path());
        assert!(store.load().unwrap().events.is_empty());
        store.append(&[event(1), event(2)]).unwrap();
        store.append(&[event(3)]).unwrap();
        let full = std::fs::read(store.path()).unwrap();
        let last_start = {
            let mut v = Vec::new();
            encode(&event(1), &mut v);
            encode(&event(2), &mut v);
            v.len()
        };
        for cut in last_start..full.len() {
            std::fs::write(store.path(), &full[..cut]).unwrap();
            let mut s = FileStore::new(dir.path());
            let r = s.load().unwrap();
            assert_eq!(r.events.len(), 2, "cut at {cut}");
            assert_eq!(r.dropped_bytes as usize, cut - last_start);
            assert!(r.saved_copy.is_none());
            // Appending continues cleanly after the repair.
            s.append(&[event(3)]).unwrap();
            assert_eq!(FileStore::new(dir.path()).load().unwrap().events.len(), 3);
        }
    }

    #[test]
    fn checksum_damage_in_the_middle_is_saved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = FileStore::new(dir.path());
        store.load().unwrap();
        store.append(&[event(1), event(2), event(3)]).unwrap();
        let mut image = std::fs::read(store.path()).unwrap();
        let mut first = Vec::new();
        encode(&event(1), &mut first);
        image[first.len() + HEADER + 3] ^= 0xff; // inside record 2's payload
        std::fs::write(store.path(), &image).unwrap();
        let r = FileStore::new(dir.path()).load().unwrap();
        assert_eq!(r.events.len(), 1);
        let copy = r.saved_copy.expect("the damaged log is kept");
        assert_eq!(std::fs::read(copy).unwrap(), image);
    }
}
