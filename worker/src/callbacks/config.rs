//! `[worker.callbacks]`: how this worker delivers completion callbacks.
//!
//! ```toml
//! [worker.callbacks]
//! concurrency = 8               # deliveries in flight at once (0: this worker delivers none)
//! per_account = 2               # of them, most one account's may hold (its slow receivers wait their turn)
//! timeout_ms = 10000            # one try, connect to last byte
//! max_tries = 8                 # first try included
//! backoff_base_ms = 30000       # wait after try n: uniform in [c/2, c], c = min(max, base·2^(n-1))
//! backoff_max_ms = 1800000
//! poll_ms = 500                 # how often an idle loop looks for due deliveries
//! allow_private_targets = false # loopback/private/link-local/… addresses (tests only)
//! allow_http = false            # http:// URLs (tests only; the API decides what it accepts)
//! ```
//!
//! `worker.dev_mode` turns on both `allow_*` settings: the dev key's callbacks go to
//! this machine over http.
use std::time::Duration;

use drover::callback::RetrySchedule;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CallbacksConfig {
    pub concurrency: usize,
    /// The most of this worker's tries one account may have in flight at once, so one
    /// tenant's slow receivers cannot hold every slot (1..=1000).
    pub per_account: usize,
    pub timeout_ms: u64,
    pub max_tries: u32,
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    pub poll_ms: u64,
    /// Deliver to addresses in loopback, private, link-local, unique-local, CGNAT and
    /// similar ranges. Off: a host resolving to any such address is refused.
    pub allow_private_targets: bool,
    /// Deliver to `http://` URLs (the API accepts them only in dev mode or when told).
    pub allow_http: bool,
}

impl Default for CallbacksConfig {
    fn default() -> Self {
        let s = RetrySchedule::default();
        Self {
            concurrency: 8,
            per_account: 2,
            timeout_ms: 10_000,
            max_tries: s.max_tries,
            backoff_base_ms: s.base.as_millis() as u64,
            backoff_max_ms: s.max.as_millis() as u64,
            poll_ms: 500,
            allow_private_targets: false,
            allow_http: false,
        }
    }
}

impl CallbacksConfig {
    pub fn validate(&self) -> Vec<String> {
        let mut errs = Vec::new();
        if self.concurrency > 1000 {
            errs.push(format!("worker.callbacks.concurrency = {} is more than 1000", self.concurrency));
        }
        if !(1..=1000).contains(&self.per_account) {
            errs.push(format!(
                "worker.callbacks.per_account = {} must be between 1 and 1000",
                self.per_account
            ));
        }
        if !(100..=120_000).contains(&self.timeout_ms) {
            errs.push(format!(
                "worker.callbacks.timeout_ms = {} must be between 100 and 120000",
                self.timeout_ms
            ));
        }
        if !(1..=50).contains(&self.max_tries) {
            errs.push(format!("worker.callbacks.max_tries = {} must be between 1 and 50", self.max_tries));
        }
        if self.backoff_base_ms == 0 || self.backoff_max_ms < self.backoff_base_ms {
            errs.push("worker.callbacks: backoff_base_ms must be > 0 and backoff_max_ms >= backoff_base_ms".into());
        }
        if !(10..=60_000).contains(&self.poll_ms) {
            errs.push(format!("worker.callbacks.poll_ms = {} must be between 10 and 60000", self.poll_ms));
        }
        errs
    }

    pub fn schedule(&self) -> RetrySchedule {
        RetrySchedule {
            max_tries: self.max_tries,
            base: Duration::from_millis(self.backoff_base_ms),
            max: Duration::from_millis(self.backoff_max_ms),
        }
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// How long a claim keeps other workers off a delivery: three tries' time, so a
    /// live worker always records its try (bounded by the timeout) before it ends.
    pub fn lease(&self) -> Duration {
        self.timeout() * 3
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid_and_give_eight_tries_over_about_an_hour() {
        let c = CallbacksConfig::default();
        assert!(c.validate().is_empty());
        assert_eq!(c.schedule(), RetrySchedule::default());
        assert!(c.lease() > c.timeout());
    }

    #[test]
    fn each_bad_setting_is_named() {
        let c = CallbacksConfig {
            timeout_ms: 1,
            max_tries: 0,
            backoff_base_ms: 0,
            ..Default::default()
        };
        let msg = c.validate().join("\n");
        for needle in ["timeout_ms = 1", "max_tries = 0", "backoff_base_ms"] {
            assert!(msg.contains(needle), "{needle} missing from {msg}");
        }
    }
}
