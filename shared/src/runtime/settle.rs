//! The backend's tower layer around every run: it enforces the job's timeout, turns
//! cancellation, panics and the end of the shutdown grace period into outcomes, and
//! records the run's fate — all checked against the lease in one script call.
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use apalis_core::error::BoxDynError;
use apalis_core::task::Task;
use tower::{Layer, Service};
use tracing::Instrument;

use super::context::{JobContext, Outcome};
use super::keeper::KeeperTiming;
use super::leases::RunLease;
use super::metrics::{self, RunFate, Running};
use super::pace::RunPace;
use super::run_end::{cancelled_before_start, lost_grace, panicked, run_to_end, RunEnd};
use super::shared::SharedRef;
use crate::job::{AttemptOutcome, AttemptRecord, ErrorClass, ErrorInfo, JobKind, JobPayload, JobState};
use crate::queue::{decide, Fate, JobStore, Leased, RetryPolicy, SettleAction, SettleResult, Settlement};

pub struct SettleLayer<S: JobStore> {
    shared: SharedRef<S>,
    kind: JobKind,
    pace: Arc<RunPace>,
}

impl<S: JobStore> SettleLayer<S> {
    pub(crate) fn new(shared: SharedRef<S>, kind: JobKind, pace: Arc<RunPace>) -> Self {
        Self { shared, kind, pace }
    }
}

impl<S: JobStore> Clone for SettleLayer<S> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            kind: self.kind,
            pace: self.pace.clone(),
        }
    }
}

impl<S: JobStore, Svc> Layer<Svc> for SettleLayer<S> {
    type Service = SettleService<S, Svc>;
    fn layer(&self, inner: Svc) -> Self::Service {
        SettleService {
            shared: self.shared.clone(),
            kind: self.kind,
            pace: self.pace.clone(),
            inner,
        }
    }
}

