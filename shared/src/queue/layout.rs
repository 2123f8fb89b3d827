//! The queue layout recorded in Redis (`<ns>:layout`, a hash): how many partitions each
//! kind's queue has. The first API or worker to reach Redis records its count; every
//! later one checks its own against it, so two processes can never place one account's
//! jobs in two different partitions. A different count is refused with the way out.
//! A running API or worker records its count again every [`LAYOUT_EVERY`], so a Redis
//! that lost its data (restarted without persistence) holds it again within seconds.
use std::time::Duration;

use super::{durability, scripts, DurabilityMode, RedisStore, StoreError};
use crate::backoff::Backoff;
use crate::job::JobKind;
use crate::redis_conn::LuaScript;

/// How often a running API or worker records its partition count again.
const LAYOUT_EVERY: Duration = Duration::from_secs(2);

impl RedisStore {
    fn layout_key(&self) -> String {
        format!("{}:layout", self.namespace())
    }

    /// The partition count recorded in Redis, if any.
    pub async fn recorded_partitions(&self) -> Result<Option<u16>, StoreError> {
        let mut conn = self.connection();
        let v: Option<String> = redis::cmd("HGET")
            .arg(self.layout_key())
            .arg("partitions")
            .query_async(&mut conn)
            .await?;
        v.map(|s| {
            s.parse()
                .map_err(|_| StoreError::Protocol(format!("{} holds partitions = {s:?}", self.layout_key())))
        })
        .transpose()
    }

