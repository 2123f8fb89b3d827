//! Schedules in one Redis hash, `<ns>:schedules`: field `<account>/<name>` → JSON of
//! [`Schedule`]. Names are per account, so two tenants can each have a "daily" without
//! learning of, or overwriting, each other's. Fields without a `/` are schedules saved
//! before names were per account; they are still read, and moved on their next save.
//! Every save or delete also counts up `{<ns>:schedules}:version` (same slot as the
//! hash), so a scheduler reads the hash again only when something changed.
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
    /// Counted up by every save and delete, after the hash changed.
    version_key: String,
    max_per_account: usize,
}

impl ScheduleStore {
    pub fn new(conn: impl Into<RedisConn>, namespace: &str) -> Self {
        let conn = conn.into();
        Self {
            conn,
            key: format!("{namespace}:schedules"),
            version_key: format!("{{{namespace}:schedules}}:version"),
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
                .key(&self.version_key)
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
            let mut pipe = redis::pipe();
            pipe.hset(&self.key, &f, encode(&schedule)?).ignore();
            if legacy {
                // A schedule saved before names were per account moves to its new field.
                pipe.hdel(&self.key, name).ignore();
            }
            // After the hash changed, on the same connection: a reader that sees the new
            // version reads the new hash.
            pipe.incr(&self.version_key, 1).ignore();
            let _: () = pipe.query_async(&mut conn).await?;
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
        if self.remove(&field(account, name)).await? {
            return Ok(true);
        }
        let legacy: Option<String> = self.conn.clone().hget(&self.key, name).await?;
        match legacy.map(|r| decode(name, &r)).transpose()? {
            Some(s) if s.account() == account => self.remove(name).await,
            _ => Ok(false),
        }
    }

    /// Removes one field, then counts the version up; true when it existed.
    async fn remove(&self, field: &str) -> Result<bool, ScheduleError> {
        let (n, _): (u64, u64) = redis::pipe()
            .hdel(&self.key, field)
            .incr(&self.version_key, 1)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(n > 0)
    }

    /// How many saves and deletes there have been (0 before the first): unchanged means
    /// [`Self::list`] would answer as last time, except for writes by a release that did
    /// not count them.
    pub async fn version(&self) -> Result<u64, ScheduleError> {
        let v: Option<u64> = self.conn.clone().get(&self.version_key).await?;
        Ok(v.unwrap_or(0))
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
