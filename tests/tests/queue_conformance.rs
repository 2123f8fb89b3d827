//! The storage contract (docs/architecture.md, "Job states"), run against every `JobStore` implementation.
//! Each rule is a generic async fn over the trait; the macro at the bottom runs each
//! one against the Redis store on a private redis-server.
use crate::conformance;

use conformance::*;
use drover::queue::{JobDefaults, Partitions, RedisStore};
use drover_tests::harness::{Durability, RedisServer};

/// The queue scripts (their function names) that still touch keys they do not declare in
/// KEYS (issue 16; docs/architecture.md, "What a cluster needs of the scripts").
const STILL_UNDECLARED: &[&str] = &[];

async fn redis_store() -> (RedisServer, RedisStore) {
    store_with(JobDefaults {
        max_attempts: 3,
        ..Default::default()
    })
    .await
}

async fn store_with(defaults: JobDefaults) -> (RedisServer, RedisStore) {
    let server = RedisServer::start(Durability::None);
    let store = RedisStore::connect(&server.url(), "drover", defaults).await.unwrap();
    (server, store)
}

/// The same store with its queues in four partitions on the one server.
async fn partitioned_store() -> (RedisServer, RedisStore) {
    store_with(JobDefaults {
        max_attempts: 3,
        partitions: Partitions::new(4).unwrap(),
        ..Default::default()
    })
    .await
}

/// `all`: rules that hold for every layout. `one_partition`: rules about the order or
/// identity of jobs of *different accounts* (priority bands and turns across accounts, an
/// idempotency key reused with another account's body), which hold within a partition
/// but not across partitions (docs/architecture.md, "Partitions, Redis Cluster and
/// Sentinel"): run on one server and on Sentinel, not on the partitioned layouts.
macro_rules! conformance {
    (all: [$($rule:ident),* $(,)?], one_partition: [$($one:ident),* $(,)?]) => {
        mod redis_backend {
            $(
                #[tokio::test]
                async fn $rule() {
                    let (_server, store) = super::redis_store().await;
                    super::conformance::$rule(store).await;
                }
            )*
            $(
                #[tokio::test]
                async fn $one() {
                    let (_server, store) = super::redis_store().await;
                    super::conformance::$one(store).await;
                }
            )*
        }

        mod redis_partitioned {
            $(
                #[tokio::test]
                async fn $rule() {
                    let (_server, store) = super::partitioned_store().await;
                    super::conformance::$rule(store).await;
                }
            )*
        }

        /// Every rule on one Redis Cluster (3 primaries, a replica each) with six
        /// partitions per kind; each rule in a namespace of its own. One test, so the
        /// cluster is started once.
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn every_rule_holds_on_a_three_primary_cluster_with_six_partitions() {
            let cluster = drover_tests::harness::RedisCluster::start(3, 1);
            let defaults = JobDefaults {
                max_attempts: 3,
                partitions: Partitions::new(6).unwrap(),
                ..Default::default()
            };
            $(
                let ns = concat!("c-", stringify!($rule));
                let store = RedisStore::connect(&cluster.url(), &ns[..ns.len().min(60)], defaults.clone()).await.unwrap();
                eprintln!("cluster rule {}", stringify!($rule));
                conformance::$rule(store).await;
            )*
            let spread = cluster.keys_per_primary();
            eprintln!("keys per primary: {spread:?}");
            assert!(spread.len() == 3 && spread.iter().all(|(_, keys)| *keys > 0), "every primary holds queue keys: {spread:?}");
        }

        /// Every rule on one server and four partitions, its stores declaring every key
        /// as on a cluster (`queue.declare_every_key`), watched through `MONITOR`: the
        /// scripts that touch a key they do not declare in KEYS are exactly those still
        /// listed in `STILL_UNDECLARED` (issue 16), so a script that declares its keys
        /// comes off the list and none goes back on it.
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn the_scripts_that_touch_undeclared_keys_are_the_known_ones() {
            let server = RedisServer::start(Durability::None);
            let monitor = drover_tests::harness::KeyMonitor::start(server.port());
            let defaults = JobDefaults {
                max_attempts: 3,
                declare_every_key: true,
                ..Default::default()
            };
            let partitioned = JobDefaults {
                partitions: Partitions::new(4).unwrap(),
                ..defaults.clone()
            };
            $(
                let ns = concat!("k-", stringify!($rule));
                let store = RedisStore::connect(&server.url(), &ns[..ns.len().min(60)], partitioned.clone()).await.unwrap();
                conformance::$rule(store).await;
            )*
            $(
                let ns = concat!("k-", stringify!($one));
                let store = RedisStore::connect(&server.url(), &ns[..ns.len().min(60)], defaults.clone()).await.unwrap();
                conformance::$one(store).await;
            )*
            // the one script no rule runs: what a worker does at start and every 2 s
            let store = RedisStore::connect(&server.url(), "k-adopt", defaults.clone()).await.unwrap();
            store.adopt_old_lanes().await.unwrap();
            let seen = monitor.finish();
            for (script, shapes) in &seen.by_script {
                eprintln!("{script}: {shapes:?}");
            }
            let called: Vec<&str> = seen.calls.keys().map(|s| s.as_str()).collect();
            let mut every: Vec<&str> = drover::queue::SCRIPTS.script_names().collect();
            every.sort();
            assert_eq!(called, every, "every queue script ran ({:?} calls)", seen.calls);
            let scripts: Vec<&str> = seen.by_script.keys().map(|s| s.as_str()).collect();
            assert_eq!(scripts, STILL_UNDECLARED, "the scripts touching undeclared keys (above, with the keys)");
        }

        /// Every rule on a Sentinel-managed primary (one replica, three sentinels).
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn every_rule_holds_on_a_sentinel_managed_primary() {
            let sentinels = drover_tests::harness::RedisSentinels::start(1);
            let defaults = JobDefaults {
                max_attempts: 3,
                ..Default::default()
            };
            $(
                let ns = concat!("s-", stringify!($rule));
                let store = RedisStore::connect(&sentinels.url(), &ns[..ns.len().min(60)], defaults.clone()).await.unwrap();
                eprintln!("sentinel rule {}", stringify!($rule));
                conformance::$rule(store).await;
            )*
            $(
                let ns = concat!("s-", stringify!($one));
                let store = RedisStore::connect(&sentinels.url(), &ns[..ns.len().min(60)], defaults.clone()).await.unwrap();
                eprintln!("sentinel rule {}", stringify!($one));
                conformance::$one(store).await;
            )*
        }
    };
}

