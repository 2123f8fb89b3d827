//! How the scheduler is configured: its loop's timings and the built-in schedules it
//! makes for every active account (each can be switched off or given another cron).
use serde::{Deserialize, Serialize};

use super::spec::parse_cron;

/// One built-in, per-account schedule.
#[derive(Debug, Clone, Serialize)]
pub struct BuiltIn {
    pub enabled: bool,
    pub cron: String,
}

/// A built-in schedule as configured: each field left out keeps its default, so
/// `DROVER_WORKER__SCHEDULER__DEFAULTS__SYNC__CRON` alone changes only the cron.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct BuiltInSetting {
    enabled: Option<bool>,
    cron: Option<String>,
}

impl BuiltInSetting {
    fn over(self, default: BuiltIn) -> BuiltIn {
        BuiltIn {
            enabled: self.enabled.unwrap_or(default.enabled),
            cron: self.cron.unwrap_or(default.cron),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct DefaultSchedulesSetting {
    sync: BuiltInSetting,
    daily_audit: BuiltInSetting,
    weekly_audit: BuiltInSetting,
    audit_report_type: Option<String>,
}

impl From<DefaultSchedulesSetting> for DefaultSchedules {
    fn from(s: DefaultSchedulesSetting) -> Self {
        let d = DefaultSchedules::default();
        Self {
            sync: s.sync.over(d.sync),
            daily_audit: s.daily_audit.over(d.daily_audit),
            weekly_audit: s.weekly_audit.over(d.weekly_audit),
            audit_report_type: s.audit_report_type.unwrap_or(d.audit_report_type),
        }
    }
}

/// What sellers' teams run today, for every active account; each can be switched off.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(from = "DefaultSchedulesSetting")]
pub struct DefaultSchedules {
    /// Incremental sync of orders and listings.
    pub sync: BuiltIn,
    /// Re-pull the last day of orders (by last update) to catch late changes.
    pub daily_audit: BuiltIn,
    /// Re-pull the last week.
    pub weekly_audit: BuiltIn,
    pub audit_report_type: String,
}

impl Default for DefaultSchedules {
    fn default() -> Self {
        Self {
            sync: BuiltIn {
                enabled: true,
                cron: "*/15 * * * *".into(),
            },
            daily_audit: BuiltIn {
                enabled: true,
                cron: "0 3 * * *".into(),
            },
            weekly_audit: BuiltIn {
                enabled: true,
                cron: "0 4 * * 0".into(),
            },
            audit_report_type: "GET_FLAT_FILE_ALL_ORDERS_DATA_BY_LAST_UPDATE_GENERAL".into(),
        }
    }
}

/// The longest `misfire_grace_ms` (30 days).
const MAX_GRACE_MS: u64 = 30 * 24 * 3600 * 1000;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulerConfig {
    pub enabled: bool,
    /// How often the loop looks for due ticks.
    pub poll_ms: u64,
    /// A tick older than this when first seen (e.g. every replica was down) is skipped,
    /// not run late.
    pub misfire_grace_ms: u64,
    /// How often the list of active accounts is re-read.
    pub accounts_refresh_ms: u64,
    pub defaults: DefaultSchedules,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            poll_ms: 1000,
            misfire_grace_ms: 60_000,
            accounts_refresh_ms: 60_000,
            defaults: DefaultSchedules::default(),
        }
    }
}

impl SchedulerConfig {
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if self.poll_ms == 0 || self.poll_ms > 60_000 {
            errors.push("scheduler.poll_ms must be 1..=60000".to_owned());
        }
        if self.misfire_grace_ms < self.poll_ms {
            errors.push("scheduler.misfire_grace_ms must be at least poll_ms".to_owned());
        }
        if self.misfire_grace_ms > MAX_GRACE_MS {
            errors.push(format!("scheduler.misfire_grace_ms must be at most {MAX_GRACE_MS} (30 days)"));
        }
        for (name, b) in [
            ("sync", &self.defaults.sync),
            ("daily_audit", &self.defaults.daily_audit),
            ("weekly_audit", &self.defaults.weekly_audit),
        ] {
            if let Err(e) = parse_cron(&b.cron) {
                errors.push(format!("scheduler.defaults.{name}.cron: {e}"));
            }
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_built_in_schedule_given_only_one_field_keeps_its_other_defaults() {
        let d: DefaultSchedules =
            serde_json::from_value(serde_json::json!({"sync": {"cron": "* * * * * *"}, "weekly_audit": {"enabled": false}})).unwrap();
        assert!(d.sync.enabled);
        assert_eq!(d.sync.cron, "* * * * * *");
        assert!(!d.weekly_audit.enabled);
        assert_eq!(d.weekly_audit.cron, "0 4 * * 0");
        assert_eq!(d.daily_audit.cron, "0 3 * * *");
    }

    #[test]
    fn an_unknown_field_of_a_built_in_schedule_is_refused() {
        let r = serde_json::from_value::<DefaultSchedules>(serde_json::json!({"sync": {"crom": "* * * * *"}}));
        assert!(r.unwrap_err().to_string().contains("crom"));
    }
}
