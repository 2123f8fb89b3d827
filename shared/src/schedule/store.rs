//! Schedules in one Redis hash, `<ns>:schedules`: field `<account>/<name>` → JSON of
//! [`Schedule`]. Names are per account, so two tenants can each have a "daily" without
//! learning of, or overwriting, each other's. Fields without a `/` are schedules saved
//! before names were per account; they are still read, and moved on their next save.
//! Every save or delete also counts up `{<ns>:schedules}:version` (same slot as the
//! hash), so a scheduler reads the hash again only when something changed.
//!
//! Each account's fields are also in the set `{<ns>:schedules}:account:<account>` (same
//! slot), kept by the scripts that create, replace and delete, so listing one account's
//! schedules reads that account's and no other's. Schedules an older release saved are
//! put in their index once, by the first caller that needs the index
//! (`backfill.lua`, marked done by `{<ns>:schedules}:indexed`).
//!
//! A schedule created through an API key also counts against that key, whatever its
//! account, so a key that may name any account cannot hold unbounded schedules by
//! inventing account ids: the hash `{<ns>:schedules}:creator` (field → the key's name,
//! never its secret) says which key created each field, and the set
//! `{<ns>:schedules}:key:<key name>` holds the fields that key created (both in the same
//! slot). The schedule stays the creator's until deleted, whoever replaces it; schedules
//! saved before this count against no key.
use std::sync::LazyLock;

use crate::redis_conn::RedisConn;
use chrono::{DateTime, Utc};
use redis::{AsyncCommands, Script};

use super::built_in::{BuiltInSchedule, RECORD_TTL};
use super::spec::{field, Schedule, ScheduleError, ScheduleSpec};

/// Creates a schedule unless it exists, or its account or its creating key is at its
/// quota (`create.lua`).
static CREATE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("create.lua")));
/// Replaces a schedule, keeping its account's index (`replace.lua`).
static REPLACE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("replace.lua")));
/// Deletes a schedule and its index entries, its account's and its creator's (`delete.lua`).
static DELETE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("delete.lua")));
/// Indexes the schedules saved before the index, once (`backfill.lua`).
static BACKFILL: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("backfill.lua")));
/// Redis's clock, read on the node holding the schedules (a bare `TIME` has no key, and
/// a cluster client sends it to any node).
static CLOCK: LazyLock<Script> = LazyLock::new(|| Script::new("return redis.call('TIME')"));

/// Tries of a put whose schedule others keep deleting and creating between its read and
/// its write, before it gives up ([`ScheduleError::Contended`]).
const PUT_TRIES: usize = 4;

#[derive(Clone)]
pub struct ScheduleStore {
    conn: RedisConn,
    key: String,
    /// Counted up by every save and delete, after the hash changed.
    version_key: String,
    /// An account's index is this followed by the account: the set of its fields.
    index_prefix: String,
    /// Set once the schedules saved before the index are in it.
    indexed_key: String,
    /// The built-in schedules a running scheduler makes (`built_in.rs`).
    built_in_key: String,
    /// Which API key created each field: field → the key's name.
    creator_key: String,
    /// A key's index is this followed by the key's name: the set of fields it created.
    key_index_prefix: String,
    max_per_account: usize,
    /// The API key this store creates schedules for, and the most it may hold; `None`
    /// (the scheduler, tools): creations count against no key.
    creator: Option<(String, usize)>,
}

impl ScheduleStore {
    pub fn new(conn: impl Into<RedisConn>, namespace: &str) -> Self {
        let conn = conn.into();
        Self {
            conn,
            key: format!("{namespace}:schedules"),
            version_key: format!("{{{namespace}:schedules}}:version"),
            index_prefix: format!("{{{namespace}:schedules}}:account:"),
            indexed_key: format!("{{{namespace}:schedules}}:indexed"),
            built_in_key: format!("{{{namespace}:schedules}}:builtin"),
            creator_key: format!("{{{namespace}:schedules}}:creator"),
            key_index_prefix: format!("{{{namespace}:schedules}}:key:"),
            max_per_account: usize::MAX,
            creator: None,
        }
    }

    /// Refuse to create more than `max` schedules for one account (replacing one is
    /// always allowed).
    pub fn with_max_per_account(mut self, max: usize) -> Self {
        self.max_per_account = max;
        self
    }

    /// Count the schedules this store creates against the API key named `key` (its
    /// configured name: stable, and never the secret), and refuse to create more than
    /// `max` for it in total, whatever their accounts. Replacing one is always allowed.
    pub fn with_max_per_key(mut self, key: &str, max: usize) -> Self {
        self.creator = Some((key.to_owned(), max));
        self
    }