/// The outranking rule (a policy rule) on four partitions and on a three-primary
/// cluster with six: its reads go to each account's partition, each shard's on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_more_urgent_job_outranks_a_run_of_its_account_on_partitions_and_on_a_cluster() {
    let (_server, store) = store_with(JobDefaults {
        partitions: Partitions::new(4).unwrap(),
        ..conformance::POLICY
    })
    .await;
    conformance::capped_a_more_urgent_job_waiting_at_its_accounts_cap_outranks_its_least_urgent_run(store).await;
    let cluster = drover_tests::harness::RedisCluster::start(3, 1);
    let defaults = JobDefaults {
        partitions: Partitions::new(6).unwrap(),
        ..conformance::POLICY
    };
    let store = RedisStore::connect(&cluster.url(), "c-outranked", defaults).await.unwrap();
    conformance::capped_a_more_urgent_job_waiting_at_its_accounts_cap_outranks_its_least_urgent_run(store).await;
}

/// The rules that need the store's policies set (per-account caps, snooze and dead caps).
macro_rules! conformance_with_policy {
    ($($rule:ident),* $(,)?) => {
        mod redis_backend_with_policy {
            $(
                #[tokio::test]
                async fn $rule() {
                    let (_server, store) = super::store_with(super::conformance::POLICY).await;
                    super::conformance::$rule(store).await;
                }
            )*
        }
    };
}

