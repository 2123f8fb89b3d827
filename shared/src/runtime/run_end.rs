//! How one run ends: the handler returns, fails, panics, runs past its timeout, is
//! cancelled (and then gets a short grace to return), or is cut off by the end of the
//! shutdown grace period. Pure of storage, so its timing is tested with paused time.
use std::future::Future;
use std::time::Duration;

use apalis_core::error::BoxDynError;
use tokio_util::sync::CancellationToken;

use super::context::Outcome;
use crate::error::JobError;
use crate::job::{ErrorClass, ErrorInfo};
use crate::panics::{Caught, Panic};

/// How long a cancelled handler may take to wind down before it is dropped. With the
/// keeper's beat (0.5 s) this stops an uncooperative handler within 1 s of the cancel.
/// A run whose lease is gone gets less: [`lost_grace`].
pub(crate) const CANCEL_GRACE: Duration = Duration::from_millis(300);

/// How long a run whose lease is gone may take to wind down: half a beat, at most
/// [`CANCEL_GRACE`]. The keeper fences a lease `lease − heartbeat` after its last renewal
/// was sent and looks every quarter beat at most, so a fenced run ends by
/// `lease − heartbeat / 4` at the latest: before Redis's lease can run out and another
/// run take the job, whatever the timing the worker's config allows.
pub(crate) fn lost_grace(heartbeat: Duration) -> Duration {
    (heartbeat / 2).min(CANCEL_GRACE)
}

/// How the run ended, before the policy decides the job's fate.
#[derive(Debug)]
pub(crate) enum RunEnd {
    Done(Outcome),
    Failed(ErrorInfo, Option<Duration>),
    /// Cut off by shutdown, or stopped between steps because the worker is shutting
    /// down (the message says which): hand back without using the attempt.
    Interrupted(String),
    /// Worked its turn or slice and handed the job back (`JobError::GaveWay`): runs
    /// again after the delay, without using the attempt or counting as a snooze.
    GaveWay(ErrorInfo, Duration),
    /// Waits on another run's breaker probe (`JobError::Held`): parks after the delay,
    /// without using the attempt or counting as a snooze.
    Held(ErrorInfo, Duration),
    /// Stopped because this process no longer holds (or cannot keep) the lease: hand
    /// back without using the attempt; if the lease is already gone the store keeps
    /// the record as a late attempt only.
    LeaseLost,
}

pub(crate) fn classify(err: BoxDynError) -> RunEnd {
    let e = match err.downcast::<JobError>() {
        Ok(e) => *e,
        Err(other) => {
            return RunEnd::Failed(
                ErrorInfo {
                    class: ErrorClass::Transient,
                    message: other.to_string(),
                },
                None,
            )
        }
    };
    let info = ErrorInfo {
        class: e.class(),
        message: e.to_string(),
    };
    match e {
        JobError::Stopping(_) => RunEnd::Interrupted(format!("{e}; returned to the queue")),
        JobError::GaveWay { retry_after, .. } => RunEnd::GaveWay(info, retry_after),
        JobError::Held { retry_after, .. } => RunEnd::Held(info, retry_after),
        JobError::RateLimited { retry_after, .. } | JobError::Unavailable { retry_after, .. } => RunEnd::Failed(info, Some(retry_after)),
        JobError::Transient(_) | JobError::Permanent(_) | JobError::Cancelled => RunEnd::Failed(info, None),
    }
}

/// A run whose handler panicked: logged here, its one line (with the panic's message
/// and where it panicked; the panic hook leaves a caught panic to its catcher), and
/// failed with a sentence of ours: the panic's own text is an internal one, and tenants
/// read a job's errors.
pub(crate) fn panicked(p: Panic) -> RunEnd {
    tracing::error!(error = %p, "run panicked");
    RunEnd::Failed(
        ErrorInfo {
            class: ErrorClass::Panic,
            message: PANICKED.into(),
        },
        None,
    )
}

/// What a job's error says of a run that panicked.
const PANICKED: &str = "the run stopped on a bug in the worker (a panic); the worker's log has it under this job's id";

/// What a job cancelled before its run started says of its end.
pub(crate) const CANCELLED_BEFORE_START: &str = "cancelled before it started";

/// A run whose job was cancelled while it waited prefetched, before its handler began.
pub(crate) fn cancelled_before_start() -> RunEnd {
    RunEnd::Failed(
        ErrorInfo {
            class: ErrorClass::Cancelled,
            message: CANCELLED_BEFORE_START.into(),
        },
        None,
    )
}

