//! `api.server`: what one HTTP connection may hold (see `crate::serve`).
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// A client must send a request's headers within this long after the connection opens
    /// or the previous response ends; otherwise the connection is closed. This also bounds
    /// how long an idle keep-alive connection is kept.
    pub header_read_timeout_ms: u64,
    /// Most connections served at once; more wait until one closes.
    pub max_connections: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            header_read_timeout_ms: 10_000,
            max_connections: 1024,
        }
    }
}

impl ServerConfig {
    pub fn validate(&self) -> Vec<String> {
        let mut errs = Vec::new();
        if !(100..=600_000).contains(&self.header_read_timeout_ms) {
            errs.push(format!(
                "api.server.header_read_timeout_ms = {} must be between 100 and 600000",
                self.header_read_timeout_ms
            ));
        }
        if !(1..=1_000_000).contains(&self.max_connections) {
            errs.push(format!(
                "api.server.max_connections = {} must be between 1 and 1000000",
                self.max_connections
            ));
        }
        errs
    }
}
