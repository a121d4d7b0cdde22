//! The event log in Redis Streams: several relay nodes share one log.
//!
//! Keys share one hash tag, the prefix (`{livefeed}` by default), so a Redis Cluster keeps them
//! in one slot and the scripts may touch them all:
//!
//! - `{p}:events`: the stream; entry `<seq>-0` holds field `e`, the event's JSON (the payload a
//!   file log record holds).
//! - `{p}:epoch`: the log's [`Epoch`] in hex, made with the log (`SET NX`). When the stream
//!   outlives it (a `FLUSHALL` between the two, a partial restore) or both are gone, the first
//!   node to look makes a new one, and every node sees the history as replaced.
//! - `{p}:key:<idempotency key>`: the seq the key was first published as, for 24 hours.
//! - `{p}:snapshot`: a hash (`epoch`, `seq`, `payload`), the newest snapshot of the stories
//!   any node kept (written by a script, so whole or not at all, and only while its epoch is
//!   the log's and its seq in the stream). With `--keep-events`, the stream is then trimmed
//!   (`XTRIM MINID`) to what lies `--keep-events` behind the snapshot, never past it and never
//!   the head (so the head a node sees never goes back for a trim, and is never taken for lost
//!   events); a node starting, or rebuilding after an epoch change, reads the snapshot and the
//!   stream after it. When an epoch is replaced the snapshot follows it if the stream still
//!   holds its seq, and is dropped otherwise.
//!
//! An append is one Lua script, so it is atomic: the epoch must be the writer's, the stream's
//! last id must be `after` (else a conflict: another node appended first) and no idempotency
//! key of the batch may be recorded already with its event in the stream (also a conflict: the
//! writer catches up, finds the key in what it read and answers the first result; a key whose
//! event the stream does not hold is stale and taken over, or it would refuse its publish
//! forever); then every event is added with its
//! explicit id and every key recorded. Followers wait with `XREAD BLOCK` on a dedicated
//! connection (no Pub/Sub: the stream itself is what is followed, so nothing is lost while a
//! connection is down) and read with `XRANGE`.
//!
//! Any failure to reach Redis, or a refusal from it (`LOADING` after a restart, `OOM`,
//! `READONLY`), is [`StoreError::Unavailable`]: publishes are answered 503 with `Retry-After`
//! and the next call connects again, so nodes resume on their own.
//!
//! Durability is Redis's: an acknowledged publish survives a Redis crash only with
//! `appendonly yes` and `appendfsync always`; anything less is warned about at start and in
//! `/healthz` (with `everysec`, the default, up to a second of acknowledged publishes can be lost).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use redis::{Connection, RedisError, Script, Value};

use super::event::Event;
use super::store::{Epoch, Position, Reader, Recovered, SavedSnapshot, Store, StoreError};

/// How long the idempotency keys are kept, in seconds (as the writer remembers them).
const KEY_TTL_SECS: u64 = 24 * 60 * 60;
/// How long a connection attempt, and any command but a blocking read, may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
/// What a caller is told to wait before trying again after a failure.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// The most entries one `XRANGE` returns: callers read on until they have what they asked.
const PAGE: usize = 4096;
/// The longest one `XREAD BLOCK` lasts, so `close` is noticed soon.
const BLOCK_STEP: Duration = Duration::from_secs(1);
/// How long `WAIT` waits for replicas to confirm an append.
const REPLICA_TIMEOUT_MS: u64 = 2000;

/// Appends a batch: see the module's documentation. KEYS: stream, epoch, then one per
/// idempotency key. ARGV: epoch, after, n, key TTL, key prefix, then n pairs (id, payload),
/// then one seq per key. A conflict on the head answers the head and up to `MISSED` events
/// after `after` (id, payload pairs), so the writer catches up without another round trip. A key is recorded only when its event is: one whose seq holds no event
/// with that key (its history lost, a flush between the two) is stale and taken over.
const APPEND_TEMPLATE: &str = r#"
local epoch = redis.call('GET', KEYS[2])
if epoch ~= ARGV[1] then
  return {'epoch', epoch or ''}
end
local top = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local head = 0
if #top > 0 then
  head = tonumber(string.match(top[1][1], '^(%d+)'))
