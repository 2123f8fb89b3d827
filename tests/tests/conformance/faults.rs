//! The queue-core review's findings, each pinned as a rule (F3, F4, F5, F7, F9, F10, F13
//! in the review of 2026-11-30). Rules named `capped_*` take a store with [`super::POLICY`].
use super::*;

async fn cancel_then_end<S: JobStore>(store: &S, action: SettleAction, outcome: AttemptOutcome) -> JobId {
    let id = enqueue(store, NewJob::new(cleanup("a1"))).await;
    let l = fetch_one(store, "w1").await.unwrap();
    assert_eq!(store.cancel(&id).await.unwrap(), CancelOutcome::Requested);
    // (the worker is told the job ended cancelled, not as it asked)
    assert_eq!(
        settle(store, &l, action, outcome).await,
        SettleResult::AppliedAs(JobState::Cancelled)
    );
    id
}

pub async fn a_cancel_during_a_run_sticks_when_the_run_ends_in_retry<S: JobStore>(store: S) {
    let retry = SettleAction::Retry {
        delay: Duration::ZERO,
        error: err(ErrorClass::Transient),
    };
    let id = cancel_then_end(&store, retry, AttemptOutcome::Failed).await;
    assert_eq!(state_of(&store, &id).await, JobState::Cancelled);
    assert!(fetch_one(&store, "w2").await.is_none(), "a cancelled job never runs again");
}

pub async fn a_cancel_during_a_run_sticks_when_the_run_ends_in_snooze<S: JobStore>(store: S) {
    let snooze = SettleAction::Snooze {
        delay: Duration::ZERO,
        error: err(ErrorClass::RateLimited),
        advanced: false,
    };
    let id = cancel_then_end(&store, snooze, AttemptOutcome::Snoozed).await;
    assert_eq!(state_of(&store, &id).await, JobState::Cancelled);
    assert!(fetch_one(&store, "w2").await.is_none());
    // Found by an audit of job histories: the snoozed run gave its attempt back, yet
    // the cancel that overrode it left the attempt counted.
    assert_eq!(store.get(&id).await.unwrap().unwrap().attempts, 0, "a snooze uses no attempt");
}

pub async fn a_cancel_during_a_run_sticks_when_the_run_is_released<S: JobStore>(store: S) {
    let id = cancel_then_end(&store, SettleAction::Release, AttemptOutcome::Released).await;
    assert_eq!(state_of(&store, &id).await, JobState::Cancelled);
    assert!(fetch_one(&store, "w2").await.is_none());
    assert_eq!(store.get(&id).await.unwrap().unwrap().attempts, 0, "a hand-back uses no attempt");
}

/// Found by an audit of the queue core (2026-12-05): a cancel requested while a run was
/// failing for the last time (or for good) lost to that failure: the job ended `dead`,
/// in the dead letter a replay by filter runs again, while a reclaim of the same job
/// ended it `cancelled`.
pub async fn a_cancel_during_a_run_sticks_when_the_run_ends_dead<S: JobStore>(store: S) {
    let id = cancel_then_end(&store, SettleAction::Dead(err(ErrorClass::Permanent)), AttemptOutcome::Failed).await;
    assert_eq!(state_of(&store, &id).await, JobState::Cancelled);
    assert!(fetch_one(&store, "w2").await.is_none());
    let job = store.get(&id).await.unwrap().unwrap();
    assert_eq!(job.attempts, 1, "the failed run used its attempt");
}