    /// Create or replace the schedule `name` of the spec's account; returns the stored
    /// schedule and whether it is new. The spec is validated first, so nothing invalid is
    /// ever stored. Creation is a compare-and-set in one script: two concurrent creations
    /// of one name cannot both be told "created", an account at its quota
    /// ([`Self::with_max_per_account`]) gets [`ScheduleError::Quota`] and a key at its own
    /// ([`Self::with_max_per_key`]) gets [`ScheduleError::KeyQuota`].
    ///
    /// A replace whose schedule was deleted since it was read writes nothing, and the put
    /// starts again as a creation: a deleted schedule is never brought back past the quota.
    pub async fn put(&self, name: &str, spec: ScheduleSpec) -> Result<(Schedule, bool), ScheduleError> {
        spec.validate(name)?;
        for _ in 0..PUT_TRIES {
            if let Some(put) = self.try_put(name, &spec).await? {
                return Ok(put);
            }
        }
        Err(ScheduleError::Contended { tries: PUT_TRIES })
    }

    /// One try of [`Self::put`]: `None` when the schedule it read went before its write.
    async fn try_put(&self, name: &str, spec: &ScheduleSpec) -> Result<Option<(Schedule, bool)>, ScheduleError> {
        let spec = spec.clone();
        let account = spec.account().map(str::to_owned);
        let (existing, legacy) = match self.lookup(account.as_deref(), name).await? {
            Some((s, legacy)) => (Some(s), legacy),
            None => (None, false),
        };
        // on Redis's clock, as the scheduler reads ticks (a replica's own may run ahead)
        let now = self.server_time().await?;
        let effective_at = Some(existing.as_ref().map_or(now, |s| s.effective_after(&spec, now)));
        let mut schedule = Schedule {
            name: name.to_owned(),
            spec,
            created_at: existing.as_ref().map_or(now, |s| s.created_at),
            updated_at: now,
            effective_at,
        };
        let f = field(account.as_deref(), name);
        let mut conn = self.conn.clone();
        let index = self.index_key(account.as_deref());
        let created = if existing.is_none() {
            // The quota counts the account's index: it must hold older releases' schedules.
            self.ensure_indexed().await?;
            let mut create = CREATE.prepare_invoke();
            create
                .key(&self.key)
                .key(&self.version_key)
                .key(&index)
                .key(&self.creator_key)
                .arg(&f)
                .arg(encode(&schedule)?)
                .arg(self.max_per_account.min(i64::MAX as usize));
            if let Some((key, max)) = &self.creator {
                create.key(self.key_index(key)).arg(key).arg((*max).min(i64::MAX as usize));
            }
            let outcome: i64 = create.invoke_async(&mut conn).await?;
            match outcome {
                -1 => return Err(ScheduleError::Quota { max: self.max_per_account }),
                -2 => {
                    let max = self.creator.as_ref().map_or(usize::MAX, |(_, max)| *max);
                    return Err(ScheduleError::KeyQuota { max });
                }
                _ => {}
            }
            outcome == 1
        } else {
            false
        };
        if !created {
            if let Some(current) = self.get(account.as_deref(), name).await? {
                schedule.created_at = current.created_at;
                schedule.effective_at = Some(current.effective_after(&schedule.spec, now));
            }
            // A schedule saved before names were per account moves to its new field.
            let replaced: i64 = REPLACE
                .key(&self.key)
                .key(&self.version_key)
                .key(&index)
                .arg(&f)
                .arg(encode(&schedule)?)
                .arg(if legacy { name } else { "" })
                .invoke_async(&mut conn)
                .await?;
            if replaced == 0 {
                return Ok(None);
            }
        }
        Ok(Some((schedule, created)))
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
        Ok(legacy_of(account, name, legacy).map(|s| (s, true)))
    }

