//! Acknowledged durability (`queue.durability`, review F2) against real redis-server
//! processes: a private primary, a replica of it (`--replicaof`) that a test can freeze
//! (SIGSTOP) and promote, and for `aof` a Redis new enough for WAITAOF (≥ 7.2; Debian's
//! is 7.0, so `tests/redis8.sh` builds one: `REDIS8_SERVER` or its cache path).
use crate::api_support;

use std::time::{Duration, Instant};

use api_support::*;
use drover::job::{JobId, JobKind, JobPayload, JobState};
use drover::queue::{
    Durability as QueueDurability, DurabilityMode, EnqueueError, JobDefaults, JobStore, NewJob, QueueKeys, RedisStore, SettleAction,
    Settlement, StoreError, WaitReason,
};
use drover::runtime::{JobContext, Outcome, WorkerSettings};
use drover_tests::harness::{Durability, FrozenProxy, RedisServer};
use redis::Commands;
use serde_json::{json, Value};

const TIMEOUT_MS: u64 = 300;
const NOT_DURABLE: &str = "accepted but not yet durable: retry with the same Idempotency-Key";

fn mode(mode: DurabilityMode) -> QueueDurability {
    QueueDurability {
        mode,
        timeout: Duration::from_millis(TIMEOUT_MS),
    }
}

async fn app_in(durability: DurabilityMode) -> TestApp {
    spawn_app_with(Durability::None, |c| {
        c.queue.durability = durability;
        c.queue.durability_timeout_ms = TIMEOUT_MS;
    })
    .await
}

/// The job's state as `server` holds it (None: the job is not there).
fn state_on(server: &RedisServer, id: &JobId) -> Option<String> {
    server.conn().hget(QueueKeys::new("drover", id.kind(), None).job(id), "st").unwrap()
}

/// How many jobs of `kind` `server` holds.
fn jobs_on(server: &RedisServer, kind: JobKind) -> u64 {
    server.conn().zcard(QueueKeys::new("drover", kind, None).key("all")).unwrap()
}

/// Failover: the primary dies, the replica is promoted (what Sentinel would do).
fn fail_over(primary: &mut RedisServer, replica: &RedisServer) {
    primary.kill();
    detach(replica);
}

/// Make `server` a replica of `primary`, once its link is up (its sync done).
async fn follow(server: &RedisServer, primary: &RedisServer, what: &str) {
    let _: () = redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(primary.port())
        .query(&mut server.conn())
        .unwrap();
    wait_for(
        || {
            let info: String = redis::cmd("INFO").arg("replication").query(&mut server.conn()).unwrap();
            info.contains("master_link_status:up")
        },
        what,
    )
    .await;
}

/// Cut the replica off its primary (a partition): it keeps what it had.
fn detach(replica: &RedisServer) {
    let _: () = redis::cmd("REPLICAOF").arg("NO").arg("ONE").query(&mut replica.conn()).unwrap();
}

fn body(account: &str) -> Value {
    cleanup_body(account)
}

async fn submit_with_key(app: &TestApp, key: &str, body: &Value) -> reqwest::Response {
    app.post(ADMIN, "/v1/jobs")
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .unwrap()
}

/// A submit with a healthy replica, as a client does it: a 503 "not yet durable" (the
/// replica's acknowledgement took longer than the short timeout these tests set, as on a
/// loaded machine) is retried with the same Idempotency-Key, up to 5 times; a retry
/// answers 200 (the job the first request made) once it is durable.
async fn accepted(app: &TestApp, key: &str) -> JobId {
    let res = submit_with_key(app, key, &body("acme")).await;
    if res.status() != 503 {
        return id_of(res, 202).await;
    }
    for _ in 0..3 {
        let res = submit_with_key(app, key, &body("acme")).await;
        if res.status() != 503 {
            return id_of(res, 200).await;
        }
    }
    id_of(submit_with_key(app, key, &body("acme")).await, 200).await
}

async fn id_of(res: reqwest::Response, status: u16) -> JobId {
    assert_eq!(res.status(), status);
    let v: Value = res.json().await.unwrap();
    v["id"].as_str().unwrap().parse().unwrap()
}

/// F2 as it was (and as `local` still is): a 202 is sent once the primary applied the
/// write, so a failover to a replica that had not received it loses an accepted job.
/// (A SIGSTOPped replica would not show it: the kernel still receives the replication
/// stream, and the replica applies it once it runs again. A partition does.)
#[tokio::test]
async fn in_local_mode_a_job_answered_202_can_be_lost_in_a_failover() {
    let mut app = app_in(DurabilityMode::Local).await;
    let replica = RedisServer::start_replica_of(&app.redis);
    detach(&replica);
    let id = id_of(app.submit(ADMIN, &body("acme")).await, 202).await;
    fail_over(&mut app.redis, &replica);
    assert_eq!(state_on(&replica, &id), None, "the accepted job is gone after the failover");
}

/// The same partition in `replica` mode: no 202 for a job no replica holds.
#[tokio::test]
async fn in_replica_mode_a_partitioned_replica_means_503_not_a_202_that_a_failover_loses() {
    let app = app_in(DurabilityMode::Replica).await;
    let replica = RedisServer::start_replica_of(&app.redis);
    let kept = accepted(&app, "k1").await;
    detach(&replica);
    let p = problem(submit_with_key(&app, "k2", &body("acme")).await, 503).await;
    assert_eq!(p["detail"], NOT_DURABLE, "{p}");
    assert_eq!(state_on(&replica, &kept).as_deref(), Some("queued"), "every 202 is on the replica");
}

#[tokio::test]
async fn in_replica_mode_a_202_means_the_job_is_on_the_replica() {
    let app = app_in(DurabilityMode::Replica).await;
    let replica = RedisServer::start_replica_of(&app.redis);
    let id = accepted(&app, "k1").await;
    // Read at once, no waiting: the 202 was sent after the replica acknowledged the write.
    assert_eq!(state_on(&replica, &id).as_deref(), Some("queued"));
}

