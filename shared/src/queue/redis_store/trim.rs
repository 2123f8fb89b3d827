//! Removing finished jobs on Redis: the retention trim of every partition (a lock per
//! kind, a time budget per call) and the purge of chosen dead jobs.
use std::time::Duration;

use super::{RedisStore, CHUNK};
use crate::job::{JobId, JobKind};

use crate::queue::{scripts, QueueKeys, StoreError, Trimmed};
use crate::redis_conn::RedisConn;

/// How long one `trim` call may keep removing before it yields to the next tick.
const TRIM_BUDGET: Duration = Duration::from_millis(250);

/// Accounts of each partition's dead-job rank read as candidates for the dead cap.
const CANDIDATES: isize = 4;
/// Fewest dead jobs the dead cap takes from the top account in one go when the next
/// holds as many or nearly (tied accounts are evened out a step at a time).
const TIED_STEP: usize = 50;

/// Partitions passed over by trim passes (logged once an outage).
static PARTITION_DOWN: crate::outage::Outage = crate::outage::Outage::new();

impl RedisStore {
    pub(super) async fn purge(&self, ids: &[JobId]) -> Result<u64, StoreError> {
        let mut removed = 0;
        let mut conn = self.conn.clone();
        for (k, items) in self.by_queue(ids, |id| id) {
            for chunk in items.chunks(CHUNK) {
                let mut todo: Vec<String> = chunk.iter().map(|(_, id)| id.to_string()).collect();
                // A job whose keys changed between the read ahead and the call is left
                // for the next call, which reads them again.
                for _ in 0..5 {
                    let (n, left) = self.remove(&mut conn, &k, "dead", Some(&todo), (0, 0, 0)).await?;
                    removed += n;
                    todo.drain(..todo.len() - (left as usize).min(todo.len()));
                    if todo.is_empty() {
                        break;
                    }
                }
            }
        }
        Ok(removed)
    }

