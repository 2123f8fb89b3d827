//! Changing the partition count (`drover-worker partitions migrate --to N`). Run with
//! every API and worker stopped, on queues with no unfinished job: each finished job's
//! record, attempt history, items, callback history, idempotency key and index entries
//! move to the partition the new count gives it (ids never change: a job's bucket is in
//! its id), the counters and the pause flag follow, and the new count is recorded.
//! Unfinished jobs are refused rather than moved: a lease, a lane turn or a cap in flight
//! cannot move atomically across shards — stop what submits jobs and let the queues,
//! unpaused, drain first.
use super::account_counts::Recount;
use super::dead_groups::Regroup;
use super::{JobStore, Partitions, QueueKeys, RedisStore, StoreError};
use crate::job::{JobId, JobKind};

/// Index entries read per call while listing a partition's jobs.
const PAGE: isize = 1000;

/// What a migration did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Migrated {
    pub from: u16,
    pub to: u16,
    /// Jobs whose partition changed.
    pub moved: u64,
    /// Jobs already where the new count puts them.
    pub stayed: u64,
}

impl RedisStore {
    /// Moves every queue of this store (whose `partitions` must be the count recorded in
    /// Redis) to `to` partitions. Refused, with nothing changed, while any job is
    /// unfinished or any completion callback is still due.
    pub async fn migrate_partitions(&self, to: Partitions) -> Result<Migrated, StoreError> {
        let from = self.defaults().partitions;
        if let Some(recorded) = self.recorded_partitions().await? {
            if recorded != from.count() {
                return Err(StoreError::Setup(format!(
                    "Redis records {recorded} partitions, not {}: start the migration with queue.partitions = {recorded}",
                    from.count()
                )));
            }
        }
        self.refuse_unfinished().await?;
        let target = RedisStore::with_partitions(self, to);
        let mut done = Migrated {
            from: from.count(),
            to: to.count(),
            ..Migrated::default()
        };
        for kind in JobKind::ALL {
            for old in self.all_keys(kind) {
                for (id, created) in self.index(&old.key("all")).await? {
                    let Ok(job) = id.parse::<JobId>() else { continue };
                    let new = target.job_keys(&job);
                    if new.prefix() == old.prefix() {
                        done.stayed += 1;
                    } else {
                        self.move_job(&job, &old, &new, created).await?;
                        done.moved += 1;
                    }
                }
                self.move_queue_state(kind, &old, &target).await?;
            }
            // Every moved job carries its count; the new partitions' backfill finds
            // nothing left to count and marks them complete.
            for new in target.all_keys(kind) {
                while !target.backfill_account_counts(&new).await? {}
            }
        }
        self.record_partitions(to.count()).await?;
        Ok(done)
    }

    /// A store like this one with another partition count (same connection).
    fn with_partitions(store: &RedisStore, to: Partitions) -> RedisStore {
        let mut defaults = store.defaults().clone();
        defaults.partitions = to;
        let mut s = store.clone();
        s.set_defaults(defaults);
        s
    }

    async fn refuse_unfinished(&self) -> Result<(), StoreError> {
        let mut unfinished = 0;
        let mut due_callbacks = 0u64;
        for kind in JobKind::ALL {
            let c = self.counts(kind).await?;
            unfinished += c.queued + c.scheduled + c.retrying + c.running + c.prefetched;
            for k in self.all_keys(kind) {
                let mut conn = self.connection();
                let (n, held): (u64, Vec<String>) = redis::pipe()
                    .zcard(k.key("cbdue"))
                    .zrange(k.key("cbheld"), 0, -1)
                    .query_async(&mut conn)
                    .await?;
                due_callbacks += n;
                for account in held {
                    let n: u64 = redis::cmd("ZCARD")
                        .arg(k.of_account("cbheld", &account))
                        .query_async(&mut conn)
                        .await?;
                    due_callbacks += n;
                }
            }
        }
        if unfinished > 0 || due_callbacks > 0 {
            return Err(StoreError::Setup(format!(
                "{unfinished} jobs are unfinished and {due_callbacks} completion callbacks are due: stop what submits \
                 jobs (clients, and the API's scheduler: api.scheduler.enabled = false), leave the queues unpaused \
                 and the workers running until they drain, stop everything, then migrate"
            )));
        }
        Ok(())
    }

    /// Every (member, score) of a sorted set, read in pages.
    async fn index(&self, key: &str) -> Result<Vec<(String, f64)>, StoreError> {
        let mut out = Vec::new();
        let mut start = 0isize;
        loop {
            let page: Vec<(String, f64)> = redis::cmd("ZRANGE")
                .arg(key)
                .arg(start)
                .arg(start + PAGE - 1)
                .arg("WITHSCORES")
                .query_async(&mut self.connection())
                .await?;
            let n = page.len() as isize;
            out.extend(page);
            if n < PAGE {
                return Ok(out);
            }
            start += PAGE;
        }
    }

