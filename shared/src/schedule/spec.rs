//! A schedule: a cron expression and the job each tick makes.
use std::str::FromStr;

use chrono::{DateTime, Utc};
use croner::Cron;
use serde::{Deserialize, Serialize};

use crate::job::{FieldError, JobKind, JobPayload};

/// What a client sends to create or replace a schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    /// Five fields (minute hour day month weekday) or six with seconds first, in UTC.
    pub cron: String,
    pub kind: JobKind,
    pub payload: serde_json::Value,
    #[serde(default = "enabled")]
    pub enabled: bool,
    #[serde(default)]
    pub priority: u8,
    #[serde(default)]
    pub max_attempts: Option<u32>,
}

fn enabled() -> bool {
    true
}

/// A stored schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    pub name: String,
    #[serde(flatten)]
    pub spec: ScheduleSpec,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// When its current definition took effect: its creation, or the last put that
    /// changed its cron or kind or enabled it again (see [`Schedule::effective_from`]).
    /// Absent in what older releases stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_at: Option<DateTime<Utc>>,
}

/// The hash field of the schedule `name` of `account` (none: a schedule whose payload
/// names no account). Names cannot hold `/`, so the split is unambiguous.
pub fn field(account: Option<&str>, name: &str) -> String {
    format!("{}/{name}", account.unwrap_or(""))
}

impl Schedule {
    /// The account its jobs act for.
    pub fn account(&self) -> Option<&str> {
        self.spec.account()
    }

    /// No tick before this is the schedule's to make: its definition as it stands did not
    /// exist then (a tick of a cron since edited, of another kind, or that fell while the
    /// schedule was disabled), nor is such a tick a misfire.
    pub fn effective_from(&self) -> DateTime<Utc> {
        self.effective_at.unwrap_or(self.created_at).max(self.created_at)
    }

    /// When a put of `spec` over this schedule at `now` takes effect: now if it changes
    /// which ticks fire or what kind of job they make, or enables it again.
    pub fn effective_after(&self, spec: &ScheduleSpec, now: DateTime<Utc>) -> DateTime<Utc> {
        let old = &self.spec;
        if old.cron != spec.cron || old.kind != spec.kind || (!old.enabled && spec.enabled) {
            now
        } else {
            self.effective_from()
        }
    }

    /// What identifies it across accounts: `<account>/<name>`.
    pub fn key(&self) -> String {
        field(self.account(), &self.name)
    }
}

impl ScheduleSpec {
    pub fn account(&self) -> Option<&str> {
        self.payload.get("account_id").and_then(|a| a.as_str())
    }
}

/// The most attempts a schedule's jobs may have, as for `POST /v1/jobs`.
pub const MAX_ATTEMPTS: u32 = 100;

#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("invalid schedule")]
    Invalid(Vec<FieldError>),
    #[error("schedule store unavailable: {0}")]
    Store(#[from] redis::RedisError),
    /// The account already has `max` schedules (`api.schedules.max_per_account`).
    #[error("the account already has {max} schedules")]
    Quota { max: usize },
    /// The API key creating it already holds `max` schedules, whatever their accounts
    /// (`api.schedules.max_per_key`).
    #[error("this key already holds {max} schedules")]
    KeyQuota { max: usize },
    #[error("stored schedule {name:?} is unreadable: {reason}")]
    Corrupt { name: String, reason: String },
    /// Created and deleted by others while this request tried to put it, again and again.
    #[error("the schedule was created and deleted {tries} times while this request put it")]
    Contended { tries: usize },
}

/// Names are path segments and parts of idempotency keys: keep them plain.
pub fn validate_name(name: &str) -> Result<(), FieldError> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        // a path segment clients drop: the schedule could not be addressed
        && name != "."
        && name != ".."
        && !name.starts_with("builtin");
    if ok {
        Ok(())
    } else {
        Err(FieldError::new(
            "name",
            "1-100 characters from A-Z a-z 0-9 - _ ., not \".\" or \"..\" (names starting with \"builtin\" are reserved)",
        ))
    }
}

