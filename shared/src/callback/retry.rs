//! What a try's answer means for a delivery, and when the next try is.
use std::time::Duration;

/// After a try: done, try again later, or stop trying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    Retry,
    GiveUp,
}

impl Verdict {
    /// A receiver's HTTP status: 2xx is delivered; 408, 429 and 5xx may pass, so they are
    /// tried again; any other answer (3xx: redirects are not followed; 4xx) will not
    /// change by asking again.
    pub fn of_status(status: u16) -> Self {
        match status {
            200..=299 => Verdict::Delivered,
            408 | 429 | 500..=599 => Verdict::Retry,
            _ => Verdict::GiveUp,
        }
    }
}

/// Exponential backoff with "equal" jitter: the wait after try n is uniform in
/// `[c/2, c]` with `c = min(max, base · 2^(n-1))`, so tries of many deliveries spread
/// out while the whole schedule stays predictable (defaults: 8 tries over about an hour).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetrySchedule {
    /// Tries in all, the first included.
    pub max_tries: u32,
    pub base: Duration,
    pub max: Duration,
}

impl Default for RetrySchedule {
    fn default() -> Self {
        Self {
            max_tries: 8,
            base: Duration::from_secs(30),
            max: Duration::from_secs(30 * 60),
        }
    }
}

impl RetrySchedule {
    /// When to try again after try `try_number` (1-based) failed with `verdict`; None
    /// when the delivery ends here. `unit` is a uniform sample from [0, 1].
    pub fn next(&self, try_number: u32, verdict: Verdict, unit: f64) -> Option<Duration> {
        if verdict != Verdict::Retry || try_number >= self.max_tries {
            return None;
        }
        let shift = try_number.saturating_sub(1).min(30);
        let ceiling = self.base.saturating_mul(1u32 << shift).min(self.max);
        Some(ceiling / 2 + (ceiling / 2).mul_f64(unit.clamp(0.0, 1.0)))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn two_hundreds_are_delivered_timeouts_throttles_and_server_errors_retried_the_rest_given_up() {
        assert_eq!(Verdict::of_status(204), Verdict::Delivered);
        for s in [408, 429, 500, 503] {
            assert_eq!(Verdict::of_status(s), Verdict::Retry, "{s}");
        }
        for s in [301, 302, 307, 400, 401, 404, 410] {
            assert_eq!(Verdict::of_status(s), Verdict::GiveUp, "{s}");
        }
    }

    #[test]
    fn the_default_schedule_spends_about_an_hour_on_eight_tries() {
        let s = RetrySchedule::default();
        let total = |unit: f64| (1..8).map(|n| s.next(n, Verdict::Retry, unit).unwrap()).sum::<Duration>();
        assert!(total(0.0) >= Duration::from_secs(30 * 60), "{:?}", total(0.0));
        assert!(total(1.0) <= Duration::from_secs(65 * 60), "{:?}", total(1.0));
        assert_eq!(s.next(8, Verdict::Retry, 0.5), None, "the eighth try is the last");
        assert_eq!(s.next(1, Verdict::GiveUp, 0.5), None);
        assert_eq!(s.next(1, Verdict::Delivered, 0.5), None);
    }

    proptest! {
        #[test]
        fn a_wait_is_between_half_the_ceiling_and_the_ceiling(n in 1u32..8, unit in 0.0f64..=1.0, base in 1u64..100_000, max in 1u64..10_000_000) {
            let s = RetrySchedule { max_tries: 8, base: Duration::from_millis(base), max: Duration::from_millis(max) };
            let ceiling = Duration::from_millis(base.saturating_mul(1 << (n - 1)).min(max));
            let d = s.next(n, Verdict::Retry, unit).unwrap();
            prop_assert!(d >= ceiling / 2 && d <= ceiling, "{:?} vs {:?}", d, ceiling);
        }
    }
}
