//! Per-key limits on write and read requests, held in Redis so they hold across API replicas.
//!
//! GCRA (the generic cell rate algorithm): one key per API key holds the "theoretical
//! arrival time"; a request is allowed when it is at most `burst` intervals ahead of now.
//! One small Lua script, so the check and the update are atomic, and Redis's clock is the
//! only clock, so replicas with skewed clocks agree. Checks made while one is on the
//! wire share the next script call (group commit): n checks of one key take n cells at
//! once, the first ones allowed, so a busy key costs Redis one call per batch.
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use drover::group_commit::GroupCommit;
use drover::redis_conn::RedisConn;
use tokio::sync::oneshot;

use crate::config::RateLimitConfig;
use crate::error::ApiError;

static GCRA: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"#!lua flags=allow-oom
-- allow-oom: a key's cell is taken at Redis's memory limit too, so its reads still
-- answer there (a few bytes a key, kept for at most the burst's span).
-- KEYS[1]: the key's TAT. ARGV: interval ms, burst, n (requests checked at once, in order)
-- -> {how many of the n are allowed (the first ones), retry after ms for the rest}
local interval, burst, n = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
-- the j-th is allowed when tat + j * interval - burst * interval <= now
local allowed = math.min(n, math.max(0, math.floor((now - tat) / interval + burst + 1e-9)))
if allowed > 0 then
  tat = tat + allowed * interval
  redis.call('SET', KEYS[1], string.format('%.3f', tat), 'PX', math.ceil(tat - now) + 1000)
end
if allowed == n then return {allowed, 0} end
return {allowed, math.ceil(tat + interval - burst * interval - now)}
",
    )
});

static CHARGE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"#!lua flags=allow-oom
-- Charges n cells for work a request was allowed before its cost was known (a listing's
-- walk): taken whatever is left, so the key may owe them, and its next requests wait.
-- KEYS[1]: the key's TAT. ARGV: interval ms, n
local interval, n = tonumber(ARGV[1]), tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local tat = math.max(now, tonumber(redis.call('GET', KEYS[1]) or '0')) + n * interval
redis.call('SET', KEYS[1], string.format('%.3f', tat), 'PX', math.ceil(tat - now) + 1000)
",
    )
});

static OWING: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"#!lua flags=no-writes,allow-oom
-- How far past its budget charges put a key (ms; 0 when it owes nothing): a key owes
-- when its TAT is beyond what its own checks can take it to (burst intervals ahead).
-- KEYS[1]: the key's TAT. ARGV: interval ms, burst
local interval, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
return math.max(0, math.ceil(tat - now - burst * interval))
",
    )
});

/// Most checks one call answers.
const MAX_CHECKS: usize = 512;

/// Each key's budgets: writes create work, reads cost Redis time (a scoped key's
/// filtered listings walk its own index; the budget bounds how often).
#[derive(Clone)]
pub struct KeyLimits {
    pub writes: RateLimiter,
    pub reads: RateLimiter,
}

/// Credential checks (`POST /v1/accounts` asking the marketplace) per non-admin key: a
/// tenant onboards a few accounts, never hundreds a minute (finding I4).
pub const CREDENTIAL_CHECKS: RateLimitConfig = RateLimitConfig { per_minute: 10, burst: 5 };

#[derive(Clone)]
pub struct RateLimiter {
    conn: RedisConn,
    prefix: String,
    interval_ms: f64,
    burst: u32,
    /// Checks made while a call is on the wire share the next one (one script call per
    /// key for all of them, answered in arrival order).
    pending: Arc<GroupCommit<Check>>,
}

/// One request's check, waiting for a call to carry it.
struct Check {
    key: String,
    reply: oneshot::Sender<Verdict>,
}

/// A check's answer: allowed, over the limit (retry after), or Redis did not answer.
type Verdict = Result<(), Refused>;

#[derive(Debug, Clone)]
enum Refused {
    Over(Duration),
    Unavailable(String),
}

impl RateLimiter {
    pub fn new(conn: RedisConn, namespace: &str, config: RateLimitConfig) -> Self {
        Self::named(conn, namespace, "ratelimit", config)
    }

