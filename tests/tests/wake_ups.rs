//! Waking idle fetchers (`JobStore::wait_for_work`) on a private redis-server: a wait
//! given up midway must not keep a BLPOP blocked in Redis that takes the next wake-up,
//! on one server or on a Redis Cluster.
use std::time::{Duration, Instant};

use drover::job::{JobKind, JobPayload};
use drover::queue::{JobDefaults, JobStore, NewJob, RedisStore};
use drover_tests::harness::{Durability, RedisCluster, RedisServer};
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

/// `stopping`'s fetcher waits and gives up after `gives_up`; `idle`'s then waits (8 s at
/// most), and `settle` later `stopping` enqueues a job. How long `idle` waited.
async fn idle_waits_after_another_gave_up(stopping: RedisStore, idle: RedisStore, gives_up: Duration, settle: Duration) -> Duration {
    let gave_up = tokio::time::timeout(gives_up, stopping.wait_for_work(JobKind::Cleanup, Duration::from_secs(20))).await;
    assert!(gave_up.is_err(), "nothing was enqueued yet, so the wait was still blocked");
    let waiter = tokio::spawn(async move {
        let t = Instant::now();
        idle.wait_for_work(JobKind::Cleanup, Duration::from_secs(8)).await.unwrap();
        t.elapsed()
    });
    // the idle fetcher blocks in Redis by then
    tokio::time::sleep(settle).await;
    stopping.enqueue(cleanup()).await.unwrap();
    tokio::time::timeout(Duration::from_secs(15), waiter).await.unwrap().unwrap()
}

/// One process's fetcher stops while it waits (a shutdown drops the wait); another
/// process's fetcher is idle. The next enqueue must wake the one still waiting, not the
/// BLPOP the first left behind, or that job waits out the idle fetcher's whole timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_given_up_midway_leaves_the_next_wake_up_to_a_fetcher_still_waiting() {
    let server = RedisServer::start(Durability::None);
    let (stopping, idle) = (store(&server).await, store(&server).await);
    let waited = idle_waits_after_another_gave_up(stopping, idle, Duration::from_millis(300), Duration::from_millis(500)).await;
    assert!(
        waited < Duration::from_secs(2),
        "the idle fetcher woke only after {waited:?}: the given-up wait took the enqueue's wake-up"
    );
}

/// The same on a Redis Cluster, where each process's watcher tasks block on the
/// partitions' markers for its fetcher: once that fetcher no longer waits (busy, or
/// stopped), its watchers must not take the wake-up another process's idle fetcher is
/// waiting for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_a_process_no_longer_waiting_leaves_the_next_wake_up_to_one_that_is() {
    let cluster = RedisCluster::start(3, 0);
    let url = cluster.url();
    let stopped = RedisStore::connect(&url, "drover", JobDefaults::default()).await.unwrap();
    let idle = RedisStore::connect(&url, "drover", JobDefaults::default()).await.unwrap();
    // The first process's watcher blocks on the marker before the other's does.
    let waited = idle_waits_after_another_gave_up(stopped, idle, Duration::from_millis(200), Duration::from_millis(300)).await;
    assert!(
        waited < Duration::from_secs(2),
        "the idle fetcher woke only after {waited:?}: the stopped process's watcher took the wake-up"
    );
}
