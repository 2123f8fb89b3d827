//! The rules. Each takes a fresh, empty store.
mod account_cap;
mod attempts;
mod callbacks;
mod dispatch;
mod faults;
mod stats;

pub use account_cap::*;
pub use attempts::*;
pub use callbacks::*;
pub use dispatch::*;
pub use faults::*;
pub use stats::*;
use std::collections::HashSet;
use std::time::Duration;

use chrono::Utc;
use drover::job::*;
use drover::queue::*;
use serde_json::json;

pub const LEASE: Duration = Duration::from_secs(30);

pub fn cleanup(account: &str) -> JobPayload {
    JobPayload::from_json(
        JobKind::Cleanup,
        json!({"account_id": account, "marketplace_id": "ATVPDKIKX0DER", "skus": ["SKU-1"]}),
    )
    .unwrap()
}

pub fn sync(account: &str) -> JobPayload {
    JobPayload::from_json(
        JobKind::Sync,
        json!({"account_id": account, "marketplace_id": "ATVPDKIKX0DER", "resources": ["orders"]}),
    )
    .unwrap()
}

/// A sync of `account`'s orders in its second marketplace (France), beside [`sync`]'s.
pub fn sync_fr(account: &str) -> JobPayload {
    JobPayload::from_json(
        JobKind::Sync,
        json!({"account_id": account, "marketplace_id": "A13V1IB3VIYZZH", "resources": ["orders"]}),
    )
    .unwrap()
}

async fn fetch_one<S: JobStore>(store: &S, worker: &str) -> Option<Leased> {
    store.fetch(JobKind::Cleanup, worker, 1, LEASE).await.unwrap().jobs.pop()
}

pub fn attempt(l: &Leased, outcome: AttemptOutcome, error: Option<ErrorInfo>) -> Option<AttemptRecord> {
    Some(AttemptRecord {
        number: l.attempt,
        worker: "w1".into(),
        started_at: l.started_at,
        ended_at: Utc::now(),
        outcome,
        error,
        trace_id: None,
        late: false,
    })
}

/// A success for each of `leased`, as its worker would report it.
pub fn successes<'a>(leased: impl IntoIterator<Item = &'a Leased>) -> Vec<Settlement> {
    leased
        .into_iter()
        .map(|l| Settlement {
            id: l.id.clone(),
            token: l.token.clone(),
            action: SettleAction::Succeeded(json!({})),
            attempt: None,
        })
        .collect()
}

/// Enqueues `n` cleanup jobs over seven sellers and settles each one succeeded: finished
/// jobs for the retention trim to find.
pub async fn succeeded_jobs<S: JobStore>(store: &S, n: usize) {
    ended_jobs(store, n, || SettleAction::Succeeded(json!({}))).await;
}

/// The same, each one dead (a permanent failure): for the dead cap.
pub async fn dead_jobs<S: JobStore>(store: &S, n: usize) {
    ended_jobs(store, n, || SettleAction::Dead(err(ErrorClass::Permanent))).await;
}

async fn ended_jobs<S: JobStore>(store: &S, n: usize, end: impl Fn() -> SettleAction) {
    for i in 0..n {
        let payload = JobPayload::from_json(
            JobKind::Cleanup,
            json!({"account_id": format!("seller-{}", i % 7), "marketplace_id": "ATVPDKIKX0DER", "skus": ["SKU-1"]}),
        )
        .unwrap();
        store.enqueue(NewJob::new(payload)).await.unwrap();
    }
    let mut settled = 0;
    while settled < n {
        let leased = store
            .fetch(JobKind::Cleanup, "w1", 100, Duration::from_secs(30))
            .await
            .unwrap()
            .jobs;
        assert!(!leased.is_empty(), "every job is leased");
        let s: Vec<Settlement> = leased
            .iter()
            .map(|l| Settlement {
                id: l.id.clone(),
                token: l.token.clone(),
                action: end(),
                attempt: None,
            })
            .collect();
        store.settle(JobKind::Cleanup, &s).await.unwrap();
        settled += s.len();
    }
}

fn err(class: ErrorClass) -> ErrorInfo {
    ErrorInfo {
        class,
        message: format!("{class:?} failure"),
    }
}

async fn settle<S: JobStore>(store: &S, l: &Leased, action: SettleAction, outcome: AttemptOutcome) -> SettleResult {
    let error = match &action {
        SettleAction::Retry { error, .. }
        | SettleAction::Snooze { error, .. }
        | SettleAction::Dead(error)
        | SettleAction::Cancelled(error) => Some(error.clone()),
        _ => None,
    };
    let s = Settlement {
        id: l.id.clone(),
        token: l.token.clone(),
        action,
        attempt: attempt(l, outcome, error),
    };
    store.settle(l.id.kind(), &[s]).await.unwrap()[0]
}

async fn state_of<S: JobStore>(store: &S, id: &JobId) -> JobState {
    store.get(id).await.unwrap().expect("job exists").state
}

async fn enqueue<S: JobStore>(store: &S, job: NewJob) -> JobId {
    store.enqueue(job).await.unwrap().id
}

pub async fn an_enqueued_job_is_queued_with_its_payload_and_no_attempts<S: JobStore>(store: S) {
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let e = store.enqueue(NewJob::new(cleanup("a1")).traceparent(tp)).await.unwrap();
    assert!(e.created);
    assert_eq!(e.state, JobState::Queued);
    assert_eq!(e.id.kind(), JobKind::Cleanup);
    assert_eq!(e.id.bucket(), Some(bucket_of("a1")), "the id names the account's bucket");
    let job = store.get(&e.id).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Queued);
    assert_eq!(job.attempts, 0);
    assert_eq!(job.max_attempts, 3);
    assert_eq!(job.account_id.as_deref(), Some("a1"));
    assert_eq!(job.payload["skus"], json!(["SKU-1"]));
    assert_eq!(job.trace_id.as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
    assert!(job.attempt_history.is_empty());
}

pub async fn a_delayed_job_is_scheduled_and_runs_only_once_due<S: JobStore>(store: S) {
    let id = enqueue(&store, NewJob::new(cleanup("a1")).delay(Duration::from_millis(400))).await;
    assert_eq!(state_of(&store, &id).await, JobState::Scheduled);
    let f = store.fetch(JobKind::Cleanup, "w1", 10, LEASE).await.unwrap();
    assert!(f.jobs.is_empty(), "a job must not run before it is due");
    let due = f.next_due.expect("the fetch reports when the next job falls due");
    assert!(due <= Duration::from_millis(400), "{due:?}");
    tokio::time::sleep(due + Duration::from_millis(20)).await;
    let l = fetch_one(&store, "w1").await.expect("due job is handed out");
    assert_eq!(l.id, id);
}

