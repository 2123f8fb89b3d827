//! Idempotency keys, as the API scopes them.
//!
//! The store remembers a key per queue (a kind, or one partition of it: its keys live in
//! that queue's hash slot), so on its own the same key could create a sync job and then a
//! cleanup job, or — with several partitions — a job for an account in one partition and
//! another for an account in another. The API closes that gap: a key is first claimed for
//! one kind and account (`SET NX`, one script, so two replicas racing agree), and the same
//! key for another kind or another account is a 409. The store then settles replay (same
//! body → same job) and conflict (other body → 409) within the queue.
//!
//! Keys are scoped to the API key that sent them, so two clients can never see each
//! other's jobs through a shared idempotency key.
use std::sync::LazyLock;
use std::time::Duration;

use drover::job::JobKind;
use drover::redis_conn::RedisConn;

use crate::error::ApiError;

static CLAIM: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
-- KEYS[1]: the claim. ARGV: <kind>/<account>, ttl s -> {what holds the key, 1 if set now}
local held = redis.call('GET', KEYS[1])
if held then return {held, 0} end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return {ARGV[1], 1}
",
    )
});

static RELEASE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
-- KEYS[1]: the claim. ARGV: <kind>/<account> -> 1 if it held that and is gone
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
",
    )
});

/// A claim this request holds; `new` when this request made it (see [`IdempotencyClaims::release`]).
pub struct Claim {
    scoped: String,
    mine: String,
    new: bool,
}

#[derive(Clone)]
pub struct IdempotencyClaims {
    conn: RedisConn,
    prefix: String,
    ttl: Duration,
}

impl IdempotencyClaims {
    pub fn new(conn: RedisConn, namespace: &str, ttl: Duration) -> Self {
        Self {
            conn,
            prefix: format!("{namespace}:api:idem:"),
            ttl,
        }
    }

    /// The key to hand the store: the idempotency key within its API key's scope. The
    /// `api:` prefix keeps it apart from the scheduler's `schedule:<account>/<name>:<tick>`,
    /// which an API key named "schedule" could otherwise claim.
    pub fn scoped(api_key_name: &str, key: &str) -> String {
        format!("api:{api_key_name}:{key}")
    }

    /// Claim `scoped` for `kind` and `account`; a 409 when it was already used for another
    /// kind or another account. (A claim an older release made names the kind alone: it
    /// holds for the kind, and the store judges the account.)
    pub async fn claim(&self, scoped: &str, kind: JobKind, account: &str) -> Result<Claim, ApiError> {
        let mut conn = self.conn.clone();
        let mine = format!("{}/{account}", kind.as_str());
        let (held, set): (String, i64) = CLAIM
            .key(format!("{}{scoped}", self.prefix))
            .arg(&mine)
            .arg(self.ttl.as_secs().max(1))
            .invoke_async(&mut conn)
            .await?;
        if held == mine || held == kind.as_str() {
            return Ok(Claim {
                scoped: scoped.to_owned(),
                mine,
                new: set == 1,
            });
        }
        let held_kind = held.split_once('/').map_or(held.as_str(), |(k, _)| k);
        if held_kind == kind.as_str() {
            // Not naming the other account: it may be another tenant's.
            return Err(ApiError::Conflict(
                "this Idempotency-Key was already used for a job of another account; use a new key for another request".into(),
            ));
        }
        Err(ApiError::Conflict(format!(
            "this Idempotency-Key was already used for a {held_kind} job; use a new key for another request"
        )))
    }

    /// Give back a claim this request made when its submit was refused with nothing
    /// written, so the key stays free for another request. A claim an earlier request
    /// made is kept (its job may exist). Best effort: a failure is logged, and the claim
    /// then runs out with its TTL.
    pub async fn release(&self, claim: Claim) {
        if !claim.new {
            return;
        }
        let mut conn = self.conn.clone();
        let released: Result<i64, _> = RELEASE
            .key(format!("{}{}", self.prefix, claim.scoped))
            .arg(&claim.mine)
            .invoke_async(&mut conn)
            .await;
        if let Err(e) = released {
            tracing::warn!(error = %e, "could not give back the idempotency key of a refused submit; it frees when its TTL runs out");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::IdempotencyClaims;

    /// I3: the scheduler's keys are `schedule:<account>/<name>:<tick>`; an API key named
    /// "schedule" must not be able to claim one of its ticks.
    #[test]
    fn an_api_key_cannot_take_a_schedules_tick() {
        let scoped = IdempotencyClaims::scoped("schedule", "acme/nightly:1767225600");
        assert!(!scoped.starts_with("schedule:"), "{scoped}");
    }
}
