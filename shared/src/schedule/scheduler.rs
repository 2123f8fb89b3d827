//! The scheduler loop. Run it in as many replicas as you like: each tick's job carries
//! the idempotency key `schedule:<account>/<name>:<tick>` (built-ins:
//! `schedule:builtin.<what>.<account>:<tick>`), so the queue keeps exactly one.
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use croner::Cron;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::built_in;
use super::config::SchedulerConfig;
use super::counters::ScheduleCounters;
use super::spec::{latest_tick, next_tick, parse_cron, Schedule, ScheduleError, ScheduleSpec};
use super::store::ScheduleStore;
use crate::job::{JobKind, JobPayload};
use crate::queue::{EnqueueError, Enqueued, JobStore, NewJob};

/// Ticks enqueued at once (their single enqueues share group-committed calls).
const ENQUEUES_AT_ONCE: usize = 64;

/// Most overtaken ticks of one schedule counted at once (a per-minute cron over a week).
const MAX_OVERTAKEN: u64 = 10_080;

/// A registered account as the scheduler sees it: the built-in schedules run for the
/// active ones, each of its marketplaces (the first is its home: its built-ins keep the
/// names they had before accounts had more), and no schedule runs for an inactive one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredAccount {
    pub account_id: String,
    pub marketplace_ids: Vec<String>,
    pub active: bool,
}

impl RegisteredAccount {
    /// Each marketplace with the suffix its built-ins' names take: none for the first,
    /// `@<marketplace>` for the others (a job walks one marketplace; found by the
    /// scheduler audit of 2026-12-07, which saw only the first one ever synced).
    fn marketplaces(&self) -> impl Iterator<Item = (&str, String)> {
        self.marketplace_ids.iter().enumerate().map(|(i, m)| {
            // ('@' is in no account id nor schedule name: `.` is, and `acme.<m>` may be
            // another account; '/' joins a saved schedule's account and name)
            let suffix = if i == 0 { String::new() } else { format!("@{m}") };
            (m.as_str(), suffix)
        })
    }
}

type AccountsFuture<'a> = Pin<Box<dyn Future<Output = Result<Vec<RegisteredAccount>, String>> + Send + 'a>>;

/// Where the registered accounts come from (PostgreSQL in the binaries).
pub trait AccountSource: Send + Sync + 'static {
    fn accounts(&self) -> AccountsFuture<'_>;
}

/// How long a poll waits for the active accounts: the saved schedules, due in the same
/// poll, need only Redis, and must not wait on a database that hangs (found by the
/// scheduler audit of 2026-12-07: each poll waited up to a database call's deadline,
/// about 37 s, and the ticks went out that late). A read not done by then goes on, and
/// the next polls wait for it again: it is never dropped for another (found by the
/// scheduler audit of 2026-12-07, second: a read that always took longer than this was
/// begun again at every poll and never finished, and no built-in schedule ever ran).
const ACCOUNTS_READ: Duration = Duration::from_secs(1);

/// How old a read of the accounts gets before another is begun beside it (one on a
/// connection gone half-open waits for the database call's deadline, ~37 s).
const READ_AGAIN_AFTER: Duration = Duration::from_secs(5);

/// A read of the accounts on a task of its own.
type AccountsRead = tokio::task::JoinHandle<Result<Vec<RegisteredAccount>, String>>;

/// The longest the scheduler goes without reading every schedule again, even with the
/// store's version unchanged (a release that did not count its writes, a lost count).
const REREAD_EVERY: Duration = Duration::from_secs(60);

/// The schedules as one read found them.
struct Listed {
    version: u64,
    read_at: tokio::time::Instant,
    /// Each schedule, or why its entry could not be read.
    schedules: Vec<Result<Schedule, String>>,
}

/// One thing to enqueue per tick.
struct Due {
    name: String,
    cron: Cron,
    /// No tick before this one is made: a schedule's first is the first at or after its
    /// creation (a tick within `misfire_grace_ms` before it is not its to make), or after
    /// the put that last changed its cron or kind or enabled it again
    /// ([`Schedule::effective_from`]).
    not_before: Option<DateTime<Utc>>,
    make: Box<dyn Fn(DateTime<Utc>) -> Result<NewJob, String> + Send + Sync>,
}

