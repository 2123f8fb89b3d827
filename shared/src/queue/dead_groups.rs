//! Dead-letter groups: the dead jobs of a kind grouped by error signature (error class
//! and the message with ids and numbers masked), read from the counters the scripts keep
//! when a job dies or leaves the dead letter (lua/common.lua, "Dead-letter groups"), and
//! the backfill that groups jobs dead before those counters existed.
use std::collections::HashMap;

use serde::Deserialize;

use super::keys::GROUP_INDEXES;
use super::needs::call_declaring;
use super::{scripts, ListQuery, QueueKeys, RedisStore, StoreError};
use crate::job::{JobId, JobKind, JobState};

/// Most groups one read returns (the largest first).
pub const MAX_GROUPS: usize = 200;
/// Newest jobs shown per group.
const SAMPLES: usize = 3;

/// One error signature's dead jobs in one kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadGroup {
    pub kind: JobKind,
    /// The signature (16 hex digits), stable while the group has jobs.
    pub signature: String,
    pub class: String,
    /// The message's shape: what every job of the group said, ids and numbers masked.
    pub message: String,
    pub count: u64,
    /// When the first and the newest job of the group died (ms since the epoch).
    pub first_ms: i64,
    pub last_ms: i64,
    /// Its newest dead jobs, newest first.
    pub samples: Vec<JobId>,
}

#[derive(Deserialize)]
struct Shape {
    class: String,
    message: String,
}

/// A group's figures in one partition, before partitions are merged.
struct Part {
    count: u64,
    first_ms: i64,
    last_ms: i64,
}

