//! Caps on reads of whole records in flight (`GET /v1/jobs/{id}` with its payload of up
//! to `max_payload_bytes`, `GET /v1/schedules` with its page's): each holds Redis's
//! reply, the parsed record and the answer in memory at once, several times the payload.
//! The rate limits count requests, not bytes, so without a cap one key's burst of such
//! reads of its largest jobs could take the process's memory from every tenant. A key
//! has at most [`PER_KEY`] in flight and the process [`IN_PROCESS`]; a read past either
//! waits its turn, and one that would wait longer than [`WAIT`] is refused (429). A burst
//! of small reads only queues for a moment: each takes about a millisecond. The same
//! turns bound a key's walks ([`RecordReads::walks`]).
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;

/// Whole-record reads one key may have in flight.
pub const PER_KEY: usize = 8;
/// Whole-record reads the process serves at once.
pub const IN_PROCESS: usize = 64;
/// How long a read waits for its turn before it is refused.
pub const WAIT: Duration = Duration::from_secs(2);

/// Walks (a filtered listing, a count of a job's items, a dead-letter selection) one key
/// may have in flight: each is charged to the key's budget only once it knows what it
/// read, so the next one waits for that charge (see `handlers/listing.rs`).
pub const WALKS_PER_KEY: usize = 2;

#[derive(Debug)]
pub struct RecordReads {
    in_process: Arc<Semaphore>,
    /// One per key name (the keys are the configured ones: a bounded set).
    per_key: Mutex<HashMap<String, Arc<Semaphore>>>,
    per_key_turns: usize,
    /// What the turns are for, as a refusal names it.
    what: &'static str,
}

impl Default for RecordReads {
    fn default() -> Self {
        Self::new(PER_KEY, IN_PROCESS, "reads of whole jobs or schedules")
    }
}

/// One read in flight; dropping it ends it.
#[derive(Debug)]
pub struct Reading {
    _key: OwnedSemaphorePermit,
    _process: OwnedSemaphorePermit,
}

impl RecordReads {
    fn new(per_key_turns: usize, in_process: usize, what: &'static str) -> Self {
        Self {
            in_process: Arc::new(Semaphore::new(in_process)),
            per_key: Mutex::default(),
            per_key_turns,
            what,
        }
    }

    /// Turns for walks: [`WALKS_PER_KEY`] a key, [`IN_PROCESS`] in all.
    pub fn walks() -> Self {
        Self::new(
            WALKS_PER_KEY,
            IN_PROCESS,
            "walks of an index or of a job's items (filtered listings, item pages, dead-letter selections)",
        )
    }

    /// A turn for one more whole-record read of `key`, waited for up to [`WAIT`].
    pub async fn start(&self, key: &str) -> Result<Reading, ApiError> {
        let mine = {
            let mut per_key = self.per_key.lock().unwrap_or_else(PoisonError::into_inner);
            per_key
                .entry(key.to_owned())
                .or_insert_with(|| Arc::new(Semaphore::new(self.per_key_turns)))
                .clone()
        };
        let turns = async {
            let key_turn = mine.acquire_owned().await.ok()?;
            let process_turn = self.in_process.clone().acquire_owned().await.ok()?;
            Some(Reading {
                _key: key_turn,
                _process: process_turn,
            })
        };
        match tokio::time::timeout(WAIT, turns).await {
            Ok(Some(reading)) => Ok(reading),
            _ => Err(ApiError::TooManyInFlight {
                detail: format!(
                    "{} are answered {} at a time per key, and this one waited {} s for its turn; retry shortly",
                    self.what,
                    self.per_key_turns,
                    WAIT.as_secs()
                ),
                retry_after: Duration::from_secs(1),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_key_waits_for_its_turn_past_its_share_and_is_refused_when_the_wait_is_long() {
        let reads = RecordReads::default();
        let mut held = Vec::new();
        for _ in 0..PER_KEY {
            held.push(reads.start("acme").await.unwrap());
        }
        let other = reads.start("globex").await.expect("another key is not held back");
        // One ends within the wait: the next read gets its turn.
        let waiting = reads.start("acme");
        let ended = held.pop();
        let ((), next) = tokio::join!(
            async {
                tokio::time::sleep(WAIT / 2).await;
                drop(ended);
            },
            waiting
        );
        held.push(next.expect("its turn came within the wait"));
        // None ends: refused after the wait.
        let e = reads.start("acme").await.unwrap_err();
        assert!(matches!(e, ApiError::TooManyInFlight { .. }), "{e:?}");
        drop((held, other));
        assert_eq!(reads.in_process.available_permits(), IN_PROCESS, "every turn was given back");
    }
}