pub struct SettleService<S: JobStore, Svc> {
    shared: SharedRef<S>,
    kind: JobKind,
    pace: Arc<RunPace>,
    inner: Svc,
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
        // Every line logged inside the run carries these (the JSON lines' `spans`).
        let account = lease.leased.payload.as_ref().map(|p| p.account_id().as_str()).unwrap_or("");
        let traceparent = lease.leased.traceparent.as_deref();
        let ahead = crate::trace_context::log_ids_ahead(traceparent);
        let span = tracing::info_span!(
            "job",
            job_id = %lease.leased.id,
            kind = %self.kind,
            attempt = lease.leased.attempt,
            account,
            trace_id = ahead.as_ref().map(|(t, _)| t.as_str()),
            span_id = ahead.as_ref().map(|(_, s)| s.as_str()),
        );
        // The attempt records the trace id its lines carry, so one finds the other.
        let (trace, _) = crate::trace_context::span_log_ids(&span, traceparent, ahead);
        let trace_id = Some(trace);
        let (advanced, turn) = task.ctx().data().get::<JobContext>().map(|c| (c.advanced_flag(), c.turn())).unzip();
        // Catch a panic raised while the handler's future is being built, too.
        let inner = crate::panics::catch(|| self.inner.call(task));
        let (shared, kind, pace) = (self.shared.clone(), self.kind, self.pace.clone());
        Box::pin(
            async move {
                // Withdrawn by the keeper (cancelled while it waited here) and settled
                // already: nothing to plan or settle, whatever its lease's age (found by
                // the review of 2026-12-07: a slot that freed past the fence's age had it
                // taken for lost and a late run recorded).
                if lease.held.is_withdrawn() {
                    lease.free_slot();
                    return Ok(());
                }
                let began = std::time::Instant::now();
                // A lease whose fetch answered late (a reply held up on the network) may
                // have run out in Redis and been given to another worker: as old as the
                // fence stops runs at, it is taken for lost before its handler starts
                // (the fence looks only every few tens of ms, after the run has begun).
                let timing = KeeperTiming {
                    lease: shared.settings.lease,
                    heartbeat: shared.settings.heartbeat,
                };
                if lease.held.unrenewed_for(tokio::time::Instant::now()) >= timing.fence_after() {
                    lease.held.mark_lost();
                }
                let mut never_started = false;
                let end = if lease.held.cancel.is_cancelled() {
                    // Cancelled, or its lease lost, while it waited prefetched: the
                    // handler never starts (a panic building it is still logged once).
                    if let Err(p) = inner {
                        tracing::error!(error = %p, "run panicked before it started");
                    }
                    // Either way no run is recorded: it never started (found by the
                    // chaos audit of 2026-12-07, second: a lease lost here was recorded
                    // as a `released` run, and the job's next run had its number again).
                    if lease.held.withdraw() {
                        never_started = true;
                        if lease.held.is_lost() {
                            RunEnd::LeaseLost
                        } else {
                            cancelled_before_start()
                        }
                    } else {
                        // withdrawn by the keeper, which settles it (`withdraw.rs`)
                        lease.free_slot();
                        return Ok(());
                    }
                } else if lease.held.started() {
                    if let Some(turn) = &turn {
                        turn.started(&lease.leased);
                    }
                    run(inner, &lease, &shared, kind).await
                } else {
                    // withdrawn by the keeper as this task came to its slot
                    lease.free_slot();
                    return Ok(());
                };
                // The run has ended: it no longer counts as giving way or as one of its
                // account's runs to ask about (its context went with the handler).
                drop(turn);
                lease.free_slot();
                // A run that did its work sets the pace; the others only slow it: runs
                // that fail at once (an account never registered, a guard's outage) would
                // make slow jobs look fast, and the worker would lease them ahead of its
                // slots, while runs that time out say the kind has become slow.
                let took = began.elapsed();
                if matches!(end, RunEnd::Done(_)) {
                    pace.record(took);
                } else {
                    pace.record_if_slower(took);
                }
                let mut planned = plan(end, &lease.leased, &shared.settings.retry_for(kind), rand::random::<f64>());
                let advanced = advanced.is_some_and(|f| f.load(std::sync::atomic::Ordering::Relaxed));
                planned.action = noting_progress(planned.action, advanced);
                let fate = planned.fate;
                let error = planned.error.clone();
                let mut settlement = settlement(planned, &lease, &shared.settings.worker_id, trace_id);
                if never_started {
                    // No run to record: the job's error says it ended before it started.
                    settlement.attempt = None;
                }
                let answer = shared.settle(kind, &lease, settlement).await;
                if never_started {
                    // No run: no run's end to log nor duration to count (the review of
                    // 2026-12-07: a lease lost at the door was logged as a run whose
                    // result "is kept on the attempt").
                    tracing::info!(job_id = %lease.leased.id, kind = %kind, outcome = ?answer, error = ?error.as_ref().map(|e| &e.message), "ended before its run started; no run recorded");
                    if let Some(fate) = counted_fate(&answer, fate) {
                        metrics::ended_without_running(kind, fate);
                    }
                } else {
                    log_end(error.as_ref(), answer);
                    if let Some(fate) = counted_fate(&answer, fate) {
                        metrics::run_finished(kind, fate, took);
                    }
                }
                drop(lease);
                Ok(())
            }
            .instrument(span),
        )
    }
}

/// How a run whose outcome the settler answered is counted: as the queue ended it, or
/// not at all when nothing was written (`Unreached`: its lease runs out and the job runs
/// again, counted then; found by an audit of 2026-12-06, which saw it counted twice).
/// (The settler resolves the other answers before replying.)
pub(crate) fn counted_fate(answer: &SettleResult, planned: RunFate) -> Option<RunFate> {
    match answer {
        SettleResult::Applied | SettleResult::NotDurable => Some(planned),
        SettleResult::Unreached => None,
        SettleResult::AppliedAs(JobState::Cancelled) => Some(RunFate::Cancelled),
        SettleResult::AppliedAs(JobState::Dead) => Some(RunFate::Dead),
        SettleResult::AppliedAs(_) => Some(planned),
        SettleResult::LeaseLost | SettleResult::RecordGone => Some(RunFate::Lost),
    }
}

/// Run the handler to its end under the job's timeout, its cancellation and the
/// shutdown's hard stop; counted in the running gauge meanwhile.
async fn run<S: JobStore, F, E>(inner: Result<F, crate::panics::Panic>, lease: &RunLease, shared: &SharedRef<S>, kind: JobKind) -> RunEnd
where
    F: Future<Output = Result<Outcome, E>>,
    E: Into<BoxDynError>,
{
    let _running = Running::start(kind);
    // No timeout set: a day, so a stuck run still ends some time.
    let timeout = if lease.leased.timeout.is_zero() {
        Duration::from_secs(24 * 3600)
    } else {
        lease.leased.timeout
    };
    let end = match inner {
        Err(p) => panicked(p),
        Ok(fut) => {
            run_to_end(
                fut,
                timeout,
                &lease.held.cancel,
                (&lease.held.gone, lost_grace(shared.settings.heartbeat)),
                &shared.hard_stop,
            )
            .await
        }
    };
    // A run stopped because its lease went away is not the job's failure.
    match end {
        RunEnd::Failed(e, _) if e.class == ErrorClass::Cancelled && lease.held.is_lost() => RunEnd::LeaseLost,
        end => end,
    }
}