conformance!(
    all: [
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
        a_paused_queue_hands_out_nothing_until_resumed,
        counts_follow_every_state,
        a_settle_the_queue_ends_otherwise_says_how_it_ended,
        the_queued_count_follows_every_way_into_and_out_of_the_lanes,
        listing_is_newest_first_and_pages_cover_every_job_once,
        a_listing_by_account_and_state_walks_only_that_accounts_jobs,
        dead_jobs_can_be_purged_and_old_terminal_jobs_are_trimmed,
        only_the_lease_holder_can_record_progress,
        ten_thousand_due_jobs_are_promoted_in_bounded_chunks,
        a_reclaimed_job_goes_ahead_of_the_backlog,
        one_fetch_of_many_jobs_takes_them_in_turns,
        within_an_account_jobs_run_in_order,
        promotion_keeps_due_time_order,
        waiting_says_why_a_job_has_not_started,
        a_job_whose_wait_has_ended_says_it_is_queued_next,
        an_enqueue_that_asks_says_why_the_job_waits_as_waiting_does,
        a_job_records_what_made_it_and_a_replay_says_so,
        a_settle_sent_again_after_later_runs_records_the_run_once,
        a_dead_letter_replay_leaves_a_job_that_is_no_longer_dead_alone,
        a_cancel_during_a_run_sticks_when_the_run_ends_in_retry,
        a_cancel_during_a_run_sticks_when_the_run_ends_in_snooze,
        a_cancel_during_a_run_sticks_when_the_run_is_released,
        a_cancel_during_a_run_sticks_when_the_run_ends_dead,
        a_job_that_gave_its_turn_away_comes_back_at_the_front_of_its_account,
        a_replayed_job_forgets_a_turn_it_gave_away_in_its_earlier_life,
        a_lease_renewed_within_its_grace_is_not_reclaimed,
        a_lease_left_unrenewed_while_redis_kept_serving_is_reclaimed_without_a_grace,
        a_sync_scheduled_for_later_does_not_swallow_one_due_now,
        a_sync_waiting_to_retry_does_not_swallow_a_new_one,
        a_sync_parked_by_the_marketplaces_limits_swallows_a_new_one,
        a_running_sync_being_cancelled_does_not_swallow_a_new_one,
        a_sync_interrupted_by_an_outage_swallows_a_new_one_and_says_why_it_waits,
        the_attempt_history_keeps_the_newest_fifty,
        each_runs_attempt_reads_back_as_its_worker_reported_it,
        a_settle_sent_again_after_its_reply_was_lost_records_the_run_once,
        a_late_settle_sent_again_is_recorded_once,
        a_replayed_job_keeps_a_late_record_and_a_purged_jobs_late_run_is_told_it_is_gone,
        a_late_success_after_the_job_succeeded_is_recorded_after_that_success,
        trimming_catches_up_past_one_chunk,
        a_trimmed_jobs_idempotency_key_is_free_for_any_request,
        a_replayed_job_shows_no_stale_error_or_progress,
        a_replayed_jobs_runs_count_from_the_start_of_its_new_life,
        a_replay_after_a_snoozed_run_was_cancelled_numbers_its_runs_on,
        a_job_with_a_callback_that_ends_in_any_way_is_due_for_delivery_with_how_it_ended,
        a_cancel_requested_during_a_run_delivers_once_the_run_ends,
        a_claimed_delivery_goes_to_no_other_worker_until_its_claim_runs_out,
        a_failed_try_comes_due_again_and_a_delivered_one_ends_the_delivery,
        a_delivery_whose_claims_keep_running_out_ends_failed_at_its_last_try,
        a_replayed_job_that_ends_again_gets_a_delivery_of_its_own,
        a_job_that_ends_again_while_its_last_delivery_is_tried_gets_both_in_order,
        a_job_with_a_callback_cannot_take_an_id_already_used,
        trimming_a_job_removes_its_delivery,
        an_account_at_its_share_of_tries_in_flight_is_passed_over_for_the_next,
        an_account_keeping_more_deliveries_due_than_a_claim_reads_holds_no_other,
        a_held_delivery_a_late_try_recorded_delivered_is_not_tried_again,
        a_park_that_falls_due_stops_counting_as_parked,
        a_park_a_fetch_has_not_promoted_yet_still_counts_as_parked,
        a_long_bulk_answers_as_one_call_would,
        a_sync_made_beside_another_marketplaces_is_its_marketplaces_sync_under_way,
        a_retried_sync_is_refused_while_its_marketplaces_sync_made_beside_is_under_way,
        a_sync_under_way_that_does_not_cover_a_new_one_takes_it_on_or_is_followed,
        a_queued_sync_asked_again_more_urgently_takes_the_priority_on,
        a_sync_asked_again_more_urgently_in_the_same_call_takes_the_priority_on,
        cancelling_an_accounts_last_queued_jobs_takes_its_turn_off_offer,
        the_lag_is_the_oldest_ready_jobs_wait_whatever_its_priority,
    ],
    one_partition: [
        a_sync_raised_while_queued_brings_its_accounts_turn_ahead_of_routine_backlogs,
        a_run_that_gave_way_comes_back_after_the_account_it_gave_way_for,
        a_higher_priority_band_goes_first_across_accounts,
        urgent_floods_of_other_accounts_cannot_starve_a_routine_job,
        an_urgent_account_gets_ten_turns_to_a_routine_accounts_one,
        a_new_accounts_first_job_goes_ahead_of_the_backlogs,
        an_urgent_job_for_a_lane_just_emptied_comes_within_its_own_stride,
        an_account_that_submits_one_job_at_a_time_gets_no_more_turns_than_a_backlog,
        one_fetch_of_many_jobs_keeps_the_weights,
        an_urgent_first_job_goes_ahead_of_many_routine_ones_that_came_before,
        a_short_fetch_says_the_queue_is_drained_and_when_next_due,
        accounts_take_turns_within_a_priority_band,
        a_second_sync_for_an_account_returns_the_existing_one,
        a_sync_of_another_marketplace_is_not_the_accounts_sync_under_way,
        listing_filters_by_state_and_account,
        bulk_enqueue_gives_each_job_its_own_outcome,
        a_bulk_of_plain_jobs_and_jobs_with_options_stores_each_as_given,
        concurrent_single_enqueues_each_get_their_own_outcome,
        the_same_idempotency_key_with_another_body_is_a_conflict,
    ]
);

