//! Why a job waits, as the API answers it (`waiting` on submit, `GET /v1/jobs/{id}`,
//! listings and event streams): the queue's own reason (`waiting.lua`), overridden by
//! what the account's guards hold for the job's kind (its seller's, when accounts share
//! one's credentials: `accounts.limits_of`): a quota cooldown for the kinds a cooldown
//! stops, an open circuit breaker of an operation the kind calls, or the seller's rate
//! (a limiter slot further off than a run waits for in its call, as after a 429).
//!
//! The guards live under the resilience keys (`<ns>:rl|cb|cd:<account>…`), outside the
//! queue's hash tag, so the queue's script cannot read them; they are read here, next to
//! the script and concurrently with it: one more bounded read per job (one per distinct
//! account for a listing page), no scan. Which guards stop a kind is
//! [`drover::resilience::kind_operations`]' rule: the operations the kind calls (found by
//! the fairness audit of 2026-12-06, fifth: a job whose seller's breaker was open, or
//! whose limiter a 429 held, said `queued` though it would park once leased).
use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use drover::job::{AccountId, JobId, JobKind};
use drover::queue::{WaitReason, Waiting};
use drover::resilience::kind_operations::operations;
use drover::resilience::{stopped_by_quota_cooldown, AccountLimits, BreakerPhase, Cooldown, Operation};
use serde_json::json;

use crate::error::ApiError;
use crate::state::AppState;

/// A limiter slot further off than this is a wait for the seller's rate: a run would
/// park for it (the worker's default `jobs.park_after_ms`) rather than wait in its call.
const RATE_WAIT_SHOWN: Duration = Duration::from_secs(1);

/// What the waiting answer needs to know of a job.
#[derive(Debug, Clone)]
pub struct WaitingJob<'a> {
    pub id: &'a JobId,
    pub account_id: Option<&'a str>,
}

/// What an account's guards hold for a job of one kind now.
#[derive(Debug, Clone, PartialEq)]
pub enum Guard {
    /// The account's report-quota cooldown (the kinds that call a report operation).
    Cooldown(Cooldown),
    /// The circuit breaker of an operation the kind calls is open until `until`.
    Breaker { operation: Operation, until: DateTime<Utc> },
    /// The next slot of an operation the kind calls is at `until` (after a 429, or a
    /// seller's slow rate in use by its other jobs).
    Rate { operation: Operation, until: DateTime<Utc> },
}

impl Guard {
    fn until(&self) -> DateTime<Utc> {
        match self {
            Guard::Cooldown(cd) => cd.until,
            Guard::Breaker { until, .. } | Guard::Rate { until, .. } => *until,
        }
    }
}

/// The guard that holds a job of `kind` on `limits` longest, in this order: the quota
/// cooldown (when it stops the kind), an open breaker, a far limiter slot of a bucket
/// the workers have used (or a 429 held).
pub fn guard_of(kind: JobKind, limits: &AccountLimits) -> Option<Guard> {
    if stopped_by_quota_cooldown(kind) {
        if let Some(cd) = limits.cooldown.as_ref().filter(|cd| cd.until > limits.at) {
            return Some(Guard::Cooldown(cd.clone()));
        }
    }
    let ops = || operations(kind).iter().filter_map(|op| limits.operations.get(op).map(|l| (*op, l)));
    let breaker = ops()
        .filter(|(_, l)| l.breaker.state == BreakerPhase::Open)
        .filter_map(|(op, l)| l.breaker.open_until.filter(|u| *u > limits.at).map(|until| (op, until)))
        .max_by_key(|(_, until)| *until);
    if let Some((operation, until)) = breaker {
        return Some(Guard::Breaker { operation, until });
    }
    let far = limits.at + chrono::TimeDelta::milliseconds(RATE_WAIT_SHOWN.as_millis() as i64);
    // (a bucket with no state is the cold start's guess, not a wait the workers met)
    ops()
        .filter(|(_, l)| l.seen && l.next_slot_at > far)
        .max_by_key(|(_, l)| l.next_slot_at)
        .map(|(operation, l)| Guard::Rate {
            operation,
            until: l.next_slot_at,
        })
}

/// Why the job waits (`None` when it is running, finished or gone).
pub async fn waiting(state: &AppState, job: WaitingJob<'_>) -> Result<Option<Waiting>, ApiError> {
    Ok(waiting_many(state, std::slice::from_ref(&job)).await?.pop().flatten())
}