#[tokio::test]
async fn in_replica_mode_a_stalled_replica_gets_503_and_the_same_key_later_returns_the_same_job_once() {
    let mut app = app_in(DurabilityMode::Replica).await;
    let replica = RedisServer::start_replica_of(&app.redis);
    let before = accepted(&app, "k1").await;

    replica.pause();
    let started = Instant::now();
    let res = submit_with_key(&app, "order-7", &body("acme")).await;
    let took = started.elapsed();
    assert_eq!(res.headers()["retry-after"], "1");
    let p = problem(res, 503).await;
    assert_eq!(p["detail"], NOT_DURABLE, "{p}");
    assert_eq!(p["type"], "urn:drover:problem:not-durable", "{p}");
    assert!(
        took >= Duration::from_millis(TIMEOUT_MS) && took < Duration::from_millis(TIMEOUT_MS + 2000),
        "answered after {took:?}"
    );
    assert_eq!(jobs_on(&app.redis, JobKind::Cleanup), 2, "the job stays enqueued on the primary");

    replica.resume();
    let res = submit_with_key(&app, "order-7", &body("acme")).await;
    let id = id_of(res, 200).await; // 200: the job the first request made
    assert_eq!(jobs_on(&app.redis, JobKind::Cleanup), 2, "no second job for the same key");
    assert_eq!(state_on(&replica, &id).as_deref(), Some("queued"), "now on the replica");

    // Both acknowledged jobs survive the primary's loss.
    fail_over(&mut app.redis, &replica);
    assert_eq!(state_on(&replica, &before).as_deref(), Some("queued"));
    assert_eq!(state_on(&replica, &id).as_deref(), Some("queued"));
    assert_eq!(jobs_on(&replica, JobKind::Cleanup), 2);
}

#[tokio::test]
async fn in_replica_mode_with_no_replica_every_enqueue_is_not_durable() {
    let app = app_in(DurabilityMode::Replica).await;
    let p = problem(submit_with_key(&app, "k1", &body("acme")).await, 503).await;
    assert_eq!(p["detail"], NOT_DURABLE, "{p}");
    // The store's own calls say the same (bulk and single share the path).
    let store = RedisStore::connect(&app.redis.url(), "drover", defaults(mode(DurabilityMode::Replica)))
        .await
        .unwrap();
    // (each job of a batch answers for itself: on a cluster the shards' waits differ)
    let r = store.enqueue_bulk(vec![NewJob::new(cleanup_payload("acme"))]).await;
    assert!(
        matches!(r.as_deref(), Ok([Err(EnqueueError::Store(StoreError::NotDurable(_)))])),
        "{r:?}"
    );
}

/// Found by the submit-path audit of 2026-12-05: a submit without an Idempotency-Key
/// that was written but not yet durable was told "retry with the same Idempotency-Key"
/// with a `Retry-After`; the write stays applied, so a client that retried made a
/// second job. Without a key it is told to check first, and no `Retry-After`.
#[tokio::test]
async fn a_submit_without_a_key_not_yet_durable_is_told_to_check_before_it_retries() {
    let app = app_in(DurabilityMode::Replica).await;
    let res = app.submit(ADMIN, &body("acme")).await;
    assert!(res.headers().get("retry-after").is_none(), "{:?}", res.headers());
    let p = problem(res, 503).await;
    let detail = p["detail"].as_str().unwrap();
    assert!(detail.starts_with("accepted but not yet durable"), "{p}");
    assert!(detail.contains("check before you retry"), "{p}");
    assert!(!detail.contains("retry with the same Idempotency-Key"), "{p}");
    // With a key it is still told to retry with it, after a second.
    let res = submit_with_key(&app, "k1", &body("acme")).await;
    assert_eq!(
        res.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned()).as_deref(),
        Some("1")
    );
    assert_eq!(problem(res, 503).await["detail"], NOT_DURABLE);
}

fn defaults(durability: QueueDurability) -> JobDefaults {
    JobDefaults {
        durability,
        ..JobDefaults::for_runtime()
    }
}

/// A primary, a replica of it, and a store in `replica` mode on the primary.
async fn replica_pair() -> (RedisServer, RedisServer, RedisStore) {
    let primary = RedisServer::start(Durability::None);
    let replica = RedisServer::start_replica_of(&primary);
    let store = RedisStore::connect(&primary.url(), "drover", defaults(mode(DurabilityMode::Replica)))
        .await
        .unwrap();
    (primary, replica, store)
}

fn settings() -> WorkerSettings {
    WorkerSettings {
        concurrency: [(JobKind::Cleanup, 2), (JobKind::Sync, 0), (JobKind::Backfill, 0)].into(),
        lease: Duration::from_millis(3000),
        heartbeat: Duration::from_millis(500),
        grace: Duration::from_millis(500),
        prefetch: 0,
        idle_wait: Duration::from_millis(200),
        ..WorkerSettings::default()
    }
}

/// Succeeds at once, or after 1.5 s for the account `slow` (a run still going when the
/// test stalls the replica).
fn succeed(payload: JobPayload, _: JobContext) -> futures::future::BoxFuture<'static, Result<Outcome, drover::JobError>> {
    let slow = payload.account_id().as_str() == "slow";
    Box::pin(async move {
        if slow {
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
        Ok(Outcome::Succeeded(json!({"ok": true})))
    })
}

