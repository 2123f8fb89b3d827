//! Request bodies in flight, bounded in bytes for the whole process. Each limit on its
//! own is per request (`api.body_limit_bytes`, the CSV route's `api.csv_limit_bytes`),
//! so many uploads sent slowly held their size each until the request timeout: enough
//! stalled 10 MiB CSV uploads took the process past its memory. A request with a body
//! reserves, before it is read, the bytes it announces (`Content-Length`; its route's
//! limit when it announces none) from `api.server.max_body_bytes_in_flight`, and one key
//! may hold a quarter of it. An eighth is kept for keys holding nothing, each body there
//! at most a sixty-fourth of the budget (a JSON request, at the defaults): before (found
//! by the hostile-tenant audit of 2026-12-06), four keys holding their quarters with
//! bodies sent slowly refused every other key's writes. One body takes at most the
//! seven eighths shared. A request that finds no room is a 503 at once; the reservation
//! ends with the request.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::http::{header, HeaderMap};

use crate::error::ApiError;

#[derive(Debug)]
pub struct BodyBudget {
    total: usize,
    held: Mutex<Held>,
}

#[derive(Debug, Default)]
struct Held {
    total: usize,
    per_key: HashMap<String, usize>,
}

/// One request's bytes, given back when it is dropped.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<BodyBudget>,
    key: String,
    bytes: usize,
}

impl BodyBudget {
    pub fn new(total: usize) -> Arc<Self> {
        Arc::new(Self {
            total,
            held: Mutex::new(Held::default()),
        })
    }

    /// Room for a body of `bytes` (at most the shared part) for `key`, or a 503.
    pub fn reserve(self: &Arc<Self>, key: &str, bytes: usize) -> Result<Reservation, ApiError> {
        let shared = self.total - self.total / 8;
        let bytes = bytes.min(shared);
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let mine = held.per_key.get(key).copied().unwrap_or(0);
        let room = if mine == 0 {
            // a key holding nothing: its one body in the shared part, or a small one in
            // the eighth kept for such keys
            held.total + bytes <= shared || (bytes <= self.total / 64 && held.total + bytes <= self.total)
        } else {
            held.total + bytes <= shared && mine + bytes <= self.total / 4
        };
        if !room {
            return Err(ApiError::Busy(
                "the API holds as many request bodies as it can at once; retry shortly".into(),
            ));
        }
        held.total += bytes;
        *held.per_key.entry(key.to_owned()).or_default() += bytes;
        Ok(Reservation {
            budget: self.clone(),
            key: key.to_owned(),
            bytes,
        })
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut held = self.budget.held.lock().unwrap_or_else(|p| p.into_inner());
        held.total -= self.bytes;
        if let Some(mine) = held.per_key.get_mut(&self.key) {
            *mine -= self.bytes;
            if *mine == 0 {
                held.per_key.remove(&self.key);
            }
        }
    }
}

/// The bytes a request's body may take: what it announces, at most `limit` (its route's);
/// `limit` when it announces nothing but has a body; 0 without one.
pub fn announced(headers: &HeaderMap, limit: usize) -> usize {
    match headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
    {
        Some(n) => n.min(limit),
        None if headers.contains_key(header::TRANSFER_ENCODING) => limit,
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_stay_within_the_budget_and_a_keys_quarter_and_end_with_their_requests() {
        let budget = BodyBudget::new(640);
        let a = budget.reserve("a", 100).unwrap();
        assert!(budget.reserve("a", 100).is_err(), "past a's quarter (160)");
        let b = budget.reserve("b", 400).expect("a key holding nothing sends one body");
        assert!(budget.reserve("c", 100).is_err(), "past the shared part (560)");
        drop(a);
        let c = budget.reserve("c", 100).unwrap();
        drop((b, c));
        let d = budget.reserve("d", 5000).expect("one body alone, up to the shared part");
        assert_eq!(d.bytes, 560);
    }

    /// Found by the hostile-tenant audit of 2026-12-06: four keys each holding their
    /// quarter (bodies sent a byte a second) held the whole budget, and every other
    /// key's write with a body was a 503.
    #[test]
    fn keys_holding_their_quarters_leave_room_for_a_small_body_of_a_key_holding_nothing() {
        let budget = BodyBudget::new(640);
        // each takes all it may: its quarter, 160, in two bodies
        let held: Vec<Reservation> = ["k1", "k2", "k3", "k4"]
            .iter()
            .flat_map(|k| [budget.reserve(k, 100), budget.reserve(k, 60)])
            .filter_map(Result::ok)
            .collect();
        assert!(budget.reserve("k5", 100).is_err(), "the budget is full for a large body");
        let small = budget.reserve("innocent", 10).expect("a small body of a key holding nothing");
        assert!(
            budget.reserve("k1", 10).is_err(),
            "a key holding some cannot draw on the kept eighth"
        );
        drop((held, small));
    }
}
