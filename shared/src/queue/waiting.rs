//! Why a job is not running: the answer `GET /v1/jobs/{id}` gives as `waiting`.
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::codec::ms_to_time;
use super::StoreError;

/// How long a queue Redis has not served (no fetch, renewal or beat: every live worker
/// makes one on each queue it serves every heartbeat) has been without a live worker
/// (`NO_WORKER_MS` in waiting_of.lua).
pub const NO_WORKER: std::time::Duration = std::time::Duration::from_secs(15);

/// What a queued, scheduled or retrying job waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WaitReason {
    /// Its `run_at` / delay has not come.
    Scheduled,
    /// A failed attempt's backoff.
    RetryBackoff,
    /// Parked: its account's limiter has no slot soon enough.
    RateLimit,
    /// Parked: its account is in a report-quota cooldown.
    QuotaCooldown,
    /// Parked: the account's circuit breaker for an operation is open.
    BreakerOpen,
    /// Its account already has as many runs as its per-account cap allows.
    AccountBusy,
    /// The kind's queue is paused.
    QueuePaused,
    /// No live worker has served the kind's queue for [`NO_WORKER`] (none runs, or
    /// none serves the kind): it starts once one does.
    NoWorker,
    /// Redis restarted and may have lost leases: nothing is leased until every live
    /// worker has found its lease gone, a lease and a second after the restart was seen.
    RestartHold,
    /// Waiting for a worker slot, taking turns with other accounts.
    Queued,
    /// Leased by a worker ahead of a free slot (its prefetch); starts when one frees.
    Prefetched,
}

impl WaitReason {
    /// The name in JSON and in the `reason` label of `/metrics`.
    pub fn as_str(self) -> &'static str {
        match self {
            WaitReason::Scheduled => "scheduled",
            WaitReason::RetryBackoff => "retry_backoff",
            WaitReason::RateLimit => "rate_limit",
            WaitReason::QuotaCooldown => "quota_cooldown",
            WaitReason::BreakerOpen => "breaker_open",
            WaitReason::AccountBusy => "account_busy",
            WaitReason::QueuePaused => "queue_paused",
            WaitReason::NoWorker => "no_worker",
            WaitReason::RestartHold => "restart_hold",
            WaitReason::Queued => "queued",
            WaitReason::Prefetched => "prefetched",
        }
    }
}

/// `reason`, the time it ends when known, and what the reason needs to be understood
/// (the operation and message of a park, the cap and the runs holding an account,
/// the position estimate of a queued job).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waiting {
    pub reason: WaitReason,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
    pub detail: serde_json::Value,
}

impl Waiting {
    /// Reads the waiting script's reply: empty for a job that is not waiting.
    pub(super) fn from_reply(reply: Vec<String>) -> Result<Option<Self>, StoreError> {
        match reply.as_slice() {
            [] => Ok(None),
            [reason, until, detail] => Self::from_parts(reason, until, detail).map(Some),
            _ => Err(StoreError::Protocol(format!("waiting reply had {} parts", reply.len()))),
        }
    }

    /// The three parts `waiting_of` (Lua) answers: reason, until (ms, or empty), detail JSON.
    pub(super) fn from_parts(reason: &str, until: &str, detail: &str) -> Result<Self, StoreError> {
        let reason: WaitReason =
            serde_json::from_value(serde_json::Value::String(reason.to_owned())).map_err(|e| StoreError::Protocol(e.to_string()))?;
        let until = until.parse::<i64>().ok().map(ms_to_time);
        let detail = serde_json::from_str(detail).map_err(|e| StoreError::Protocol(e.to_string()))?;
        Ok(Self { reason, until, detail })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scripts_call_a_queue_unserved_after_the_same_time() {
        let lua = include_str!("lua/waiting_of.lua");
        assert!(lua.contains(&format!("local NO_WORKER_MS = {}\n", NO_WORKER.as_millis())));
    }
}
