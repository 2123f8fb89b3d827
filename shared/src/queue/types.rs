//! What goes into and comes out of the queue: new jobs, leases, settlements, errors.
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::job::{ErrorInfo, JobId, JobKind, JobPayload, JobState};

/// Everything a caller may say about a job it enqueues.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub payload: JobPayload,
    pub run_at: Option<DateTime<Utc>>,
    pub delay: Option<Duration>,
    /// 0..=9, higher runs first.
    pub priority: u8,
    pub max_attempts: Option<u32>,
    pub timeout: Option<Duration>,
    pub idempotency_key: Option<String>,
    pub traceparent: Option<String>,
    /// What made the job: `api`, `schedule:<name>`, `replay`, `account_created`.
    pub trigger: Option<String>,
    /// Called when the job ends (docs/architecture.md, "Completion callbacks").
    pub callback: Option<super::NewCallback>,
    /// The answer says why the job waits ([`Enqueued::waiting`]), read in the same call
    /// (a submit's answer); off, the enqueue does no more than store the job.
    pub answer_waiting: bool,
}

impl NewJob {
    pub fn new(payload: JobPayload) -> Self {
        Self {
            payload,
            run_at: None,
            delay: None,
            priority: 0,
            max_attempts: None,
            timeout: None,
            idempotency_key: None,
            traceparent: None,
            trigger: None,
            callback: None,
            answer_waiting: false,
        }
    }
    pub fn delay(mut self, d: Duration) -> Self {
        self.delay = Some(d);
        self
    }
    pub fn run_at(mut self, at: DateTime<Utc>) -> Self {
        self.run_at = Some(at);
        self
    }
    pub fn priority(mut self, p: u8) -> Self {
        self.priority = p;
        self
    }
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = Some(n);
        self
    }
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = Some(t);
        self
    }
    pub fn idempotency_key(mut self, k: impl Into<String>) -> Self {
        self.idempotency_key = Some(k.into());
        self
    }
    pub fn traceparent(mut self, tp: impl Into<String>) -> Self {
        self.traceparent = Some(tp.into());
        self
    }
    pub fn trigger(mut self, t: impl Into<String>) -> Self {
        self.trigger = Some(t.into());
        self
    }
    pub fn callback(mut self, c: super::NewCallback) -> Self {
        self.callback = Some(c);
        self
    }
    pub fn answering_waiting(mut self) -> Self {
        self.answer_waiting = true;
        self
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enqueued {
    pub id: JobId,
    pub state: JobState,
    /// False when an existing job was returned (idempotent replay, or the account
    /// already has a sync queued, running or parked by the marketplace's limits).
    pub created: bool,
    /// Why the job waits, as the queue sees it, when [`NewJob::answer_waiting`] asked
    /// (`None` otherwise, or when the job is running or finished).
    pub waiting: Option<super::Waiting>,
}

#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    #[error("idempotency key already used with another request (job {existing})")]
    IdempotencyConflict { existing: JobId },
    #[error("invalid job: {0}")]
    Invalid(String),
    /// The job's account already keeps [`JobDefaults::max_unfinished_per_account`] jobs of
    /// its kind that have not ended (`unfinished` of them): nothing was written.
    #[error("the account already has {unfinished} unfinished jobs of this kind, the most it may keep")]
    AccountFull { unfinished: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The queue could not be reached or answered something this version cannot read.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("unexpected reply from the queue: {0}")]
    Protocol(String),
    /// The store cannot be used as configured (a bad Redis URL, a partition count that
    /// differs from the one recorded in Redis): retrying does not help.
    #[error("{0}")]
    Setup(String),
    /// The write was applied but did not reach `queue.durability` in time; it stays
    /// applied, so the caller retries the same request (same idempotency key) or, for a
    /// settle, sends it again with its wait (`settle.lua` records a run once).
    #[error(transparent)]
    NotDurable(#[from] super::durability::NotDurable),
    /// Redis cannot provide the configured `queue.durability` (too old, AOF off): nothing
    /// was written. The message names what was found.
    #[error("{0}")]
    DurabilityUnsupported(String),
}

impl StoreError {
    /// The same error again, for each of several callers one call failed for.
    pub fn duplicate(&self) -> Self {
        match self {
            Self::Redis(e) => Self::Redis(e.clone()),
            Self::Protocol(m) => Self::Protocol(m.clone()),
            Self::Setup(m) => Self::Setup(m.clone()),
            Self::NotDurable(n) => Self::NotDurable(n.clone()),
            Self::DurabilityUnsupported(m) => Self::DurabilityUnsupported(m.clone()),
        }
    }

    /// Redis is at its memory limit (`maxmemory`) and refused a write before it ran.
    pub fn is_out_of_memory(&self) -> bool {
        let Self::Redis(e) = self else { return false };
        // a pipeline's refusal carries its commands' errors
        e.code() == Some("OOM")
            || e.clone()
                .into_server_errors()
                .is_some_and(|errs| errs.iter().any(|(_, s)| s.code() == "OOM"))
    }

    /// Redis did not answer in time (the connection may have gone silent).
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Redis(e) if e.is_timeout())
    }

    /// Redis was out of reach or could not serve for now (a connection refused, dropped or
    /// silent, a cluster or replica in the middle of a change, a server loading its data,
    /// busy with a script, or at its memory limit): the same call may succeed later.
    /// Anything else (a script's error, a reply this release cannot read) would fail again.
    pub fn is_outage(&self) -> bool {
        let Self::Redis(e) = self else { return false };
        e.is_io_error()
            || e.is_connection_refusal()
            || e.is_connection_dropped()
            || e.is_timeout()
            || e.is_cluster_error()
            || self.is_out_of_memory()
            || matches!(
                e.code(),
                Some("TRYAGAIN" | "CLUSTERDOWN" | "LOADING" | "READONLY" | "BUSY" | "MASTERDOWN" | "NOREPLICAS")
            )
    }
}

