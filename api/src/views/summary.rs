//! A job as listings show it: everything but the payload, the result and the attempt
//! history, which only `GET /v1/jobs/{id}` returns. A page then costs the same whatever
//! tenants put in their payloads.
use chrono::{DateTime, Utc};
use drover::job::{JobId, JobKind, JobState};
use drover::queue::summary::JobSummary;
use serde::Serialize;
use utoipa::ToSchema;

use super::{kind_schema, state_schema, status_url, ErrorView, ProgressView, WaitingView};

#[derive(Debug, Serialize, ToSchema)]
pub struct JobSummaryView {
    #[schema(value_type = String, example = "cleanup_01J9Z3K4M5N6P7Q8R9S0T1V2W3")]
    pub id: JobId,
    #[schema(schema_with = kind_schema)]
    pub kind: JobKind,
    #[schema(schema_with = state_schema)]
    pub state: JobState,
    pub account_id: Option<String>,
    /// Size of the stored payload; the payload itself is at `status_url`.
    pub payload_bytes: u64,
    pub priority: u8,
    pub attempts: u32,
    pub max_attempts: u32,
    pub timeout_ms: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub run_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub progress: Option<ProgressView>,
    pub last_error: Option<ErrorView>,
    pub trace_id: Option<String>,
    pub cancel_requested: bool,
    /// What made the job: `api`, `schedule:<account>/<name>` (a built-in:
    /// `schedule:builtin.<what>.<account>`), `replay` or `account_created`.
    pub trigger: Option<String>,
    /// Why a job that is neither running nor finished has not started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting: Option<WaitingView>,
    pub status_url: String,
}

impl From<JobSummary> for JobSummaryView {
    fn from(s: JobSummary) -> Self {
        let j = s.job;
        Self {
            status_url: status_url(&j.id),
            id: j.id,
            kind: j.kind,
            state: j.state,
            account_id: j.account_id,
            payload_bytes: s.payload_bytes,
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
            last_error: j.last_error.map(Into::into),
            trace_id: j.trace_id,
            cancel_requested: j.cancel_requested,
            trigger: j.trigger,
            waiting: None,
        }
    }
}

impl JobSummaryView {
    /// The job's wait; a prefetched job has not started (as `JobView::with_waiting`).
    pub fn with_waiting(mut self, waiting: Option<WaitingView>) -> Self {
        if waiting.as_ref().is_some_and(WaitingView::before_start) {
            self.started_at = None;
        }
        self.waiting = waiting;
        self
    }
}

/// One page of jobs, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobPage {
    pub jobs: Vec<JobSummaryView>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}
