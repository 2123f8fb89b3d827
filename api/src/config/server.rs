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
    /// Most of them one client address (an IPv6 /64) may hold; more are closed at once.
    /// 0: no cap. Trusted proxies (`api.ui.trusted_proxies`) are not capped.
    pub max_connections_per_client: usize,
    /// A client whose answers block (it does not read them) and leave at under 1 KiB/s
    /// over this long loses its connection (`paced_writes.rs`).
    pub write_timeout_ms: u64,
    /// Most request headers (field lines) a request may carry; more is a 431 problem.
    pub max_headers: usize,
    /// Most bytes of request header names and values together; more is a 431 problem.
    pub max_header_bytes: usize,
    /// Most bytes of request bodies the process holds at once (each request reserves what
    /// it announces before it is read; one key a quarter); a request that finds no room
    /// is a 503 (`body_budget.rs`).
    pub max_body_bytes_in_flight: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            header_read_timeout_ms: 10_000,
            max_connections: 1024,
            max_connections_per_client: 256,
            write_timeout_ms: 30_000,
            max_headers: 100,
            max_header_bytes: 64 * 1024,
            max_body_bytes_in_flight: 64 * 1024 * 1024,
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
        if !(1000..=600_000).contains(&self.write_timeout_ms) {
            errs.push(format!(
                "api.server.write_timeout_ms = {} must be between 1000 and 600000",
                self.write_timeout_ms
            ));
        }
        if !(8..=500).contains(&self.max_headers) {
            errs.push(format!("api.server.max_headers = {} must be between 8 and 500", self.max_headers));
        }
        if !(4096..=1_048_576).contains(&self.max_header_bytes) {
            errs.push(format!(
                "api.server.max_header_bytes = {} must be between 4096 and 1048576",
                self.max_header_bytes
            ));
        }
        if !(1 << 20..=1 << 34).contains(&self.max_body_bytes_in_flight) {
            errs.push(format!(
                "api.server.max_body_bytes_in_flight = {} must be between 1048576 (1 MiB) and 17179869184 (16 GiB)",
                self.max_body_bytes_in_flight
            ));
        }
        errs
    }

    /// The request header limits the API answers with a 431 problem.
    pub fn header_limits(&self) -> HeaderLimits {
        HeaderLimits {
            max_headers: self.max_headers,
            max_bytes: self.max_header_bytes,
        }
    }
}

/// Bounds on a request's headers (`api.server.max_headers`, `max_header_bytes`).
#[derive(Debug, Clone, Copy)]
pub struct HeaderLimits {
    pub max_headers: usize,
    pub max_bytes: usize,
}
