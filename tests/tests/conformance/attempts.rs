//! The attempt history: each run's record reads back as its worker reported it, in the
//! order the records were made, however the store keeps it.
use chrono::{DateTime, TimeZone};

use super::*;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// Now, to the millisecond the store keeps.
fn now_ms() -> DateTime<Utc> {
    Utc.timestamp_millis_opt(Utc::now().timestamp_millis()).unwrap()
}

fn record(l: &Leased, worker: &str, outcome: AttemptOutcome, error: Option<ErrorInfo>, trace: Option<&str>) -> AttemptRecord {
    AttemptRecord {
        number: l.attempt,
        worker: worker.into(),
        started_at: l.started_at,
        ended_at: now_ms(),
        outcome,
        error,
        trace_id: trace.map(str::to_owned),
        late: false,
    }
}

async fn settle_with<S: JobStore>(store: &S, l: &Leased, action: SettleAction, attempt: &AttemptRecord) -> SettleResult {
    let s = Settlement {
        id: l.id.clone(),
        token: l.token.clone(),
        action,
        attempt: Some(attempt.clone()),
    };
    store.settle(l.id.kind(), &[s]).await.unwrap()[0]
}

async fn history<S: JobStore>(store: &S, id: &JobId) -> Vec<AttemptRecord> {
    store.get(id).await.unwrap().expect("job exists").attempt_history
}

/// A failed run, then a success with a trace id, then a success whose record names
/// another worker than the lease's: every field of every record reads back.
pub async fn each_runs_attempt_reads_back_as_its_worker_reported_it<S: JobStore>(store: S) {
    let id = enqueue(&store, NewJob::new(cleanup("a1"))).await;
    let first = fetch_one(&store, "w1").await.unwrap();
    let failed = record(&first, "w1", AttemptOutcome::Failed, Some(err(ErrorClass::Transient)), None);
    let retry = SettleAction::Retry {
        delay: Duration::ZERO,
        error: err(ErrorClass::Transient),
    };
    assert_eq!(settle_with(&store, &first, retry, &failed).await, SettleResult::Applied);
    let second = fetch_one(&store, "w2").await.expect("the retry is due at once");
    assert_eq!(second.attempt, 2);
    let succeeded = record(&second, "w2", AttemptOutcome::Succeeded, None, Some(TRACE));
    let done = SettleAction::Succeeded(json!({"deleted": 1}));
    assert_eq!(settle_with(&store, &second, done, &succeeded).await, SettleResult::Applied);
    assert_eq!(history(&store, &id).await, vec![failed, succeeded]);

    // the same account, so the same partition: the one the last fetches found jobs in
    let other = enqueue(&store, NewJob::new(cleanup("a1"))).await;
    let l = fetch_one(&store, "w1").await.unwrap();
    let named_otherwise = record(&l, "w1-renamed", AttemptOutcome::Succeeded, None, None);
    let done = SettleAction::Succeeded(json!({}));
    assert_eq!(settle_with(&store, &l, done, &named_otherwise).await, SettleResult::Applied);
    assert_eq!(history(&store, &other).await, vec![named_otherwise]);
}

/// A lease reclaimed from w1 and run to success by w2; w1's success arrives after that:
/// the history is the lost run, w2's success, then w1's late record, each whole.
pub async fn a_late_success_after_the_job_succeeded_is_recorded_after_that_success<S: JobStore>(store: S) {
    let id = enqueue(&store, NewJob::new(cleanup("a1"))).await;
    let (first, second) = leased_then_reclaimed(&store).await;
    let w1_ended = record(&first, "w1", AttemptOutcome::Succeeded, None, Some(TRACE));
    let w2_ended = record(&second, "w2", AttemptOutcome::Succeeded, None, None);
    let done = SettleAction::Succeeded(json!({"by": "w2"}));
    assert_eq!(settle_with(&store, &second, done, &w2_ended).await, SettleResult::Applied);
    let ended_at = store.get(&id).await.unwrap().unwrap().updated_at;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let late = SettleAction::Succeeded(json!({"by": "w1"}));
    assert_eq!(settle_with(&store, &first, late, &w1_ended).await, SettleResult::LeaseLost);

    let job = store.get(&id).await.unwrap().unwrap();
    // Found by an audit of job histories: a late record changed the history without
    // moving `updated_at`, so a reader that re-reads on a change missed it.
    assert!(job.updated_at > ended_at, "the late record moves updated_at");
    assert_eq!(job.state, JobState::Succeeded);
    assert_eq!(job.result, Some(json!({"by": "w2"})), "the late result changes nothing");
    let h = job.attempt_history;
    assert_eq!(h.len(), 3, "{h:?}");
    assert_eq!((h[0].outcome, h[0].number, h[0].worker.as_str()), (AttemptOutcome::Lost, 1, "w1"));
    assert_eq!(h[1], w2_ended);
    assert_eq!(h[2], AttemptRecord { late: true, ..w1_ended });
}

