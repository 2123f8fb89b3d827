//! Acknowledged durability (`queue.durability`): how far a write must have gone before
//! the queue answers success — Redis's memory only (`local`), this Redis's fsynced AOF
//! (`aof`, `WAITAOF 1 0`), or at least one replica (`replica`, `WAIT 1`).
//! docs/architecture.md, "Acknowledged durability", states what each mode survives.
//!
//! `WAIT` and `WAITAOF` cover the writes sent earlier *on the same connection*, so the
//! wait travels in the same pipeline as the write ([`query`]): a connection that breaks
//! and is dialled again in between cannot make a wait on the new connection (which has
//! written nothing) look like success. Both block that connection in Redis until they
//! answer, so durable writes go on a connection of their own ([`DurableWrites`]) and
//! reads never queue behind a wait.
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionLike;
use redis::{FromRedisValue, Value};
use serde::Deserialize;

use super::StoreError;
use crate::redis_conn::{RedisConn, RedisSource, Timeouts};

/// What a write must reach before the queue reports it done.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DurabilityMode {
    /// Redis has applied it (in memory; on disk by its own `appendfsync` policy).
    #[default]
    Local,
    /// This Redis has written and fsynced it to its AOF (`WAITAOF 1 0`; Redis ≥ 7.2,
    /// `appendonly yes`).
    Aof,
    /// At least one replica has acknowledged it (`WAIT 1`).
    Replica,
}

impl DurabilityMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Aof => "aof",
            Self::Replica => "replica",
        }
    }
}

impl std::fmt::Display for DurabilityMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The mode and how long one write may wait for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Durability {
    pub mode: DurabilityMode,
    pub timeout: Duration,
}

impl Durability {
    /// Today's behaviour: success once Redis applied the write.
    pub const LOCAL: Self = Self {
        mode: DurabilityMode::Local,
        timeout: Duration::from_millis(DEFAULT_TIMEOUT_MS),
    };
}

impl Default for Durability {
    fn default() -> Self {
        Self::LOCAL
    }
}

pub(super) const DEFAULT_TIMEOUT_MS: u64 = 1000;

/// A write was applied by Redis but did not reach the configured durability in time.
/// It stays applied: the same request again (same idempotency key) finds it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("written but not yet durable: {mode} wait saw {acked} of 1 within {} ms", timeout.as_millis())]
pub struct NotDurable {
    pub mode: DurabilityMode,
    /// Replicas that acknowledged (`replica`), or local fsyncs (`aof`): 0.
    pub acked: i64,
    pub timeout: Duration,
}

impl Durability {
    /// The command that waits for this mode (none for `local`).
    pub(super) fn wait_command(&self) -> Option<redis::Cmd> {
        self.wait_command_within(self.timeout)
    }

    /// How long a wait capped at `cap` lasts at most.
    pub(super) fn wait_within(&self, cap: Duration) -> Duration {
        self.timeout.min(cap).max(Duration::from_millis(1))
    }

    /// [`Self::wait_command`], waiting at most `cap` (a fetch's, well within its leases:
    /// nothing renews them before the fetch answers).
    pub(super) fn wait_command_within(&self, cap: Duration) -> Option<redis::Cmd> {
        let ms = self.wait_within(cap).as_millis() as u64;
        match self.mode {
            DurabilityMode::Local => None,
            DurabilityMode::Aof => Some(redis::cmd("WAITAOF").arg(1).arg(0).arg(ms).clone()),
            DurabilityMode::Replica => Some(redis::cmd("WAIT").arg(1).arg(ms).clone()),
        }
    }

    fn bad_reply(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError::Protocol(format!("{} wait reply: {e}", self.mode))
    }

    /// Whether the wait's reply says the write got as far as this mode asks.
    pub(super) fn check(&self, reply: Value) -> Result<(), StoreError> {
        self.check_waited(reply, self.timeout)
    }