/// A worker in `replica` mode whose replica stalls records the outcome on the primary,
/// sends it again with each wait until the replica has it (recorded once: no late
/// copy), and the replica ends up with the job succeeded and its one attempt.
#[tokio::test]
async fn a_worker_in_replica_mode_settles_terminal_outcomes_on_the_replica_once() {
    let (primary, replica, store) = replica_pair().await;
    let first = store.enqueue(NewJob::new(cleanup_payload("acme"))).await.unwrap().id;

    let url = primary.url();
    let connect = move || {
        let url = url.clone();
        async move { RedisStore::connect(&url, "drover", defaults(mode(DurabilityMode::Replica))).await }
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let runtime = tokio::spawn(drover::runtime::run(store.clone(), connect, settings(), succeed, async move {
        let _ = stopped.await;
    }));
    wait_for(
        || state_on(&replica, &first).as_deref() == Some("succeeded"),
        "first job succeeded on the replica",
    )
    .await;

    // The replica stalls while the next job runs: its end reaches the primary, not the
    // replica.
    let raw = RedisStore::connect(&primary.url(), "drover", JobDefaults::default()).await.unwrap();
    let second = raw.enqueue(NewJob::new(cleanup_payload("slow"))).await.unwrap().id;
    wait_for(
        || state_on(&replica, &second).as_deref() == Some("running"),
        "second job's lease on the replica",
    )
    .await;
    replica.pause();
    wait_for(
        || state_on(&primary, &second).as_deref() == Some("succeeded"),
        "second job succeeded on the primary",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(TIMEOUT_MS * 3)).await; // several waits fall short
    replica.resume();
    wait_for(
        || state_on(&replica, &second).as_deref() == Some("succeeded"),
        "second job succeeded on the replica",
    )
    .await;
    let _ = stop.send(());
    runtime.await.unwrap().unwrap();
    let job = raw.get(&second).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Succeeded);
    assert_eq!(
        job.attempt_history.len(),
        1,
        "the outcome was written once (no late copy): {:?}",
        job.attempt_history
    );
}

/// Found by the Redis failover audit of 2026-12-06: a worker whose settle fell short of
/// `replica` waited for it with a lone `WAIT` and never sent it again; when the primary
/// then died and the connection was re-dialled to the replica promoted (which never got
/// the settle), that `WAIT` had nothing to wait for and passed, the run was let go and its
/// job, still running there, was reclaimed and run a second time. Now the outcome is sent
/// again with each wait (`settle.lua` applies it once): the promoted replica records the
/// one run.
#[tokio::test]
async fn a_settle_that_fell_short_before_a_failover_is_written_to_the_new_primary_not_run_again() {
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    fn counted(payload: JobPayload, ctx: JobContext) -> futures::future::BoxFuture<'static, Result<Outcome, drover::JobError>> {
        RUNS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        succeed(payload, ctx)
    }
    let mut primary = RedisServer::start(Durability::None);
    let promoted = RedisServer::start_replica_of(&primary);
    let other = RedisServer::start_replica_of(&primary);
    let relay = FrozenProxy::start(format!("127.0.0.1:{}", primary.port()).parse().unwrap()).await;
    let url = relay.url();
    let connect = move || {
        let url = url.clone();
        async move { RedisStore::connect(&url, "drover", defaults(mode(DurabilityMode::Replica))).await }
    };
    let store = connect().await.unwrap();
    let id = store.enqueue(NewJob::new(cleanup_payload("slow"))).await.unwrap().id;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let runtime = tokio::spawn(drover::runtime::run(store.clone(), connect, settings(), counted, async move {
        let _ = stopped.await;
    }));
    wait_for(
        || state_on(&promoted, &id).as_deref() == Some("running"),
        "the lease on the replicas",
    )
    .await;

    // Both replicas are cut off the primary while the run goes on (the one to be promoted
    // keeps the other as its replica), so its settle reaches the primary only.
    detach(&promoted);
    follow(&other, &promoted, "the other replica follows the one to be promoted").await;
    wait_for(
        || state_on(&primary, &id).as_deref() == Some("succeeded"),
        "the settle on the primary",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(TIMEOUT_MS * 3)).await; // its waits fall short
    assert_eq!(
        state_on(&promoted, &id).as_deref(),
        Some("running"),
        "the replica to be promoted never got the end"
    );

    relay.retarget(format!("127.0.0.1:{}", promoted.port()).parse().unwrap());
    primary.kill();
    wait_for(
        || state_on(&promoted, &id).as_deref() == Some("succeeded"),
        "the job succeeded on the new primary",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(4000)).await; // more than a lease: a reclaim would have come
    let _ = stop.send(());
    runtime.await.unwrap().unwrap();
    assert_eq!(RUNS.load(std::sync::atomic::Ordering::SeqCst), 1, "the job ran once");
    let raw = RedisStore::connect(&promoted.url(), "drover", JobDefaults::default())
        .await
        .unwrap();
    let job = raw.get(&id).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Succeeded);
    assert_eq!(job.attempt_history.len(), 1, "one run recorded: {:?}", job.attempt_history);
    assert_eq!(state_on(&other, &id).as_deref(), Some("succeeded"), "and durable on its replica");
}

/// The next cleanup job, leased by worker `w1` for 30 s.
async fn lease_one(store: &RedisStore) -> drover::queue::Leased {
    store
        .fetch(JobKind::Cleanup, "w1", 1, Duration::from_secs(30))
        .await
        .unwrap()
        .jobs
        .remove(0)
}