end
if head ~= tonumber(ARGV[2]) then
  -- What the writer missed, so it catches up without reading: ids and payloads after `after`.
  local out = {'conflict', head}
  if head > tonumber(ARGV[2]) then
    local missed = redis.call('XRANGE', KEYS[1], (tonumber(ARGV[2]) + 1) .. '-0', '+', 'COUNT', MISSED)
    for _, m in ipairs(missed) do
      out[#out + 1] = m[1]
      out[#out + 1] = m[2][2]
    end
  end
  return out
end
local prefix = #ARGV[5]
for j = 3, #KEYS do
  local seq = redis.call('GET', KEYS[j])
  if seq then
    local at = redis.call('XRANGE', KEYS[1], seq .. '-0', seq .. '-0')
    if #at > 0 then
      local ok, event = pcall(cjson.decode, at[1][2][2])
      if not ok or event.idempotency_key == string.sub(KEYS[j], prefix + 1) then
        return {'conflict', head}
      end
    end
  end
end
local n = tonumber(ARGV[3])
for i = 0, n - 1 do
  redis.call('XADD', KEYS[1], ARGV[6 + 2 * i], 'e', ARGV[7 + 2 * i])
end
for j = 3, #KEYS do
  redis.call('SET', KEYS[j], ARGV[6 + 2 * n + j - 3], 'EX', ARGV[4])
end
return {'ok', head + n}
"#;

/// The most events a conflict answer carries (the writer reads on for more).
const MISSED: usize = 1024;

/// [`APPEND_TEMPLATE`] with its constant.
fn append_script() -> String {
    APPEND_TEMPLATE.replace("MISSED", &MISSED.to_string())
}

/// The log's epoch (made from ARGV[1] when there is none, the snapshot following it: see
/// [`FOLLOW_EPOCH`]) and head. KEYS: stream, epoch, snapshot.
const POSITION: &str = r#"
local epoch = redis.call('GET', KEYS[2])
local top = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local head = 0
if #top > 0 then
  head = tonumber(string.match(top[1][1], '^(%d+)'))
end
if not epoch then
  redis.call('SET', KEYS[2], ARGV[1])
  epoch = ARGV[1]
  local seq = redis.call('HGET', KEYS[3], 'seq')
  if seq and tonumber(seq) <= head and tonumber(seq) > 0 then
    redis.call('HSET', KEYS[3], 'epoch', epoch)
  else
    redis.call('DEL', KEYS[3])
  end
end
return {epoch, head}
"#;

/// Keeps a snapshot: KEYS snapshot, epoch, stream; ARGV epoch, seq, payload. Only while the
/// epoch is the log's and the stream holds the seq; a newer one of the same history stays.
/// Returns 1 when the snapshot (or a newer one) is kept, 0 otherwise.
const SAVE_SNAPSHOT: &str = r#"
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return 0
end
local at = redis.call('XRANGE', KEYS[3], ARGV[2] .. '-0', ARGV[2] .. '-0')
if #at == 0 then
  return 0
end
local old = redis.call('HMGET', KEYS[1], 'epoch', 'seq')
if old[1] == ARGV[1] and old[2] and tonumber(old[2]) >= tonumber(ARGV[2]) then
  return 1
end
redis.call('HSET', KEYS[1], 'epoch', ARGV[1], 'seq', ARGV[2], 'payload', ARGV[3])
return 1
"#;

/// Trims the stream: KEYS snapshot, epoch, stream; ARGV epoch, upto. Drops entries up to
/// `upto`, lowered to the snapshot's seq (none: nothing goes) and below the head; returns the
/// oldest seq the stream holds then (0 when the epoch is another).
const COMPACT: &str = r#"
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return 0
end
local top = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', 1)
local head = 0
if #top > 0 then
  head = tonumber(string.match(top[1][1], '^(%d+)'))
end
local snap = redis.call('HMGET', KEYS[1], 'epoch', 'seq')
local upto = tonumber(ARGV[2])
if snap[1] ~= ARGV[1] or not snap[2] then
  upto = 0
elseif tonumber(snap[2]) < upto then
  upto = tonumber(snap[2])
end
if upto >= head then
  upto = head - 1
end
if upto > 0 then
  redis.call('XTRIM', KEYS[3], 'MINID', (upto + 1) .. '-0')
end
local first = redis.call('XRANGE', KEYS[3], '-', '+', 'COUNT', 1)
if #first > 0 then
  return tonumber(string.match(first[1][1], '^(%d+)'))
end
return head + 1
"#;

/// Events `after < seq <= until`, at most ARGV[4], when the epoch is ARGV[1]: `{'ok', payload…}`,
/// `{'epoch', found}`, or `{'gone', oldest}` when the stream was trimmed past `after` (ARGV[5]).
/// KEYS: stream, epoch.
const READ: &str = r#"
local epoch = redis.call('GET', KEYS[2])
if epoch ~= ARGV[1] then
  return {'epoch', epoch or ''}
end
local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
if #first > 0 then
  local oldest = tonumber(string.match(first[1][1], '^(%d+)'))
  if oldest > tonumber(ARGV[5]) + 1 then
    return {'gone', oldest}
  end
end
local out = {'ok'}
local entries = redis.call('XRANGE', KEYS[1], ARGV[2], ARGV[3], 'COUNT', ARGV[4])
for i = 1, #entries do
  out[i + 1] = entries[i][2][2]
end
return out
"#;

/// Replaces the epoch ARGV[1] (or none) with ARGV[2] and returns the epoch now. KEYS: epoch,
/// snapshot, stream. The snapshot follows the new epoch when the stream still holds its seq
/// (what survives of a history is a prefix of it, and the snapshot describes a prefix), and is
/// dropped otherwise.
const REPLACE_EPOCH: &str = r#"
local epoch = redis.call('GET', KEYS[1])
if epoch == ARGV[1] or not epoch then
  redis.call('SET', KEYS[1], ARGV[2])
  local seq = redis.call('HGET', KEYS[2], 'seq')
  if seq and #redis.call('XRANGE', KEYS[3], seq .. '-0', seq .. '-0') > 0 then
    redis.call('HSET', KEYS[2], 'epoch', ARGV[2])
  else
    redis.call('DEL', KEYS[2])
  end
  return ARGV[2]
end
return epoch
"#;

/// Where the log is and how appends are confirmed; shared by the store and its reader.
struct Config {
    client: redis::Client,
    /// Where Redis is, for messages (the URL without a password).
    shown: String,
    stream: String,
    epoch_key: String,
    key_prefix: String,
    snapshot_key: String,
    wait_replicas: u32,
    append: Script,
    position: Script,
    read: Script,
    replace_epoch: Script,
    save_snapshot: Script,
    compact: Script,
}

impl Config {
    fn connect(&self) -> Result<Connection, StoreError> {
        let conn = self
            .client
            .get_connection_with_timeout(COMMAND_TIMEOUT)
            .map_err(|e| self.unavailable(&e))?;
        // The library sets no timeout on an established connection: a Redis that stops
        // answering would hang the writer. Blocking reads raise it for their own call.
        conn.set_read_timeout(Some(COMMAND_TIMEOUT))
            .and_then(|()| conn.set_write_timeout(Some(COMMAND_TIMEOUT)))
            .map_err(|e| self.unavailable(&e))?;
        Ok(conn)
    }

    fn unavailable(&self, e: &RedisError) -> StoreError {
        StoreError::Unavailable {
            reason: format!("Redis at {}: {e}", self.shown),
            retry_after: RETRY_AFTER,
        }
    }

    fn position(&self, conn: &mut Connection) -> Result<Position, StoreError> {
        let (epoch, head): (String, u64) = self
            .position
            .key(&self.stream)
            .key(&self.epoch_key)
            .key(&self.snapshot_key)
            .arg(Epoch::random().to_string())
            .invoke(conn)
            .map_err(|e| self.unavailable(&e))?;
        Ok(Position {
            epoch: self.parse_epoch(&epoch)?,
            head,
        })
    }

    fn parse_epoch(&self, s: &str) -> Result<Epoch, StoreError> {
        s.parse().map_err(|_| StoreError::Unavailable {
            reason: format!(
                "Redis at {}: {} holds {s:?}, not an epoch (16 hex digits); delete the key \
                 and the nodes make a new one",
                self.shown, self.epoch_key
            ),
            retry_after: RETRY_AFTER,
        })
    }

    /// Up to `max` (at most [`PAGE`]) events after `after` up to `until`, from `epoch`'s history.
    fn read(
        &self,
        conn: &mut Connection,
        epoch: Epoch,
        after: u64,
        until: u64,
        max: usize,
    ) -> Result<Vec<Event>, StoreError> {
        if after >= until || max == 0 {
            return Ok(Vec::new());
        }
        let reply: Vec<Value> = self
            .read
            .key(&self.stream)
            .key(&self.epoch_key)
            .arg(epoch.to_string())
            .arg(format!("{}-0", after + 1))
            .arg(format!("{until}-0"))
            .arg(max.min(PAGE))
            .arg(after)
            .invoke(conn)
            .map_err(|e| self.unavailable(&e))?;
        let mut reply = reply.into_iter();
        match reply.next().map(redis::from_redis_value::<String>) {
            Some(Ok(tag)) if tag == "ok" => {}
            Some(Ok(tag)) if tag == "epoch" => {
                let found = reply
                    .next()
                    .and_then(|v| redis::from_redis_value::<String>(v).ok())
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_default();
                return Err(StoreError::EpochChanged {
                    expected: epoch,
                    found,
                });
            }
            Some(Ok(tag)) if tag == "gone" => {
                let oldest = reply
                    .next()
                    .and_then(|v| redis::from_redis_value::<u64>(v).ok())
                    .unwrap_or(after + 2);
                return Err(StoreError::Compacted { oldest });
            }
            other => return Err(self.bad_reply(&format!("{other:?}"))),
        }
        reply
            .map(|v| {
                let bytes: Vec<u8> =
                    redis::from_redis_value(v).map_err(|e| self.bad_reply(&e.to_string()))?;
                serde_json::from_slice::<Event>(&bytes).map_err(|e| StoreError::Unavailable {
                    reason: format!(
                        "Redis at {}: an entry of {} is not an event: {e}",
                        self.shown, self.stream
                    ),
                    retry_after: RETRY_AFTER,
                })
            })
            .collect()
    }

    /// The snapshot kept in Redis, when it is of `epoch`'s history.
    fn snapshot(
        &self,
        conn: &mut Connection,
        epoch: Epoch,
    ) -> Result<Option<SavedSnapshot>, StoreError> {
        let (found, seq, payload): (Option<String>, Option<u64>, Option<Vec<u8>>) =
            redis::cmd("HMGET")
                .arg(&self.snapshot_key)
                .arg("epoch")
                .arg("seq")
                .arg("payload")
                .query(conn)
                .map_err(|e| self.unavailable(&e))?;
        Ok(match (found, seq, payload) {
            (Some(found), Some(seq), Some(payload)) if found == epoch.to_string() => {
                Some(SavedSnapshot { seq, payload })
            }
            _ => None,
        })
    }

    /// The oldest seq the stream holds (the head + 1 when it is empty).
    fn oldest(&self, conn: &mut Connection, head: u64) -> Result<u64, StoreError> {
        let first: Vec<(String, Value)> = redis::cmd("XRANGE")
            .arg(&self.stream)
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(1)
            .query(conn)
            .map_err(|e| self.unavailable(&e))?;
        Ok(first
            .first()
            .and_then(|(id, _)| id.split('-').next()?.parse().ok())
            .unwrap_or(head + 1))
    }

    fn bad_reply(&self, what: &str) -> StoreError {
        StoreError::Unavailable {
            reason: format!("Redis at {}: unexpected reply {what}", self.shown),
            retry_after: RETRY_AFTER,
        }
    }

    /// Redis's durability settings (`CONFIG GET`, which managed services may refuse).
    fn settings(&self, conn: &mut Connection) -> Settings {
        let mut get = |name: &str| -> Result<Option<String>, RedisError> {
            let pairs: Vec<String> = redis::cmd("CONFIG").arg("GET").arg(name).query(conn)?;
            Ok(pairs.get(1).cloned())
        };
        let (only, fsync, policy) = (
            get("appendonly"),
            get("appendfsync"),
            get("maxmemory-policy"),
        );
        match (only, fsync) {
            (Ok(only), Ok(fsync)) => Settings {
                appendonly: only.as_deref() == Some("yes"),
                appendfsync: fsync,
                policy: policy.ok().flatten(),
                refused: None,
            },
            (Err(e), _) | (_, Err(e)) => Settings {
                refused: Some(e.to_string()),
                ..Settings::default()
            },
        }
    }
}

/// What a Redis keeps of an acknowledged append when it crashes, as its settings say.
#[derive(Debug, Default)]
struct Settings {
    appendonly: bool,
    appendfsync: Option<String>,
    policy: Option<String>,
    /// Why `CONFIG GET` was refused, when it was.
    refused: Option<String>,
}

impl Settings {
    /// What these settings lose of acknowledged publishes, one sentence each (said at start,
    /// in `/healthz` and `/metrics`); `local_fsync`: each append waits for Redis's own fsync
    /// (`WAITAOF 1`), so `appendfsync` does not matter.
    fn warnings(&self, shown: &str, local_fsync: bool) -> Vec<String> {
        let mut warnings = Vec::new();
        if let Some(e) = &self.refused {
            warnings.push(format!(
                "Redis at {shown} refuses CONFIG GET ({e}): its durability settings cannot be \
                 checked; acknowledged publishes survive a Redis crash only with appendonly yes \
                 and appendfsync always"
            ));
            return warnings;
        }
        if !self.appendonly {
            warnings.push(format!(
                "Redis at {shown} runs without appendonly yes: acknowledged publishes are lost \
                 on a Redis crash (set appendonly yes and appendfsync always)"
            ));
        } else if self.appendfsync.as_deref() != Some("always") && !local_fsync {
            warnings.push(format!(
                "Redis at {shown} runs with appendfsync {}: up to a second of acknowledged \
                 publishes is lost on a Redis crash (set appendfsync always)",
                self.appendfsync.as_deref().unwrap_or("unknown")
            ));
        }
        if let Some(policy) = self.policy.as_deref().filter(|p| *p != "noeviction") {
            warnings.push(format!(
                "Redis at {shown} has maxmemory-policy {policy}: it may evict the event log; \
                 set noeviction"
            ));
        }
        warnings
    }
}

/// How an append is confirmed beyond Redis's answer to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Confirm {
    /// Redis's answer is the acknowledgement.
    Answer,
    /// `WAIT replicas`: that many replicas received it (Redis before 7.2).
    Wait { replicas: u32 },
    /// `WAITAOF local replicas` (Redis 7.2+): fsynced by Redis itself (`local` = 1) and by
    /// that many replicas.
    WaitAof { local: u32, replicas: u32 },
}

impl Confirm {
    fn choose(version: Option<(u32, u32)>, settings: &Settings, replicas: u32) -> Confirm {
        let waitaof = version.is_some_and(|v| v >= (7, 2));
        let fsyncs_itself = settings.appendfsync.as_deref() == Some("always");
        if waitaof && settings.appendonly {
            let local = u32::from(!fsyncs_itself);
            if local == 0 && replicas == 0 {
                return Confirm::Answer;
            }
            return Confirm::WaitAof { local, replicas };
        }
        if replicas > 0 {
            Confirm::Wait { replicas }
        } else {
            Confirm::Answer
        }
    }
}

/// `major.minor` of a `redis_version:7.0.15` line of `INFO server`.
fn parse_version(info: &str) -> Option<(u32, u32)> {
    let v = info
        .lines()
        .find_map(|l| l.strip_prefix("redis_version:"))?
        .trim();
    let mut parts = v.split('.').map(str::parse::<u32>);
    Some((parts.next()?.ok()?, parts.next()?.ok()?))
}

/// A connection made on first use, and dropped after any failure so the next call connects
/// again.
struct Lazy {
    conn: Mutex<Option<Connection>>,
}

impl Lazy {
    fn new() -> Lazy {
        Lazy {
            conn: Mutex::new(None),
        }
    }

    fn with<T>(
        &self,
        config: &Config,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut guard: MutexGuard<'_, Option<Connection>> =
            self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let conn = match guard.as_mut() {
            Some(conn) => conn,
            None => guard.insert(config.connect()?),
        };
        let result = f(conn);
        if matches!(result, Err(StoreError::Unavailable { .. })) {
            *guard = None;
        }
        result
    }
}

/// The writer's side of a Redis log.
pub struct RedisStore {
    config: Arc<Config>,
    conn: Lazy,
    /// The history this writer decides on: set at load, moved by [`Store::adopt_epoch`].
    epoch: Epoch,
    reader: Option<Arc<RedisReader>>,
    /// How appends are confirmed: chosen at load from Redis's version and settings.
    confirm: Confirm,
    /// What the last conflict answer carried (see [`Store::take_missed`]).
    missed: Vec<Event>,
}

impl RedisStore {
    /// A store on the Redis at `url` (`redis://HOST:PORT[/DB]`), keys under `{prefix}`; each
    /// append waits for `wait_replicas` replicas (`WAIT`) before it is acknowledged.
    pub fn new(url: &str, prefix: &str, wait_replicas: u32) -> Result<RedisStore, StoreError> {
        let client = redis::Client::open(url).map_err(|e| StoreError::Unavailable {
            // Not the URL itself: it may hold a password.
            reason: format!("not a Redis URL: {e}"),
            retry_after: RETRY_AFTER,
        })?;
        let info = client.get_connection_info();
        let shown = format!("{}/{}", info.addr(), info.redis_settings().db());
        let tag = format!("{{{prefix}}}");
        Ok(RedisStore {
            config: Arc::new(Config {
                client,
                shown,
                stream: format!("{tag}:events"),
                epoch_key: format!("{tag}:epoch"),
                key_prefix: format!("{tag}:key:"),
                snapshot_key: format!("{tag}:snapshot"),
                wait_replicas,
                append: Script::new(&append_script()),
                position: Script::new(POSITION),
                read: Script::new(READ),
                replace_epoch: Script::new(REPLACE_EPOCH),
                save_snapshot: Script::new(SAVE_SNAPSHOT),
                compact: Script::new(COMPACT),
            }),
            conn: Lazy::new(),
            epoch: Epoch::default(),
            reader: None,
            confirm: Confirm::Answer,
            missed: Vec::new(),
        })
    }

    /// Redis's version and settings: how appends are confirmed, and what may be lost.
    fn check(&mut self, conn: &mut Connection) -> Vec<String> {
        let info: Option<String> = redis::cmd("INFO").arg("server").query(conn).ok();
        let version = info.as_deref().and_then(parse_version);
        let settings = self.config.settings(conn);
        let replicas = self.config.wait_replicas;
        self.confirm = Confirm::choose(version, &settings, replicas);
        let local_fsync = matches!(self.confirm, Confirm::WaitAof { local: 1, .. });
        tracing::info!(
            redis = %self.config.shown,
            version = ?version,
            confirm = ?self.confirm,
            "event log in Redis"
        );
        if replicas > 0 && matches!(self.confirm, Confirm::Wait { .. }) {
            tracing::info!(
                replicas,
                "this Redis has no WAITAOF (7.2+): appends are acknowledged once {replicas} \
                 replicas received them (WAIT), not once they fsynced them"
            );
        }
        settings.warnings(&self.config.shown, local_fsync)
    }
}

impl Store for RedisStore {
    fn load(&mut self) -> Result<Recovered, StoreError> {
        let config = Arc::clone(&self.config);
        let mut conn = config.connect()?;
        let warnings = self.check(&mut conn);
        let pos = config.position(&mut conn)?;
        for w in &warnings {
            tracing::warn!("{w}");
        }
        // The snapshot kept in Redis, then the stream after it: a trimmed stream holds nothing
        // before it.
        let snapshot = config
            .snapshot(&mut conn, pos.epoch)?
            .filter(|s| s.seq <= pos.head);
        let oldest = config.oldest(&mut conn, pos.head)?;
        let mut after = snapshot.as_ref().map_or(0, |s| s.seq);
        let mut events: Vec<Event> = Vec::new();
        while after < pos.head {
            let more = self.conn.with(&config, |conn| {
                config.read(conn, pos.epoch, after, pos.head, PAGE)
            })?;
            let Some(last) = more.last() else {
                break;
            };
            after = last.seq;
            events.extend(more);
        }
        let head = events
            .last()
            .map(|e| e.seq)
            .or(snapshot.as_ref().map(|s| s.seq))
            .unwrap_or(0);
        self.epoch = pos.epoch;
        self.reader = Some(Arc::new(RedisReader {
            config: Arc::clone(&config),
            commands: Lazy::new(),
            follow: Lazy::new(),
            closed: AtomicBool::new(false),
            seen: Mutex::new(Position {
                epoch: pos.epoch,
                head,
            }),
            oldest: AtomicU64::new(oldest),
        }));
        Ok(Recovered {
            events,
            epoch: pos.epoch,
            snapshot,
            warnings,
            ..Recovered::default()
        })
    }

    fn append(&mut self, after: u64, events: &[Event]) -> Result<(), StoreError> {
        let config = Arc::clone(&self.config);
        let mut payloads = Vec::with_capacity(events.len());
        for e in events {
            let json = serde_json::to_vec(e).map_err(|why| StoreError::Record {
                seq: e.seq,
                why: super::store::RecordError::Json(why.to_string()),
            })?;
            payloads.push(json);
        }
        let epoch = self.epoch;
        let reply: Vec<Value> = self.conn.with(&config, |conn| {
            let mut call = config.append.prepare_invoke();
            call.key(&config.stream).key(&config.epoch_key);
            for e in events {
                if let Some(k) = &e.idempotency_key {
                    call.key(format!("{}{k}", config.key_prefix));
                }
            }
            call.arg(epoch.to_string())
                .arg(after)
                .arg(events.len())
                .arg(KEY_TTL_SECS)
                .arg(&config.key_prefix);
            for (e, payload) in events.iter().zip(&payloads) {
                call.arg(format!("{}-0", e.seq)).arg(payload.as_slice());
            }
            for e in events {
                if e.idempotency_key.is_some() {
                    call.arg(e.seq);
                }
            }
            call.invoke(conn).map_err(|e| config.unavailable(&e))
        })?;
        let tag = reply
            .first()
            .and_then(|v| redis::from_redis_value_ref::<String>(v).ok());
        let value = reply.get(1);
        match tag.as_deref() {
            Some("ok") => {}
            Some("conflict") => {
                let head = value
                    .and_then(|v| redis::from_redis_value_ref::<u64>(v).ok())
                    .unwrap_or(0);
                // Only what follows `after` without a gap; anything else is read as usual.
                self.missed.clear();
                for pair in reply.get(2..).unwrap_or_default().chunks_exact(2) {
                    let id = redis::from_redis_value_ref::<String>(&pair[0]).ok();
                    let event = redis::from_redis_value_ref::<Vec<u8>>(&pair[1])
                        .ok()
                        .and_then(|bytes| serde_json::from_slice::<Event>(&bytes).ok());
                    let next = after + 1 + self.missed.len() as u64;
                    match (id, event) {
                        (Some(id), Some(e)) if id == format!("{next}-0") && e.seq == next => {
                            self.missed.push(e);
                        }
                        _ => break,
                    }
                }
                return Err(StoreError::Conflict { head });
            }
            Some("epoch") => {
                let found = value
                    .and_then(|v| redis::from_redis_value_ref::<String>(v).ok())
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_default();
                return Err(StoreError::EpochChanged {
                    expected: epoch,
                    found,
                });
            }
            _ => return Err(config.bad_reply(&format!("{reply:?}"))),
        }
        // Taken by Redis but not confirmed: not acknowledged. The writer reads the events
        // back at its next catch-up, and a retry with the same key gets the first answer.
        let unconfirmed = |what: String| StoreError::Unavailable {
            reason: format!(
                "Redis at {}: {what} within {REPLICA_TIMEOUT_MS} ms",
                config.shown
            ),
            retry_after: RETRY_AFTER,
        };
        match self.confirm {
            Confirm::Answer => Ok(()),
            Confirm::Wait { replicas } => {
                let acked: u64 = self.conn.with(&config, |conn| {
                    redis::cmd("WAIT")
                        .arg(replicas)
                        .arg(REPLICA_TIMEOUT_MS)
                        .query(conn)
                        .map_err(|e| config.unavailable(&e))
                })?;
                if acked < u64::from(replicas) {
                    return Err(unconfirmed(format!(
                        "{acked} of {replicas} replicas confirmed the append"
                    )));
                }
                Ok(())
            }
            Confirm::WaitAof { local, replicas } => {
                let (fsynced, acked): (u64, u64) = self.conn.with(&config, |conn| {
                    redis::cmd("WAITAOF")
                        .arg(local)
                        .arg(replicas)
                        .arg(REPLICA_TIMEOUT_MS)
                        .query(conn)
                        .map_err(|e| config.unavailable(&e))
                })?;
                if fsynced < u64::from(local) || acked < u64::from(replicas) {
                    return Err(unconfirmed(format!(
                        "the append was fsynced by Redis {fsynced} of {local} and by {acked} of \
                         {replicas} replicas"
                    )));
                }
                Ok(())
            }
        }
    }

    fn reader(&self) -> Arc<dyn Reader> {
        match &self.reader {
            Some(reader) => Arc::clone(reader) as Arc<dyn Reader>,
            None => Arc::new(crate::log::memstore::Closed),
        }
    }

    fn adopt_epoch(&mut self, epoch: Epoch) {
        self.epoch = epoch;
    }

    fn take_missed(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.missed)
    }
}