    /// [`Self::check`] of a wait that lasted at most `waited` (a fetch's, capped).
    pub(super) fn check_waited(&self, reply: Value, waited: Duration) -> Result<(), StoreError> {
        let acked = match self.mode {
            DurabilityMode::Local => return Ok(()),
            DurabilityMode::Replica => i64::from_redis_value(reply).map_err(|e| self.bad_reply(e))?,
            // WAITAOF answers [local fsyncs (0 or 1), replicas fsynced]; we asked for local.
            DurabilityMode::Aof => <(i64, i64)>::from_redis_value(reply).map_err(|e| self.bad_reply(e))?.0,
        };
        if acked >= 1 {
            Ok(())
        } else {
            Err(StoreError::NotDurable(NotDurable {
                mode: self.mode,
                acked,
                timeout: waited,
            }))
        }
    }
}

/// Runs `pipe` (writes) followed, in the same pipeline, by the wait `durability` asks
/// for; the writes' replies as `T` once the wait has succeeded. A wait that falls short
/// is [`StoreError::NotDurable`]: the writes were applied.
pub async fn query<T: FromRedisValue>(
    conn: &mut impl ConnectionLike,
    mut pipe: redis::Pipeline,
    durability: &Durability,
) -> Result<T, StoreError> {
    let Some(wait) = durability.wait_command() else {
        return Ok(pipe.query_async(conn).await?);
    };
    pipe.add_command(wait);
    let mut replies: Vec<Value> = pipe.query_async(conn).await?;
    let wait_reply = replies
        .pop()
        .ok_or_else(|| StoreError::Protocol("no reply to the durability wait".into()))?;
    durability.check(wait_reply)?;
    T::from_redis_value(Value::Array(replies)).map_err(|e| StoreError::Protocol(e.to_string()))
}

/// Waits, on `conn`, until the writes sent on it so far are as durable as `durability`
/// asks. A connection re-dialled since has written nothing and passes at once: the
/// runtime sends a settle again with its wait instead (`runtime::shared`).
pub async fn await_durable(conn: &mut impl ConnectionLike, durability: &Durability) -> Result<(), StoreError> {
    match durability.wait_command() {
        None => Ok(()),
        Some(wait) => durability.check(wait.query_async(conn).await?),
    }
}

/// Whether the Redis behind `conn` can provide `mode`: the refusal names what it found.
pub async fn check_support(conn: &mut impl ConnectionLike, mode: DurabilityMode) -> Result<(), StoreError> {
    if mode != DurabilityMode::Aof {
        // WAIT is as old as replication (2.8); with no replica every write is "not yet durable".
        return Ok(());
    }
    let info: String = redis::cmd("INFO").arg("server").arg("persistence").query_async(conn).await?;
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(':')))
            .map(str::trim)
    };
    let version = field("redis_version").unwrap_or("unknown");
    if !version_at_least(version, (7, 2)) {
        return Err(StoreError::DurabilityUnsupported(format!(
            "queue.durability = aof needs Redis 7.2 or newer (WAITAOF); this Redis is {version}"
        )));
    }
    if field("aof_enabled") != Some("1") {
        return Err(StoreError::DurabilityUnsupported(format!(
            "queue.durability = aof needs appendonly yes; this Redis ({version}) has appendonly off"
        )));
    }
    Ok(())
}

/// Why the Redis behind `conn` keeps nothing on disk (no AOF, no RDB save points), or
/// `None` when it persists or cannot tell (a managed Redis may refuse `CONFIG`).
pub async fn nothing_persisted(conn: &mut impl ConnectionLike) -> Option<String> {
    let info: String = redis::cmd("INFO").arg("persistence").query_async(conn).await.ok()?;
    let aof = info.lines().find_map(|l| l.strip_prefix("aof_enabled:")).map(str::trim);
    if aof != Some("0") {
        return None;
    }
    let save: Vec<String> = redis::cmd("CONFIG").arg("GET").arg("save").query_async(conn).await.ok()?;
    match save.as_slice() {
        [_, points] if points.trim().is_empty() => Some("appendonly is off and there are no RDB save points".into()),
        _ => None,
    }
}

