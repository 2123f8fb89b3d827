//! Why a job waits, as the API answers it (`waiting` on submit, `GET /v1/jobs/{id}`,
//! listings and event streams): the queue's own reason (`waiting.lua`), overridden by
//! the account's quota cooldown for the kinds a cooldown stops (its seller's, when
//! accounts share one's credentials: `accounts.limits_of`).
//!
//! The cooldown lives under the resilience keys (`<ns>:cd:<account>`), outside the
//! queue's hash tag, so the queue's script cannot read it; it is read here, next to the
//! script and concurrently with it: one more bounded read per job (one per distinct
//! account for a listing page), no scan. Which kinds a cooldown stops is
//! [`drover::resilience::kind_operations`]' rule: those calling a report operation
//! (backfill).
use std::collections::HashMap;
use std::time::Duration;

use drover::job::{AccountId, JobId, JobKind};
use drover::queue::{WaitReason, Waiting};
use drover::resilience::kind_operations::operations;
use drover::resilience::{stopped_by_quota_cooldown, Cooldown};
use serde_json::json;

use crate::error::ApiError;
use crate::state::AppState;

/// What the waiting answer needs to know of a job.
#[derive(Debug, Clone)]
pub struct WaitingJob<'a> {
    pub id: &'a JobId,
    pub account_id: Option<&'a str>,
}

/// Why the job waits (`None` when it is running, finished or gone).
pub async fn waiting(state: &AppState, job: WaitingJob<'_>) -> Result<Option<Waiting>, ApiError> {
    Ok(waiting_many(state, std::slice::from_ref(&job)).await?.pop().flatten())
}

/// [`waiting`] for many jobs, in order: one round trip to the queue and one for the
/// cooldowns of their distinct accounts, run concurrently. Only the queue's read can
/// fail the answer.
pub async fn waiting_many(state: &AppState, jobs: &[WaitingJob<'_>]) -> Result<Vec<Option<Waiting>>, ApiError> {
    let ids: Vec<(&JobId, &str)> = jobs.iter().map(|j| (j.id, j.account_id.unwrap_or(""))).collect();
    let mut accounts: Vec<AccountId> = Vec::new();
    for job in jobs {
        if let Some(account) = cooled_account(job.id.kind(), job.account_id) {
            if !accounts.contains(&account) {
                accounts.push(account);
            }
        }
    }
    let resilience = &state.accounts().resilience;
    let cooldowns = async {
        let limits = limits_of(state, &accounts).await;
        resilience.cooldowns(&limits).await
    };
    let (bases, cooldowns) = tokio::join!(state.store().waiting_many(&ids), cooldowns);
    let bases = bases?;
    // A cooldown that cannot be read (its key on a shard that is down) leaves the queue's
    // own reason, as a submit does: the jobs were read, and the answer must show them.
    let cooldowns = cooldowns.unwrap_or_else(|e| {
        tracing::warn!(error = %e, accounts = accounts.len(), "could not read the accounts' cooldowns; answering with the queue's reasons");
        vec![None; accounts.len()]
    });
    let cooldowns: HashMap<AccountId, Cooldown> = accounts.into_iter().zip(cooldowns).filter_map(|(a, c)| c.map(|c| (a, c))).collect();
    Ok(jobs
        .iter()
        .zip(bases)
        .map(|(job, base)| {
            let cooldown = cooled_account(job.id.kind(), job.account_id).and_then(|a| cooldowns.get(&a));
            combine(base, cooldown)
        })
        .collect())
}

/// The account's active cooldown when it could stop a job of `kind` (no read otherwise):
/// what a submit reads beside its enqueue, whose reply carries the queue's reason.
pub async fn cooldown_of(state: &AppState, kind: JobKind, account: &AccountId) -> Result<Option<Cooldown>, ApiError> {
    let Some(account) = cooled_account(kind, Some(account.as_str())) else {
        return Ok(None);
    };
    let resilience = &state.accounts().resilience;
    let limits = limits_of(state, std::slice::from_ref(&account)).await;
    Ok(resilience.cooldowns(&limits).await?.pop().flatten())
}

/// How long the answer waits for the database to say which accounts share a seller's
/// limits (once an account; see `AccountRepo::limits_of`): a submit's job is stored by then, and its answer must not wait on a slow
/// database (nor time out, telling the client nothing was made).
const LIMITS_READ: Duration = Duration::from_millis(500);

/// The account whose limits (and so cooldown) each of `accounts` counts against, in
/// order: the seller's first account when several share its credentials
/// (`accounts.limits_of`). Without an answer from the database within [`LIMITS_READ`],
/// the account itself: the answer then misses only a cooldown entered under the
/// seller's other account.
async fn limits_of(state: &AppState, accounts: &[AccountId]) -> Vec<AccountId> {
    if accounts.is_empty() || !state.migrated() {
        return accounts.to_vec();
    }
    let shared = match tokio::time::timeout(LIMITS_READ, state.accounts().repo.limits_of(accounts)).await {
        Ok(Ok(shared)) => shared,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "could not read which accounts share a seller's limits; using their own");
            HashMap::new()
        }
        Err(_) => {
            tracing::debug!(
                waited_ms = LIMITS_READ.as_millis() as u64,
                "no answer on which accounts share a seller's limits; using their own"
            );
            HashMap::new()
        }
    };
    accounts.iter().map(|a| shared.get(a).unwrap_or(a).clone()).collect()
}

