//! Request bodies in flight, bounded in bytes for the whole process. Each limit on its
//! own is per request (`api.body_limit_bytes`, the CSV route's `api.csv_limit_bytes`),
//! so many uploads sent slowly held their size each until the request timeout: enough
//! stalled 10 MiB CSV uploads took the process past its memory. A request with a body
//! reserves, before it is read, the bytes it announces (`Content-Length`; its route's
//! limit when it announces none) from `api.server.max_body_bytes_in_flight`, and one key
//! may hold a quarter of it (a key holding nothing may always send one body). A request
//! that finds no room is a 503 at once; the reservation ends with the request.
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

    /// Room for a body of `bytes` (at most the whole budget) for `key`, or a 503.
    pub fn reserve(self: &Arc<Self>, key: &str, bytes: usize) -> Result<Reservation, ApiError> {
        let bytes = bytes.min(self.total);
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let mine = held.per_key.get(key).copied().unwrap_or(0);
        let room = held.total + bytes <= self.total && (mine == 0 || mine + bytes <= self.total / 4);
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
        let budget = BodyBudget::new(100);
        let a = budget.reserve("a", 20).unwrap();
        assert!(budget.reserve("a", 10).is_err(), "past a's quarter (25)");
        let b = budget.reserve("b", 60).expect("a key holding nothing sends one body");
        assert!(budget.reserve("c", 30).is_err(), "past the budget");
        drop(a);
        let c = budget.reserve("c", 30).unwrap();
        drop((b, c));
        assert!(budget.reserve("d", 500).is_ok(), "one body alone, up to the whole budget");
    }
}