fn version_at_least(version: &str, (major, minor): (u32, u32)) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(a), Some(b)) => (a, b) >= (major, minor),
        _ => false,
    }
}

const UNCHECKED: u8 = 0;
const SUPPORTED: u8 = 1;
const REFUSED: u8 = 2;

/// The store's durable writes: the mode, the connections they (and their waits) use,
/// and whether this Redis was found to support the mode.
#[derive(Clone)]
pub struct DurableWrites {
    durability: Durability,
    conn: RedisConn,
    /// Fetches' own, one a kind: a wait blocks its connection, and a fetch queued behind
    /// enqueues', settles' or another kind's fetch's waits would answer after its leases
    /// had run out.
    fetch_conns: [RedisConn; 3],
    support: Arc<AtomicU8>,
}

impl DurableWrites {
    /// `shared` is the store's connection: `local` writes use it (nothing waits), the
    /// other modes get their own, dialled on first use.
    pub fn new(source: &RedisSource, shared: &RedisConn, durability: Durability) -> Result<Self, StoreError> {
        let dial = || {
            if durability.mode == DurabilityMode::Local {
                Ok(shared.clone())
            } else {
                // Pipelines queue behind each other's waits on this connection: allow a few.
                source.lazy(Timeouts {
                    connect: Duration::from_secs(2),
                    response: Some(Duration::from_secs(5) + durability.timeout * 4),
                })
            }
        };
        Ok(Self {
            durability,
            conn: dial()?,
            fetch_conns: [dial()?, dial()?, dial()?],
            support: Arc::new(AtomicU8::new(if durability.mode == DurabilityMode::Aof {
                UNCHECKED
            } else {
                SUPPORTED
            })),
        })
    }

    pub fn durability(&self) -> &Durability {
        &self.durability
    }

    /// The connection durable writes and their waits go on.
    pub fn conn(&self) -> RedisConn {
        self.conn.clone()
    }

    /// The connection `kind`'s fetches and their waits go on.
    pub fn fetch_conn(&self, kind: crate::job::JobKind) -> RedisConn {
        self.fetch_conns[kind.index()].clone()
    }

    /// [`Self::check`] of a wait that lasted at most `waited`.
    pub fn check_waited(&self, reply: Value, waited: Duration) -> Result<(), StoreError> {
        match reply {
            Value::ServerError(e) => Err(self.refused_wait(StoreError::Redis(e.into()))),
            reply => self.durability.check_waited(reply, waited),
        }
    }