/// The read side of a Redis log: one connection for reads, one for blocking waits.
pub struct RedisReader {
    config: Arc<Config>,
    commands: Lazy,
    follow: Lazy,
    closed: AtomicBool,
    /// The furthest this node has seen the log go in its epoch.
    seen: Mutex<Position>,
    /// The oldest seq the stream holds, as last seen (at load, a trim, a read refused).
    oldest: AtomicU64,
}

impl RedisReader {
    /// The log's position, checked against what this node has seen: the same epoch with a
    /// lower head is a history that lost events this node may have served (a replica promoted
    /// that missed writes, a restore from an older copy, a crash without `appendfsync
    /// always`), so it gets a new epoch: cursors into the lost events are refused (410), never
    /// answered with other events under the same seqs.
    fn checked(&self, conn: &mut Connection) -> Result<Position, StoreError> {
        // Read under the lock: two reads on two connections could otherwise be compared in
        // the wrong order, and an older answer taken for a head that went back.
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let pos = self.config.position(conn)?;
        if pos.epoch != seen.epoch || pos.head >= seen.head {
            if pos.epoch != seen.epoch {
                // Another history: how far it is trimmed is learnt again by reading it.
                self.oldest.store(1, Ordering::Release);
            }
            *seen = pos;
            return Ok(pos);
        }
        let lost = seen.head;
        let epoch: String = self
            .config
            .replace_epoch
            .key(&self.config.epoch_key)
            .key(&self.config.snapshot_key)
            .key(&self.config.stream)
            .arg(pos.epoch.to_string())
            .arg(Epoch::random().to_string())
            .invoke(conn)
            .map_err(|e| self.config.unavailable(&e))?;
        let now = Position {
            epoch: self.config.parse_epoch(&epoch)?,
            head: pos.head,
        };
        tracing::warn!(
            redis = %self.config.shown,
            seen = lost,
            head = pos.head,
            old_epoch = %pos.epoch,
            new_epoch = %now.epoch,
            "the Redis log lost events this node had seen; it is a new history (new epoch)"
        );
        self.oldest.store(1, Ordering::Release);
        *seen = now;
        Ok(now)
    }
}