/// On one partition, a fetch short of what it asked for says the lanes are drained and
/// how long until something falls due (here the lease it just made), so the fetcher
/// waits for a wake-up instead of asking again at once; a full batch says neither.
pub async fn a_short_fetch_says_the_queue_is_drained_and_when_next_due<S: JobStore>(store: S) {
    for _ in 0..3 {
        enqueue(&store, NewJob::new(cleanup("a1"))).await;
    }
    let full = store.fetch(JobKind::Cleanup, "w1", 2, LEASE).await.unwrap();
    assert_eq!(full.jobs.len(), 2);
    assert!(!full.drained, "a full batch may leave more behind");
    let short = store.fetch(JobKind::Cleanup, "w1", 5, LEASE).await.unwrap();
    assert_eq!(short.jobs.len(), 1);
    assert!(short.drained, "one of five wanted: nothing more is ready");
    let due = short.next_due.expect("a short fetch says when to look again (its leases fall due)");
    assert!(due <= LEASE, "{due:?}");
    let empty = store.fetch(JobKind::Cleanup, "w1", 5, LEASE).await.unwrap();
    assert!(empty.jobs.is_empty() && empty.drained);
}

pub async fn higher_priority_runs_first_and_equal_priority_in_order<S: JobStore>(store: S) {
    let low1 = enqueue(&store, NewJob::new(cleanup("a1"))).await;
    let low2 = enqueue(&store, NewJob::new(cleanup("a1"))).await;
    let high = enqueue(&store, NewJob::new(cleanup("a1")).priority(9)).await;
    let f = store.fetch(JobKind::Cleanup, "w1", 3, LEASE).await.unwrap();
    let order: Vec<JobId> = f.jobs.into_iter().map(|l| l.id).collect();
    assert_eq!(order, vec![high, low1, low2]);
}

pub async fn a_fetched_job_is_running_and_leased_to_one_worker_only<S: JobStore>(store: S) {
    let id = enqueue(&store, NewJob::new(cleanup("a1"))).await;
    let l = fetch_one(&store, "w1").await.unwrap();
    assert_eq!((l.id.clone(), l.attempt), (id.clone(), 1));
    assert!(l.payload.is_ok());
    assert!(
        fetch_one(&store, "w2").await.is_none(),
        "a leased job must not be handed to a second worker"
    );
    let job = store.get(&id).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Running);
    assert_eq!(job.worker.as_deref(), Some("w1"));
    assert_eq!(job.attempts, 1);
}

pub async fn a_successful_run_is_recorded_with_its_result_and_attempt<S: JobStore>(store: S) {
    let id = enqueue(&store, NewJob::new(cleanup("a1"))).await;
    let l = fetch_one(&store, "w1").await.unwrap();
    let r = settle(
        &store,
        &l,
        SettleAction::Succeeded(json!({"deleted": 1})),
        AttemptOutcome::Succeeded,
    )
    .await;
    assert_eq!(r, SettleResult::Applied);
    let job = store.get(&id).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Succeeded);
    assert_eq!(job.result, Some(json!({"deleted": 1})));
    assert!(job.finished_at.is_some());
    assert_eq!(job.attempt_history.len(), 1);
    assert_eq!(job.attempt_history[0].outcome, AttemptOutcome::Succeeded);
    assert_eq!(job.attempt_history[0].number, 1);
}

pub async fn a_transient_failure_with_attempts_left_is_retried_later<S: JobStore>(store: S) {
    let id = enqueue(&store, NewJob::new(cleanup("a1"))).await;
    let l = fetch_one(&store, "w1").await.unwrap();
    let action = SettleAction::Retry {
        delay: Duration::from_millis(300),
        error: err(ErrorClass::Transient),
    };
    settle(&store, &l, action, AttemptOutcome::Failed).await;
    let job = store.get(&id).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Retrying);
    assert_eq!(job.last_error.as_ref().map(|e| e.class), Some(ErrorClass::Transient));
    assert!(fetch_one(&store, "w1").await.is_none(), "the retry waits for its backoff");
    tokio::time::sleep(Duration::from_millis(350)).await;
    let again = fetch_one(&store, "w1").await.expect("retried after the backoff");
    assert_eq!(again.attempt, 2);
    let job = store.get(&id).await.unwrap().unwrap();
    assert_eq!(job.attempt_history.len(), 1);
    assert_eq!(job.attempt_history[0].error.as_ref().unwrap().class, ErrorClass::Transient);
}

pub async fn a_rate_limited_run_is_snoozed_without_using_an_attempt<S: JobStore>(store: S) {
    let id = enqueue(&store, NewJob::new(cleanup("a1"))).await;
    let l = fetch_one(&store, "w1").await.unwrap();
    let action = SettleAction::Snooze {
        delay: Duration::from_millis(200),
        error: err(ErrorClass::RateLimited),
        advanced: false,
    };
    settle(&store, &l, action, AttemptOutcome::Snoozed).await;
    let job = store.get(&id).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Scheduled);
    assert_eq!(job.attempts, 0, "a snooze gives the attempt back");
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(fetch_one(&store, "w1").await.unwrap().attempt, 1);
}

pub async fn a_permanent_failure_goes_to_dead_at_once<S: JobStore>(store: S) {
    let id = enqueue(&store, NewJob::new(cleanup("a1")).max_attempts(10)).await;
    let l = fetch_one(&store, "w1").await.unwrap();
    settle(&store, &l, SettleAction::Dead(err(ErrorClass::Permanent)), AttemptOutcome::Failed).await;
    let job = store.get(&id).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Dead);
    assert_eq!(job.last_error.unwrap().class, ErrorClass::Permanent);
    let dead = store
        .list(&ListQuery {
            state: Some(JobState::Dead),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(dead.jobs.iter().map(|j| j.id.clone()).collect::<Vec<_>>(), vec![id]);
}

pub async fn running_out_of_attempts_goes_to_dead<S: JobStore>(store: S) {
    let id = enqueue(&store, NewJob::new(cleanup("a1")).max_attempts(2)).await;
    for n in 1..=2u32 {
        let l = fetch_one(&store, "w1").await.expect("attempt is handed out");
        assert_eq!(l.attempt, n);
        let fate = decide(
            &err(ErrorClass::Transient),
            None,
            l.attempt,
            l.max_attempts,
            &RetryPolicy {
                base: Duration::from_millis(1),
                max: Duration::from_millis(1),
            },
            1.0,
        );
        let action = match fate {
            Fate::Retry(delay) => SettleAction::Retry {
                delay,
                error: err(ErrorClass::Transient),
            },
            Fate::Dead => SettleAction::Dead(err(ErrorClass::Transient)),
            other => panic!("unexpected fate {other:?}"),
        };
        settle(&store, &l, action, AttemptOutcome::Failed).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let job = store.get(&id).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Dead);
    assert_eq!(job.attempts, 2);
    assert_eq!(job.attempt_history.len(), 2);
    assert!(fetch_one(&store, "w1").await.is_none());
}

/// The only queued job leased to w1 for 200 ms, left unrenewed and reclaimed by w2
/// after its grace: (w1's lease, w2's).
async fn leased_then_reclaimed<S: JobStore>(store: &S) -> (Leased, Leased) {
    let first = store
        .fetch(JobKind::Cleanup, "w1", 1, Duration::from_millis(200))
        .await
        .unwrap()
        .jobs
        .pop()
        .unwrap();
    assert!(fetch_one(store, "w2").await.is_none());
    tokio::time::sleep(Duration::from_millis(250)).await;
    // The first pass past the expiry only marks it: its holder gets half a lease more.
    assert!(
        fetch_one(store, "w2").await.is_none(),
        "a lease that just ran out gets a grace period"
    );
    tokio::time::sleep(Duration::from_millis(150)).await;
    let second = fetch_one(store, "w2")
        .await
        .expect("the lease unrenewed through its grace is reclaimed");
    (first, second)
}

pub async fn an_expired_lease_is_reclaimed_and_the_late_result_changes_nothing<S: JobStore>(store: S) {
    let id = enqueue(&store, NewJob::new(cleanup("a1"))).await;
    let (first, second) = leased_then_reclaimed(&store).await;
    assert_eq!(second.id, id);
    assert_eq!(second.attempt, 2, "a lost run counts as an attempt");
    let late = settle(
        &store,
        &first,
        SettleAction::Succeeded(json!({"late": true})),
        AttemptOutcome::Succeeded,
    )
    .await;
    assert_eq!(late, SettleResult::LeaseLost);
    let job = store.get(&id).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Running, "the late result must not finish the job");
    assert_eq!(job.worker.as_deref(), Some("w2"));
    let outcomes: Vec<(AttemptOutcome, bool)> = job.attempt_history.iter().map(|a| (a.outcome, a.late)).collect();
    assert_eq!(outcomes, vec![(AttemptOutcome::Lost, false), (AttemptOutcome::Succeeded, true)]);
    assert_eq!(
        settle(&store, &second, SettleAction::Succeeded(json!({})), AttemptOutcome::Succeeded).await,
        SettleResult::Applied
    );
    assert_eq!(state_of(&store, &id).await, JobState::Succeeded);
}