    /// Checks (once it succeeds) that Redis supports the mode; a refusal is logged once
    /// each time it starts, and asked again on the next call (Redis may be upgraded).
    pub async fn ensure_supported(&self) -> Result<(), StoreError> {
        if self.support.load(Ordering::Relaxed) == SUPPORTED {
            return Ok(());
        }
        match check_support(&mut self.conn.clone(), self.durability.mode).await {
            Ok(()) => {
                self.support.store(SUPPORTED, Ordering::Relaxed);
                tracing::info!(durability = %self.durability.mode, "Redis supports the configured queue durability");
                Ok(())
            }
            Err(e @ StoreError::DurabilityUnsupported(_)) => {
                if self.support.swap(REFUSED, Ordering::Relaxed) != REFUSED {
                    tracing::error!(error = %e, "the queue refuses writes: Redis cannot provide queue.durability");
                }
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    /// `e` again, unless it is Redis refusing the wait itself (`WAITAOF` once AOF was
    /// switched off at run time): the writes before the wait were applied, so that is
    /// [`StoreError::NotDurable`] — retry the same request — and the mode is checked again
    /// before the next write and by readiness, which then name what Redis lacks.
    pub fn refused_wait(&self, e: StoreError) -> StoreError {
        let StoreError::Redis(r) = &e else { return e };
        let text = r.to_string();
        if self.durability.mode == DurabilityMode::Local || !(text.contains("WAITAOF") || text.contains("WAIT cannot")) {
            return e;
        }
        // A replica (a primary just demoted) refuses the writes before the wait too (the
        // pipeline's error is then theirs, READONLY): nothing was applied, and the error
        // stands (before, found by the Redis failover audit of 2026-12-06, a settle refused
        // so was taken for applied, not durable, and never sent again).
        if r.code() == Some("READONLY") {
            return e;
        }
        self.support.store(UNCHECKED, Ordering::Relaxed);
        tracing::error!(
            error = %r,
            durability = %self.durability.mode,
            "Redis refused the durability wait: the writes before it were applied but are not durable"
        );
        StoreError::NotDurable(NotDurable {
            mode: self.durability.mode,
            acked: 0,
            timeout: self.durability.timeout,
        })
    }

    /// What the wait sent after a pipeline's writes answered: the writes are as durable
    /// as the mode asks, or not ([`StoreError::NotDurable`], also when Redis refused the
    /// wait itself: see [`Self::refused_wait`]).
    pub fn check(&self, reply: Value) -> Result<(), StoreError> {
        match reply {
            Value::ServerError(e) => Err(self.refused_wait(StoreError::Redis(e.into()))),
            reply => self.durability.check(reply),
        }
    }

    /// See [`await_durable`].
    pub async fn await_durable(&self) -> Result<(), StoreError> {
        await_durable(&mut self.conn.clone(), &self.durability).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::QueueConfig;

    fn replica() -> Durability {
        Durability {
            mode: DurabilityMode::Replica,
            timeout: Duration::from_millis(250),
        }
    }

    #[test]
    fn versions_compare_by_major_then_minor() {
        assert!(version_at_least("7.2.0", (7, 2)));
        assert!(version_at_least("8.6.1", (7, 2)));
        assert!(!version_at_least("7.0.15", (7, 2)));
        assert!(!version_at_least("6.9.9", (7, 2)));
        assert!(!version_at_least("unknown", (7, 2)));
    }

    #[test]
    fn a_wait_with_no_replica_acknowledging_is_not_durable() {
        let err = replica().check(Value::Int(0)).unwrap_err();
        assert!(matches!(err, StoreError::NotDurable(NotDurable { acked: 0, .. })), "{err}");
        replica().check(Value::Int(2)).unwrap();
    }

    #[test]
    fn waitaof_counts_the_local_fsync() {
        let aof = Durability {
            mode: DurabilityMode::Aof,
            timeout: Duration::from_millis(250),
        };
        aof.check(Value::Array(vec![Value::Int(1), Value::Int(0)])).unwrap();
        assert!(aof.check(Value::Array(vec![Value::Int(0), Value::Int(3)])).is_err());
    }

    #[test]
    fn the_settings_parse_and_default_to_local() {
        let c: QueueConfig = serde_json::from_str(r#"{"durability": "replica", "durability_timeout_ms": 500}"#).unwrap();
        assert_eq!(c.durability(), replica().clone_with(Duration::from_millis(500)));
        assert_eq!(QueueConfig::default().durability().mode, DurabilityMode::Local);
        assert!(serde_json::from_str::<QueueConfig>(r#"{"durability": "fsync"}"#).is_err());
        let mut errs = Vec::new();
        QueueConfig {
            durability_timeout_ms: 0,
            ..QueueConfig::default()
        }
        .validate("api.queue", &mut errs);
        assert_eq!(
            errs,
            vec!["api.queue.durability_timeout_ms = 0 must be between 1 and 60000".to_owned()]
        );
    }

    impl Durability {
        fn clone_with(self, timeout: Duration) -> Self {
            Self { timeout, ..self }
        }
    }
}
