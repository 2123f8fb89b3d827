//! What a job handler gets and gives back: its context for the run, its outcome, the trait.
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::contention::{KindContention, RunTurn};
use super::leases::Held;
use super::outrank::KindRuns;
use crate::data::run_fence::RunFence;
use crate::error::JobError;
use crate::job::{JobId, JobPayload, Progress};
use crate::queue::{JobStore, Leased};

/// How a run that did not fail ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Succeeded(serde_json::Value),
    /// Some items failed; the result says which.
    Partial(serde_json::Value),
}

type ProgressFn = Arc<dyn Fn(Progress) -> Pin<Box<dyn Future<Output = bool> + Send>> + Send + Sync>;

/// What a handler knows about the run it is doing.
#[derive(Clone)]
pub struct JobContext {
    pub id: JobId,
    /// 1-based run number.
    pub attempt: u32,
    pub max_attempts: u32,
    /// This run's number for fencing its writes (`data::run_fence`): when it was leased,
    /// in ms by the queue's clock, so a later run of the job has a larger one (an
    /// attempt number does not: a run handed back uses no attempt).
    pub run: i64,
    pub traceparent: Option<String>,
    /// Fires when the job is cancelled (from any process) or the worker must stop.
    pub cancel: CancellationToken,
    /// Fires when the worker begins to shut down. A handler that works in steps may
    /// return [`JobError::Stopping`] between two of them: the job goes back to the
    /// queue at once without using an attempt, instead of running on into the grace
    /// period and being cut off mid-step.
    pub stopping: CancellationToken,
    /// This run's part in how many jobs of its kind wait for a slot of this process
    /// (`contention.rs`).
    turn: Arc<RunTurn>,
    progress: ProgressFn,
    /// Set once the run has done some of its work ([`Self::advanced`]).
    advanced: Arc<AtomicBool>,
}

impl std::fmt::Debug for JobContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobContext")
            .field("id", &self.id)
            .field("attempt", &self.attempt)
            .field("run", &self.run)
            .finish_non_exhaustive()
    }
}

impl JobContext {
    pub(crate) fn new<S: JobStore>(
        store: S,
        leased: &Leased,
        held: &Held,
        stopping: CancellationToken,
        (waiting, runs): (Arc<KindContention>, Arc<KindRuns>),
    ) -> Self {
        let id = leased.id.clone();
        let token = leased.token.clone();
        let pid = id.clone();
        let lease = held.clone();
        let progress: ProgressFn = Arc::new(move |p: Progress| {
            let store = store.clone();
            let id = pid.clone();
            let token = token.clone();
            let lease = lease.clone();
            Box::pin(async move {
                match store.set_progress(&id, &token, &p).await {
                    // Another run holds the job: the lease is gone, and the run ends as
                    // one that lost it, not as a cancelled one (found by the chaos audit
                    // of 2026-12-07, second: its history said "cancelled").
                    Ok(false) => {
                        lease.mark_lost();
                        false
                    }
                    Ok(held) => held,
                    Err(e) => {
                        tracing::warn!(job_id = %id, error = %e, "could not record progress");
                        true
                    }
                }
            })
        });
        Self {
            id,
            attempt: leased.attempt,
            max_attempts: leased.max_attempts,
            run: leased.started_at.timestamp_millis(),
            traceparent: leased.traceparent.clone(),
            cancel: held.cancel.clone(),
            stopping,
            turn: Arc::new(RunTurn::new(waiting, runs)),
            progress,
            advanced: Arc::default(),
        }
    }

    /// Record progress. Returns `Err(Cancelled)` when the job was cancelled or this
    /// worker no longer holds it, so a handler can `?` out between steps.
    pub async fn progress(&self, progress: Progress) -> Result<(), JobError> {
        if self.cancel.is_cancelled() {
            return Err(JobError::Cancelled);
        }
        if (self.progress)(progress).await {
            Ok(())
        } else {
            self.cancel.cancel();
            Err(JobError::Cancelled)
        }
    }

    /// Note that this run has done some of its work (a page written, an item settled for
    /// good — not one that failed for now and will be tried again). A run that advanced and then parks (a snooze: a
    /// limiter's slot far away, a cooldown) starts its job's count of snoozes afresh, so a
    /// job that parks between steps while it works through them at its seller's allowed
    /// rate never reaches the snooze cap (`max_snoozes`), which ends only jobs that park
    /// again and again without advancing.
    pub fn advanced(&self) {
        self.advanced.store(true, Ordering::Relaxed);
    }

    /// Whether this run has advanced (see [`Self::advanced`]), read once it has ended.
    pub(crate) fn advanced_flag(&self) -> Arc<AtomicBool> {
        self.advanced.clone()
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Whether this run should hand its job back for another job of its kind that waits
    /// for a slot (every slot of this process being taken): true for at most as many
    /// runs as jobs wait. Also for a run of an account at its cap whose lane holds a job
    /// more urgent than this one (one run of the account at a time). A handler that
    /// works in steps asks once it has worked its turn and, on true, ends the run
    /// between two steps with a snooze that uses no attempt, so the slot goes to the
    /// next account's turn instead of to this job for all of its work.
    pub fn give_way(&self) -> bool {
        self.turn.give_way()
    }

    /// This run's part in what makes it give way, for the runtime to say when it starts.
    pub(crate) fn turn(&self) -> Arc<RunTurn> {
        self.turn.clone()
    }

    /// Whether the worker is shutting down (see [`Self::stopping`]).
    pub fn is_stopping(&self) -> bool {
        self.stopping.is_cancelled()
    }

    /// This run, as its item writes name it.
    pub fn fence(&self) -> RunFence<'_> {
        RunFence {
            job_id: self.id.as_str(),
            run: self.run,
        }
    }
}

/// Runs jobs of one or more kinds.
pub trait Handler: Send + Sync + 'static {
    fn run(&self, payload: JobPayload, ctx: JobContext) -> Pin<Box<dyn Future<Output = Result<Outcome, JobError>> + Send>>;
}

impl<F, Fut> Handler for F
where
    F: Fn(JobPayload, JobContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Outcome, JobError>> + Send + 'static,
{
    fn run(&self, payload: JobPayload, ctx: JobContext) -> Pin<Box<dyn Future<Output = Result<Outcome, JobError>> + Send>> {
        Box::pin(self(payload, ctx))
    }
}