pub async fn a_renewed_lease_is_never_reclaimed<S: JobStore>(store: S) {
    enqueue(&store, NewJob::new(cleanup("a1"))).await;
    let lease = Duration::from_millis(300);
    let l = store.fetch(JobKind::Cleanup, "w1", 1, lease).await.unwrap().jobs.pop().unwrap();
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let report = store
            .extend_leases(JobKind::Cleanup, &[(l.id.clone(), l.token.clone())], lease, Duration::from_secs(5))
            .await
            .unwrap();
        assert!(report.lost.is_empty());
        assert!(fetch_one(&store, "w2").await.is_none(), "a renewed lease must not be taken");
    }
}

pub async fn cancelling_queued_or_scheduled_jobs_ends_them_at_once<S: JobStore>(store: S) {
    let queued = enqueue(&store, NewJob::new(cleanup("a1"))).await;
    let scheduled = enqueue(&store, NewJob::new(cleanup("a1")).delay(Duration::from_secs(60))).await;
    assert_eq!(store.cancel(&queued).await.unwrap(), CancelOutcome::Cancelled);
    assert_eq!(store.cancel(&scheduled).await.unwrap(), CancelOutcome::Cancelled);
    assert_eq!(state_of(&store, &queued).await, JobState::Cancelled);
    assert_eq!(state_of(&store, &scheduled).await, JobState::Cancelled);
    assert!(store.fetch(JobKind::Cleanup, "w1", 10, LEASE).await.unwrap().jobs.is_empty());
    assert_eq!(
        store.cancel(&queued).await.unwrap(),
        CancelOutcome::AlreadyTerminal(JobState::Cancelled)
    );
    let missing: JobId = JobId::new(JobKind::Cleanup);
    assert_eq!(store.cancel(&missing).await.unwrap(), CancelOutcome::NotFound);
}

