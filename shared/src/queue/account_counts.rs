//! One account's jobs by state, per kind, read from what the scripts keep at write time
//! (lua/common.lua, "Per-account counts"): the lane's ZCARD (queued), the hold's SCARD
//! (running, prefetched runs included) and the `as:<account>` counters (every other
//! state); and the backfill that counts jobs made before those counters existed.
use std::collections::HashMap;

use super::needs::call_declaring;
use super::redis_store::parse_err;
use super::{scripts, QueueKeys, RedisStore, StoreError};
use crate::job::JobKind;

/// Jobs of one kind read per backfill call.
const BACKFILL_BATCH: usize = 500;

/// One account's jobs of one kind by state (serialized as `GET /v1/accounts/{id}/counts`
/// shows it, fields in [`AccountStateCounts::STATES`] order).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AccountStateCounts {
    pub queued: u64,
    pub scheduled: u64,
    /// Leased runs, started or not.
    pub running: u64,
    pub retrying: u64,
    pub succeeded: u64,
    pub partial: u64,
    pub dead: u64,
    pub cancelled: u64,
}

impl AccountStateCounts {
    /// The states counted, in the order the fields are (and tables show them).
    pub const STATES: [&'static str; 8] = [
        "queued",
        "scheduled",
        "running",
        "retrying",
        "succeeded",
        "partial",
        "dead",
        "cancelled",
    ];
}

/// An account's counts in every kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountCounts {
    pub kinds: Vec<(JobKind, AccountStateCounts)>,
    /// False while jobs made before the counters existed are still being counted (the
    /// trimmer of the kind's workers does it, a batch per pass); the figures are then too
    /// low. A queue whose first job came after the counters is complete from the start.
    pub complete: bool,
}

/// A job moving between queues (a partition migration).
#[derive(Debug, Clone, Copy)]
pub(super) enum Recount {
    Leave,
    Join,
}

impl RedisStore {
    /// `account`'s jobs by state in every kind: a few reads of one partition per kind,
    /// whatever the number of jobs.
    pub async fn account_counts(&self, account: &str) -> Result<AccountCounts, StoreError> {
        let keys: Vec<QueueKeys> = JobKind::ALL.iter().map(|kind| self.account_keys(*kind, account)).collect();
        let tags: Vec<String> = keys.iter().map(QueueKeys::slot_key).collect();
        // One round trip on one server (one pipeline per partition on a cluster).
        let replies = self
            .grouped(&tags, None, |pipe, i| {
                let k = &keys[i];
                pipe.zcard(k.key(&format!("rq:{account}")))
                    .scard(k.key(&format!("hold:{account}")))
                    .hgetall(k.key(&format!("as:{account}")))
                    .exists(k.key("acdone"))
                    .exists(k.key(&format!("acct:{account}")));
            })
            .await?;
        let mut kinds = Vec::with_capacity(JobKind::ALL.len());
        let mut complete = true;
        for (kind, reply) in JobKind::ALL.into_iter().zip(replies) {
            let (queued, running, counters, done, jobs): (u64, u64, HashMap<String, i64>, bool, bool) =
                redis::from_redis_value(redis::Value::Array(reply)).map_err(parse_err)?;
            let n = |state: &str| counters.get(state).copied().unwrap_or(0).max(0) as u64;
            // an account with no job in the queue has nothing left to count, whatever
            // other tenants' jobs wait for the backfill
            complete &= done || !jobs;
            kinds.push((
                kind,
                AccountStateCounts {
                    queued,
                    scheduled: n("scheduled"),
                    running,
                    retrying: n("retrying"),
                    succeeded: n("succeeded"),
                    partial: n("partial"),
                    dead: n("dead"),
                    cancelled: n("cancelled"),
                },
            ));
        }
        Ok(AccountCounts { kinds, complete })
    }

    /// Counts up to a batch of one queue's jobs made before the counters existed; true
    /// once all are counted (then one EXISTS per call).
    pub(super) async fn backfill_account_counts(&self, k: &QueueKeys) -> Result<bool, StoreError> {
        let done: i64 = call_declaring(&mut self.connection(), || {
            let mut call = scripts::ACCOUNT_COUNTS.key(k.key("acdone"));
            for suffix in ["all", "acend", "accur"] {
                call.key(k.key(suffix));
            }
            call.arg(k.prefix()).arg("backfill").arg(BACKFILL_BATCH);
            call
        })
        .await?;
        Ok(done == 1)
    }

    /// A job moving between queues leaves the counts of `k` before the move (`Leave`)
    /// and joins those of its new queue after it (`Join`).
    pub(super) async fn recount(&self, k: &QueueKeys, op: Recount, id: &crate::job::JobId) -> Result<(), StoreError> {
        let op = match op {
            Recount::Leave => "leave",
            Recount::Join => "join",
        };
        let _: i64 = call_declaring(&mut self.connection(), || {
            let mut call = scripts::ACCOUNT_COUNTS.key(k.job(id));
            call.arg(k.prefix()).arg(op).arg(id.as_str());
            call
        })
        .await?;
        Ok(())
    }
}
