//! Waking idle fetchers (`JobStore::wait_for_work`) on a private redis-server: a wait
//! given up midway must not keep a BLPOP blocked in Redis that takes the next wake-up.
use std::time::{Duration, Instant};

use drover::job::{JobKind, JobPayload};
use drover::queue::{JobDefaults, JobStore, NewJob, RedisStore};
use drover_tests::harness::{Durability, RedisServer};
use serde_json::json;

async fn store(server: &RedisServer) -> RedisStore {
    RedisStore::connect(&server.url(), "drover", JobDefaults::default()).await.unwrap()
}

fn cleanup() -> NewJob {
    let payload = JobPayload::from_json(
        JobKind::Cleanup,
        json!({"account_id": "seller-1", "marketplace_id": "ATVPDKIKX0DER", "skus": ["SKU-1"]}),
    )
    .unwrap();
    NewJob::new(payload)
}

/// One process's fetcher stops while it waits (a shutdown drops the wait); another
/// process's fetcher is idle. The next enqueue must wake the one still waiting, not the
/// BLPOP the first left behind, or that job waits out the idle fetcher's whole timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_given_up_midway_leaves_the_next_wake_up_to_a_fetcher_still_waiting() {
    let server = RedisServer::start(Durability::None);
    let stopping = store(&server).await;
    let idle = store(&server).await;
    let gave_up = tokio::time::timeout(
        Duration::from_millis(300),
        stopping.wait_for_work(JobKind::Cleanup, Duration::from_secs(20)),
    )
    .await;
    assert!(gave_up.is_err(), "nothing was enqueued yet, so the wait was still blocked");

    let waiter = tokio::spawn(async move {
        let t = Instant::now();
        idle.wait_for_work(JobKind::Cleanup, Duration::from_secs(8)).await.unwrap();
        t.elapsed()
    });
    // the idle fetcher's BLPOP is blocked in Redis by now
    tokio::time::sleep(Duration::from_millis(500)).await;
    stopping.enqueue(cleanup()).await.unwrap();
    let waited = tokio::time::timeout(Duration::from_secs(15), waiter).await.unwrap().unwrap();
    assert!(
        waited < Duration::from_secs(2),
        "the idle fetcher woke only after {waited:?}: the given-up wait took the enqueue's wake-up"
    );
}