pub async fn cancelling_a_running_job_tells_its_worker<S: JobStore>(store: S) {
    let id = enqueue(&store, NewJob::new(cleanup("a1"))).await;
    let l = fetch_one(&store, "w1").await.unwrap();
    assert_eq!(store.cancel(&id).await.unwrap(), CancelOutcome::Requested);
    let report = store
        .extend_leases(JobKind::Cleanup, &[(l.id.clone(), l.token.clone())], LEASE, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(report.cancel_requested, vec![id.clone()]);
    settle(
        &store,
        &l,
        SettleAction::Cancelled(err(ErrorClass::Cancelled)),
        AttemptOutcome::Cancelled,
    )
    .await;
    assert_eq!(state_of(&store, &id).await, JobState::Cancelled);
}

/// Found by the visibility audit of 2026-12-06: a run that ended in a failure while a
/// cancel was pending was answered `Applied`, and its worker counted the job dead
/// (`drover_jobs_finished_total{outcome="dead"}`, the dead-letter alert's input) though
/// the queue ended it cancelled. The answer says how the job ended when that differs.
pub async fn a_settle_the_queue_ends_otherwise_says_how_it_ended<S: JobStore>(store: S) {
    let id = enqueue(&store, NewJob::new(cleanup("a1"))).await;
    let l = fetch_one(&store, "w1").await.unwrap();
    assert_eq!(store.cancel(&id).await.unwrap(), CancelOutcome::Requested);
    let s = Settlement {
        id: l.id.clone(),
        token: l.token.clone(),
        action: SettleAction::Dead(err(ErrorClass::Permanent)),
        attempt: attempt(&l, AttemptOutcome::Failed, Some(err(ErrorClass::Permanent))),
    };
    let r = store.settle(JobKind::Cleanup, std::slice::from_ref(&s)).await.unwrap();
    assert_eq!(r, vec![SettleResult::AppliedAs(JobState::Cancelled)]);
    assert_eq!(state_of(&store, &id).await, JobState::Cancelled);
    // The same settle sent again (its first reply was lost) says the same (found by the
    // review of 2026-12-06's diffs: it answered plain `Applied`, and the worker counted
    // a death the queue never recorded).
    let again = store.settle(JobKind::Cleanup, std::slice::from_ref(&s)).await.unwrap();
    assert_eq!(again, vec![SettleResult::AppliedAs(JobState::Cancelled)]);
    // As asked: plain `Applied`.
    let id = enqueue(&store, NewJob::new(cleanup("a2"))).await;
    let l = fetch_one(&store, "w1").await.unwrap();
    let r = settle(&store, &l, SettleAction::Dead(err(ErrorClass::Permanent)), AttemptOutcome::Failed).await;
    assert_eq!(r, SettleResult::Applied);
    assert_eq!(state_of(&store, &id).await, JobState::Dead);
}

pub async fn a_released_job_goes_back_to_queued_without_using_an_attempt<S: JobStore>(store: S) {
    let id = enqueue(&store, NewJob::new(cleanup("a1"))).await;
    let l = fetch_one(&store, "w1").await.unwrap();
    let s = Settlement {
        id: l.id.clone(),
        token: l.token.clone(),
        action: SettleAction::Release,
        attempt: None,
    };
    assert_eq!(store.settle(JobKind::Cleanup, &[s]).await.unwrap(), vec![SettleResult::Applied]);
    let job = store.get(&id).await.unwrap().unwrap();
    assert_eq!((job.state, job.attempts), (JobState::Queued, 0));
    assert_eq!(fetch_one(&store, "w2").await.unwrap().attempt, 1);
}

/// Runs `id` until it is dead, each run failing transiently and its fate decided as a
/// worker would; the run numbers it was handed.
async fn fail_until_dead<S: JobStore>(store: &S, id: &JobId) -> Vec<u32> {
    let mut numbers = Vec::new();
    while state_of(store, id).await != JobState::Dead {
        let l = fetch_one(store, "w1").await.expect("a run is handed out");
        numbers.push(l.attempt);
        let fast = RetryPolicy {
            base: Duration::from_millis(1),
            max: Duration::from_millis(1),
        };
        let action = match decide(&err(ErrorClass::Transient), None, l.attempt, l.max_attempts, &fast, 1.0) {
            Fate::Retry(delay) => SettleAction::Retry {
                delay,
                error: err(ErrorClass::Transient),
            },
            Fate::Dead => SettleAction::Dead(err(ErrorClass::Transient)),
            other => panic!("unexpected fate {other:?}"),
        };
        settle(store, &l, action, AttemptOutcome::Failed).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(numbers.len() < 20, "never dead: {numbers:?}");
    }
    numbers
}

/// A replay gives the job its own budget of attempts again, on top of the runs it has
/// had: run numbers go on (no two runs of its history share a number) and
/// `max_attempts` grows by the budget each time.
pub async fn a_dead_job_can_be_retried_with_a_fresh_budget<S: JobStore>(store: S) {
    let id = enqueue(&store, NewJob::new(cleanup("a1")).max_attempts(2)).await;
    assert_eq!(fail_until_dead(&store, &id).await, vec![1, 2]);
    assert_eq!(store.retry(&id).await.unwrap(), RetryOutcome::Queued);
    let job = store.get(&id).await.unwrap().unwrap();
    assert_eq!((job.state, job.attempts, job.max_attempts), (JobState::Queued, 2, 4));
    assert_eq!(job.attempt_history.len(), 2, "history is kept across a retry");
    assert_eq!(store.retry(&id).await.unwrap(), RetryOutcome::WrongState(JobState::Queued));
    assert_eq!(fail_until_dead(&store, &id).await, vec![3, 4], "a full budget, numbered on");
    assert_eq!(store.retry(&id).await.unwrap(), RetryOutcome::Queued);
    assert_eq!(
        store.get(&id).await.unwrap().unwrap().max_attempts,
        6,
        "the budget, not the total, is added"
    );
    let l = fetch_one(&store, "w1").await.unwrap();
    assert_eq!(l.attempt, 5);
    settle(&store, &l, SettleAction::Succeeded(json!({})), AttemptOutcome::Succeeded).await;
    let job = store.get(&id).await.unwrap().unwrap();
    let numbers: Vec<u32> = job.attempt_history.iter().map(|a| a.number).collect();
    assert_eq!(numbers, vec![1, 2, 3, 4, 5], "{:?}", job.attempt_history);
    assert_eq!(job.attempts, 5);
}

pub async fn the_same_idempotency_key_and_body_return_the_same_job<S: JobStore>(store: S) {
    let a = store.enqueue(NewJob::new(cleanup("a1")).idempotency_key("k1")).await.unwrap();
    let b = store.enqueue(NewJob::new(cleanup("a1")).idempotency_key("k1")).await.unwrap();
    assert!(a.created && !b.created);
    assert_eq!(a.id, b.id);
    let all = store
        .list(&ListQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.jobs.len(), 1);
}

pub async fn the_same_idempotency_key_with_another_body_is_a_conflict<S: JobStore>(store: S) {
    let a = store.enqueue(NewJob::new(cleanup("a1")).idempotency_key("k1")).await.unwrap();
    match store.enqueue(NewJob::new(cleanup("a2")).idempotency_key("k1")).await {
        Err(EnqueueError::IdempotencyConflict { existing }) => assert_eq!(existing, a.id),
        other => panic!("expected a conflict, got {other:?}"),
    }
}

pub async fn a_second_sync_for_an_account_returns_the_existing_one<S: JobStore>(store: S) {
    let first = store.enqueue(NewJob::new(sync("a1"))).await.unwrap();
    let second = store.enqueue(NewJob::new(sync("a1"))).await.unwrap();
    assert!(first.created && !second.created);
    assert_eq!(first.id, second.id);
    let other_account = store.enqueue(NewJob::new(sync("a2"))).await.unwrap();
    assert!(other_account.created);
    // Once the first ends, a new sync for the account is accepted.
    let l = store.fetch(JobKind::Sync, "w1", 1, LEASE).await.unwrap().jobs.pop().unwrap();
    assert_eq!(l.id, first.id);
    let running_dup = store.enqueue(NewJob::new(sync("a1"))).await.unwrap();
    assert_eq!(running_dup.id, first.id, "a running sync also holds the account");
    settle(&store, &l, SettleAction::Succeeded(json!({})), AttemptOutcome::Succeeded).await;
    let third = store.enqueue(NewJob::new(sync("a1"))).await.unwrap();
    assert!(third.created);
    assert_ne!(third.id, first.id);
}

/// Found by the scheduler audit of 2026-12-07: a sync walks one marketplace, and one
/// for another of the account's marketplaces, submitted while the first was under way,
/// was answered with the first — that marketplace was never synced. It is made beside
/// it; a sync of the same marketplace is still the one under way.
pub async fn a_sync_of_another_marketplace_is_not_the_accounts_sync_under_way<S: JobStore>(store: S) {
    let fr = sync_fr;
    let first = store.enqueue(NewJob::new(sync("a1"))).await.unwrap();
    let other = store.enqueue(NewJob::new(fr("a1"))).await.unwrap();
    assert!(other.created, "another marketplace's sync is made");
    assert_ne!(other.id, first.id);
    let again = store.enqueue(NewJob::new(sync("a1"))).await.unwrap();
    assert_eq!(
        (again.created, &again.id),
        (false, &first.id),
        "the same marketplace's is the one under way"
    );
}

/// Found by the review of the fix above: a sync made earlier in the same enqueue call (a
/// bulk, or single submits committed together) has no lane entry yet when a later
/// request of the call is answered with it, so it kept the priority it was made with in
/// its lane while its record said the higher one. Here one bulk holds the account's sync
/// of one marketplace at priority 3, then two of another at 0 and at 7.
pub async fn a_sync_asked_again_more_urgently_in_the_same_call_takes_the_priority_on<S: JobStore>(store: S) {
    let fr = sync_fr("a1");
    let answers = store
        .enqueue_bulk(vec![
            NewJob::new(sync("a1")).priority(3),
            NewJob::new(fr.clone()),
            NewJob::new(fr).priority(7),
        ])
        .await
        .unwrap();
    let answers: Vec<Enqueued> = answers.into_iter().map(|a| a.unwrap()).collect();
    assert!(answers[0].created && answers[1].created);
    assert_eq!((answers[2].created, &answers[2].id), (false, &answers[1].id));
    let job = store.get(&answers[1].id).await.unwrap().unwrap();
    assert_eq!(job.priority, 7);
    let l = store.fetch(JobKind::Sync, "w1", 1, LEASE).await.unwrap().jobs.pop().unwrap();
    assert_eq!(l.id, answers[1].id, "the sync now of priority 7 goes ahead of the one of 3");
}

/// Found by the fifth audits of 2026-12-06 (a known limit until now): a sync submitted
/// while the account's sync of its marketplace was queued returned that one and kept
/// none of the new request's priority, so an urgent sync waited behind the account's
/// routine jobs as the routine one it was answered with. A queued sync asked again with
/// a higher priority takes it on: its record says so and it moves up its lane. A lower
/// one changes nothing. Here the account's two marketplaces each have a queued sync.
pub async fn a_queued_sync_asked_again_more_urgently_takes_the_priority_on<S: JobStore>(store: S) {
    // A sync parked by its seller's limits takes it on too, for when it is due.
    let parked = enqueue(&store, NewJob::new(sync("a2"))).await;
    let l = store.fetch(JobKind::Sync, "w1", 1, LEASE).await.unwrap().jobs.pop().unwrap();
    let limited = ErrorInfo {
        class: ErrorClass::RateLimited,
        message: "rate limited for 60s: getOrders: rate limited (retry after 60s)".into(),
    };
    let park = SettleAction::Snooze {
        delay: Duration::from_secs(60),
        error: limited,
        advanced: false,
    };
    settle(&store, &l, park, AttemptOutcome::Snoozed).await;
    let sooner = store.enqueue(NewJob::new(sync("a2")).priority(5)).await.unwrap();
    assert_eq!((sooner.created, &sooner.id), (false, &parked));
    assert_eq!(store.get(&parked).await.unwrap().unwrap().priority, 5);
    // A queued one moves up its account's lane, ahead of the account's other sync.
    let fr = sync_fr("a1");
    let first = store.enqueue(NewJob::new(sync("a1"))).await.unwrap();
    let beside = store.enqueue(NewJob::new(fr.clone())).await.unwrap();
    assert!(first.created && beside.created);
    let urgent = store.enqueue(NewJob::new(fr.clone()).priority(7)).await.unwrap();
    assert_eq!((urgent.created, &urgent.id), (false, &beside.id));
    let calmer = store.enqueue(NewJob::new(fr).priority(2)).await.unwrap();
    assert_eq!((calmer.created, &calmer.id), (false, &beside.id));
    let job = store.get(&beside.id).await.unwrap().unwrap();
    assert_eq!(
        (job.state, job.priority),
        (JobState::Queued, 7),
        "the higher priority asked for stays"
    );
    let l = store.fetch(JobKind::Sync, "w1", 1, LEASE).await.unwrap().jobs.pop().unwrap();
    assert_eq!(l.id, beside.id, "the urgent sync goes first in its account's lane");
}

/// Found by the seventh audits of 2026-12-07: a sync of one marketplace made beside the
/// account's sync of another was not de-duplicated — `excl:<account>` names the first —
/// so every further sync of its marketplace submitted while the first was under way was
/// made again, each spending calls of the seller's budget. The sync made beside is that
/// marketplace's sync under way, also once the first has ended.
pub async fn a_sync_made_beside_another_marketplaces_is_its_marketplaces_sync_under_way<S: JobStore>(store: S) {
    let fr = sync_fr("a1");
    let first = store.enqueue(NewJob::new(sync("a1"))).await.unwrap();
    let beside = store.enqueue(NewJob::new(fr.clone())).await.unwrap();
    assert!(beside.created && beside.id != first.id);
    let again = store.enqueue(NewJob::new(fr.clone())).await.unwrap();
    assert_eq!(
        (again.created, &again.id),
        (false, &beside.id),
        "a second sync of the marketplace made beside is that one"
    );
    // The first ends; the one made beside is still under way, queued.
    let l = store.fetch(JobKind::Sync, "w1", 1, LEASE).await.unwrap().jobs.pop().unwrap();
    assert_eq!(l.id, first.id);
    settle(&store, &l, SettleAction::Succeeded(json!({})), AttemptOutcome::Succeeded).await;
    let after = store.enqueue(NewJob::new(fr.clone())).await.unwrap();
    assert_eq!(
        (after.created, &after.id),
        (false, &beside.id),
        "the account's first sync ended: the one made beside is still its marketplace's"
    );
    // With it running, the first marketplace's next sync is made, and de-duplicated in turn.
    let running = store.fetch(JobKind::Sync, "w1", 1, LEASE).await.unwrap().jobs.pop().unwrap();
    assert_eq!(running.id, beside.id);
    let next = store.enqueue(NewJob::new(sync("a1"))).await.unwrap();
    assert!(next.created, "the first marketplace has no sync under way");
    let next_again = store.enqueue(NewJob::new(sync("a1"))).await.unwrap();
    assert_eq!((next_again.created, &next_again.id), (false, &next.id));
    let running_dup = store.enqueue(NewJob::new(fr.clone())).await.unwrap();
    assert_eq!(
        (running_dup.created, &running_dup.id),
        (false, &beside.id),
        "a running sync holds its marketplace"
    );
    // Once it ends, its marketplace's next sync is made.
    settle(&store, &running, SettleAction::Succeeded(json!({})), AttemptOutcome::Succeeded).await;
    let fresh = store.enqueue(NewJob::new(fr)).await.unwrap();
    assert!(fresh.created && fresh.id != beside.id, "an ended sync holds nothing");
}

/// Found by the review of the eighth stop of 2026-12-07: a retry of a sync checked only
/// the account's `excl:` holder, so with none under way there it brought a sync back
/// beside one of its marketplace made beside another's — two syncs of one marketplace
/// under way. It is refused as busy with that one, as with the holder.
pub async fn a_retried_sync_is_refused_while_its_marketplaces_sync_made_beside_is_under_way<S: JobStore>(store: S) {
    let fr = sync_fr("a1");
    let old = store.enqueue(NewJob::new(fr.clone())).await.unwrap();
    assert_eq!(store.cancel(&old.id).await.unwrap(), CancelOutcome::Cancelled);
    let first = store.enqueue(NewJob::new(sync("a1"))).await.unwrap();
    let beside = store.enqueue(NewJob::new(fr)).await.unwrap();
    assert!(beside.created && beside.id != first.id);
    // The account's first sync ends: `excl:` holds nothing under way.
    let l = store.fetch(JobKind::Sync, "w1", 1, LEASE).await.unwrap().jobs.pop().unwrap();
    assert_eq!(l.id, first.id);
    settle(&store, &l, SettleAction::Succeeded(json!({})), AttemptOutcome::Succeeded).await;
    assert_eq!(
        store.retry(&old.id).await.unwrap(),
        RetryOutcome::AccountBusy(beside.id.clone()),
        "its marketplace's sync is under way"
    );
    // Once that one has ended, the retry goes.
    let l = store.fetch(JobKind::Sync, "w1", 1, LEASE).await.unwrap().jobs.pop().unwrap();
    assert_eq!(l.id, beside.id);
    settle(&store, &l, SettleAction::Succeeded(json!({})), AttemptOutcome::Succeeded).await;
    assert_eq!(store.retry(&old.id).await.unwrap(), RetryOutcome::Queued);
}

/// Found by the fifth audits of 2026-12-06: a sync submitted while the account's sync was
/// under way returned that one whatever it asked for, so a sync of `listings` submitted
/// while one of `orders` waited never synced the listings. A sync under way is the new
/// one only when it covers it (its resources and `since`); one still queued takes the
/// missing resources on; otherwise the new one is made, after it.
pub async fn a_sync_under_way_that_does_not_cover_a_new_one_takes_it_on_or_is_followed<S: JobStore>(store: S) {
    let asking = |resources: serde_json::Value, since: Option<&str>| {
        let mut p = json!({"account_id": "a1", "marketplace_id": "ATVPDKIKX0DER", "resources": resources});
        if let Some(t) = since {
            p["since"] = json!(t);
        }
        NewJob::new(JobPayload::from_json(JobKind::Sync, p).unwrap())
    };
    let first = store.enqueue(asking(json!(["orders"]), None)).await.unwrap();
    let listings = store.enqueue(asking(json!(["listings"]), None)).await.unwrap();
    assert_eq!((listings.created, &listings.id), (false, &first.id), "the queued sync takes it on");
    let record = store.get(&first.id).await.unwrap().unwrap();
    assert_eq!(record.payload["resources"], json!(["orders", "listings"]), "{:?}", record.payload);
    // Running, it covers what it was widened to, and nothing it was not.
    let l = store.fetch(JobKind::Sync, "w1", 1, LEASE).await.unwrap().jobs.pop().unwrap();
    assert_eq!(l.id, first.id);
    let both = store.enqueue(asking(json!(["listings", "orders"]), None)).await.unwrap();
    assert_eq!((both.created, &both.id), (false, &first.id));
    let later = store
        .enqueue(asking(json!(["orders"]), Some("2026-01-01T00:00:00Z")))
        .await
        .unwrap();
    assert!(later.created, "another `since` than the running sync's is a sync of its own");
    let again = store
        .enqueue(asking(json!(["orders"]), Some("2026-01-01T00:00:00Z")))
        .await
        .unwrap();
    assert_eq!((again.created, &again.id), (false, &later.id), "and is then the account's sync");
}

pub async fn a_paused_queue_hands_out_nothing_until_resumed<S: JobStore>(store: S) {
    enqueue(&store, NewJob::new(cleanup("a1"))).await;
    store.set_paused(JobKind::Cleanup, true).await.unwrap();
    assert!(fetch_one(&store, "w1").await.is_none());
    assert!(store.counts(JobKind::Cleanup).await.unwrap().paused);
    store.set_paused(JobKind::Cleanup, false).await.unwrap();
    assert!(fetch_one(&store, "w1").await.is_some());
}

pub async fn counts_follow_every_state<S: JobStore>(store: S) {
    for _ in 0..3 {
        enqueue(&store, NewJob::new(cleanup("a1"))).await;
    }
    enqueue(&store, NewJob::new(cleanup("a1")).delay(Duration::from_secs(60))).await;
    let running = store.fetch(JobKind::Cleanup, "w1", 2, LEASE).await.unwrap().jobs;
    settle(&store, &running[0], SettleAction::Succeeded(json!({})), AttemptOutcome::Succeeded).await;
    let c = store.counts(JobKind::Cleanup).await.unwrap();
    assert_eq!((c.queued, c.scheduled, c.running, c.succeeded, c.dead), (1, 1, 1, 1, 0));
    assert_eq!(c.succeeded_total, 1);
    // A partial ending is not a success (the visibility audit of 2026-12-06 found it
    // counted as one in `succeeded_total`).
    settle(&store, &running[1], SettleAction::Partial(json!({})), AttemptOutcome::Partial).await;
    let c = store.counts(JobKind::Cleanup).await.unwrap();
    assert_eq!((c.running, c.succeeded, c.succeeded_total), (0, 1, 1));
}

/// The queued count is a counter kept beside the lanes (no index of its own): it must
/// follow every way a job joins or leaves a lane, and agree with the queued listing.
pub async fn the_queued_count_follows_every_way_into_and_out_of_the_lanes<S: JobStore>(store: S) {
    async fn queued<S: JobStore>(store: &S) -> (u64, usize) {
        let c = store.counts(JobKind::Cleanup).await.unwrap();
        let listed = store
            .list(&ListQuery {
                state: Some(JobState::Queued),
                kinds: vec![JobKind::Cleanup],
                limit: 100,
                ..Default::default()
            })
            .await
            .unwrap()
            .jobs;
        assert!(listed.iter().all(|j| j.state == JobState::Queued), "{listed:?}");
        (c.queued, listed.len())
    }
    assert_eq!(queued(&store).await, (0, 0), "an empty queue");
    // single, bulk, and an idempotent repeat that adds nothing
    let first = enqueue(&store, NewJob::new(cleanup("a1")).idempotency_key("k1")).await;
    let bulk: Vec<NewJob> = ["a1", "a2", "a2", "a3", "a4"].iter().map(|a| NewJob::new(cleanup(a))).collect();
    for r in store.enqueue_bulk(bulk).await.unwrap() {
        r.unwrap();
    }
    assert_eq!(enqueue(&store, NewJob::new(cleanup("a1")).idempotency_key("k1")).await, first);
    assert_eq!(queued(&store).await, (6, 6), "every job enqueued, the repeat not again");
    // cancelled while queued
    assert_eq!(store.cancel(&first).await.unwrap(), CancelOutcome::Cancelled);
    assert_eq!(queued(&store).await, (5, 5));
    // Fetches until `n` are leased (one fetch visits the partitions in turn).
    async fn take<S: JobStore>(store: &S, n: usize) -> Vec<Leased> {
        let mut got = Vec::new();
        for _ in 0..50 {
            if got.len() == n {
                break;
            }
            got.extend(store.fetch(JobKind::Cleanup, "w1", n - got.len(), LEASE).await.unwrap().jobs);
        }
        assert_eq!(got.len(), n, "{n} jobs leased");
        got
    }
    // taken by a fetch, one handed back
    let taken = take(&store, 3).await;
    assert_eq!(queued(&store).await, (2, 2));
    let back = Settlement::release(&taken[0]);
    assert_eq!(store.settle(JobKind::Cleanup, &[back]).await.unwrap(), vec![SettleResult::Applied]);
    assert_eq!(queued(&store).await, (3, 3), "a hand-back is queued again");
    // a scheduled job joins the lanes when it falls due, on a fetch
    enqueue(&store, NewJob::new(cleanup("a5")).delay(Duration::from_millis(50))).await;
    assert_eq!(queued(&store).await, (3, 3), "scheduled is not queued");
    tokio::time::sleep(Duration::from_millis(120)).await;
    let rest = take(&store, 4).await; // the three queued and the one that fell due
    assert_eq!(queued(&store).await, (0, 0));
    // a dead job retried is queued again
    settle(
        &store,
        &rest[0],
        SettleAction::Dead(err(ErrorClass::Permanent)),
        AttemptOutcome::Failed,
    )
    .await;
    assert_eq!(store.retry(&rest[0].id).await.unwrap(), RetryOutcome::Queued);
    assert_eq!(queued(&store).await, (1, 1));
}

pub async fn listing_is_newest_first_and_pages_cover_every_job_once<S: JobStore>(store: S) {
    let mut ids = Vec::new();
    for i in 0..25 {
        let payload = if i % 2 == 0 {
            cleanup("a1")
        } else {
            JobPayload::from_json(JobKind::Backfill, json!({"account_id": "a1", "marketplace_id": "M", "report_type": "GET_X", "start": "2026-01-01T00:00:00Z", "end": "2026-01-02T00:00:00Z"})).unwrap()
        };
        ids.push(enqueue(&store, NewJob::new(payload)).await);
    }
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .list(&ListQuery {
                limit: 7,
                cursor: cursor.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(page.jobs.len() <= 7);
        seen.extend(page.jobs.iter().map(|j| j.id.clone()));
        match page.next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let unique: HashSet<_> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "no job appears twice");
    assert_eq!(unique, ids.iter().cloned().collect::<HashSet<_>>(), "every job appears");
    let jobs = store
        .list(&ListQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .jobs;
    assert!(jobs.windows(2).all(|w| w[0].created_at >= w[1].created_at), "newest first");
}

pub async fn listing_filters_by_state_and_account<S: JobStore>(store: S) {
    let a1 = enqueue(&store, NewJob::new(cleanup("a1"))).await;
    let _a2 = enqueue(&store, NewJob::new(cleanup("a2"))).await;
    let l = fetch_one(&store, "w1").await.unwrap();
    assert_eq!(l.id, a1);
    settle(&store, &l, SettleAction::Dead(err(ErrorClass::Permanent)), AttemptOutcome::Failed).await;
    let by_acct = store
        .list(&ListQuery {
            account_id: Some("a1".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(by_acct.jobs.iter().map(|j| j.id.clone()).collect::<Vec<_>>(), vec![a1.clone()]);
    let dead_a2 = store
        .list(&ListQuery {
            state: Some(JobState::Dead),
            account_id: Some("a2".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(dead_a2.jobs.is_empty());
    let queued = store
        .list(&ListQuery {
            state: Some(JobState::Queued),
            kinds: vec![JobKind::Cleanup],
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(queued.jobs.len(), 1);
    assert_eq!(queued.jobs[0].account_id.as_deref(), Some("a2"));
}

pub async fn dead_jobs_can_be_purged_and_old_terminal_jobs_are_trimmed<S: JobStore>(store: S) {
    let dead = enqueue(&store, NewJob::new(cleanup("a1"))).await;
    let done = enqueue(&store, NewJob::new(cleanup("a1"))).await;
    let jobs = store.fetch(JobKind::Cleanup, "w1", 2, LEASE).await.unwrap().jobs;
    settle(
        &store,
        &jobs[0],
        SettleAction::Dead(err(ErrorClass::Permanent)),
        AttemptOutcome::Failed,
    )
    .await;
    settle(&store, &jobs[1], SettleAction::Succeeded(json!({})), AttemptOutcome::Succeeded).await;
    tokio::time::sleep(Duration::from_millis(30)).await;
    let trimmed = store.trim(JobKind::Cleanup, Duration::from_millis(10), 100).await.unwrap();
    assert_eq!(
        trimmed.map(|t| t.removed),
        Some(1),
        "only the succeeded job is past retention; dead jobs are kept"
    );
    assert!(store.get(&done).await.unwrap().is_none());
    assert!(store.get(&dead).await.unwrap().is_some());
    assert_eq!(store.purge_dead(JobKind::Cleanup, std::slice::from_ref(&dead)).await.unwrap(), 1);
    assert!(store.get(&dead).await.unwrap().is_none());
    let all = store
        .list(&ListQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(all.jobs.is_empty(), "indexes are cleaned with the records");
}

pub async fn only_the_lease_holder_can_record_progress<S: JobStore>(store: S) {
    let id = enqueue(&store, NewJob::new(cleanup("a1"))).await;
    let l = fetch_one(&store, "w1").await.unwrap();
    let p = Progress {
        done: 3,
        total: Some(10),
        message: Some("page 3".into()),
    };
    assert!(store.set_progress(&id, &l.token, &p).await.unwrap());
    assert!(!store.set_progress(&id, "someone-else", &Progress::default()).await.unwrap());
    assert_eq!(store.get(&id).await.unwrap().unwrap().progress, Some(p));
}

pub async fn bulk_enqueue_gives_each_job_its_own_outcome<S: JobStore>(store: S) {
    let first = store.enqueue(NewJob::new(cleanup("a1")).idempotency_key("dup")).await.unwrap();
    let jobs = vec![
        NewJob::new(cleanup("a1")),
        NewJob::new(cleanup("a2")).idempotency_key("dup"),
        NewJob::new(cleanup("a1")).idempotency_key("dup"),
        NewJob::new(cleanup("a1")).priority(42),
    ];
    let out = store.enqueue_bulk(jobs).await.unwrap();
    assert!(out[0].as_ref().unwrap().created);
    assert!(matches!(out[1], Err(EnqueueError::IdempotencyConflict { .. })));
    assert_eq!(out[2].as_ref().unwrap().id, first.id);
    assert!(matches!(out[3], Err(EnqueueError::Invalid(_))));
}

pub async fn a_long_bulk_answers_as_one_call_would<S: JobStore>(store: S) {
    // More jobs than one script call carries (1,000): a key or an account's sync
    // repeated far apart in the bulk answers as it would next to each other, and the
    // queue holds the jobs in the order given.
    let n = 1100;
    let jobs: Vec<NewJob> = (0..n)
        .map(|i| match i {
            3 | 1050 => NewJob::new(cleanup("a1")).idempotency_key("far-apart"),
            10 | 1020 => NewJob::new(sync("s1")),
            300 => NewJob::new(cleanup("a1")).priority(42),
            _ => NewJob::new(cleanup("a1")),
        })
        .collect();
    let out = store.enqueue_bulk(jobs).await.unwrap();
    assert_eq!(out.len(), n);
    assert!(matches!(out[300], Err(EnqueueError::Invalid(_))));
    let ok = |i: usize| out[i].as_ref().unwrap_or_else(|e| panic!("job {i}: {e}"));
    assert!(ok(3).created && !ok(1050).created, "the key's second use answers the first job");
    assert_eq!(ok(1050).id, ok(3).id);
    assert!(ok(10).created && !ok(1020).created, "the account's second sync answers the first");
    assert_eq!(ok(1020).id, ok(10).id);
    let expected: Vec<JobId> = (0..n)
        .filter(|i| ![10, 300, 1020, 1050].contains(i))
        .map(|i| ok(i).id.clone())
        .collect();
    assert_eq!(expected.iter().collect::<HashSet<_>>().len(), n - 4, "every other job is new");
    let mut leased = Vec::new();
    // A partitioned queue's fetch may visit a partition without jobs: bounded tries.
    for _ in 0..200 {
        if leased.len() >= expected.len() {
            break;
        }
        let got = store.fetch(JobKind::Cleanup, "w1", 100, LEASE).await.unwrap().jobs;
        leased.extend(got.into_iter().map(|l| l.id));
    }
    assert_eq!(leased, expected, "leased in the order given");
}

pub async fn a_bulk_of_plain_jobs_and_jobs_with_options_stores_each_as_given<S: JobStore>(store: S) {
    // Plain jobs and jobs with options alternate in one call: each keeps what it was given.
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let jobs = vec![
        NewJob::new(cleanup("a1")),
        NewJob::new(cleanup("a2")).delay(Duration::from_secs(60)),
        NewJob::new(cleanup("a3")).priority(7),
        NewJob::new(cleanup("a4")).traceparent(tp).trigger("api"),
        NewJob::new(cleanup("a5")),
    ];
    let out = store.enqueue_bulk(jobs).await.unwrap();
    let mut got = Vec::new();
    for e in &out {
        let e = e.as_ref().unwrap();
        assert!(e.created);
        got.push(store.get(&e.id).await.unwrap().unwrap());
    }
    let accounts: Vec<&str> = got.iter().map(|j| j.account_id.as_deref().unwrap()).collect();
    assert_eq!(accounts, ["a1", "a2", "a3", "a4", "a5"]);
    let states: Vec<JobState> = got.iter().map(|j| j.state).collect();
    use JobState::{Queued, Scheduled};
    assert_eq!(states, [Queued, Scheduled, Queued, Queued, Queued]);
    assert_eq!(got[2].priority, 7);
    assert_eq!(got[3].traceparent.as_deref(), Some(tp));
    assert_eq!(got[3].trigger.as_deref(), Some("api"));
    for plain in [&got[0], &got[4]] {
        assert_eq!(
            (plain.priority, plain.traceparent.as_deref(), plain.trigger.as_deref()),
            (0, None, None)
        );
        assert_eq!(plain.attempts, 0);
        assert_eq!(plain.updated_at, plain.created_at, "unchanged since it was made");
    }
}

pub async fn concurrent_single_enqueues_each_get_their_own_outcome<S: JobStore>(store: S) {
    // Callers enqueueing at the same moment may share one call to the queue; each still
    // gets its own answer, and an idempotency key is honoured across them.
    let calls = (0..60).map(|i| {
        let store = store.clone();
        async move {
            let job = match i % 3 {
                0 => NewJob::new(cleanup(&format!("a{i}"))),
                1 => NewJob::new(cleanup("a1")).idempotency_key("shared"),
                _ => NewJob::new(cleanup("a2")).idempotency_key("shared"),
            };
            (i, store.enqueue(job).await)
        }
    });
    let out = futures::future::join_all(calls).await;
    let fresh: Vec<&JobId> = out
        .iter()
        .filter(|(i, _)| i % 3 == 0)
        .map(|(_, r)| &r.as_ref().unwrap().id)
        .collect();
    assert_eq!(fresh.iter().collect::<HashSet<_>>().len(), 20, "20 distinct jobs");
    let keyed: Vec<&Result<Enqueued, EnqueueError>> = out.iter().filter(|(i, _)| i % 3 != 0).map(|(_, r)| r).collect();
    let created: Vec<&Enqueued> = keyed.iter().filter_map(|r| r.as_ref().ok()).filter(|e| e.created).collect();
    assert_eq!(created.len(), 1, "one keyed job is created");
    let owner = &created[0].id;
    for r in &keyed {
        match r {
            Ok(e) => assert_eq!(&e.id, owner, "the same body gets the same job"),
            Err(EnqueueError::IdempotencyConflict { existing }) => assert_eq!(existing, owner),
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(store.counts(JobKind::Cleanup).await.unwrap().queued, 21);
}

pub async fn ten_thousand_due_jobs_are_promoted_in_bounded_chunks<S: JobStore>(store: S) {
    let run_at = Utc::now() + chrono::Duration::milliseconds(300);
    for chunk in 0..10 {
        let jobs = (0..1000)
            .map(|_| NewJob::new(cleanup(&format!("a{chunk}"))).run_at(run_at))
            .collect();
        assert!(store.enqueue_bulk(jobs).await.unwrap().iter().all(|r| r.is_ok()));
    }
    tokio::time::sleep(Duration::from_millis(350)).await;
    let mut got = 0;
    while got < 10_000 {
        let f = store.fetch(JobKind::Cleanup, "w1", 1000, LEASE).await.unwrap();
        assert!(!f.jobs.is_empty(), "fetching stalled after {got} jobs");
        got += f.jobs.len();
    }
    assert_eq!(got, 10_000);
}

pub async fn a_reclaimed_job_goes_ahead_of_the_backlog<S: JobStore>(store: S) {
    let first = enqueue(&store, NewJob::new(cleanup("a1"))).await;
    let lost = store
        .fetch(JobKind::Cleanup, "w1", 1, Duration::from_millis(150))
        .await
        .unwrap()
        .jobs
        .pop()
        .unwrap();
    assert_eq!(lost.id, first);
    for _ in 0..5 {
        enqueue(&store, NewJob::new(cleanup("a1"))).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A pass that leases nothing finds the lease run out; after its grace it is reclaimed.
    store.fetch(JobKind::Cleanup, "w2", 0, LEASE).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let next = fetch_one(&store, "w2").await.unwrap();
    assert_eq!(
        next.id, first,
        "a job whose worker died has waited once already: it runs before the backlog"
    );
}

pub async fn a_listing_by_account_and_state_walks_only_that_accounts_jobs<S: JobStore>(store: S) {
    let mine = enqueue(&store, NewJob::new(cleanup("tenant-a"))).await;
    // Another tenant's backlog, all newer and in the same state: a listing scoped to
    // tenant-a must not have to walk past it (finding M9).
    for _ in 0..3 {
        let chunk: Vec<NewJob> = (0..1000).map(|_| NewJob::new(cleanup("tenant-b"))).collect();
        store.enqueue_bulk(chunk).await.unwrap();
    }
    let page = store
        .list(&ListQuery {
            state: Some(JobState::Queued),
            account_id: Some("tenant-a".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.jobs.iter().map(|j| j.id.clone()).collect::<Vec<_>>(), vec![mine]);
    assert!(page.next.is_none(), "one page, no cursor into another tenant's entries");
}