/// Found by an audit of the queue core (2026-12-05): a late settle sent again after its
/// reply was lost was recorded again — a second late record and a second `late` event:
/// the check for a settle applied before looked for the record as sent, not as the late
/// record it had become.
pub async fn a_late_settle_sent_again_is_recorded_once<S: JobStore>(store: S) {
    let id = enqueue(&store, NewJob::new(cleanup("a1"))).await;
    let (first, _second) = leased_then_reclaimed(&store).await;
    let w1_ended = record(&first, "w1", AttemptOutcome::Succeeded, None, Some(TRACE));
    let late = || SettleAction::Succeeded(json!({"by": "w1"}));
    assert_eq!(settle_with(&store, &first, late(), &w1_ended).await, SettleResult::LeaseLost);
    assert_eq!(settle_with(&store, &first, late(), &w1_ended).await, SettleResult::LeaseLost);
    let h = store.get(&id).await.unwrap().unwrap().attempt_history;
    assert_eq!(h.iter().filter(|a| a.late).count(), 1, "{h:?}");
    assert_eq!(store.counts(JobKind::Cleanup).await.unwrap().events.late, 1);
}

/// Found by an audit of the queue core (2026-12-06): a settle sent again after its reply
/// was lost looked for its record among the newest three only, so once the job had run
/// three more times (a retry due at once, other workers running it while this one could
/// not reach Redis) the run was recorded a second time, as `late`, and the worker told
/// its lease was lost.
pub async fn a_settle_sent_again_after_later_runs_records_the_run_once<S: JobStore>(store: S) {
    let id = enqueue(&store, NewJob::new(cleanup("a1")).max_attempts(10)).await;
    let retry = || SettleAction::Retry {
        delay: Duration::ZERO,
        error: err(ErrorClass::Transient),
    };
    let first = fetch_one(&store, "w1").await.unwrap();
    let first_failed = record(&first, "w1", AttemptOutcome::Failed, Some(err(ErrorClass::Transient)), None);
    assert_eq!(settle_with(&store, &first, retry(), &first_failed).await, SettleResult::Applied);
    let mut records = vec![first_failed.clone()];
    for _ in 0..3 {
        let later = fetch_one(&store, "w2").await.expect("due again at once");
        let failed = record(&later, "w2", AttemptOutcome::Failed, Some(err(ErrorClass::Transient)), None);
        assert_eq!(settle_with(&store, &later, retry(), &failed).await, SettleResult::Applied);
        records.push(failed);
    }
    assert_eq!(
        settle_with(&store, &first, retry(), &first_failed).await,
        SettleResult::Applied,
        "sent again, it is the settle already applied"
    );
    assert_eq!(history(&store, &id).await, records);
    assert_eq!(store.counts(JobKind::Cleanup).await.unwrap().events.late, 0);
}