    /// One call of remove.lua on `state` of queue `k`: of the jobs `named`, or of the
    /// index's oldest as `(retention ms, limit, keep_max)` allow. Their keys (and what
    /// those depend on: account, dead-letter signature) are read ahead and declared.
    async fn remove(
        &self,
        conn: &mut RedisConn,
        k: &QueueKeys,
        state: &str,
        named: Option<&[String]>,
        (retention_ms, limit, keep_max): (u64, usize, u64),
    ) -> Result<(u64, u64), StoreError> {
        let index = k.key(&format!("state:{state}"));
        let ids: Vec<String> = match named {
            Some(ids) => ids.to_vec(),
            None => due_ahead(conn, &index, (retention_ms, limit, keep_max)).await?,
        };
        if ids.is_empty() {
            return Ok((0, 0)); // nothing is due: no record read, no script run
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.cmd("HMGET").arg(k.key(&format!("job:{id}"))).arg("acct").arg("sg");
        }
        let facts: Vec<(Option<String>, Option<String>)> = pipe.query_async(conn).await?;
        let mut call = scripts::REMOVE.key(&index);
        for suffix in ["cbdue", "all", "dg", "dgm", "dgf", "dgl", "dgn"] {
            call.key(k.key(suffix));
        }
        for (id, (acct, sig)) in ids.iter().zip(&facts) {
            for what in ["job", "attempts", "items", "callbacks"] {
                call.key(k.key(&format!("{what}:{id}")));
            }
            if let Some(a) = acct {
                for what in ["acct", "as", "dga"] {
                    call.key(k.of_account(what, a));
                }
                if let Some(sig) = sig.as_deref().filter(|s| !s.is_empty()) {
                    call.key(k.key(&format!("dg:{sig}"))).key(k.key(&format!("dgj:{sig}:{a}")));
                }
            }
        }
        call.arg(k.prefix()).arg(state).arg(retention_ms).arg(limit.max(1)).arg(keep_max);
        if named.is_some() {
            for id in &ids {
                call.arg(id);
            }
        }
        Ok(call.invoke_async(conn).await?)
    }
    pub(super) async fn trim_finished(&self, kind: JobKind, retention: Duration, limit: usize) -> Result<Option<Trimmed>, StoreError> {
        let mut conn = self.conn.clone();
        // One trimmer per kind at a time; the lock outlives the budget so a crashed
        // trimmer frees it on its own. At Redis's memory limit, where the SET is refused,
        // the lock is taken by a script Redis still runs there: the trim is what frees
        // memory, and two trimmers at once would each take the dead cap's surplus.
        let lock_queue = self.partition_keys(kind, None);
        let lock = lock_queue.key("trim:lock");
        let owner = format!("{}:{:016x}", std::process::id(), rand::random::<u64>());
        let lock_ttl = (TRIM_BUDGET * 4).as_millis() as u64;
        let got: Result<Option<String>, StoreError> = redis::cmd("SET")
            .arg(&lock)
            .arg(&owner)
            .arg("NX")
            .arg("PX")
            .arg(lock_ttl)
            .query_async(&mut conn)
            .await
            .map_err(StoreError::from);
        // `full`: at the memory limit (the backfills, which write, wait); `locked`: the
        // lock is this pass's to delete. With several partitions, a lock whose shard does
        // not answer holds nobody off the others: they are trimmed without it.
        let parts = self.all_keys(kind);
        let (full, locked) = match got {
            Ok(Some(_)) => (false, true),
            Ok(None) => return Ok(None),
            Err(e) if e.is_out_of_memory() => match self.take_lock_at_the_limit(&mut conn, &lock_queue, &owner, lock_ttl).await {
                Ok(true) => (true, true),
                Ok(false) => return Ok(None),
                // (a server that runs no script at its limit: retention by age only)
                Err(_) => (true, false),
            },
            Err(e) if e.is_outage() && parts.len() > 1 => (false, false),
            Err(e) => return Err(e),
        };
        let started = std::time::Instant::now();
        let mut trimmed = Trimmed::default();
        let policies = [
            ("succeeded", retention, 0),
            ("partial", retention, 0),
            ("cancelled", retention, 0),
            ("dead", self.defaults.dead_retention, self.defaults.dead_max),
        ];
        // `dead_max` is per kind, and the dead jobs past it are taken from the account
        // holding the most (`trim_dead_over_cap`): one tenant's deaths never trim
        // another's dead letter. Each partition trims its dead jobs by age only. Until
        // every partition's dead jobs are ranked by account (`ranked`: an upgrade's
        // backfill) the oldest go instead — the script caps one partition; over several
        // the globally oldest (an even share would trim a tenant's recent dead jobs while
        // the kind is far below its cap).
        let one = parts.len() == 1;
        let mut ranked = true;
        // A partition that fails (its shard is down) is passed over: the others are
        // trimmed all the same (logged once an outage; the pass fails only when every
        // partition did).
        let mut failed = None;
        let mut failures = 0;
        for k in &parts {
            let pass = async {
                // Dead jobs from before dead-letter groups were kept join their groups, a
                // batch per pass, oldest first (one EXISTS per pass once done). Likewise
                // jobs made before per-account counts were kept are counted. Both write,
                // so at the memory limit they wait for a trim that has freed some.
                if !full {
                    while !self.backfill_dead_groups(k, limit).await? && started.elapsed() < TRIM_BUDGET {}
                    while !self.backfill_account_counts(k).await? && started.elapsed() < TRIM_BUDGET {}
                }
                let here = self.dead_ranked(k).await;
                let mut conn = conn.clone();
                for (state, keep_for, keep_max) in policies {
                    loop {
                        let keep = if one && !here { keep_max } else { 0 };
                        let (removed, left) = self
                            .remove(&mut conn, k, state, None, (keep_for.as_millis() as u64, limit, keep))
                            .await?;
                        trimmed.removed += removed;
                        if left == 0 || started.elapsed() >= TRIM_BUDGET {
                            trimmed.backlog += left;
                            break;
                        }
                    }
                }
                Ok::<bool, StoreError>(here)
            };
            match pass.await {
                Ok(here) => ranked &= here,
                Err(e) => {
                    failures += 1;
                    failed.get_or_insert(e);
                }
            }
        }
        // The kind's dead cap counts every partition: not while one cannot be read, nor
        // without the lock — never taken (its shard down), or outlasted (another trimmer
        // may be taking the same surplus: both would remove it, below the cap).
        let still_locked = locked && self.lock_held(&mut conn, &lock_queue, &owner, lock_ttl).await?;
        if (!one || ranked) && self.defaults.dead_max > 0 && failed.is_none() && still_locked {
            loop {
                let (removed, over) = self.trim_dead_over_cap(&mut conn, &parts, limit, ranked).await?;
                trimmed.removed += removed;
                if over == 0 || removed == 0 || started.elapsed() >= TRIM_BUDGET {
                    trimmed.backlog += over;
                    break;
                }
            }
        }
        if locked {
            self.lock_held(&mut conn, &lock_queue, &owner, 0).await?;
        }
        match failed {
            Some(e) if failures == parts.len() => Err(e),
            Some(e) => {
                if PARTITION_DOWN.failed() {
                    tracing::warn!(kind = %kind, partitions = failures, error = %e, "trim: partitions whose shard does not answer are passed over; the others are trimmed");
                }
                Ok(Some(trimmed))
            }
            None => {
                if PARTITION_DOWN.answered() {
                    tracing::info!(kind = %kind, "trim: every partition answers again");
                }
                Ok(Some(trimmed))
            }
        }
    }

