//! Redis at its memory limit (`maxmemory` with `noeviction`, as deployed): the API still
//! answers reads, refuses writes saying why, and serves again once memory is freed; the
//! retention trim still frees memory. A private redis-server per test.
use crate::api_support;

use std::time::Duration;

use api_support::*;
use drover::job::JobKind;
use drover::queue::{JobDefaults, JobStore, RedisStore};
use drover_tests::harness::{Durability, RedisServer};
use serde_json::json;

fn used_memory(server: &RedisServer) -> u64 {
    let info: String = redis::cmd("INFO").arg("memory").query(&mut server.conn()).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Sets `maxmemory` a little above what Redis uses, then writes filler keys until a write
/// is refused for memory: Redis is at its limit. Returns how many filler keys it took.
fn fill_to_the_limit(server: &RedisServer) -> usize {
    let mut c = server.conn();
    limit_memory(&mut c, used_memory(server) + 512 * 1024);
    let filler = "x".repeat(16 * 1024);
    for n in 0..10_000 {
        let set: redis::RedisResult<()> = redis::cmd("SET").arg(format!("filler:{n}")).arg(&filler).query(&mut c);
        if let Err(e) = set {
            assert_eq!(e.code(), Some("OOM"), "{e}");
            return n;
        }
    }
    panic!("Redis never reached its memory limit");
}

/// `maxmemory` of `limit` bytes, refusing writes past it (as deployed).
fn limit_memory(c: &mut redis::Connection, limit: u64) {
    let _: () = redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg(limit).query(c).unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory-policy")
        .arg("noeviction")
        .query(c)
        .unwrap();
}

fn free_filler(server: &RedisServer, n: usize) {
    let mut c = server.conn();
    for i in 0..=n {
        let _: () = redis::cmd("DEL").arg(format!("filler:{i}")).query(&mut c).unwrap();
    }
}

/// Found by the chaos audit of 2026-12-05: every keyed request first takes a cell of its
/// key's rate limit, a script that writes; at the memory limit Redis refused it, so
/// reads (a job, a listing) answered 503 "dependency redis did not answer" like writes,
/// though Redis answered, and nothing told a client or an operator that memory was the
/// cause.
#[tokio::test]
async fn at_the_memory_limit_reads_answer_and_a_submit_is_told_the_queue_is_full() {
    let app = spawn_app().await;
    let id = app
        .submit_ok(&json!({"kind": "cleanup", "payload": {"account_id": "acme", "marketplace_id": "ATVPDKIKX0DER", "skus": ["SKU-1"]}}))
        .await;
    let filler = fill_to_the_limit(&app.redis);

    let job = app.get(ADMIN, &format!("/v1/jobs/{id}")).send().await.unwrap();
    assert_eq!(job.status(), 200, "{}", job.text().await.unwrap());
    let listed = app.get(ADMIN, "/v1/jobs?kind=cleanup").send().await.unwrap();
    assert_eq!(listed.status(), 200, "{}", listed.text().await.unwrap());
    // The counts are a MULTI and a script that may write, both refused at the limit.
    let queues = app.get_json(ADMIN, "/v1/queues").await;
    assert!(queues.to_string().contains("\"queued\":1"), "{queues}");

    let body = json!({"kind": "cleanup", "payload": {"account_id": "acme", "marketplace_id": "ATVPDKIKX0DER", "skus": ["SKU-2"]}});
    let res = app.submit(ADMIN, &body).await;
    let retry_after = res.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
    let p = problem(res, 503).await;
    assert_eq!(p["type"], "urn:drover:problem:queue-full", "{p}");
    assert!(p["detail"].as_str().unwrap().contains("memory"), "{p}");
    assert!(!p.to_string().contains("OOM command"), "Redis's own words stay in the log: {p}");
    assert!(retry_after.is_some(), "told when to retry: {p}");

    free_filler(&app.redis, filler);
    let res = app.submit(ADMIN, &body).await;
    assert_eq!(res.status(), 202, "{}", res.text().await.unwrap());
}

/// Found by the chaos audit of 2026-12-05: the retention trim began with a `SET NX`
/// lock and scripts without `allow-oom`, all refused at the memory limit, so when
/// finished jobs had filled Redis the trim that would free it never ran.
#[tokio::test]
async fn at_the_memory_limit_the_trim_still_frees_finished_jobs() {
    let server = RedisServer::start(Durability::None);
    let store = RedisStore::connect(&server.url(), "drover", JobDefaults::default()).await.unwrap();
    const JOBS: usize = 300;
    crate::conformance::succeeded_jobs(&store, JOBS).await;
    fill_to_the_limit(&server);
    let before = used_memory(&server);

    tokio::time::sleep(Duration::from_millis(20)).await;
    let t = store
        .trim(JobKind::Cleanup, Duration::from_millis(1), 500)
        .await
        .expect("the trim runs at the memory limit")
        .expect("no other trimmer");
    assert_eq!((t.removed, t.backlog), (JOBS as u64, 0));
    let after = used_memory(&server);
    eprintln!("used_memory {before} -> {after}");
    assert!(after < before, "the trim freed memory: {before} -> {after}");
    assert_eq!(store.counts(JobKind::Cleanup).await.unwrap().succeeded, 0);
}

/// Found by the chaos audit of 2026-12-06: at the memory limit the trim lock could not be
/// written, and a pass went on without it and took the kind's dead cap; so did every
/// other process's pass at once, each removing the surplus it had read, and together
/// they removed dead jobs below the cap. The lock is now taken there by a script Redis
/// still runs: a pass that finds another's lock leaves the trim to it, and one holding
/// it trims the dead letter to the cap exactly.
#[tokio::test]
async fn at_the_memory_limit_the_dead_cap_is_taken_only_under_the_trim_lock() {
    let server = RedisServer::start(Durability::None);
    let defaults = JobDefaults {
        dead_max: 100,
        ..JobDefaults::default()
    };
    let store = RedisStore::connect(&server.url(), "drover", defaults).await.unwrap();
    crate::conformance::dead_jobs(&store, 150).await;
    let lock = "drover:{cleanup}:trim:lock";
    let _: () = redis::cmd("SET")
        .arg(lock)
        .arg("another-process")
        .query(&mut server.conn())
        .unwrap();
    // Far past the limit: every write command is refused for memory, for good.
    let mut c = server.conn();
    limit_memory(&mut c, 1);
    let refused: redis::RedisResult<()> = redis::cmd("SET").arg("probe").arg(1).query(&mut c);
    assert_eq!(refused.unwrap_err().code(), Some("OOM"));

    let t = store
        .trim(JobKind::Cleanup, Duration::from_secs(3600), 500)
        .await
        .expect("the trim runs at the memory limit");
    assert!(t.is_none(), "another process holds the trim lock: {t:?}");
    assert_eq!(
        store.counts(JobKind::Cleanup).await.unwrap().dead,
        150,
        "the cap is left to the lock's holder"
    );

    let _: () = redis::cmd("DEL").arg(lock).query(&mut server.conn()).unwrap();
    let t = store
        .trim(JobKind::Cleanup, Duration::from_secs(3600), 500)
        .await
        .expect("the trim runs at the memory limit")
        .expect("the lock is free");
    assert_eq!(t.removed, 50, "{t:?}");
    assert_eq!(store.counts(JobKind::Cleanup).await.unwrap().dead, 100);
    let held: bool = redis::cmd("EXISTS").arg(lock).query(&mut server.conn()).unwrap();
    assert!(!held, "the pass frees the lock it took");
}

/// Found by the API audit of 2026-12-07 (second): a resume at Redis's memory limit
/// deleted the pause and then had its wake-up refused (OOM), answering 503 for a queue
/// that ran again. The pause's end is what a resume asks for; the wake-up is a hint (idle
/// workers ask again within their wait), so the resume answers what it did.
#[tokio::test]
async fn at_the_memory_limit_a_resume_answers_that_the_queue_runs_again() {
    let app = spawn_app().await;
    let res = app.post(ADMIN, "/v1/queues/cleanup/pause").send().await.unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    fill_to_the_limit(&app.redis);
    let res = app.post(ADMIN, "/v1/queues/cleanup/resume").send().await.unwrap();
    let status = res.status();
    let body = res.text().await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"paused\":false"), "{body}");
    assert!(!app.store.counts(JobKind::Cleanup).await.unwrap().paused, "the queue runs again");
}