impl Reader for RedisReader {
    fn position(&self) -> Result<Position, StoreError> {
        self.commands.with(&self.config, |conn| self.checked(conn))
    }

    fn wait(&self, after: u64, timeout: Duration) -> Result<Position, StoreError> {
        let deadline = std::time::Instant::now() + timeout;
        let config = &self.config;
        self.follow.with(config, |conn| {
            loop {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                if self.closed.load(Ordering::Acquire) || left.is_zero() {
                    return self.checked(conn);
                }
                // BLOCK 0 would wait forever: at least a millisecond.
                let block = left.min(BLOCK_STEP).as_millis().max(1) as u64;
                conn.set_read_timeout(Some(COMMAND_TIMEOUT + Duration::from_millis(block)))
                    .map_err(|e| config.unavailable(&e))?;
                let got: Value = redis::cmd("XREAD")
                    .arg("COUNT")
                    .arg(1)
                    .arg("BLOCK")
                    .arg(block)
                    .arg("STREAMS")
                    .arg(&config.stream)
                    .arg(format!("{after}-0"))
                    .query(conn)
                    .map_err(|e| config.unavailable(&e))?;
                conn.set_read_timeout(Some(COMMAND_TIMEOUT))
                    .map_err(|e| config.unavailable(&e))?;
                if !matches!(got, Value::Nil) {
                    return self.checked(conn);
                }
            }
        })
    }

