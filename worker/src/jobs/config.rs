//! Settings of the three jobs.
use std::time::Duration;

use drover::runtime::JobContext;
use drover::JobError;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobsConfig {
    /// getOrders page size (SP-API allows 1..=100).
    pub orders_page_size: u32,
    /// How far back a first sync of an account looks when it has no cursor and no `since`.
    pub first_sync_lookback_hours: u32,
    /// Most SKUs a listings sync refreshes (least recently checked first, over all its runs).
    pub listings_per_sync: u32,
    /// Deletes in flight per cleanup job (the shared limiter still paces them).
    pub cleanup_parallelism: usize,
    /// Record progress at least every this many items.
    pub progress_every: u64,
    /// Parse errors listed per window in a job's items (the rest are counted).
    pub parse_errors_listed: usize,
    /// A run that has worked this long stops between items and snoozes itself (no
    /// attempt used): at SP-API's real rates a 30-day backfill or a 10,000-SKU cleanup
    /// takes hours, longer than any sane per-run timeout. Keep it below the job timeout
    /// (30 min by default).
    pub slice_ms: u64,
    /// A run that has worked this long hands its job back between two steps (a snooze,
    /// no attempt used) when another job of its kind waits for a slot of this worker
    /// and every slot is taken: the slot goes to the next account's turn, so a small
    /// job waits for a long one's turn, not for all of its work.
    pub turn_ms: u64,
    /// A run whose account cannot make progress for longer than this (the limiter's
    /// next slot further away; also a cooldown, an open breaker or a 429's `Retry-After`)
    /// checkpoints and parks its job until then, handing its worker slot to another
    /// account.
    pub park_after_ms: u64,
    /// Snoozes in a row a job may take without advancing (parks for the marketplace's
    /// limits, cooldowns, breakers, and waits for the database) before it is
    /// dead-lettered; a run that advanced before it parked, or a replay, starts the
    /// count again.
    pub max_snoozes: u32,
    /// Most jobs of one kind an account may keep unfinished: what this worker's
    /// scheduler (`scheduler.enabled`) may enqueue, as `api.jobs.max_unfinished_per_account`
    /// bounds the API's (a tick past it is refused, then a misfire).
    pub max_unfinished_per_account: u64,
    /// Per-kind dispatch policy: `jobs.sync.per_account` etc.
    pub sync: KindPolicy,
    pub backfill: KindPolicy,
    pub cleanup: KindPolicy,
}

/// How one kind's jobs are handed out across accounts.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KindPolicy {
    /// Runs one account may have at once across every worker process (0 = no cap).
    /// Queued jobs of an account at its cap hold no worker slot.
    pub per_account: u32,
}

/// Longest turn: a day (a slice ends a run first anyway).
const MAX_TURN_MS: u64 = 24 * 3600 * 1000;

/// Most snoozes a job may be allowed: beyond it a job parked for good never ends.
const MAX_SNOOZES: u32 = 1_000_000;

/// Most runs per account a cap may name: beyond it a cap means nothing on any pool.
const MAX_PER_ACCOUNT: u32 = 10_000;

impl Default for JobsConfig {
    fn default() -> Self {
        Self {
            orders_page_size: 100,
            first_sync_lookback_hours: 24 * 30,
            listings_per_sync: 1000,
            cleanup_parallelism: 4,
            progress_every: 50,
            parse_errors_listed: 20,
            slice_ms: 20 * 60 * 1000,
            turn_ms: 5000,
            park_after_ms: 1000,
            max_snoozes: 1000,
            max_unfinished_per_account: drover::queue::DEFAULT_MAX_UNFINISHED_PER_ACCOUNT,
            sync: KindPolicy { per_account: 1 },
            backfill: KindPolicy { per_account: 1 },
            cleanup: KindPolicy { per_account: 2 },
        }
    }
}

