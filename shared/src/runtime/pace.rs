//! How far ahead of its free slots a worker leases: by how long its runs take (those
//! that did their work: one that fails at once says nothing of how long the next takes).
//!
//! A job leased ahead waits inside this worker, where an idle worker cannot take it and
//! its account's turn is not weighed against others'. For slow runs that wait is long,
//! so the worker leases only `prefetch` (default 0) ahead.
//! For fast runs it is short, and a lease round trip between every two runs would be
//! what limits throughput (no-op jobs at concurrency 1 ran at a third of the speed with a
//! prefetch of 2), so the worker leases as many ahead as its recent runs would get
//! through in [`AHEAD_BUDGET`], up to [`MAX_AHEAD`].
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How long a job leased ahead should wait for its slot, at the recent pace.
pub(crate) const AHEAD_BUDGET: Duration = Duration::from_millis(20);
/// Most jobs one kind's fetcher leases ahead of its free slots.
pub(crate) const MAX_AHEAD: usize = 64;

/// A moving average of how long this kind's runs take, fed by the settle layer.
#[derive(Debug)]
pub(crate) struct RunPace {
    /// Exponentially weighted mean run time in µs; `u64::MAX` until a run has ended.
    mean_us: AtomicU64,
}

impl Default for RunPace {
    fn default() -> Self {
        Self {
            mean_us: AtomicU64::new(u64::MAX),
        }
    }
}

impl RunPace {
    /// A run took `took` (handler start to end).
    pub fn record(&self, took: Duration) {
        let us = took.as_micros().min(u128::from(u32::MAX)) as u64;
        // Races between runs only lose a sample: fine for a pace estimate.
        let old = self.mean_us.load(Ordering::Relaxed);
        let new = if old == u64::MAX { us } else { (old * 7 + us) / 8 };
        self.mean_us.store(new, Ordering::Relaxed);
    }

    /// A run that did not do its work (failed, parked, gave way, handed back) took
    /// `took`: it counts only when slower than the mean, so runs that fail at once never
    /// make slow jobs look fast, and runs that time out still slow the pace.
    pub fn record_if_slower(&self, took: Duration) {
        let mean = self.mean_us.load(Ordering::Relaxed);
        if mean != u64::MAX && took.as_micros() > u128::from(mean) {
            self.record(took);
        }
    }

    /// How many jobs to lease ahead of `concurrency` slots: `base` for slow or unknown
    /// runs, more for fast ones, never more than [`MAX_AHEAD`].
    pub fn ahead(&self, concurrency: usize, base: usize) -> usize {
        let mean = self.mean_us.load(Ordering::Relaxed);
        if mean == u64::MAX {
            return base.min(MAX_AHEAD);
        }
        let per_slot = AHEAD_BUDGET.as_micros() as u64 / mean.max(1);
        let fast = (per_slot as usize).saturating_mul(concurrency);
        fast.clamp(base, MAX_AHEAD.max(base))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_that_did_not_do_their_work_only_ever_slow_the_pace() {
        let pace = RunPace::default();
        pace.record_if_slower(Duration::from_micros(50));
        assert_eq!(pace.ahead(1, 0), 0, "a failure alone sets no pace");
        pace.record(Duration::from_millis(1));
        for _ in 0..50 {
            pace.record_if_slower(Duration::from_micros(50));
        }
        assert_eq!(pace.ahead(1, 0), 20, "fast failures leave the pace of the work");
        for _ in 0..50 {
            pace.record_if_slower(Duration::from_secs(30));
        }
        assert_eq!(pace.ahead(1, 0), 0, "runs that time out slow it");
    }

    #[test]
    fn slow_or_unknown_runs_lease_only_the_base_prefetch_ahead() {
        let pace = RunPace::default();
        assert_eq!(pace.ahead(10, 2), 2, "no run has ended yet");
        pace.record(Duration::from_secs(1));
        assert_eq!(pace.ahead(10, 2), 2);
    }

    #[test]
    fn fast_runs_lease_what_they_get_through_in_the_budget_up_to_the_cap() {
        let pace = RunPace::default();
        pace.record(Duration::from_millis(5));
        // 20 ms / 5 ms = 4 per slot
        assert_eq!(pace.ahead(1, 2), 4);
        assert_eq!(pace.ahead(10, 2), 40);
        pace.record(Duration::from_micros(50));
        for _ in 0..50 {
            pace.record(Duration::from_micros(50));
        }
        assert_eq!(pace.ahead(1, 2), MAX_AHEAD);
    }

    #[test]
    fn a_run_of_slow_jobs_brings_the_lease_ahead_back_down() {
        let pace = RunPace::default();
        for _ in 0..20 {
            pace.record(Duration::from_micros(100));
        }
        assert_eq!(pace.ahead(1, 2), MAX_AHEAD);
        for _ in 0..20 {
            pace.record(Duration::from_secs(2));
        }
        assert_eq!(pace.ahead(1, 2), 2);
    }
}
