//! The backend's tower layer around every run: it enforces the job's timeout, turns
//! cancellation, panics and the end of the shutdown grace period into outcomes, and
//! records the run's fate — all checked against the lease in one script call.
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use apalis_core::error::BoxDynError;
use apalis_core::task::Task;
use chrono::Utc;
use futures::FutureExt;
use tower::{Layer, Service};
use tracing::Instrument;

use super::context::Outcome;
use super::leases::RunLease;
use super::metrics::{self, RunFate, Running};
use super::shared::SharedRef;
use crate::error::JobError;
use crate::job::{trace_id_of, AttemptOutcome, AttemptRecord, ErrorClass, ErrorInfo, JobKind, JobPayload};
use crate::queue::{decide, Fate, JobStore, SettleAction, SettleResult, Settlement};

/// How long a cancelled handler may take to wind down before it is dropped.
const CANCEL_GRACE: Duration = Duration::from_secs(2);

pub struct SettleLayer<S: JobStore> {
    shared: SharedRef<S>,
    kind: JobKind,
}

impl<S: JobStore> SettleLayer<S> {
    pub(crate) fn new(shared: SharedRef<S>, kind: JobKind) -> Self {
        Self { shared, kind }
    }
}

impl<S: JobStore> Clone for SettleLayer<S> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            kind: self.kind,
        }
    }
}

impl<S: JobStore, Svc> Layer<Svc> for SettleLayer<S> {
    type Service = SettleService<S, Svc>;
    fn layer(&self, inner: Svc) -> Self::Service {
        SettleService {
            shared: self.shared.clone(),
            kind: self.kind,
            inner,
        }
    }
}

pub struct SettleService<S: JobStore, Svc> {
    shared: SharedRef<S>,
    kind: JobKind,
    inner: Svc,
}

/// How the run ended, before the policy decides the job's fate.
enum RunEnd {
    Done(Outcome),
    Failed(ErrorInfo, Option<Duration>),
    /// Cut off by shutdown: hand back without using the attempt.
    Interrupted,
    /// Stopped because this process no longer holds (or cannot keep) the lease: hand
    /// back without using the attempt; if the lease is already gone the store keeps
    /// the record as a late attempt only.
    LeaseLost,
}

fn classify(err: BoxDynError) -> RunEnd {
    match err.downcast::<JobError>() {
        Ok(e) => {
            let retry_after = match &*e {
                JobError::RateLimited { retry_after, .. } => Some(*retry_after),
                _ => None,
            };
            RunEnd::Failed(
                ErrorInfo {
                    class: e.class(),
                    message: e.to_string(),
                },
                retry_after,
            )
        }
        Err(other) => RunEnd::Failed(
            ErrorInfo {
                class: ErrorClass::Transient,
                message: other.to_string(),
            },
            None,
        ),
    }
}

fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic with a non-string payload".into())
}

