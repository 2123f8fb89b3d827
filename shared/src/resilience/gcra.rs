//! GCRA (generic cell rate algorithm) in its "reserve a slot" form, as pure functions of
//! time. `lua/acquire.lua` does exactly this arithmetic inside Redis; the tests here pin
//! the math, the integration tests pin the script.
//!
//! State is one number, the theoretical arrival time (TAT, microseconds since the epoch):
//! the bucket is full when `TAT <= now` and holds `(tolerance + interval - (TAT - now)) /
//! interval` tokens otherwise. A caller's slot is `max(now, TAT - tolerance)`; taking it
//! advances TAT by one interval, so N concurrent callers get N evenly spaced slots.
use super::config::{ColdStart, LimiterConfig};

/// The effective bucket we enforce: the marketplace's plan shrunk by the safety margins.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct GcraParams {
    /// Microseconds between two calls at the effective rate.
    pub interval_us: f64,
    /// How far ahead of TAT a call may go: (effective burst − 1) intervals.
    pub tolerance_us: f64,
    /// Effective burst (≥ 1).
    pub burst: f64,
}

impl GcraParams {
    pub fn new(rate: f64, burst: u32, limiter: &LimiterConfig) -> Self {
        let eff_rate = rate * (1.0 - limiter.rate_margin);
        let interval_us = 1e6 / eff_rate;
        let eff_burst = burst.saturating_sub(limiter.burst_reserve).max(1);
        Self {
            interval_us,
            tolerance_us: f64::from(eff_burst - 1) * interval_us,
            burst: f64::from(eff_burst),
        }
    }
}

/// The TAT to assume when Redis has none.
pub(crate) fn initial_tat(now_us: f64, p: &GcraParams, cold: ColdStart) -> f64 {
    match cold {
        // Empty bucket: the first slot is one interval away.
        ColdStart::Empty => now_us + p.tolerance_us + p.interval_us,
        ColdStart::Full => now_us,
    }
}

// The reference model of the Lua script; production runs the script, tests run both.
#[cfg_attr(not(test), allow(dead_code))]
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Reservation {
    /// Sleep `wait_us`, then call; store `tat`.
    Granted { tat: f64, wait_us: f64 },
    /// The slot is further away than the caller may wait; nothing was reserved. `cold`:
    /// the TAT assumed for a bucket Redis had no record of, stored so the wait counts
    /// down (a caller that comes back after `wait_us` finds its slot); `None` when Redis
    /// had a TAT, which stays as it was.
    TooLong { wait_us: f64, cold: Option<f64> },
}

// The reference model of the Lua script; production runs the script, tests run both.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) fn reserve(tat: Option<f64>, now_us: f64, p: &GcraParams, cold: ColdStart, max_wait_us: f64) -> Reservation {
    let stored = tat;
    let tat = tat.unwrap_or_else(|| initial_tat(now_us, p, cold));
    let slot = now_us.max(tat - p.tolerance_us);
    let wait_us = slot - now_us;
    if wait_us > max_wait_us {
        return Reservation::TooLong {
            wait_us,
            cold: stored.is_none().then_some(tat),
        };
    }
    Reservation::Granted {
        tat: tat.max(now_us) + p.interval_us,
        wait_us,
    }
}

/// Tokens in the effective bucket now (fractional), for snapshots.
pub(crate) fn tokens_available(tat: Option<f64>, now_us: f64, p: &GcraParams, cold: ColdStart) -> f64 {
    let tat = tat.unwrap_or_else(|| initial_tat(now_us, p, cold));
    ((p.tolerance_us + p.interval_us - (tat - now_us)) / p.interval_us).clamp(0.0, p.burst)
}

/// When the next call could go.
pub(crate) fn next_slot(tat: Option<f64>, now_us: f64, p: &GcraParams, cold: ColdStart) -> f64 {
    let tat = tat.unwrap_or_else(|| initial_tat(now_us, p, cold));
    now_us.max(tat - p.tolerance_us)
}

