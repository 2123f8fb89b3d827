//! The runtime's Prometheus metrics, recorded through the `metrics` facade: a no-op
//! until the process installs a recorder (the real worker does; tests and the API's
//! in-process runtime do not). Labels stay bounded: the job kind and the outcome only.
use std::time::Duration;

use metrics::{counter, gauge, histogram};

use crate::job::JobKind;

/// Runs that ended, by what became of the job.
pub const JOBS_FINISHED: &str = "drover_jobs_finished_total";
/// Wall time of a run, from the handler's start until its outcome is known.
pub const RUN_DURATION: &str = "drover_job_run_duration_seconds";
/// Runs in progress in this process.
pub const JOBS_RUNNING: &str = "drover_jobs_running";
/// Terminal jobs past retention still waiting to be trimmed, as the last trim left them.
pub const TRIM_BACKLOG: &str = "drover_trim_backlog_jobs";

/// What became of the job after one run (the `outcome` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RunFate {
    Succeeded,
    Partial,
    Retried,
    Dead,
    Snoozed,
    Cancelled,
    /// Handed back to the queue by shutdown, without using the attempt.
    Released,
    /// The lease was gone when the outcome was reported: the job was not changed.
    Lost,
}

impl RunFate {
    const ALL: [RunFate; 8] = [
        RunFate::Succeeded,
        RunFate::Partial,
        RunFate::Retried,
        RunFate::Dead,
        RunFate::Snoozed,
        RunFate::Cancelled,
        RunFate::Released,
        RunFate::Lost,
    ];

    fn as_str(self) -> &'static str {
        match self {
            RunFate::Succeeded => "succeeded",
            RunFate::Partial => "partial",
            RunFate::Retried => "retried",
            RunFate::Dead => "dead",
            RunFate::Snoozed => "snoozed",
            RunFate::Cancelled => "cancelled",
            RunFate::Released => "released",
            RunFate::Lost => "lost",
        }
    }
}

/// Every kind's and outcome's [`JOBS_FINISHED`] series, at 0 until counted. A series
/// first served at its first count (1) has no earlier sample for `increase()` to count
/// from, so a new worker's first dead run was lost to the alerts that read it (found by
/// the second round of audits of 2026-12-07).
pub fn declare() {
    for kind in JobKind::ALL {
        for fate in RunFate::ALL {
            counter!(JOBS_FINISHED, "kind" => kind.as_str(), "outcome" => fate.as_str()).increment(0);
        }
    }
}

pub(crate) fn run_finished(kind: JobKind, fate: RunFate, took: Duration) {
    ended_without_running(kind, fate);
    histogram!(RUN_DURATION, "kind" => kind.as_str()).record(took.as_secs_f64());
}

/// A job ended without a run to time (a record that cannot be decoded, dead at once).
pub(crate) fn ended_without_running(kind: JobKind, fate: RunFate) {
    counter!(JOBS_FINISHED, "kind" => kind.as_str(), "outcome" => fate.as_str()).increment(1);
}

pub(crate) fn trim_backlog(kind: JobKind, backlog: u64) {
    gauge!(TRIM_BACKLOG, "kind" => kind.as_str()).set(backlog as f64);
}

/// Counts a run in [`JOBS_RUNNING`] until dropped, so a run whose future is dropped
/// midway is not counted as running forever.
pub(crate) struct Running(JobKind);

impl Running {
    pub(crate) fn start(kind: JobKind) -> Self {
        gauge!(JOBS_RUNNING, "kind" => kind.as_str()).increment(1.0);
        Running(kind)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        gauge!(JOBS_RUNNING, "kind" => self.0.as_str()).decrement(1.0);
    }
}