/// One log line per run that did not succeed or whose lease was gone by its end, once
/// its outcome is recorded: expected stops at info, failures and lost leases at warn (a
/// panic's line is logged where it was caught, naming where it panicked). A run stopped
/// because a later run holds its job says so here only (its fence logs at debug).
fn log_end(error: Option<&ErrorInfo>, answer: SettleResult) {
    const LOST: &str = "the run's lease was gone when it ended; its result is kept on the attempt only";
    // (found by the audit of 2026-12-07, fourth: a run whose job was gone logged LOST)
    const GONE: &str = "the run's job was gone when it ended (purged, or Redis lost its data); its result was not kept";
    if answer == SettleResult::RecordGone {
        match error {
            Some(e) if e.class != ErrorClass::Panic => tracing::warn!(class = ?e.class, error = %e.message, "{GONE}"),
            _ => tracing::warn!("{GONE}"),
        }
        return;
    }
    let lost = answer == SettleResult::LeaseLost;
    match error {
        // (the panic's own line named the run's failure)
        Some(e) if e.class == ErrorClass::Panic && lost => tracing::warn!("{LOST}"),
        Some(e) if e.class == ErrorClass::Panic => {}
        Some(e) if lost => tracing::warn!(class = ?e.class, error = %e.message, "{LOST}"),
        None if lost => tracing::warn!("{LOST}"),
        None => {}
        Some(e) => match e.class {
            ErrorClass::RateLimited | ErrorClass::Interrupted | ErrorClass::Cancelled | ErrorClass::Lost => {
                tracing::info!(class = ?e.class, error = %e.message, "run ended")
            }
            _ => tracing::warn!(class = ?e.class, error = %e.message, "run failed"),
        },
    }
}

/// The settlement that records the run's attempt and the job's fate.
fn settlement(planned: Planned, lease: &RunLease, worker: &str, trace_id: Option<String>) -> Settlement {
    let leased = &lease.leased;
    let attempt = AttemptRecord {
        number: leased.attempt,
        worker: worker.to_owned(),
        started_at: leased.started_at,
        ended_at: lease.now(),
        outcome: planned.outcome,
        error: planned.error,
        trace_id,
        // The settle script marks it late if the lease is gone by then.
        late: false,
    };
    Settlement {
        id: leased.id.clone(),
        token: leased.token.clone(),
        action: planned.action,
        attempt: Some(attempt),
    }
}

/// `action` of a run that `advanced` (did some of its work) or not: a snooze says which,
/// so its job's count of snoozes starts again from it when it did; a held park of such a
/// run is one too (counted from one), or the count a long outage built would stand after
/// the progress (found by the review of the held park's fix).
fn noting_progress(action: SettleAction, advanced: bool) -> SettleAction {
    match action {
        SettleAction::Snooze { delay, error, .. } => SettleAction::Snooze { delay, error, advanced },
        SettleAction::Held { delay, error } if advanced => SettleAction::Snooze { delay, error, advanced },
        other => other,
    }
}

/// What a run's end means for the job: the settle action, the attempt's outcome and
/// error, and the metric's label.
#[derive(Debug)]
struct Planned {
    action: SettleAction,
    outcome: AttemptOutcome,
    error: Option<ErrorInfo>,
    fate: RunFate,
}

impl Planned {
    fn new(action: SettleAction, outcome: AttemptOutcome, error: Option<ErrorInfo>, fate: RunFate) -> Self {
        Self {
            action,
            outcome,
            error,
            fate,
        }
    }
}

