//! Counters that tests read back through `GET /_admin/stats`: per account and
//! operation, calls and their outcomes, the highest request rate seen, concurrency,
//! trace context received, token grants and every delete with its outcome.
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::operation::Operation;

/// One operation's counters for one account.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpStats {
    /// Every call that reached the account (authenticated, or with an expired token).
    pub calls: u64,
    /// 2xx answers.
    pub accepted: u64,
    /// 429 answers (empty bucket, forced burst or quota window).
    pub rate_limited: u64,
    /// 5xx answers.
    pub server_errors: u64,
    /// 400/403/404 answers.
    pub client_errors: u64,
    /// 401 answers (expired tokens of this account).
    pub unauthorized: u64,
    /// Connections reset instead of answered.
    pub resets: u64,
    /// Most calls seen in any one-second window.
    pub max_rps_1s: u32,
    /// Most calls of this operation in flight at once.
    pub max_in_flight: u32,
    /// Calls that carried a W3C `traceparent` header.
    #[serde(default)]
    pub traced: u64,
    /// The `traceparent` header of the last call that carried one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_traceparent: Option<String>,
}

/// What became of one deleteListingsItem call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeleteOutcome {
    /// 200: the listing existed and is gone now.
    Deleted,
    /// 404: there was no such listing.
    NotFound,
    /// 400: a permanent error (bad input, or a SKU in `permanent_400_skus`).
    Rejected,
    /// 429.
    Throttled,
    /// 5xx.
    ServerError,
    /// 401/403.
    Unauthorized,
    /// The connection was reset; the listing was not touched.
    Reset,
}

impl DeleteOutcome {
    pub(crate) fn from_status(status: u16) -> Self {
        match status {
            200..=299 => Self::Deleted,
            404 => Self::NotFound,
            429 => Self::Throttled,
            401 | 403 => Self::Unauthorized,
            500..=599 => Self::ServerError,
            _ => Self::Rejected,
        }
    }
}

/// One deleteListingsItem call, in arrival order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteRecord {
    pub sku: String,
    /// HTTP status answered (0 for a reset connection).
    pub status: u16,
    pub outcome: DeleteOutcome,
    pub at: DateTime<Utc>,
}

/// One account's counters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AccountStats {
    /// Successful LWA token exchanges.
    pub token_grants: u64,
    /// Token exchanges with this account's refresh token and the wrong client.
    pub token_failures: u64,
    pub reports_created: u64,
    pub operations: BTreeMap<Operation, OpStats>,
    pub deletes: Vec<DeleteRecord>,
}

/// Everything `GET /_admin/stats` returns.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StatsSnapshot {
    pub uptime_s: f64,
    /// Calls with a missing or unknown access token (no account to charge them to),
    /// and token requests with an unknown refresh token, by operation.
    pub unauthenticated: BTreeMap<Operation, u64>,
    pub accounts: BTreeMap<String, AccountStats>,
}

impl StatsSnapshot {
    /// Counters of one account and operation (all zero if it never saw a call).
    pub fn op(&self, account: &str, op: Operation) -> OpStats {
        self.accounts
            .get(account)
            .and_then(|a| a.operations.get(&op))
            .cloned()
            .unwrap_or_default()
    }
}

/// How a call ended, for counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallEnd {
    Status(u16),
    Reset,
}

/// Live counters of one account and operation.
#[derive(Debug, Default)]
pub(crate) struct OpTracker {
    stats: OpStats,
    recent: VecDeque<Instant>,
    in_flight: u32,
}

impl OpTracker {
    pub(crate) fn start(&mut self, now: Instant) {
        self.stats.calls += 1;
        while self
            .recent
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= Duration::from_secs(1))
        {
            self.recent.pop_front();
        }
        self.recent.push_back(now);
        self.stats.max_rps_1s = self.stats.max_rps_1s.max(self.recent.len() as u32);
        self.in_flight += 1;
        self.stats.max_in_flight = self.stats.max_in_flight.max(self.in_flight);
    }

    pub(crate) fn saw_traceparent(&mut self, traceparent: &str) {
        self.stats.traced += 1;
        self.stats.last_traceparent = Some(traceparent.to_owned());
    }

    pub(crate) fn end(&mut self, end: CallEnd) {
        self.in_flight = self.in_flight.saturating_sub(1);
        let counter = match end {
            CallEnd::Reset => &mut self.stats.resets,
            CallEnd::Status(200..=299) => &mut self.stats.accepted,
            CallEnd::Status(401) => &mut self.stats.unauthorized,
            CallEnd::Status(429) => &mut self.stats.rate_limited,
            CallEnd::Status(500..=599) => &mut self.stats.server_errors,
            CallEnd::Status(_) => &mut self.stats.client_errors,
        };
        *counter += 1;
    }

    /// A call that ended before it started (e.g. the client went away): only frees its slot.
    pub(crate) fn abandon(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    pub(crate) fn snapshot(&self) -> OpStats {
        self.stats.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_one_second_window_keeps_the_highest_rate() {
        let mut t = OpTracker::default();
        let start = Instant::now();
        for i in 0..5 {
            t.start(start + Duration::from_millis(i * 100));
            t.end(CallEnd::Status(200));
        }
        t.start(start + Duration::from_secs(3));
        t.end(CallEnd::Status(429));
        let s = t.snapshot();
        assert_eq!(
            (s.calls, s.accepted, s.rate_limited, s.max_rps_1s, s.max_in_flight),
            (6, 5, 1, 5, 1)
        );
    }
}
