//! What `counts` tells `/metrics` beyond the states: the jobs waiting per reason (the
//! same reason `waiting` gives each of them) and the events the scripts count.
//! Rules named `capped_*` take a store whose policy is [`super::POLICY`].
use super::*;

fn breaker_park() -> ErrorInfo {
    ErrorInfo {
        class: ErrorClass::RateLimited,
        message: "rate limited for 20s: deleteListingsItem: circuit open until 2026-11-30 10:00:00 UTC".into(),
    }
}

pub async fn capped_counts_say_how_many_jobs_wait_for_each_reason<S: JobStore>(store: S) {
    // Parked by the breaker, and waiting out a retry's backoff.
    let parked = enqueue(&store, NewJob::new(cleanup("parker"))).await;
    let l = fetch_one(&store, "w1").await.unwrap();
    assert_eq!(l.id, parked);
    let snooze = SettleAction::Snooze {
        delay: Duration::from_secs(60),
        error: breaker_park(),
        advanced: false,
    };
    settle(&store, &l, snooze, AttemptOutcome::Snoozed).await;
    enqueue(&store, NewJob::new(cleanup("retrier"))).await;
    let l = fetch_one(&store, "w1").await.unwrap();
    let retry = SettleAction::Retry {
        delay: Duration::from_secs(60),
        error: err(ErrorClass::Transient),
    };
    settle(&store, &l, retry, AttemptOutcome::Failed).await;
    // An account at its cap (cleanup: 2) with two jobs held back, both runs prefetched.
    for _ in 0..4 {
        enqueue(&store, NewJob::new(cleanup("busy"))).await;
    }
    assert_eq!(store.fetch(JobKind::Cleanup, "w1", 2, LEASE).await.unwrap().jobs.len(), 2);
    enqueue(&store, NewJob::new(cleanup("free"))).await;
    enqueue(&store, NewJob::new(cleanup("later")).delay(Duration::from_secs(60))).await;

    let c = store.counts(JobKind::Cleanup).await.unwrap();
    let w = c.waiting;
    assert_eq!(
        (w.scheduled, w.retry_backoff, w.breaker_open, w.rate_limit, w.quota_cooldown),
        (1, 1, 1, 0, 0),
        "{w:?}"
    );
    assert_eq!((w.account_busy, w.queued, w.prefetched, w.queue_paused), (2, 1, 2, 0), "{w:?}");
    assert_eq!(c.events.parked_breaker_open, 1);
    assert_eq!(
        store.waiting(&parked).await.unwrap().unwrap().reason,
        WaitReason::BreakerOpen,
        "the count and the job's own answer agree"
    );

    store.set_paused(JobKind::Cleanup, true).await.unwrap();
    let w = store.counts(JobKind::Cleanup).await.unwrap().waiting;
    assert_eq!(
        (w.queue_paused, w.account_busy, w.queued),
        (3, 0, 0),
        "paused holds every queued job: {w:?}"
    );
    store.set_paused(JobKind::Cleanup, false).await.unwrap();

    store.cancel(&parked).await.unwrap();
    let c = store.counts(JobKind::Cleanup).await.unwrap();
    assert_eq!(c.waiting.breaker_open, 0, "a cancelled park waits for nothing");
    assert_eq!(c.events.parked_breaker_open, 1, "the park still happened");
}