conformance_with_policy!(
    capped_an_account_at_its_cap_is_skipped_until_one_of_its_runs_ends,
    capped_a_more_urgent_job_waiting_at_its_accounts_cap_outranks_its_least_urgent_run,
    capped_a_released_or_reclaimed_run_frees_its_accounts_slot,
    capped_a_run_handed_back_or_reclaimed_at_its_accounts_cap_goes_ahead_of_the_waiting_accounts,
    capped_one_settle_of_many_runs_frees_every_accounts_slots,
    capped_queued_jobs_of_an_account_at_its_cap_say_so,
    capped_a_job_that_comes_for_an_account_at_its_cap_waits_as_account_busy,
    capped_snoozes_are_counted_and_capped,
    capped_a_snooze_after_the_run_advanced_starts_the_count_again,
    capped_giving_way_is_not_counted_against_the_snooze_cap,
    capped_a_snooze_held_by_another_runs_breaker_probe_is_not_counted,
    capped_dead_jobs_past_the_dead_cap_are_trimmed_oldest_first,
    capped_the_dead_cap_trims_the_account_holding_the_most_dead_jobs,
    capped_a_lease_that_never_started_goes_back_without_using_an_attempt,
    capped_a_job_handed_back_from_a_dead_workers_prefetch_shows_no_start,
    capped_a_leased_job_not_yet_started_counts_as_prefetched_and_says_so,
    capped_a_job_cancelled_while_it_waited_in_a_prefetch_uses_no_attempt,
    capped_a_cancelled_job_handed_back_before_it_started_gives_its_attempt_back_once,
    capped_a_job_cancelled_in_a_dead_workers_prefetch_ends_cancelled_without_a_run,
    capped_a_job_cancelled_in_a_prefetch_and_handed_back_says_it_never_started,
    capped_a_run_that_ended_before_its_start_was_reported_still_ran,
    capped_a_job_that_started_since_its_last_hand_back_has_its_free_hand_backs_again,
    capped_a_job_whose_runs_ended_before_their_starts_were_reported_has_its_free_hand_backs_again,
    capped_counts_say_how_many_jobs_wait_for_each_reason,
    capped_reclaims_and_late_results_are_counted,
    capped_the_lag_leaves_out_jobs_their_accounts_cap_holds_back,
);