pub async fn a_lease_renewed_within_its_grace_is_not_reclaimed<S: JobStore>(store: S) {
    // A live worker that could not reach Redis for longer than its lease (a restart, a
    // pause) renews as soon as it can: that must not cost an attempt or a second run.
    let lease = Duration::from_millis(200);
    let id = enqueue(&store, NewJob::new(cleanup("a1"))).await;
    let l = store.fetch(JobKind::Cleanup, "w1", 1, lease).await.unwrap().jobs.pop().unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(fetch_one(&store, "w2").await.is_none(), "the first pass only marks the lease");
    let report = store
        .extend_leases(
            JobKind::Cleanup,
            &[(id.clone(), l.token.clone())],
            lease,
            std::time::Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert!(report.lost.is_empty(), "the holder kept its lease");
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(fetch_one(&store, "w2").await.is_none(), "a renewed lease is not reclaimed");
    let job = store.get(&id).await.unwrap().unwrap();
    assert_eq!(job.attempts, 1);
    assert!(job.attempt_history.is_empty(), "no lost attempt was recorded");
}

pub async fn a_lease_left_unrenewed_while_redis_kept_serving_is_reclaimed_without_a_grace<S: JobStore>(store: S) {
    // The grace is for a Redis that stopped serving (a restart, a pause). A holder that
    // stopped renewing while Redis answered everyone else is dead or cut off (and fences
    // itself): its job runs again as soon as the lease ends.
    let lease = Duration::from_millis(900);
    let id = enqueue(&store, NewJob::new(cleanup("a1"))).await;
    store.fetch(JobKind::Cleanup, "w1", 1, lease).await.unwrap().jobs.pop().unwrap();
    // w2 keeps Redis busy (a gap of a third of the lease would look like an outage);
    // with a grace the job would come back only after 1,350 ms.
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_millis(1_000) {
        let _ = fetch_one(&store, "w2").await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let job = store.get(&id).await.unwrap().unwrap();
    assert_eq!(job.attempts, 2, "w2 leased the job once its lease ended, with no grace added");
    assert_eq!(job.attempt_history[0].outcome, AttemptOutcome::Lost);
}

pub async fn a_sync_scheduled_for_later_does_not_swallow_one_due_now<S: JobStore>(store: S) {
    let later = store
        .enqueue(NewJob::new(sync("a1")).run_at(Utc::now() + chrono::Duration::days(300)))
        .await
        .unwrap();
    let now = store.enqueue(NewJob::new(sync("a1"))).await.unwrap();
    assert!(now.created, "a new sync is created");
    assert_ne!(now.id, later.id);
    assert_eq!(now.state, JobState::Queued);
    // And a queued sync still swallows the next one.
    let dup = store.enqueue(NewJob::new(sync("a1"))).await.unwrap();
    assert_eq!(dup.id, now.id);
}

pub async fn a_sync_waiting_to_retry_does_not_swallow_a_new_one<S: JobStore>(store: S) {
    let first = enqueue(&store, NewJob::new(sync("a1"))).await;
    let l = store.fetch(JobKind::Sync, "w1", 1, LEASE).await.unwrap().jobs.pop().unwrap();
    settle(
        &store,
        &l,
        SettleAction::Retry {
            delay: Duration::from_secs(60),
            error: err(ErrorClass::Transient),
        },
        AttemptOutcome::Failed,
    )
    .await;
    let second = store.enqueue(NewJob::new(sync("a1"))).await.unwrap();
    assert!(second.created);
    assert_ne!(second.id, first);
}

/// Found by the audit of 2026-12-05: a running sync whose cancel was pending still
/// swallowed a new sync of its account, so "cancel, then submit again" (or a schedule's
/// tick meanwhile) answered with the job about to end cancelled and no sync ran.
pub async fn a_running_sync_being_cancelled_does_not_swallow_a_new_one<S: JobStore>(store: S) {
    let first = enqueue(&store, NewJob::new(sync("a1"))).await;
    let l = store.fetch(JobKind::Sync, "w1", 1, LEASE).await.unwrap().jobs.pop().unwrap();
    assert_eq!(store.cancel(&first).await.unwrap(), CancelOutcome::Requested);
    let second = store.enqueue(NewJob::new(sync("a1"))).await.unwrap();
    assert!(second.created, "the new sync is made, not the one being cancelled");
    assert_ne!(second.id, first);
    settle(
        &store,
        &l,
        SettleAction::Cancelled(err(ErrorClass::Cancelled)),
        AttemptOutcome::Cancelled,
    )
    .await;
    assert_eq!(state_of(&store, &first).await, JobState::Cancelled);
    // The new one is the account's sync under way: it swallows the next.
    let third = store.enqueue(NewJob::new(sync("a1"))).await.unwrap();
    assert_eq!(third.id, second.id);
}

/// Found by this stop's fairness re-check: a sync parked by the marketplace's limits (a
/// snooze: at SP-API's rates a minute for getOrders) did not swallow the next sync of its
/// account, so five syncs submitted while one waited for its slot became three jobs, each
/// to spend a getOrders call of a one-a-minute budget. A parked sync is the account's
/// sync under way: it swallows new ones, as a queued or running one does.
pub async fn a_sync_parked_by_the_marketplaces_limits_swallows_a_new_one<S: JobStore>(store: S) {
    let first = enqueue(&store, NewJob::new(sync("a1"))).await;
    let l = store.fetch(JobKind::Sync, "w1", 1, LEASE).await.unwrap().jobs.pop().unwrap();
    let limited = ErrorInfo {
        class: ErrorClass::RateLimited,
        message: "rate limited for 60s: getOrders: rate limited (retry after 60s)".into(),
    };
    settle(
        &store,
        &l,
        SettleAction::Snooze {
            delay: Duration::from_secs(60),
            error: limited,
            advanced: false,
        },
        AttemptOutcome::Snoozed,
    )
    .await;
    assert_eq!(state_of(&store, &first).await, JobState::Scheduled);
    let second = store.enqueue(NewJob::new(sync("a1"))).await.unwrap();
    assert!(!second.created, "a second sync was made while the first waited for its slot");
    assert_eq!(second.id, first);
}

/// Found by an audit of job histories: a sync whose run stopped because a dependency
/// did not answer (the database: `JobError::Unavailable`) or that handed back its turn
/// (`JobError::Stopping`) waits `scheduled` with an `interrupted` error until it resumes
/// by itself; it is still the account's sync under way, so a new sync submitted
/// meanwhile is that one, not a second sync of the account beside it. Its wait says why.
pub async fn a_sync_interrupted_by_an_outage_swallows_a_new_one_and_says_why_it_waits<S: JobStore>(store: S) {
    let first = enqueue(&store, NewJob::new(sync("a1"))).await;
    let l = store.fetch(JobKind::Sync, "w1", 1, LEASE).await.unwrap().jobs.pop().unwrap();
    let outage = ErrorInfo {
        class: ErrorClass::Interrupted,
        message: "database unavailable: pool timed out".into(),
    };
    settle(
        &store,
        &l,
        SettleAction::Snooze {
            delay: Duration::from_secs(2),
            error: outage,
            advanced: false,
        },
        AttemptOutcome::Snoozed,
    )
    .await;
    assert_eq!(state_of(&store, &first).await, JobState::Scheduled);
    let second = store.enqueue(NewJob::new(sync("a1"))).await.unwrap();
    assert!(!second.created, "a second sync was made while the first waited to resume");
    assert_eq!(second.id, first);
    let w = store.waiting(&first).await.unwrap().expect("it says why it waits");
    assert_eq!(w.detail["message"], "database unavailable: pool timed out", "{w:?}");
}

pub async fn capped_snoozes_are_counted_and_capped<S: JobStore>(store: S) {
    let id = enqueue(&store, NewJob::new(cleanup("a1"))).await;
    let mut last = None;
    for n in 1..=4 {
        let l = fetch_one(&store, "w1").await.unwrap_or_else(|| panic!("run {n} leased"));
        let s = Settlement {
            id: l.id.clone(),
            token: l.token.clone(),
            action: SettleAction::Snooze {
                delay: Duration::ZERO,
                error: err(ErrorClass::RateLimited),
                advanced: false,
            },
            attempt: attempt(&l, AttemptOutcome::Snoozed, Some(err(ErrorClass::RateLimited))),
        };
        last = Some((store.settle(JobKind::Cleanup, std::slice::from_ref(&s)).await.unwrap(), s));
    }
    let job = store.get(&id).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Dead, "the 4th snooze is past the cap of 3");
    let last_error = job.last_error.unwrap();
    assert!(last_error.message.contains("snoozed 3 times"), "{last_error:?}");
    // Found by the chaos audit of 2026-12-07 (third): the last snooze's own reason was
    // left to the history alone; the job's error (and its dead-letter group) says it.
    assert!(last_error.message.contains("the last: RateLimited failure"), "{last_error:?}");
    let (answer, s) = last.unwrap();
    assert_eq!(answer, vec![SettleResult::AppliedAs(JobState::Dead)]);
    // Sent again (its first reply was lost), it says the same (found by the review of
    // 2026-12-06's diffs: plain `Applied`, and the worker counted a snooze).
    let again = store.settle(JobKind::Cleanup, std::slice::from_ref(&s)).await.unwrap();
    assert_eq!(again, vec![SettleResult::AppliedAs(JobState::Dead)]);
}

/// Found by the fairness audit of 2026-12-06 (third): every snooze was counted, whether
/// or not its run advanced, so a sync whose every page parks for the seller's getOrders
/// slot (one a minute at SP-API's rate) was dead after 1,000 pages while running at
/// exactly its allowed rate. A snooze of a run that did some of its work starts the count
/// again: only a job parking again and again without advancing reaches the cap.
pub async fn capped_a_snooze_after_the_run_advanced_starts_the_count_again<S: JobStore>(store: S) {
    let id = enqueue(&store, NewJob::new(cleanup("a1"))).await;
    let snooze = |advanced| SettleAction::Snooze {
        delay: Duration::ZERO,
        error: err(ErrorClass::RateLimited),
        advanced,
    };
    // The cap is 3: three snoozes, one that advanced, then three more are all below it.
    for (n, advanced) in [false, false, false, true, false, false].into_iter().enumerate() {
        let l = fetch_one(&store, "w1").await.unwrap_or_else(|| panic!("run {} leased", n + 1));
        let s = Settlement {
            id: l.id.clone(),
            token: l.token.clone(),
            action: snooze(advanced),
            attempt: attempt(&l, AttemptOutcome::Snoozed, Some(err(ErrorClass::RateLimited))),
        };
        let first = store.settle(JobKind::Cleanup, std::slice::from_ref(&s)).await.unwrap();
        assert_eq!(first, vec![SettleResult::Applied]);
        // Sent again (its first reply lost), it changes nothing: the count stays.
        let again = store.settle(JobKind::Cleanup, std::slice::from_ref(&s)).await.unwrap();
        assert_eq!(again, vec![SettleResult::Applied], "snooze {} sent again", n + 1);
        let job = store.get(&id).await.unwrap().unwrap();
        assert_eq!(job.state, JobState::Scheduled, "snooze {} (advanced: {advanced})", n + 1);
    }
    // The fourth snooze in a row without advancing is past it.
    let l = fetch_one(&store, "w1").await.expect("run 7 leased");
    settle(&store, &l, snooze(false), AttemptOutcome::Snoozed).await;
    let job = store.get(&id).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Dead, "three snoozes since the one that advanced, and one more");
}