    /// Accounts' schedules called `name`, at most `at_most` of them (for keys that may
    /// see every account): the fields' names are read, then only the records of this
    /// name's first fields (its per-account fields and an older release's bare field),
    /// never another name's. Bounded: every tenant may have a schedule of this name, each
    /// up to 64 KiB, and a caller asking which one it means needs to know only whether
    /// there are several.
    pub async fn find(&self, name: &str, at_most: usize) -> Result<Vec<Schedule>, ScheduleError> {
        let mut conn = self.conn.clone();
        let fields: Vec<String> = conn.hkeys(&self.key).await?;
        let mine: Vec<&String> = fields
            .iter()
            .filter(|f| f.rsplit_once('/').map_or(f.as_str(), |(_, n)| n) == name)
            .collect();
        // In reads of `at_most` fields until that many decode (one that does not is no
        // schedule, and must not hide the next).
        let mut found = Vec::new();
        for batch in mine.chunks(at_most.max(1)) {
            let raws: Vec<Option<String>> = redis::cmd("HMGET").arg(&self.key).arg(batch).query_async(&mut conn).await?;
            found.extend(
                batch
                    .iter()
                    .zip(raws)
                    .filter_map(|(f, raw)| decode(f, &raw?).ok())
                    .filter(|s| s.name == name),
            );
            if found.len() >= at_most {
                found.truncate(at_most);
                break;
            }
        }
        Ok(found)
    }

    /// True when it existed.
    pub async fn delete(&self, account: Option<&str>, name: &str) -> Result<bool, ScheduleError> {
        if self.remove(account, &field(account, name)).await? {
            return Ok(true);
        }
        let legacy: Option<String> = self.conn.clone().hget(&self.key, name).await?;
        match legacy_of(account, name, legacy) {
            Some(_) => self.remove(account, name).await,
            None => Ok(false),
        }
    }

    /// Removes one field of `account`, its index entry and its entry in the index of the
    /// key that created it, then counts the version up; true when it existed.
    async fn remove(&self, account: Option<&str>, field: &str) -> Result<bool, ScheduleError> {
        let mut conn = self.conn.clone();
        // Read first so the script declares every key it touches (a cluster needs them);
        // a creator that changed in between is left to its next creation (`delete.lua`).
        let creator: Option<String> = conn.hget(&self.creator_key, field).await?;
        let mut delete = DELETE.prepare_invoke();
        delete
            .key(&self.key)
            .key(&self.version_key)
            .key(self.index_key(account))
            .key(&self.creator_key)
            .arg(field);
        if let Some(creator) = &creator {
            delete.key(self.key_index(creator)).arg(creator);
        }
        let n: u64 = delete.invoke_async(&mut conn).await?;
        Ok(n > 0)
    }

    /// The set of `account`'s fields (none: schedules whose payload names no account).
    fn index_key(&self, account: Option<&str>) -> String {
        format!("{}{}", self.index_prefix, account.unwrap_or(""))
    }

    /// The set of the fields the API key named `key` created.
    fn key_index(&self, key: &str) -> String {
        format!("{}{key}", self.key_index_prefix)
    }

