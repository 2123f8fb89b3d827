//! The console's paced dead-letter replays running, across every API replica: one per key
//! and selection, so asking again for a selection being replayed starts nothing (the pace
//! holds) whichever replica is asked, and at most [`MAX_PER_KEY`] for one key at once.
//!
//! Each replay is a member of its key's set in Redis (`<ns>:api:paced:{<key>}`: the
//! selection's SHA-256, scored by when its claim runs out), renewed while its task runs and
//! taken out when it ends; a replica that dies leaves it to run out within [`CLAIM`].
//! (Before 2026-12-07 the set was each process's own, found by the console audit: a second
//! replica started a second replay of the same selection, twice `api.ui.replay_rate`.)
use std::sync::LazyLock;
use std::time::Duration;

use drover::redis_conn::RedisConn;
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// Paced replays one key may have running at once.
pub const MAX_PER_KEY: usize = 4;

/// How long a running replay's claim lasts unless renewed (every third of it).
const CLAIM: Duration = Duration::from_secs(30);

/// Claims a selection for a key: 'ok', 'running' (claimed already) or 'many' (the key has
/// its most), on Redis's clock; expired claims go first.
static START: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
-- KEYS[1]: the key's running replays. ARGV: the selection's hash, claim ms, most per key
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 'running' end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 'many' end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 'ok'
",
    )
});

/// Renews a claim still held.
static RENEW: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
",
    )
});

pub struct PacedReplays {
    conn: RedisConn,
    prefix: String,
}

/// Why a replay was not started.
#[derive(Debug)]
pub enum NotStarted {
    /// The key is replaying this selection already.
    AlreadyRunning,
    /// The key has [`MAX_PER_KEY`] replays running.
    TooMany,
    /// Redis could not say.
    Unavailable(ApiError),
}

/// One running replay; dropping it (the task ended) lets it go.
pub struct Running {
    conn: RedisConn,
    set: String,
    member: String,
    renewing: tokio::task::JoinHandle<()>,
}

impl PacedReplays {
    pub fn new(conn: RedisConn, namespace: &str) -> Self {
        Self {
            conn,
            prefix: format!("{namespace}:api:paced:"),
        }
    }

    /// Claims a replay of `selection` for `key`, unless one runs already (on any
    /// replica) or the key has its most.
    pub async fn start(&self, key: &str, selection: &str) -> Result<Running, NotStarted> {
        let set = format!("{}{{{key}}}", self.prefix);
        let member = hex::encode(Sha256::digest(selection.as_bytes()));
        let mut conn = self.conn.clone();
        let answer: String = START
            .key(&set)
            .arg(&member)
            .arg(CLAIM.as_millis() as u64)
            .arg(MAX_PER_KEY)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| NotStarted::Unavailable(e.into()))?;
        match answer.as_str() {
            "running" => return Err(NotStarted::AlreadyRunning),
            "many" => return Err(NotStarted::TooMany),
            _ => {}
        }
        let renewing = {
            let (mut conn, set, member) = (self.conn.clone(), set.clone(), member.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(CLAIM / 3).await;
                    let renewed: Result<i64, _> = RENEW
                        .key(&set)
                        .arg(&member)
                        .arg(CLAIM.as_millis() as u64)
                        .invoke_async(&mut conn)
                        .await;
                    if let Err(e) = renewed {
                        tracing::debug!(error = %e, "could not renew a paced replay's claim; trying again");
                    }
                }
            })
        };
        Ok(Running {
            conn: self.conn.clone(),
            set,
            member,
            renewing,
        })
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.renewing.abort();
        let (mut conn, set, member) = (self.conn.clone(), std::mem::take(&mut self.set), std::mem::take(&mut self.member));
        // Best effort: a claim not taken out runs out within CLAIM.
        tokio::spawn(async move {
            let _: Result<i64, _> = redis::cmd("ZREM").arg(&set).arg(&member).query_async(&mut conn).await;
        });
    }
}
