//! Schedules in one Redis hash: `<ns>:schedules`, name → JSON of [`Schedule`].
use chrono::Utc;
use redis::aio::ConnectionManager;
use redis::AsyncCommands;

use super::spec::{Schedule, ScheduleError, ScheduleSpec};

#[derive(Clone)]
pub struct ScheduleStore {
    conn: ConnectionManager,
    key: String,
}

impl ScheduleStore {
    pub fn new(conn: ConnectionManager, namespace: &str) -> Self {
        Self {
            conn,
            key: format!("{namespace}:schedules"),
        }
    }

    /// Create or replace; returns the stored schedule and whether it is new. The spec is
    /// validated first, so nothing invalid is ever stored.
    pub async fn put(&self, name: &str, spec: ScheduleSpec) -> Result<(Schedule, bool), ScheduleError> {
        spec.validate(name)?;
        let existing = self.get(name).await?;
        let now = Utc::now();
        let schedule = Schedule {
            name: name.to_owned(),
            spec,
            created_at: existing.as_ref().map_or(now, |s| s.created_at),
            updated_at: now,
        };
        let json = serde_json::to_string(&schedule).map_err(|e| ScheduleError::Corrupt {
            name: name.to_owned(),
            reason: e.to_string(),
        })?;
        let _: () = self.conn.clone().hset(&self.key, name, json).await?;
        Ok((schedule, existing.is_none()))
    }

    pub async fn get(&self, name: &str) -> Result<Option<Schedule>, ScheduleError> {
        let raw: Option<String> = self.conn.clone().hget(&self.key, name).await?;
        raw.map(|r| decode(name, &r)).transpose()
    }

    /// True when it existed.
    pub async fn delete(&self, name: &str) -> Result<bool, ScheduleError> {
        let n: u64 = self.conn.clone().hdel(&self.key, name).await?;
        Ok(n > 0)
    }

    /// All schedules by name; unreadable entries are reported, not hidden.
    pub async fn list(&self) -> Result<Vec<Result<Schedule, ScheduleError>>, ScheduleError> {
        let mut all: Vec<(String, String)> = self.conn.clone().hgetall(&self.key).await?;
        all.sort();
        Ok(all.iter().map(|(name, raw)| decode(name, raw)).collect())
    }
}

fn decode(name: &str, raw: &str) -> Result<Schedule, ScheduleError> {
    serde_json::from_str(raw).map_err(|e| ScheduleError::Corrupt {
        name: name.to_owned(),
        reason: e.to_string(),
    })
}