    /// Past the kind's dead cap (`dead_max`, every partition together), removes dead
    /// jobs, at most `limit` a call, each through remove.lua as a purge does (a job
    /// replayed meanwhile is not dead and stays): when `ranked`, the oldest of the
    /// account holding the most ([`Self::most_dead_oldest`]), else the globally oldest.
    /// Returns what it removed and how many are still over the cap.
    async fn trim_dead_over_cap(
        &self,
        conn: &mut RedisConn,
        parts: &[QueueKeys],
        limit: usize,
        ranked: bool,
    ) -> Result<(u64, u64), StoreError> {
        // One call per partition (their keys are in different cluster slots), all at once.
        let held = futures::future::try_join_all(parts.iter().map(|k| {
            let mut conn = conn.clone();
            async move { redis::cmd("ZCARD").arg(k.key("state:dead")).query_async::<u64>(&mut conn).await }
        }))
        .await?;
        let over = held.iter().sum::<u64>().saturating_sub(self.defaults.dead_max);
        if over == 0 {
            return Ok((0, 0));
        }
        let take = (over as usize).min(limit.max(1));
        let mut picked = if ranked {
            self.most_dead_oldest(conn, parts, take).await?
        } else {
            Vec::new()
        };
        if picked.is_empty() {
            // not ranked, or no account is (dead jobs without one): the oldest go
            picked = oldest_dead(conn, parts, &held, take).await?;
        }
        let mut removed = 0;
        for (p, k) in parts.iter().enumerate() {
            let ids: Vec<String> = picked.iter().filter(|(q, _)| *q == p).map(|(_, id)| id.clone()).collect();
            if !ids.is_empty() {
                removed += self.remove(conn, k, "dead", Some(&ids), (0, 0, 0)).await?.0;
            }
        }
        Ok((removed, over.saturating_sub(removed)))
    }

    /// Whether `queue`'s trim lock still holds `owner`'s token; if so it is extended to
    /// `ttl_ms`, or deleted with 0.
    async fn lock_held(&self, conn: &mut RedisConn, queue: &QueueKeys, owner: &str, ttl_ms: u64) -> Result<bool, StoreError> {
        Self::trim_lock(conn, queue, owner, ttl_ms, "").await
    }