pub struct Scheduler<S: JobStore> {
    jobs: S,
    schedules: ScheduleStore,
    accounts: Option<Arc<dyn AccountSource>>,
    config: SchedulerConfig,
    /// Last tick this replica enqueued (or counted as missed), per schedule name.
    done: HashMap<String, DateTime<Utc>>,
    /// The last tick counted as overtaken, per schedule name.
    overtaken_to: HashMap<String, DateTime<Utc>>,
    active: Vec<RegisteredAccount>,
    /// The registered accounts that are not active: their saved schedules make no job
    /// (found by the scheduler audit of 2026-12-07: only the built-ins skipped them).
    inactive: std::collections::HashSet<String>,
    /// When the accounts were last read, or a read of them last failed.
    active_read_at: Option<tokio::time::Instant>,
    /// Whether a read of the accounts has succeeded yet.
    active_listed: bool,
    /// The reads of the accounts under way (begun by earlier polls), with when each
    /// began: a second goes beside one that is [`READ_AGAIN_AFTER`] old.
    reading: Vec<(AccountsRead, tokio::time::Instant)>,
    /// The accounts that joined the active accounts after this replica's first read of
    /// them (registered, or back), and the poll that first saw them: their built-ins
    /// make no tick from before, nor count one as missed (found by the review of
    /// 2026-12-06: an account back after an absence had every tick of it counted).
    joined: HashMap<String, DateTime<Utc>>,
    /// Problems already logged, so a broken schedule is reported once, not every second.
    reported: HashMap<String, String>,
    /// Each schedule's cron and job as last validated, reused while its definition is
    /// unchanged: parsing a cron costs tens of µs, and every poll goes through every schedule.
    parsed: HashMap<String, (ScheduleSpec, Cron, JobPayload)>,
    /// The schedules as last read, at which store version and when: read again only when
    /// the version moved, or [`REREAD_EVERY`] passed.
    listed: Option<Listed>,
    /// The first poll's time: only ticks after it can be this process's misfires.
    since: Option<DateTime<Utc>>,
    counters: Arc<ScheduleCounters>,
    /// When this replica last recorded its built-ins for the listings (`built_in.rs`).
    built_ins_recorded_at: Option<tokio::time::Instant>,
}

/// A scheduler that stops leaves no read of the accounts going (each holds a database
/// connection until its deadline).
impl<S: JobStore> Drop for Scheduler<S> {
    fn drop(&mut self) {
        for (read, _) in &self.reading {
            read.abort();
        }
    }
}

impl<S: JobStore> Scheduler<S> {
    pub fn new(jobs: S, schedules: ScheduleStore, accounts: Option<Arc<dyn AccountSource>>, config: SchedulerConfig) -> Self {
        Self {
            jobs,
            schedules,
            accounts,
            config,
            done: HashMap::new(),
            overtaken_to: HashMap::new(),
            active: Vec::new(),
            inactive: Default::default(),
            active_read_at: None,
            active_listed: false,
            reading: Vec::new(),
            joined: HashMap::new(),
            reported: HashMap::new(),
            parsed: HashMap::new(),
            listed: None,
            since: None,
            counters: Arc::default(),
            built_ins_recorded_at: None,
        }
    }

    /// Count ticks and misfires into `counters` (the process's, for `/metrics`).
    pub fn with_counters(mut self, counters: Arc<ScheduleCounters>) -> Self {
        self.counters = counters;
        self
    }

    pub fn counters(&self) -> Arc<ScheduleCounters> {
        self.counters.clone()
    }