/// Decide the job's fate from how its run ended; `unit` is the jitter draw in [0, 1).
fn plan(end: RunEnd, leased: &Leased, policy: &RetryPolicy, unit: f64) -> Planned {
    let handed_back = |class, message: &str, outcome| {
        let error = ErrorInfo {
            class,
            message: message.into(),
        };
        Planned::new(SettleAction::Release, outcome, Some(error), RunFate::Released)
    };
    match end {
        RunEnd::Done(Outcome::Succeeded(v)) => {
            Planned::new(SettleAction::Succeeded(v), AttemptOutcome::Succeeded, None, RunFate::Succeeded)
        }
        RunEnd::Done(Outcome::Partial(v)) => Planned::new(SettleAction::Partial(v), AttemptOutcome::Partial, None, RunFate::Partial),
        RunEnd::Interrupted(why) => handed_back(ErrorClass::Interrupted, &why, AttemptOutcome::Released),
        RunEnd::GaveWay(error, delay) => {
            let e = Some(error.clone());
            Planned::new(SettleAction::GaveWay { delay, error }, AttemptOutcome::Snoozed, e, RunFate::Snoozed)
        }
        RunEnd::Held(error, hint) => {
            let e = Some(error.clone());
            let delay = crate::queue::jittered(hint, unit);
            Planned::new(SettleAction::Held { delay, error }, AttemptOutcome::Snoozed, e, RunFate::Snoozed)
        }
        // A hand-back uses no attempt, so the record says released; the error says why.
        // (Had Redis given the lease away, the settle is refused and kept as `late`.)
        RunEnd::LeaseLost => handed_back(
            ErrorClass::Lost,
            "stopped: this worker lost its lease or could not renew it in time",
            AttemptOutcome::Released,
        ),
        RunEnd::Failed(error, retry_after) => {
            let e = Some(error.clone());
            let (attempt, of) = leased.life();
            match decide(&error, retry_after, attempt, of, policy, unit) {
                Fate::Retry(delay) => Planned::new(SettleAction::Retry { delay, error }, AttemptOutcome::Failed, e, RunFate::Retried),
                Fate::Snooze(delay) => {
                    let action = SettleAction::Snooze {
                        delay,
                        error,
                        advanced: false,
                    };
                    Planned::new(action, AttemptOutcome::Snoozed, e, RunFate::Snoozed)
                }
                Fate::Dead => Planned::new(SettleAction::Dead(error), AttemptOutcome::Failed, e, RunFate::Dead),
                Fate::Cancelled => Planned::new(SettleAction::Cancelled(error), AttemptOutcome::Cancelled, e, RunFate::Cancelled),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{JobId, JobKind};
    use chrono::Utc;

    /// Found by an audit of what the API shows (2026-12-06): an outcome the settler gave
    /// up writing was counted as planned, and again when the job, its lease run out,
    /// ran once more.
    #[test]
    fn an_outcome_never_written_is_not_counted_and_the_queues_ending_is() {
        assert_eq!(counted_fate(&SettleResult::Unreached, RunFate::Succeeded), None);
        assert_eq!(counted_fate(&SettleResult::Applied, RunFate::Retried), Some(RunFate::Retried));
        assert_eq!(
            counted_fate(&SettleResult::NotDurable, RunFate::Succeeded),
            Some(RunFate::Succeeded)
        );
        assert_eq!(
            counted_fate(&SettleResult::AppliedAs(JobState::Dead), RunFate::Snoozed),
            Some(RunFate::Dead)
        );
        assert_eq!(counted_fate(&SettleResult::LeaseLost, RunFate::Succeeded), Some(RunFate::Lost));
        // (its job gone: nothing of the run was kept, as for a lease lost)
        assert_eq!(counted_fate(&SettleResult::RecordGone, RunFate::Succeeded), Some(RunFate::Lost));
    }

    fn leased(attempt: u32, max_attempts: u32) -> Leased {
        Leased {
            id: JobId::new(JobKind::Cleanup),
            token: "T".into(),
            attempt,
            max_attempts,
            budget: None,
            started_at: Utc::now(),
            timeout: Duration::ZERO,
            traceparent: None,
            payload: Err("not needed".into()),
        }
    }

    #[test]
    fn a_run_stopped_for_a_lost_lease_is_handed_back_not_failed_even_on_its_last_attempt() {
        let p = plan(RunEnd::LeaseLost, &leased(3, 3), &RetryPolicy::default(), 0.5);
        assert_eq!(p.action, SettleAction::Release);
        assert_eq!((p.outcome, p.fate), (AttemptOutcome::Released, RunFate::Released));
        assert_eq!(p.error.map(|e| e.class), Some(ErrorClass::Lost));
    }

    #[test]
    fn a_run_that_gave_its_turn_away_is_an_uncounted_snooze_even_on_its_last_attempt() {
        let error = ErrorInfo {
            class: ErrorClass::Interrupted,
            message: "handed back: worked its turn".into(),
        };
        let end = crate::runtime::run_end::classify(Box::new(crate::JobError::GaveWay {
            retry_after: Duration::from_millis(100),
            reason: "worked its turn".into(),
        }));
        let p = plan(end, &leased(3, 3), &RetryPolicy::default(), 0.5);
        let delay = Duration::from_millis(100);
        assert_eq!(p.action, SettleAction::GaveWay { delay, error });
        assert_eq!((p.outcome, p.fate), (AttemptOutcome::Snoozed, RunFate::Snoozed));
    }

    #[test]
    fn a_run_held_by_another_runs_breaker_probe_parks_spread_like_a_snooze() {
        let end = crate::runtime::run_end::classify(Box::new(crate::JobError::Held {
            retry_after: Duration::from_secs(1),
            reason: "getOrders: circuit open until then (another call is probing it)".into(),
        }));
        let p = plan(end, &leased(3, 3), &RetryPolicy::default(), 1.0);
        let SettleAction::Held { delay, error } = p.action else {
            panic!("{:?}", p.action);
        };
        assert_eq!(delay, Duration::from_millis(1200));
        assert_eq!(error.class, ErrorClass::RateLimited);
        assert_eq!((p.outcome, p.fate), (AttemptOutcome::Snoozed, RunFate::Snoozed));
    }

    /// Found by the review of the held park's fix: a held park of a run that had
    /// advanced left the job's count of snoozes where earlier parks had built it (a long
    /// outage: 998 of 1,000), so a job that had just made progress was dead a few counted
    /// parks later. It counts from one again, as any park of a run that advanced.
    #[test]
    fn a_held_park_of_a_run_that_advanced_starts_the_count_again() {
        let error = ErrorInfo {
            class: ErrorClass::RateLimited,
            message: "rate limited for 1s: getOrders: circuit open until then (another call is probing it)".into(),
        };
        let delay = Duration::from_secs(1);
        let held = SettleAction::Held {
            delay,
            error: error.clone(),
        };
        assert_eq!(noting_progress(held.clone(), false), held, "not counted");
        assert_eq!(
            noting_progress(held, true),
            SettleAction::Snooze {
                delay,
                error,
                advanced: true
            }
        );
    }

    #[test]
    fn a_run_cut_off_by_shutdown_is_handed_back() {
        let p = plan(RunEnd::Interrupted("cut off".into()), &leased(1, 3), &RetryPolicy::default(), 0.5);
        assert_eq!(p.action, SettleAction::Release);
        assert_eq!(p.outcome, AttemptOutcome::Released);
    }

    #[test]
    fn a_failure_on_the_last_attempt_is_dead_and_earlier_ones_retry() {
        let error = ErrorInfo {
            class: ErrorClass::Transient,
            message: "boom".into(),
        };
        let last = plan(RunEnd::Failed(error.clone(), None), &leased(3, 3), &RetryPolicy::default(), 0.5);
        assert_eq!(last.fate, RunFate::Dead);
        let early = plan(RunEnd::Failed(error, None), &leased(1, 3), &RetryPolicy::default(), 0.5);
        assert_eq!(early.fate, RunFate::Retried);
    }

    #[test]
    fn a_replayed_jobs_failure_backs_off_from_the_first_step() {
        let error = ErrorInfo {
            class: ErrorClass::Transient,
            message: "boom".into(),
        };
        let policy = RetryPolicy {
            base: Duration::from_secs(1),
            max: Duration::from_secs(600),
        };
        // Enqueued with 2 attempts, dead after both, replayed: run 3 of 4 is the first of
        // its new life, run 4 the last.
        let first = Leased {
            budget: Some(2),
            ..leased(3, 4)
        };
        let p = plan(RunEnd::Failed(error.clone(), None), &first, &policy, 1.0);
        assert_eq!(
            p.action,
            SettleAction::Retry {
                delay: policy.base,
                error: error.clone()
            }
        );
        let last = Leased {
            budget: Some(2),
            ..leased(4, 4)
        };
        assert_eq!(plan(RunEnd::Failed(error, None), &last, &policy, 1.0).fate, RunFate::Dead);
    }
}
