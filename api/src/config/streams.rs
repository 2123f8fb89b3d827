//! `api.streams`: caps on open event streams (see `crate::streams`).
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamsConfig {
    /// Most event streams open at once in this process, all keys together; shared
    /// fairly (`crate::streams`).
    pub max_open: usize,
    /// Most event streams one key may have open at once in this process.
    pub max_open_per_key: usize,
}

impl Default for StreamsConfig {
    fn default() -> Self {
        Self {
            max_open: 500,
            max_open_per_key: 20,
        }
    }
}

impl StreamsConfig {
    pub fn validate(&self) -> Vec<String> {
        let mut errs = Vec::new();
        if !(1..=100_000).contains(&self.max_open) {
            errs.push(format!("api.streams.max_open = {} must be between 1 and 100000", self.max_open));
        }
        if !(1..=self.max_open.max(1)).contains(&self.max_open_per_key) {
            errs.push(format!(
                "api.streams.max_open_per_key = {} must be between 1 and api.streams.max_open",
                self.max_open_per_key
            ));
        }
        errs
    }
}
