//! Events: what the log stores and every transport relays.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::model::Entry;

/// What happened to an entry, or (`State`) to a story: ended or live again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Create,
    Update,
    Delete,
    /// The story's lifecycle: ended (`Event::ended` set) or live again. Its `entry` is an
    /// empty one naming the story only.
    State,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Create => "create",
            Op::Update => "update",
            Op::Delete => "delete",
            Op::State => "state",
        }
    }
}

/// Where an entry came from: a report file in `data/` (kept in step with the file) or the
/// publishing API (left alone when reports change).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Report,
    Api,
}

/// One event of the log, as stored on disk. `seq` is global, gapless and increasing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub seq: u64,
    pub op: Op,
    pub story: String,
    pub entry: Entry,
    pub source: Source,
    /// The publisher's `Idempotency-Key`, so a retry after a restart still finds its answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// What the key was used for: a fingerprint of the story, method and cleaned body, so the
    /// same key with another request is refused, also after a restart. Absent in older logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_fingerprint: Option<String>,
    /// When the writer made the event; keys expire a fixed time after it. Absent in older logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<DateTime<Utc>>,
    /// For a report entry: the anchor the normaliser gave it, when the relay gave it another
    /// one (the normaliser's was already taken), so re-reads of the report find it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_anchor: Option<String>,
    /// For a `state` event: when the story ended; `None` makes it live again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<DateTime<Utc>>,
}

/// The public form of an event (no source, no key). A `state` event carries the story's
/// `state` (`"ended"` or `"live"`) and `ended` instead of an entry.
#[derive(Serialize)]
struct Wire<'a> {
    seq: u64,
    op: Op,
    story: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    entry: Option<&'a Entry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ended: Option<DateTime<Utc>>,
}

impl Event {
    /// The JSON sent to subscribers, serialised once and shared by every response.
    pub(crate) fn wire_json(&self) -> Bytes {
        let wire = Wire {
            seq: self.seq,
            op: self.op,
            story: &self.story,
            entry: (self.op != Op::State).then_some(&self.entry),
            state: (self.op == Op::State).then_some(match self.ended {
                Some(_) => "ended",
                None => "live",
            }),
            ended: self.ended,
        };
        // A struct of strings, numbers and dates always serialises.
        Bytes::from(serde_json::to_vec(&wire).unwrap_or_default())
    }
}

/// An API create of entry `seq` in story `s`, for unit tests of the log.
#[cfg(test)]
pub(crate) fn sample(seq: u64) -> Event {
    let t = chrono::DateTime::UNIX_EPOCH;
    Event {
        seq,
        op: Op::Create,
        story: "s".into(),
        entry: crate::model::Entry {
            story: "s".into(),
            id: format!("tag:x,2000:s/{seq}"),
            anchor: seq.to_string(),
            title: "t".into(),
            published: t,
            updated: t,
            ..crate::model::Entry::default()
        },
        source: Source::Api,
        idempotency_key: None,
        idempotency_fingerprint: None,
        at: None,
        report_anchor: None,
        ended: None,
    }
}
