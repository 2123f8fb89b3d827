//! The worker's typed configuration, validated at start-up with precise messages.
use std::collections::HashMap;
use std::time::Duration;

use drover::config::ConfigError;
use drover::job::JobKind;
use drover::queue::{JobDefaults, RetryPolicy};
use drover::runtime::WorkerSettings;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Concurrency {
    pub sync: usize,
    pub backfill: usize,
    pub cleanup: usize,
}

impl Default for Concurrency {
    fn default() -> Self {
        Self {
            sync: 10,
            backfill: 4,
            cleanup: 10,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicies {
    pub sync: Option<RetryPolicy>,
    pub backfill: Option<RetryPolicy>,
    pub cleanup: Option<RetryPolicy>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerConfig {
    pub redis_url: String,
    pub namespace: String,
    pub concurrency: Concurrency,
    pub lease_ms: u64,
    pub heartbeat_ms: u64,
    pub grace_ms: u64,
    pub fetch_batch: usize,
    /// Jobs leased ahead of free slots per kind (0 = none).
    pub prefetch: usize,
    pub idle_wait_ms: u64,
    pub retention_hours: u64,
    pub retry: RetryPolicies,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            redis_url: "redis://127.0.0.1:6379".into(),
            namespace: "drover".into(),
            concurrency: Concurrency::default(),
            lease_ms: 3000,
            heartbeat_ms: 500,
            grace_ms: 30_000,
            fetch_batch: 100,
            prefetch: 20,
            idle_wait_ms: 5000,
            retention_hours: 24 * 7,
            retry: RetryPolicies::default(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct Root {
    worker: WorkerConfig,
}

impl WorkerConfig {
    /// Defaults → `file` → `DROVER_WORKER__*` environment; then validated.
    pub fn load(file: Option<&str>) -> Result<Self, ConfigError> {
        let root: Root = drover::config::load(file)?;
        root.worker.validate()?;
        Ok(root.worker)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut errs = Vec::new();
        if let Err(e) = redis::Client::open(self.redis_url.as_str()) {
            errs.push(format!("worker.redis_url is not a valid Redis URL: {e}"));
        }
        if self.namespace.is_empty() || !self.namespace.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            errs.push("worker.namespace must be non-empty letters, digits, '-' or '_'".into());
        }
        let c = &self.concurrency;
        if c.sync + c.backfill + c.cleanup == 0 {
            errs.push("worker.concurrency: at least one kind needs concurrency > 0".into());
        }
        for (name, v) in [("sync", c.sync), ("backfill", c.backfill), ("cleanup", c.cleanup)] {
            if v > 10_000 {
                errs.push(format!("worker.concurrency.{name} = {v} is more than 10000"));
            }
        }
        if self.heartbeat_ms < 50 {
            errs.push(format!("worker.heartbeat_ms = {} must be at least 50", self.heartbeat_ms));
        }
        if self.lease_ms < self.heartbeat_ms * 3 {
            errs.push(format!(
                "worker.lease_ms = {} must be at least 3 × heartbeat_ms ({}) so one late renewal cannot lose a lease",
                self.lease_ms, self.heartbeat_ms
            ));
        }
        if !(1..=10_000).contains(&self.fetch_batch) {
            errs.push(format!("worker.fetch_batch = {} must be between 1 and 10000", self.fetch_batch));
        }
        if self.prefetch > 10_000 {
            errs.push(format!("worker.prefetch = {} is more than 10000", self.prefetch));
        }
        if !(10..=60_000).contains(&self.idle_wait_ms) {
            errs.push(format!("worker.idle_wait_ms = {} must be between 10 and 60000", self.idle_wait_ms));
        }
        if self.grace_ms > 3_600_000 {
            errs.push(format!("worker.grace_ms = {} is more than an hour", self.grace_ms));
        }
        for (name, p) in [
            ("sync", &self.retry.sync),
            ("backfill", &self.retry.backfill),
            ("cleanup", &self.retry.cleanup),
        ] {
            if let Some(p) = p {
                if p.base.is_zero() || p.max < p.base {
                    errs.push(format!("worker.retry.{name}: base must be > 0 and max >= base"));
                }
            }
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(errs))
        }
    }

    pub fn settings(&self) -> WorkerSettings {
        let mut retry = HashMap::new();
        for (kind, p) in [
            (JobKind::Sync, self.retry.sync),
            (JobKind::Backfill, self.retry.backfill),
            (JobKind::Cleanup, self.retry.cleanup),
        ] {
            if let Some(p) = p {
                retry.insert(kind, p);
            }
        }
        WorkerSettings {
            worker_id: WorkerSettings::new_worker_id(),
            concurrency: HashMap::from([
                (JobKind::Sync, self.concurrency.sync),
                (JobKind::Backfill, self.concurrency.backfill),
                (JobKind::Cleanup, self.concurrency.cleanup),
            ]),
            lease: Duration::from_millis(self.lease_ms),
            heartbeat: Duration::from_millis(self.heartbeat_ms),
            grace: Duration::from_millis(self.grace_ms),
            fetch_batch: self.fetch_batch,
            prefetch: self.prefetch,
            idle_wait: Duration::from_millis(self.idle_wait_ms),
            retry,
            retention: Duration::from_secs(self.retention_hours * 3600),
        }
    }

    pub fn job_defaults(&self) -> JobDefaults {
        JobDefaults::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid() {
        WorkerConfig::default().validate().unwrap();
    }

    #[test]
    fn a_lease_shorter_than_three_heartbeats_is_rejected_with_both_values() {
        let c = WorkerConfig {
            lease_ms: 1000,
            heartbeat_ms: 500,
            ..Default::default()
        };
        let msg = c.validate().unwrap_err().to_string();
        assert!(msg.contains("lease_ms = 1000") && msg.contains("heartbeat_ms (500)"), "{msg}");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let c = WorkerConfig {
            redis_url: "nope://".into(),
            fetch_batch: 0,
            ..Default::default()
        };
        let msg = c.validate().unwrap_err().to_string();
        assert!(msg.contains("redis_url") && msg.contains("fetch_batch"), "{msg}");
    }
}
