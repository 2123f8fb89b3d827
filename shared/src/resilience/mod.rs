//! Resilience state shared by every worker process through Redis, per seller account
//! and marketplace operation: rate limiter, quota cooldown, circuit breaker and the LWA
//! access-token cache. All decisions use the Redis server's clock (`TIME` inside Lua),
//! never the workers', and nothing but the token is cached in-process.
//!
//! - [`operation`]: the rate-limited operations, under SP-API's names.
//! - [`config`]: [`ResilienceConfig`] and its parts, with `validate()`.
//! - `gcra` + [`limiter`]: GCRA slot reservation (pure math, then the same in Lua).
//! - [`cooldown`]: the account's quota cooldown after 429s on report operations.
//! - [`breaker`]: the circuit breaker per account and operation.
//! - [`token_cache`]: the single-flight LWA token cache.
//! - `sealed_token`: how a token is sealed in Redis (no usable token in a dump).
//! - [`snapshot`]: everything about one account, for the API.
//! - [`kind_operations`]: which operations each job kind calls (which guards stop it).
//!
//! # Redis keys (`<ns>` is the namespace, `drover` by default)
//!
//! | key | type | what / why |
//! |---|---|---|
//! | `<ns>:rl:<account>:<op>` | hash `{tat, rate?}` | GCRA theoretical arrival time (µs, server clock) and the marketplace-announced rate when it differs from config. TTL: time to refill + `limiter.idle_ttl` (24 h), so idle accounts vanish. |
//! | `<ns>:cd:<account>` | hash `{until, reason, level, since}` | quota cooldown (ms). Kept `decay_after` past its end so a repeat 429 can climb a level. |
//! | `<ns>:cb:<account>:<op>` | hash `{st, ws, calls, fails, ou, pu}` | breaker state (`closed`/`open`/`half`), counting window start, counts, open-until and half-open probe lease (ms). TTL 2 × max(window, open_for) + 60 s. |
//! | `<ns>:lwa:<account>:<credentials>` | string | the LWA access token got with those credentials (the first 16 hex digits of their fingerprint), sealed (`sealed_token`: `<sha256 hex>.<AES-256-GCM, base64url>`, bound to the account and the credentials), PX = `expires_in − refresh_before`. `:failed` beside it notes its failed refreshes. |
//! | `<ns>:lwa:<account>:<credentials>:lock` | string | refresh lock: random owner, SET NX PX `token.lock_ttl` (3 s), extended every third of that while the exchange runs, released by compare-and-delete. |
use std::fmt;
use std::sync::Arc;

use crate::redis_conn::RedisConn;
use chrono::{DateTime, Utc};

use crate::crypto::EncryptionKey;
use crate::job::AccountId;

/// A Lua script from files under `lua/`, concatenated in order.
macro_rules! lua {
    ($($file:literal),+) => {
        LazyLock::new(|| Script::new(concat!($(include_str!($file), "\n"),+)))
    };
}

pub mod breaker;
pub mod config;
pub mod cooldown;
mod error;
mod gcra;
pub mod kind_operations;
pub mod limiter;
pub mod operation;
mod sealed_token;
pub mod snapshot;
pub mod token_cache;

pub use breaker::{BreakerPermit, BreakerState, CallOutcome, Phase as BreakerPhase};
pub use config::{BreakerConfig, ColdStart, CooldownConfig, LimiterConfig, RateSpec, ResilienceConfig, TokenConfig};
pub use cooldown::Cooldown;
pub use error::ResilienceError;
pub use kind_operations::stopped_by_quota_cooldown;
pub use operation::Operation;
/// Re-exported so callers of [`Resilience::access_token`] need no direct dependency.
pub use secrecy::{ExposeSecret, SecretString};
pub use snapshot::{AccountLimits, BreakerSnapshot, OperationLimits};

/// Handle to the shared state. Cheap to clone; one per process is enough.
#[derive(Clone)]
pub struct Resilience {
    inner: Arc<Inner>,
}

struct Inner {
    conn: RedisConn,
    namespace: String,
    config: ResilienceConfig,
    tokens: token_cache::LocalTokens,
    sealer: sealed_token::TokenSealer,
}

impl Resilience {
    /// `key` is the configured encryption key: access tokens are sealed in Redis under a
    /// key derived from it, so every process with the same setting shares them.
    pub fn new(conn: impl Into<RedisConn>, namespace: &str, config: ResilienceConfig, key: &EncryptionKey) -> Self {
        let conn = conn.into();
        Self {
            inner: Arc::new(Inner {
                conn,
                namespace: namespace.to_owned(),
                config,
                tokens: token_cache::LocalTokens::default(),
                sealer: sealed_token::TokenSealer::new(key),
            }),
        }
    }

    pub fn config(&self) -> &ResilienceConfig {
        &self.inner.config
    }

    fn conn(&self) -> RedisConn {
        self.inner.conn.clone()
    }

    /// `<ns>:<kind>:{<account>}[:<op>]`. Account ids cannot hold ':' or braces (see
    /// `AccountId`). The account is the hash tag, so one account's keys share a Cluster
    /// slot: the scripts that read several of them at once (the limits snapshot, the
    /// token and its refresh lock) run on a cluster too.
    fn key(&self, kind: &str, account: &AccountId, op: Option<Operation>) -> String {
        match op {
            Some(op) => format!("{}:{kind}:{{{account}}}:{}", self.inner.namespace, op.name()),
            None => format!("{}:{kind}:{{{account}}}", self.inner.namespace),
        }
    }
}

/// Never shows the cached tokens.
impl fmt::Debug for Resilience {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resilience")
            .field("namespace", &self.inner.namespace)
            .finish_non_exhaustive()
    }
}

fn ms_to_time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or(DateTime::<Utc>::MAX_UTC)
}
