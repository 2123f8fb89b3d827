//! What the API speaks: request and response bodies, documented for OpenAPI. Response
//! views are built from the queue's records, so what is documented is what is sent.
use chrono::{DateTime, Utc};
use drover::job::{ErrorClass, ErrorInfo, Job, JobId, JobKind, JobState, PreviousEnding, Progress};
use drover::queue::{WaitReason, Waiting};
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::Object;
use utoipa::ToSchema;

mod account_counts;
mod attempt;
mod callback;
mod summary;
pub use account_counts::{AccountJobCounts, AccountKindCounts};
pub use attempt::AttemptView;
pub use callback::{CallbackView, DeliveryView};
pub use summary::{JobPage, JobSummaryView};

/// `JobKind` as an OpenAPI enum, from the one list the code uses.
pub fn kind_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(JobKind::ALL.iter().map(|k| k.as_str())))
        .build()
}

/// `JobState` as an OpenAPI enum.
pub fn state_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(JobState::ALL.iter().map(|s| s.as_str())))
        .build()
}

pub fn status_url(id: &JobId) -> String {
    format!("/v1/jobs/{id}")
}

/// `POST /v1/jobs`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitJob {
    #[schema(schema_with = kind_schema)]
    pub kind: JobKind,
    /// The kind's payload: see `SyncPayload`, `BackfillPayload`, `CleanupPayload`.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    /// Run no earlier than this; at most one of `run_at` and `delay_ms`.
    #[serde(default)]
    pub run_at: Option<DateTime<Utc>>,
    /// Run no earlier than this many ms from now (at most one year).
    #[serde(default)]
    #[schema(minimum = 0)]
    pub delay_ms: Option<u64>,
    /// 1 to 100; the configured default when left out.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 100)]
    pub max_attempts: Option<u32>,
    /// 0 to 9; 0 when left out. Within the account, higher runs first; across accounts,
    /// an account whose best queued job has priority p gets p + 1 turns to a priority-0
    /// account's one.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 9)]
    pub priority: Option<u8>,
    /// How long one run may take, 1 s to 24 h.
    #[serde(default)]
    #[schema(minimum = 1000, maximum = 86400000)]
    pub timeout_ms: Option<u64>,
    /// Called (POST, signed) when the job ends: succeeded, partial, dead or cancelled.
    /// An absolute https URL on one of the API key's `callback_hosts`, at most 2048
    /// characters, no user name or password (docs/callbacks.md).
    #[serde(default)]
    #[schema(max_length = 2048, example = "https://hooks.example.com/drover")]
    pub callback_url: Option<String>,
}

/// Where an accepted job is.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Accepted {
    #[schema(value_type = String, example = "cleanup_01J9Z3K4M5N6P7Q8R9S0T1V2W3")]
    pub id: JobId,
    #[schema(schema_with = state_schema)]
    pub state: JobState,
    /// Relative URL of the job (also in `Location`).
    pub status_url: String,
    /// Why the job is not running yet, as `GET /v1/jobs/{id}` says (e.g. `quota_cooldown`
    /// with its end when the account's report quota is cooling down); absent when it
    /// already runs or has ended, or where it is not computed (retry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<WaitingView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProgressView {
    pub done: u64,
    pub total: Option<u64>,
    pub message: Option<String>,
}

