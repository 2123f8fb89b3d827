//! Group commit for single enqueues: callers that enqueue at the same moment share one
//! pipelined script call (one invocation per queue), so a hundred concurrent single
//! enqueues cost Redis about what one bulk enqueue of a hundred does. A caller alone
//! goes straight through, and nobody waits for a timer: a call carries whoever queued
//! while the previous one was on the wire.
use std::sync::Mutex;

use tokio::sync::oneshot;

use super::{EnqueueError, Enqueued};
use crate::job::JobId;

/// Calls on the wire at once; later callers join the next one.
const MAX_CALLS: usize = 2;
/// Most jobs one call carries.
const MAX_JOBS: usize = 256;

/// One caller's job, waiting for a call to carry it.
pub(super) struct Waiter {
    pub id: JobId,
    pub args: Vec<String>,
    pub reply: oneshot::Sender<Result<Enqueued, EnqueueError>>,
}

/// The callers waiting to be carried, and how many calls carry them.
#[derive(Default)]
pub(super) struct GroupCommit {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    waiting: Vec<Waiter>,
    calls: usize,
}

impl GroupCommit {
    /// Queues `w`; true when the caller must start a call (fewer than `MAX_CALLS` run),
    /// which then takes batches with [`GroupCommit::next_batch`] until none is left.
    pub fn join(&self, w: Waiter) -> bool {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.waiting.push(w);
        if s.calls < MAX_CALLS {
            s.calls += 1;
            true
        } else {
            false
        }
    }

    /// The next batch for a running call; `None` ends the call (nobody waits).
    pub fn next_batch(&self) -> Option<Vec<Waiter>> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.waiting.is_empty() {
            s.calls -= 1;
            return None;
        }
        let n = s.waiting.len().min(MAX_JOBS);
        Some(s.waiting.drain(..n).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiter() -> (Waiter, oneshot::Receiver<Result<Enqueued, EnqueueError>>) {
        let (tx, rx) = oneshot::channel();
        let w = Waiter {
            id: JobId::new(crate::job::JobKind::Cleanup),
            args: vec![],
            reply: tx,
        };
        (w, rx)
    }

    #[test]
    fn at_most_two_calls_run_and_the_rest_join_their_next_batch() {
        let g = GroupCommit::default();
        assert!(g.join(waiter().0), "the first caller starts a call");
        assert!(g.join(waiter().0), "a second call may run beside it");
        for _ in 0..5 {
            assert!(!g.join(waiter().0), "later callers wait for a running call");
        }
        assert_eq!(g.next_batch().map(|b| b.len()), Some(7));
        assert!(g.next_batch().is_none(), "the first call ends: nobody waits");
        assert!(g.next_batch().is_none(), "so does the second");
        assert!(g.join(waiter().0), "with no call running, the next caller starts one");
    }

    #[test]
    fn one_call_carries_at_most_max_jobs() {
        let g = GroupCommit::default();
        for _ in 0..(MAX_JOBS + 10) {
            g.join(waiter().0);
        }
        assert_eq!(g.next_batch().map(|b| b.len()), Some(MAX_JOBS));
        assert_eq!(g.next_batch().map(|b| b.len()), Some(10));
    }
}