/// Backend-specific (it settles and promotes by hand): found by the
/// audit of what the API shows (2026-12-06): a job put back at the front of its lane (a
/// turn given away, a hand-back) is placed by its creation, and the lag counted its wait
/// from then, so a long job that gave way showed the queue hours behind. It counts from
/// when the job was put back.
#[tokio::test]
async fn a_job_put_back_at_the_front_counts_in_the_lag_from_when_it_was_put_back() {
    use drover::job::{ErrorClass, ErrorInfo, JobKind};
    use drover::queue::{JobStore, NewJob, SettleAction, Settlement};
    use std::time::Duration;
    let (server, store) = redis_store().await;
    for account in ["a1", "a2"] {
        store.enqueue(NewJob::new(cleanup(account))).await.unwrap();
    }
    let leased = store.fetch(JobKind::Cleanup, "w1", 2, LEASE).await.unwrap().jobs;
    assert_eq!(leased.len(), 2);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let gave_way = SettleAction::GaveWay {
        delay: Duration::ZERO,
        error: ErrorInfo {
            class: ErrorClass::Interrupted,
            message: "handed back: worked its 1s turn while another job waits for the slot".into(),
        },
    };
    let settles = vec![
        Settlement {
            id: leased[0].id.clone(),
            token: leased[0].token.clone(),
            action: gave_way,
            attempt: None,
        },
        Settlement::release(&leased[1]),
    ];
    store.settle(JobKind::Cleanup, &settles).await.unwrap();
    // promotes the job that gave way (due at once), leasing nothing
    store.fetch(JobKind::Cleanup, "w2", 0, LEASE).await.unwrap();
    let c = store.counts(JobKind::Cleanup).await.unwrap();
    assert_eq!(c.queued, 2);
    assert!(c.lag_ms < 500, "both were put back just now; the lag says {} ms", c.lag_ms);
    // Leased again, they leave the lag's index of jobs put back.
    assert_eq!(store.fetch(JobKind::Cleanup, "w3", 2, LEASE).await.unwrap().jobs.len(), 2);
    let kept: u64 = redis::cmd("ZCARD")
        .arg("drover:{cleanup}:readysince")
        .query(&mut server.conn())
        .unwrap();
    assert_eq!(kept, 0);
}

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

/// Backend-specific: lanes left on offer with nothing in them (as cancels of the previous
/// release left them) use up a fetch's turns; a fetch that leased nothing for that says
/// to ask again at once, not to wait for a wake-up, so the job queued behind them starts.
#[tokio::test]
async fn a_fetch_whose_turns_went_to_empty_lanes_asks_again_at_once() {
    use drover::job::JobKind;
    use drover::queue::{JobStore, NewJob};
    let (server, store) = redis_store().await;
    let mut conn = server.conn();
    let mut stale = redis::cmd("ZADD");
    stale.arg("drover:{cleanup}:passes");
    for i in 0..300 {
        stale.arg(i).arg(format!("gone{i}"));
    }
    let _: () = stale.query(&mut conn).unwrap();
    let id = store.enqueue(NewJob::new(cleanup("b"))).await.unwrap().id;
    let mut calls = 0;
    let leased = loop {
        calls += 1;
        let f = store.fetch(JobKind::Cleanup, "w1", 1, LEASE).await.unwrap();
        if let Some(l) = f.jobs.into_iter().next() {
            break l.id;
        }
        assert_eq!(
            f.next_due,
            Some(std::time::Duration::ZERO),
            "call {calls} leased nothing and must say to ask again now"
        );
        assert!(calls < 5, "each call sets aside a hundred empty lanes");
    };
    assert_eq!(leased, id);
}

