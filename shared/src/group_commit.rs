//! Group commit: callers that arrive while a call is on the wire share the next call, so
//! a hundred concurrent callers cost Redis about what one call for a hundred does (the
//! queue's single enqueues; the API's rate-limit checks). A caller alone goes straight
//! through, and nobody waits for a timer: a call carries whoever queued while the
//! previous one was on the wire.
use std::sync::Mutex;

/// Calls on the wire at once; later callers join the next one.
const MAX_CALLS: usize = 2;

/// The callers waiting to be carried, and how many calls carry them.
pub struct GroupCommit<T> {
    state: Mutex<State<T>>,
    /// Most callers one call carries.
    max_batch: usize,
}

struct State<T> {
    waiting: Vec<T>,
    calls: usize,
}

impl<T> GroupCommit<T> {
    pub fn new(max_batch: usize) -> Self {
        Self {
            state: Mutex::new(State {
                waiting: Vec::new(),
                calls: 0,
            }),
            max_batch: max_batch.max(1),
        }
    }

    /// Queues `item`; true when the caller must start a call (fewer than `MAX_CALLS` run),
    /// which then takes batches with [`GroupCommit::next_batch`] until none is left.
    pub fn join(&self, item: T) -> bool {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.waiting.push(item);
        if s.calls < MAX_CALLS {
            s.calls += 1;
            true
        } else {
            false
        }
    }

    /// The next batch for a running call; `None` ends the call (nobody waits).
    pub fn next_batch(&self) -> Option<Vec<T>> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.waiting.is_empty() {
            s.calls -= 1;
            return None;
        }
        let n = s.waiting.len().min(self.max_batch);
        Some(s.waiting.drain(..n).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_two_calls_run_and_the_rest_join_their_next_batch() {
        let g = GroupCommit::new(256);
        assert!(g.join(0), "the first caller starts a call");
        assert!(g.join(1), "a second call may run beside it");
        for i in 2..7 {
            assert!(!g.join(i), "later callers wait for a running call");
        }
        assert_eq!(g.next_batch(), Some((0..7).collect()), "in arrival order");
        assert!(g.next_batch().is_none(), "the first call ends: nobody waits");
        assert!(g.next_batch().is_none(), "so does the second");
        assert!(g.join(7), "with no call running, the next caller starts one");
    }

    #[test]
    fn one_call_carries_at_most_max_batch() {
        let g = GroupCommit::new(256);
        for i in 0..266 {
            g.join(i);
        }
        assert_eq!(g.next_batch().map(|b| b.len()), Some(256));
        assert_eq!(g.next_batch().map(|b| b.len()), Some(10));
    }
}
