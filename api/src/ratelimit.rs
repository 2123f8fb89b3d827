//! Per-key limits on write and read requests, held in Redis so they hold across API replicas.
//!
//! GCRA (the generic cell rate algorithm): one key per API key holds the "theoretical
//! arrival time"; a request is allowed when it is at most `burst` intervals ahead of now.
//! One small Lua script, so the check and the update are atomic, and Redis's clock is the
//! only clock, so replicas with skewed clocks agree.
use std::sync::LazyLock;
use std::time::Duration;

use drover::redis_conn::RedisConn;

use crate::config::RateLimitConfig;
use crate::error::ApiError;

static GCRA: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
-- KEYS[1]: the key's TAT. ARGV: interval ms, burst -> {allowed 0|1, retry after ms}
local interval, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - burst * interval
if allow_at > now then
  return {0, math.ceil(allow_at - now)}
end
redis.call('SET', KEYS[1], string.format('%.3f', new_tat), 'PX', math.ceil(new_tat - now) + 1000)
return {1, 0}
",
    )
});

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
        }
    }

    /// Count one request by `key_name`; a 429 error when it is over its limit.
    pub async fn check(&self, key_name: &str) -> Result<(), ApiError> {
        let mut conn = self.conn.clone();
        let (allowed, retry_ms): (i64, i64) = GCRA
            .key(format!("{}{key_name}", self.prefix))
            .arg(self.interval_ms)
            .arg(self.burst)
            .invoke_async(&mut conn)
            .await?;
        if allowed == 1 {
            Ok(())
        } else {
            Err(ApiError::RateLimited {
                retry_after: Duration::from_millis(retry_ms.max(1) as u64),
            })
        }
    }
}
