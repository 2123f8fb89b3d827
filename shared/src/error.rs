//! Errors a job handler returns. The variant decides the job's fate.
use std::time::Duration;

use crate::job::ErrorClass;

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Worth another attempt after a backoff (5xx, timeouts, resets).
    #[error("transient: {0}")]
    Transient(String),
    /// Upstream asked us to wait: the job is snoozed until then and no attempt is used.
    #[error("rate limited for {retry_after:?}: {reason}")]
    RateLimited { retry_after: Duration, reason: String },
    /// Waits on another run's test of a guard this run needs (its seller's breaker is
    /// half-open and another call's probe is out): parked like `RateLimited`, without
    /// using an attempt, but not counted against the snooze cap, since the wait is on
    /// that probe's answer, not on this job failing.
    #[error("rate limited for {retry_after:?}: {reason}")]
    Held { retry_after: Duration, reason: String },
    /// Retrying cannot help: the job goes to dead at once.
    #[error("permanent: {0}")]
    Permanent(String),
    /// The job was cancelled while it ran.
    #[error("cancelled")]
    Cancelled,
    /// A dependency of ours (the database) cannot be reached now: the run stops and the
    /// job runs again after `retry_after` without using an attempt, as after a Redis
    /// outage, up to the queue's snooze cap.
    #[error("interrupted: {reason}; runs again in {retry_after:?} without using an attempt")]
    Unavailable { retry_after: Duration, reason: String },
    /// The worker is shutting down and the handler stopped between two steps (see
    /// `JobContext::stopping`): the job goes back to the front of its lane at once,
    /// without using an attempt.
    #[error("the worker is stopping: {0}")]
    Stopping(String),
    /// The run worked its turn or its slice and hands the job back between two steps:
    /// it runs again after `retry_after`, continuing where this run stopped, without
    /// using an attempt. Giving way is the dispatcher's doing, not the job's failing, so
    /// it is not counted against the snooze cap.
    #[error("handed back: {reason}")]
    GaveWay { retry_after: Duration, reason: String },
}

impl JobError {
    pub fn transient(msg: impl Into<String>) -> Self {
        JobError::Transient(msg.into())
    }
    pub fn permanent(msg: impl Into<String>) -> Self {
        JobError::Permanent(msg.into())
    }
    pub fn class(&self) -> ErrorClass {
        match self {
            JobError::Transient(_) => ErrorClass::Transient,
            JobError::RateLimited { .. } | JobError::Held { .. } => ErrorClass::RateLimited,
            JobError::Permanent(_) => ErrorClass::Permanent,
            JobError::Cancelled => ErrorClass::Cancelled,
            JobError::Unavailable { .. } | JobError::Stopping(_) | JobError::GaveWay { .. } => ErrorClass::Interrupted,
        }
    }
}
