//! How many jobs of a kind wait for a slot of this process while all its slots are
//! taken: that many runs that have worked their turn hand their jobs back between two
//! steps ([`super::JobContext::give_way`]), so a long job holds a slot for a turn, not for
//! the whole of its work.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::job::JobKind;

/// One count per kind, set by the sweep (`sweep.rs`) and taken from by the runs.
#[derive(Default)]
pub(crate) struct Contention {
    waiting: [Arc<AtomicU64>; 3],
}

impl Contention {
    pub fn set(&self, kind: JobKind, waiting: u64) {
        self.waiting[kind.index()].store(waiting, Ordering::Relaxed);
    }

    /// The count a run of `kind` takes from.
    pub fn of(&self, kind: JobKind) -> Arc<AtomicU64> {
        self.waiting[kind.index()].clone()
    }
}

/// Take one waiting job off `count`: true when there was one to give way to.
pub(crate) fn take_one(count: &AtomicU64) -> bool {
    count
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_many_runs_give_way_as_jobs_wait_and_kinds_are_apart() {
        let c = Contention::default();
        let cleanup = c.of(JobKind::Cleanup);
        assert!(!take_one(&cleanup), "nothing waits");
        c.set(JobKind::Cleanup, 2);
        assert!(take_one(&cleanup));
        assert!(take_one(&cleanup));
        assert!(!take_one(&cleanup), "two waited: two runs give way");
        c.set(JobKind::Cleanup, 1);
        assert!(!take_one(&c.of(JobKind::Sync)), "kinds are apart");
        c.set(JobKind::Cleanup, 0);
        assert!(!take_one(&cleanup), "the next sweep found none waiting");
    }
}