impl JobsConfig {
    /// Per-account caps by [`drover::job::JobKind::index`].
    pub fn per_account(&self) -> [u32; 3] {
        [self.sync.per_account, self.backfill.per_account, self.cleanup.per_account]
    }

    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if !(1..=100).contains(&self.orders_page_size) {
            errors.push(format!("jobs.orders_page_size must be 1..=100, got {}", self.orders_page_size));
        }
        if self.first_sync_lookback_hours == 0 {
            errors.push("jobs.first_sync_lookback_hours must be at least 1".to_owned());
        }
        if !(1..=64).contains(&self.cleanup_parallelism) {
            errors.push(format!("jobs.cleanup_parallelism must be 1..=64, got {}", self.cleanup_parallelism));
        }
        if self.slice_ms < 1000 {
            errors.push(format!("jobs.slice_ms must be at least 1000, got {}", self.slice_ms));
        }
        if !(1000..=MAX_TURN_MS).contains(&self.turn_ms) {
            errors.push(format!("jobs.turn_ms must be 1000..={MAX_TURN_MS}, got {}", self.turn_ms));
        }
        if !(1..=MAX_SNOOZES).contains(&self.max_snoozes) {
            errors.push(format!("jobs.max_snoozes must be 1..={MAX_SNOOZES}, got {}", self.max_snoozes));
        }
        if !(100..=3_600_000).contains(&self.park_after_ms) {
            errors.push(format!("jobs.park_after_ms must be 100..=3600000, got {}", self.park_after_ms));
        }
        for (name, p) in [("sync", self.sync), ("backfill", self.backfill), ("cleanup", self.cleanup)] {
            if p.per_account > MAX_PER_ACCOUNT {
                errors.push(format!(
                    "jobs.{name}.per_account must be 0 (no cap) ..= {MAX_PER_ACCOUNT}, got {}",
                    p.per_account
                ));
            }
        }
        if !(1..=drover::queue::MAX_MAX_UNFINISHED_PER_ACCOUNT).contains(&self.max_unfinished_per_account) {
            errors.push(format!(
                "jobs.max_unfinished_per_account must be 1..={}, got {}",
                drover::queue::MAX_MAX_UNFINISHED_PER_ACCOUNT,
                self.max_unfinished_per_account
            ));
        }
        if self.progress_every == 0 {
            errors.push("jobs.progress_every must be at least 1".to_owned());
        }
        errors
    }
}

/// How long one run may work before it hands the job back (see `slice_ms`), and the
/// worker's shutdown, which ends the slice at once: a handler asks [`Slice::end`] at each
/// point where the job can be handed back (an item or page committed).
pub(crate) struct Slice {
    started: tokio::time::Instant,
    limit: Duration,
    turn: Duration,
}

impl Slice {
    pub(crate) fn start(config: &JobsConfig) -> Self {
        Self {
            started: tokio::time::Instant::now(),
            limit: Duration::from_millis(config.slice_ms),
            turn: Duration::from_millis(config.turn_ms),
        }
    }

    /// Why the run should stop here, if it should: the worker is stopping (the job goes
    /// back to the queue at once; the next run continues where this one stopped), the
    /// slice is used up, or the turn is and another job waits for the slot (a snooze
    /// that continues it in a fresh run). None uses an attempt. A job that gives way is
    /// due again at once: the next fetch puts it back at the front of its account's lane
    /// before anything of that lane is leased (a delay let the account's next job take
    /// the slot the run freed), and the lane, having had its turn, still comes after
    /// other accounts' waiting lanes.
    pub(crate) fn end(&self, ctx: &JobContext) -> Option<JobError> {
        if ctx.is_stopping() {
            Some(JobError::Stopping(
                "stopped between two steps; the next run continues where this one stopped".into(),
            ))
        } else if self.started.elapsed() >= self.limit {
            Some(JobError::GaveWay {
                retry_after: Duration::ZERO,
                reason: format!(
                    "worked for its {:?} slice; the next run continues where this one stopped",
                    self.limit
                ),
            })
        } else if self.started.elapsed() >= self.turn && ctx.give_way() {
            Some(JobError::GaveWay {
                retry_after: Duration::ZERO,
                reason: format!(
                    // (whose job waits is not the seller's to know: it may be another's)
                    "worked its {:?} turn and handed its slot on; the next run continues where this one stopped",
                    self.turn
                ),
            })
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dispatch_defaults_cap_sync_and_backfill_at_one_run_per_account_and_cleanup_at_two() {
        let c = JobsConfig::default();
        assert_eq!(c.per_account(), [1, 1, 2]);
        assert_eq!(c.park_after_ms, 1000);
        assert!(c.validate().is_empty());
    }

    #[test]
    fn a_cap_park_or_snooze_setting_out_of_range_names_the_setting() {
        let c = JobsConfig {
            park_after_ms: 5,
            max_snoozes: 0,
            cleanup: KindPolicy { per_account: 50_000 },
            ..JobsConfig::default()
        };
        let errors = c.validate().join("\n");
        assert!(errors.contains("jobs.park_after_ms must be 100..=3600000, got 5"), "{errors}");
        assert!(errors.contains("jobs.max_snoozes must be 1..=1000000, got 0"), "{errors}");
        assert!(
            errors.contains("jobs.cleanup.per_account must be 0 (no cap) ..= 10000, got 50000"),
            "{errors}"
        );
    }

    #[test]
    fn a_turn_is_at_least_a_second_and_may_be_longer_than_the_slice() {
        let short_turn = JobsConfig {
            turn_ms: 10,
            ..JobsConfig::default()
        };
        let errors = short_turn.validate().join("\n");
        assert!(errors.contains("jobs.turn_ms must be 1000..=86400000, got 10"), "{errors}");
        let short_slice = JobsConfig {
            slice_ms: 1000,
            ..JobsConfig::default()
        };
        assert!(short_slice.validate().is_empty(), "a slice shorter than the turn ends runs first");
    }
}
