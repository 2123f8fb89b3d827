//! What happens to a job after a run: the error's class decides, the policy times it.
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::job::{ErrorClass, ErrorInfo};

/// Exponential backoff with full jitter: attempt n waits a uniform random time in
/// `[0, min(max, base * 2^(n-1))]`, so retries of many jobs spread out instead of
/// arriving together.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    #[serde(with = "crate::config::millis")]
    pub base: Duration,
    #[serde(with = "crate::config::millis")]
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(1),
            max: Duration::from_secs(10 * 60),
        }
    }
}

impl RetryPolicy {
    /// The longest wait after run `attempt` (1-based).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let shift = attempt.saturating_sub(1).min(40);
        let factor = 1u64 << shift;
        let ms = (self.base.as_millis() as u64).saturating_mul(factor);
        Duration::from_millis(ms).min(self.max)
    }

    /// A wait for run `attempt`, with `unit` a uniform sample from [0, 1].
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        self.ceiling(attempt).mul_f64(unit.clamp(0.0, 1.0))
    }
}

/// The fate of a failed run.
#[derive(Debug, Clone, PartialEq)]
pub enum Fate {
    Retry(Duration),
    Snooze(Duration),
    Dead,
    Cancelled,
}

/// How much later than the guard's hint a snooze may wake, as a fraction of the hint:
/// many jobs of one account parked by the same guard spread out instead of waking at
/// the same instant (never earlier than the hint).
pub const SNOOZE_JITTER: f64 = 0.2;
/// The most that jitter adds, whatever the hint: the jobs of an account whose 2 h quota
/// cooldown ends still spread over a while, but none wakes long after it.
pub const MAX_SNOOZE_JITTER: Duration = Duration::from_secs(30);

/// Decide what a failure means for a job on run `attempt` of `max_attempts`.
pub fn decide(error: &ErrorInfo, retry_after: Option<Duration>, attempt: u32, max_attempts: u32, policy: &RetryPolicy, unit: f64) -> Fate {
    match error.class {
        ErrorClass::RateLimited => Fate::Snooze(jittered(retry_after.unwrap_or(policy.base), unit)),
        // a shutdown's cut-off runs again at once; an unavailable dependency after its
        // wait, spread like a guard's (before, found when the queue review was checked
        // again on 2026-12-06, every job stopped by one database outage woke at the same
        // instant)
        ErrorClass::Interrupted => Fate::Snooze(jittered(retry_after.unwrap_or(Duration::ZERO), unit)),
        ErrorClass::Permanent | ErrorClass::Decode => Fate::Dead,
        ErrorClass::Cancelled => Fate::Cancelled,
        ErrorClass::Transient | ErrorClass::Timeout | ErrorClass::Panic | ErrorClass::Lost => {
            if attempt >= max_attempts {
                Fate::Dead
            } else {
                Fate::Retry(policy.delay(attempt, unit))
            }
        }
    }
}

