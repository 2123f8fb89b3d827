//! Tenant-fair dispatch with real `drover-worker` processes, PostgreSQL and the
//! simulator at SP-API's documented deleteListingsItem rate (5/s, burst 10): one seller's
//! flood never makes another seller wait, and the flooding seller keeps its full rate.
mod jobs_support;

use std::time::Duration;

use drover::job::{JobKind, JobState};
use drover_tests::sim::{AccountSpec, Operation, RateLimit, SimConfig};
use jobs_support::{Stack, MARKETPLACE};
use serde_json::json;

/// SP-API's published deleteListingsItem plan.
const DELETE_RATE: f64 = 5.0;

fn sim() -> SimConfig {
    SimConfig {
        accounts: 0,
        ..SimConfig::fast()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_sellers_cleanup_starts_at_once_while_another_seller_floods_at_its_full_rate() {
    let mut plans = jobs_support::plans();
    plans.insert(Operation::DeleteListingsItem, RateLimit::new(DELETE_RATE, 10));
    let mut stack = Stack::start_with(sim(), "", plans).await;
    let flood = stack
        .account(AccountSpec {
            skus: Some(400),
            ..AccountSpec::new("seller-flood")
        })
        .await;
    let small = stack
        .account(AccountSpec {
            skus: Some(3),
            ..AccountSpec::new("seller-small")
        })
        .await;
    let flood_skus = stack.sim.admin().skus(flood.as_str()).await.unwrap();
    let small_skus = stack.sim.admin().skus(small.as_str()).await.unwrap();
    // Worker defaults: 10 cleanup slots, 2 runs per account.
    stack.spawn_worker("worker-1", &[]);

    // The measured scenario: 20 cleanups of 20 SKUs, then one of 3 SKUs for another seller.
    for chunk in flood_skus.chunks(20) {
        stack
            .submit(
                JobKind::Cleanup,
                json!({"account_id": flood.as_str(), "marketplace_id": MARKETPLACE, "skus": chunk}),
            )
            .await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let id = stack
        .submit(
            JobKind::Cleanup,
            json!({"account_id": small.as_str(), "marketplace_id": MARKETPLACE, "skus": small_skus}),
        )
        .await;
    let job = stack.finish(&id, Duration::from_secs(90)).await;
    assert_eq!(job.state, JobState::Succeeded, "{job:#?}");
    let started = job.started_at.expect("it ran") - job.created_at;
    let done = job.finished_at.expect("it ended") - job.created_at;
    println!("small seller behind the flood: submit→start {started}, submit→done {done}");
    assert!(started <= chrono::Duration::seconds(1), "started {started} after submission");
    assert!(done <= chrono::Duration::seconds(3), "done {done} after submission");

    // The flooding seller goes on at its full allowed rate (the limiter keeps 95 % of the
    // plan): measured over 10 s once its first runs are under way.
    let accepted = |s: &drover_tests::sim::StatsSnapshot| s.op(flood.as_str(), Operation::DeleteListingsItem).accepted;
    let before = accepted(&stack.sim.admin().stats().await.unwrap());
    let window = Duration::from_secs(10);
    tokio::time::sleep(window).await;
    let stats = stack.sim.admin().stats().await.unwrap();
    let rate = (accepted(&stats) - before) as f64 / window.as_secs_f64();
    let allowed = DELETE_RATE * 0.95;
    println!(
        "flooding seller: {rate:.2} deletes/s, {:.0} % of its allowed {allowed:.2}/s",
        rate / allowed * 100.0
    );
    assert!(rate >= 0.9 * allowed, "flooding seller at {rate:.2}/s, allowed {allowed:.2}/s");
    assert_eq!(
        stats.op(flood.as_str(), Operation::DeleteListingsItem).rate_limited,
        0,
        "and never over it"
    );
}