impl From<Progress> for ProgressView {
    fn from(p: Progress) -> Self {
        Self {
            done: p.done,
            total: p.total,
            message: p.message,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorView {
    /// transient, rate_limited, permanent, cancelled, timeout, panic, decode, lost, interrupted.
    #[schema(value_type = String)]
    pub class: ErrorClass,
    pub message: String,
}

impl From<ErrorInfo> for ErrorView {
    fn from(e: ErrorInfo) -> Self {
        Self {
            class: e.class,
            message: e.message,
        }
    }
}

/// A job as the queue knows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobView {
    #[schema(value_type = String, example = "cleanup_01J9Z3K4M5N6P7Q8R9S0T1V2W3")]
    pub id: JobId,
    #[schema(schema_with = kind_schema)]
    pub kind: JobKind,
    #[schema(schema_with = state_schema)]
    pub state: JobState,
    /// As submitted (only here: listings show `payload_bytes` instead).
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    pub account_id: Option<String>,
    pub priority: u8,
    /// Attempts used so far, across replays (run numbers go on after a retry).
    pub attempts: u32,
    /// Attempts it may use in all: its budget, plus the budget again at each replay.
    pub max_attempts: u32,
    pub timeout_ms: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub run_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub progress: Option<ProgressView>,
    /// The handler's result summary, once the job has ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub result: Option<serde_json::Value>,
    pub last_error: Option<ErrorView>,
    /// W3C trace id, to find the job's trace.
    pub trace_id: Option<String>,
    pub traceparent: Option<String>,
    /// The worker running it (or holding it leased ahead of a free slot); empty once the
    /// run has ended (the attempt history names each run's worker). Shown to keys for
    /// every account only.
    pub worker: Option<String>,
    pub cancel_requested: bool,
    /// What made the job: `api`, `schedule:<account>/<name>` (a built-in:
    /// `schedule:builtin.<what>.<account>`), `replay` or `account_created`.
    pub trigger: Option<String>,
    /// Its runs in order, the one under way last while the job runs: the newest 50 are
    /// kept (`attempts` counts on past them). Only in `GET /v1/jobs/{id}`; empty in
    /// listings.
    pub attempt_history: Vec<AttemptView>,
    /// Why a job that is neither running nor finished has not started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting: Option<WaitingView>,
    /// The completion callback and its delivery history (only in `GET /v1/jobs/{id}`;
    /// absent when the job has none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callback: Option<CallbackView>,
    /// How its previous life ended, once it was replayed (the latest replay's; only in
    /// `GET /v1/jobs/{id}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_ending: Option<PreviousEndingView>,
    pub status_url: String,
}

/// How a replayed job's previous life ended: a replay starts a fresh life (no error, end
/// time or result), so its ending, error and what made it are kept here.
#[derive(Debug, Serialize, ToSchema)]
pub struct PreviousEndingView {
    /// dead, cancelled or partial.
    #[schema(schema_with = state_schema)]
    pub state: JobState,
    pub finished_at: Option<DateTime<Utc>>,
    pub error: Option<ErrorView>,
    /// What made that life.
    pub trigger: Option<String>,
}

impl From<PreviousEnding> for PreviousEndingView {
    fn from(p: PreviousEnding) -> Self {
        Self {
            state: p.state,
            finished_at: p.finished_at,
            error: p.error.map(Into::into),
            trigger: p.trigger,
        }
    }
}

/// What a waiting job waits for.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WaitingView {
    /// scheduled, retry_backoff, rate_limit, quota_cooldown, breaker_open,
    /// account_busy, queue_paused, no_worker (no live worker has served the kind's
    /// queue for 15 s), restart_hold (Redis restarted: nothing is leased for a lease and
    /// a second), queued or prefetched (leased by a worker, not yet started). A job of a kind the account's quota cooldown stops (backfill) waits
    /// for `quota_cooldown` while it lasts; a job whose seller's circuit breaker of an
    /// operation its kind calls is open waits for `breaker_open`, and a queued one whose
    /// seller's next slot of such an operation is over a second off (after a 429) for
    /// `rate_limit`, each until it ends.
    #[schema(value_type = String, example = "account_busy")]
    pub reason: WaitReason,
    /// When the wait ends, where known.
    pub until: Option<DateTime<Utc>>,
    /// The park's operation and message; the account's cap and the runs holding it; a
    /// queued job's place in line (a key limited to accounts: only `ahead_in_account`); an account cooldown's cause, level, start, the
    /// operations it refuses and what the job waits for after it (`then`); an open breaker's or
    /// the seller's rate's operation, message and `then`; a wait with an
    /// end, what comes after it (`then`: queue_paused, no_worker, or queued once it has
    /// ended and the job joins its lane next).
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

impl From<Waiting> for WaitingView {
    fn from(w: Waiting) -> Self {
        Self {
            reason: w.reason,
            until: w.until,
            detail: w.detail,
        }
    }
}

impl WaitingView {
    /// The job is leased but its run never started: leased ahead (`prefetched`), or by a
    /// worker that died before starting it (`no_worker` with `unstarted`).
    pub fn before_start(&self) -> bool {
        self.reason == WaitReason::Prefetched || self.detail["unstarted"] == true
    }

    /// What the caller may see: all of it for an operator's key; for a key limited to
    /// accounts (`tenant`), of a queued job's place in line only its own account's part
    /// (the estimate counts other accounts' queued work), and of a prefetched one not the
    /// worker (a host name and pid). Other details are the account's own (its cap and
    /// runs, its cooldown, its job's park).
    pub fn seen_by(mut self, tenant: bool) -> Self {
        if !tenant {
            return self;
        }
        match self.reason {
            WaitReason::Queued => {
                let ahead = self.detail.get("ahead_in_account").cloned().unwrap_or(serde_json::Value::Null);
                self.detail = serde_json::json!({ "ahead_in_account": ahead });
            }
            // (when Redis restarted, when a worker last served the queue: the queue's
            // own state, not the account's)
            WaitReason::Prefetched | WaitReason::NoWorker | WaitReason::RestartHold => self.detail = serde_json::json!({}),
            _ => {
                if let Some(d) = self.detail.as_object_mut() {
                    d.remove("last_served_ms");
                }
            }
        }
        self
    }
}

impl JobView {
    /// The job's wait. A job leased into a worker's prefetch (`prefetched`) has not
    /// started: the lease's time is no start and no run of its history is under way.
    pub fn with_waiting(mut self, waiting: Option<WaitingView>) -> Self {
        if waiting.as_ref().is_some_and(WaitingView::before_start) {
            self.started_at = None;
            self.attempt_history.retain(|a| a.ended_at.is_some());
        }
        self.waiting = waiting;
        self
    }

    /// Drop worker names (host names and pids, internal) for a tenant's key.
    /// The job's callback as `caller` may see it ([`CallbackView::seen_by`]).
    pub fn callback_seen_by(mut self, caller: &crate::auth::Principal) -> Self {
        self.callback = self.callback.map(|c| c.seen_by(caller));
        self
    }

    pub fn without_workers(mut self) -> Self {
        self.worker = None;
        for a in &mut self.attempt_history {
            a.worker = None;
        }
        self
    }
}

impl From<Job> for JobView {
    fn from(mut j: Job) -> Self {
        let attempt_history = attempt::history(&mut j);
        Self {
            status_url: status_url(&j.id),
            id: j.id,
            kind: j.kind,
            state: j.state,
            payload: j.payload,
            account_id: j.account_id,
            priority: j.priority,
            attempts: j.attempts,
            max_attempts: j.max_attempts,
            timeout_ms: j.timeout_ms,
            created_at: j.created_at,
            updated_at: j.updated_at,
            run_at: j.run_at,
            started_at: j.started_at,
            finished_at: j.finished_at,
            progress: j.progress.map(Into::into),
            result: j.result,
            last_error: j.last_error.map(Into::into),
            trace_id: j.trace_id,
            traceparent: j.traceparent,
            // Only while a run holds it: the record keeps the last run's worker (its short
            // success record is read from it), which the history names (found by the API
            // audit of 2026-12-07, second: ended jobs showed it, against this field's word).
            worker: j.worker.filter(|_| j.state == JobState::Running),
            cancel_requested: j.cancel_requested,
            trigger: j.trigger,
            attempt_history,
            waiting: None,
            callback: j.callback.map(Into::into),
            previous_ending: j.previous_ending.map(Into::into),
        }
    }
}

/// What a cancel did.
#[derive(Debug, Serialize, ToSchema)]
pub struct Cancelled {
    #[schema(value_type = String)]
    pub id: JobId,
    #[schema(schema_with = state_schema)]
    pub state: JobState,
    /// True when the job is running and its handler has been told to stop.
    pub cancel_requested: bool,
}

/// `POST /v1/dead-letter/replay`: either `ids`, or a `filter` with a `limit`.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// Up to 1000 dead job ids.
    #[serde(default)]
    pub ids: Option<Vec<String>>,
    #[serde(default)]
    pub filter: Option<ReplayFilter>,
    /// With `filter`: most jobs to replay, 1 to 1000 (default 100).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayFilter {
    #[serde(default)]
    #[schema(schema_with = kind_schema)]
    pub kind: Option<JobKind>,
    #[serde(default)]
    pub account_id: Option<String>,
    /// The class of the job's last error, e.g. `permanent`.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub error_class: Option<ErrorClass>,
    /// One dead-letter group: its `id` from `GET /v1/dead-letter/groups`.
    #[serde(default)]
    pub group: Option<String>,
    /// Only jobs that died at or before this time (RFC 3339): the selection as it was
    /// counted then, not the jobs that died since (the console's confirm step sends it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_before: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Skipped {
    pub id: String,
    pub reason: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReplayResult {
    /// Ids put back in the queue.
    pub replayed: Vec<String>,
    pub skipped: Vec<Skipped>,
    /// A filter's walk stopped at its bound (3 pages of at most 4,000 index entries)
    /// before the end of the selection: more may match. Send the request again.
    pub stopped_at_scan_limit: bool,
    /// Present when the action stopped at an error part-way: what is listed above was
    /// done, the rest of the selection was not tried. Send the request again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped: Option<StoppedEarly>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DiscardResult {
    /// Ids deleted for good.
    pub discarded: Vec<String>,
    pub skipped: Vec<Skipped>,
    /// As for a replay: the walk stopped at its bound before the selection's end.
    pub stopped_at_scan_limit: bool,
    /// As for a replay: the action stopped at an error after doing what is listed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped: Option<StoppedEarly>,
}

/// What stopped a dead-letter action part-way: the problem the request would have
/// answered had nothing been done yet.
#[derive(Debug, Serialize, ToSchema)]
pub struct StoppedEarly {
    /// The problem's `type`, e.g. `urn:drover:problem:unavailable`.
    #[serde(rename = "type")]
    pub kind: String,
    pub detail: String,
    /// The error itself, for the console (never sent).
    #[serde(skip)]
    #[schema(ignore)]
    pub(crate) error: Option<crate::error::ApiError>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StateCounts {
    pub scheduled: u64,
    pub queued: u64,
    /// Runs whose handler has started.
    pub running: u64,
    /// Leased by a worker ahead of a free slot, not started yet.
    pub prefetched: u64,
    pub retrying: u64,
    pub succeeded: u64,
    pub partial: u64,
    pub dead: u64,
    pub cancelled: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct QueueView {
    #[schema(schema_with = kind_schema)]
    pub kind: JobKind,
    pub counts: StateCounts,
    pub paused: bool,
    /// How long the oldest job not yet started (queued or prefetched) has waited.
    pub lag_ms: u64,
    /// Jobs succeeded since the queue was created.
    pub succeeded_total: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Queues {
    pub queues: Vec<QueueView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PauseState {
    #[schema(schema_with = kind_schema)]
    pub kind: JobKind,
    pub paused: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok` (liveness) or `ready` (readiness).
    pub status: String,
}

/// One server-sent event of `GET /v1/jobs/{id}/events`.
#[derive(Debug, Serialize, ToSchema)]
#[allow(dead_code)] // documents the events axum's `Sse` writes
pub struct JobEvent {
    /// `state` (data: `{id, state, attempts, cancel_requested, updated_at, last_error}`), `progress`
    /// (data: `{id, done, total, message}`) or `waiting` (data: `{id, state, waiting:
    /// {reason, until, detail}}`, sent while the job waits, when the reason or its end
    /// changes).
    #[schema(example = "state")]
    event: String,
    /// Sequence number within the stream.
    id: String,
    /// The event's JSON document, as text.
    data: String,
}
