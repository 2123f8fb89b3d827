//! Typed configuration of the shared resilience state, with every problem reported at once.
use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::operation::Operation;
use crate::config::millis;

/// One operation's usage plan: a token bucket refilled at `rate` per second holding `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateSpec {
    /// Requests per second.
    pub rate: f64,
    /// Bucket size: how many calls may go at once after a quiet spell.
    pub burst: u32,
}

impl RateSpec {
    pub const fn new(rate: f64, burst: u32) -> Self {
        Self { rate, burst }
    }

    /// SP-API's published usage plan for `op`.
    pub const fn sp_api_default(op: Operation) -> Self {
        match op {
            Operation::GetOrders => Self::new(0.0167, 20),
            Operation::GetListingsItem => Self::new(5.0, 10),
            Operation::DeleteListingsItem => Self::new(5.0, 10),
            Operation::CreateReport => Self::new(0.0167, 15),
            Operation::GetReport => Self::new(2.0, 15),
            Operation::GetReportDocument => Self::new(0.0167, 15),
            Operation::GetReports => Self::new(0.0222, 10),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResilienceConfig {
    /// Per-operation plans; operations not named keep SP-API's defaults.
    pub limits: BTreeMap<Operation, RateSpec>,
    /// Longest `acquire()` waits for a slot before giving up with `WaitTooLong` (the
    /// worker sets it from `jobs.park_after_ms`).
    #[serde(with = "millis")]
    pub max_wait: Duration,
    pub limiter: LimiterConfig,
    pub cooldown: CooldownConfig,
    pub breaker: BreakerConfig,
    pub token: TokenConfig,
}

impl Default for ResilienceConfig {
    fn default() -> Self {
        Self {
            limits: Operation::ALL.into_iter().map(|op| (op, RateSpec::sp_api_default(op))).collect(),
            max_wait: Duration::from_secs(120),
            limiter: LimiterConfig::default(),
            cooldown: CooldownConfig::default(),
            breaker: BreakerConfig::default(),
            token: TokenConfig::default(),
        }
    }
}

/// Where we start when Redis holds no limiter state for an account and operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColdStart {
    /// Assume the marketplace's bucket is empty: someone (a previous deployment, a
    /// flushed Redis, a human with curl) may have used it, and a 429 costs more than a
    /// short wait.
    Empty,
    /// Assume a full bucket: fastest first calls, risks 429s if it was in use.
    Full,
}

/// Safety margins that keep the limiter strictly inside the marketplace's bucket even
/// with network jitter between our slot and the request's arrival.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimiterConfig {
    /// Fraction of the rate we leave unused (0.05 = run at 95%).
    pub rate_margin: f64,
    /// Bucket slots we never use (kept at least 1 usable); absorbs a late burst.
    pub burst_reserve: u32,
    pub cold_start: ColdStart,
    /// How long an idle account's limiter state stays in Redis.
    #[serde(with = "millis")]
    pub idle_ttl: Duration,
}

impl Default for LimiterConfig {
    fn default() -> Self {
        Self {
            rate_margin: 0.05,
            burst_reserve: 1,
            cold_start: ColdStart::Empty,
            idle_ttl: Duration::from_secs(24 * 3600),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CooldownConfig {
    /// Cooldown length per escalation level; repeats past the last stay at the last.
    #[serde(with = "millis_list")]
    pub steps: Vec<Duration>,
    /// A quiet period this long after a cooldown ends resets the level.
    #[serde(with = "millis")]
    pub decay_after: Duration,
}

impl Default for CooldownConfig {
    fn default() -> Self {
        Self {
            steps: vec![Duration::from_secs(600), Duration::from_secs(1800), Duration::from_secs(7200)],
            decay_after: Duration::from_secs(6 * 3600),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    /// Calls are counted in fixed windows of this length.
    #[serde(with = "millis")]
    pub window: Duration,
    /// The breaker never opens on fewer calls than this in the window.
    pub min_calls: u32,
    /// Opens when failures / calls exceeds this.
    pub failure_ratio: f64,
    /// How long it stays open before one half-open probe.
    #[serde(with = "millis")]
    pub open_for: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(60),
            min_calls: 10,
            failure_ratio: 0.5,
            open_for: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenConfig {
    /// A cached token is refreshed this long before it expires.
    #[serde(with = "millis")]
    pub refresh_before: Duration,
    /// The refresh lock's life, extended every third of it while the exchange runs: how
    /// long a refresher that dies mid-exchange holds the others back.
    #[serde(with = "millis")]
    pub lock_ttl: Duration,
    /// How long a caller waits for another worker's refresh.
    #[serde(with = "millis")]
    pub wait_timeout: Duration,
}

impl Default for TokenConfig {
    fn default() -> Self {
        Self {
            refresh_before: Duration::from_secs(60),
            lock_ttl: Duration::from_secs(3),
            wait_timeout: Duration::from_secs(15),
        }
    }
}

impl ResilienceConfig {
    /// The plan in force for `op`: the configured one, else SP-API's default.
    pub fn limit(&self, op: Operation) -> RateSpec {
        self.limits.get(&op).copied().unwrap_or(RateSpec::sp_api_default(op))
    }

    /// Every problem at once.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut errs = Vec::new();
        for (op, spec) in &self.limits {
            if !(spec.rate.is_finite() && spec.rate > 0.0) {
                errs.push(format!(
                    "resilience.limits.{op}.rate must be a positive number of requests per second, got {}",
                    spec.rate
                ));
            }
            if spec.burst == 0 {
                errs.push(format!("resilience.limits.{op}.burst must be at least 1"));
            }
        }
        if self.max_wait.is_zero() {
            errs.push("resilience.max_wait must be positive".into());
        }
        let l = &self.limiter;
        if !(0.0..0.5).contains(&l.rate_margin) {
            errs.push(format!("resilience.limiter.rate_margin must be in [0, 0.5), got {}", l.rate_margin));
        }
        if l.idle_ttl < Duration::from_secs(1) {
            errs.push("resilience.limiter.idle_ttl must be at least 1 s".into());
        }
        let c = &self.cooldown;
        if c.steps.is_empty() {
            errs.push("resilience.cooldown.steps must name at least one duration".into());
        }
        if c.steps.iter().any(Duration::is_zero) {
            errs.push("resilience.cooldown.steps must all be positive".into());
        }
        if c.decay_after.is_zero() {
            errs.push("resilience.cooldown.decay_after must be positive".into());
        }
        let b = &self.breaker;
        if b.window.is_zero() {
            errs.push("resilience.breaker.window must be positive".into());
        }
        if b.min_calls == 0 {
            errs.push("resilience.breaker.min_calls must be at least 1".into());
        }
        if !(b.failure_ratio >= 0.0 && b.failure_ratio < 1.0) {
            errs.push(format!(
                "resilience.breaker.failure_ratio must be in [0, 1), got {}",
                b.failure_ratio
            ));
        }
        if b.open_for.is_zero() {
            errs.push("resilience.breaker.open_for must be positive".into());
        }
        let t = &self.token;
        if t.lock_ttl < Duration::from_millis(300) {
            errs.push(format!(
                "resilience.token.lock_ttl must be at least 300 ms, got {} ms",
                t.lock_ttl.as_millis()
            ));
        }
        if t.wait_timeout.is_zero() {
            errs.push("resilience.token.wait_timeout must be positive".into());
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs)
        }
    }
}

/// `Vec<Duration>` as a list of milliseconds.
mod millis_list {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[Duration], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|d| d.as_millis() as u64))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
        Ok(Vec::<u64>::deserialize(d)?.into_iter().map(Duration::from_millis).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_sp_api_plans_and_validate() {
        let c = ResilienceConfig::default();
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.limit(Operation::GetOrders), RateSpec::new(0.0167, 20));
        assert_eq!(c.limit(Operation::GetReport), RateSpec::new(2.0, 15));
    }

    #[test]
    fn a_partial_limits_table_keeps_defaults_for_the_rest() {
        let c: ResilienceConfig = serde_json::from_str(r#"{"limits":{"getOrders":{"rate":10,"burst":20}},"max_wait":1000}"#).unwrap();
        assert_eq!(c.limit(Operation::GetOrders), RateSpec::new(10.0, 20));
        assert_eq!(c.limit(Operation::CreateReport), RateSpec::new(0.0167, 15));
        assert_eq!(c.max_wait, Duration::from_secs(1));
    }

    #[test]
    fn validate_reports_every_problem_at_once() {
        let mut c = ResilienceConfig::default();
        c.limits.insert(Operation::GetOrders, RateSpec::new(0.0, 0));
        c.cooldown.steps.clear();
        c.breaker.failure_ratio = 1.5;
        let errs = c.validate().unwrap_err();
        assert_eq!(errs.len(), 4, "{errs:?}");
    }

    #[test]
    fn unknown_fields_are_refused() {
        assert!(serde_json::from_str::<ResilienceConfig>(r#"{"breaker":{"windw":5}}"#).is_err());
    }
}
