//! SP-API-style usage plans: a token bucket per account and operation.
//!
//! SP-API documents each operation's plan as a rate (requests per second, restored
//! continuously) and a burst (bucket size); a request takes one token or gets a 429.
//! The bucket logic is pure (time is passed in) so it is property-tested below.
use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::operation::Operation;

/// One operation's usage plan.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Requests per second restored to the bucket.
    pub rate: f64,
    /// Bucket size: how many requests may come at once after a quiet spell.
    pub burst: u32,
}

impl RateLimit {
    pub const fn new(rate: f64, burst: u32) -> Self {
        Self { rate, burst }
    }

    pub(crate) fn validate(&self, op: Operation) -> Result<(), String> {
        if !(self.rate.is_finite() && self.rate > 0.0) {
            return Err(format!(
                "rate limit of {op}: rate must be a positive number of requests per second, got {}",
                self.rate
            ));
        }
        if self.burst == 0 {
            return Err(format!("rate limit of {op}: burst must be at least 1"));
        }
        Ok(())
    }

    /// The `x-amzn-RateLimit-Limit` header value, e.g. `0.0167` or `5`.
    pub fn header_value(&self) -> String {
        format!("{}", self.rate)
    }
}

/// Which table of limits to start from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RateProfile {
    /// The limits SP-API documents (slow: one getOrders a minute after a burst of 20).
    Spapi,
    /// Roughly 50-600 times faster, so tests and the demo exercise limiting in seconds.
    Fast,
    /// Effectively no limit, for benchmarks of the queue itself.
    Unlimited,
}

impl std::str::FromStr for RateProfile {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "spapi" => Ok(Self::Spapi),
            "fast" => Ok(Self::Fast),
            "unlimited" => Ok(Self::Unlimited),
            other => Err(format!("unknown rate profile {other:?}: use spapi, fast or unlimited")),
        }
    }
}

/// Usage plans for every rate-limited operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RateLimits(pub BTreeMap<Operation, RateLimit>);

impl RateLimits {
    pub fn profile(profile: RateProfile) -> Self {
        use Operation::*;
        let table: [(Operation, RateLimit); 7] = match profile {
            RateProfile::Spapi => [
                (GetOrders, RateLimit::new(0.0167, 20)),
                (GetListingsItem, RateLimit::new(5.0, 10)),
                (DeleteListingsItem, RateLimit::new(5.0, 10)),
                (CreateReport, RateLimit::new(0.0167, 15)),
                (GetReport, RateLimit::new(2.0, 15)),
                (GetReportDocument, RateLimit::new(0.0167, 15)),
                (GetReports, RateLimit::new(0.0222, 10)),
            ],
            RateProfile::Fast => [
                (GetOrders, RateLimit::new(10.0, 20)),
                (GetListingsItem, RateLimit::new(50.0, 100)),
                (DeleteListingsItem, RateLimit::new(50.0, 100)),
                (CreateReport, RateLimit::new(5.0, 15)),
                (GetReport, RateLimit::new(20.0, 40)),
                (GetReportDocument, RateLimit::new(5.0, 15)),
                (GetReports, RateLimit::new(5.0, 10)),
            ],
            RateProfile::Unlimited => Operation::RATE_LIMITED.map(|op| (op, RateLimit::new(1_000_000.0, 1_000_000))),
        };
        Self(table.into_iter().collect())
    }

    /// The plan for `op`; operations without a bucket (token, download) report the
    /// most generous plan so callers never divide by zero.
    pub fn get(&self, op: Operation) -> RateLimit {
        self.0.get(&op).copied().unwrap_or(RateLimit::new(1_000_000.0, 1_000_000))
    }

    /// Overrides some operations' plans, keeping the rest.
    pub fn merged(&self, overrides: &BTreeMap<Operation, RateLimit>) -> Self {
        let mut out = self.clone();
        out.0.extend(overrides.iter().map(|(op, limit)| (*op, *limit)));
        out
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        for (op, limit) in &self.0 {
            if !op.is_rate_limited() {
                return Err(format!(
                    "{op} has no rate limit; limits apply to {:?}",
                    Operation::RATE_LIMITED.map(Operation::name)
                ));
            }
            limit.validate(*op)?;
        }
        Ok(())
    }
}