/// Found by the third audits of 2026-12-06: a run refused because another run's probe of
/// its seller's breaker was out parked counted against the cap, a count every second
/// while the probe hung. Such a park (`held`) is filed as a breaker park and leaves the
/// count as it was; counted snoozes around it still reach the cap (3 here).
pub async fn capped_a_snooze_held_by_another_runs_breaker_probe_is_not_counted<S: JobStore>(store: S) {
    let id = enqueue(&store, NewJob::new(cleanup("a1"))).await;
    let refused = ErrorInfo {
        class: ErrorClass::RateLimited,
        message: "rate limited for 1s: getOrders: circuit open until then (another call is probing it)".into(),
    };
    let counted = SettleAction::Snooze {
        delay: Duration::ZERO,
        error: err(ErrorClass::RateLimited),
        advanced: false,
    };
    let held = |delay| SettleAction::Held {
        delay,
        error: refused.clone(),
    };
    let now = || held(Duration::ZERO);
    // The cap is 3: two counted snoozes, four held, a third counted are all within it.
    for (n, action) in [counted.clone(), counted.clone(), now(), now(), now(), now(), counted.clone()]
        .into_iter()
        .enumerate()
    {
        let l = fetch_one(&store, "w1").await.unwrap_or_else(|| panic!("run {} leased", n + 1));
        settle(&store, &l, action.clone(), AttemptOutcome::Snoozed).await;
        let job = store.get(&id).await.unwrap().unwrap();
        assert_eq!(job.state, JobState::Scheduled, "run {} ({action:?})", n + 1);
    }
    // The fourth counted one is past it: the held ones neither counted nor started it again.
    let l = fetch_one(&store, "w1").await.expect("run 8 leased");
    settle(&store, &l, counted, AttemptOutcome::Snoozed).await;
    assert_eq!(state_of(&store, &id).await, JobState::Dead);
    // A held job waits as parked by its seller's breaker, its attempt given back.
    let other = enqueue(&store, NewJob::new(cleanup("a2"))).await;
    let l = fetch_one(&store, "w1").await.expect("the other job leased");
    settle(&store, &l, held(Duration::from_secs(60)), AttemptOutcome::Snoozed).await;
    let job = store.get(&other).await.unwrap().unwrap();
    assert_eq!((job.state, job.attempts), (JobState::Scheduled, 0), "{job:?}");
    let waiting = store.waiting(&other).await.unwrap().expect("it waits");
    assert_eq!(waiting.reason, WaitReason::BreakerOpen, "{waiting:?}");
}

/// Found by a review of the queue core (2026-12-05): a run that worked its turn or its
/// slice hands its job back with a snooze that is not counted (`gave_way`), so a long job
/// that keeps giving way never reaches the cap; a counted snooze afterwards still is.
/// Its wait says it was interrupted, not parked by a limit, and a cancel still wins.
/// Found by the fairness audit of 2026-12-05: a run that gave its turn away came back
/// behind every job its account had queued meanwhile (promotion scores a job by when it
/// fell due), so an account's own jobs took turns among themselves instead of running
/// oldest first. It comes back where it was, at the front of its account's lane.
pub async fn a_job_that_gave_its_turn_away_comes_back_at_the_front_of_its_account<S: JobStore>(store: S) {
    let first = enqueue(&store, NewJob::new(cleanup("a"))).await;
    tokio::time::sleep(Duration::from_millis(3)).await;
    enqueue(&store, NewJob::new(cleanup("a"))).await;
    enqueue(&store, NewJob::new(cleanup("a"))).await;
    let l = fetch_one(&store, "w1").await.unwrap();
    assert_eq!(l.id, first);
    let gave_way = SettleAction::GaveWay {
        delay: Duration::from_millis(100),
        error: ErrorInfo {
            class: ErrorClass::Interrupted,
            message: "handed back: worked its 1s turn while another job waits for the slot".into(),
        },
    };
    settle(&store, &l, gave_way, AttemptOutcome::Snoozed).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    let next = fetch_one(&store, "w1").await.unwrap();
    assert_eq!(next.id, first, "the job that gave way runs before its account's later jobs");
}