/// The store's settle reports a terminal outcome that no replica acknowledged; waiting
/// again after the replica is back succeeds without writing anything twice.
#[tokio::test]
async fn a_terminal_settle_is_not_durable_until_a_replica_acknowledges_it() {
    let (primary, replica, store) = replica_pair().await;
    let id = store.enqueue(NewJob::new(cleanup_payload("acme"))).await.unwrap().id;
    let leased = lease_one(&store).await;
    replica.pause();
    let done = Settlement {
        id: id.clone(),
        token: leased.token.clone(),
        action: SettleAction::Succeeded(json!({})),
        attempt: None,
    };
    let r = store.settle(JobKind::Cleanup, &[done]).await;
    assert!(matches!(r, Err(StoreError::NotDurable(_))), "{r:?}");
    assert_eq!(state_on(&primary, &id).as_deref(), Some("succeeded"), "applied on the primary");
    assert!(matches!(store.await_durable().await, Err(StoreError::NotDurable(_))));
    replica.resume();
    store.await_durable().await.unwrap();
    assert_eq!(state_on(&replica, &id).as_deref(), Some("succeeded"));
}

/// A settle sent again on a connection dialled afresh (every client connection killed)
/// while the replica is paused is still not durable, and once the replica is back it is,
/// recorded once. (The review of this stop's diffs reasoned that such a settle, finding
/// its run recorded, wrote nothing, so its wait had nothing to wait for; the settle
/// script now writes the job's state again unchanged. This test passed before that too:
/// something else on the fresh connection gave its wait a write.)
#[tokio::test]
async fn a_settle_sent_again_on_a_redialled_connection_still_waits_for_the_replica() {
    let (primary, replica, store) = replica_pair().await;
    let id = store.enqueue(NewJob::new(cleanup_payload("acme"))).await.unwrap().id;
    let leased = lease_one(&store).await;
    replica.pause();
    let done = Settlement {
        id: id.clone(),
        token: leased.token.clone(),
        action: SettleAction::Succeeded(json!({})),
        attempt: Some(drover::job::AttemptRecord {
            number: 1,
            worker: "w1".into(),
            started_at: chrono::Utc::now(),
            ended_at: chrono::Utc::now(),
            outcome: drover::job::AttemptOutcome::Succeeded,
            error: None,
            trace_id: None,
            late: false,
        }),
    };
    let r = store.settle(JobKind::Cleanup, std::slice::from_ref(&done)).await;
    assert!(matches!(r, Err(StoreError::NotDurable(_))), "{r:?}");
    // Every client connection dropped: the store dials afresh.
    let _: () = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .query(&mut primary.conn())
        .unwrap();
    let again = loop {
        match store.settle(JobKind::Cleanup, std::slice::from_ref(&done)).await {
            Err(e) if e.is_outage() => tokio::time::sleep(Duration::from_millis(50)).await,
            r => break r,
        }
    };
    assert!(
        matches!(again, Err(StoreError::NotDurable(_))),
        "the replica still lacks the outcome: {again:?}"
    );
    replica.resume();
    let r = store.settle(JobKind::Cleanup, std::slice::from_ref(&done)).await;
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(state_on(&replica, &id).as_deref(), Some("succeeded"));
    let raw = RedisStore::connect(&primary.url(), "drover", JobDefaults::default()).await.unwrap();
    let job = raw.get(&id).await.unwrap().unwrap();
    assert_eq!(job.attempt_history.len(), 1, "recorded once: {:?}", job.attempt_history);
}

/// A hand-back gives the attempt back (a release at shutdown or on a lost lease, a
/// snooze under the marketplace's limits). One a failover forgot would leave the job
/// running with its attempt counted, to be reclaimed as a crash — on its last attempt,
/// dead without having failed. So it too is not reported done until a replica has it.
#[tokio::test]
async fn a_release_or_a_snooze_is_not_durable_until_a_replica_acknowledges_it() {
    let (primary, replica, store) = replica_pair().await;
    let snooze = SettleAction::Snooze {
        delay: Duration::from_secs(60),
        error: drover::job::ErrorInfo {
            class: drover::job::ErrorClass::RateLimited,
            message: "quota".into(),
        },
        advanced: false,
    };
    for (action, after) in [(SettleAction::Release, "queued"), (snooze, "scheduled")] {
        store.enqueue(NewJob::new(cleanup_payload("acme"))).await.unwrap();
        // (the second round leases the job the first one gave back)
        let leased = lease_one(&store).await;
        let id = leased.id.clone();
        replica.pause();
        let back = Settlement {
            id: id.clone(),
            token: leased.token.clone(),
            action,
            attempt: None,
        };
        let r = store.settle(JobKind::Cleanup, &[back]).await;
        assert!(matches!(r, Err(StoreError::NotDurable(_))), "{after}: {r:?}");
        assert_eq!(state_on(&primary, &id).as_deref(), Some(after), "applied on the primary");
        replica.resume();
        store.await_durable().await.unwrap();
        assert_eq!(state_on(&replica, &id).as_deref(), Some(after));
    }
}

/// A lease is a write like any other: one that no replica acknowledged is not handed to
/// a handler (a failover would forget it and the new primary would give the job to a
/// second worker while the first still ran it). The job goes back to the queue with its
/// attempt unused and is leased once the replica is back.
#[tokio::test]
async fn in_replica_mode_a_lease_no_replica_acknowledged_is_given_back_not_run() {
    let (primary, replica, store) = replica_pair().await;
    let id = store.enqueue(NewJob::new(cleanup_payload("acme"))).await.unwrap().id;
    replica.pause();
    let r = store.fetch(JobKind::Cleanup, "w1", 4, Duration::from_secs(30)).await;
    assert!(matches!(r, Err(StoreError::NotDurable(_))), "{:?}", r.map(|f| f.jobs.len()));
    assert_eq!(state_on(&primary, &id).as_deref(), Some("queued"), "given back on the primary");
    replica.resume();
    let fetched = store.fetch(JobKind::Cleanup, "w1", 4, Duration::from_secs(30)).await.unwrap();
    let ids: Vec<&JobId> = fetched.jobs.iter().map(|l| &l.id).collect();
    assert_eq!(ids, [&id]);
    assert_eq!(fetched.jobs[0].attempt, 1, "the given-back lease used no attempt");
    wait_for(|| state_on(&replica, &id).as_deref() == Some("running"), "the lease on the replica").await;
}