    /// A limiter of its own under `<namespace>:api:<name>:`, e.g. [`CREDENTIAL_CHECKS`].
    pub fn named(conn: RedisConn, namespace: &str, name: &str, config: RateLimitConfig) -> Self {
        Self {
            conn,
            prefix: format!("{namespace}:api:{name}:"),
            interval_ms: 60_000.0 / f64::from(config.per_minute),
            burst: config.burst,
            pending: Arc::new(GroupCommit::new(MAX_CHECKS)),
        }
    }

    /// Count one request by `key_name`; a 429 error when it is over its limit.
    pub async fn check(&self, key_name: &str) -> Result<(), ApiError> {
        let (reply, answer) = oneshot::channel();
        let check = Check {
            key: format!("{}{key_name}", self.prefix),
            reply,
        };
        if self.pending.join(check) {
            // A task of its own, so a request that gives up never strands the others.
            tokio::spawn(self.clone().carry());
        }
        match answer.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(Refused::Over(retry_after))) => Err(ApiError::RateLimited { retry_after }),
            Ok(Err(Refused::Unavailable(cause))) => Err(ApiError::Unavailable {
                dependency: "redis",
                cause,
            }),
            Err(_) => Err(ApiError::Internal("the rate-limit check ended without an answer".into())),
        }
    }

    /// Charges `key_name` `n` requests more, after the fact: for the work of a request
    /// its own check let through (a listing that walked thousands of entries). Taken
    /// even past the budget, so the key's next requests wait until it is paid off. A
    /// Redis error is logged and not charged: the request's answer stands.
    pub async fn charge(&self, key_name: &str, n: u64) {
        if n == 0 {
            return;
        }
        let mut conn = self.conn.clone();
        let charged: Result<(), redis::RedisError> = CHARGE
            .key(format!("{}{key_name}", self.prefix))
            .arg(self.interval_ms)
            .arg(n)
            .invoke_async(&mut conn)
            .await;
        if let Err(e) = charged {
            tracing::warn!(key = key_name, requests = n, error = %e, "could not charge a request's work to its key's budget");
        }
    }

    /// A 429 while `key_name` owes for work charged after the fact ([`Self::charge`]):
    /// asked before more such work, whose own check may have been let through with
    /// many others at once, before the charges of the first ones landed.
    pub async fn owing(&self, key_name: &str) -> Result<(), ApiError> {
        let mut conn = self.conn.clone();
        let owed_ms: i64 = OWING
            .key(format!("{}{key_name}", self.prefix))
            .arg(self.interval_ms)
            .arg(self.burst)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| ApiError::Unavailable {
                dependency: "redis",
                cause: e.to_string(),
            })?;
        if owed_ms > 0 {
            let retry_after = Duration::from_millis(owed_ms as u64 + self.interval_ms.ceil() as u64);
            return Err(ApiError::RateLimited { retry_after });
        }
        Ok(())
    }

    /// Answers the waiting checks until none is left: per call, one script call per key
    /// (all on the wire at once), each key's checks allowed in arrival order.
    async fn carry(self) {
        while let Some(batch) = self.pending.next_batch() {
            let mut by_key: Vec<(String, Vec<oneshot::Sender<Verdict>>)> = Vec::new();
            for c in batch {
                match by_key.iter_mut().find(|(k, _)| *k == c.key) {
                    Some((_, replies)) => replies.push(c.reply),
                    None => by_key.push((c.key, vec![c.reply])),
                }
            }
            let calls = by_key.iter().map(|(key, replies)| self.take(key, replies.len()));
            let answers = futures::future::join_all(calls).await;
            for ((_, replies), answer) in by_key.into_iter().zip(answers) {
                for (i, reply) in replies.into_iter().enumerate() {
                    let verdict = match &answer {
                        Ok((allowed, _)) if i < *allowed => Ok(()),
                        Ok((_, retry_after)) => Err(Refused::Over(*retry_after)),
                        Err(e) => Err(e.clone()),
                    };
                    let _ = reply.send(verdict);
                }
            }
        }
    }

    /// Takes up to `n` cells from `key`: how many were allowed, and when the rest may retry.
    async fn take(&self, key: &str, n: usize) -> Result<(usize, Duration), Refused> {
        let mut conn = self.conn.clone();
        let (allowed, retry_ms): (i64, i64) = GCRA
            .key(key)
            .arg(self.interval_ms)
            .arg(self.burst)
            .arg(n)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| Refused::Unavailable(e.to_string()))?;
        Ok((allowed.max(0) as usize, Duration::from_millis(retry_ms.max(1) as u64)))
    }
}