/// Backend-specific: a lane a process of the previous release offered (in `lanes`, scored
/// by band and turn) is served once a worker of this release moves it, which every
/// running worker does every 2 s.
#[tokio::test]
async fn a_lane_offered_by_the_previous_release_is_served() {
    use drover::job::JobKind;
    use drover::queue::{JobStore, NewJob};
    let (server, store) = redis_store().await;
    let id = store.enqueue(NewJob::new(cleanup("a1"))).await.unwrap().id;
    let mut conn = server.conn();
    // As the previous release would have left it: the lane in `lanes`, band 9, turn 7.
    let _: () = redis::pipe()
        .cmd("ZREM")
        .arg("drover:{cleanup}:passes")
        .arg("a1")
        .cmd("ZADD")
        .arg("drover:{cleanup}:lanes")
        .arg(90_000_000_000_007_i64)
        .arg("a1")
        .query(&mut conn)
        .unwrap();
    let before = store.fetch(JobKind::Cleanup, "w1", 1, LEASE).await.unwrap();
    assert!(before.jobs.is_empty(), "this release takes turns from `passes` only");
    store.adopt_old_lanes().await.unwrap();
    let after = store.fetch(JobKind::Cleanup, "w1", 1, LEASE).await.unwrap();
    assert_eq!(after.jobs.iter().map(|l| l.id.clone()).collect::<Vec<_>>(), [id]);
    let left: i64 = redis::cmd("ZCARD").arg("drover:{cleanup}:lanes").query(&mut conn).unwrap();
    assert_eq!(left, 0);
}

/// Backend-specific, found by the second audits of 2026-12-05 (a known limit until
/// now): one job in a fetch's reply that could not be read (here its record's `v` holds
/// bytes that are not UTF-8, so the head of its reply element is not text) failed the
/// whole reply, and the other jobs leased by the same call were handed to nobody: they
/// came back only when their leases ran out, a hand-back each. Now each job is read on
/// its own: the others go out as usual, and the unreadable one goes out with the
/// reason, on a lease that settles, so the runtime puts it in dead at once instead of
/// leaving it leased.
#[tokio::test]
async fn an_unreadable_job_in_a_fetch_costs_the_other_jobs_of_the_call_nothing() {
    use drover::job::{ErrorClass, ErrorInfo, JobKind, JobState};
    use drover::queue::{JobStore, NewJob, SettleAction, SettleResult, Settlement};
    let (server, store) = redis_store().await;
    let mut ids = Vec::new();
    for account in ["a1", "a2", "a3"] {
        ids.push(store.enqueue(NewJob::new(cleanup(account))).await.unwrap().id);
    }
    let bad = ids[1].clone();
    let _: () = redis::cmd("HSET")
        .arg(format!("drover:{{cleanup}}:job:{bad}"))
        .arg("v")
        .arg(b"1\xff".to_vec())
        .query(&mut server.conn())
        .unwrap();
    let fetched = store
        .fetch(JobKind::Cleanup, "w1", 10, LEASE)
        .await
        .expect("one unreadable job does not fail the fetch");
    let mut got: Vec<_> = fetched.jobs.iter().map(|l| l.id.clone()).collect();
    got.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(got, want, "every job the call leased is handed out");
    for l in &fetched.jobs {
        if l.id == bad {
            let why = l.payload.as_ref().expect_err("its record cannot be read");
            assert!(why.contains("not UTF-8"), "{why}");
        } else {
            assert!(l.payload.is_ok(), "{:?}", l.payload);
        }
    }
    // As the runtime does with it: dead, with the reason, on the lease it was handed.
    let leased = fetched.jobs.iter().find(|l| l.id == bad).unwrap();
    let dead = Settlement {
        id: leased.id.clone(),
        token: leased.token.clone(),
        action: SettleAction::Dead(ErrorInfo {
            class: ErrorClass::Decode,
            message: leased.payload.clone().unwrap_err(),
        }),
        attempt: None,
    };
    assert_eq!(store.settle(JobKind::Cleanup, &[dead]).await.unwrap(), [SettleResult::Applied]);
    // (its record is read in Redis: it is still one this version cannot read)
    let state: String = redis::cmd("HGET")
        .arg(format!("drover:{{cleanup}}:job:{bad}"))
        .arg("st")
        .query(&mut server.conn())
        .unwrap();
    assert_eq!(state, "dead");
    for id in ids.iter().filter(|id| **id != bad) {
        assert_eq!(store.get(id).await.unwrap().unwrap().state, JobState::Running, "{id}");
    }
}