/// A job leased to a worker.
#[derive(Debug, Clone)]
pub struct Leased {
    pub id: JobId,
    /// Proves the lease in every later call; unique per run.
    pub token: String,
    /// The run number (1-based) this lease is for.
    pub attempt: u32,
    pub max_attempts: u32,
    /// The attempts each life of a replayed job has (the `max_attempts` it was enqueued
    /// with); `None` until its first replay.
    pub budget: Option<u32>,
    pub started_at: DateTime<Utc>,
    pub timeout: Duration,
    pub traceparent: Option<String>,
    /// The typed payload, or why it could not be decoded.
    pub payload: Result<JobPayload, String>,
}

impl Leased {
    /// This run's number within the job's current life, and that life's attempts. A
    /// replay gives a job a fresh budget on top of the runs it has had (run numbers go
    /// on), so its failures back off as a new job's would, from the first step.
    pub fn life(&self) -> (u32, u32) {
        match self.budget {
            Some(budget) => {
                let before = self.max_attempts.saturating_sub(budget);
                (self.attempt.saturating_sub(before), budget.min(self.max_attempts))
            }
            None => (self.attempt, self.max_attempts),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Fetched {
    pub jobs: Vec<Leased>,
    /// How long until the next scheduled job falls due or lease expires.
    pub next_due: Option<Duration>,
    /// An unpartitioned queue gave fewer jobs than wanted: nothing more can be leased
    /// now, so the fetcher waits for a wake-up or `next_due` instead of asking again at
    /// once (partitioned, never set: the next call plans the partitions' visits).
    pub drained: bool,
}

/// What to do with a finished run.
#[derive(Debug, Clone, PartialEq)]
pub enum SettleAction {
    Succeeded(serde_json::Value),
    Partial(serde_json::Value),
    /// Run again after `delay`; the attempt is used.
    Retry {
        delay: Duration,
        error: ErrorInfo,
    },
    /// Run again after `delay`; the attempt is given back. Counted against
    /// `max_snoozes`: from one again when the run `advanced` (did some of its work).
    Snooze {
        delay: Duration,
        error: ErrorInfo,
        advanced: bool,
    },
    Dead(ErrorInfo),
    Cancelled(ErrorInfo),
    /// Back to queued without using the attempt (shutdown, or leased but never started).
    Release,
    /// Run again after `delay`, the attempt given back, like a snooze, but not counted
    /// against `max_snoozes`: the run gave its turn or its slice away.
    GaveWay {
        delay: Duration,
        error: ErrorInfo,
    },
    /// A snooze (parked by its error, the attempt given back) that leaves the job's count
    /// of snoozes as it was: the run waited on another run's probe of its seller's
    /// breaker, not on a failure of its own.
    Held {
        delay: Duration,
        error: ErrorInfo,
    },
}

impl SettleAction {
    /// Whether the job ends here (succeeded, partial, dead, cancelled).
    pub fn is_terminal(&self) -> bool {
        matches!(self, Self::Succeeded(_) | Self::Partial(_) | Self::Dead(_) | Self::Cancelled(_))
    }

    /// Whether the settle must be as durable as configured before it is reported done:
    /// a loss would cost the job. A terminal outcome ends it; a release or a snooze gives
    /// its attempt back, and one a failover forgot leaves the job running with the
    /// attempt counted, reclaimed as a crash (on its last attempt, dead). A retry uses
    /// the attempt either way, and a forgotten one is reclaimed after its lease.
    pub fn must_be_durable(&self) -> bool {
        !matches!(self, Self::Retry { .. })
    }
}

#[derive(Debug, Clone)]
pub struct Settlement {
    pub id: JobId,
    pub token: String,
    pub action: SettleAction,
    /// The attempt record to keep, unless the run never started.
    pub attempt: Option<crate::job::AttemptRecord>,
}

impl Settlement {
    /// Back to the queue without using the attempt (the run never started, or was
    /// stopped by shutdown or a lost lease before it could finish).
    pub fn release(leased: &Leased) -> Self {
        Self {
            id: leased.id.clone(),
            token: leased.token.clone(),
            action: SettleAction::Release,
            attempt: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettleResult {
    Applied,
    /// Applied, and the job ended otherwise than asked: cancelled (a cancel was pending)
    /// or dead (a snooze past `max_snoozes`).
    AppliedAs(JobState),
    /// The lease was gone: the outcome was recorded as late and nothing else changed.
    LeaseLost,
    /// The job's record was gone (purged, or Redis emptied): nothing was written.
    RecordGone,
    /// Written, but its queue (its shard) did not acknowledge it as durably as
    /// `queue.durability` asks in time: send it again (with its wait) until the wait
    /// passes — `settle.lua` finds the run it recorded and writes nothing twice, and after
    /// a failover it writes the outcome the promoted replica lacked.
    NotDurable,
    /// Not written: its queue could not be reached while others in the same call were.
    /// Send it again.
    Unreached,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseReport {
    pub lost: Vec<JobId>,
    pub cancel_requested: Vec<JobId>,
    /// Not renewed: their queue (their shard) could not be reached while others were.
    pub unreached: Vec<JobId>,
    /// Some queue did not answer in time (not refused): its connection may have gone
    /// silent, which only dialling afresh cures.
    pub silent: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelOutcome {
    NotFound,
    /// It was queued or scheduled and is now cancelled.
    Cancelled,
    /// It is running; its handler is told to stop.
    Requested,
    AlreadyTerminal(JobState),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryOutcome {
    NotFound,
    Queued,
    /// Only dead, cancelled and partial jobs can be retried.
    WrongState(JobState),
    /// Another sync of the same account is queued or running.
    AccountBusy(JobId),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQuery {
    pub kinds: Vec<JobKind>,
    pub state: Option<JobState>,
    pub account_id: Option<String>,
    /// Only the dead jobs of this error signature (a dead-letter group of the one kind
    /// in `kinds`).
    pub group: Option<String>,
    /// Only jobs whose last error has this class (`permanent`, `rate_limited`, ...).
    pub error_class: Option<String>,
    pub limit: usize,
    pub cursor: Option<Cursor>,
}

/// Where a page ended: the sort score and id of the last job seen, per kind and partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Cursor {
    /// (kind, partition, score, id) of the last entry seen in each queue's index; a
    /// queue that is exhausted is absent.
    pub positions: Vec<(JobKind, Option<u16>, String, String)>,
    /// The queues of a scoped dead-letter group listing whose positions are in the
    /// account's index of all its jobs rather than its own index of the group (that one
    /// was not whole when the listing began): the listing keeps to the index it began on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub by_account: Vec<(JobKind, Option<u16>)>,
}

#[derive(Debug, Clone, Default)]
pub struct Page {
    pub jobs: Vec<crate::job::Job>,
    pub next: Option<Cursor>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueCounts {
    pub scheduled: u64,
    pub queued: u64,
    pub running: u64,
    pub retrying: u64,
    pub succeeded: u64,
    pub partial: u64,
    pub dead: u64,
    pub cancelled: u64,
    pub paused: bool,
    /// Leased by a worker that has not started them yet (its prefetch): counted in
    /// neither `queued` nor `running`.
    pub prefetched: u64,
    /// How long the oldest job not yet started has waited, in ms (queued, or waiting
    /// in a worker's prefetch).
    pub lag_ms: u64,
    /// Each partition's `lag_ms`, in partition order (one entry per partition; filled by
    /// the store's counts, not added up by [`QueueCounts::add`]).
    pub lag_ms_by_partition: Vec<u64>,
    /// Jobs completed successfully since the queue was created.
    pub succeeded_total: u64,
    /// The jobs not running, by what they wait for.
    pub waiting: super::WaitingCounts,
    /// Reclaims, late results and parks since the queue was created.
    pub events: super::QueueEvents,
}

/// What one trim call did: jobs removed, and jobs still due for removal when it
/// stopped at its time budget (the backlog).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Trimmed {
    pub removed: u64,
    pub backlog: u64,
}

/// `max_unfinished_per_account` as the API and the workers' scheduler set it unless told
/// otherwise, and the most either may be set to.
pub const DEFAULT_MAX_UNFINISHED_PER_ACCOUNT: u64 = 10_000;
pub const MAX_MAX_UNFINISHED_PER_ACCOUNT: u64 = 100_000_000;

/// Job defaults applied at enqueue when a request leaves them out, and the queue
/// policies the store applies for every caller.
#[derive(Debug, Clone)]
pub struct JobDefaults {
    pub max_attempts: u32,
    pub timeout: Duration,
    pub idempotency_ttl: Duration,
    /// Runs one account may have at once, per kind (by [`JobKind::index`]); 0 = no cap.
    /// Held in Redis across every worker process (docs/architecture.md, "Dispatch").
    pub per_account: [u32; 3],
    /// Snoozes in a row a job may take without advancing before it is dead-lettered (a
    /// snooze of a run that advanced counts from one again).
    pub max_snoozes: u32,
    /// Dead jobs are kept this long, and at most `dead_max` of them per kind.
    pub dead_retention: Duration,
    pub dead_max: u64,
    /// The fetching worker marks each run started ([`super::JobStore::mark_started`]),
    /// so a lease it never started is handed back without using an attempt if it dies.
    pub reports_starts: bool,
    /// How many partitions each kind's queue has (`queue.partitions`).
    pub partitions: super::Partitions,
    /// What a write (enqueue, terminal settle) must reach before it is reported done.
    pub durability: super::Durability,
    /// The hot scripts declare every key they touch even where no slot can move
    /// (`queue.declare_every_key`; always on a Redis Cluster).
    pub declare_every_key: bool,
    /// Most jobs of one kind an account may keep unfinished (queued, scheduled, running,
    /// retrying): an enqueue past it is refused, [`EnqueueError::AccountFull`]; 0 = no
    /// cap (docs/architecture.md, "Per-account counts").
    pub max_unfinished_per_account: u64,
}

impl JobDefaults {
    /// The defaults a store feeding the worker runtime uses: the runtime reports starts.
    pub fn for_runtime() -> Self {
        Self {
            reports_starts: true,
            ..Self::default()
        }
    }
}

impl Default for JobDefaults {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            timeout: Duration::from_secs(30 * 60),
            idempotency_ttl: Duration::from_secs(24 * 3600),
            per_account: [0; 3],
            max_snoozes: 1000,
            dead_retention: Duration::from_secs(30 * 24 * 3600),
            dead_max: 10_000,
            reports_starts: false,
            partitions: super::Partitions::default(),
            durability: super::Durability::default(),
            declare_every_key: false,
            max_unfinished_per_account: 0,
        }
    }
}