/// A new rate keeps the bucket's current token deficit: only the refill speed changes,
/// so lowering the rate never hands out a fresh burst and raising it never takes one away.
// The reference model of the Lua script; production runs the script, tests run both.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) fn rescale(tat: f64, now_us: f64, old: &GcraParams, new: &GcraParams) -> f64 {
    let deficit_tokens = (tat - now_us).max(0.0) / old.interval_us;
    now_us + deficit_tokens * new.interval_us
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn no_margin(cold: ColdStart) -> LimiterConfig {
        LimiterConfig {
            rate_margin: 0.0,
            burst_reserve: 0,
            cold_start: cold,
            ..LimiterConfig::default()
        }
    }

    /// The simulator's bucket (tests/simulator/src/ratelimit.rs), restated.
    struct Bucket {
        tokens: f64,
        at: f64,
    }
    impl Bucket {
        fn take(&mut self, rate: f64, burst: u32, now_us: f64) -> bool {
            self.tokens = (self.tokens + (now_us - self.at) / 1e6 * rate).min(f64::from(burst));
            self.at = now_us;
            if self.tokens >= 1.0 - 1e-9 {
                self.tokens = (self.tokens - 1.0).max(0.0);
                true
            } else {
                false
            }
        }
    }

    fn grant(r: Reservation) -> (f64, f64) {
        match r {
            Reservation::Granted { tat, wait_us } => (tat, wait_us),
            Reservation::TooLong { wait_us, .. } => panic!("not granted, wait {wait_us}"),
        }
    }

    #[test]
    fn a_full_bucket_grants_burst_at_once_then_spaces_calls_by_the_interval() {
        let p = GcraParams::new(10.0, 3, &no_margin(ColdStart::Full));
        let mut tat = None;
        let mut waits = vec![];
        for _ in 0..5 {
            let (t, w) = grant(reserve(tat, 0.0, &p, ColdStart::Full, 1e9));
            tat = Some(t);
            waits.push((w / 1000.0).round());
        }
        assert_eq!(waits, vec![0.0, 0.0, 0.0, 100.0, 200.0]);
    }

    #[test]
    fn an_unknown_bucket_is_treated_as_empty_by_default() {
        let p = GcraParams::new(10.0, 5, &LimiterConfig::default());
        let (_, wait) = grant(reserve(None, 0.0, &p, ColdStart::Empty, 1e9));
        assert!(wait >= 100_000.0, "{wait}");
        assert_eq!(tokens_available(None, 0.0, &p, ColdStart::Empty), 0.0);
    }

    #[test]
    fn a_wait_beyond_max_wait_reserves_nothing() {
        let p = GcraParams::new(1.0, 1, &no_margin(ColdStart::Full));
        let (tat, _) = grant(reserve(None, 0.0, &p, ColdStart::Full, 0.0));
        assert!(matches!(
            reserve(Some(tat), 0.0, &p, ColdStart::Full, 500_000.0),
            Reservation::TooLong { .. }
        ));
        assert!(matches!(
            reserve(Some(tat), 0.0, &p, ColdStart::Full, 1_000_000.0),
            Reservation::Granted { .. }
        ));
    }

    #[test]
    fn a_cold_bucket_refused_for_a_long_wait_keeps_its_start_so_the_wait_counts_down() {
        let p = GcraParams::new(1.0, 1, &no_margin(ColdStart::Empty));
        let Reservation::TooLong { wait_us, cold: Some(tat) } = reserve(None, 0.0, &p, ColdStart::Empty, 500_000.0) else {
            panic!("a cold empty bucket's first slot is one interval away")
        };
        assert_eq!(wait_us, 1_000_000.0);
        // Stored and asked again 600 ms later: 400 ms left, not a whole interval again.
        assert_eq!(
            reserve(Some(tat), 600_000.0, &p, ColdStart::Empty, 500_000.0),
            Reservation::Granted {
                tat: 2_000_000.0,
                wait_us: 400_000.0
            }
        );
        assert!(matches!(
            reserve(Some(tat), 0.0, &p, ColdStart::Empty, 0.0),
            Reservation::TooLong { cold: None, .. }
        ));
    }

    #[test]
    fn margins_shrink_rate_and_burst_but_keep_one_slot() {
        let p = GcraParams::new(20.0, 5, &LimiterConfig::default());
        assert_eq!(p.burst, 4.0);
        assert!((p.interval_us - 1e6 / 19.0).abs() < 1e-6);
        assert_eq!(GcraParams::new(1.0, 1, &LimiterConfig::default()).burst, 1.0);
    }

    #[test]
    fn rescaling_keeps_the_token_deficit() {
        let old = GcraParams::new(10.0, 5, &no_margin(ColdStart::Full));
        let new = GcraParams::new(1.0, 5, &no_margin(ColdStart::Full));
        // two tokens short at 10/s = 200 ms ahead; at 1/s that is 2 s ahead
        let tat = rescale(200_000.0, 0.0, &old, &new);
        assert!((tat - 2_000_000.0).abs() < 1e-6);
        assert!((tokens_available(Some(tat), 0.0, &new, ColdStart::Full) - 3.0).abs() < 1e-9);
    }

    proptest! {
        /// For any arrival pattern, the calls whose slots fall in any interval of length
        /// T number at most burst + rate * T.
        #[test]
        fn slots_in_any_interval_never_exceed_burst_plus_rate_times_length(
            rate in 0.01f64..200.0,
            burst in 1u32..30,
            gaps_us in proptest::collection::vec(0u64..3_000_000, 1..150),
            full in any::<bool>(),
        ) {
            let cold = if full { ColdStart::Full } else { ColdStart::Empty };
            let cfg = LimiterConfig { cold_start: cold, ..LimiterConfig::default() };
            let p = GcraParams::new(rate, burst, &cfg);
            let mut now = 0.0;
            let mut tat = None;
            let mut slots = vec![];
            for g in gaps_us {
                now += g as f64;
                let (t, w) = grant(reserve(tat, now, &p, cold, f64::INFINITY));
                tat = Some(t);
                slots.push(now + w);
            }
            for i in 0..slots.len() {
                for j in i..slots.len() {
                    let len_s = (slots[j] - slots[i]) / 1e6;
                    let count = (j - i + 1) as f64;
                    prop_assert!(count <= f64::from(burst) + rate * len_s + 1e-6, "{count} calls in {len_s}s");
                }
            }
        }

        /// A client calling exactly at its slots is never refused by a token bucket with
        /// the same plan, however much of that bucket was used before we started
        /// (cold start empty), and whatever the arrival pattern.
        #[test]
        fn calls_at_granted_slots_are_never_refused_by_the_marketplace_bucket(
            rate in 0.01f64..200.0,
            burst in 1u32..30,
            used_before in 0u32..30,
            gaps_us in proptest::collection::vec(0u64..3_000_000, 1..150),
        ) {
            let cfg = LimiterConfig::default();
            let p = GcraParams::new(rate, burst, &cfg);
            let mut sim = Bucket { tokens: f64::from(burst.saturating_sub(used_before)), at: 0.0 };
            let mut now = 0.0;
            let mut tat = None;
            for g in gaps_us {
                now += g as f64;
                let (t, w) = grant(reserve(tat, now, &p, cfg.cold_start, f64::INFINITY));
                tat = Some(t);
                prop_assert!(sim.take(rate, burst, now + w), "refused at {}", now + w);
            }
        }
    }
}