/// Found by the queue-core audit of 2026-12-05: the dead cap (`dead_max`, per kind) was
/// split evenly over the partitions, and an account's jobs all live in one, so with 4
/// partitions and a cap of 8 an account's third dead job trimmed its first though the
/// kind held 6. The cap now holds for the kind: the globally oldest go past it.
#[tokio::test]
async fn the_dead_cap_holds_for_the_kind_across_partitions() {
    let (_server, store) = store_with(JobDefaults {
        dead_max: 8,
        partitions: Partitions::new(4).unwrap(),
        ..conformance::POLICY
    })
    .await;
    capped_the_dead_cap_of_eight_holds_for_the_kind(store).await;
}

/// The cap on an account's unfinished jobs, on one server and over four partitions.
#[tokio::test]
async fn an_account_past_its_cap_of_unfinished_jobs_is_refused_with_nothing_written() {
    for partitions in [1, 4] {
        let (_server, store) = store_with(JobDefaults {
            max_unfinished_per_account: conformance::FULL_AT,
            partitions: Partitions::new(partitions).unwrap(),
            ..conformance::POLICY
        })
        .await;
        conformance::full_an_account_past_its_cap_of_unfinished_jobs_is_refused_with_nothing_written(store).await;
    }
}

/// The dead cap taken from the account holding the most, over four partitions.
#[tokio::test]
async fn the_dead_cap_trims_the_account_holding_the_most_dead_jobs_across_partitions() {
    let (_server, store) = store_with(JobDefaults {
        partitions: Partitions::new(4).unwrap(),
        ..conformance::POLICY
    })
    .await;
    conformance::capped_the_dead_cap_trims_the_account_holding_the_most_dead_jobs(store).await;
}

/// From the review of 2026-12-06: during a rolling upgrade an older release's replay or
/// trim takes a job out of the dead letter without taking it out of its account's rank
/// (`dgn`), so a rank can stay too high; the account would then stay on top and be
/// trimmed of every dead job. The trimmer checks each candidate against the account's
/// dead count and sets the rank right.
#[tokio::test]
async fn a_dead_rank_left_too_high_does_not_make_the_dead_cap_trim_its_account() {
    let (server, store) = store_with(conformance::POLICY).await;
    let dead = conformance::one_then_four_dead(&store).await;
    let _: f64 = redis::cmd("ZINCRBY")
        .arg("drover:{cleanup}:dgn")
        .arg(10)
        .arg("b2")
        .query(&mut server.conn())
        .unwrap();
    conformance::the_dead_cap_took_the_account_holding_the_most(&store, &dead).await;
    let b2: Option<f64> = redis::cmd("ZSCORE")
        .arg("drover:{cleanup}:dgn")
        .arg("b2")
        .query(&mut server.conn())
        .unwrap();
    assert_eq!(b2, Some(1.0), "b2's rank is its one dead job again");
}

