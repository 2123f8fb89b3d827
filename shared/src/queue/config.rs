//! The `queue` section of the API's and the worker's configuration: settings both must
//! agree on, because they shape the keys in Redis.
use serde::{Deserialize, Serialize};

use super::Partitions;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// Partitions per kind (docs/architecture.md, "Partitions"): 1 on a single Redis,
    /// e.g. 16 on a cluster. Recorded in Redis by the first process; every API and worker
    /// must be started with the same count (`drover-worker partitions` changes it).
    pub partitions: u16,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self { partitions: 1 }
    }
}

impl QueueConfig {
    /// Adds this section's problems to `errs` (each naming its setting, under `section`).
    pub fn validate(&self, section: &str, errs: &mut Vec<String>) -> Option<Partitions> {
        match Partitions::new(self.partitions) {
            Ok(p) => Some(p),
            Err(e) => {
                errs.push(format!("{section}.{e}"));
                None
            }
        }
    }

    pub fn partitions(&self) -> Partitions {
        Partitions::new(self.partitions).unwrap_or_default()
    }
}
