//! What a marketplace call can end in. The variant decides the job's fate through
//! `From<CallError> for JobError`; texts carry the operation, the status and SP-API's
//! own error code and message, never a token, secret or URL.
use std::time::Duration;

use chrono::{DateTime, Utc};
use drover::JobError;

/// The shortest snooze a rate-limit outcome asks for, so a job never spins on a
/// hint that rounds to zero.
const MIN_SNOOZE: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CallError {
    /// 429 (or no limiter slot soon enough). `quota` is true for report operations: the
    /// account's quota cooldown has been entered and every report call waits it out.
    #[error("{op}: rate limited (retry after {retry_after:?}{})", if *.quota { ", report quota" } else { "" })]
    RateLimited {
        op: &'static str,
        retry_after: Duration,
        quota: bool,
    },
    /// 5xx, timeout, connection reset, an unreadable 2xx body: worth another attempt.
    #[error("{op}: transient failure: {reason}")]
    Transient { op: &'static str, reason: String },
    /// A 4xx that retrying cannot fix (also 401 that a fresh token did not cure, and
    /// credentials the token service rejects).
    #[error("{op}: permanent failure ({status}): {reason}")]
    Permanent { op: &'static str, status: u16, reason: String },
    /// 404: the resource does not exist (callers that expect that turn it into a value).
    #[error("{op}: not found")]
    NotFound { op: &'static str },
    /// This account+operation's circuit is open after too many failures. `probing`: it
    /// is half-open and another call's probe is out; the refusal waits on that probe's
    /// answer, so it is not counted against the job's snooze cap (a probe that hangs for
    /// the call's timeout would otherwise cost each waiting job a count every second).
    #[error("{op}: circuit open until {until}{}", if *.probing { " (another call is probing it)" } else { "" })]
    BreakerOpen {
        op: &'static str,
        until: DateTime<Utc>,
        probing: bool,
    },
    /// The account is in report-quota cooldown; report calls are not attempted. The text
    /// names the operation first, as every other refusal's does: a parked job's waiting
    /// reads it from there (found by the fairness audit of 2026-12-07, second: it had
    /// no `operation`).
    #[error("{op}: account in report quota cooldown until {until}: {reason}")]
    Cooldown {
        op: &'static str,
        until: DateTime<Utc>,
        reason: String,
    },
    #[error("cancelled")]
    Cancelled,
    /// The call was not sent and the run must stop, to run again after `retry_after`
    /// without using an attempt: the database could not note the call before it went
    /// out (`jobs::note_sent`), or the rate-limit store could not be reached for its
    /// slot, breaker or cooldown (`verdicts::from_resilience`), as in an outage.
    #[error("{op}: not sent: {reason}")]
    Interrupted {
        op: &'static str,
        reason: String,
        retry_after: Duration,
    },
}

impl CallError {
    /// Another attempt later may succeed (transient, rate limit, breaker, cooldown).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            CallError::Transient { .. }
                | CallError::RateLimited { .. }
                | CallError::BreakerOpen { .. }
                | CallError::Cooldown { .. }
                | CallError::Interrupted { .. }
        )
    }
    pub fn is_transient(&self) -> bool {
        matches!(self, CallError::Transient { .. })
    }
    /// A refusal of the account's access, not of the request: credentials the token
    /// service rejects, a 401 a fresh token did not cure, a 403. Every call of the
    /// account would meet it, so a job stops at it rather than record each item failed.
    pub fn is_account_refusal(&self) -> bool {
        matches!(self, CallError::Permanent { status: 401 | 403, .. })
            || matches!(self, CallError::Permanent { reason, .. } if reason.starts_with("credentials rejected"))
    }
    pub fn is_not_found(&self) -> bool {
        matches!(self, CallError::NotFound { .. })
    }
    /// How long to wait before trying again, when the outcome says (at least 1 s).
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after_at(Utc::now())
    }

    fn retry_after_at(&self, now: DateTime<Utc>) -> Option<Duration> {
        let wait = match self {
            CallError::RateLimited { retry_after, .. } => *retry_after,
            CallError::BreakerOpen { until, .. } | CallError::Cooldown { until, .. } => (*until - now).to_std().unwrap_or_default(),
            _ => return None,
        };
        Some(wait.max(MIN_SNOOZE))
    }
}

