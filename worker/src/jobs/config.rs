//! Settings of the three jobs.
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobsConfig {
    /// getOrders page size (SP-API allows 1..=100).
    pub orders_page_size: u32,
    /// How far back a first sync of an account looks when it has no cursor and no `since`.
    pub first_sync_lookback_hours: u32,
    /// Most SKUs a listings sync refreshes per run.
    pub listings_per_sync: u32,
    /// Deletes in flight per cleanup job (the shared limiter still paces them).
    pub cleanup_parallelism: usize,
    /// Record progress at least every this many items.
    pub progress_every: u64,
    /// Parse errors listed per window in a job's items (the rest are counted).
    pub parse_errors_listed: usize,
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self {
            orders_page_size: 100,
            first_sync_lookback_hours: 24 * 30,
            listings_per_sync: 1000,
            cleanup_parallelism: 4,
            progress_every: 50,
            parse_errors_listed: 20,
        }
    }
}

impl JobsConfig {
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if !(1..=100).contains(&self.orders_page_size) {
            errors.push(format!("jobs.orders_page_size must be 1..=100, got {}", self.orders_page_size));
        }
        if self.first_sync_lookback_hours == 0 {
            errors.push("jobs.first_sync_lookback_hours must be at least 1".to_owned());
        }
        if !(1..=64).contains(&self.cleanup_parallelism) {
            errors.push(format!("jobs.cleanup_parallelism must be 1..=64, got {}", self.cleanup_parallelism));
        }
        if self.progress_every == 0 {
            errors.push("jobs.progress_every must be at least 1".to_owned());
        }
        errors
    }
}
