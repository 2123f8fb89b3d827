//! Schedules in one Redis hash, `<ns>:schedules`: field `<account>/<name>` → JSON of
//! [`Schedule`]. Names are per account, so two tenants can each have a "daily" without
//! learning of, or overwriting, each other's. Fields without a `/` are schedules saved
//! before names were per account; they are still read, and moved on their next save.
use std::sync::LazyLock;

use crate::redis_conn::RedisConn;
use chrono::Utc;
use redis::{AsyncCommands, Script};

use super::spec::{field, Schedule, ScheduleError, ScheduleSpec};

/// Creates a schedule unless it exists or its account is at its quota (`create.lua`).
static CREATE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("create.lua")));

#[derive(Clone)]
pub struct ScheduleStore {
    conn: RedisConn,
    key: String,
    max_per_account: usize,
}

impl ScheduleStore {
    pub fn new(conn: impl Into<RedisConn>, namespace: &str) -> Self {
        let conn = conn.into();
        Self {
            conn,
            key: format!("{namespace}:schedules"),
            max_per_account: usize::MAX,
        }
    }

    /// Refuse to create more than `max` schedules for one account (replacing one is
    /// always allowed).
    pub fn with_max_per_account(mut self, max: usize) -> Self {
        self.max_per_account = max;
        self
    }

    /// Create or replace the schedule `name` of the spec's account; returns the stored
    /// schedule and whether it is new. The spec is validated first, so nothing invalid is
    /// ever stored. Creation is a compare-and-set in one script: two concurrent creations
    /// of one name cannot both be told "created", and an account at its quota
    /// ([`Self::with_max_per_account`]) gets [`ScheduleError::Quota`].
    pub async fn put(&self, name: &str, spec: ScheduleSpec) -> Result<(Schedule, bool), ScheduleError> {
        spec.validate(name)?;
        let account = spec.account().map(str::to_owned);
        let (existing, legacy) = match self.lookup(account.as_deref(), name).await? {
            Some((s, legacy)) => (Some(s), legacy),
            None => (None, false),
        };
        let now = Utc::now();
        let mut schedule = Schedule {
            name: name.to_owned(),
            spec,
            created_at: existing.as_ref().map_or(now, |s| s.created_at),
            updated_at: now,
        };
        let f = field(account.as_deref(), name);
        let mut conn = self.conn.clone();
        let created = if existing.is_none() {
            let prefix = field(account.as_deref(), "");
            let outcome: i64 = CREATE
                .key(&self.key)
                .arg(&f)
                .arg(encode(&schedule)?)
                .arg(prefix)
                .arg(self.max_per_account.min(i64::MAX as usize))
                .invoke_async(&mut conn)
                .await?;
            if outcome < 0 {
                return Err(ScheduleError::Quota { max: self.max_per_account });
            }
            outcome == 1
        } else {
            false
        };
        if !created {
            if let Some(current) = self.get(account.as_deref(), name).await? {
                schedule.created_at = current.created_at;
            }
            let _: () = conn.hset(&self.key, &f, encode(&schedule)?).await?;
        }
        if legacy {
            // A schedule saved before names were per account moves to its new field.
            let _: u64 = conn.hdel(&self.key, name).await?;
        }
        Ok((schedule, created))
    }

    /// The schedule `name` of `account`.
    pub async fn get(&self, account: Option<&str>, name: &str) -> Result<Option<Schedule>, ScheduleError> {
        Ok(self.lookup(account, name).await?.map(|(s, _)| s))
    }

    /// The schedule, and whether it is still in its old field (before names were per account).
    async fn lookup(&self, account: Option<&str>, name: &str) -> Result<Option<(Schedule, bool)>, ScheduleError> {
        let f = field(account, name);
        let (raw, legacy): (Option<String>, Option<String>) = redis::pipe()
            .hget(&self.key, &f)
            .hget(&self.key, name)
            .query_async(&mut self.conn.clone())
            .await?;
        if let Some(raw) = raw {
            return decode(&f, &raw).map(|s| Some((s, false)));
        }
        match legacy.map(|r| decode(name, &r)).transpose()? {
            Some(s) if s.account() == account => Ok(Some((s, true))),
            _ => Ok(None),
        }
    }

    /// Every account's schedule called `name` (for keys that may see every account).
    pub async fn find(&self, name: &str) -> Result<Vec<Schedule>, ScheduleError> {
        Ok(self
            .list()
            .await?
            .into_iter()
            .filter_map(Result::ok)
            .filter(|s| s.name == name)
            .collect())
    }

    /// True when it existed.
    pub async fn delete(&self, account: Option<&str>, name: &str) -> Result<bool, ScheduleError> {
        let mut conn = self.conn.clone();
        let n: u64 = conn.hdel(&self.key, field(account, name)).await?;
        if n > 0 {
            return Ok(true);
        }
        let legacy: Option<String> = conn.hget(&self.key, name).await?;
        match legacy.map(|r| decode(name, &r)).transpose()? {
            Some(s) if s.account() == account => {
                let n: u64 = conn.hdel(&self.key, name).await?;
                Ok(n > 0)
            }
            _ => Ok(false),
        }
    }

    /// All schedules by account and name; unreadable entries are reported, not hidden.
    pub async fn list(&self) -> Result<Vec<Result<Schedule, ScheduleError>>, ScheduleError> {
        let mut all: Vec<(String, String)> = self.conn.clone().hgetall(&self.key).await?;
        all.sort();
        Ok(all.iter().map(|(f, raw)| decode(f, raw)).collect())
    }
}

fn encode(schedule: &Schedule) -> Result<String, ScheduleError> {
    serde_json::to_string(schedule).map_err(|e| ScheduleError::Corrupt {
        name: schedule.key(),
        reason: e.to_string(),
    })
}

fn decode(field: &str, raw: &str) -> Result<Schedule, ScheduleError> {
    serde_json::from_str(raw).map_err(|e| ScheduleError::Corrupt {
        name: field.to_owned(),
        reason: e.to_string(),
    })
}