impl<S, Svc> Service<Task<JobPayload>> for SettleService<S, Svc>
where
    S: JobStore,
    Svc: Service<Task<JobPayload>, Response = Outcome>,
    Svc::Error: Into<BoxDynError> + Send,
    Svc::Future: Send + 'static,
{
    type Response = ();
    type Error = BoxDynError;
    type Future = Pin<Box<dyn Future<Output = Result<(), BoxDynError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, task: Task<JobPayload>) -> Self::Future {
        let Some(lease) = task.ctx().data().get::<RunLease>().cloned() else {
            return Box::pin(async { Err("task without a lease reached the settle layer".into()) });
        };
        let shared = self.shared.clone();
        let kind = self.kind;
        let leased = lease.leased.clone();
        let trace_id = leased.traceparent.as_deref().and_then(trace_id_of).map(str::to_owned);
        let span = tracing::info_span!("job", job.id = %leased.id, job.kind = %kind, job.attempt = leased.attempt, trace_id = trace_id.as_deref().unwrap_or(""));
        crate::trace_context::continue_trace(&span, leased.traceparent.as_deref());
        // Catch a panic raised while the handler's future is being built, too.
        let inner = std::panic::catch_unwind(AssertUnwindSafe(|| self.inner.call(task)));
        Box::pin(
            async move {
                let running = Running::start(kind);
                let began = std::time::Instant::now();
                let timeout = if leased.timeout.is_zero() {
                    Duration::from_secs(24 * 3600)
                } else {
                    leased.timeout
                };
                let end = match inner {
                    Err(p) => RunEnd::Failed(
                        ErrorInfo {
                            class: ErrorClass::Panic,
                            message: panic_message(p),
                        },
                        None,
                    ),
                    Ok(fut) => {
                        let mut run = AssertUnwindSafe(fut).catch_unwind().boxed();
                        enum Stop {
                            Timeout,
                            Cancel,
                            Hard,
                        }
                        let first = tokio::select! {
                            r = &mut run => Ok(r),
                            _ = tokio::time::sleep(timeout) => Err(Stop::Timeout),
                            _ = lease.held.cancel.cancelled() => Err(Stop::Cancel),
                            _ = shared.hard_stop.cancelled() => Err(Stop::Hard),
                        };
                        match first {
                            Ok(Ok(Ok(outcome))) => RunEnd::Done(outcome),
                            Ok(Ok(Err(e))) => classify(e.into()),
                            Ok(Err(p)) => RunEnd::Failed(
                                ErrorInfo {
                                    class: ErrorClass::Panic,
                                    message: panic_message(p),
                                },
                                None,
                            ),
                            Err(Stop::Hard) => RunEnd::Interrupted,
                            Err(Stop::Cancel) => {
                                // Give the handler a moment to stop cleanly between steps.
                                match tokio::time::timeout(CANCEL_GRACE, run).await {
                                    Ok(Ok(Ok(outcome))) => RunEnd::Done(outcome),
                                    _ => RunEnd::Failed(
                                        ErrorInfo {
                                            class: ErrorClass::Cancelled,
                                            message: "cancelled while running".into(),
                                        },
                                        None,
                                    ),
                                }
                            }
                            Err(Stop::Timeout) => RunEnd::Failed(
                                ErrorInfo {
                                    class: ErrorClass::Timeout,
                                    message: format!("ran longer than its timeout of {} ms", timeout.as_millis()),
                                },
                                None,
                            ),
                        }
                    }
                };
                // A run stopped because its lease went away is not the job's failure.
                let end = match end {
                    RunEnd::Failed(e, _) if e.class == ErrorClass::Cancelled && lease.held.is_lost() => RunEnd::LeaseLost,
                    end => end,
                };
                let took = began.elapsed();
                drop(running);
                let policy = shared.settings.retry_for(kind);
                let (action, outcome, error, fate) = match end {
                    RunEnd::Done(Outcome::Succeeded(v)) => {
                        (SettleAction::Succeeded(v), AttemptOutcome::Succeeded, None, RunFate::Succeeded)
                    }
                    RunEnd::Done(Outcome::Partial(v)) => (SettleAction::Partial(v), AttemptOutcome::Partial, None, RunFate::Partial),
                    RunEnd::Interrupted => (
                        SettleAction::Release,
                        AttemptOutcome::Released,
                        Some(ErrorInfo {
                            class: ErrorClass::Interrupted,
                            message: "cut off by worker shutdown; returned to the queue".into(),
                        }),
                        RunFate::Released,
                    ),
                    RunEnd::LeaseLost => (
                        SettleAction::Release,
                        AttemptOutcome::Lost,
                        Some(ErrorInfo {
                            class: ErrorClass::Lost,
                            message: "stopped: this worker lost its lease or could not renew it in time".into(),
                        }),
                        RunFate::Released,
                    ),
                    RunEnd::Failed(error, retry_after) => {
                        let fate = decide(
                            &error,
                            retry_after,
                            leased.attempt,
                            leased.max_attempts,
                            &policy,
                            rand::random::<f64>(),
                        );
                        match fate {
                            Fate::Retry(delay) => (
                                SettleAction::Retry {
                                    delay,
                                    error: error.clone(),
                                },
                                AttemptOutcome::Failed,
                                Some(error),
                                RunFate::Retried,
                            ),
                            Fate::Snooze(delay) => (
                                SettleAction::Snooze {
                                    delay,
                                    error: error.clone(),
                                },
                                AttemptOutcome::Snoozed,
                                Some(error),
                                RunFate::Snoozed,
                            ),
                            Fate::Dead => (
                                SettleAction::Dead(error.clone()),
                                AttemptOutcome::Failed,
                                Some(error),
                                RunFate::Dead,
                            ),
                            Fate::Cancelled => (
                                SettleAction::Cancelled(error.clone()),
                                AttemptOutcome::Cancelled,
                                Some(error),
                                RunFate::Cancelled,
                            ),
                        }
                    }
                };
                if let Some(e) = &error {
                    match e.class {
                        ErrorClass::RateLimited | ErrorClass::Interrupted | ErrorClass::Cancelled | ErrorClass::Lost => {
                            tracing::info!(class = ?e.class, error = %e.message, "run ended")
                        }
                        _ => tracing::warn!(class = ?e.class, error = %e.message, "run failed"),
                    }
                }
                let attempt = AttemptRecord {
                    number: leased.attempt,
                    worker: shared.settings.worker_id.clone(),
                    started_at: leased.started_at,
                    ended_at: Utc::now(),
                    outcome,
                    error,
                    trace_id,
                    late: lease.held.is_lost(),
                };
                let settlement = Settlement {
                    id: leased.id.clone(),
                    token: leased.token.clone(),
                    action,
                    attempt: Some(attempt),
                };
                let fate = match shared.settle(kind, settlement).await {
                    SettleResult::Applied => fate,
                    SettleResult::LeaseLost => RunFate::Lost,
                };
                metrics::run_finished(kind, fate, took);
                drop(lease);
                Ok(())
            }
            .instrument(span),
        )
    }
}