/// Found by the fairness audit of 2026-12-07: a run that gave way for another account's
/// waiting job came back to a lane its lease had emptied, which took the pass its last
/// turn had left — below the waiting account's when that account's turn came later — so
/// the next fetch leased the job that had just given way, and the account it gave way for
/// waited on. It comes back as a lane that had its turn: after the lanes waiting.
pub async fn a_run_that_gave_way_comes_back_after_the_account_it_gave_way_for<S: JobStore>(store: S) {
    let long = enqueue(&store, NewJob::new(cleanup("l"))).await;
    tokio::time::sleep(Duration::from_millis(3)).await;
    let m1 = enqueue(&store, NewJob::new(cleanup("m"))).await;
    let m2 = enqueue(&store, NewJob::new(cleanup("m"))).await;
    let l = fetch_one(&store, "w1").await.unwrap();
    assert_eq!(l.id, long);
    assert_eq!(fetch_one(&store, "w2").await.unwrap().id, m1);
    let gave_way = SettleAction::GaveWay {
        delay: Duration::ZERO,
        error: ErrorInfo {
            class: ErrorClass::Interrupted,
            message: "handed back: worked its turn while another job waits for the slot".into(),
        },
    };
    settle(&store, &l, gave_way, AttemptOutcome::Snoozed).await;
    let next = fetch_one(&store, "w1").await.unwrap();
    assert_eq!(next.id, m2, "the account given way for goes first");
    assert_eq!(fetch_one(&store, "w1").await.unwrap().id, long, "then the one that gave way");
}

/// Found by the audit of what the API shows (2026-12-06): the lag (`lag_ms`, the metric
/// the lag alert and the autoscalers read) was the wait of the most urgent job at the
/// lanes' heads, so one job above priority 0 (of another account, or queued ahead in the
/// same account's lane) hid a routine backlog waiting for hours. It is the oldest ready
/// job's wait, whatever its priority.
pub async fn the_lag_is_the_oldest_ready_jobs_wait_whatever_its_priority<S: JobStore>(store: S) {
    enqueue(&store, NewJob::new(cleanup("a1"))).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let mut urgent = NewJob::new(cleanup("a2"));
    urgent.priority = 5;
    enqueue(&store, urgent).await;
    let mut urgent_same = NewJob::new(cleanup("a1"));
    urgent_same.priority = 7;
    enqueue(&store, urgent_same).await;
    let lag = store.counts(JobKind::Cleanup).await.unwrap().lag_ms;
    assert!(lag >= 600, "the routine job has waited 600 ms; the lag says {lag} ms");
}

/// Found by the visibility audit of 2026-12-05: the mark of a turn given away outlived a
/// cancel and a replay, so the replayed job's later retry came back at its creation time,
/// ahead of a job its account queued meanwhile, instead of when it fell due.
pub async fn a_replayed_job_forgets_a_turn_it_gave_away_in_its_earlier_life<S: JobStore>(store: S) {
    let id = enqueue(&store, NewJob::new(cleanup("a"))).await;
    let l = fetch_one(&store, "w1").await.unwrap();
    let gave_way = SettleAction::GaveWay {
        delay: Duration::from_secs(60),
        error: ErrorInfo {
            class: ErrorClass::Interrupted,
            message: "handed back: worked its 1s turn while another job waits for the slot".into(),
        },
    };
    settle(&store, &l, gave_way, AttemptOutcome::Snoozed).await;
    assert_eq!(store.cancel(&id).await.unwrap(), CancelOutcome::Cancelled);
    assert_eq!(store.retry(&id).await.unwrap(), RetryOutcome::Queued);
    let l = fetch_one(&store, "w1").await.unwrap();
    assert_eq!(l.id, id);
    tokio::time::sleep(Duration::from_millis(3)).await;
    let later = enqueue(&store, NewJob::new(cleanup("a"))).await;
    tokio::time::sleep(Duration::from_millis(3)).await;
    let retry = SettleAction::Retry {
        delay: Duration::ZERO,
        error: err(ErrorClass::Transient),
    };
    settle(&store, &l, retry, AttemptOutcome::Failed).await;
    let next = fetch_one(&store, "w1").await.unwrap();
    assert_eq!(next.id, later, "the retry fell due after the later job was queued: it runs second");
}

pub async fn capped_giving_way_is_not_counted_against_the_snooze_cap<S: JobStore>(store: S) {
    let id = enqueue(&store, NewJob::new(cleanup("a1"))).await;
    let turn = ErrorInfo {
        class: ErrorClass::Interrupted,
        message: "handed back: worked its 1s turn while another job waits for the slot".into(),
    };
    for n in 1..=5 {
        let l = fetch_one(&store, "w1").await.unwrap_or_else(|| panic!("run {n} leased"));
        let gave_way = SettleAction::GaveWay {
            delay: Duration::ZERO,
            error: turn.clone(),
        };
        settle(&store, &l, gave_way, AttemptOutcome::Snoozed).await;
    }
    let job = store.get(&id).await.unwrap().unwrap();
    assert_eq!(
        job.state,
        JobState::Scheduled,
        "5 turns given away are no snoozes past the cap of 3"
    );
    assert_eq!(job.attempts, 0, "giving way uses no attempt");
    let w = store.waiting(&id).await.unwrap().expect("it says why it waits");
    assert_eq!(w.reason, WaitReason::Scheduled, "{w:?}");
    assert_eq!(w.detail["class"], "interrupted", "{w:?}");
    let l = fetch_one(&store, "w1").await.expect("run 6 leased");
    let snooze = SettleAction::Snooze {
        delay: Duration::ZERO,
        error: err(ErrorClass::RateLimited),
        advanced: false,
    };
    settle(&store, &l, snooze, AttemptOutcome::Snoozed).await;
    assert_eq!(state_of(&store, &id).await, JobState::Scheduled, "one counted snooze of 3");

    let l = fetch_one(&store, "w1").await.expect("run 7 leased");
    assert_eq!(store.cancel(&id).await.unwrap(), CancelOutcome::Requested);
    let gave_way = SettleAction::GaveWay {
        delay: Duration::ZERO,
        error: turn,
    };
    assert_eq!(
        settle(&store, &l, gave_way, AttemptOutcome::Snoozed).await,
        SettleResult::AppliedAs(JobState::Cancelled)
    );
    assert_eq!(state_of(&store, &id).await, JobState::Cancelled, "a cancel wins over giving way");
    assert_eq!(store.get(&id).await.unwrap().unwrap().attempts, 0, "giving way uses no attempt");
}

