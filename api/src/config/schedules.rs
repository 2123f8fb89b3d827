//! `api.schedules`: what one account's schedules may cost — how many it may keep, how
//! large each may be, and how often each may fire (each tick is a job, made without a
//! request to rate-limit).
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulesConfig {
    /// Most schedules one account may have; creating one more is a 409.
    pub max_per_account: usize,
    /// Largest payload a schedule may store, as JSON; more is a 413. Smaller than
    /// `api.jobs.max_payload_bytes`: every listing of the account's schedules and every
    /// scheduler read carries them all.
    pub max_payload_bytes: usize,
    /// Shortest time allowed between two ticks of one schedule.
    pub min_interval_secs: u64,
}

impl Default for SchedulesConfig {
    fn default() -> Self {
        Self {
            max_per_account: 50,
            max_payload_bytes: 64 * 1024,
            min_interval_secs: 60,
        }
    }
}

impl SchedulesConfig {
    pub fn validate(&self) -> Vec<String> {
        let mut errs = Vec::new();
        if !(1..=10_000).contains(&self.max_per_account) {
            errs.push(format!(
                "api.schedules.max_per_account = {} must be between 1 and 10000",
                self.max_per_account
            ));
        }
        if !(1024..=64 * 1024 * 1024).contains(&self.max_payload_bytes) {
            errs.push(format!(
                "api.schedules.max_payload_bytes = {} must be between 1024 and 67108864",
                self.max_payload_bytes
            ));
        }
        if !(1..=86_400).contains(&self.min_interval_secs) {
            errs.push(format!(
                "api.schedules.min_interval_secs = {} must be between 1 and 86400",
                self.min_interval_secs
            ));
        }
        errs
    }
}