    /// Takes the kind's trim lock for `owner` if it is free, by the lock's script, which
    /// Redis runs at its memory limit.
    async fn take_lock_at_the_limit(&self, conn: &mut RedisConn, queue: &QueueKeys, owner: &str, ttl_ms: u64) -> Result<bool, StoreError> {
        Self::trim_lock(conn, queue, owner, ttl_ms, "take").await
    }

    /// `trim_lock.lua` on `queue`'s lock for `owner` (`mode` `take`, or empty).
    async fn trim_lock(conn: &mut RedisConn, queue: &QueueKeys, owner: &str, ttl_ms: u64, mode: &str) -> Result<bool, StoreError> {
        let done: i64 = scripts::TRIM_LOCK
            .key(queue.key("trim:lock"))
            .arg(queue.prefix())
            .arg(owner)
            .arg(ttl_ms)
            .arg(mode)
            .invoke_async(conn)
            .await?;
        Ok(done == 1)
    }

    /// Whether partition `k`'s dead jobs are ranked by account (`dgndone`: set by the
    /// dead-letter backfill, or by a queue's first enqueue) and counted per account
    /// (`acdone`: the ranks are checked against those counts). Read, not left to the
    /// backfills' answers, which a pass short of budget or at the memory limit does not
    /// reach; a partition that cannot be read counts as not ranked.
    async fn dead_ranked(&self, k: &QueueKeys) -> bool {
        let done: Result<u64, _> = redis::cmd("EXISTS")
            .arg(k.key("dgndone"))
            .arg(k.key("acdone"))
            .query_async(&mut self.conn.clone())
            .await;
        done.is_ok_and(|n| n == 2)
    }

    /// The oldest dead jobs of the account holding the most in the kind, as (partition,
    /// id): at most `take`, and no more than bring it down to the next account's count
    /// (at least [`TIED_STEP`]), so a cap shared by many accounts trims the largest first
    /// and evens them out. Candidates are the top [`CANDIDATES`] of each partition's
    /// `dgn` (an account's jobs are all in one), each checked against its dead count in
    /// `as:` (which every release keeps): a rank a mixed-release upgrade left off is set
    /// right, so it cannot keep an account on top. None when no account is ranked.
    async fn most_dead_oldest(&self, conn: &mut RedisConn, parts: &[QueueKeys], take: usize) -> Result<Vec<(usize, String)>, StoreError> {
        let tops = futures::future::try_join_all(parts.iter().map(|k| {
            let mut conn = conn.clone();
            async move {
                let top: Vec<(String, f64)> = redis::cmd("ZREVRANGE")
                    .arg(k.key("dgn"))
                    .arg(0)
                    .arg(CANDIDATES - 1)
                    .arg("WITHSCORES")
                    .query_async(&mut conn)
                    .await?;
                if top.is_empty() {
                    return Ok::<_, redis::RedisError>(Vec::new());
                }
                let mut pipe = redis::pipe();
                for (account, _) in &top {
                    pipe.hget(k.of_account("as", account), "dead");
                }
                let counted: Vec<Option<i64>> = pipe.query_async(&mut conn).await?;
                let mut fixes = redis::pipe();
                let mut wrong = false;
                let mut out = Vec::with_capacity(top.len());
                for ((account, ranked), dead) in top.into_iter().zip(counted) {
                    let dead = dead.unwrap_or(0).max(0);
                    if dead as f64 != ranked {
                        wrong = true;
                        if dead == 0 {
                            fixes.zrem(k.key("dgn"), &account).ignore();
                        } else {
                            fixes.cmd("ZADD").arg(k.key("dgn")).arg("XX").arg(dead).arg(&account).ignore();
                        }
                    }
                    if dead > 0 {
                        out.push((dead as u64, account));
                    }
                }
                if wrong {
                    let _: () = fixes.query_async(&mut conn).await?;
                }
                Ok(out)
            }
        }))
        .await?;
        let mut ranked: Vec<(u64, usize, String)> = tops
            .into_iter()
            .enumerate()
            .flat_map(|(p, top)| top.into_iter().map(move |(n, account)| (n, p, account)))
            .collect();
        ranked.sort_by_key(|r| std::cmp::Reverse(r.0));
        let Some((most, p, account)) = ranked.first().cloned() else {
            return Ok(Vec::new());
        };
        let next = ranked.get(1).map_or(0, |r| r.0);
        let take = take.min(((most - next) as usize).max(TIED_STEP));
        let k = &parts[p];
        // its groups, then the oldest `take` of each group's index of it
        let groups: Vec<String> = redis::cmd("HKEYS").arg(k.of_account("dga", &account)).query_async(conn).await?;
        let sigs: Vec<&String> = groups.iter().filter(|f| !f.contains(':')).collect();
        if sigs.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for sig in &sigs {
            pipe.zrange_withscores(k.key(&format!("dgj:{sig}:{account}")), 0, take as isize - 1);
        }
        let heads: Vec<Vec<(String, f64)>> = pipe.query_async(conn).await?;
        let mut oldest: Vec<(f64, String)> = heads.into_iter().flatten().map(|(id, at)| (at, id)).collect();
        oldest.sort_by(|a, b| a.0.total_cmp(&b.0));
        Ok(oldest.into_iter().take(take).map(|(_, id)| (p, id)).collect())
    }
}