pub async fn the_attempt_history_keeps_the_newest_fifty<S: JobStore>(store: S) {
    let id = enqueue(&store, NewJob::new(cleanup("a1"))).await;
    for i in 0..60 {
        let l = fetch_one(&store, "w1").await.unwrap();
        settle(
            &store,
            &l,
            SettleAction::Snooze {
                delay: Duration::ZERO,
                error: ErrorInfo {
                    class: ErrorClass::RateLimited,
                    message: format!("run {i}"),
                },
                advanced: false,
            },
            AttemptOutcome::Snoozed,
        )
        .await;
    }
    let job = store.get(&id).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Scheduled);
    let messages: Vec<String> = job
        .attempt_history
        .iter()
        .map(|a| a.error.as_ref().unwrap().message.clone())
        .collect();
    let newest: Vec<String> = (10..60).map(|i| format!("run {i}")).collect();
    assert_eq!(messages, newest, "the newest 50, oldest first");
}

pub async fn trimming_catches_up_past_one_chunk<S: JobStore>(store: S) {
    let jobs: Vec<NewJob> = (0..1200).map(|_| NewJob::new(cleanup("a1"))).collect();
    store.enqueue_bulk(jobs).await.unwrap();
    let leased = store.fetch(JobKind::Cleanup, "w1", 1000, LEASE).await.unwrap().jobs;
    let rest = store.fetch(JobKind::Cleanup, "w1", 1000, LEASE).await.unwrap().jobs;
    let all = successes(leased.iter().chain(rest.iter()));
    assert_eq!(all.len(), 1200);
    store.settle(JobKind::Cleanup, &all).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let began = std::time::Instant::now();
    let first = store
        .trim(JobKind::Cleanup, Duration::from_millis(1), 500)
        .await
        .unwrap()
        .expect("no other trimmer");
    assert_eq!(first.removed + first.backlog, 1200, "{first:?}");
    if first.backlog > 0 {
        // A call stops short of caught up only once its time budget (250 ms) is spent:
        // on a slow or busy host one chunk may take that long.
        assert!(
            began.elapsed() >= Duration::from_millis(250),
            "one trim call keeps going past its chunk size until caught up: {first:?} after {:?}",
            began.elapsed()
        );
    }
    // The rest goes in the calls after, each at least one chunk.
    let mut left = first.backlog;
    for _ in 0..3 {
        if left == 0 {
            break;
        }
        let next = store
            .trim(JobKind::Cleanup, Duration::from_millis(1), 500)
            .await
            .unwrap()
            .expect("no other trimmer");
        assert!(next.removed >= left.min(500), "{next:?} with {left} left");
        left = next.backlog;
    }
    assert_eq!(left, 0);
    assert_eq!(store.counts(JobKind::Cleanup).await.unwrap().succeeded, 0);
}

