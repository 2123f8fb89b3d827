//! The storage contract (DESIGN §3), run against every `JobStore` implementation.
//! Each rule is a generic async fn over the trait; the macro at the bottom runs each
//! one against the Redis store on a private redis-server.
mod conformance;

use conformance::*;
use drover::queue::{JobDefaults, RedisStore};
use drover_tests::harness::{Durability, RedisServer};

async fn redis_store() -> (RedisServer, RedisStore) {
    let server = RedisServer::start(Durability::None);
    let store = RedisStore::connect(
        &server.url(),
        "drover",
        JobDefaults {
            max_attempts: 3,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    (server, store)
}

macro_rules! conformance {
    ($($rule:ident),* $(,)?) => {
        mod redis_backend {
            $(
                #[tokio::test]
                async fn $rule() {
                    let (_server, store) = super::redis_store().await;
                    super::conformance::$rule(store).await;
                }
            )*
        }
    };
}

conformance!(
    an_enqueued_job_is_queued_with_its_payload_and_no_attempts,
    a_delayed_job_is_scheduled_and_runs_only_once_due,
    higher_priority_runs_first_and_equal_priority_in_order,
    a_fetched_job_is_running_and_leased_to_one_worker_only,
    a_successful_run_is_recorded_with_its_result_and_attempt,
    a_transient_failure_with_attempts_left_is_retried_later,
    a_rate_limited_run_is_snoozed_without_using_an_attempt,
    a_permanent_failure_goes_to_dead_at_once,
    running_out_of_attempts_goes_to_dead,
    an_expired_lease_is_reclaimed_and_the_late_result_changes_nothing,
    a_renewed_lease_is_never_reclaimed,
    cancelling_queued_or_scheduled_jobs_ends_them_at_once,
    cancelling_a_running_job_tells_its_worker,
    a_released_job_goes_back_to_queued_without_using_an_attempt,
    a_dead_job_can_be_retried_with_a_fresh_budget,
    the_same_idempotency_key_and_body_return_the_same_job,
    the_same_idempotency_key_with_another_body_is_a_conflict,
    a_second_sync_for_an_account_returns_the_existing_one,
    a_paused_queue_hands_out_nothing_until_resumed,
    counts_follow_every_state,
    listing_is_newest_first_and_pages_cover_every_job_once,
    listing_filters_by_state_and_account,
    dead_jobs_can_be_purged_and_old_terminal_jobs_are_trimmed,
    only_the_lease_holder_can_record_progress,
    bulk_enqueue_gives_each_job_its_own_outcome,
    ten_thousand_due_jobs_are_promoted_in_bounded_chunks,
    a_reclaimed_job_goes_ahead_of_the_backlog,
);

/// Backend-specific: a record written by a "newer version" (schema v99) is still handed
/// out, with the reason, so the runtime can dead-letter it instead of looping.
#[tokio::test]
async fn a_record_this_version_cannot_read_is_handed_out_with_the_reason() {
    use drover::job::JobKind;
    use drover::queue::{JobStore, NewJob};
    let (server, store) = redis_store().await;
    let id = store.enqueue(NewJob::new(cleanup("a1"))).await.unwrap().id;
    let _: () = redis::cmd("HSET")
        .arg(format!("drover:{{cleanup}}:job:{id}"))
        .arg("v")
        .arg("99")
        .query(&mut server.conn())
        .unwrap();
    let l = store.fetch(JobKind::Cleanup, "w1", 1, LEASE).await.unwrap().jobs.pop().unwrap();
    assert_eq!(l.id, id);
    let why = l.payload.expect_err("payload must not decode");
    assert!(why.contains("schema version"), "{why}");
}
