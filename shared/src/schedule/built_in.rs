//! The built-in schedules as the running scheduler makes them, kept in Redis for the
//! listings (`GET /v1/schedules` shows them beside the saved ones). A scheduler that
//! runs them writes what it runs every [`RECORD_EVERY`] to `{<ns>:schedules}:builtin`,
//! expiring after [`RECORD_TTL`]: when no scheduler runs them, none is listed, since
//! none makes jobs. Replicas are meant to share one configuration; if they do not, the
//! listing shows the last one to write.
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::config::{BuiltIn, DefaultSchedules};
use crate::job::JobKind;

/// How often a running scheduler writes its built-ins again.
pub const RECORD_EVERY: Duration = Duration::from_secs(10);
/// How long a record outlives the last scheduler that wrote it.
pub const RECORD_TTL: Duration = Duration::from_secs(60);

/// One built-in schedule: the same cron for every active account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuiltInSchedule {
    /// `builtin.sync`, `builtin.daily_audit` or `builtin.weekly_audit`.
    pub name: String,
    pub kind: JobKind,
    pub cron: String,
    /// What each account's job holds besides its account and marketplace.
    pub job: serde_json::Value,
}

impl BuiltInSchedule {
    /// The trigger its jobs carry (the account's id in place of `<account_id>`).
    pub fn trigger(&self) -> String {
        format!("schedule:{}.<account_id>", self.name)
    }
}

/// The built-ins `defaults` switches on, in the scheduler's order.
pub fn built_ins(defaults: &DefaultSchedules) -> Vec<BuiltInSchedule> {
    let audit = |label: &str, b: &BuiltIn, days: u32| BuiltInSchedule {
        name: format!("builtin.{label}"),
        kind: JobKind::Backfill,
        cron: b.cron.clone(),
        job: serde_json::json!({"report_type": defaults.audit_report_type, "window_days": days}),
    };
    let sync = BuiltInSchedule {
        name: "builtin.sync".into(),
        kind: JobKind::Sync,
        cron: defaults.sync.cron.clone(),
        job: serde_json::json!({"resources": ["orders", "listings"]}),
    };
    [
        (defaults.sync.enabled, sync),
        (defaults.daily_audit.enabled, audit("daily_audit", &defaults.daily_audit, 1)),
        (defaults.weekly_audit.enabled, audit("weekly_audit", &defaults.weekly_audit, 7)),
    ]
    .into_iter()
    .filter_map(|(on, b)| on.then_some(b))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_built_ins_switched_on_are_made() {
        let mut d = DefaultSchedules::default();
        d.daily_audit.enabled = false;
        let names: Vec<String> = built_ins(&d).into_iter().map(|b| b.name).collect();
        assert_eq!(names, ["builtin.sync", "builtin.weekly_audit"]);
        let weekly = &built_ins(&d)[1];
        assert_eq!((weekly.kind, weekly.cron.as_str()), (JobKind::Backfill, "0 4 * * 0"));
        assert_eq!(weekly.job["window_days"], 7);
        assert_eq!(weekly.trigger(), "schedule:builtin.weekly_audit.<account_id>");
    }
}
