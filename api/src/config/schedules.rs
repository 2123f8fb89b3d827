//! `api.schedules`: what one account's schedules may cost — how many it may keep, how
//! large each may be, and how often each may fire (each tick is a job, made without a
//! request to rate-limit) — and how many one API key may keep across every account.
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulesConfig {
    /// Most schedules one account may have; creating one more is a 409.
    pub max_per_account: usize,
    /// Most schedules one API key may have created (and not yet deleted), whatever their
    /// accounts; creating one more is a 409. Bounds a key that may name any account,
    /// registered or not: without it, `max_per_account` for every account id it makes up.
    pub max_per_key: usize,
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
            max_per_key: 500,
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
        // Each creation walks the key's schedules in one script, which blocks Redis meanwhile.
        if !(1..=10_000).contains(&self.max_per_key) {
            errs.push(format!(
                "api.schedules.max_per_key = {} must be between 1 and 10000",
                self.max_per_key
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_per_key_defaults_to_500_and_out_of_range_values_are_refused_naming_it() {
        let c = SchedulesConfig::default();
        assert_eq!(c.max_per_key, 500);
        assert!(c.validate().is_empty(), "{:?}", c.validate());
        for bad in [0, 10_001] {
            let errs = SchedulesConfig { max_per_key: bad, ..c }.validate();
            assert!(
                errs.len() == 1 && errs[0].contains("api.schedules.max_per_key") && errs[0].contains(&bad.to_string()),
                "{bad}: {errs:?}"
            );
        }
    }
}