/// Found by the chaos audit of 2026-12-06: a fetch waited for the replica as long as
/// `durability_timeout_ms` (1 s by default) though its leases live 1.8 s by default and
/// nothing renews them before the fetch answers: with a stalled replica and a longer
/// timeout or shorter lease, another worker's fetch reclaimed the lease as abandoned
/// (a hand-back counted against the job), and after three such, every further reclaim
/// used an attempt until the job died without ever running. A fetch's wait now ends
/// well within its lease, so its leases are given back before anyone can take them.
#[tokio::test]
async fn a_fetch_waiting_on_a_stalled_replica_gives_its_leases_back_before_they_expire() {
    let primary = RedisServer::start(Durability::None);
    let replica = RedisServer::start_replica_of(&primary);
    let slow = QueueDurability {
        mode: DurabilityMode::Replica,
        timeout: Duration::from_secs(3),
    };
    let w1 = RedisStore::connect(&primary.url(), "drover", defaults(slow)).await.unwrap();
    let w2 = RedisStore::connect(&primary.url(), "drover", defaults(slow)).await.unwrap();
    let id = w1.enqueue(NewJob::new(cleanup_payload("acme"))).await.unwrap().id;
    replica.pause();
    // Other workers' beats meanwhile, as a fleet's keepers send them: Redis is serving,
    // so a lease that runs out is its holder's, not an outage's.
    let beats = RedisStore::connect(&primary.url(), "drover", JobDefaults::for_runtime())
        .await
        .unwrap();
    let beating = tokio::spawn(async move {
        loop {
            beats.beat(JobKind::Cleanup).await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let lease = Duration::from_secs(1);
    let first = tokio::spawn(async move { w1.fetch(JobKind::Cleanup, "w1", 4, lease).await.map(|f| f.jobs.len()) });
    // After the first fetch's lease has run out, while its wait could still be going.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let second = w2.fetch(JobKind::Cleanup, "w2", 4, lease).await.map(|f| f.jobs.len());
    let first = first.await.unwrap();
    beating.abort();
    assert!(matches!(first, Err(StoreError::NotDurable(_))), "{first:?}");
    assert!(matches!(second, Err(StoreError::NotDurable(_))), "{second:?}");
    let key = QueueKeys::new("drover", JobKind::Cleanup, None).job(&id);
    let handed_back: Option<u64> = primary.conn().hget(&key, "hb").unwrap();
    assert_eq!(handed_back.unwrap_or(0), 0, "no lease was reclaimed as abandoned");
    assert_eq!(state_on(&primary, &id).as_deref(), Some("queued"));
    let attempts: Option<u64> = primary.conn().hget(&key, "at").unwrap();
    assert_eq!(attempts.unwrap_or(0), 0, "no attempt used");
    replica.resume();
}

/// Debian's Redis 7.0 has no WAITAOF: `aof` is refused, naming the version, before
/// anything is written; `/readyz` says why.
#[tokio::test]
async fn aof_mode_is_refused_by_a_redis_older_than_7_2() {
    let app = spawn_app_with(Durability::AofEverySec, |c| c.queue.durability = DurabilityMode::Aof).await;
    let version = redis_version(&app.redis);
    assert!(
        version.starts_with("7.0"),
        "this test needs the Redis 7.0 of Debian, found {version}"
    );

    let store = RedisStore::connect(&app.redis.url(), "drover", defaults(mode(DurabilityMode::Aof)))
        .await
        .unwrap();
    let err = store.enqueue(NewJob::new(cleanup_payload("acme"))).await.unwrap_err();
    let EnqueueError::Store(StoreError::DurabilityUnsupported(why)) = err else {
        panic!("{err:?}")
    };
    assert_eq!(
        why,
        format!("queue.durability = aof needs Redis 7.2 or newer (WAITAOF); this Redis is {version}")
    );
    assert!(matches!(store.ping().await, Err(StoreError::DurabilityUnsupported(_))));
    assert!(
        store.fetch(JobKind::Cleanup, "w1", 1, Duration::from_secs(3)).await.is_err(),
        "a worker leases nothing"
    );

    let p = problem(app.submit(ADMIN, &body("acme")).await, 503).await;
    assert!(p["detail"].as_str().unwrap().contains("nothing was written"), "{p}");
    assert_eq!(jobs_on(&app.redis, JobKind::Cleanup), 0);
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    let p = problem(ready, 503).await;
    assert!(p["detail"].as_str().unwrap().contains("queue.durability"), "{p}");
}

fn redis_version(server: &RedisServer) -> String {
    let info: String = redis::cmd("INFO").arg("server").query(&mut server.conn()).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .unwrap()
        .trim()
        .to_owned()
}

/// The Redis ≥ 7.2 that `tests/redis8.sh` builds (`tests/setup.sh` runs it).
fn redis8() -> String {
    let path = std::env::var("REDIS8_SERVER").unwrap_or_else(|_| {
        let cache = std::env::var("XDG_CACHE_HOME").unwrap_or_else(|_| format!("{}/.cache", std::env::var("HOME").unwrap()));
        format!("{cache}/drover/redis8/bin/redis-server")
    });
    assert!(
        std::path::Path::new(&path).exists(),
        "no Redis >= 7.2 at {path}: run tests/redis8.sh (or set REDIS8_SERVER) for the aof tests"
    );
    path
}

#[tokio::test]
async fn aof_mode_answers_202_once_the_job_is_fsynced_and_it_survives_a_crash() {
    let mut server = RedisServer::start_binary(&redis8(), Durability::AofEverySec);
    let mut config = test_config(&server.url());
    config.queue.durability = DurabilityMode::Aof;
    config.queue.durability_timeout_ms = 2000; // everysec: the next fsync is up to 1 s away
    let started = start_app(config).await;
    let client = reqwest::Client::new();
    let res = client
        .post(format!("http://{}/v1/jobs", started.addr))
        .bearer_auth(ADMIN)
        .json(&body("acme"))
        .send()
        .await
        .unwrap();
    let id = id_of(res, 202).await;
    let info: String = redis::cmd("INFO").arg("persistence").query(&mut server.conn()).unwrap();
    assert!(info.contains("aof_last_write_status:ok"), "{info}");
    server.restart(); // SIGKILL, then replay the AOF
    assert_eq!(state_on(&server, &id).as_deref(), Some("queued"));
    let _ = started.stop.send(());
}

#[tokio::test]
async fn aof_mode_is_refused_when_appendonly_is_off() {
    let server = RedisServer::start_binary(&redis8(), Durability::None);
    let store = RedisStore::connect(&server.url(), "drover", defaults(mode(DurabilityMode::Aof)))
        .await
        .unwrap();
    let err = store.ping().await.unwrap_err();
    assert!(err.to_string().contains("needs appendonly yes"), "{err}");
}

async fn wait_for(mut done: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Switches AOF off at run time (`CONFIG SET appendonly no`).
fn appendonly_off(server: &RedisServer) {
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("appendonly")
        .arg("no")
        .query(&mut server.conn())
        .unwrap();
}

/// A Redis 8 with AOF every second and an API in `aof` mode on it.
async fn aof_app() -> (RedisServer, Started) {
    let server = RedisServer::start_binary(&redis8(), Durability::AofEverySec);
    let mut config = test_config(&server.url());
    config.queue.durability = DurabilityMode::Aof;
    config.queue.durability_timeout_ms = 2000;
    let started = start_app(config).await;
    (server, started)
}

/// Found by this stop's regression audit (N4): in `aof` mode, with AOF switched off at
/// run time (`CONFIG SET appendonly no`), the enqueue's WAITAOF was refused and the
/// client got "Redis did not answer" — yet the job was written and ran — while
/// `/readyz` stayed ready. Now the answer is the not-durable 503, and the next check
/// finds that Redis cannot give `aof` any more.
#[tokio::test]
async fn aof_mode_with_appendonly_switched_off_at_run_time_answers_not_durable_and_turns_not_ready() {
    let (server, started) = aof_app().await;
    let client = reqwest::Client::new();
    let url = format!("http://{}", started.addr);
    let submit = || client.post(format!("{url}/v1/jobs")).bearer_auth(ADMIN).json(&body("acme")).send();
    id_of(submit().await.unwrap(), 202).await;
    appendonly_off(&server);
    let res = submit().await.unwrap();
    assert_eq!(res.status(), 503);
    let p: Value = res.json().await.unwrap();
    // (sent without a key: told to check before it retries)
    assert!(
        p["detail"].as_str().unwrap_or_default().starts_with("accepted but not yet durable"),
        "{p}"
    );
    assert_eq!(jobs_on(&server, JobKind::Cleanup), 2, "the second job was written");
    let ready = client.get(format!("{url}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503, "ready while Redis cannot give aof durability");
    let _ = started.stop.send(());
}

/// Found by the chaos audit of 2026-12-05: in `aof` mode with AOF switched off at run
/// time, a fetch's WAITAOF was refused and the whole pipeline's reply with it, so the
/// leases the fetch script had made were neither handed to a run nor given back: the
/// job sat `running` with nobody on it, and every idle round leased it again until its
/// attempts were spent and it went dead, never run. Now the leases are given back
/// (attempts unused) and the next fetch is refused, naming what Redis lacks.
#[tokio::test]
async fn aof_mode_with_appendonly_switched_off_at_run_time_leases_nothing_and_gives_the_jobs_back() {
    let server = RedisServer::start_binary(&redis8(), Durability::AofEverySec);
    let mut durability = mode(DurabilityMode::Aof);
    durability.timeout = Duration::from_secs(2);
    let store = RedisStore::connect(&server.url(), "drover", defaults(durability)).await.unwrap();
    let id = store.enqueue(NewJob::new(cleanup_payload("acme"))).await.unwrap().id;
    appendonly_off(&server);
    let r = store.fetch(JobKind::Cleanup, "w1", 4, Duration::from_secs(30)).await;
    assert!(r.is_err(), "no lease handed out: {:?}", r.map(|f| f.jobs.len()));
    assert_eq!(state_on(&server, &id).as_deref(), Some("queued"), "given back");
    let again = store.fetch(JobKind::Cleanup, "w1", 4, Duration::from_secs(30)).await;
    assert!(
        matches!(again, Err(StoreError::DurabilityUnsupported(ref why)) if why.contains("appendonly")),
        "{:?}",
        again.map(|f| f.jobs.len())
    );
    assert_eq!(state_on(&server, &id).as_deref(), Some("queued"));
    let job = store.get(&id).await.unwrap().unwrap();
    assert_eq!(job.attempts, 0, "no attempt used: {job:#?}");
}

/// Found by an audit of error texts: the API claims an idempotency key for a kind and an
/// account before the enqueue, and kept the claim when the queue then refused the submit
/// with nothing written (a `queue.durability` Redis cannot give). The client was told
/// "nothing was written", yet the same key for another account was a 409 for a day. A
/// claim the refused request made is now given back.
#[tokio::test]
async fn an_idempotency_key_refused_with_nothing_written_stays_free() {
    let (server, started) = aof_app().await;
    let client = reqwest::Client::new();
    let url = format!("http://{}", started.addr);
    let submit = |account: &str, key: &str| {
        client
            .post(format!("{url}/v1/jobs"))
            .bearer_auth(ADMIN)
            .header("Idempotency-Key", key)
            .json(&body(account))
            .send()
    };
    id_of(submit("acme", "k0").await.unwrap(), 202).await;
    let appendonly = |on: &str| {
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("appendonly")
            .arg(on)
            .query(&mut server.conn())
            .unwrap();
    };
    appendonly("no");
    // Written, its wait refused: the next submit finds the mode gone and writes nothing.
    assert_eq!(submit("acme", "k-written").await.unwrap().status(), 503);
    let refused = submit("acme", "k1").await.unwrap();
    assert_eq!(refused.status(), 503);
    let p: Value = refused.json().await.unwrap();
    assert!(p["detail"].as_str().unwrap_or_default().contains("nothing was written"), "{p}");
    assert_eq!(jobs_on(&server, JobKind::Cleanup), 2, "the refused submit wrote no job");

    appendonly("yes");
    wait_for(
        || {
            let info: String = redis::cmd("INFO").arg("persistence").query(&mut server.conn()).unwrap();
            info.contains("aof_enabled:1") && info.contains("aof_rewrite_in_progress:0")
        },
        "AOF on again",
    )
    .await;
    let other = submit("globex", "k1").await.unwrap();
    assert_eq!(other.status(), 202, "the key is free: {:?}", other.text().await);
    // A key whose job was written keeps its claim.
    let taken = submit("globex", "k-written").await.unwrap();
    assert_eq!(taken.status(), 409, "{:?}", taken.text().await);
    let _ = started.stop.send(());
}

/// Account a1's cleanup of one SKU.
fn one_sku_cleanup() -> JobPayload {
    JobPayload::from_json(
        JobKind::Cleanup,
        json!({"account_id": "a1", "marketplace_id": "ATVPDKIKX0DER", "skus": ["SKU-1"]}),
    )
    .unwrap()
}

/// Found by the queue-core audit of 2026-12-05: a Redis restarted from a snapshot older
/// than a lease (RDB only; an AOF write Redis postponed; a failover to a replica that
/// lags) has the job back in its lane while its holder, not yet fenced, still runs it,
/// and the next fetch leased it at once: two runs of one job at the same time. After a
/// restart nothing is leased until a lease (and a second) has passed since Redis started,
/// by which time the holder's keeper has found its lease gone or fenced itself.
#[tokio::test]
async fn after_a_restart_that_lost_a_lease_the_job_is_not_leased_again_within_a_lease() {
    let lease = Duration::from_millis(1800);
    let mut server = RedisServer::start(Durability::None);
    let store = RedisStore::connect(&server.url(), "drover", JobDefaults::default()).await.unwrap();
    let payload = one_sku_cleanup();
    // A fetch before the snapshot, as any worker makes: the queue has been served.
    assert!(store.fetch(JobKind::Cleanup, "w0", 1, lease).await.unwrap().jobs.is_empty());
    let id = store.enqueue(NewJob::new(payload)).await.unwrap().id;
    let _: () = redis::cmd("SAVE").query(&mut server.conn()).unwrap();
    let first = store.fetch(JobKind::Cleanup, "w1", 1, lease).await.unwrap().jobs;
    assert_eq!(first.len(), 1, "w1 runs the job");
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Redis dies and comes back from its snapshot, where the job is still queued.
    server.restart();
    let restarted = Instant::now();
    assert_eq!(state_on(&server, &id).as_deref(), Some("queued"), "the snapshot lost the lease");
    // w1's keeper comes first (review of e622aed: a renewal after the gap used to hide the
    // restart from the fetches after it) and learns its lease is gone.
    let held = [(id.clone(), first[0].token.clone())];
    let mut report = None;
    while report.is_none() && restarted.elapsed() < Duration::from_secs(5) {
        report = store
            .extend_leases(JobKind::Cleanup, &held, lease, Duration::from_secs(1))
            .await
            .ok();
    }
    assert_eq!(
        report.expect("the renewal reached Redis").lost,
        vec![id.clone()],
        "w1 learns its lease is gone"
    );
    // Why the job waits says so (found by the visibility audit of 2026-12-06: it showed
    // its place in line, as if a slot were all it waited for).
    let waiting = store.waiting(&id).await.unwrap().expect("the job waits");
    assert_eq!(waiting.reason, WaitReason::RestartHold, "{waiting:?}");
    let mut again = None;
    while again.is_none() && restarted.elapsed() < Duration::from_secs(8) {
        // The store's connection comes back by itself; a call on the dead one may fail.
        if let Ok(f) = store.fetch(JobKind::Cleanup, "w2", 1, lease).await {
            again = f.jobs.into_iter().next().map(|l| (l.id, restarted.elapsed()));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (again, after) = again.expect("the job is leased again once the hold ends");
    assert_eq!(again, id);
    assert!(
        after >= lease,
        "w2 leased the job {after:?} after the restart, while w1's lease ({lease:?}) could still be running it"
    );
    // Once the hold is over, a queued job no longer names it.
    let next = store.enqueue(NewJob::new(one_sku_cleanup())).await.unwrap().id;
    let waiting = store.waiting(&next).await.unwrap().expect("the job waits");
    assert_eq!(waiting.reason, WaitReason::Queued, "{waiting:?}");
}

/// Found by the chaos audit of 2026-12-05: the restart check ran only after a gap of
/// 50 ms or more since Redis last served the queue, and a gap below zero counted as none.
/// A failover to a replica whose clock is behind the old primary's (or a clock stepped
/// back) is such a gap: the new run id went unseen, and a lease the replica never
/// received was given to a second worker at once.
#[tokio::test]
async fn a_restart_seen_through_a_clock_that_went_back_still_holds_the_leases() {
    let lease = Duration::from_millis(1800);
    let server = RedisServer::start(Durability::None);
    let store = RedisStore::connect(&server.url(), "drover", JobDefaults::default()).await.unwrap();
    let payload = one_sku_cleanup();
    // The queue has been served (its run id is known), and a job is queued.
    assert!(store.fetch(JobKind::Cleanup, "w0", 1, lease).await.unwrap().jobs.is_empty());
    store.enqueue(NewJob::new(payload)).await.unwrap();
    // As this server finds it after a failover: the run id is the old primary's, and the
    // old primary last served the queue 10 s ahead of this server's clock.
    let now_ms: (u64, u64) = redis::cmd("TIME").query(&mut server.conn()).unwrap();
    let ahead = now_ms.0 * 1000 + now_ms.1 / 1000 + 10_000;
    let _: () = redis::pipe()
        .cmd("SET")
        .arg("drover:{cleanup}:runid")
        .arg("0123456789abcdef0123456789abcdef01234567")
        .ignore()
        .cmd("SET")
        .arg("drover:{cleanup}:seen")
        .arg(ahead)
        .ignore()
        .query(&mut server.conn())
        .unwrap();
    let leased = store.fetch(JobKind::Cleanup, "w2", 1, lease).await.unwrap().jobs;
    assert!(leased.is_empty(), "a job was leased right after a restart: {leased:?}");
    let held: bool = redis::cmd("EXISTS")
        .arg("drover:{cleanup}:restarted")
        .query(&mut server.conn())
        .unwrap();
    assert!(held, "the restart was not noted");
}

/// Redis failover audit of 2026-12-06: `WAIT` waits for the replicas to acknowledge the
/// last write of its own connection, and a replay (the same Idempotency-Key) writes
/// nothing, so a retry after "not yet durable" sent by another process (another API
/// replica, or this one after its connection was dialled again) waited for nothing and
/// was answered at once: a 200 for a job that a failover could still lose. A replay now
/// writes (its key again, unchanged), so its wait covers the job's first write.
#[tokio::test]
async fn a_replay_from_another_connection_is_not_durable_until_the_replica_has_the_job() {
    let (primary, replica, first) = replica_pair().await;
    a_replay_waits_for_the_replica(&primary, &replica, &first, "order-8", false).await;
    assert_eq!(jobs_on(&primary, JobKind::Cleanup), 1);
}

/// A job sent through `first` while `replica` is paused, then sent again with the same
/// Idempotency-Key by another process (its connections reach the primary by another
/// address; with `wrote_before`, one whose last write the replica has): not durable
/// until the replica has the job, then answered with it, once.
async fn a_replay_waits_for_the_replica(primary: &RedisServer, replica: &RedisServer, first: &RedisStore, key: &str, wrote_before: bool) {
    let relay = drover_tests::harness::FrozenProxy::start(([127, 0, 0, 1], primary.port()).into()).await;
    let other = RedisStore::connect(&relay.url(), "drover", defaults(mode(DurabilityMode::Replica)))
        .await
        .unwrap();
    if wrote_before {
        other.enqueue(NewJob::new(cleanup_payload("globex"))).await.expect("durable");
    }
    let job = || NewJob::new(cleanup_payload("acme")).idempotency_key(key);
    replica.pause();
    let sent = first.enqueue(job()).await;
    assert!(matches!(sent, Err(EnqueueError::Store(StoreError::NotDurable(_)))), "{sent:?}");
    let again = other.enqueue(job()).await;
    replica.resume();
    assert!(
        matches!(again, Err(EnqueueError::Store(StoreError::NotDurable(_)))),
        "a replay while the replica has not the job: {again:?}"
    );
    let later = other.enqueue(job()).await.expect("durable now");
    assert!(!later.created, "the same job");
}

/// Found by the durability audit of 2026-12-07 (second): the test above runs on Debian's
/// Redis 7.0, which moved a connection's replication mark on every command; since 7.2 it
/// moves only on commands that propagate, so a replay answered `existing` (writing
/// nothing) from a connection whose last write the replica already had waited for
/// nothing: a 200 for a job a failover could still lose. Every `existing` answer writes.
#[tokio::test]
async fn on_a_redis_since_7_2_a_replay_from_another_connection_waits_for_the_replica_too() {
    let primary = RedisServer::start_binary(&redis8(), Durability::None);
    let replica = RedisServer::start_replica_of(&primary);
    let first = RedisStore::connect(&primary.url(), "drover", defaults(mode(DurabilityMode::Replica)))
        .await
        .unwrap();
    a_replay_waits_for_the_replica(&primary, &replica, &first, "order-9", true).await;
}

/// Redis failover audit of 2026-12-06: a settle sent to a primary just demoted to a replica
/// (a planned failover, Sentinel's reconfiguration) is refused (`READONLY`), and so is its
/// wait ("WAIT cannot be used with replica instances"); the store took the wait's refusal
/// for "the writes before it were applied" and answered not durable — a settle that never
/// happened counted as applied, the job left running to be reclaimed and run again. A
/// refused write is an error of its own now, sent again by the settler.
#[tokio::test]
async fn a_settle_refused_by_a_demoted_primary_is_not_taken_for_applied() {
    let (primary, replica, store) = replica_pair().await;
    let id = store.enqueue(NewJob::new(cleanup_payload("acme"))).await.unwrap().id;
    let leased = lease_one(&store).await;
    // The replica takes over; the old primary follows it, and the store still talks to it.
    detach(&replica);
    follow(&primary, &replica, "the old primary follows the new one").await;
    let done = Settlement {
        id: id.clone(),
        token: leased.token.clone(),
        action: SettleAction::Succeeded(json!({})),
        attempt: None,
    };
    let r = store.settle(JobKind::Cleanup, &[done]).await;
    assert!(
        !matches!(r, Ok(_) | Err(StoreError::NotDurable(_))),
        "a settle the demoted primary refused: {r:?}"
    );
    assert_eq!(state_on(&replica, &id).as_deref(), Some("running"), "nothing was applied");
}