    /// Records `count` as the layout (the migration does this once every job has moved).
    pub async fn record_partitions(&self, count: u16) -> Result<(), StoreError> {
        let mut conn = self.connection();
        let _: i64 = redis::cmd("HSET")
            .arg(self.layout_key())
            .arg("partitions")
            .arg(count)
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// Records this store's partition count if Redis holds none yet; otherwise checks
    /// that it is the one recorded (a [`StoreError::Setup`] naming both and the way out
    /// if not).
    pub async fn check_layout(&self) -> Result<(), StoreError> {
        let _ = self.claim_layout().await?;
        self.upgrade_queued_counts().await?;
        self.check_redis_settings().await
    }

    /// Records this store's count if Redis holds none (`Ok(true)`: it was written); a
    /// [`StoreError::Setup`] if it holds another.
    async fn claim_layout(&self) -> Result<bool, StoreError> {
        let ours = self.defaults().partitions.count();
        let mut conn = self.connection();
        let wrote: i64 = redis::cmd("HSETNX")
            .arg(self.layout_key())
            .arg("partitions")
            .arg(ours)
            .query_async(&mut conn)
            .await?;
        match self.recorded_partitions().await? {
            Some(theirs) if theirs != ours => Err(StoreError::Setup(format!(
                "queue.partitions = {ours}, but the queues in this Redis (namespace {:?}) have {theirs} partitions. \
                 Start with queue.partitions = {theirs}, or move the queues to {ours} partitions first: stop every API \
                 and worker, then run `drover-worker partitions migrate --to {ours}`",
                self.namespace()
            ))),
            _ => Ok(wrote == 1),
        }
    }

    /// [`RedisStore::await_layout`], then the count recorded again every
    /// [`LAYOUT_EVERY`] (a round Redis does not answer is skipped). A process that
    /// `serves` jobs (a worker) also moves, each round, the lanes a process of the
    /// previous release offered ([`RedisStore::adopt_old_lanes`]). Returns only with a
    /// mismatch: another count recorded meanwhile.
    pub async fn keep_layout(&self, serves: bool) -> StoreError {
        if let Err(e) = self.await_layout().await {
            return e;
        }
        self.warn_if_nothing_persists().await;
        loop {
            if serves {
                if let Err(e) = self.adopt_old_lanes().await {
                    tracing::debug!(error = %e, "moving lanes an earlier release offered: Redis did not answer; next round");
                }
            }
            tokio::time::sleep(LAYOUT_EVERY).await;
            match self.claim_layout().await {
                Err(e @ StoreError::Setup(_)) => return e,
                // It was recorded when this process started: something emptied Redis.
                Ok(true) => tracing::warn!(
                    namespace = self.namespace(),
                    "the queue's layout record was gone from Redis and is written again: Redis lost its data \
                     (restarted without persistence, flushed, or failed over to an empty replica); the jobs and \
                     schedules it held are gone"
                ),
                _ => {}
            }
        }
    }

    /// Says once, at start, when `local` durability meets a Redis that keeps nothing on
    /// disk: a Redis restart would then lose every job it holds, answered 202 or not.
    async fn warn_if_nothing_persists(&self) {
        if self.defaults().durability.mode != DurabilityMode::Local {
            return; // `aof` refuses such a Redis itself; `replica` counts on the replicas
        }
        let mut conn = self.connection();
        if let Some(why) = durability::nothing_persisted(&mut conn).await {
            tracing::warn!(
                namespace = self.namespace(),
                redis = %why,
                "Redis keeps nothing on disk: a Redis restart loses every job and schedule it holds; run it with \
                 appendonly yes (deploy/redis/redis.conf) or set queue.durability to aof or replica"
            );
        }
    }

    /// Lanes a process of the previous release offered (`lanes`, by band and turn) move
    /// to the weighted turns (`passes`, `adopt_lanes.lua`): during a rolling upgrade
    /// (workers first) every lane is served by the newer workers within one
    /// [`LAYOUT_EVERY`]. Only workers run it: a lane moved while no worker of this
    /// release runs would wait unseen by the older ones.
    pub async fn adopt_old_lanes(&self) -> Result<(), StoreError> {
        let offer = ["lanes", "queued", "passes", "blocked", "vt", "idle", "marker"];
        for (queue, moved) in self.on_every_queue(&scripts::ADOPT_LANES, &offer, &["lanes"]).await? {
            if moved > 0 {
                tracing::info!(queue = %queue, moved, "lanes offered by an earlier release now take weighted turns");
            }
        }
        Ok(())
    }

    /// Queues written by a release that kept a `ready` index get their `queued` counter
    /// (`count_queued.lua`); a no-op on every later start.
    pub(super) async fn upgrade_queued_counts(&self) -> Result<(), StoreError> {
        let indexes = ["passes", "lanes", "blocked"];
        let uses = ["ready", "passes", "lanes", "blocked", "queued"];
        for (queue, upgraded) in self.on_every_queue(&scripts::COUNT_QUEUED, &uses, &indexes).await? {
            if upgraded == 1 {
                tracing::info!(queue = %queue, "queued jobs now counted by the lanes' counter");
            }
        }
        Ok(())
    }

    /// Runs a queue script that takes only the queue's prefix on every queue (each kind,
    /// each partition): each queue's prefix and the script's answer. The call declares
    /// the queue's keys named in `uses` and the lanes of the accounts in the indexes
    /// named in `accounts_in` (sorted sets, or the hash `blocked`), read just before;
    /// the script answers -1 when one of those changed in between, and is called again.
    async fn on_every_queue(
        &self,
        script: &'static LuaScript,
        uses: &[&str],
        accounts_in: &[&str],
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let mut out = Vec::new();
        let mut conn = self.connection();
        for kind in JobKind::ALL {
            for keys in self.all_keys(kind) {
                let mut answer = -1;
                for _ in 0..5 {
                    let mut pipe = redis::pipe();
                    for index in accounts_in {
                        if *index == "blocked" {
                            pipe.hkeys(keys.key(index));
                        } else {
                            pipe.zrange(keys.key(index), 0, -1);
                        }
                    }
                    let lists: Vec<Vec<String>> = pipe.query_async(&mut conn).await?;
                    let mut call = script.key(keys.slot_key());
                    for suffix in uses {
                        call.key(keys.key(suffix));
                    }
                    let mut accounts: Vec<&String> = lists.iter().flatten().collect();
                    accounts.sort();
                    accounts.dedup();
                    for account in accounts {
                        call.key(keys.of_account("rq", account));
                    }
                    answer = call.arg(keys.prefix()).invoke_async(&mut conn).await?;
                    if answer != -1 {
                        break;
                    }
                }
                out.push((keys.prefix().to_owned(), answer));
            }
        }
        Ok(out)
    }

    /// [`RedisStore::check_layout`], retried while Redis cannot be reached: returns once
    /// the layout is known to match, or with the mismatch.
    pub async fn await_layout(&self) -> Result<(), StoreError> {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        loop {
            match self.check_layout().await {
                Ok(()) => return Ok(()),
                Err(e @ StoreError::Setup(_)) => return Err(e),
                Err(e) => {
                    // The fetchers and readiness report the outage; this only waits it out.
                    tracing::debug!(error = %e, "checking the queue layout: Redis did not answer; retrying");
                    backoff.wait().await;
                }
            }
        }
    }
}