/// The account whose cooldown could stop a job of `kind`, if any.
fn cooled_account(kind: JobKind, account_id: Option<&str>) -> Option<AccountId> {
    if !stopped_by_quota_cooldown(kind) {
        return None;
    }
    account_id.and_then(|a| AccountId::parse(a).ok())
}

/// The queue's reason, unless the account's active cooldown outlasts it: a queued or
/// account-busy job, or one due before the cooldown ends, then waits for the cooldown
/// (`detail.then` says what it waits for after). A paused queue, one without a live
/// worker (also after a wait, as the queue's `detail.then`) and waits that end later
/// than the cooldown keep their own reason.
pub fn combine(base: Option<Waiting>, cooldown: Option<&Cooldown>) -> Option<Waiting> {
    let base = base?;
    let Some(cd) = cooldown else { return Some(base) };
    // (a prefetched job is a worker's already: the cooldown meets it once it starts; a
    // wait that ends in a paused queue, or one no worker serves, goes on past it)
    let then = base.detail.get("then").and_then(|t| t.as_str());
    if matches!(base.reason, WaitReason::QueuePaused | WaitReason::NoWorker | WaitReason::Prefetched)
        || matches!(then, Some("queue_paused" | "no_worker"))
        || base.until.is_some_and(|u| u >= cd.until)
    {
        return Some(base);
    }
    let report_ops: Vec<&str> = JobKind::ALL
        .iter()
        .flat_map(|k| operations(*k))
        .filter(|op| op.is_report())
        .map(|op| op.name())
        .collect();
    Some(Waiting {
        reason: WaitReason::QuotaCooldown,
        until: Some(cd.until),
        detail: json!({
            "scope": "account",
            "cause": cd.reason,
            "level": cd.level,
            "since": cd.since,
            "operations": report_ops,
            "then": base.reason,
        }),
    })
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, Utc};

    use super::*;

    fn wait(reason: WaitReason, until: Option<chrono::DateTime<Utc>>) -> Waiting {
        Waiting {
            reason,
            until,
            detail: json!({}),
        }
    }

    fn cooldown(ends_in_s: i64) -> Cooldown {
        Cooldown {
            until: Utc::now() + Duration::seconds(ends_in_s),
            reason: "429 on createReport".into(),
            level: 1,
            since: Utc::now(),
        }
    }

    #[test]
    fn a_queued_or_busy_job_waits_for_the_cooldown_and_says_what_comes_after() {
        let cd = cooldown(600);
        for base in [WaitReason::Queued, WaitReason::AccountBusy] {
            let w = combine(Some(wait(base, None)), Some(&cd)).unwrap();
            assert_eq!(w.reason, WaitReason::QuotaCooldown);
            assert_eq!(w.until, Some(cd.until));
            assert_eq!(w.detail["then"], json!(base));
            assert_eq!(
                w.detail["operations"],
                json!(["createReport", "getReport", "getReportDocument", "getReports"])
            );
        }
    }

    #[test]
    fn a_wait_that_outlasts_the_cooldown_or_a_paused_queue_keeps_its_reason() {
        let cd = cooldown(60);
        let later = wait(WaitReason::Scheduled, Some(cd.until + Duration::seconds(1)));
        assert_eq!(combine(Some(later.clone()), Some(&cd)), Some(later));
        let sooner = wait(WaitReason::RetryBackoff, Some(cd.until - Duration::seconds(1)));
        assert_eq!(combine(Some(sooner), Some(&cd)).unwrap().reason, WaitReason::QuotaCooldown);
        let paused = wait(WaitReason::QueuePaused, None);
        assert_eq!(combine(Some(paused.clone()), Some(&cd)), Some(paused));
        assert_eq!(combine(None, Some(&cd)), None, "a running job does not wait");
    }

    /// Found by the job-story audit of 2026-12-06: a scheduled or retrying backfill due
    /// before its account's cooldown ended was told the cooldown, then `scheduled`,
    /// though its queue was paused (or had no worker) and it waited on for that: the
    /// queue's `detail.then` was dropped.
    #[test]
    fn a_wait_whose_queue_is_paused_or_unserved_after_it_keeps_its_reason() {
        let cd = cooldown(60);
        for then in ["queue_paused", "no_worker"] {
            let mut base = wait(WaitReason::Scheduled, Some(cd.until - Duration::seconds(30)));
            base.detail = json!({"then": then});
            assert_eq!(combine(Some(base.clone()), Some(&cd)), Some(base), "then {then}");
        }
    }

    #[test]
    fn only_kinds_a_cooldown_stops_look_for_one() {
        assert!(cooled_account(JobKind::Backfill, Some("acme")).is_some());
        assert!(cooled_account(JobKind::Sync, Some("acme")).is_none());
        assert!(cooled_account(JobKind::Cleanup, Some("acme")).is_none());
        assert!(cooled_account(JobKind::Backfill, None).is_none());
    }
}