fn cancelled() -> RunEnd {
    RunEnd::Failed(
        ErrorInfo {
            class: ErrorClass::Cancelled,
            message: "cancelled while running".into(),
        },
        None,
    )
}

/// Why a run was stopped before it returned.
enum Stop {
    Timeout,
    Cancel,
    Hard,
}

/// Drive `run` to its end. `cancel` fires on a user's cancel or a lost lease, `gone`
/// on a lost lease only; `hard_stop` when the shutdown grace period is over.
///
/// A cancelled handler gets [`CANCEL_GRACE`] to return; one whose lease is gone (the
/// keeper fenced it, or Redis said so), also while in that grace, gets no more than
/// `gone_grace` from then (the runtime passes [`lost_grace`]), so it ends before Redis
/// may give the job to another run.
pub(crate) async fn run_to_end<F, E>(
    run: F,
    timeout: Duration,
    cancel: &CancellationToken,
    (gone, gone_grace): (&CancellationToken, Duration),
    hard_stop: &CancellationToken,
) -> RunEnd
where
    F: Future<Output = Result<Outcome, E>>,
    E: Into<BoxDynError>,
{
    let mut run = std::pin::pin!(Caught::new(run));
    let first = tokio::select! {
        r = &mut run => Ok(r),
        _ = tokio::time::sleep(timeout) => Err(Stop::Timeout),
        _ = cancel.cancelled() => Err(Stop::Cancel),
        _ = hard_stop.cancelled() => Err(Stop::Hard),
    };
    match first {
        Ok(Ok(Ok(outcome))) => RunEnd::Done(outcome),
        Ok(Ok(Err(e))) => classify(e.into()),
        Ok(Err(p)) => panicked(p),
        Err(Stop::Hard) => RunEnd::Interrupted("cut off by worker shutdown; returned to the queue".into()),
        // Give the handler a moment to stop cleanly between steps, then drop it; a
        // shorter one if the lease is gone, or goes meanwhile.
        Err(Stop::Cancel) => {
            let until = tokio::time::Instant::now() + CANCEL_GRACE;
            let lost = async {
                gone.cancelled().await;
                tokio::time::sleep_until(until.min(tokio::time::Instant::now() + gone_grace)).await;
            };
            tokio::select! {
                r = run => match r {
                    Ok(Ok(outcome)) => RunEnd::Done(outcome),
                    Err(p) => {
                        // still its one line (the hook leaves a caught panic to us)
                        tracing::error!(error = %p, "run panicked while it was being cancelled");
                        cancelled()
                    }
                    Ok(Err(_)) => cancelled(),
                },
                _ = tokio::time::sleep_until(until) => cancelled(),
                _ = lost => cancelled(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    const LONG: Duration = Duration::from_secs(3600);

    fn class(end: &RunEnd) -> Option<ErrorClass> {
        match end {
            RunEnd::Failed(e, _) => Some(e.class),
            _ => None,
        }
    }

    async fn never_returns() -> Result<Outcome, JobError> {
        futures::future::pending().await
    }

    #[tokio::test(start_paused = true)]
    async fn an_uncooperative_handler_is_dropped_within_a_second_of_its_cancel() {
        let (cancel, hard) = (CancellationToken::new(), CancellationToken::new());
        let asked = Instant::now();
        cancel.cancel();
        let end = run_to_end(never_returns(), LONG, &cancel, (&CancellationToken::new(), CANCEL_GRACE), &hard).await;
        assert_eq!(class(&end), Some(ErrorClass::Cancelled));
        // The keeper notices a cancel within one beat (0.5 s); the rest is this grace.
        assert!(
            asked.elapsed() + Duration::from_millis(500) <= Duration::from_secs(1),
            "{:?}",
            asked.elapsed()
        );
    }

    /// The keeper fences a lease `lease − heartbeat` after its last renewal was sent
    /// (default 1.5 s of 1.8 s), checked every quarter beat (75 ms): a run whose handler
    /// ignores the stop must be dropped within half a beat (150 ms), not after the
    /// cancel's 300 ms, when Redis's lease may have run out and another run hold the job
    /// (finding F1/F4's overlap).
    #[tokio::test(start_paused = true)]
    async fn a_run_whose_lease_is_gone_is_dropped_within_half_a_beat() {
        let (gone, hard) = (CancellationToken::new(), CancellationToken::new());
        let cancel = gone.child_token();
        let beat = Duration::from_millis(300);
        let fenced = Instant::now();
        gone.cancel();
        let end = run_to_end(never_returns(), LONG, &cancel, (&gone, lost_grace(beat)), &hard).await;
        assert_eq!(class(&end), Some(ErrorClass::Cancelled));
        assert_eq!(fenced.elapsed(), Duration::from_millis(150));
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_lost_during_a_cancels_grace_shortens_the_grace() {
        let (gone, hard) = (CancellationToken::new(), CancellationToken::new());
        let cancel = gone.child_token();
        let asked = Instant::now();
        cancel.cancel();
        let g = gone.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            g.cancel();
        });
        let grace = lost_grace(Duration::from_millis(200));
        let end = run_to_end(never_returns(), LONG, &cancel, (&gone, grace), &hard).await;
        assert_eq!(class(&end), Some(ErrorClass::Cancelled));
        assert_eq!(asked.elapsed(), Duration::from_millis(200), "100 ms in, then half a beat");
    }

    #[tokio::test(start_paused = true)]
    async fn a_run_that_stops_when_its_lease_goes_keeps_its_outcome() {
        let (gone, hard) = (CancellationToken::new(), CancellationToken::new());
        let cancel = gone.child_token();
        let c = cancel.clone();
        let run = async move {
            c.cancelled().await;
            Ok::<_, JobError>(Outcome::Succeeded(serde_json::json!({"stopped": "cleanly"})))
        };
        gone.cancel();
        let end = run_to_end(run, LONG, &cancel, (&gone, lost_grace(Duration::from_millis(300))), &hard).await;
        assert!(matches!(end, RunEnd::Done(Outcome::Succeeded(_))), "{end:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_handler_that_finishes_within_the_cancel_grace_keeps_its_outcome() {
        let (cancel, hard) = (CancellationToken::new(), CancellationToken::new());
        let c = cancel.clone();
        let run = async move {
            c.cancelled().await;
            tokio::time::sleep(CANCEL_GRACE / 2).await;
            Ok::<_, JobError>(Outcome::Succeeded(serde_json::json!({"tidy": true})))
        };
        cancel.cancel();
        let end = run_to_end(run, LONG, &cancel, (&CancellationToken::new(), CANCEL_GRACE), &hard).await;
        assert!(matches!(end, RunEnd::Done(Outcome::Succeeded(_))), "{end:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_run_past_its_timeout_fails_with_timeout_at_the_timeout() {
        let (cancel, hard) = (CancellationToken::new(), CancellationToken::new());
        let began = Instant::now();
        let end = run_to_end(
            never_returns(),
            Duration::from_secs(90),
            &cancel,
            (&CancellationToken::new(), CANCEL_GRACE),
            &hard,
        )
        .await;
        assert_eq!(class(&end), Some(ErrorClass::Timeout));
        assert_eq!(began.elapsed(), Duration::from_secs(90));
    }

    #[tokio::test(start_paused = true)]
    async fn the_end_of_the_grace_period_cuts_a_run_off_at_once() {
        let (cancel, hard) = (CancellationToken::new(), CancellationToken::new());
        let h = hard.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(30)).await;
            h.cancel();
        });
        let began = Instant::now();
        let end = run_to_end(never_returns(), LONG, &cancel, (&CancellationToken::new(), CANCEL_GRACE), &hard).await;
        assert!(matches!(end, RunEnd::Interrupted(_)), "{end:?}");
        assert_eq!(began.elapsed(), Duration::from_secs(30));
    }

    #[tokio::test]
    async fn a_handler_that_stops_between_steps_for_the_shutdown_is_handed_back() {
        let (cancel, hard) = (CancellationToken::new(), CancellationToken::new());
        let stopped = async { Err::<Outcome, _>(JobError::Stopping("between two windows".into())) };
        match run_to_end(stopped, LONG, &cancel, (&CancellationToken::new(), CANCEL_GRACE), &hard).await {
            RunEnd::Interrupted(why) => assert!(why.contains("between two windows"), "{why}"),
            end => panic!("{end:?}"),
        }
    }

    #[tokio::test]
    async fn a_panicking_handler_fails_as_a_panic_in_our_words_not_its_own() {
        let (cancel, hard) = (CancellationToken::new(), CancellationToken::new());
        let run = async {
            if cancel.is_cancelled() {
                return Ok(Outcome::Succeeded(serde_json::Value::Null));
            }
            panic!("boom in handler")
        };
        let end = run_to_end::<_, JobError>(run, LONG, &cancel, (&CancellationToken::new(), CANCEL_GRACE), &hard).await;
        match end {
            RunEnd::Failed(e, _) => assert_eq!((e.class, e.message.as_str()), (ErrorClass::Panic, PANICKED)),
            other => panic!("{other:?}"),
        }
    }
}
