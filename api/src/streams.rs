//! Caps on open event streams (`GET /v1/jobs/{id}/events`), per key and per process. A
//! stream holds a socket, a task and a poll loop for as long as `events_max_ms`; without
//! a cap one tenant could open them until the process or Redis gives out. The process cap
//! is shared fairly: when it is reached, a key with fewer streams than another takes a
//! slot by ending that key's oldest stream, which ends as one does at `events_max_ms` (its
//! client reconnects). So a key is refused only for what it holds itself, and never
//! learns from a refusal that other keys stream.
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

use crate::error::ApiError;

/// What a client past a cap is told to wait: streams end on their own within
/// `events_max_ms`, and most end much sooner (the job ends).
pub const RETRY_AFTER: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub struct StreamSlots {
    max_open: usize,
    max_per_key: usize,
    open: Mutex<Open>,
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    next_id: u64,
    /// Each key's open streams, oldest first: (slot id, what ends it early).
    per_key: HashMap<String, VecDeque<(u64, CancellationToken)>>,
}

/// One open stream; dropping it (the stream ended or the client went away) frees it.
#[derive(Debug)]
pub struct StreamSlot {
    slots: Arc<StreamSlots>,
    key: String,
    id: u64,
    ended: CancellationToken,
}

impl StreamSlots {
    pub fn new(max_open: usize, max_per_key: usize) -> Arc<Self> {
        Arc::new(Self {
            max_open,
            max_per_key,
            open: Mutex::new(Open::default()),
        })
    }

    /// Whether one more stream of `key` would be let in now, with no side effect: a
    /// request is checked before its job is read (past the cap it costs no Redis read)
    /// and takes its slot with [`Self::open`] only once the job is found, so a request
    /// answered 404 ends nobody's stream (before, found by the hostile-tenant audit of
    /// 2026-12-06, a key holding no stream could end another key's streams one by one
    /// with made-up ids).
    pub fn check(&self, key: &str) -> Result<(), ApiError> {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        self.admit(&open, key).map(|_| ())
    }

    /// A slot for one more stream of `key`, or 429 when the key holds its cap, or holds
    /// as many as any other key while the process is at its cap.
    pub fn open(self: &Arc<Self>, key: &str) -> Result<StreamSlot, ApiError> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(richest) = self.admit(&open, key)? {
            let held = open.per_key.get_mut(&richest).expect("just found");
            if let Some((_, ended)) = held.pop_front() {
                ended.cancel();
                open.total -= 1;
                tracing::debug!(from = %richest, to = %key, "an event stream ended to give its slot to a key with fewer");
            }
        }
        open.total += 1;
        open.next_id += 1;
        let (id, ended) = (open.next_id, CancellationToken::new());
        open.per_key.entry(key.to_owned()).or_default().push_back((id, ended.clone()));
        Ok(StreamSlot {
            slots: self.clone(),
            key: key.to_owned(),
            id,
            ended,
        })
    }

    /// Whether `key` may have one more stream, and which key gives up its oldest for it
    /// (at the process cap).
    fn admit(&self, open: &Open, key: &str) -> Result<Option<String>, ApiError> {
        let mine = open.per_key.get(key).map_or(0, VecDeque::len);
        let refused = || ApiError::TooManyStreams {
            detail: format!("this key has {mine} open event streams, as many as it may have open now; close one or retry later"),
            retry_after: RETRY_AFTER,
        };
        if mine >= self.max_per_key {
            return Err(refused());
        }
        if open.total < self.max_open {
            return Ok(None);
        }
        // The key holding the most gives up its oldest, if it holds at least two more
        // than this key does: the shares even out, never flip.
        open.per_key
            .iter()
            .filter(|(k, held)| k.as_str() != key && held.len() > mine + 1)
            .max_by_key(|(_, held)| held.len())
            .map(|(k, _)| Some(k.clone()))
            .ok_or_else(refused)
    }

    /// How many streams are open (all keys).
    pub fn open_count(&self) -> usize {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).total
    }
}

impl StreamSlot {
    /// Resolves when the slot was given to another key: the stream should end.
    pub fn ended(&self) -> WaitForCancellationFuture<'_> {
        self.ended.cancelled()
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().unwrap_or_else(|e| e.into_inner());
        let Some(held) = open.per_key.get_mut(&self.key) else {
            return;
        };
        // A slot given to another key was already let go.
        let Some(at) = held.iter().position(|(id, _)| *id == self.id) else {
            return;
        };
        held.remove(at);
        if held.is_empty() {
            open.per_key.remove(&self.key);
        }
        open.total -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_key_has_its_own_cap_under_the_process_cap_and_dropping_a_slot_frees_it() {
        let slots = StreamSlots::new(3, 2);
        let a1 = slots.open("a").unwrap();
        let _a2 = slots.open("a").unwrap();
        assert!(matches!(slots.open("a"), Err(ApiError::TooManyStreams { .. })));
        let _b1 = slots.open("b").unwrap();
        assert!(matches!(slots.open("b"), Err(ApiError::TooManyStreams { .. })), "as many as a");
        drop(a1);
        assert_eq!(slots.open_count(), 2);
        let _b2 = slots.open("b").unwrap();
    }

    #[test]
    fn at_the_process_cap_a_key_with_fewer_takes_the_oldest_slot_of_the_key_with_most() {
        let slots = StreamSlots::new(4, 4);
        let a: Vec<StreamSlot> = (0..4).map(|_| slots.open("a").unwrap()).collect();
        let b1 = slots.open("b").unwrap();
        assert!(a[0].ended.is_cancelled(), "a's oldest gave way");
        assert!(!a[1].ended.is_cancelled());
        assert_eq!(slots.open_count(), 4);
        // a check takes nothing: it would be let in, and a's next stream stays open
        slots.check("b").unwrap();
        slots.check("c").unwrap();
        assert!(!a[1].ended.is_cancelled(), "a check ends no stream");
        assert_eq!(slots.open_count(), 4);
        let _b2 = slots.open("b").unwrap();
        assert!(a[1].ended.is_cancelled());
        // two each: b would then hold more than a, so it is refused, about itself
        assert!(slots.check("b").is_err());
        let Err(ApiError::TooManyStreams { detail, .. }) = slots.open("b") else {
            panic!("b holds as many as a");
        };
        assert!(detail.contains("this key has 2") && !detail.contains("server"), "{detail}");
        // the slots given away free nothing when their streams end
        drop(a);
        assert_eq!(slots.open_count(), 2);
        drop(b1);
        assert_eq!(slots.open_count(), 1);
    }
}