pub async fn capped_dead_jobs_past_the_dead_cap_are_trimmed_oldest_first<S: JobStore>(store: S) {
    let mut dead = Vec::new();
    for _ in 0..5 {
        let id = enqueue(&store, NewJob::new(cleanup("a1"))).await;
        let l = fetch_one(&store, "w1").await.unwrap();
        settle(&store, &l, SettleAction::Dead(err(ErrorClass::Permanent)), AttemptOutcome::Failed).await;
        dead.push(id);
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    let removed = store.trim(JobKind::Cleanup, Duration::from_secs(3600), 500).await.unwrap();
    assert_eq!(removed.map(|t| t.removed), Some(3), "dead jobs are capped at 2");
    for id in &dead[..3] {
        assert!(store.get(id).await.unwrap().is_none());
    }
    for id in &dead[3..] {
        assert!(store.get(id).await.unwrap().is_some(), "the newest dead jobs are kept");
    }
}

/// Found by the hostile-tenant audit of 2026-12-06: past the dead cap (`dead_max`, 2
/// here) the kind's oldest dead jobs went whoever they belonged to, so one tenant's
/// deaths trimmed another tenant's dead letter. The account holding the most goes first.
pub async fn capped_the_dead_cap_trims_the_account_holding_the_most_dead_jobs<S: JobStore>(store: S) {
    let dead = one_then_four_dead(&store).await;
    the_dead_cap_took_the_account_holding_the_most(&store, &dead).await;
}

/// b2's one dead job, the oldest, then four of a1's: three over a dead cap of 2.
pub async fn one_then_four_dead<S: JobStore>(store: &S) -> Vec<JobId> {
    let mut dead = Vec::new();
    for account in ["b2", "a1", "a1", "a1", "a1"] {
        let id = enqueue(store, NewJob::new(cleanup(account))).await;
        let l = fetch_one(store, "w1").await.unwrap();
        assert_eq!(l.id, id);
        settle(store, &l, SettleAction::Dead(err(ErrorClass::Permanent)), AttemptOutcome::Failed).await;
        dead.push(id);
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    dead
}

/// The trim of [`one_then_four_dead`]'s jobs took a1's three oldest and kept b2's.
pub async fn the_dead_cap_took_the_account_holding_the_most<S: JobStore>(store: &S, dead: &[JobId]) {
    let trimmed = store.trim(JobKind::Cleanup, Duration::from_secs(3600), 500).await.unwrap();
    assert_eq!(trimmed.map(|t| t.removed), Some(3), "5 dead jobs, 2 kept");
    assert!(
        store.get(&dead[0]).await.unwrap().is_some(),
        "b2's dead job stays: a1 holds the most"
    );
    for (i, id) in dead.iter().enumerate().skip(1) {
        assert_eq!(store.get(id).await.unwrap().is_some(), i == 4, "a1's oldest three go: job {i}");
    }
}

/// With `dead_max` 8: six dead jobs of one account are under the kind's cap, whatever
/// the partitions; ten are two over it, and the two oldest go.
pub async fn capped_the_dead_cap_of_eight_holds_for_the_kind<S: JobStore>(store: S) {
    let mut dead = Vec::new();
    for account in ["a1", "a1", "a1", "a1", "a1", "a1", "b2", "c3", "d4", "e5"] {
        let id = enqueue(&store, NewJob::new(cleanup(account))).await;
        let l = fetch_one(&store, "w1").await.unwrap();
        assert_eq!(l.id, id);
        settle(&store, &l, SettleAction::Dead(err(ErrorClass::Permanent)), AttemptOutcome::Failed).await;
        dead.push(id);
        tokio::time::sleep(Duration::from_millis(3)).await;
        if dead.len() == 6 {
            let trimmed = store.trim(JobKind::Cleanup, Duration::from_secs(3600), 500).await.unwrap();
            assert_eq!(trimmed.map(|t| t.removed), Some(0), "6 dead jobs are under the kind's cap of 8");
        }
    }
    let trimmed = store.trim(JobKind::Cleanup, Duration::from_secs(3600), 500).await.unwrap();
    assert_eq!(trimmed.map(|t| t.removed), Some(2), "10 dead jobs, 8 kept");
    for (i, id) in dead.iter().enumerate() {
        assert_eq!(
            store.get(id).await.unwrap().is_some(),
            i >= 2,
            "the two oldest go, whatever their partition: job {i}"
        );
    }
}

pub async fn a_trimmed_jobs_idempotency_key_is_free_for_any_request<S: JobStore>(store: S) {
    let first = enqueue(&store, NewJob::new(cleanup("a1")).idempotency_key("k1")).await;
    let l = fetch_one(&store, "w1").await.unwrap();
    settle(&store, &l, SettleAction::Succeeded(json!({})), AttemptOutcome::Succeeded).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    store.trim(JobKind::Cleanup, Duration::from_millis(1), 100).await.unwrap();
    let other = store.enqueue(NewJob::new(cleanup("a2")).idempotency_key("k1")).await;
    let other = other.expect("another body with the key of a trimmed job is a new job, not a conflict");
    assert!(other.created);
    assert_ne!(other.id, first);
}

pub async fn a_replayed_job_shows_no_stale_error_or_progress<S: JobStore>(store: S) {
    let id = enqueue(&store, NewJob::new(cleanup("a1"))).await;
    let l = fetch_one(&store, "w1").await.unwrap();
    store
        .set_progress(
            &id,
            &l.token,
            &Progress {
                done: 1,
                total: Some(2),
                message: None,
            },
        )
        .await
        .unwrap();
    settle(&store, &l, SettleAction::Dead(err(ErrorClass::Permanent)), AttemptOutcome::Failed).await;
    assert_eq!(store.retry(&id).await.unwrap(), RetryOutcome::Queued);
    let job = store.get(&id).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Queued);
    assert!(job.last_error.is_none(), "the old error is gone");
    assert!(job.progress.is_none(), "the old progress is gone");
    assert!(job.started_at.is_none());
}

pub async fn a_replayed_jobs_runs_count_from_the_start_of_its_new_life<S: JobStore>(store: S) {
    let id = enqueue(&store, NewJob::new(cleanup("a1")).max_attempts(2)).await;
    let l = fetch_one(&store, "w1").await.unwrap();
    assert_eq!(l.life(), (1, 2));
    settle(&store, &l, SettleAction::Dead(err(ErrorClass::Permanent)), AttemptOutcome::Failed).await;
    assert_eq!(store.retry(&id).await.unwrap(), RetryOutcome::Queued);
    let again = fetch_one(&store, "w1").await.unwrap();
    // Run numbers go on (run 2 of 3: the one used and a fresh budget of 2), but its
    // failures back off as a first run's would.
    assert_eq!((again.attempt, again.max_attempts), (2, 3));
    assert_eq!(again.life(), (1, 2), "the replayed job's first run is the first of its new life");
}

/// Found by the review of 2026-12-05: a run that snoozed gives its attempt back, and a
/// cancel while the job waited left its count one below that run's number, so a replay's
/// first run had the same number as the snoozed one (a backfill names the attempt that
/// failed a window by its number, and skipped that window in the replay).
pub async fn a_replay_after_a_snoozed_run_was_cancelled_numbers_its_runs_on<S: JobStore>(store: S) {
    let id = enqueue(&store, NewJob::new(cleanup("a1"))).await;
    let l = fetch_one(&store, "w1").await.unwrap();
    assert_eq!(l.attempt, 1);
    let snooze = SettleAction::Snooze {
        delay: Duration::from_secs(60),
        error: err(ErrorClass::RateLimited),
        advanced: false,
    };
    settle(&store, &l, snooze, AttemptOutcome::Snoozed).await;
    assert_eq!(store.cancel(&id).await.unwrap(), CancelOutcome::Cancelled);
    assert_eq!(store.retry(&id).await.unwrap(), RetryOutcome::Queued);
    let again = fetch_one(&store, "w1").await.unwrap();
    assert_eq!(again.attempt, 2, "the replay's first run comes after the snoozed run 1");
}

/// Found by the queue-core audit of 2026-12-05: a job cancelled while it waited in the
/// prefetch of a worker that then died was reclaimed as a lost run: an attempt used and
/// a `lost` run recorded that never happened. It never started: it ends cancelled with
/// no attempt used and no run in its history, as when its live worker settles it.
pub async fn capped_a_job_cancelled_in_a_dead_workers_prefetch_ends_cancelled_without_a_run<S: JobStore>(store: S) {
    let short = Duration::from_millis(100);
    let id = enqueue(&store, NewJob::new(cleanup("a1"))).await;
    let leased = store.fetch(JobKind::Cleanup, "w1", 1, short).await.unwrap().jobs;
    assert_eq!(leased.len(), 1);
    assert_eq!(store.cancel(&id).await.unwrap(), CancelOutcome::Requested);
    // w1 dies before the run starts: the lease runs out.
    let mut ended = None;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        store.fetch(JobKind::Cleanup, "w2", 1, LEASE).await.unwrap();
        let job = store.get(&id).await.unwrap().unwrap();
        if job.state != JobState::Running {
            ended = Some(job);
            break;
        }
    }
    let job = ended.expect("the lease was reclaimed");
    assert_eq!(job.state, JobState::Cancelled);
    assert_eq!(job.attempts, 0, "a run that never started uses no attempt");
    // (nor shows a start: found by the API audit of 2026-12-07, third)
    assert!(job.started_at.is_none(), "{job:?}");
    assert!(
        job.attempt_history.iter().all(|a| a.outcome != AttemptOutcome::Lost),
        "no lost run is recorded for a run that never started: {:?}",
        job.attempt_history
    );
    assert_eq!(store.retry(&id).await.unwrap(), RetryOutcome::Queued);
    let again = fetch_one(&store, "w2").await.unwrap();
    assert_eq!(again.attempt, 1, "the replay's first run is run 1");
}