/// The longest cron expression taken: every minute of an hour listed (`0,1,…,59`) in a
/// field fits, and a schedule stays the size its payload cap says, however it is padded.
pub const MAX_CRON_BYTES: usize = 256;

pub fn parse_cron(expr: &str) -> Result<Cron, String> {
    if expr.len() > MAX_CRON_BYTES {
        return Err(format!("{} bytes; at most {MAX_CRON_BYTES} are allowed", expr.len()));
    }
    let fields = expr.split_whitespace().count();
    if !(5..=6).contains(&fields) {
        return Err(format!(
            "expected 5 fields (minute hour day month weekday) or 6 with seconds first, got {fields}"
        ));
    }
    Cron::from_str(expr).map_err(|e| format!("not a cron expression: {e}"))
}

impl ScheduleSpec {
    /// Every problem at once, with the field it is in.
    pub fn validate(&self, name: &str) -> Result<(Cron, JobPayload), ScheduleError> {
        let mut errors = Vec::new();
        if let Err(e) = validate_name(name) {
            errors.push(e);
        }
        let cron = parse_cron(&self.cron).map_err(|m| errors.push(FieldError::new("cron", m))).ok();
        let payload = match JobPayload::from_json(self.kind, self.payload.clone()) {
            Ok(p) => Some(p),
            Err(e) => {
                // named as `POST /v1/jobs` names them (`payload.skus`)
                errors.extend(e.0);
                None
            }
        };
        if self.priority > 9 {
            errors.push(FieldError::new("priority", "must be 0-9"));
        }
        // As for `POST /v1/jobs`: every attempt is stored in the job's history.
        if let Some(n) = self.max_attempts.filter(|n| !(1..=MAX_ATTEMPTS).contains(n)) {
            errors.push(FieldError::new("max_attempts", format!("{n} is not between 1 and {MAX_ATTEMPTS}")));
        }
        match (cron, payload) {
            (Some(c), Some(p)) if errors.is_empty() => Ok((c, p)),
            _ => Err(ScheduleError::Invalid(errors)),
        }
    }
}

/// The latest tick at or before `now` (whole seconds).
pub fn latest_tick(cron: &Cron, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let now = now.with_timezone(&Utc);
    let whole = DateTime::<Utc>::from_timestamp(now.timestamp(), 0)?;
    cron.find_previous_occurrence(&whole, true).ok()
}

/// The first tick after `now`.
pub fn next_tick(cron: &Cron, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let whole = DateTime::<Utc>::from_timestamp(now.timestamp(), 0)?;
    cron.find_next_occurrence(&whole, false).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 25, h, m, s).single().expect("valid")
    }

    #[test]
    fn five_field_expressions_tick_on_whole_minutes() {
        let c = parse_cron("*/15 * * * *").expect("valid");
        assert_eq!(latest_tick(&c, at(10, 7, 30)), Some(at(10, 0, 0)));
        assert_eq!(latest_tick(&c, at(10, 15, 0)), Some(at(10, 15, 0)));
        assert_eq!(next_tick(&c, at(10, 15, 0)), Some(at(10, 30, 0)));
    }

    #[test]
    fn six_field_expressions_have_seconds_first() {
        let c = parse_cron("*/2 * * * * *").expect("valid");
        assert_eq!(latest_tick(&c, at(10, 0, 3)), Some(at(10, 0, 2)));
    }

    #[test]
    fn bad_expressions_and_names_are_rejected_with_their_fields() {
        let spec = ScheduleSpec {
            cron: "every day".into(),
            kind: JobKind::Sync,
            payload: serde_json::json!({"account_id": "acct-1"}),
            enabled: true,
            priority: 12,
            max_attempts: Some(0),
        };
        let Err(ScheduleError::Invalid(errors)) = spec.validate("bad name!") else {
            panic!("should be invalid")
        };
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        for f in ["name", "cron", "priority", "max_attempts"] {
            assert!(fields.contains(&f), "{f} missing from {fields:?}");
        }
        assert!(fields.iter().any(|f| f.starts_with("payload.")), "{fields:?}");
    }
}