    /// One finished job from `old` to `new`: its keys (DUMP/RESTORE keeps type and TTL),
    /// then its index entries, then the old copies go.
    async fn move_job(&self, id: &JobId, old: &QueueKeys, new: &QueueKeys, created: f64) -> Result<(), StoreError> {
        let mut conn = self.connection();
        let (state, account, idem): (Option<String>, Option<String>, Option<String>) = redis::cmd("HMGET")
            .arg(old.job(id))
            .arg("st")
            .arg("acct")
            .arg("ik")
            .query_async(&mut conn)
            .await?;
        let dead = state.as_deref() == Some("dead");
        if dead {
            self.regroup_dead(old, Regroup::Leave, id).await?;
        }
        self.recount(old, Recount::Leave, id).await?;
        for suffix in ["job:", "attempts:", "items:", "callbacks:"] {
            let (from, to) = (old.key(&format!("{suffix}{id}")), new.key(&format!("{suffix}{id}")));
            move_key(&mut conn, &from, &to).await?;
        }
        let _: i64 = redis::cmd("ZADD")
            .arg(new.key("all"))
            .arg(created)
            .arg(id.as_str())
            .query_async(&mut conn)
            .await?;
        let _: i64 = redis::cmd("ZREM")
            .arg(old.key("all"))
            .arg(id.as_str())
            .query_async(&mut conn)
            .await?;
        if let Some(st) = state.filter(|s| !s.is_empty()) {
            move_entry(
                &mut conn,
                &old.key(&format!("state:{st}")),
                &new.key(&format!("state:{st}")),
                id.as_str(),
            )
            .await?;
        }
        if let Some(acct) = account.filter(|a| !a.is_empty()) {
            move_entry(
                &mut conn,
                &old.key(&format!("acct:{acct}")),
                &new.key(&format!("acct:{acct}")),
                id.as_str(),
            )
            .await?;
        }
        if let Some(ik) = idem.filter(|k| !k.is_empty()) {
            move_key(&mut conn, &old.key(&format!("idem:{ik}")), &new.key(&format!("idem:{ik}"))).await?;
        }
        self.recount(new, Recount::Join, id).await?;
        if dead {
            self.regroup_dead(new, Regroup::Join, id).await?;
        }
        Ok(())
    }

    /// A partition's counters and pause flag join the new layout; a partition the new
    /// layout no longer has loses its leftover bookkeeping keys.
    async fn move_queue_state(&self, kind: JobKind, old: &QueueKeys, target: &RedisStore) -> Result<(), StoreError> {
        let mut conn = self.connection();
        let new_parts = target.all_keys(kind);
        let still_there = new_parts.iter().any(|k| k.prefix() == old.prefix());
        if still_there {
            return Ok(());
        }
        let stats: Vec<(String, i64)> = redis::cmd("HGETALL").arg(old.key("stats")).query_async(&mut conn).await?;
        let first = &new_parts[0];
        for (field, n) in stats {
            let _: i64 = redis::cmd("HINCRBY")
                .arg(first.key("stats"))
                .arg(field)
                .arg(n)
                .query_async(&mut conn)
                .await?;
        }
        let paused: bool = redis::cmd("EXISTS").arg(old.key("paused")).query_async(&mut conn).await?;
        if paused {
            for k in &new_parts {
                let _: () = redis::cmd("SET").arg(k.key("paused")).arg(1).query_async(&mut conn).await?;
            }
        }
        for suffix in [
            "stats",
            "paused",
            "marker",
            "seen",
            "gaps",
            "runid",
            "restarted",
            "turn",
            "lanes",
            "passes",
            "vt",
            "idle",
            "blocked",
            "queued",
            "dgdone",
            "dgcur",
            "acdone",
            "accur",
            "acend",
            "refused",
        ] {
            let _: i64 = redis::cmd("DEL").arg(old.key(suffix)).query_async(&mut conn).await?;
        }
        Ok(())
    }
}

/// `from` becomes `to` (type, value and TTL kept), on any two slots.
async fn move_key(conn: &mut crate::redis_conn::RedisConn, from: &str, to: &str) -> Result<(), StoreError> {
    let dump: Option<Vec<u8>> = redis::cmd("DUMP").arg(from).query_async(conn).await?;
    let Some(dump) = dump else { return Ok(()) };
    let ttl: i64 = redis::cmd("PTTL").arg(from).query_async(conn).await?;
    let _: () = redis::cmd("RESTORE")
        .arg(to)
        .arg(ttl.max(0))
        .arg(dump)
        .arg("REPLACE")
        .query_async(conn)
        .await?;
    let _: i64 = redis::cmd("DEL").arg(from).query_async(conn).await?;
    Ok(())
}

/// `member` moves from the sorted set `from` to `to` with its score.
async fn move_entry(conn: &mut crate::redis_conn::RedisConn, from: &str, to: &str, member: &str) -> Result<(), StoreError> {
    let score: Option<f64> = redis::cmd("ZSCORE").arg(from).arg(member).query_async(conn).await?;
    if let Some(score) = score {
        let _: i64 = redis::cmd("ZADD").arg(to).arg(score).arg(member).query_async(conn).await?;
        let _: i64 = redis::cmd("ZREM").arg(from).arg(member).query_async(conn).await?;
    }
    Ok(())
}
