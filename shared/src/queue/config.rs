//! The `queue` section of the API's and the worker's configuration: the partition count
//! (both must agree: it shapes the keys in Redis) and the acknowledged durability.
use serde::{Deserialize, Serialize};

use std::time::Duration;

use super::durability::DEFAULT_TIMEOUT_MS;
use super::{Durability, DurabilityMode, Partitions};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// Partitions per kind (docs/architecture.md, "Partitions"): 1 on a single Redis,
    /// e.g. 16 on a cluster. Recorded in Redis by the first process; every API and worker
    /// must be started with the same count (`drover-worker partitions` changes it).
    pub partitions: u16,
    /// What a write (an enqueue, a job's end) must reach before it is answered: `local`
    /// (default), `aof` or `replica` (docs/architecture.md, "Acknowledged durability").
    pub durability: DurabilityMode,
    /// How long a write waits for `aof` or `replica` before it is answered "not yet durable".
    pub durability_timeout_ms: u64,
    /// Whether the hot scripts (enqueue, fetch, settle) declare every key they touch on
    /// one server or Sentinel too, as they always do on a Redis Cluster: for an engine
    /// that refuses undeclared keys (docs/architecture.md, "What a cluster needs of the
    /// scripts"). It costs those scripts throughput (docs/benchmarks.md).
    pub declare_every_key: bool,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            partitions: 1,
            durability: DurabilityMode::Local,
            durability_timeout_ms: DEFAULT_TIMEOUT_MS,
            declare_every_key: false,
        }
    }
}

impl QueueConfig {
    /// Adds this section's problems to `errs` (each naming its setting, under `section`).
    pub fn validate(&self, section: &str, errs: &mut Vec<String>) -> Option<Partitions> {
        if !(1..=60_000).contains(&self.durability_timeout_ms) {
            errs.push(format!(
                "{section}.durability_timeout_ms = {} must be between 1 and 60000",
                self.durability_timeout_ms
            ));
        }
        match Partitions::new(self.partitions) {
            Ok(p) => Some(p),
            Err(_) => {
                errs.push(format!(
                    "{section}.partitions = {} must be between 1 and {}",
                    self.partitions,
                    crate::job::BUCKETS
                ));
                None
            }
        }
    }

    pub fn durability(&self) -> Durability {
        Durability {
            mode: self.durability,
            timeout: Duration::from_millis(self.durability_timeout_ms),
        }
    }

    pub fn partitions(&self) -> Partitions {
        Partitions::new(self.partitions).unwrap_or_default()
    }
}