/// Found by an audit of job histories (2026-12-06): a job cancelled while it waited in
/// a worker's prefetch, then handed back unstarted (the worker stopping), ended
/// "cancelled while it ran", though it never ran; the other two ways of that case (a
/// fetch meeting it, its lease running out) say "cancelled before it started".
pub async fn capped_a_job_cancelled_in_a_prefetch_and_handed_back_says_it_never_started<S: JobStore>(store: S) {
    let id = enqueue(&store, NewJob::new(cleanup("a1"))).await;
    let leased = fetch_one(&store, "w1").await.unwrap();
    assert_eq!(store.cancel(&id).await.unwrap(), CancelOutcome::Requested);
    let r = store.settle(JobKind::Cleanup, &[Settlement::release(&leased)]).await.unwrap();
    assert_eq!(r.len(), 1);
    let job = store.get(&id).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Cancelled);
    assert_eq!(job.attempts, 0, "it never ran");
    let error = job.last_error.expect("how it ended");
    assert_eq!(
        (error.class, error.message.as_str()),
        (ErrorClass::Cancelled, "cancelled before it started")
    );
}

pub async fn capped_a_lease_that_never_started_goes_back_without_using_an_attempt<S: JobStore>(store: S) {
    let short = Duration::from_millis(100);
    let unstarted = enqueue(&store, NewJob::new(cleanup("a1")).max_attempts(1)).await;
    let started = enqueue(&store, NewJob::new(cleanup("a2")).max_attempts(1)).await;
    let leased = store.fetch(JobKind::Cleanup, "w1", 2, short).await.unwrap().jobs;
    assert_eq!(leased.len(), 2);
    let run = leased.iter().find(|l| l.id == started).unwrap();
    store
        .mark_started(
            JobKind::Cleanup,
            &[(run.id.clone(), run.token.clone())],
            std::time::Duration::from_secs(5),
        )
        .await
        .unwrap();
    // w1 dies: both leases run out, through their grace.
    let mut back = None;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        back = store.fetch(JobKind::Cleanup, "w2", 1, LEASE).await.unwrap().jobs.pop();
        if back.is_some() {
            break;
        }
    }
    let back = back.expect("the never-started job is handed out again");
    assert_eq!(back.id, unstarted);
    assert_eq!(back.attempt, 1, "the run that never started used no attempt");
    assert_eq!(
        state_of(&store, &started).await,
        JobState::Dead,
        "a started run that was lost used its only attempt"
    );
}

/// Found by the chaos audit of 2026-12-07 (fourth): a lease that never started, reclaimed
/// from a worker that died, went back to the queue keeping the dead lease's time as the
/// job's `started_at`, though the job had no run in its life (the cancel and settle paths
/// already dropped it).
pub async fn capped_a_job_handed_back_from_a_dead_workers_prefetch_shows_no_start<S: JobStore>(store: S) {
    let short = Duration::from_millis(100);
    let id = enqueue(&store, NewJob::new(cleanup("a1"))).await;
    assert_eq!(store.fetch(JobKind::Cleanup, "w1", 1, short).await.unwrap().jobs.len(), 1);
    // (a paused queue leases nothing, but its fetches still reclaim)
    store.set_paused(JobKind::Cleanup, true).await.unwrap();
    // w1 dies: its lease runs out, through its grace, and w2's fetch hands the job back.
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(store.fetch(JobKind::Cleanup, "w2", 1, LEASE).await.unwrap().jobs.is_empty());
        if state_of(&store, &id).await == JobState::Queued {
            break;
        }
    }
    let job = store.get(&id).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Queued, "{job:?}");
    assert_eq!(job.attempts, 0, "{job:?}");
    assert_eq!(job.started_at, None, "a job with no run in its life shows no start: {job:?}");
}

/// Found by the visibility audit of 2026-12-05: a job cancelled while it waited in a
/// worker's prefetch never ran, yet ended with an attempt used (every other way a lease
/// ends unstarted uses none).
pub async fn capped_a_job_cancelled_while_it_waited_in_a_prefetch_uses_no_attempt<S: JobStore>(store: S) {
    let first = enqueue(&store, NewJob::new(cleanup("a1"))).await;
    let second = enqueue(&store, NewJob::new(cleanup("a1"))).await;
    let leased = store.fetch(JobKind::Cleanup, "w1", 2, LEASE).await.unwrap().jobs;
    assert_eq!(leased.len(), 2);
    let run = leased.iter().find(|l| l.id == first).unwrap();
    store
        .mark_started(
            JobKind::Cleanup,
            &[(run.id.clone(), run.token.clone())],
            std::time::Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!(store.cancel(&second).await.unwrap(), CancelOutcome::Requested);
    let waiting = leased.iter().find(|l| l.id == second).unwrap();
    let cancelled = ErrorInfo {
        class: ErrorClass::Cancelled,
        message: "cancelled before it started".into(),
    };
    // (with no run record, as the runtime settles a run it never started)
    let withdrawn = Settlement {
        id: waiting.id.clone(),
        token: waiting.token.clone(),
        action: SettleAction::Cancelled(cancelled),
        attempt: None,
    };
    assert_eq!(store.settle(JobKind::Cleanup, &[withdrawn]).await.unwrap(), [SettleResult::Applied]);
    let job = store.get(&second).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Cancelled);
    assert_eq!(job.attempts, 0, "a run that never started uses no attempt");
    assert!(job.attempt_history.is_empty(), "{job:?}");
    // nor shows a start (found by the API audit of 2026-12-07, third: the lease's time)
    assert!(job.started_at.is_none(), "{job:?}");
    // A run that did start and is cancelled keeps its attempt.
    assert_eq!(store.cancel(&first).await.unwrap(), CancelOutcome::Requested);
    settle(
        &store,
        run,
        SettleAction::Cancelled(err(ErrorClass::Cancelled)),
        AttemptOutcome::Cancelled,
    )
    .await;
    assert_eq!(store.get(&first).await.unwrap().unwrap().attempts, 1);
}

/// Found by the audit of 2026-12-05: a lease handed back unstarted (a shutdown, a fetch
/// that could not make it durable) while a cancel was pending gave its attempt back twice,
/// so the job ended with -1 attempts: its callback's ending did not parse and a replay had
/// one run fewer.
pub async fn capped_a_cancelled_job_handed_back_before_it_started_gives_its_attempt_back_once<S: JobStore>(store: S) {
    let id = enqueue(&store, NewJob::new(cleanup("a1")).max_attempts(2)).await;
    let leased = store.fetch(JobKind::Cleanup, "w1", 1, LEASE).await.unwrap().jobs;
    assert_eq!(leased.len(), 1);
    assert_eq!(store.cancel(&id).await.unwrap(), CancelOutcome::Requested);
    // As a shutdown hands a prefetched lease back: no attempt record.
    store.settle(JobKind::Cleanup, &[Settlement::release(&leased[0])]).await.unwrap();
    assert_eq!(store.get(&id).await.unwrap().unwrap().state, JobState::Cancelled);
    assert_eq!(store.retry(&id).await.unwrap(), RetryOutcome::Queued);
    let again = fetch_one(&store, "w1").await.unwrap();
    assert_eq!(
        (again.attempt, again.max_attempts),
        (1, 2),
        "the replayed job's first run is run 1 of its whole budget"
    );
}