/// Found by an audit of job histories: a settle that Redis applied but whose reply was
/// lost (a timeout, a reset) is sent again by the worker's settler, the same settlement.
/// The second found the lease gone and recorded the run again, as `late`, though it had
/// been applied: one run, two records, and the worker told its lease was lost. The same
/// settlement again is now the one already applied, for a failure kept on the history
/// list as for a success kept short in the job's hash.
pub async fn a_settle_sent_again_after_its_reply_was_lost_records_the_run_once<S: JobStore>(store: S) {
    let failing = enqueue(&store, NewJob::new(cleanup("a1"))).await;
    let first = fetch_one(&store, "w1").await.unwrap();
    let failed = record(&first, "w1", AttemptOutcome::Failed, Some(err(ErrorClass::Transient)), None);
    let retry = || SettleAction::Retry {
        delay: Duration::from_secs(60),
        error: err(ErrorClass::Transient),
    };
    assert_eq!(settle_with(&store, &first, retry(), &failed).await, SettleResult::Applied);
    assert_eq!(
        settle_with(&store, &first, retry(), &failed).await,
        SettleResult::Applied,
        "sent again, it is the settle already applied"
    );
    assert_eq!(history(&store, &failing).await, vec![failed]);
    assert_eq!(state_of(&store, &failing).await, JobState::Retrying);

    let succeeding = enqueue(&store, NewJob::new(cleanup("a1"))).await;
    let second = fetch_one(&store, "w1").await.unwrap();
    assert_eq!(second.id, succeeding);
    let succeeded = record(&second, "w1", AttemptOutcome::Succeeded, None, Some(TRACE));
    let done = || SettleAction::Succeeded(json!({"deleted": 1}));
    assert_eq!(settle_with(&store, &second, done(), &succeeded).await, SettleResult::Applied);
    assert_eq!(settle_with(&store, &second, done(), &succeeded).await, SettleResult::Applied);
    assert_eq!(history(&store, &succeeding).await, vec![succeeded]);
    assert_eq!(state_of(&store, &succeeding).await, JobState::Succeeded);
}

/// Found by the fourth audits of 2026-12-07: a late run's record was dropped when its
/// job's record had no lease token (replayed after its lease was reclaimed), and a run
/// whose job had been purged was answered as late, so its worker logged that its result
/// was kept. The replayed job keeps the late record; the purged one is answered gone,
/// and nothing is written for it.
pub async fn a_replayed_job_keeps_a_late_record_and_a_purged_jobs_late_run_is_told_it_is_gone<S: JobStore>(store: S) {
    let id = enqueue(&store, NewJob::new(cleanup("a1")).max_attempts(1)).await;
    let first = store
        .fetch(JobKind::Cleanup, "w1", 1, Duration::from_millis(200))
        .await
        .unwrap()
        .jobs
        .pop()
        .unwrap();
    store
        .mark_started(JobKind::Cleanup, &[(first.id.clone(), first.token.clone())], Duration::from_secs(5))
        .await
        .unwrap();
    // Past its grace the lease is reclaimed, on its one attempt: the job is dead.
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(fetch_one(&store, "w2").await.is_none());
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(fetch_one(&store, "w2").await.is_none());
    assert_eq!(store.get(&id).await.unwrap().unwrap().state, JobState::Dead);
    assert_eq!(store.retry(&id).await.unwrap(), RetryOutcome::Queued);
    let w1_ended = record(&first, "w1", AttemptOutcome::Succeeded, None, None);
    let late = || SettleAction::Succeeded(json!({"by": "w1"}));
    assert_eq!(settle_with(&store, &first, late(), &w1_ended).await, SettleResult::LeaseLost);
    let job = store.get(&id).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Queued, "the late result changes nothing");
    let outcomes: Vec<(AttemptOutcome, bool)> = job.attempt_history.iter().map(|a| (a.outcome, a.late)).collect();
    assert_eq!(outcomes, vec![(AttemptOutcome::Lost, false), (AttemptOutcome::Succeeded, true)]);

    let second = fetch_one(&store, "w2").await.unwrap();
    let permanent = SettleAction::Dead(ErrorInfo {
        class: ErrorClass::Permanent,
        message: "no".into(),
    });
    let w2_failed = record(&second, "w2", AttemptOutcome::Failed, None, None);
    assert_eq!(settle_with(&store, &second, permanent, &w2_failed).await, SettleResult::Applied);
    assert_eq!(store.purge_dead(JobKind::Cleanup, std::slice::from_ref(&id)).await.unwrap(), 1);
    assert_eq!(settle_with(&store, &first, late(), &w1_ended).await, SettleResult::RecordGone);
    assert!(store.get(&id).await.unwrap().is_none(), "nothing is written for a gone job");
}