/// `hint`, up to a fifth (at most [`MAX_SNOOZE_JITTER`]) later by `unit` in [0, 1].
pub(crate) fn jittered(hint: Duration, unit: f64) -> Duration {
    hint + hint.mul_f64(SNOOZE_JITTER).min(MAX_SNOOZE_JITTER).mul_f64(unit.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn err(class: ErrorClass) -> ErrorInfo {
        ErrorInfo {
            class,
            message: "x".into(),
        }
    }

    #[test]
    fn a_transient_error_with_attempts_left_is_retried() {
        let p = RetryPolicy::default();
        assert!(matches!(decide(&err(ErrorClass::Transient), None, 1, 3, &p, 0.5), Fate::Retry(_)));
    }

    #[test]
    fn a_transient_error_on_the_last_attempt_is_dead() {
        let p = RetryPolicy::default();
        assert_eq!(decide(&err(ErrorClass::Transient), None, 3, 3, &p, 0.5), Fate::Dead);
    }

    #[test]
    fn a_permanent_error_is_dead_at_once() {
        let p = RetryPolicy::default();
        assert_eq!(decide(&err(ErrorClass::Permanent), None, 1, 10, &p, 0.5), Fate::Dead);
    }

    #[test]
    fn rate_limited_snoozes_for_the_servers_hint_even_on_the_last_attempt() {
        let p = RetryPolicy::default();
        let hint = Duration::from_secs(7);
        assert_eq!(decide(&err(ErrorClass::RateLimited), Some(hint), 3, 3, &p, 0.0), Fate::Snooze(hint));
    }

    /// Found by this stop's fairness audit: the jitter was a fifth of the hint, so the jobs
    /// of an account whose quota cooldown (2 h at its last step) ended woke up to 24 min
    /// after it. The spread is bounded in time.
    #[test]
    fn a_long_snooze_wakes_within_a_minute_of_its_hint() {
        let p = RetryPolicy::default();
        let hint = Duration::from_secs(2 * 3600);
        let Fate::Snooze(d) = decide(&err(ErrorClass::RateLimited), Some(hint), 1, 3, &p, 0.999) else {
            panic!("a rate-limited run snoozes")
        };
        assert!(
            d >= hint && d <= hint + Duration::from_secs(60),
            "woke {:?} after the hint",
            d - hint
        );
    }

    #[test]
    fn an_interrupted_run_snoozes_for_its_wait_without_using_an_attempt() {
        let p = RetryPolicy::default();
        let wait = Duration::from_secs(2);
        assert_eq!(decide(&err(ErrorClass::Interrupted), Some(wait), 5, 5, &p, 0.0), Fate::Snooze(wait));
        // the jobs one outage stopped spread over a fifth of the wait
        assert_eq!(
            decide(&err(ErrorClass::Interrupted), Some(wait), 5, 5, &p, 1.0),
            Fate::Snooze(Duration::from_millis(2400))
        );
        assert_eq!(
            decide(&err(ErrorClass::Interrupted), None, 5, 5, &p, 0.9),
            Fate::Snooze(Duration::ZERO)
        );
    }

    #[test]
    fn the_ceiling_doubles_until_the_cap() {
        let p = RetryPolicy {
            base: Duration::from_millis(100),
            max: Duration::from_millis(1000),
        };
        let got: Vec<u128> = (1..=6).map(|a| p.ceiling(a).as_millis()).collect();
        assert_eq!(got, vec![100, 200, 400, 800, 1000, 1000]);
    }

    proptest! {
        #[test]
        fn a_snooze_wakes_no_earlier_than_the_hint_and_at_most_a_fifth_or_30_s_later(unit in 0.0f64..=1.0, hint_ms in 1u64..3_600_000) {
            let hint = Duration::from_millis(hint_ms);
            let Fate::Snooze(d) = decide(&err(ErrorClass::RateLimited), Some(hint), 1, 3, &RetryPolicy::default(), unit) else {
                panic!("a rate-limited run snoozes");
            };
            prop_assert!(d >= hint);
            prop_assert!(d <= hint + hint.mul_f64(SNOOZE_JITTER).min(MAX_SNOOZE_JITTER));
        }

        #[test]
        fn jobs_parked_by_one_guard_do_not_all_wake_at_once(hint_ms in 1000u64..3_600_000) {
            let hint = Duration::from_millis(hint_ms);
            let wake = |unit| decide(&err(ErrorClass::RateLimited), Some(hint), 1, 3, &RetryPolicy::default(), unit);
            prop_assert_ne!(wake(0.1), wake(0.9));
        }

        #[test]
        fn backoff_stays_within_zero_and_the_ceiling(attempt in 1u32..200, unit in 0.0f64..=1.0, base in 1u64..10_000, max in 1u64..3_600_000) {
            let p = RetryPolicy { base: Duration::from_millis(base), max: Duration::from_millis(max) };
            let d = p.delay(attempt, unit);
            prop_assert!(d <= p.ceiling(attempt));
            prop_assert!(d <= Duration::from_millis(max));
        }

        #[test]
        fn the_ceiling_never_shrinks_as_attempts_grow(attempt in 1u32..100) {
            let p = RetryPolicy::default();
            prop_assert!(p.ceiling(attempt + 1) >= p.ceiling(attempt));
        }
    }
}
