//! Which partitions of a kind a fetch visits (docs/architecture.md, "Partitions"). A
//! partition that had nothing ready is skipped until it is woken (its marker popped), its
//! next job or lease falls due, or a sweep comes round — so one busy partition among
//! sixteen costs one script call per fetch, not sixteen. The visit starts at a turn that
//! moves past each partition that leases, so no partition is always served first.
use std::time::{Duration, Instant};

/// The longest a partition goes unvisited: bounds how stale a worker's view of a
/// partition whose wake-ups other workers took can get.
pub(super) const SWEEP: Duration = Duration::from_millis(500);
/// The longest a partition with pending work (jobs or leases falling due) goes unvisited.
pub(super) const PENDING_SWEEP: Duration = Duration::from_millis(100);

/// The longest a partition whose visits keep failing goes unvisited (unless woken).
pub(super) const FAILING_SWEEP: Duration = Duration::from_secs(2);

#[derive(Debug)]
pub(super) struct Visits {
    due: Vec<Instant>,
    turn: usize,
    /// Each partition's visits that failed in a row.
    failures: Vec<u32>,
}

impl Visits {
    pub(super) fn new(partitions: usize, now: Instant) -> Self {
        Self {
            due: vec![now; partitions.max(1)],
            turn: 0,
            failures: vec![0; partitions.max(1)],
        }
    }

    /// The partitions to visit now, the turn's first: the turn goes round the due
    /// partitions, the one after the last that leased first, so two busy partitions among
    /// idle ones take turns one for one (moving the start over every partition gave the
    /// one after a run of idle partitions as many turns as that run is long; moving it at
    /// every plan, a sweep's too, gave the first busy one from wherever a sweep left it
    /// most freed slots: the fairness audit of 2026-12-07, second).
    pub(super) fn plan(&self, now: Instant) -> Vec<usize> {
        let n = self.due.len();
        let start = self.turn % n;
        (0..n).map(|i| (start + i) % n).filter(|p| self.due[*p] <= now).collect()
    }

    /// A fetch leased jobs, `p` the first partition in its plan's order that did: the
    /// turn goes on from the partition after it (once a fetch: a fetch of several jobs
    /// leases from several partitions, and the last of them would put the same first
    /// again: the review of 2026-12-07).
    pub(super) fn served(&mut self, p: usize) {
        self.turn = p + 1;
    }

    /// After a visit to `p`: a full batch means more may be ready. A partition with
    /// something pending (a job or a lease falling due) is visited again when it falls
    /// due and at least every [`PENDING_SWEEP`] — each visit tells the reclaim that Redis
    /// kept serving, and a silence of a third of a lease would look like an outage to it
    /// and add a grace (docs/architecture.md, "Leases and reclaim"). An idle one waits for
    /// a wake-up, at most a sweep (within a quarter of this fetcher's lease).
    pub(super) fn visited(&mut self, p: usize, now: Instant, full: bool, wait: Option<Duration>, lease: Duration) {
        self.failures[p] = 0;
        self.due[p] = match (full, wait) {
            (true, _) => now,
            (false, Some(w)) => now + w.min(PENDING_SWEEP),
            (false, None) => now + idle_sweep(lease),
        };
    }

    /// A visit to `p` failed (its shard down, hung or refusing): it is visited again
    /// after an idle partition's sweep, doubled with each failure in a row up to
    /// [`FAILING_SWEEP`] (or 16 sweeps, with a lease under 0.5 s), unless woken. On a
    /// cluster each such visit can hold a fetch a quarter of the lease after a healthy
    /// partition's answer (five eighths from the send when nothing answers), so a
    /// fetcher that went back every sweep spent half its time on a hung shard.
    pub(super) fn failed(&mut self, p: usize, now: Instant, lease: Duration) {
        let k = self.failures[p].min(4);
        self.failures[p] = self.failures[p].saturating_add(1);
        self.due[p] = now + (idle_sweep(lease) * 2u32.pow(k)).min(FAILING_SWEEP.max(idle_sweep(lease)));
    }

    /// Whether `p`'s last visit failed.
    pub(super) fn failing(&self, p: usize) -> bool {
        self.failures.get(p).is_some_and(|f| *f > 0)
    }

    /// `p` answered a visit that asked it for nothing (a sweep's): its failures end,
    /// its next visit stays as it was.
    pub(super) fn answered(&mut self, p: usize) {
        self.failures[p] = 0;
    }

    pub(super) fn woken(&mut self, p: usize, now: Instant) {
        if let Some(d) = self.due.get_mut(p) {
            *d = now;
        }
    }