    fn read(
        &self,
        epoch: Epoch,
        after: u64,
        until: u64,
        max: usize,
    ) -> Result<Vec<Event>, StoreError> {
        let read = self.commands.with(&self.config, |conn| {
            self.config.read(conn, epoch, after, until, max)
        });
        if let Err(StoreError::Compacted { oldest }) = &read {
            self.oldest.fetch_max(*oldest, Ordering::AcqRel);
        }
        read
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }

    fn save_snapshot(&self, epoch: Epoch, seq: u64, payload: &[u8]) -> Result<bool, StoreError> {
        let config = &self.config;
        let kept: u32 = self.commands.with(config, |conn| {
            config
                .save_snapshot
                .key(&config.snapshot_key)
                .key(&config.epoch_key)
                .key(&config.stream)
                .arg(epoch.to_string())
                .arg(seq)
                .arg(payload)
                .invoke(conn)
                .map_err(|e| config.unavailable(&e))
        })?;
        Ok(kept == 1)
    }

    fn snapshot(&self, epoch: Epoch) -> Result<Option<SavedSnapshot>, StoreError> {
        self.commands
            .with(&self.config, |conn| self.config.snapshot(conn, epoch))
    }

    fn oldest(&self) -> u64 {
        self.oldest.load(Ordering::Acquire)
    }

