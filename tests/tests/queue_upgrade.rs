//! Upgrading queues written by the release that indexed queued jobs twice (a `ready`
//! sorted set beside the lanes) to the `queued` counter: on a private redis-server,
//! through the real store, with the old layout made by hand.
use std::time::Duration;

use drover::job::{JobKind, JobPayload};
use drover::queue::{JobDefaults, JobStore, NewJob, RedisStore};
use drover_tests::harness::{Durability, RedisServer};
use serde_json::json;

const P: &str = "drover:{cleanup}:";

fn cleanup(account: &str) -> JobPayload {
    JobPayload::from_json(
        JobKind::Cleanup,
        json!({"account_id": account, "marketplace_id": "ATVPDKIKX0DER", "skus": ["SKU-1"]}),
    )
    .unwrap()
}

async fn seeded(server: &RedisServer) -> RedisStore {
    let store = RedisStore::connect(&server.url(), "drover", JobDefaults::default()).await.unwrap();
    for acct in ["acme", "acme", "acme", "globex", "globex"] {
        store.enqueue(NewJob::new(cleanup(acct))).await.unwrap();
    }
    let taken = store.fetch(JobKind::Cleanup, "w1", 1, Duration::from_secs(30)).await.unwrap().jobs;
    assert_eq!(taken.len(), 1);
    store
}

/// What an older release leaves: every lane entry also in `ready`, no counter.
fn make_old_layout(conn: &mut redis::Connection) {
    let _: i64 = redis::cmd("ZUNIONSTORE")
        .arg(format!("{P}ready"))
        .arg(2)
        .arg(format!("{P}rq:acme"))
        .arg(format!("{P}rq:globex"))
        .query(conn)
        .unwrap();
    let _: i64 = redis::cmd("DEL").arg(format!("{P}queued")).query(conn).unwrap();
}

fn counter(conn: &mut redis::Connection) -> (Option<i64>, bool) {
    let n: Option<i64> = redis::cmd("GET").arg(format!("{P}queued")).query(conn).unwrap();
    let ready: bool = redis::cmd("EXISTS").arg(format!("{P}ready")).query(conn).unwrap();
    (n, ready)
}

#[tokio::test]
async fn a_queue_with_a_ready_index_gets_its_queued_counter_from_the_lanes_at_start() {
    let server = RedisServer::start(Durability::None);
    let store = seeded(&server).await;
    let mut conn = server.conn();
    make_old_layout(&mut conn);
    // An account at its cap is out of `lanes` (in `blocked`); its queued jobs count too.
    let _: i64 = redis::cmd("ZREM").arg(format!("{P}lanes")).arg("globex").query(&mut conn).unwrap();
    let _: i64 = redis::cmd("HSET")
        .arg(format!("{P}blocked"))
        .arg("globex")
        .arg(1)
        .query(&mut conn)
        .unwrap();
    assert_eq!(counter(&mut conn), (None, true), "the old layout");

    store.check_layout().await.unwrap();
    assert_eq!(counter(&mut conn), (Some(4), false), "counted from the lanes, `ready` gone");
    assert_eq!(store.counts(JobKind::Cleanup).await.unwrap().queued, 4);
    store.check_layout().await.unwrap();
    assert_eq!(counter(&mut conn), (Some(4), false), "a later start changes nothing");
}

#[tokio::test]
async fn the_counts_recount_the_queued_jobs_while_an_older_release_still_writes_ready() {
    let server = RedisServer::start(Durability::None);
    let store = seeded(&server).await;
    let mut conn = server.conn();
    store.check_layout().await.unwrap();
    assert_eq!(counter(&mut conn), (Some(4), false));
    // An old worker's enqueue during a rolling upgrade: into a lane and `ready`, the
    // counter untouched.
    store.enqueue(NewJob::new(cleanup("globex"))).await.unwrap();
    let _: i64 = redis::cmd("DECR").arg(format!("{P}queued")).query(&mut conn).unwrap();
    make_old_layout(&mut conn);
    let _: () = redis::cmd("SET").arg(format!("{P}queued")).arg(4).query(&mut conn).unwrap();

    assert_eq!(store.counts(JobKind::Cleanup).await.unwrap().queued, 5, "the counts read recounts");
    assert_eq!(counter(&mut conn), (Some(5), false));
}

/// During a rolling upgrade workers of the previous release lease jobs this release
/// enqueued. Its fetch numbers the run `tonumber(at) + 1` after it has taken the job out of
/// its lane, so a record without `at` would fail that script midway and strand the job:
/// a job this release enqueues still starts with `at` = 0.
#[tokio::test]
async fn a_job_this_release_enqueues_can_be_numbered_by_the_previous_releases_fetch() {
    let server = RedisServer::start(Durability::None);
    let store = RedisStore::connect(&server.url(), "drover", JobDefaults::default()).await.unwrap();
    let id = store.enqueue(NewJob::new(cleanup("acme"))).await.unwrap().id;
    let mut conn = server.conn();
    let previous_fetch = "local f = redis.call('HMGET', KEYS[1], 'at'); return tonumber(f[1]) + 1";
    let run: Result<i64, redis::RedisError> = redis::cmd("EVAL")
        .arg(previous_fetch)
        .arg(1)
        .arg(format!("{P}job:{id}"))
        .query(&mut conn);
    assert_eq!(run.map_err(|e| e.to_string()), Ok(1), "the first run is number 1");
}