    /// Puts the schedules an older release saved into their accounts' indexes, the first
    /// time any caller needs the index; afterwards one script call that finds the marker.
    async fn ensure_indexed(&self) -> Result<(), ScheduleError> {
        let _: u64 = BACKFILL
            .key(&self.key)
            .key(&self.indexed_key)
            .arg(&self.index_prefix)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    /// How many saves and deletes there have been (0 before the first): unchanged means
    /// [`Self::list`] would answer as last time, except for writes by a release that did
    /// not count them.
    /// Redis's clock (`TIME`): on a cluster, the clock of the node holding the schedules,
    /// so every replica ticks them by the same clock.
    pub async fn server_time(&self) -> Result<DateTime<Utc>, ScheduleError> {
        let (secs, micros): (i64, u32) = CLOCK.key(&self.key).invoke_async(&mut self.conn.clone()).await?;
        Ok(DateTime::from_timestamp(secs, micros * 1000).unwrap_or_else(Utc::now))
    }

    pub async fn version(&self) -> Result<u64, ScheduleError> {
        let v: Option<u64> = self.conn.clone().get(&self.version_key).await?;
        Ok(v.unwrap_or(0))
    }

    /// All schedules by account and name; unreadable entries are reported, not hidden.
    /// Reads every account's: for the scheduler and keys that may see every account.
    pub async fn list(&self) -> Result<Vec<Result<Schedule, ScheduleError>>, ScheduleError> {
        let mut all: Vec<(String, String)> = self.conn.clone().hgetall(&self.key).await?;
        all.sort();
        Ok(all.iter().map(|(f, raw)| decode(f, raw)).collect())
    }

    /// One page of schedules by their field (`<account>/<name>`), those after `after`, at
    /// most `limit`, and the field to go on after when there are more. `accounts`: only
    /// theirs, read through their indexes, so another tenant's schedules can neither slow
    /// this nor fill the caller's memory; none: every account's. Only the page's records
    /// are read (names are small, a record up to the payload limit). Unreadable entries
    /// are reported, not hidden.
    pub async fn page(&self, accounts: Option<&[&str]>, after: Option<&str>, limit: usize) -> Result<SchedulePage, ScheduleError> {
        let mut conn = self.conn.clone();
        // Each field with the account whose index listed it.
        let mut fields: Vec<(String, Option<&str>)> = match accounts {
            None => {
                let all: Vec<String> = conn.hkeys(&self.key).await?;
                all.into_iter().map(|f| (f, None)).collect()
            }
            Some(accounts) => {
                self.ensure_indexed().await?;
                let mut all = Vec::new();
                for &account in accounts {
                    let listed: Vec<String> = conn.smembers(self.index_key(Some(account))).await?;
                    all.extend(listed.into_iter().map(|f| (f, Some(account))));
                }
                all
            }
        };
        fields.sort();
        fields.dedup_by(|a, b| a.0 == b.0);
        let from = after.map_or(0, |after| fields.partition_point(|(f, _)| f.as_str() <= after));
        let mut page: Vec<(String, Option<&str>)> = fields.into_iter().skip(from).take(limit + 1).collect();
        let next = (page.len() > limit).then(|| {
            page.truncate(limit);
            page.last().map(|(f, _)| f.clone()).unwrap_or_default()
        });
        if page.is_empty() {
            return Ok(SchedulePage {
                schedules: Vec::new(),
                next,
            });
        }
        let names: Vec<&str> = page.iter().map(|(f, _)| f.as_str()).collect();
        let raws: Vec<Option<String>> = redis::cmd("HMGET").arg(&self.key).arg(&names).query_async(&mut conn).await?;
        let mut schedules = Vec::with_capacity(page.len());
        for ((f, account), raw) in page.iter().zip(raws) {
            // Absent: deleted since its name was read, or by a release that did not keep
            // the index.
            let Some(raw) = raw else { continue };
            match decode(f, &raw) {
                // A field saved before names were per account, since saved again for
                // another account by a release that did not keep the index.
                Ok(s) if account.is_some() && s.account() != *account => {}
                r => schedules.push(r),
            }
        }
        Ok(SchedulePage { schedules, next })
    }
}

/// One page of [`ScheduleStore::page`].
#[derive(Debug)]
pub struct SchedulePage {
    pub schedules: Vec<Result<Schedule, ScheduleError>>,
    /// The field to list after for the next page; none when this page is the last.
    pub next: Option<String>,
}

impl ScheduleStore {
    /// Records the built-in schedules this process's scheduler makes, for
    /// [`RECORD_TTL`] (`built_in.rs`).
    pub async fn record_built_ins(&self, built_ins: &[BuiltInSchedule]) -> Result<(), ScheduleError> {
        let raw = serde_json::to_string(built_ins).map_err(|e| ScheduleError::Corrupt {
            name: "built-in schedules".into(),
            reason: e.to_string(),
        })?;
        let () = self.conn.clone().set_ex(&self.built_in_key, raw, RECORD_TTL.as_secs()).await?;
        Ok(())
    }

    /// The built-in schedules a running scheduler makes; none when no scheduler recorded
    /// them within [`RECORD_TTL`].
    pub async fn built_ins(&self) -> Result<Vec<BuiltInSchedule>, ScheduleError> {
        let raw: Option<String> = self.conn.clone().get(&self.built_in_key).await?;
        raw.map_or(Ok(Vec::new()), |raw| {
            serde_json::from_str(&raw).map_err(|e| ScheduleError::Corrupt {
                name: "built-in schedules".into(),
                reason: e.to_string(),
            })
        })
    }
}

fn encode(schedule: &Schedule) -> Result<String, ScheduleError> {
    serde_json::to_string(schedule).map_err(|e| ScheduleError::Corrupt {
        name: schedule.key(),
        reason: e.to_string(),
    })
}

/// `account`'s schedule `name` in the field an older release used (`<name>`), if that
/// field holds one. One that cannot be read cannot say whose it is: absent for every
/// caller, so a scoped key learns nothing from it (the listing logs it).
fn legacy_of(account: Option<&str>, name: &str, raw: Option<String>) -> Option<Schedule> {
    decode(name, &raw?).ok().filter(|s| s.account() == account)
}

fn decode(field: &str, raw: &str) -> Result<Schedule, ScheduleError> {
    serde_json::from_str(raw).map_err(|e| ScheduleError::Corrupt {
        name: field.to_owned(),
        reason: e.to_string(),
    })
}