impl Default for RateLimits {
    fn default() -> Self {
        Self::profile(RateProfile::Spapi)
    }
}

/// A token bucket that starts full.
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    pub(crate) fn full(limit: RateLimit, now: Instant) -> Self {
        Self {
            tokens: f64::from(limit.burst),
            updated: now,
        }
    }

    /// Takes one token, or says how long until one is there.
    pub(crate) fn try_take(&mut self, limit: RateLimit, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * limit.rate).min(f64::from(limit.burst));
        self.updated = now;
        // The epsilon absorbs float rounding so a client that waited exactly the advised
        // time is not refused by a hair.
        if self.tokens >= 1.0 - 1e-9 {
            self.tokens = (self.tokens - 1.0).max(0.0);
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / limit.rate))
        }
    }
}

/// Whole seconds for a `Retry-After` header: rounded up, at least 1, so a client that
/// waits exactly that long finds a token.
pub(crate) fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_secs_f64().ceil() as u64).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_full_bucket_allows_exactly_burst_requests_at_once() {
        let limit = RateLimit::new(0.0167, 20);
        let now = Instant::now();
        let mut bucket = TokenBucket::full(limit, now);
        for _ in 0..20 {
            assert!(bucket.try_take(limit, now).is_ok());
        }
        let wait = bucket.try_take(limit, now).expect_err("the 21st request must be limited");
        assert_eq!(retry_after_secs(wait), 60);
    }

    #[test]
    fn tokens_come_back_at_the_configured_rate() {
        let limit = RateLimit::new(2.0, 1);
        let start = Instant::now();
        let mut bucket = TokenBucket::full(limit, start);
        assert!(bucket.try_take(limit, start).is_ok());
        assert!(bucket.try_take(limit, start + Duration::from_millis(400)).is_err());
        assert!(bucket.try_take(limit, start + Duration::from_millis(500)).is_ok());
    }

    #[test]
    fn every_profile_covers_every_rate_limited_operation_and_validates() {
        for profile in [RateProfile::Spapi, RateProfile::Fast, RateProfile::Unlimited] {
            let limits = RateLimits::profile(profile);
            assert_eq!(limits.0.len(), Operation::RATE_LIMITED.len());
            assert_eq!(limits.validate(), Ok(()));
        }
    }

    proptest! {
        /// Over any schedule of requests, the bucket never admits more than
        /// burst + rate * elapsed, and a refused request is told a positive wait.
        #[test]
        fn admissions_never_exceed_burst_plus_rate_times_elapsed(
            rate in 0.01f64..100.0,
            burst in 1u32..50,
            gaps_ms in proptest::collection::vec(0u64..2_000, 1..200),
        ) {
            let limit = RateLimit::new(rate, burst);
            let start = Instant::now();
            let mut bucket = TokenBucket::full(limit, start);
            let mut now = start;
            let mut admitted = 0u64;
            for gap in gaps_ms {
                now += Duration::from_millis(gap);
                match bucket.try_take(limit, now) {
                    Ok(()) => admitted += 1,
                    Err(wait) => prop_assert!(wait > Duration::ZERO),
                }
                let allowed = f64::from(burst) + rate * now.duration_since(start).as_secs_f64();
                prop_assert!(admitted as f64 <= allowed + 1e-6);
            }
        }

        /// Waiting the advised time always yields a token.
        #[test]
        fn waiting_the_advised_time_is_enough(rate in 0.01f64..100.0, burst in 1u32..20) {
            let limit = RateLimit::new(rate, burst);
            let now = Instant::now();
            let mut bucket = TokenBucket::full(limit, now);
            for _ in 0..burst {
                prop_assert!(bucket.try_take(limit, now).is_ok());
            }
            let wait = bucket.try_take(limit, now).expect_err("bucket is empty");
            prop_assert!(bucket.try_take(limit, now + Duration::from_secs(retry_after_secs(wait))).is_ok());
        }
    }
}
