//! What `/metrics` shows of a queue beyond its counts per state: how many jobs wait for
//! each reason `waiting` gives one job, and the events the scripts count as they happen
//! (docs/operations.md, "Scraping"). Both come from O(1) or O(log n) reads.
use serde::{Deserialize, Serialize};

use super::WaitReason;

/// Jobs that are neither running nor finished, by what they wait for. Each job is in
/// exactly one reason, the one `waiting` would answer for it, with one exception: a
/// queued backfill whose account is in a quota cooldown counts as `queued` (the
/// cooldown is outside the queue's keys) until its run parks it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitingCounts {
    pub scheduled: u64,
    pub retry_backoff: u64,
    pub rate_limit: u64,
    pub quota_cooldown: u64,
    pub breaker_open: u64,
    pub account_busy: u64,
    pub queue_paused: u64,
    pub no_worker: u64,
    pub restart_hold: u64,
    pub queued: u64,
    pub prefetched: u64,
}

impl WaitingCounts {
    /// Every reason with its count, zeros included (so each series always exists).
    pub fn by_reason(&self) -> [(WaitReason, u64); 11] {
        [
            (WaitReason::Scheduled, self.scheduled),
            (WaitReason::RetryBackoff, self.retry_backoff),
            (WaitReason::RateLimit, self.rate_limit),
            (WaitReason::QuotaCooldown, self.quota_cooldown),
            (WaitReason::BreakerOpen, self.breaker_open),
            (WaitReason::AccountBusy, self.account_busy),
            (WaitReason::QueuePaused, self.queue_paused),
            (WaitReason::NoWorker, self.no_worker),
            (WaitReason::RestartHold, self.restart_hold),
            (WaitReason::Queued, self.queued),
            (WaitReason::Prefetched, self.prefetched),
        ]
    }
}

/// Events counted by the queue's scripts since the queue was created (Redis, so every
/// reader sees the same numbers and a process restart loses none).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueEvents {
    /// Leases that ran out under a started run and were reclaimed (an attempt used).
    pub reclaimed_lost: u64,
    /// Leases that ran out before their run started, handed back without an attempt.
    pub reclaimed_released: u64,
    /// Results that arrived after their lease had been reclaimed (kept as `late`).
    pub late: u64,
    /// Runs parked by a guard (snoozed), by guard.
    pub parked_rate_limit: u64,
    pub parked_quota_cooldown: u64,
    pub parked_breaker_open: u64,
}

/// The parts of `queue_stats.lua`'s reply, in order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct StatsReply {
    pub parked: [u64; 3],
    pub account_busy: u64,
    pub events: QueueEvents,
    /// When the longest-waiting ready job became ready, ms (0: no job queued).
    pub head: u64,
}

impl StatsReply {
    pub(super) fn from_reply(v: &[u64]) -> Option<Self> {
        let [r, q, b, busy, lost, released, late, pr, pq, pb, head] = v else {
            return None;
        };
        Some(Self {
            parked: [*r, *q, *b],
            account_busy: *busy,
            head: *head,
            events: QueueEvents {
                reclaimed_lost: *lost,
                reclaimed_released: *released,
                late: *late,
                parked_rate_limit: *pr,
                parked_quota_cooldown: *pq,
                parked_breaker_open: *pb,
            },
        })
    }
}

/// What holds every queued job of a queue back, in the order `waiting_of.lua` asks:
/// a pause, no live worker, the hold after a Redis restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum QueueHold {
    None,
    Paused,
    NoWorker,
    RestartHold,
}

/// Splits the jobs not running by reason, the way `waiting.lua` decides one job's:
/// scheduled jobs are retrying, parked or plainly scheduled; queued jobs wait for a
/// paused queue, a worker, the end of a restart's hold, their account's cap, or a slot.
pub(super) fn split_waiting(
    queued: u64,
    scheduled_all: u64,
    retrying: u64,
    prefetched: u64,
    hold: QueueHold,
    s: &StatsReply,
) -> WaitingCounts {
    let [rate_limit, quota_cooldown, breaker_open] = s.parked;
    let parked = rate_limit + quota_cooldown + breaker_open;
    let held = |h: QueueHold| if hold == h { queued } else { 0 };
    let busy = if hold == QueueHold::None { s.account_busy.min(queued) } else { 0 };
    WaitingCounts {
        scheduled: scheduled_all.saturating_sub(retrying).saturating_sub(parked),
        retry_backoff: retrying,
        rate_limit,
        quota_cooldown,
        breaker_open,
        account_busy: busy,
        queue_paused: held(QueueHold::Paused),
        no_worker: held(QueueHold::NoWorker),
        restart_hold: held(QueueHold::RestartHold),
        queued: if hold == QueueHold::None { queued - busy } else { 0 },
        prefetched,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(parked: [u64; 3], busy: u64) -> StatsReply {
        StatsReply {
            parked,
            account_busy: busy,
            ..StatsReply::default()
        }
    }

    #[test]
    fn every_waiting_job_is_counted_under_exactly_one_reason() {
        let w = split_waiting(10, 9, 2, 3, QueueHold::None, &reply([1, 2, 1], 4));
        let total: u64 = w.by_reason().iter().map(|(_, n)| n).sum();
        assert_eq!(total, 10 + 9 + 3);
        assert_eq!((w.scheduled, w.retry_backoff, w.account_busy, w.queued), (3, 2, 4, 6));
    }

    #[test]
    fn a_paused_queue_holds_every_queued_job_whatever_the_caps() {
        let w = split_waiting(10, 0, 0, 0, QueueHold::Paused, &reply([0, 0, 0], 4));
        assert_eq!((w.queue_paused, w.account_busy, w.queued), (10, 0, 0));
    }

    #[test]
    fn a_queue_without_a_worker_or_in_a_restarts_hold_holds_every_queued_job() {
        let w = split_waiting(10, 0, 0, 0, QueueHold::NoWorker, &reply([0, 0, 0], 4));
        assert_eq!((w.no_worker, w.restart_hold, w.account_busy, w.queued), (10, 0, 0, 0));
        let w = split_waiting(10, 0, 0, 0, QueueHold::RestartHold, &reply([0, 0, 0], 4));
        assert_eq!((w.no_worker, w.restart_hold, w.account_busy, w.queued), (0, 10, 0, 0));
    }

    #[test]
    fn counts_read_at_different_moments_never_go_below_zero() {
        let w = split_waiting(1, 1, 1, 0, QueueHold::None, &reply([5, 0, 0], 9));
        assert_eq!((w.scheduled, w.account_busy, w.queued), (0, 1, 0));
    }
}
