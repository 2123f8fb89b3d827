//! Fault injection: what one account's calls should suffer, and the state that
//! counts bursts down and keeps quota windows.
//!
//! A [`FaultSpec`] is what tests and CLI flags ask for; a [`FaultState`] is that spec
//! plus its counters and its own seeded generator, replaced whole on every `PUT`.
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::error::ApiError;
use super::operation::Operation;
use super::rng::SimRng;

/// The faults one account suffers. Every field is optional in JSON; absent means "none".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultSpec {
    /// Probability (0..1) that a call fails with 500 or 503.
    pub error_rate_5xx: f64,
    /// The next `count` calls fail with 5xx, then calls recover.
    pub burst_5xx: Option<Burst5xx>,
    /// The next `count` calls get 429 QuotaExceeded, whatever the bucket holds.
    pub rate_limit_burst: Option<RateLimitBurst>,
    /// From now for `seconds`, every report operation (createReport, getReport,
    /// getReportDocument) answers 429 QuotaExceeded. Not narrowed by `ops`.
    pub quota_window: Option<QuotaWindow>,
    /// Added before the call is answered.
    pub latency_ms: u64,
    /// The response body trickles out over this long (headers come at once).
    pub slow_body_ms: u64,
    /// Probability (0..1) that the connection is reset instead of answered.
    pub reset_rate: f64,
    /// Malformed rows added to each report document created while this is set.
    pub malformed_rows: u32,
    /// Orders (of quantity 2 or more) written as two rows of their SKU in each report
    /// document created while this is set, as an order holding the SKU as two items: the
    /// quantity and the price split between the rows, the second row last in the document.
    pub split_items: u32,
    /// Lifetime of access tokens granted from now on (seconds; 0 = born expired).
    pub token_ttl_s: Option<u64>,
    /// SKUs whose getListingsItem / deleteListingsItem answer 400 InvalidInput: a
    /// permanent error a client must not retry.
    pub permanent_400_skus: Vec<String>,
    /// SKUs whose getListingsItem / deleteListingsItem answer 500 on every call: an item
    /// the marketplace keeps failing on while it answers the others.
    pub failing_skus: Vec<String>,
    /// The next `count` reports created end FATAL instead of DONE.
    pub fatal_reports: Option<Count>,
    /// Operations the per-call faults (5xx, 429 bursts, latency, slow body, resets)
    /// apply to. Absent: every SP-API operation and the document download, but not the
    /// LWA token call (name `lwaToken` here to include it).
    pub ops: Option<Vec<Operation>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Burst5xx {
    pub count: u32,
    /// 500 or 503; absent alternates 500, 503, 500, ...
    #[serde(default)]
    pub status: Option<u16>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitBurst {
    pub count: u32,
    /// The `Retry-After` these 429s carry (default 1).
    #[serde(default = "one_second")]
    pub retry_after_s: u64,
}

fn one_second() -> u64 {
    1
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaWindow {
    pub seconds: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Count {
    pub count: u32,
}

impl FaultSpec {
    pub fn is_empty(&self) -> bool {
        *self == FaultSpec::default()
    }

    /// Precise messages for values that cannot mean anything.
    pub fn validate(&self) -> Result<(), String> {
        for (name, p) in [("error_rate_5xx", self.error_rate_5xx), ("reset_rate", self.reset_rate)] {
            if !(0.0..=1.0).contains(&p) {
                return Err(format!("{name} must be a probability between 0 and 1, got {p}"));
            }
        }
        if let Some(Burst5xx { status: Some(status), .. }) = self.burst_5xx {
            if status != 500 && status != 503 {
                return Err(format!("burst_5xx.status must be 500 or 503, got {status}"));
            }
        }
        if let Some(QuotaWindow { seconds }) = self.quota_window {
            if !(seconds.is_finite() && seconds >= 0.0) {
                return Err(format!("quota_window.seconds must be a non-negative number, got {seconds}"));
            }
        }
        if self.ops.as_ref().is_some_and(Vec::is_empty) {
            return Err("ops must name at least one operation, or be left out to mean all".to_owned());
        }
        Ok(())
    }
}

/// What the faults decided about one call.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Verdict {
    /// Close the connection without an answer.
    Reset,
    /// Answer with this error instead of running the handler.
    Reject(ApiError),
}

/// Counters left of a [`FaultState`], for `GET /_admin/faults/{account}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FaultsRemaining {
    pub burst_5xx: u32,
    pub rate_limit_burst: u32,
    pub fatal_reports: u32,
    /// Seconds left in the quota window (0 when none is open).
    pub quota_window_s: f64,
}

/// A spec in force plus what it has used up.
#[derive(Debug, Clone)]
pub(crate) struct FaultState {
    spec: FaultSpec,
    burst_5xx_left: u32,
    burst_5xx_sent: u32,
    rate_limit_left: u32,
    fatal_left: u32,
    quota_until: Option<Instant>,
    rng: SimRng,
}

impl FaultState {
    pub(crate) fn new(spec: FaultSpec, rng: SimRng, now: Instant) -> Self {
        Self {
            burst_5xx_left: spec.burst_5xx.map_or(0, |b| b.count),
            burst_5xx_sent: 0,
            rate_limit_left: spec.rate_limit_burst.map_or(0, |b| b.count),
            fatal_left: spec.fatal_reports.map_or(0, |c| c.count),
            quota_until: spec.quota_window.map(|w| now + Duration::from_secs_f64(w.seconds)),
            spec,
            rng,
        }
    }

    pub(crate) fn spec(&self) -> &FaultSpec {
        &self.spec
    }

    pub(crate) fn remaining(&self, now: Instant) -> FaultsRemaining {
        FaultsRemaining {
            burst_5xx: self.burst_5xx_left,
            rate_limit_burst: self.rate_limit_left,
            fatal_reports: self.fatal_left,
            quota_window_s: self
                .quota_until
                .map_or(0.0, |until| until.saturating_duration_since(now).as_secs_f64()),
        }
    }

    fn applies_to(&self, op: Operation) -> bool {
        match &self.spec.ops {
            None => op != Operation::LwaToken,
            Some(ops) => ops.contains(&op),
        }
    }

    pub(crate) fn latency(&self, op: Operation) -> Duration {
        if self.applies_to(op) {
            Duration::from_millis(self.spec.latency_ms)
        } else {
            Duration::ZERO
        }
    }

    pub(crate) fn slow_body(&self, op: Operation) -> Duration {
        if self.applies_to(op) {
            Duration::from_millis(self.spec.slow_body_ms)
        } else {
            Duration::ZERO
        }
    }

    /// Faults that act before the usage plan is consulted (the edge of the API):
    /// quota windows, resets and forced 429s. These take no token from the bucket.
    pub(crate) fn before_rate_limit(&mut self, op: Operation, now: Instant) -> Option<Verdict> {
        if op.is_report() {
            if let Some(until) = self.quota_until.filter(|until| *until > now) {
                let left = until.saturating_duration_since(now);
                return Some(Verdict::Reject(ApiError::QuotaExceeded {
                    retry_after_s: super::ratelimit::retry_after_secs(left),
                }));
            }
        }
        if !self.applies_to(op) {
            return None;
        }
        if self.rng.chance(self.spec.reset_rate) {
            return Some(Verdict::Reset);
        }
        if self.rate_limit_left > 0 {
            self.rate_limit_left -= 1;
            let retry_after_s = self.spec.rate_limit_burst.map_or(1, |b| b.retry_after_s);
            return Some(Verdict::Reject(ApiError::QuotaExceeded { retry_after_s }));
        }
        None
    }

    /// Faults of the service behind the edge: the call was admitted (and took a token)
    /// and then failed.
    pub(crate) fn after_rate_limit(&mut self, op: Operation) -> Option<Verdict> {
        if !self.applies_to(op) {
            return None;
        }
        if self.burst_5xx_left > 0 {
            self.burst_5xx_left -= 1;
            self.burst_5xx_sent += 1;
            let status = self
                .spec
                .burst_5xx
                .and_then(|b| b.status)
                .unwrap_or(if self.burst_5xx_sent % 2 == 1 { 500 } else { 503 });
            return Some(Verdict::Reject(ApiError::server_error(status)));
        }
        if self.rng.chance(self.spec.error_rate_5xx) {
            let status = if self.rng.chance(0.5) { 500 } else { 503 };
            return Some(Verdict::Reject(ApiError::server_error(status)));
        }
        None
    }

    /// Whether the report being created should end FATAL (uses up one `fatal_reports`).
    pub(crate) fn take_fatal_report(&mut self) -> bool {
        if self.fatal_left > 0 {
            self.fatal_left -= 1;
            true
        } else {
            false
        }
    }

    pub(crate) fn is_permanent_400(&self, sku: &str) -> bool {
        self.spec.permanent_400_skus.iter().any(|s| s == sku)
    }

    pub(crate) fn is_failing(&self, sku: &str) -> bool {
        self.spec.failing_skus.iter().any(|s| s == sku)
    }

    pub(crate) fn token_ttl(&self) -> Option<Duration> {
        self.spec.token_ttl_s.map(Duration::from_secs)
    }

    /// A seed for things this state decides later (malformed row positions).
    pub(crate) fn next_seed(&mut self) -> u64 {
        self.rng.next_u64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(spec: FaultSpec) -> FaultState {
        FaultState::new(spec, SimRng::new(1), Instant::now())
    }

    #[test]
    fn a_5xx_burst_fails_exactly_count_calls_alternating_500_and_503() {
        let mut s = state(FaultSpec {
            burst_5xx: Some(Burst5xx { count: 3, status: None }),
            ..Default::default()
        });
        let got: Vec<_> = (0..4).map(|_| s.after_rate_limit(Operation::GetOrders)).collect();
        assert_eq!(
            got,
            vec![
                Some(Verdict::Reject(ApiError::InternalFailure)),
                Some(Verdict::Reject(ApiError::ServiceUnavailable)),
                Some(Verdict::Reject(ApiError::InternalFailure)),
                None
            ]
        );
    }

    #[test]
    fn the_ops_filter_spares_other_operations_but_not_the_quota_window() {
        let now = Instant::now();
        let mut s = FaultState::new(
            FaultSpec {
                rate_limit_burst: Some(RateLimitBurst {
                    count: 5,
                    retry_after_s: 2,
                }),
                quota_window: Some(QuotaWindow { seconds: 10.0 }),
                ops: Some(vec![Operation::DeleteListingsItem]),
                ..Default::default()
            },
            SimRng::new(1),
            now,
        );
        assert_eq!(s.before_rate_limit(Operation::GetOrders, now), None);
        assert_eq!(
            s.before_rate_limit(Operation::DeleteListingsItem, now),
            Some(Verdict::Reject(ApiError::QuotaExceeded { retry_after_s: 2 }))
        );
        assert_eq!(
            s.before_rate_limit(Operation::GetReport, now),
            Some(Verdict::Reject(ApiError::QuotaExceeded { retry_after_s: 10 }))
        );
        assert_eq!(s.before_rate_limit(Operation::GetReport, now + Duration::from_secs(10)), None);
    }

    #[test]
    fn the_token_call_is_only_faulted_when_named() {
        let mut s = state(FaultSpec {
            error_rate_5xx: 1.0,
            ..Default::default()
        });
        assert_eq!(s.after_rate_limit(Operation::LwaToken), None);
        let mut s = state(FaultSpec {
            error_rate_5xx: 1.0,
            ops: Some(vec![Operation::LwaToken]),
            ..Default::default()
        });
        assert!(s.after_rate_limit(Operation::LwaToken).is_some());
    }

    #[test]
    fn validation_names_the_bad_field() {
        let err = FaultSpec {
            error_rate_5xx: 1.5,
            ..Default::default()
        }
        .validate()
        .expect_err("1.5 is not a probability");
        assert!(err.contains("error_rate_5xx"), "{err}");
        let err = FaultSpec {
            burst_5xx: Some(Burst5xx {
                count: 1,
                status: Some(502),
            }),
            ..Default::default()
        }
        .validate()
        .expect_err("502");
        assert!(err.contains("burst_5xx.status"), "{err}");
    }
}