    /// How long until some partition is due (zero when one is).
    pub(super) fn next_due(&self, now: Instant) -> Duration {
        self.due.iter().map(|d| d.saturating_duration_since(now)).min().unwrap_or_default()
    }
}

/// How long an idle partition waits for a wake-up before it is visited anyway: a sweep,
/// within a quarter of the fetcher's lease.
fn idle_sweep(lease: Duration) -> Duration {
    SWEEP.min(lease / 4).max(PENDING_SWEEP)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_partition_is_skipped_until_woken_or_swept() {
        let t0 = Instant::now();
        let mut v = Visits::new(4, t0);
        assert_eq!(v.plan(t0), vec![0, 1, 2, 3]);
        for p in 0..4 {
            v.visited(p, t0, p == 2, None, Duration::from_secs(3));
        }
        assert_eq!(v.plan(t0), vec![2], "only the partition that filled its batch");
        v.woken(0, t0);
        let mut woken = v.plan(t0);
        woken.sort_unstable();
        assert_eq!(woken, vec![0, 2]);
        assert_eq!(v.plan(t0 + SWEEP).len(), 4, "a sweep visits every partition");
        v.visited(1, t0, false, Some(Duration::from_secs(60)), Duration::from_secs(3));
        let soon = v.plan(t0 + PENDING_SWEEP);
        assert!(
            soon.contains(&1) && !soon.contains(&3),
            "a partition with leases is visited often: {soon:?}"
        );
    }

    #[test]
    fn the_first_partition_visited_moves_past_each_that_leased() {
        let t0 = Instant::now();
        let mut v = Visits::new(3, t0);
        let firsts: Vec<usize> = (0..3)
            .map(|_| {
                let first = v.plan(t0)[0];
                v.served(first);
                first
            })
            .collect();
        assert_eq!(firsts, vec![0, 1, 2]);
        assert_eq!(v.plan(t0)[0], 0, "a plan that leased nothing moves no turn");
        assert_eq!(v.plan(t0)[0], 0);
    }

    /// Found by the fairness audit of 2026-12-05: with 16 partitions and two of them busy
    /// (0 and 1), partition 0 came first in 15 plans of 16: a one-slot fetch asks only
    /// the first, so partition 1's accounts had a sixteenth of the turns.
    #[test]
    fn busy_partitions_among_idle_ones_take_turns_one_for_one() {
        let t0 = Instant::now();
        let lease = Duration::from_secs(3);
        let mut v = Visits::new(16, t0);
        let mut firsts = [0usize; 16];
        for _ in 0..32 {
            let plan = v.plan(t0);
            firsts[plan[0]] += 1;
            // A one-slot fetch: the first busy partition leases, 0 and 1 fill their
            // batch; every other partition is idle.
            if let Some(p) = plan.iter().find(|p| **p < 2) {
                v.served(*p);
            }
            for p in plan {
                v.visited(p, t0, p < 2, None, lease);
            }
        }
        assert_eq!((firsts[0], firsts[1]), (16, 16), "{firsts:?}");
    }

    #[test]
    fn a_due_job_brings_the_visit_forward() {
        let t0 = Instant::now();
        let mut v = Visits::new(2, t0);
        v.visited(0, t0, false, Some(Duration::from_millis(10)), Duration::from_secs(3));
        v.visited(1, t0, false, None, Duration::from_secs(3));
        assert_eq!(v.next_due(t0), Duration::from_millis(10));
        assert_eq!(v.plan(t0 + Duration::from_millis(10)), vec![0]);
    }

    #[test]
    fn a_partition_whose_visits_keep_failing_is_visited_less_often_until_one_serves() {
        let t0 = Instant::now();
        let lease = Duration::from_millis(1800);
        let mut v = Visits::new(2, t0);
        let mut now = t0;
        let mut gaps = Vec::new();
        for _ in 0..6 {
            v.failed(0, now, lease);
            let gap = v.due[0] - now;
            gaps.push(gap.as_millis());
            now += gap;
        }
        assert_eq!(gaps, vec![450, 900, 1800, 2000, 2000, 2000]);
        assert!(v.failing(0) && !v.failing(1));
        v.woken(0, now);
        assert_eq!(v.plan(now), vec![0, 1], "a wake-up still brings it forward");
        v.visited(0, now, false, None, lease);
        v.failed(0, now, lease);
        assert_eq!(v.due[0] - now, Duration::from_millis(450), "one that served starts over");
        v.failed(0, now, lease);
        v.answered(0);
        v.failed(0, now, lease);
        assert_eq!(v.due[0] - now, Duration::from_millis(450), "and one that answered a sweep");
    }
}