pub async fn capped_a_leased_job_not_yet_started_counts_as_prefetched_and_says_so<S: JobStore>(store: S) {
    let first = enqueue(&store, NewJob::new(cleanup("a1"))).await;
    let second = enqueue(&store, NewJob::new(cleanup("a2"))).await;
    tokio::time::sleep(Duration::from_millis(30)).await;
    let leased = store.fetch(JobKind::Cleanup, "w1", 2, LEASE).await.unwrap().jobs;
    assert_eq!(leased.len(), 2);
    let c = store.counts(JobKind::Cleanup).await.unwrap();
    assert_eq!((c.queued, c.running, c.prefetched), (0, 0, 2));
    assert!(c.lag_ms >= 30, "the lag sees jobs waiting in a prefetch: {} ms", c.lag_ms);
    let run = leased.iter().find(|l| l.id == first).unwrap();
    store
        .mark_started(
            JobKind::Cleanup,
            &[(run.id.clone(), run.token.clone())],
            std::time::Duration::from_secs(5),
        )
        .await
        .unwrap();
    let c = store.counts(JobKind::Cleanup).await.unwrap();
    assert_eq!((c.running, c.prefetched), (1, 1));
    assert!(store.waiting(&first).await.unwrap().is_none(), "a started run is not waiting");
    let w = store.waiting(&second).await.unwrap().expect("a prefetched job says why it waits");
    assert_eq!(w.reason, WaitReason::Prefetched);
    assert_eq!(w.detail["worker"], "w1");
    // Settling, like a reclaim, takes it out of the prefetch.
    let unstarted = leased.iter().find(|l| l.id == second).unwrap();
    settle(&store, unstarted, SettleAction::Release, AttemptOutcome::Released).await;
    let c = store.counts(JobKind::Cleanup).await.unwrap();
    assert_eq!((c.queued, c.running, c.prefetched), (1, 1, 0));
}

/// Found by the chaos audit of 2026-12-07 (third): a settle decided whether its run had
/// started by the lease's place in `unstarted` alone, and a start is reported on the
/// keeper's next beat: a run that started and failed (or honoured a cancel) within that
/// beat, with a cancel pending, was said to have ended "before it started" beside its
/// own run record, and its attempt was given back. A run that never started sends no
/// record; one that sends a record ran.
pub async fn capped_a_run_that_ended_before_its_start_was_reported_still_ran<S: JobStore>(store: S) {
    let id = cancel_then_end(&store, SettleAction::Dead(err(ErrorClass::Permanent)), AttemptOutcome::Failed).await;
    let job = store.get(&id).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Cancelled);
    assert_eq!(job.attempts, 1, "the failed run used its attempt: {job:?}");
    assert_eq!(
        job.last_error.as_ref().map(|e| e.message.as_str()),
        Some("cancelled while it ran"),
        "{job:?}"
    );
    // One that honoured the cancel at once ran too.
    let id = enqueue(&store, NewJob::new(cleanup("a2"))).await;
    let l = fetch_one(&store, "w1").await.unwrap();
    assert_eq!(store.cancel(&id).await.unwrap(), CancelOutcome::Requested);
    let stopped = err(ErrorClass::Cancelled);
    settle(&store, &l, SettleAction::Cancelled(stopped), AttemptOutcome::Cancelled).await;
    let job = store.get(&id).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Cancelled);
    assert_eq!(job.attempts, 1, "the run that stopped for the cancel used its attempt: {job:?}");
    assert_eq!(job.attempt_history.len(), 1, "{job:?}");
}

/// Found by the chaos audit of 2026-12-07 (third): a job's free hand-backs of leases that
/// never started (3, so a job that kills its worker before its start is reported still
/// runs out of attempts) counted over its whole life: a job caught unstarted by a dead
/// worker now and then, between runs that did start, had its fourth such lease reclaimed
/// as a lost run, and on its last attempt died "lost" though that lease never ran. A
/// reported start gives the job its free hand-backs again.
pub async fn capped_a_job_that_started_since_its_last_hand_back_has_its_free_hand_backs_again<S: JobStore>(store: S) {
    hand_backs_between_runs(&store, true).await;
}

/// The same for runs that ended within a beat of their start, before the keeper reported
/// it (found by the review of 2026-12-07): a run that sends its record started.
pub async fn capped_a_job_whose_runs_ended_before_their_starts_were_reported_has_its_free_hand_backs_again<S: JobStore>(store: S) {
    hand_backs_between_runs(&store, false).await;
}

/// Four times: a lease of the job reclaimed unstarted from a dead worker, then a run that
/// starts (reported as started if `report_start`) and gives its turn away.
async fn hand_backs_between_runs<S: JobStore>(store: &S, report_start: bool) {
    let store = store.clone();
    let id = enqueue(&store, NewJob::new(cleanup("a1")).max_attempts(1)).await;
    let short = Duration::from_millis(100);
    let lease_again = |worker: &'static str| {
        let store = &store;
        async move {
            for _ in 0..40 {
                if let Some(l) = store.fetch(JobKind::Cleanup, worker, 1, short).await.unwrap().jobs.pop() {
                    return Some(l);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            None
        }
    };
    lease_again("w1").await.expect("leased");
    for round in 0..4 {
        // its worker dies before the run starts: another fetch hands it out again, free
        let back = match lease_again("w2").await {
            Some(l) => l,
            None => panic!("round {round}: never handed out again: {:?}", store.get(&id).await.unwrap()),
        };
        assert_eq!((back.id.clone(), back.attempt), (id.clone(), 1), "round {round}: no attempt used");
        // this time the run starts, and gives its turn away (no attempt used)
        if report_start {
            store
                .mark_started(JobKind::Cleanup, &[(back.id.clone(), back.token.clone())], Duration::from_secs(5))
                .await
                .unwrap();
        }
        let gave_way = SettleAction::GaveWay {
            delay: Duration::ZERO,
            error: err(ErrorClass::Interrupted),
        };
        settle(&store, &back, gave_way, AttemptOutcome::Snoozed).await;
        // leased again, by a worker that dies before this run starts
        lease_again("w1").await.expect("leased again after giving way");
    }
}