    fn compact(&self, upto: u64) -> Result<u64, StoreError> {
        let config = &self.config;
        let epoch = self.seen.lock().unwrap_or_else(|p| p.into_inner()).epoch;
        let oldest: u64 = self.commands.with(config, |conn| {
            config
                .compact
                .key(&config.snapshot_key)
                .key(&config.epoch_key)
                .key(&config.stream)
                .arg(epoch.to_string())
                .arg(upto)
                .invoke(conn)
                .map_err(|e| config.unavailable(&e))
        })?;
        if oldest > 0 {
            self.oldest.fetch_max(oldest, Ordering::AcqRel);
        }
        Ok(self.oldest())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_is_read_from_info_server() {
        let info = "# Server\r\nredis_version:7.0.15\r\nredis_git_sha1:00000000\r\n";
        assert_eq!(parse_version(info), Some((7, 0)));
        assert_eq!(parse_version("redis_version:7.2.4\n"), Some((7, 2)));
        assert_eq!(parse_version("redis_version:x\n"), None);
        assert_eq!(parse_version(""), None);
    }

    #[test]
    fn appends_are_confirmed_by_what_the_server_has() {
        let settings = |fsync: &str| Settings {
            appendonly: true,
            appendfsync: Some(fsync.into()),
            ..Settings::default()
        };
        // 7.0: no WAITAOF; WAIT only for replicas.
        assert_eq!(
            Confirm::choose(Some((7, 0)), &settings("everysec"), 0),
            Confirm::Answer
        );
        assert_eq!(
            Confirm::choose(Some((7, 0)), &settings("always"), 2),
            Confirm::Wait { replicas: 2 }
        );
        // 7.2: WAITAOF makes everysec durable per append, and confirms replicas' fsync.
        assert_eq!(
            Confirm::choose(Some((7, 2)), &settings("everysec"), 0),
            Confirm::WaitAof {
                local: 1,
                replicas: 0
            }
        );
        assert_eq!(
            Confirm::choose(Some((7, 2)), &settings("always"), 0),
            Confirm::Answer
        );
        assert_eq!(
            Confirm::choose(Some((8, 0)), &settings("always"), 1),
            Confirm::WaitAof {
                local: 0,
                replicas: 1
            }
        );
        // everysec is only a warning where nothing fsyncs each append.
        let shown = "127.0.0.1:6379/0";
        assert_eq!(settings("everysec").warnings(shown, false).len(), 1);
        assert!(settings("everysec").warnings(shown, true).is_empty());
        assert!(settings("always").warnings(shown, false).is_empty());
    }
}
