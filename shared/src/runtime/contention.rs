//! How many jobs of a kind wait for a slot of this process while all its slots are
//! taken: that many runs that have worked their turn hand their jobs back between two
//! steps ([`super::JobContext::give_way`]), so a long job holds a slot for a turn, not for
//! the whole of its work.
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use super::outrank::{KindRuns, RunUrgency};
use crate::job::JobKind;
use crate::queue::Leased;

/// One kind's count, set by the sweep (`sweep.rs`) and taken from by the runs.
#[derive(Default)]
pub(crate) struct Contention {
    kinds: [Arc<KindContention>; 3],
}

/// Jobs of one kind waiting for a slot, and the runs that took one of them to give way
/// and have not ended yet (they still drain their calls in flight: their slots are not
/// free yet, and the job each gives way to still waits).
#[derive(Default)]
pub(crate) struct KindContention {
    waiting: AtomicU64,
    yielding: AtomicU64,
}

impl Contention {
    /// `waiting` jobs wait for a slot: as many runs give way, less those giving way now
    /// (before 2026-12-06 each sweep counted them afresh, so one waiting job made a second
    /// run give way while the first drained).
    pub fn set(&self, kind: JobKind, waiting: u64) {
        let k = &self.kinds[kind.index()];
        let yielding = k.yielding.load(Ordering::Relaxed);
        k.waiting.store(waiting.saturating_sub(yielding), Ordering::Relaxed);
    }

    /// A fetch leased `n` jobs of `kind` into slots that came free: the jobs the count
    /// was of may be among them, so they leave it (found by the fairness audit of
    /// 2026-12-07: the count outlived the fetch until the next sweep, and a run that
    /// passed its turn meanwhile gave way for a job already running). The next sweep
    /// counts again.
    pub fn leased(&self, kind: JobKind, n: u64) {
        let k = &self.kinds[kind.index()];
        let _ = k
            .waiting
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |w| Some(w.saturating_sub(n)));
    }

    /// The count a run of `kind` takes from.
    pub fn of(&self, kind: JobKind) -> Arc<KindContention> {
        self.kinds[kind.index()].clone()
    }
}

/// One run's part in its kind's count: whether it took a waiting job to give way. It is
/// counted as giving way until it is dropped, with the run's last context. And its part
/// among the runs a more urgent job of their own account may outrank (`outrank.rs`).
pub(crate) struct RunTurn {
    kind: Arc<KindContention>,
    took: AtomicBool,
    urgency: RunUrgency,
}

impl RunTurn {
    pub fn new(kind: Arc<KindContention>, runs: Arc<KindRuns>) -> Self {
        Self {
            kind,
            took: AtomicBool::new(false),
            urgency: RunUrgency::new(runs),
        }
    }

    /// The run has started (its lease was not withdrawn first).
    pub fn started(&self, leased: &Leased) {
        self.urgency.started(leased);
    }

    /// True when this run should give way: a more urgent job of its own account waits
    /// for its slot, or it took one waiting job off the count (or had already taken one).
    pub fn give_way(&self) -> bool {
        if self.urgency.give_way() || self.took.load(Ordering::Relaxed) {
            return true;
        }
        let taken = self
            .kind
            .waiting
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok();
        if taken {
            self.kind.yielding.fetch_add(1, Ordering::Relaxed);
            self.took.store(true, Ordering::Relaxed);
        }
        taken
    }
}

impl Drop for RunTurn {
    fn drop(&mut self) {
        if *self.took.get_mut() {
            self.kind.yielding.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_many_runs_give_way_as_jobs_wait_and_kinds_are_apart() {
        let c = Contention::default();
        let run = || RunTurn::new(c.of(JobKind::Cleanup), Default::default());
        assert!(!run().give_way(), "nothing waits");
        c.set(JobKind::Cleanup, 2);
        let (a, b, d) = (run(), run(), run());
        assert!(a.give_way() && a.give_way(), "a run that gives way is told so again");
        assert!(b.give_way());
        assert!(!d.give_way(), "two waited: two runs give way");
        assert!(!RunTurn::new(c.of(JobKind::Sync), Default::default()).give_way(), "kinds are apart");
        drop((a, b));
        c.set(JobKind::Cleanup, 0);
        assert!(!d.give_way(), "the next sweep found none waiting");
    }

    #[test]
    fn a_sweep_does_not_count_again_a_job_a_run_is_giving_way_to() {
        let c = Contention::default();
        c.set(JobKind::Cleanup, 1);
        let first = RunTurn::new(c.of(JobKind::Cleanup), Default::default());
        assert!(first.give_way());
        // The next sweep still sees the job waiting: the first run has not ended.
        c.set(JobKind::Cleanup, 1);
        let second = RunTurn::new(c.of(JobKind::Cleanup), Default::default());
        assert!(!second.give_way(), "the job is already given way to");
        drop(first);
        c.set(JobKind::Cleanup, 1);
        assert!(second.give_way(), "a job waiting after that run ended is another");
    }
}