/// Found by the fairness audit of 2026-12-06: while the queue is held after a Redis
/// restart (nothing is leased for a lease and a second), its waiting accounts were still
/// counted, so runs past their turn gave their slots away to jobs that could not be
/// leased, and the slots sat idle for the rest of the hold.
#[tokio::test]
async fn accounts_are_not_counted_waiting_while_a_restart_holds_the_queue() {
    use drover::job::JobKind;
    use drover::queue::{JobStore, NewJob};
    let (server, store) = redis_store().await;
    store.enqueue(NewJob::new(cleanup("a1"))).await.unwrap();
    assert_eq!(store.accounts_waiting(JobKind::Cleanup).await.unwrap(), 1);
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query(&mut server.conn()).unwrap();
    let _: () = redis::cmd("SET")
        .arg("drover:{cleanup}:restarted")
        .arg(secs * 1000 + micros / 1000)
        .arg("PX")
        .arg(5000)
        .query(&mut server.conn())
        .unwrap();
    assert_eq!(store.accounts_waiting(JobKind::Cleanup).await.unwrap(), 0, "held after the restart");
}

/// Backend-specific (it ages the queue's `seen` by hand): found by the API audit of
/// 2026-12-07 (third): a job whose worker died showed `running` (or `prefetched`), with
/// no wait, for as long as no worker was up to reclaim it, while the queue's queued jobs
/// said `no_worker`. Once its lease has run out it waits for a worker too.
#[tokio::test]
async fn a_running_job_whose_lease_ran_out_with_no_worker_serving_waits_for_one() {
    use drover::job::JobKind;
    use drover::queue::{JobStore, NewJob, WaitReason};
    use std::time::Duration;
    let (server, store) = redis_store().await;
    let id = store.enqueue(NewJob::new(cleanup("a1"))).await.unwrap().id;
    store.fetch(JobKind::Cleanup, "w1", 1, Duration::from_millis(100)).await.unwrap();
    assert_eq!(store.waiting(&id).await.unwrap(), None, "running, its worker alive");
    tokio::time::sleep(Duration::from_millis(200)).await;
    // no worker has served the queue for 20 s
    let _: () = redis::cmd("SET")
        .arg("drover:{cleanup}:seen")
        .arg(chrono::Utc::now().timestamp_millis() - 20_000)
        .query(&mut server.conn())
        .unwrap();
    let w = store.waiting(&id).await.unwrap().expect("it waits");
    assert_eq!(w.reason, WaitReason::NoWorker, "{w:?}");
    assert!(w.detail["lease_ended_ms"].is_number(), "{w:?}");
}

/// Found by a flake of the sentinel conformance run (2026-12-07): a callback claim's read
/// ahead had a tenth of the claim's lease to be answered in, so a 20 ms lease gave Redis
/// 2 ms and a loaded host failed the claim (`every_rule_holds_on_a_sentinel_managed_primary`
/// at `a_delivery_whose_claims_keep_running_out_ends_failed_at_its_last_try`). The read
/// ahead writes nothing and the lease starts in the claim itself: a short lease does not
/// make the read ahead's wait short.
#[tokio::test]
async fn a_callback_claim_with_a_short_lease_waits_for_a_slow_read_ahead() {
    use drover::job::{bucket_of, JobId, JobKind};
    use drover::queue::{AccountShare, CallbackStore, JobStore, NewCallback, NewJob};
    use std::time::Duration;
    let (server, store) = redis_store().await;
    let job = NewJob::new(cleanup("a1")).callback(NewCallback {
        job_id: JobId::with_bucket(JobKind::Cleanup, Some(bucket_of("a1"))),
        url: "https://hooks.example.com/drover".into(),
        sealed_secret: vec![1, 2, 3],
    });
    let id = store.enqueue(job).await.unwrap().id;
    store.cancel(&id).await.unwrap();
    // Every client of the server waits 50 ms, as on a loaded host.
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(50)
        .arg("ALL")
        .query(&mut server.conn())
        .unwrap();
    let (claimed, _) = store
        .claim_callbacks(JobKind::Cleanup, "w1", 10, Duration::from_millis(20), 2, &AccountShare::default())
        .await
        .expect("a slow answer is waited for");
    assert_eq!(claimed.len(), 1);
}
