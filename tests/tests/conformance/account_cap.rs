//! The cap on an account's unfinished jobs (`max_unfinished_per_account`): a tenant
//! cannot fill the store for the others. Rules named `full_*` take a store whose cap
//! is [`FULL_AT`].
use super::*;

/// The cap the `full_*` rules are run with.
pub const FULL_AT: u64 = 3;

/// Found by the hostile-tenant audit of 2026-12-06: nothing capped how many jobs an
/// account kept stored (jobs delayed a year are never trimmed), so one tenant within its
/// write rate could fill Redis to its limit and every tenant's writes were refused. Past
/// the cap a job is refused with nothing written; the account's other kinds, the other
/// accounts (in the same call) and the account once a job of it ends are not held.
pub async fn full_an_account_past_its_cap_of_unfinished_jobs_is_refused_with_nothing_written<S: JobStore>(store: S) {
    let later = |account| NewJob::new(cleanup(account)).delay(Duration::from_secs(360 * 24 * 3600));
    let jobs = vec![
        later("a1"),
        NewJob::new(cleanup("a1")),
        later("b2"),
        later("a1"),
        NewJob::new(cleanup("a1")),
        later("a1").idempotency_key("a1-fifth"),
    ];
    let out = store.enqueue_bulk(jobs).await.unwrap();
    for (i, r) in out.iter().enumerate() {
        match i {
            0..=3 => assert!(r.as_ref().is_ok_and(|e| e.created), "job {i}: {r:?}"),
            _ => assert!(
                matches!(r, Err(EnqueueError::AccountFull { unfinished: FULL_AT })),
                "job {i}: {r:?}"
            ),
        }
    }
    let counts = store.counts(JobKind::Cleanup).await.unwrap();
    assert_eq!(
        (counts.queued, counts.scheduled),
        (1, 3),
        "a1's refused jobs left nothing behind: a1 keeps 3, b2 1"
    );
    let other_kind = store.enqueue(NewJob::new(sync("a1"))).await;
    assert!(other_kind.is_ok_and(|e| e.created), "the cap is per kind");
    let refused = store.enqueue(later("a1")).await;
    assert!(
        matches!(refused, Err(EnqueueError::AccountFull { unfinished: FULL_AT })),
        "{refused:?}"
    );

    // A job ending gives its place back: a run that succeeds, a job cancelled.
    let l = fetch_one(&store, "w1").await.expect("a1's queued job");
    settle(&store, &l, SettleAction::Succeeded(json!({})), AttemptOutcome::Succeeded).await;
    let again = store.enqueue(later("a1").idempotency_key("a1-fifth")).await;
    let again = again.expect("the key of a refused job is free, and a1 has room again");
    assert!(again.created);
    assert!(matches!(store.enqueue(later("a1")).await, Err(EnqueueError::AccountFull { .. })));
    assert_eq!(store.cancel(&again.id).await.unwrap(), CancelOutcome::Cancelled);
    assert!(
        store.enqueue(later("a1")).await.is_ok_and(|e| e.created),
        "a cancelled job's place is free"
    );
}
