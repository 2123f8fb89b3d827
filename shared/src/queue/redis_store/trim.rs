//! Removing finished jobs on Redis: the retention trim of every partition (a lock per
//! kind, a time budget per call) and the purge of chosen dead jobs.
use std::time::Duration;

use super::{RedisStore, CHUNK};
use crate::job::{JobId, JobKind};
use crate::queue::{scripts, StoreError, Trimmed};

/// How long one `trim` call may keep removing before it yields to the next tick.
const TRIM_BUDGET: Duration = Duration::from_millis(250);

impl RedisStore {
    pub(super) async fn purge(&self, ids: &[JobId]) -> Result<u64, StoreError> {
        let mut removed = 0;
        let mut conn = self.conn.clone();
        for (k, items) in self.by_queue(ids, |id| id) {
            for chunk in items.chunks(CHUNK) {
                let mut inv = scripts::REMOVE.key(k.slot_key());
                inv.arg(k.prefix()).arg("dead").arg(0).arg(0).arg(0);
                for (_, id) in chunk {
                    inv.arg(id.as_str());
                }
                let (n, _left): (u64, i64) = inv.invoke_async(&mut conn).await?;
                removed += n;
            }
        }
        Ok(removed)
    }

    pub(super) async fn trim_finished(&self, kind: JobKind, retention: Duration, limit: usize) -> Result<Option<Trimmed>, StoreError> {
        let mut conn = self.conn.clone();
        // One trimmer per kind at a time; the lock outlives the budget so a crashed
        // trimmer frees it on its own.
        let lock = self.partition_keys(kind, None).key("trim:lock");
        let owner = format!("{}", std::process::id());
        let got: Option<String> = redis::cmd("SET")
            .arg(&lock)
            .arg(&owner)
            .arg("NX")
            .arg("PX")
            .arg((TRIM_BUDGET * 4).as_millis() as u64)
            .query_async(&mut conn)
            .await?;
        if got.is_none() {
            return Ok(None);
        }
        let started = std::time::Instant::now();
        let mut trimmed = Trimmed::default();
        let policies = [
            ("succeeded", retention, 0),
            ("partial", retention, 0),
            ("cancelled", retention, 0),
            ("dead", self.defaults.dead_retention, self.defaults.dead_max),
        ];
        // `dead_max` is per kind: each partition keeps its share.
        let parts = self.all_keys(kind);
        let n = parts.len() as u64;
        for k in &parts {
            // Dead jobs from before dead-letter groups were kept join their groups, a
            // batch per pass, oldest first (one EXISTS per pass once done).
            while !self.backfill_dead_groups(k, limit).await? && started.elapsed() < TRIM_BUDGET {}
            // Likewise jobs made before per-account counts were kept are counted.
            while !self.backfill_account_counts(k).await? && started.elapsed() < TRIM_BUDGET {}
            for (state, keep_for, keep_max) in policies {
                loop {
                    let (removed, left): (u64, u64) = scripts::REMOVE
                        .key(k.slot_key())
                        .arg(k.prefix())
                        .arg(state)
                        .arg(keep_for.as_millis() as u64)
                        .arg(limit.max(1))
                        .arg(if keep_max == 0 { 0 } else { keep_max.div_ceil(n) })
                        .invoke_async(&mut conn)
                        .await?;
                    trimmed.removed += removed;
                    if left == 0 || started.elapsed() >= TRIM_BUDGET {
                        trimmed.backlog += left;
                        break;
                    }
                }
            }
        }
        let _: i64 = redis::cmd("DEL").arg(&lock).query_async(&mut conn).await?;
        Ok(Some(trimmed))
    }
}
