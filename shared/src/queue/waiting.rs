//! Why a job is not running: the answer `GET /v1/jobs/{id}` gives as `waiting`.
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::codec::ms_to_time;
use super::StoreError;

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
