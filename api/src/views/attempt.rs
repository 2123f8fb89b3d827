//! One run of a job as `GET /v1/jobs/{id}` shows it: each run that ended, as the queue
//! keeps it, and for a running job the run under way (no end, outcome `running`), so a
//! job's history always says what is happening to it now.
use chrono::{DateTime, Utc};
use drover::job::{AttemptOutcome, AttemptRecord, Job, JobState};
use serde::Serialize;
use utoipa::ToSchema;

use super::ErrorView;

/// One run of a job.
#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptView {
    pub number: u32,
    /// The worker that ran it: shown to keys for every account only (operators).
    pub worker: Option<String>,
    pub started_at: DateTime<Utc>,
    /// Absent while the run is under way.
    pub ended_at: Option<DateTime<Utc>>,
    /// running (the run under way, always the last), succeeded, partial, failed, snoozed,
    /// cancelled, lost, released.
    #[schema(value_type = String)]
    pub outcome: RunOutcome,
    pub error: Option<ErrorView>,
    pub trace_id: Option<String>,
    /// The worker had lost its lease when it reported: the result was not applied.
    pub late: bool,
}

/// What a run came to, or that it is still under way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum RunOutcome {
    Ended(AttemptOutcome),
    Running(Running),
}

/// `"running"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Running {
    Running,
}

impl From<AttemptRecord> for AttemptView {
    fn from(a: AttemptRecord) -> Self {
        Self {
            number: a.number,
            worker: Some(a.worker),
            started_at: a.started_at,
            ended_at: Some(a.ended_at),
            outcome: RunOutcome::Ended(a.outcome),
            error: a.error.map(Into::into),
            trace_id: a.trace_id,
            late: a.late,
        }
    }
}

/// The job's runs in order: those that ended, then the one under way while it runs (its
/// number, worker and start are the lease's).
pub fn history(job: &mut Job) -> Vec<AttemptView> {
    let mut runs: Vec<AttemptView> = std::mem::take(&mut job.attempt_history).into_iter().map(Into::into).collect();
    if job.state == JobState::Running {
        if let Some(started_at) = job.started_at {
            runs.push(AttemptView {
                number: job.attempts,
                worker: job.worker.clone(),
                started_at,
                ended_at: None,
                outcome: RunOutcome::Running(Running::Running),
                error: None,
                trace_id: job.trace_id.clone(),
                late: false,
            });
        }
    }
    runs
}