/// [`waiting`] for many jobs, in order: one round trip to the queue and one for the
/// guards of their distinct accounts, run concurrently. Only the queue's read can fail
/// the answer.
pub async fn waiting_many(state: &AppState, jobs: &[WaitingJob<'_>]) -> Result<Vec<Option<Waiting>>, ApiError> {
    let ids: Vec<(&JobId, &str)> = jobs.iter().map(|j| (j.id, j.account_id.unwrap_or(""))).collect();
    // each distinct account and kind once: its guards for the operations the kind calls
    let mut wanted: Vec<(AccountId, JobKind)> = Vec::new();
    for job in jobs {
        if let Some(account) = guarded_account(job.account_id) {
            let pair = (account, job.id.kind());
            if !wanted.contains(&pair) {
                wanted.push(pair);
            }
        }
    }
    let (bases, guards) = tokio::join!(state.store().waiting_many(&ids), guards_of(state, &wanted));
    let bases = bases?;
    // Guards that cannot be read (their keys on a shard that is down) leave the queue's
    // own reason, as a submit does: the jobs were read, and the answer must show them.
    let guards: HashMap<(AccountId, JobKind), Guard> = match guards {
        Ok(read) => wanted.into_iter().zip(read).filter_map(|(pair, g)| g.map(|g| (pair, g))).collect(),
        // (logged by `guards_of`, once an outage)
        Err(_) => HashMap::new(),
    };
    Ok(jobs
        .iter()
        .zip(bases)
        .map(|(job, base)| {
            let guard = guarded_account(job.account_id).and_then(|a| guards.get(&(a, job.id.kind())));
            combine(base, guard)
        })
        .collect())
}

/// What the account's guards hold for a job of `kind`: what a submit reads beside its
/// enqueue, whose reply carries the queue's reason — for the kinds a quota cooldown stops
/// (backfill) only, as before the other guards were read: a read on every submit cost
/// `POST /v1/jobs` about a tenth of its throughput and 0.3 ms at the median (an A/B of
/// 2026-12-07, docs/benchmarks.md), and a sync or cleanup seldom waits for its seller's
/// breaker or rate by the time it is leased. `GET`, listings and streams read them all.
pub async fn guard_for(state: &AppState, kind: JobKind, account: &AccountId) -> Result<Option<Guard>, ApiError> {
    if !stopped_by_quota_cooldown(kind) {
        return Ok(None);
    }
    Ok(guards_of(state, &[(account.clone(), kind)]).await?.pop().flatten())
}

/// The guard of each account and kind of `wanted`, in order: one script call each (the
/// operations the kind calls and the cooldown of the account whose limits it uses).
async fn guards_of(state: &AppState, wanted: &[(AccountId, JobKind)]) -> Result<Vec<Option<Guard>>, ApiError> {
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let accounts: Vec<AccountId> = wanted.iter().map(|(a, _)| a.clone()).collect();
    let limits = limits_of(state, &accounts).await;
    let calls: Vec<(AccountId, &[Operation])> = limits
        .into_iter()
        .zip(wanted)
        .map(|(l, (_, kind))| (l, operations(*kind)))
        .collect();
    let read = match state.accounts().resilience.snapshots(&calls).await {
        Ok(read) => {
            if GUARDS_UNREAD.answered() {
                tracing::info!("the accounts' guards are read again");
            }
            read
        }
        Err(e) => {
            if GUARDS_UNREAD.failed() {
                tracing::warn!(
                    error = %e,
                    accounts = wanted.len(),
                    "could not read the accounts' guards; answers say the queue's reasons (logged again when they are read)"
                );
            } else {
                tracing::debug!(error = %e, accounts = wanted.len(), "the accounts' guards still cannot be read");
            }
            return Err(e.into());
        }
    };
    Ok(read.iter().zip(wanted).map(|(l, (_, kind))| guard_of(*kind, l)).collect())
}

/// Guards that could not be read: one outage, logged at its first failed read and at the
/// first read after it (before, found by the sixth audits of 2026-12-06, each read logged
/// a WARN: every `GET` of a waiting job, every submit, each event stream every second).
/// Reads that fail for some accounts and not others (one shard down) log each change.
static GUARDS_UNREAD: drover::outage::Outage = drover::outage::Outage::new();

/// How long the answer waits for the database to say which accounts share a seller's
/// limits (once an account; see `AccountRepo::limits_of`): a submit's job is stored by then, and its answer must not wait on a slow
/// database (nor time out, telling the client nothing was made).
const LIMITS_READ: Duration = Duration::from_millis(500);

/// The account whose limits (and so guards) each of `accounts` counts against, in
/// order: the seller's first account when several share its credentials
/// (`accounts.limits_of`). Without an answer from the database within [`LIMITS_READ`],
/// the account itself: the answer then misses only a guard entered under the
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

/// The account whose guards could hold a job, if it names one.
fn guarded_account(account_id: Option<&str>) -> Option<AccountId> {
    account_id.and_then(|a| AccountId::parse(a).ok())
}

/// The queue's reason, unless the account's guard outlasts it: a queued job, or one
/// due before the guard lets it through, then waits for the guard (`detail.then` says
/// what it waits for after); an account-busy job too for a cooldown or an open breaker
/// (the seller's rate is what the busy account's own runs use). A paused queue, one
/// without a live worker (also after a wait, as the queue's `detail.then`), a
/// prefetched job, waits that end later than the guard and a run's own park (but for a
/// cooldown, as before) keep their own reason.
pub fn combine(base: Option<Waiting>, guard: Option<&Guard>) -> Option<Waiting> {
    let base = base?;
    let Some(guard) = guard else { return Some(base) };
    let until = guard.until();
    // (a prefetched job is a worker's already: the guard meets it once it starts; a
    // wait that ends in a paused queue, or one no worker serves, goes on past it)
    let then = base.detail.get("then").and_then(|t| t.as_str());
    let busy_too = !matches!(guard, Guard::Rate { .. });
    // a run's own park names its guard and the worker's message already
    let parked = matches!(
        base.reason,
        WaitReason::RateLimit | WaitReason::BreakerOpen | WaitReason::QuotaCooldown
    );
    if matches!(base.reason, WaitReason::QueuePaused | WaitReason::NoWorker | WaitReason::Prefetched)
        || (base.reason == WaitReason::AccountBusy && !busy_too)
        || (parked && !matches!(guard, Guard::Cooldown(_)))
        || matches!(then, Some("queue_paused" | "no_worker"))
        || base.until.is_some_and(|u| u >= until)
    {
        return Some(base);
    }
    let (reason, detail) = match guard {
        Guard::Cooldown(cd) => {
            let report_ops: Vec<&str> = JobKind::ALL
                .iter()
                .flat_map(|k| operations(*k))
                .filter(|op| op.is_report())
                .map(|op| op.name())
                .collect();
            (
                WaitReason::QuotaCooldown,
                json!({
                    "scope": "account",
                    "cause": cd.reason,
                    "level": cd.level,
                    "since": cd.since,
                    "operations": report_ops,
                    "then": base.reason,
                }),
            )
        }
        Guard::Breaker { operation, .. } => (
            WaitReason::BreakerOpen,
            json!({
                "scope": "account",
                "operation": operation.name(),
                "message": format!("{}: the circuit breaker is open after failed calls", operation.name()),
                "then": base.reason,
            }),
        ),
        Guard::Rate { operation, .. } => (
            WaitReason::RateLimit,
            json!({
                "scope": "account",
                "operation": operation.name(),
                "message": format!("{}: the next call the seller's rate allows", operation.name()),
                "then": base.reason,
            }),
        ),
    };
    Some(Waiting {
        reason,
        until: Some(until),
        detail,
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

    fn cooldown(ends_in_s: i64) -> Guard {
        Guard::Cooldown(Cooldown {
            until: Utc::now() + Duration::seconds(ends_in_s),
            reason: "429 on createReport".into(),
            level: 1,
            since: Utc::now(),
        })
    }

    #[test]
    fn a_queued_or_busy_job_waits_for_the_cooldown_and_says_what_comes_after() {
        let cd = cooldown(600);
        for base in [WaitReason::Queued, WaitReason::AccountBusy] {
            let w = combine(Some(wait(base, None)), Some(&cd)).unwrap();
            assert_eq!(w.reason, WaitReason::QuotaCooldown);
            assert_eq!(w.until, Some(cd.until()));
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
        let later = wait(WaitReason::Scheduled, Some(cd.until() + Duration::seconds(1)));
        assert_eq!(combine(Some(later.clone()), Some(&cd)), Some(later));
        let sooner = wait(WaitReason::RetryBackoff, Some(cd.until() - Duration::seconds(1)));
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
            let mut base = wait(WaitReason::Scheduled, Some(cd.until() - Duration::seconds(30)));
            base.detail = json!({"then": then});
            assert_eq!(combine(Some(base.clone()), Some(&cd)), Some(base), "then {then}");
        }
    }

    #[test]
    fn an_open_breaker_holds_a_busy_job_and_the_sellers_rate_only_a_queued_one() {
        let until = Utc::now() + Duration::seconds(30);
        let breaker = Guard::Breaker {
            operation: Operation::GetListingsItem,
            until,
        };
        let rate = Guard::Rate {
            operation: Operation::GetOrders,
            until,
        };
        for (guard, reason) in [(&breaker, WaitReason::BreakerOpen), (&rate, WaitReason::RateLimit)] {
            let w = combine(Some(wait(WaitReason::Queued, None)), Some(guard)).unwrap();
            assert_eq!((w.reason, w.until), (reason, Some(until)));
            assert_eq!(w.detail["then"], json!(WaitReason::Queued));
            assert!(w.detail["operation"].is_string(), "{w:?}");
        }
        let busy = wait(WaitReason::AccountBusy, None);
        assert_eq!(combine(Some(busy.clone()), Some(&breaker)).unwrap().reason, WaitReason::BreakerOpen);
        assert_eq!(
            combine(Some(busy.clone()), Some(&rate)),
            Some(busy),
            "the busy account's own runs use its rate"
        );
    }
}