/// Found by the observability audit of 2026-12-07 (second): the lag (the autoscaler's
/// and the lag alert's input) counted the jobs an account's own cap holds back, so one
/// account's long runs made the lag grow with no job a new worker could start: the
/// autoscaler went to its maximum and the alert paged. Only jobs that could start count.
pub async fn capped_the_lag_leaves_out_jobs_their_accounts_cap_holds_back<S: JobStore>(store: S) {
    // cleanup's cap is 2: the third waits for one of the two runs, as account_busy
    for _ in 0..3 {
        enqueue(&store, NewJob::new(cleanup("busy"))).await;
    }
    let leased = store.fetch(JobKind::Cleanup, "w1", 3, LEASE).await.unwrap().jobs;
    assert_eq!(leased.len(), 2, "the cap");
    let runs: Vec<(JobId, String)> = leased.iter().map(|l| (l.id.clone(), l.token.clone())).collect();
    store.mark_started(JobKind::Cleanup, &runs, Duration::from_secs(5)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let c = store.counts(JobKind::Cleanup).await.unwrap();
    assert_eq!(c.waiting.account_busy, 1, "{:?}", c.waiting);
    assert!(c.lag_ms < 300, "no job that could start waits: lag {} ms", c.lag_ms);
    // One that could start counts.
    enqueue(&store, NewJob::new(cleanup("free"))).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let c = store.counts(JobKind::Cleanup).await.unwrap();
    assert!(c.lag_ms >= 300, "a queued job of a free account: lag {} ms", c.lag_ms);
}

pub async fn a_park_that_falls_due_stops_counting_as_parked<S: JobStore>(store: S) {
    enqueue(&store, NewJob::new(cleanup("a1"))).await;
    let l = fetch_one(&store, "w1").await.unwrap();
    let snooze = SettleAction::Snooze {
        delay: Duration::from_millis(50),
        error: ErrorInfo {
            class: ErrorClass::RateLimited,
            message: "getOrders: rate limited (retry after 50ms)".into(),
        },
        advanced: false,
    };
    settle(&store, &l, snooze, AttemptOutcome::Snoozed).await;
    let c = store.counts(JobKind::Cleanup).await.unwrap();
    assert_eq!((c.waiting.rate_limit, c.events.parked_rate_limit), (1, 1));
    tokio::time::sleep(Duration::from_millis(80)).await;
    let again = fetch_one(&store, "w1").await.expect("the parked job runs again once due");
    assert_eq!(again.id, l.id);
    let c = store.counts(JobKind::Cleanup).await.unwrap();
    assert_eq!((c.waiting.rate_limit, c.waiting.scheduled), (0, 0), "{:?}", c.waiting);
}

/// Found by the visibility audit of 2026-12-05: a fetch promotes at most 500 due jobs a
/// call, yet it took every due park out of the per-reason counts, so the parks it had
/// not promoted yet were counted `scheduled` while the job itself still said it waited
/// for the limit.
pub async fn a_park_a_fetch_has_not_promoted_yet_still_counts_as_parked<S: JobStore>(store: S) {
    let n = 501;
    let jobs = (0..n).map(|i| NewJob::new(cleanup(&format!("a{i}")))).collect();
    for r in store.enqueue_bulk(jobs).await.unwrap() {
        r.unwrap();
    }
    let mut leased = Vec::new();
    while leased.len() < n {
        let got = store.fetch(JobKind::Cleanup, "w1", 200, LEASE).await.unwrap().jobs;
        assert!(!got.is_empty(), "only {} leased", leased.len());
        leased.extend(got);
    }
    for l in &leased {
        let snooze = SettleAction::Snooze {
            delay: Duration::from_millis(30),
            error: ErrorInfo {
                class: ErrorClass::RateLimited,
                message: "deleteListingsItem: rate limited (retry after 30ms)".into(),
            },
            advanced: false,
        };
        settle(&store, l, snooze, AttemptOutcome::Snoozed).await;
    }
    tokio::time::sleep(Duration::from_millis(60)).await;
    // One call promotes a chunk of 500 a queue; the rest are still parked, and say so.
    store.fetch(JobKind::Cleanup, "w2", 0, LEASE).await.unwrap();
    let c = store.counts(JobKind::Cleanup).await.unwrap();
    let mut parked = 0;
    for l in &leased {
        if let Some(w) = store.waiting(&l.id).await.unwrap() {
            parked += u64::from(w.reason == WaitReason::RateLimit);
        }
    }
    // (on one partition one job of 501 is left; on several each promotes its own)
    assert_eq!(c.waiting.rate_limit, parked, "{:?}", c.waiting);
    assert_eq!(c.waiting.scheduled, 0, "{:?}", c.waiting);
}

pub async fn capped_reclaims_and_late_results_are_counted<S: JobStore>(store: S) {
    let short = Duration::from_millis(100);
    let unstarted = enqueue(&store, NewJob::new(cleanup("a1"))).await;
    let started = enqueue(&store, NewJob::new(cleanup("a2"))).await;
    let leased = store.fetch(JobKind::Cleanup, "w1", 2, short).await.unwrap().jobs;
    let run = leased.iter().find(|l| l.id == started).unwrap().clone();
    store
        .mark_started(
            JobKind::Cleanup,
            &[(run.id.clone(), run.token.clone())],
            std::time::Duration::from_secs(5),
        )
        .await
        .unwrap();
    let before = store.counts(JobKind::Cleanup).await.unwrap().events;
    assert_eq!(before, QueueEvents::default());
    // w1 dies: both leases run out, through their grace; w2 takes both jobs back.
    let mut back = Vec::new();
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        back.extend(store.fetch(JobKind::Cleanup, "w2", 2, LEASE).await.unwrap().jobs);
        if back.len() == 2 {
            break;
        }
    }
    assert_eq!(back.len(), 2, "both jobs are handed out again");
    assert!(back.iter().any(|l| l.id == unstarted));
    let e = store.counts(JobKind::Cleanup).await.unwrap().events;
    assert_eq!((e.reclaimed_lost, e.reclaimed_released, e.late), (1, 1, 0), "{e:?}");
    // w1 was only cut off: its result arrives after the reclaim.
    let late = settle(&store, &run, SettleAction::Succeeded(json!({})), AttemptOutcome::Succeeded).await;
    assert_eq!(late, SettleResult::LeaseLost);
    assert_eq!(store.counts(JobKind::Cleanup).await.unwrap().events.late, 1);
}