impl RedisStore {
    /// The dead-letter groups of `kind`, largest first, at most `limit` (up to
    /// [`MAX_GROUPS`]); with `account`, only that account's dead jobs are counted.
    /// Reads counters only: the cost grows with the number of groups, never with the
    /// number of dead jobs.
    pub async fn dead_groups(&self, kind: JobKind, account: Option<&str>, limit: usize) -> Result<Vec<DeadGroup>, StoreError> {
        let queues: Vec<QueueKeys> = match account {
            // an account's jobs are all in one partition
            Some(acct) => {
                let probe = self.new_job_id(kind, acct, None);
                vec![self.partition_keys(kind, self.defaults().partitions.of_job(&probe))]
            }
            None => self.all_keys(kind),
        };
        let mut merged: HashMap<String, Part> = HashMap::new();
        let mut shapes: HashMap<String, Shape> = HashMap::new();
        for k in &queues {
            let parts = match account {
                Some(acct) => self.account_parts(k, acct).await?,
                None => self.queue_parts(k).await?,
            };
            if parts.is_empty() {
                continue;
            }
            let sigs: Vec<&String> = parts.keys().collect();
            let mut conn = self.connection();
            let metas: Vec<Option<String>> = redis::cmd("HMGET").arg(k.key("dgm")).arg(&sigs).query_async(&mut conn).await?;
            for (sig, meta) in sigs.iter().zip(metas) {
                if let Some(shape) = meta.and_then(|m| serde_json::from_str::<Shape>(&m).ok()) {
                    shapes.entry((*sig).clone()).or_insert(shape);
                }
            }
            for (sig, p) in parts {
                let m = merged.entry(sig).or_insert(Part {
                    count: 0,
                    first_ms: i64::MAX,
                    last_ms: 0,
                });
                m.count += p.count;
                m.first_ms = m.first_ms.min(p.first_ms);
                m.last_ms = m.last_ms.max(p.last_ms);
            }
        }
        let mut groups: Vec<DeadGroup> = merged
            .into_iter()
            .filter(|(_, p)| p.count > 0)
            .filter_map(|(sig, p)| {
                let shape = shapes.remove(&sig)?;
                Some(DeadGroup {
                    kind,
                    signature: sig,
                    class: shape.class,
                    message: shape.message,
                    count: p.count,
                    first_ms: p.first_ms,
                    last_ms: p.last_ms,
                    samples: Vec::new(),
                })
            })
            .collect();
        groups.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| b.last_ms.cmp(&a.last_ms)));
        groups.truncate(limit.clamp(1, MAX_GROUPS));
        for g in &mut groups {
            let q = ListQuery {
                kinds: vec![kind],
                state: Some(JobState::Dead),
                account_id: account.map(str::to_owned),
                group: Some(g.signature.clone()),
                error_class: None,
                limit: SAMPLES,
                cursor: None,
            };
            g.samples = self.page_ids(&q).await?.ids;
        }
        Ok(groups)
    }

    /// Every group of one queue: `dg` (counts), `dgf` and `dgl` (first and last death).
    async fn queue_parts(&self, k: &QueueKeys) -> Result<HashMap<String, Part>, StoreError> {
        let mut conn = self.connection();
        let (counts, firsts, lasts): (HashMap<String, i64>, HashMap<String, i64>, HashMap<String, i64>) = redis::pipe()
            .hgetall(k.key("dg"))
            .hgetall(k.key("dgf"))
            .hgetall(k.key("dgl"))
            .query_async(&mut conn)
            .await?;
        Ok(counts
            .into_iter()
            .map(|(sig, n)| {
                let part = Part {
                    count: n.max(0) as u64,
                    first_ms: firsts.get(&sig).copied().unwrap_or(0),
                    last_ms: lasts.get(&sig).copied().unwrap_or(0),
                };
                (sig, part)
            })
            .collect())
    }

    /// One account's groups in its queue: `dga:<account>` holds `sig`, `sig:f`, `sig:l`.
    async fn account_parts(&self, k: &QueueKeys, account: &str) -> Result<HashMap<String, Part>, StoreError> {
        let mut conn = self.connection();
        let fields: HashMap<String, i64> = redis::cmd("HGETALL")
            .arg(k.key(&format!("dga:{account}")))
            .query_async(&mut conn)
            .await?;
        Ok(fields
            .iter()
            .filter(|(f, _)| !f.contains(':'))
            .map(|(sig, n)| {
                let at = |suffix: &str| fields.get(&format!("{sig}:{suffix}")).copied().unwrap_or(0);
                let part = Part {
                    count: (*n).max(0) as u64,
                    first_ms: at("f"),
                    last_ms: at("l"),
                };
                (sig.clone(), part)
            })
            .collect())
    }

    /// Groups up to `limit` dead jobs of one queue that died before groups were kept;
    /// true once every dead job of the queue is grouped (then one EXISTS per call).
    pub(super) async fn backfill_dead_groups(&self, k: &QueueKeys, limit: usize) -> Result<bool, StoreError> {
        let mut conn = self.connection();
        let done: i64 = call_declaring(&mut conn, || {
            let mut call = scripts::DEAD_GROUPS.key(k.key("state:dead"));
            for suffix in GROUP_INDEXES
                .into_iter()
                .chain(["dgdone", "dgcur", "dgjdone", "dgjcur", "dgndone", "dgncur"])
            {
                call.key(k.key(suffix));
            }
            call.arg(k.prefix()).arg("backfill").arg(limit.max(1));
            call
        })
        .await?;
        Ok(done == 1)
    }

    /// A dead job moving between queues (a partition migration) leaves its groups in
    /// `from` before the move and joins them in `to` after it.
    pub(super) async fn regroup_dead(&self, k: &QueueKeys, op: Regroup, id: &JobId) -> Result<(), StoreError> {
        let mut conn = self.connection();
        let op = match op {
            Regroup::Leave => "leave",
            Regroup::Join => "join",
        };
        let _: i64 = call_declaring(&mut conn, || {
            let mut call = scripts::DEAD_GROUPS.key(k.job(id));
            for suffix in GROUP_INDEXES {
                call.key(k.key(suffix));
            }
            call.arg(k.prefix()).arg(op).arg(id.as_str());
            call
        })
        .await?;
        Ok(())
    }
}

/// Which way a dead job moves for [`RedisStore::regroup_dead`].
#[derive(Debug, Clone, Copy)]
pub(super) enum Regroup {
    Leave,
    Join,
}