    /// Run until `shutdown` fires.
    pub async fn run(mut self, shutdown: CancellationToken) {
        if !self.config.enabled {
            return;
        }
        tracing::info!(poll_ms = self.config.poll_ms, "scheduler started");
        let poll = Duration::from_millis(self.config.poll_ms);
        loop {
            self.record_built_ins().await;
            // Ticks are read on Redis's clock, as the jobs' times are: a replica whose own
            // clock runs ahead would enqueue them early. Redis not answering, its own
            // clock (the enqueue then fails and says so).
            let now = self.schedules.server_time().await.unwrap_or_else(|_| Utc::now());
            self.tick_once(now).await;
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(poll) => {}
            }
        }
        tracing::info!("scheduler stopped");
    }

    /// Enqueue every tick due at `now` that this replica has not enqueued yet. Returns
    /// how many jobs were newly created (replays of another replica's job not counted).
    pub async fn tick_once(&mut self, now: DateTime<Utc>) -> usize {
        let mut created = 0;
        let since = *self.since.get_or_insert(now);
        let due_list = self.due_list(now).await;
        self.forget_gone(&due_list);
        let mut ready = Vec::new();
        for due in due_list {
            let Some(tick) = latest_tick(&due.cron, now) else { continue };
            if due.not_before.is_some_and(|t| tick < t) {
                continue;
            }
            let grace = chrono::Duration::milliseconds(self.config.misfire_grace_ms as i64);
            if self.done.get(&due.name).is_some_and(|t| *t >= tick) {
                continue;
            }
            self.count_overtaken(&due, since, tick);
            if now - tick > grace {
                // Due while this process ran, yet never enqueued in time (Redis down,
                // the loop stalled): a misfire, counted once. One due before this process
                // started was another replica's to enqueue.
                if tick > since {
                    self.counters.missed();
                    tracing::warn!(schedule = %due.name, tick = %tick, "schedule tick missed: older than misfire_grace_ms, skipped");
                    self.done.insert(due.name.clone(), tick);
                }
                continue;
            }
            let job = match (due.make)(tick) {
                // A trace of its own (found by an audit of 2026-12-06: a schedule's
                // running job showed no trace id, though its lines carried one).
                Ok(j) if j.traceparent.is_none() => Ok(j.traceparent(crate::trace_context::fresh_traceparent())),
                other => other,
            };
            let job = match job {
                Ok(j) => j
                    .idempotency_key(format!("schedule:{}:{}", due.name, tick.timestamp()))
                    .trigger(format!("schedule:{}", due.name)),
                Err(e) => {
                    self.report(&due.name, format!("cannot build its job: {e}"));
                    continue;
                }
            };
            ready.push((due.name, tick, job));
        }
        // Together: a shard that hangs costs the poll one call's timeout, not one for each
        // schedule of it in turn (the ticks of every schedule after them ran out of grace).
        // Each enqueue runs to its answer (it would be written all the same), so a tick
        // is never sent again while its first enqueue is on its way.
        let jobs = &self.jobs;
        let answers: Vec<(String, DateTime<Utc>, Result<Enqueued, EnqueueError>)> = futures::stream::iter(
            ready
                .into_iter()
                .map(|(name, tick, job)| async move { (name, tick, jobs.enqueue(job).await) }),
        )
        .buffer_unordered(ENQUEUES_AT_ONCE)
        .collect()
        .await;
        for (name, tick, answer) in answers {
            match answer {
                Ok(e) => {
                    self.done.insert(name.clone(), tick);
                    self.reported.remove(&name);
                    if e.created {
                        created += 1;
                        self.counters.ticked();
                        tracing::info!(schedule = %name, tick = %tick, job_id = %e.id, "scheduled job enqueued");
                    }
                }
                Err(EnqueueError::IdempotencyConflict { existing }) => {
                    // Another replica enqueued this tick with a different definition (the
                    // schedule was edited in between): the tick already has its job.
                    self.done.insert(name.clone(), tick);
                    tracing::info!(schedule = %name, tick = %tick, job_id = %existing, "tick already enqueued by another replica");
                }
                Err(EnqueueError::AccountFull { unfinished }) => {
                    // Its account keeps as many unfinished jobs of the kind as it may:
                    // the tick is skipped and counted as a misfire, not sent again every
                    // poll until its grace runs out.
                    self.done.insert(name.clone(), tick);
                    self.counters.missed();
                    tracing::warn!(
                        schedule = %name,
                        tick = %tick,
                        unfinished,
                        "schedule tick skipped: its account is at its cap of unfinished jobs (max_unfinished_per_account); counted as a misfire"
                    );
                }
                Err(e) => self.report(&name, format!("enqueue failed: {e}")),
            }
        }
        created
    }

    /// Counts as misfires, once, the ticks of `due` that fell due while this process ran
    /// and were overtaken by `latest` before they could be enqueued (only the latest tick
    /// is ever enqueued): after the last tick handled (or this process's start, or the
    /// schedule's, or the last tick counted so), before `latest`. At most
    /// [`MAX_OVERTAKEN`] a call.
    fn count_overtaken(&mut self, due: &Due, since: DateTime<Utc>, latest: DateTime<Utc>) {
        let mut from = self.done.get(&due.name).copied().unwrap_or(since).max(since);
        if let Some(t) = self.overtaken_to.get(&due.name) {
            from = from.max(*t);
        }
        if let Some(first) = due.not_before {
            from = from.max(first - chrono::Duration::seconds(1));
        }
        let mut missed = 0u64;
        let mut at = from;
        while missed < MAX_OVERTAKEN {
            match next_tick(&due.cron, at) {
                Some(t) if t < latest => {
                    missed += 1;
                    at = t;
                }
                _ => break,
            }
        }
        if missed > 0 {
            for _ in 0..missed {
                self.counters.missed();
            }
            self.overtaken_to.insert(due.name.clone(), at);
            tracing::warn!(schedule = %due.name, missed, after = %from, before = %latest, "schedule ticks missed: overtaken by a later tick before they could be enqueued, skipped");
        }
    }

    /// Forgets the ticks of schedules that are gone (deleted, disabled, an account no
    /// longer active): short-lived schedules with new names would otherwise grow these
    /// maps for the life of the process. Only after a listing that was read: a failed
    /// read lists no user schedule, and forgetting their ticks then would count the
    /// latest as misfires.
    fn forget_gone(&mut self, due: &[Due]) {
        if self.listed.is_none() {
            return;
        }
        let names: std::collections::HashSet<&str> = due.iter().map(|d| d.name.as_str()).collect();
        self.done.retain(|name, _| names.contains(name.as_str()));
        self.overtaken_to.retain(|name, _| names.contains(name.as_str()));
    }

    /// How many schedules this replica remembers a tick of.
    pub fn schedules_remembered(&self) -> usize {
        self.done.len().max(self.overtaken_to.len())
    }

    /// Records the built-ins this replica makes for the listings, every
    /// [`built_in::RECORD_EVERY`]; none without an account source (nothing to make them for).
    async fn record_built_ins(&mut self) {
        if self.accounts.is_none() || self.built_ins_recorded_at.is_some_and(|t| t.elapsed() < built_in::RECORD_EVERY) {
            return;
        }
        match self.schedules.record_built_ins(&built_in::built_ins(&self.config.defaults)).await {
            Ok(()) => {
                self.built_ins_recorded_at = Some(tokio::time::Instant::now());
                self.reported.remove("built-ins");
            }
            Err(e) => self.report("built-ins", format!("cannot record the built-in schedules: {e}")),
        }
    }

    fn report(&mut self, name: &str, problem: String) {
        if self.reported.get(name) != Some(&problem) {
            tracing::warn!(schedule = %name, problem = %problem, "schedule skipped this round");
            self.reported.insert(name.to_owned(), problem);
        }
    }

    async fn due_list(&mut self, now: DateTime<Utc>) -> Vec<Due> {
        let mut out = Vec::new();
        self.refresh_accounts(now).await;
        if let Err(e) = self.read_schedules().await {
            self.report("schedules", e.to_string());
            self.listed = None;
        }
        let listed = self.listed.take();
        for s in listed.iter().flat_map(|l| &l.schedules) {
            match s {
                Ok(s) if s.spec.enabled => match self.validated(s) {
                    // An inactive account's schedules wait until it is active again.
                    Ok((_, payload)) if self.inactive.contains(payload.account_id().as_str()) => {}
                    Ok((cron, payload)) => {
                        let spec = s.spec.clone();
                        // (back from being inactive: no tick of the time it was)
                        let back = self.joined.get(payload.account_id().as_str()).copied();
                        out.push(Due {
                            // Names are per account: the key keeps two tenants' "daily"
                            // apart in the idempotency key and the maps.
                            name: s.key(),
                            cron,
                            not_before: Some(s.effective_from()).max(back),
                            make: Box::new(move |_tick| {
                                let mut job = NewJob::new(payload.clone());
                                job.priority = spec.priority;
                                job.max_attempts = spec.max_attempts;
                                Ok(job)
                            }),
                        });
                    }
                    Err(e) => self.report(&s.key(), e.to_string()),
                },
                Ok(_) => {}
                // Each unreadable entry under its own name: under one, two of them took
                // turns as "changed" and were logged every poll.
                Err(e) => self.report(&format!("unreadable: {e}"), e.clone()),
            }
        }
        self.listed = listed;
        let d = self.config.defaults.clone();
        // Each built-in's cron is parsed once a poll, not once per account.
        let sync_cron = d.sync.enabled.then(|| parse_cron(&d.sync.cron).ok()).flatten();
        let audits: Vec<(&str, Cron, i64)> = [("daily_audit", &d.daily_audit, 1), ("weekly_audit", &d.weekly_audit, 7)]
            .into_iter()
            .filter(|(_, b, _)| b.enabled)
            .filter_map(|(label, b, days)| parse_cron(&b.cron).ok().map(|c| (label, c, days)))
            .collect();
        for acct in &self.active {
            let joined = self.joined.get(&acct.account_id).copied();
            for (marketplace, suffix) in acct.marketplaces() {
                if let Some(cron) = &sync_cron {
                    let (account, marketplace) = (acct.account_id.clone(), marketplace.to_owned());
                    out.push(Due {
                        name: format!("builtin.sync.{}{suffix}", acct.account_id),
                        cron: cron.clone(),
                        not_before: joined,
                        make: Box::new(move |_tick| {
                            let v = serde_json::json!({
                                "account_id": account, "marketplace_id": marketplace, "resources": ["orders", "listings"]
                            });
                            JobPayload::from_json(JobKind::Sync, v).map(NewJob::new).map_err(|e| e.to_string())
                        }),
                    });
                }
                for (label, cron, days) in &audits {
                    let (cron, days) = (cron.clone(), *days);
                    let (account, marketplace) = (acct.account_id.clone(), marketplace.to_owned());
                    let report_type = d.audit_report_type.clone();
                    out.push(Due {
                        name: format!("builtin.{label}.{}{suffix}", acct.account_id),
                        cron,
                        not_before: joined,
                        make: Box::new(move |tick| {
                            let v = serde_json::json!({
                                "account_id": account, "marketplace_id": marketplace, "report_type": report_type,
                                "start": tick - chrono::Duration::days(days), "end": tick,
                            });
                            JobPayload::from_json(JobKind::Backfill, v)
                                .map(NewJob::new)
                                .map_err(|e| e.to_string())
                        }),
                    });
                }
            }
        }
        out
    }

    /// Reads every schedule again when the store's version moved since the last read (a
    /// save or delete) or [`REREAD_EVERY`] passed; otherwise keeps what it has.
    async fn read_schedules(&mut self) -> Result<(), ScheduleError> {
        let version = self.schedules.version().await?;
        let now = tokio::time::Instant::now();
        if let Some(l) = &self.listed {
            if l.version == version && now.duration_since(l.read_at) < REREAD_EVERY {
                return Ok(());
            }
        }
        let schedules: Vec<Result<Schedule, String>> = self
            .schedules
            .list()
            .await?
            .into_iter()
            .map(|s| s.map_err(|e| e.to_string()))
            .collect();
        let listed: std::collections::HashSet<String> = schedules.iter().flatten().map(|s| s.key()).collect();
        self.parsed.retain(|key, _| listed.contains(key));
        self.listed = Some(Listed {
            version,
            read_at: now,
            schedules,
        });
        Ok(())
    }

    /// A schedule's cron and job: validated again only when its definition changed.
    fn validated(&mut self, s: &Schedule) -> Result<(Cron, JobPayload), ScheduleError> {
        let key = s.key();
        if let Some((spec, cron, payload)) = self.parsed.get(&key) {
            if *spec == s.spec {
                return Ok((cron.clone(), payload.clone()));
            }
        }
        let (cron, payload) = s.spec.validate(&s.name)?;
        self.parsed.insert(key, (s.spec.clone(), cron.clone(), payload.clone()));
        Ok((cron, payload))
    }

    async fn refresh_accounts(&mut self, now: DateTime<Utc>) {
        let Some(source) = self.accounts.clone() else { return };
        let fresh = self
            .active_read_at
            .is_some_and(|t| t.elapsed() < Duration::from_millis(self.config.accounts_refresh_ms));
        let began = tokio::time::Instant::now();
        let until = began + ACCOUNTS_READ;
        let read_now = |source: &Arc<dyn AccountSource>| {
            let source = source.clone();
            (tokio::spawn(async move { source.accounts().await }), tokio::time::Instant::now())
        };
        if self.reading.is_empty() {
            if fresh {
                return;
            }
            self.reading.push(read_now(&source));
        } else if self.reading.len() < 2 && self.reading.iter().all(|(_, at)| at.elapsed() >= READ_AGAIN_AFTER) {
            // A read this old may hang on a connection gone half-open: another goes beside
            // it, and whichever answers first is taken (the review of 2026-12-07).
            self.reading.push(read_now(&source));
        }
        while !self.reading.is_empty() {
            let waited = tokio::time::timeout_at(until, futures::future::select_all(self.reading.iter_mut().map(|(h, _)| h))).await;
            let Ok((joined, i, _)) = waited else {
                if !self.active_listed {
                    self.report(
                        "accounts",
                        format!(
                            "active accounts not read yet: the read has taken over {} ms; the built-in schedules wait for it",
                            ACCOUNTS_READ.as_millis()
                        ),
                    );
                }
                return;
            };
            let (_, started) = self.reading.remove(i);
            let read = joined.unwrap_or_else(|e| Err(format!("the read stopped: {e}")));
            let failed = read.is_err();
            if !failed {
                // the one that answered stands; any other still going is dropped
                for (other, _) in self.reading.drain(..) {
                    other.abort();
                }
            }
            self.accounts_read(now, read);
            // A first read that failed, begun by an earlier poll, is made again at once
            // (until one has succeeded the inactive accounts are not known) — within this
            // poll's second, and not one begun by this poll (a refusing database would be
            // asked twice each poll).
            if failed && !self.active_listed && started < began && self.reading.is_empty() {
                self.reading.push(read_now(&source));
            }
        }
    }

    /// What a read of the accounts found (or why it failed).
    fn accounts_read(&mut self, now: DateTime<Utc>, read: Result<Vec<RegisteredAccount>, String>) {
        match read {
            Ok(list) => {
                let (list, inactive): (Vec<RegisteredAccount>, Vec<RegisteredAccount>) = list.into_iter().partition(|a| a.active);
                self.inactive = inactive.into_iter().map(|a| a.account_id).collect();
                if self.active_listed {
                    let before: std::collections::HashSet<&str> = self.active.iter().map(|a| a.account_id.as_str()).collect();
                    let new: Vec<String> = list
                        .iter()
                        .filter(|a| !before.contains(a.account_id.as_str()))
                        .map(|a| a.account_id.clone())
                        .collect();
                    for account in new {
                        self.joined.insert(account, now);
                    }
                }
                let listed: std::collections::HashSet<&str> = list.iter().map(|a| a.account_id.as_str()).collect();
                self.joined.retain(|account, _| listed.contains(account.as_str()));
                self.active = list;
                self.active_listed = true;
                self.active_read_at = Some(tokio::time::Instant::now());
                self.reported.remove("accounts");
            }
            Err(e) => {
                // The last list stands; read again after the refresh period, not every
                // poll (each would wait on the database again) — but until a first read
                // has succeeded, at the next poll.
                if self.active_listed {
                    self.active_read_at = Some(tokio::time::Instant::now());
                }
                self.report("accounts", format!("active accounts unavailable: {e}"));
            }
        }
    }
}

impl AccountSource for crate::db::accounts::AccountRepo {
    fn accounts(&self) -> AccountsFuture<'_> {
        Box::pin(async move {
            let accounts = self.list_all().await.map_err(|e| e.to_string())?;
            Ok(accounts
                .into_iter()
                .map(|a| RegisteredAccount {
                    account_id: a.id.as_str().to_owned(),
                    marketplace_ids: a.marketplace_ids.iter().map(|m| m.as_str().to_owned()).collect(),
                    active: a.active,
                })
                .collect())
        })
    }
}