impl From<CallError> for JobError {
    fn from(e: CallError) -> Self {
        let reason = e.to_string();
        match e {
            CallError::BreakerOpen { probing: true, .. } => JobError::Held {
                retry_after: e.retry_after().unwrap_or(MIN_SNOOZE),
                reason,
            },
            CallError::RateLimited { .. } | CallError::BreakerOpen { .. } | CallError::Cooldown { .. } => JobError::RateLimited {
                retry_after: e.retry_after().unwrap_or(MIN_SNOOZE),
                reason,
            },
            CallError::Transient { .. } => JobError::Transient(reason),
            CallError::Permanent { .. } | CallError::NotFound { .. } => JobError::Permanent(reason),
            CallError::Cancelled => JobError::Cancelled,
            CallError::Interrupted { retry_after, .. } => JobError::Unavailable { retry_after, reason },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_breaker_and_cooldown_become_snoozes_of_at_least_a_second() {
        let now = Utc::now();
        let cases = [
            CallError::RateLimited {
                op: "getOrders",
                retry_after: Duration::from_millis(10),
                quota: false,
            },
            CallError::BreakerOpen {
                op: "getOrders",
                until: now - chrono::Duration::seconds(5),
                probing: false,
            },
            CallError::Cooldown {
                op: "createReport",
                until: now,
                reason: "429 on createReport".into(),
            },
        ];
        for e in cases {
            assert_eq!(e.retry_after_at(now), Some(MIN_SNOOZE));
            assert!(e.is_retryable());
            assert!(matches!(JobError::from(e), JobError::RateLimited { retry_after, .. } if retry_after >= MIN_SNOOZE));
        }
    }

    #[test]
    fn a_refusal_while_another_call_probes_the_breaker_is_held_not_rate_limited() {
        let e = CallError::BreakerOpen {
            op: "getOrders",
            until: Utc::now() + chrono::Duration::milliseconds(400),
            probing: true,
        };
        assert!(e.to_string().contains("circuit open"), "a park's reason reads this: {e}");
        match JobError::from(e) {
            JobError::Held { retry_after, reason } => {
                assert_eq!(retry_after, MIN_SNOOZE);
                assert!(reason.contains("probing"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_cooldown_snoozes_until_it_ends() {
        let now = Utc::now();
        let e = CallError::Cooldown {
            op: "createReport",
            until: now + chrono::Duration::seconds(600),
            reason: "429 on createReport".into(),
        };
        assert_eq!(e.retry_after_at(now), Some(Duration::from_secs(600)));
        // what waiting_of.lua reads the operation from: `<camelCase>: ` at the start
        assert!(e.to_string().starts_with("createReport: account in report quota cooldown"), "{e}");
    }

    #[test]
    fn the_variant_decides_the_job_fate() {
        let t = CallError::Transient {
            op: "getOrders",
            reason: "503 ServiceUnavailable".into(),
        };
        assert!(matches!(JobError::from(t), JobError::Transient(m) if m.contains("getOrders") && m.contains("503")));
        let p = CallError::Permanent {
            op: "getListingsItem",
            status: 400,
            reason: "InvalidInput: bad SKU".into(),
        };
        assert!(matches!(JobError::from(p), JobError::Permanent(m) if m.contains("InvalidInput")));
        assert!(matches!(
            JobError::from(CallError::NotFound { op: "getReport" }),
            JobError::Permanent(_)
        ));
        assert!(matches!(JobError::from(CallError::Cancelled), JobError::Cancelled));
    }
}