/// The kind's `take` oldest dead jobs over every partition (`held`: each one's dead
/// count), as (partition, id).
async fn oldest_dead(conn: &RedisConn, parts: &[QueueKeys], held: &[u64], take: usize) -> Result<Vec<(usize, String)>, StoreError> {
    let oldest = futures::future::try_join_all(parts.iter().zip(held).map(|(k, &n)| {
        let mut conn = conn.clone();
        async move {
            if n == 0 {
                return Ok(Vec::new());
            }
            redis::cmd("ZRANGE")
                .arg(k.key("state:dead"))
                .arg(0)
                .arg(take - 1)
                .arg("WITHSCORES")
                .query_async::<Vec<(String, f64)>>(&mut conn)
                .await
        }
    }))
    .await?;
    let mut by_age: Vec<(f64, usize, String)> = oldest
        .into_iter()
        .enumerate()
        .flat_map(|(p, jobs)| jobs.into_iter().map(move |(id, ended)| (ended, p, id)))
        .collect();
    by_age.sort_by(|a, b| a.0.total_cmp(&b.0));
    Ok(by_age.into_iter().take(take).map(|(_, p, id)| (p, id)).collect())
}

/// The oldest jobs of a state's `index` that remove.lua will find due, read the way it
/// reads them (by Redis's clock: those that ended `retention_ms` ago or more, or the
/// oldest beyond `keep_max`; at most `limit`), in one round trip. Nothing due reads no
/// record: the trim loop asks every 2 s in every process. Should Redis's clock move on
/// before the script runs, the script meets a job it was not given and ends there; the
/// next call reads it ahead.
async fn due_ahead(
    conn: &mut RedisConn,
    index: &str,
    (retention_ms, limit, keep_max): (u64, usize, u64),
) -> Result<Vec<String>, StoreError> {
    let limit = limit.max(1);
    let ((secs, micros), held, oldest): ((u64, u64), u64, Vec<(String, f64)>) = redis::pipe()
        .cmd("TIME")
        .zcard(index)
        .zrange_withscores(index, 0, limit as isize - 1)
        .query_async(conn)
        .await?;
    let now_ms = secs * 1000 + micros / 1000;
    let cutoff = now_ms.saturating_sub(retention_ms) as f64;
    let by_age = oldest.iter().take_while(|(_, ended)| *ended <= cutoff).count();
    let over = if keep_max > 0 { held.saturating_sub(keep_max) as usize } else { 0 };
    let due = by_age.max(over).min(limit);
    Ok(oldest.into_iter().take(due).map(|(id, _)| id).collect())
}
