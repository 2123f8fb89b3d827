//! Caps on open event streams (`GET /v1/jobs/{id}/events`), per key and per process. A
//! stream holds a socket, a task and a poll loop for as long as `events_max_ms`; without
//! a cap one tenant could open them until the process or Redis gives out.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
    per_key: HashMap<String, usize>,
}

/// One open stream; dropping it (the stream ended or the client went away) frees it.
#[derive(Debug)]
pub struct StreamSlot {
    slots: Arc<StreamSlots>,
    key: String,
}

impl StreamSlots {
    pub fn new(max_open: usize, max_per_key: usize) -> Arc<Self> {
        Arc::new(Self {
            max_open,
            max_per_key,
            open: Mutex::new(Open::default()),
        })
    }

    /// A slot for one more stream of `key`, or 429 past either cap.
    pub fn open(self: &Arc<Self>, key: &str) -> Result<StreamSlot, ApiError> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let mine = open.per_key.get(key).copied().unwrap_or(0);
        if mine >= self.max_per_key {
            return Err(ApiError::TooManyStreams {
                detail: format!("this key already has {mine} open event streams, its limit; close one or retry later"),
                retry_after: RETRY_AFTER,
            });
        }
        if open.total >= self.max_open {
            return Err(ApiError::TooManyStreams {
                detail: "the server has as many open event streams as it allows; retry later".into(),
                retry_after: RETRY_AFTER,
            });
        }
        open.total += 1;
        *open.per_key.entry(key.to_owned()).or_default() += 1;
        Ok(StreamSlot {
            slots: self.clone(),
            key: key.to_owned(),
        })
    }

    /// How many streams are open (all keys).
    pub fn open_count(&self) -> usize {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).total
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().unwrap_or_else(|e| e.into_inner());
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.per_key.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                open.per_key.remove(&self.key);
            }
        }
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
        assert!(matches!(slots.open("b"), Err(ApiError::TooManyStreams { .. })), "the process cap");
        drop(a1);
        assert_eq!(slots.open_count(), 2);
        let _b2 = slots.open("b").unwrap();
    }
}
