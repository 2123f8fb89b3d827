//! The resilience layer's verdicts (`drover::resilience`) in call terms, for the guard
//! in `call`: an open breaker, a cooldown or a slot too far away come back as waits for
//! the job; a store (Redis) that cannot be reached stops the run without using an
//! attempt; Redis's own words go to the log only.
use std::time::Duration;

use drover::resilience::ResilienceError;

use super::error::CallError;

/// How long a run stopped for the token service waits before it runs again.
const TOKEN_OUTAGE_WAIT: Duration = Duration::from_secs(10);

/// No access token (the token service failed, timed out or is throttled; credentials it
/// refused are told apart before): the call was not sent, and the run stops to run
/// again without using an attempt, as in an outage of the database or of Redis (found
/// by the worker-resilience audit of 2026-12-07, second: as a transient failure it used
/// an attempt a second, and a sync went dead, a cleanup's SKUs and a backfill's windows
/// failed, within seconds of the token service going down).
pub(super) fn token_unavailable(name: &'static str, text: &str) -> CallError {
    CallError::Interrupted {
        op: name,
        reason: format!("access token: {text}"),
        retry_after: TOKEN_OUTAGE_WAIT,
    }
}

/// The resilience layer's verdicts in call terms.
pub(super) fn from_resilience(name: &'static str, e: ResilienceError) -> CallError {
    match e {
        ResilienceError::BreakerOpen { until, probing, .. } => CallError::BreakerOpen { op: name, until, probing },
        ResilienceError::Cooldown { until, reason } => CallError::Cooldown { op: name, until, reason },
        ResilienceError::WaitTooLong(wait) => CallError::RateLimited {
            op: name,
            retry_after: wait,
            quota: false,
        },
        ResilienceError::Cancelled => CallError::Cancelled,
        ResilienceError::Token(text) => token_unavailable(name, &text),
        // Redis's own words (and a script's id and line) stay in the log: the job and
        // its items, which tenants read, say what happened in ours.
        ResilienceError::Store(text) => {
            log_store_failure(name, &text);
            CallError::Transient {
                op: name,
                reason: "the rate-limit store (Redis) failed; the call was not sent".into(),
            }
        }
        // An outage of the store stops the run as one of the database does: no call goes
        // out without its slot, and the job runs again without using an attempt (a
        // cleanup's SKUs stay pending rather than each failing in turn).
        ResilienceError::Unavailable(text) => {
            log_store_failure(name, &text);
            CallError::Interrupted {
                op: name,
                reason: "the rate-limit store (Redis) cannot be reached".into(),
                retry_after: STORE_RETRY,
            }
        }
    }
}

/// How long a run stopped by an unreachable rate-limit store waits before its job runs
/// again (as one stopped by an unreachable database).
const STORE_RETRY: Duration = Duration::from_secs(2);

/// Every call meets a store that is down (a cleanup's every SKU, every run of every job
/// while it lasts): a WARN a minute at most, the rest at debug.
fn log_store_failure(op: &'static str, error: &str) {
    if store_failure_is_news() {
        tracing::warn!(
            op,
            error = %error,
            "the rate-limit store failed; the call was not sent (further failures within a minute at debug)"
        );
    } else {
        tracing::debug!(op, error = %error, "the rate-limit store failed; the call was not sent");
    }
}

/// When the rate-limit store's failure was last logged at WARN (Unix seconds).
static STORE_FAILURE_LOGGED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Whether a failure of the rate-limit store now should be logged at WARN: the first in
/// a minute.
fn store_failure_is_news() -> bool {
    use std::sync::atomic::Ordering;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let last = STORE_FAILURE_LOGGED.load(Ordering::Relaxed);
    now >= last + 60
        && STORE_FAILURE_LOGGED
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover::JobError;

    #[test]
    fn a_store_that_cannot_be_reached_stops_the_run_and_one_that_fails_fails_the_call() {
        let refused = ResilienceError::Unavailable("Connection refused (os error 111)".into());
        let out = from_resilience("deleteListingsItem", refused);
        assert!(
            matches!(&out, CallError::Interrupted { op: "deleteListingsItem", retry_after, .. } if *retry_after == STORE_RETRY),
            "{out:?}"
        );
        assert!(!out.to_string().contains("os error"), "Redis's words reached the job: {out}");
        assert!(matches!(JobError::from(out), JobError::Unavailable { .. }));

        let wrong = ResilienceError::Store("WRONGTYPE Operation against a key holding the wrong kind of value".into());
        let failed = from_resilience("deleteListingsItem", wrong);
        assert!(matches!(&failed, CallError::Transient { .. }), "{failed:?}");
        assert!(!failed.to_string().contains("WRONGTYPE"), "Redis's words reached the job: {failed}");
    }
}
