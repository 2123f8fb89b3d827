//! Redis failovers under a live store: a Sentinel-managed primary and a Redis Cluster
//! primary are SIGKILLed, a replica is promoted, and the same store (no restart, no new
//! connection by the caller) carries on — enqueues, fetches and reads of jobs written
//! before the failover (replicated first with WAIT, so what this shows is the client
//! following the promotion, not durability; see the durability suite). And a server
//! that goes silent with its socket open costs the store one timed-out call.
use std::time::{Duration, Instant};

use drover::job::{JobKind, JobPayload, JobState};
use drover::queue::{JobDefaults, JobStore, NewJob, Partitions, RedisStore, SettleAction, SettleResult, Settlement};
use drover_tests::harness::{Durability, FrozenProxy, RedisCluster, RedisSentinels, RedisServer};
use serde_json::json;

fn cleanup(account: &str) -> JobPayload {
    JobPayload::from_json(
        JobKind::Cleanup,
        json!({"account_id": account, "marketplace_id": "ATVPDKIKX0DER", "skus": ["SKU-1"]}),
    )
    .unwrap()
}

/// Retries `enqueue` until it succeeds; how long that took.
async fn enqueue_until_ok(store: &RedisStore, account: &str, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        match store.enqueue(NewJob::new(cleanup(account))).await {
            Ok(_) => return started.elapsed(),
            Err(e) => {
                assert!(started.elapsed() < within, "no enqueue succeeded within {within:?}: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Makes the writes so far reach `replicas` replicas of every primary they went to.
async fn replicate(store: &RedisStore, replicas: usize) {
    let mut conn = store.connection();
    let acked: i64 = redis::cmd("WAIT").arg(replicas).arg(5000).query_async(&mut conn).await.unwrap();
    assert!(acked >= replicas as i64, "replicated to {acked}");
}

/// A store on `cluster` with the kind in 6 partitions and `replica` durability.
async fn replica_store(cluster: &RedisCluster, timeout: Duration) -> RedisStore {
    let defaults = JobDefaults {
        partitions: Partitions::new(6).unwrap(),
        durability: drover::queue::Durability {
            mode: drover::queue::DurabilityMode::Replica,
            timeout,
        },
        ..Default::default()
    };
    RedisStore::connect(&cluster.url(), "drover", defaults).await.unwrap()
}

/// Each of `leased` ended well (without a run record).
fn succeeded(leased: &[drover::queue::Leased]) -> Vec<Settlement> {
    leased
        .iter()
        .map(|l| Settlement {
            id: l.id.clone(),
            token: l.token.clone(),
            action: SettleAction::Succeeded(json!({})),
            attempt: None,
        })
        .collect()
}

/// The primary holding the most keys (so it holds jobs of the kind).
fn busiest_primary(cluster: &RedisCluster) -> u16 {
    cluster
        .keys_per_primary()
        .into_iter()
        .max_by_key(|(_, k)| *k)
        .map(|(p, _)| p)
        .unwrap()
}

/// A cluster of three primaries without replicas that serves while one is down, and a
/// store on it with six partitions.
async fn partial_cluster() -> (RedisCluster, RedisStore) {
    let cluster = RedisCluster::start(3, 0);
    cluster.serve_partial_coverage();
    let defaults = JobDefaults {
        partitions: Partitions::new(6).unwrap(),
        ..Default::default()
    };
    let store = RedisStore::connect(&cluster.url(), "drover", defaults).await.unwrap();
    (cluster, store)
}

/// Each job's end, waited for up to `within` in all: the jobs that ended, and those not
/// ended by then with their state (a dead shard's jobs, unreadable, are in neither).
async fn ends_on_healthy_shards(
    store: &RedisStore,
    ids: &[drover::job::JobId],
    within: Duration,
) -> (Vec<drover::job::Job>, Vec<(drover::job::JobId, Option<JobState>)>) {
    let deadline = Instant::now() + within;
    let (mut ended, mut left) = (Vec::new(), Vec::new());
    for id in ids {
        loop {
            match store.get(id).await {
                Err(_) => break,
                Ok(Some(job)) if job.state.is_terminal() => {
                    ended.push(job);
                    break;
                }
                Ok(job) if Instant::now() > deadline => {
                    left.push((id.clone(), job.map(|j| j.state)));
                    break;
                }
                Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
    (ended, left)
}

/// Enqueues `n` jobs (accounts `a0`…) and leases them all, for longer than a test runs.
async fn enqueue_and_lease(store: &RedisStore, n: usize) -> Vec<drover::queue::Leased> {
    for a in 0..n {
        store.enqueue(NewJob::new(cleanup(&format!("a{a}")))).await.unwrap();
    }
    let mut leased = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while leased.len() < n {
        assert!(Instant::now() < deadline, "only {} of {n} leased", leased.len());
        leased.extend(
            store
                .fetch(JobKind::Cleanup, "w1", 100, Duration::from_secs(600))
                .await
                .unwrap()
                .jobs,
        );
    }
    leased
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_behind_sentinel_follows_the_promoted_replica_without_a_restart() {
    let mut sentinels = RedisSentinels::start(1);
    let store = RedisStore::connect(&sentinels.url(), "drover", JobDefaults::default())
        .await
        .unwrap();
    let mut before = Vec::new();
    for a in 0..20 {
        before.push(store.enqueue(NewJob::new(cleanup(&format!("a{a}")))).await.unwrap().id);
    }
    replicate(&store, 1).await;
    let old = sentinels.primary_port().unwrap();
    let new = sentinels.fail_over(Duration::from_secs(20));
    assert_ne!(old, new);
    let took = enqueue_until_ok(&store, "after", Duration::from_secs(15)).await;
    eprintln!("first enqueue after the promotion took {took:?}");
    for id in &before {
        assert!(store.get(id).await.unwrap().is_some(), "{id} is on the promoted replica");
    }
    let leased = store
        .fetch(JobKind::Cleanup, "w1", 100, Duration::from_secs(30))
        .await
        .unwrap()
        .jobs;
    assert_eq!(leased.len(), 21, "the store fetches from the new primary");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_on_a_cluster_carries_on_when_a_primary_dies() {
    let mut cluster = RedisCluster::start(3, 1);
    let defaults = JobDefaults {
        partitions: Partitions::new(6).unwrap(),
        ..Default::default()
    };
    let store = RedisStore::connect(&cluster.url(), "drover", defaults).await.unwrap();
    let mut before = Vec::new();
    for a in 0..60 {
        before.push(store.enqueue(NewJob::new(cleanup(&format!("a{a}")))).await.unwrap().id);
    }
    let spread = cluster.keys_per_primary();
    eprintln!("keys per primary: {spread:?}");
    assert!(
        spread.len() == 3 && spread.iter().all(|(_, k)| *k > 0),
        "one kind spreads over every primary: {spread:?}"
    );
    // Every primary's writes reach its replica before it dies.
    for (port, _) in &spread {
        let mut c = redis::Client::open(format!("redis://127.0.0.1:{port}"))
            .unwrap()
            .get_connection()
            .unwrap();
        let acked: i64 = redis::cmd("WAIT").arg(1).arg(5000).query(&mut c).unwrap();
        assert_eq!(acked, 1);
    }
    let victim = spread[0].0;
    cluster.kill(victim);
    cluster.wait_until_ok(Duration::from_secs(30));
    assert!(!cluster.primaries().contains(&victim));
    let took = enqueue_until_ok(&store, "after", Duration::from_secs(15)).await;
    eprintln!("first enqueue after the promotion took {took:?}");
    // A command for a slot of the dead primary may fail until the client has re-read the
    // slot map (as a worker's or the API's next try would); then it answers.
    for id in &before {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            match store.get(id).await {
                Ok(job) => {
                    assert!(job.is_some(), "{id} survived on the promoted replica");
                    break;
                }
                Err(e) => {
                    assert!(Instant::now() < deadline, "{id} unreadable 15 s after the promotion: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
    let mut leased = 0;
    let deadline = Instant::now() + Duration::from_secs(15);
    while leased < 61 && Instant::now() < deadline {
        match store.fetch(JobKind::Cleanup, "w1", 100, Duration::from_secs(30)).await {
            Ok(f) => leased += f.jobs.len(),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    assert_eq!(leased, 61, "every job is fetched from the partitions, the promoted one included");
}

/// `queue.durability = replica` on a cluster: each enqueue's wait runs on the primary that
/// took the write, whose replica acknowledges it, so enqueues (single and in a batch over
/// several partitions) succeed, and a fetch's leases are waited for the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_durability_on_a_cluster_acknowledges_enqueues_and_leases() {
    let cluster = RedisCluster::start(3, 1);
    let store = replica_store(&cluster, Duration::from_secs(2)).await;
    for a in 0..12 {
        if let Err(e) = store.enqueue(NewJob::new(cleanup(&format!("a{a}")))).await {
            panic!("enqueue {a} with replica durability on a cluster: {e}");
        }
    }
    let batch: Vec<NewJob> = (0..12).map(|a| NewJob::new(cleanup(&format!("b{a}")))).collect();
    for (i, r) in store.enqueue_bulk(batch).await.unwrap().into_iter().enumerate() {
        assert!(r.is_ok(), "bulk job {i}: {r:?}");
    }
    let mut leased = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while leased < 24 {
        assert!(Instant::now() < deadline, "only {leased} of 24 leased");
        leased += store
            .fetch(JobKind::Cleanup, "w1", 100, Duration::from_secs(30))
            .await
            .unwrap()
            .jobs
            .len();
    }
}

/// One shard that cannot acknowledge (its only replica died) costs only its own jobs:
/// with `replica` durability a batch enqueue fails just the jobs that went to it, and a
/// fetch still leases the other shards' jobs (before, the one failed wait or pipeline
/// failed the whole call: every job of the batch was reported not durable, and every
/// fetch leased nothing, or left the others' leases to expire).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_that_cannot_acknowledge_costs_only_its_own_jobs() {
    let mut cluster = RedisCluster::start(3, 1);
    let store = replica_store(&cluster, Duration::from_millis(300)).await;
    let accounts: Vec<String> = (0..24).map(|a| format!("a{a}")).collect();
    let batch: Vec<NewJob> = accounts.iter().map(|a| NewJob::new(cleanup(a))).collect();
    for r in store.enqueue_bulk(batch).await.unwrap() {
        r.expect("every shard acknowledges");
    }
    // The replica of the primary holding the most keys dies: that shard takes writes
    // but cannot acknowledge them.
    let weak = busiest_primary(&cluster);
    for r in cluster.replicas_of(weak) {
        cluster.kill(r);
    }
    let batch: Vec<NewJob> = accounts.iter().map(|a| NewJob::new(cleanup(a))).collect();
    let results = store.enqueue_bulk(batch).await.unwrap();
    let refused = results.iter().filter(|r| r.is_err()).count();
    eprintln!("second batch: {refused} of {} not durable", results.len());
    assert!(refused > 0, "the weak shard's jobs are not durable");
    assert!(refused < results.len(), "the other shards' jobs are accepted");

    // Fetches keep leasing the healthy shards' jobs; the weak shard's go back unrun.
    let mut leased = 0;
    let mut errors = 0;
    for _ in 0..20 {
        // leases outlast the test: a job leased twice would be the weak shard's
        match store.fetch(JobKind::Cleanup, "w1", 100, Duration::from_secs(600)).await {
            Ok(f) => leased += f.jobs.len(),
            Err(_) => errors += 1,
        }
    }
    eprintln!("leased {leased} over 20 fetches ({errors} failed)");
    // Both batches put the same accounts on the weak shard: 2 × refused jobs are there.
    let healthy = 2 * (accounts.len() - refused);
    assert!(leased > 0, "the healthy shards' jobs are leased");
    assert_eq!(leased, healthy, "every job of the healthy shards runs, none of the weak shard's");
}

/// Found by the review of 2026-12-07: a fetch cut off a shard whose answer came more than
/// half a lease after the others', and with `replica` durability that was every fetch of
/// a shard whose replicas could not acknowledge (its wait is itself half a lease): what
/// it leased was left to run out, reclaimed as a dead worker's hand-backs and, past
/// those, as lost runs, until its jobs died without running. Such a shard is waited for
/// (its wait's bound and a quarter lease more), and its leases are given back unused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_that_cannot_acknowledge_loses_no_job_to_fetches_with_a_short_lease() {
    let mut cluster = RedisCluster::start(3, 1);
    let store = replica_store(&cluster, Duration::from_millis(1000)).await;
    let accounts: Vec<String> = (0..24).map(|a| format!("a{a}")).collect();
    let batch: Vec<NewJob> = accounts.iter().map(|a| NewJob::new(cleanup(a))).collect();
    let ids: Vec<drover::job::JobId> = store
        .enqueue_bulk(batch)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.expect("every shard acknowledges").id)
        .collect();
    let weak = busiest_primary(&cluster);
    for r in cluster.replicas_of(weak) {
        cluster.kill(r);
    }
    // The runtime's lease: each fetch waits up to 900 ms for the shards' replicas.
    for _ in 0..8 {
        let Ok(f) = store.fetch(JobKind::Cleanup, "w1", 100, Duration::from_millis(1800)).await else {
            continue;
        };
        let _ = store.settle(JobKind::Cleanup, &succeeded(&f.jobs)).await;
    }
    // Past any lease a fetch left behind: each job ran once, or waits unused.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let _ = store.fetch(JobKind::Cleanup, "w2", 0, Duration::from_millis(1800)).await;
    let (mut ran, mut waiting) = (0, 0);
    for id in &ids {
        let job = store.get(id).await.unwrap().unwrap();
        match job.state {
            JobState::Succeeded => ran += 1,
            JobState::Queued => {
                assert_eq!(job.attempts, 0, "{job:#?}");
                assert!(job.attempt_history.is_empty(), "a lease it never ran was left to run out: {job:#?}");
                waiting += 1;
            }
            _ => panic!("{job:#?}"),
        }
    }
    eprintln!("{ran} ran on the healthy shards, {waiting} wait on the weak one");
    assert!(ran > 0 && waiting > 0, "{ran} ran, {waiting} wait");
}

/// On a cluster a sync whose account already has one queued is enqueued in two calls
/// (the first names the queued job, which it had not declared). A second call that fails
/// fails only its own jobs: before, its error ended the whole batch (found by the chaos
/// audit of 2026-12-06), and the other queues' jobs — written — were answered as
/// failed, so a client submitting them again made each a second time; through the
/// group commit those were other clients' single submits. Here the second call fails
/// on a record that is no longer a hash; a reset or a wait no replica acknowledged
/// fails it the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_second_call_costs_only_its_own_jobs() {
    let (cluster, store) = partial_cluster().await;
    let first = store.enqueue(NewJob::new(sync("a0"))).await.unwrap();
    let key = store.job_keys(&first.id).job(&first.id);
    let mut node = redis::Client::open(format!("redis://127.0.0.1:{}", cluster.primary_serving(&key)))
        .unwrap()
        .get_connection()
        .unwrap();
    let () = redis::cmd("SET").arg(&key).arg("not a hash").query(&mut node).unwrap();
    let mut batch: Vec<NewJob> = (1..12).map(|a| NewJob::new(cleanup(&format!("a{a}")))).collect();
    batch.push(NewJob::new(sync("a0")));
    let results = store.enqueue_bulk(batch).await.expect("each call answers for its own jobs");
    let (created, failed) = results.split_at(11);
    for r in created {
        assert!(r.as_ref().is_ok_and(|e| e.created), "the cleanups are accepted: {r:?}");
    }
    assert!(failed[0].is_err(), "the sync's second call failed: {:?}", failed[0]);
}

/// Outcomes over several shards, one of which cannot acknowledge: every outcome is
/// written — the healthy shards' answered `Applied`, the weak shard's `NotDurable`
/// (written, to be waited for, never sent again). Before, the first shard's failed wait
/// ended the call: the outcomes of the queues after it were never sent, while the
/// worker, told "not durable", counted every one of them applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcomes_over_several_shards_are_each_written_when_one_shard_cannot_acknowledge() {
    let mut cluster = RedisCluster::start(3, 1);
    // 2 s, not 300 ms: the set-up's enqueues and leases wait for healthy replicas, which
    // on a loaded CI host took longer than 300 ms once; only the weak shard's one settle
    // waits the whole timeout.
    let store = replica_store(&cluster, Duration::from_secs(2)).await;
    let leased = enqueue_and_lease(&store, 24).await;
    let weak = busiest_primary(&cluster);
    // Which jobs live on the weak primary: it answers for its own keys, MOVED for others.
    let mut on_weak = redis::Client::open(format!("redis://127.0.0.1:{weak}"))
        .unwrap()
        .get_connection()
        .unwrap();
    let mut weak_first: Vec<(bool, drover::queue::Leased)> = leased
        .into_iter()
        .map(|l| {
            let key = store.job_keys(&l.id).job(&l.id);
            let owned: redis::RedisResult<i64> = redis::cmd("EXISTS").arg(&key).query(&mut on_weak);
            (owned.is_ok(), l)
        })
        .collect();
    weak_first.sort_by_key(|(weak, _)| !*weak);
    assert!(weak_first[0].0 && !weak_first[23].0, "jobs on the weak shard and on others");
    for r in cluster.replicas_of(weak) {
        cluster.kill(r);
    }
    let settlements: Vec<Settlement> = weak_first
        .iter()
        .map(|(_, l)| Settlement {
            id: l.id.clone(),
            token: l.token.clone(),
            action: SettleAction::Succeeded(json!({})),
            attempt: None,
        })
        .collect();
    let results = store.settle(JobKind::Cleanup, &settlements).await.expect("written on every shard");
    for ((weak, l), r) in weak_first.iter().zip(&results) {
        let expected = if *weak { SettleResult::NotDurable } else { SettleResult::Applied };
        assert_eq!(*r, expected, "{}", l.id);
        let state = store.get(&l.id).await.unwrap().unwrap().state;
        assert_eq!(state, JobState::Succeeded, "{}: written either way", l.id);
    }
}

/// A shard that cannot be reached leaves only its own leases unrenewed: the others are
/// renewed and the unreachable ones reported (before, the first unreachable queue failed
/// the whole renewal, so every run of the kind went unrenewed and was fenced once its
/// lease ran out, on healthy shards too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_shard_leaves_only_its_own_leases_unrenewed() {
    let (mut cluster, store) = partial_cluster().await;
    let leased = enqueue_and_lease(&store, 24).await;
    let gone = busiest_primary(&cluster);
    cluster.kill(gone);
    let leases: Vec<(drover::job::JobId, String)> = leased.iter().map(|l| (l.id.clone(), l.token.clone())).collect();
    let report = store
        .extend_leases(JobKind::Cleanup, &leases, Duration::from_secs(600), Duration::from_secs(5))
        .await
        .expect("the reachable shards renew");
    eprintln!("{} of 24 leases unreached", report.unreached.len());
    assert!(!report.unreached.is_empty(), "the dead shard's leases are reported");
    assert!(report.unreached.len() < 24, "the others are renewed");
    assert!(report.lost.is_empty(), "{:?}", report.lost);
}

/// Found by an audit of waits: after the primary went away, every command that failed
/// asked the sentinels in turn, behind one lock, each for up to 2 s when they did not
/// answer, so the last of a burst of failing calls waited for all the asks before it.
/// Callers that waited while another asked now take its answer. Here the primary is
/// killed with the sentinels frozen, and eight calls fail at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_failing_calls_asks_the_sentinels_once_not_once_each() {
    let mut sentinels = RedisSentinels::start(0);
    let store = RedisStore::connect(&sentinels.url(), "drover", JobDefaults::default())
        .await
        .unwrap();
    let id = store.enqueue(NewJob::new(cleanup("a0"))).await.unwrap().id;
    sentinels.pause_sentinels();
    sentinels.servers()[0].kill();
    let started = Instant::now();
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let (store, id) = (store.clone(), id.clone());
            tokio::spawn(async move { store.get(&id).await.is_err() })
        })
        .collect();
    for call in calls {
        assert!(call.await.unwrap(), "the primary is gone");
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "eight failing calls took {took:?}");
}

/// Found by an audit of waits: the worker's settler retried a batch until every outcome
/// in it was stored, and answered none of its runs before. Four such batches stuck on a
/// shard that was gone (a primary without a replica, the cluster serving partial
/// coverage) stopped every later outcome of the kind, on every shard: the healthy
/// shards' jobs stayed `running`, their leases renewed, for as long as the shard was
/// down. Each run is now answered as soon as its own queue takes its outcome, and what
/// the dead shard holds is sent again on a task of its own. Here 30 runs wait on a gate,
/// a primary is killed, and the gate lets them end one by one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_shard_holds_up_no_other_shards_job_outcomes() {
    let (mut cluster, store) = partial_cluster().await;
    let defaults = store.defaults().clone();
    let mut ids = Vec::new();
    for a in 0..30 {
        ids.push(store.enqueue(NewJob::new(cleanup(&format!("a{a}")))).await.unwrap().id);
    }
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let handler = {
        let gate = gate.clone();
        move |_: JobPayload, _: drover::runtime::JobContext| {
            let gate = gate.clone();
            Box::pin(async move {
                gate.acquire().await.expect("the gate stays open").forget();
                Ok(drover::runtime::Outcome::Succeeded(json!({})))
            }) as futures::future::BoxFuture<'static, Result<drover::runtime::Outcome, drover::JobError>>
        }
    };
    let settings = drover::runtime::WorkerSettings {
        concurrency: [(JobKind::Cleanup, 30), (JobKind::Sync, 0), (JobKind::Backfill, 0)].into(),
        prefetch: 0,
        idle_wait: Duration::from_millis(200),
        ..drover::runtime::WorkerSettings::default()
    };
    let url = cluster.url();
    let connect = move || {
        let (url, defaults) = (url.clone(), defaults.clone());
        async move { RedisStore::connect(&url, "drover", defaults).await }
    };
    let runtime = tokio::spawn(drover::runtime::run(
        store.clone(),
        connect,
        settings,
        handler,
        std::future::pending(),
    ));
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mut running = 0;
        for id in &ids {
            running += usize::from(store.get(id).await.unwrap().unwrap().state == JobState::Running);
        }
        if running == ids.len() {
            break;
        }
        assert!(Instant::now() < deadline, "only {running} of {} runs started", ids.len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cluster.kill(busiest_primary(&cluster));
    // One run ends every 50 ms: the dead shard's each in a batch of its own.
    for _ in 0..ids.len() {
        gate.add_permits(1);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (ended, left) = ends_on_healthy_shards(&store, &ids, Duration::from_secs(15)).await;
    runtime.abort();
    assert!(ended.iter().all(|j| j.state == JobState::Succeeded), "{ended:?}");
    let healthy = ended.len();
    assert!(
        left.is_empty(),
        "outcomes on healthy shards not recorded after 15 s: {left:?} ({healthy} were)"
    );
    assert!(healthy >= 10, "only {healthy} of 30 jobs on the healthy shards");
}

/// A worker started while one primary of the cluster is down runs the healthy shards'
/// jobs to the end, its leases renewed (the chaos audit of 2026-12-05 suspected that its
/// lease keeper's first PING, sent to every primary, would fail and fence every run; it
/// does not).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_started_while_a_primary_is_down_runs_the_healthy_shards_jobs_to_the_end() {
    use drover::job::AttemptOutcome;
    use drover_tests::harness::{cargo_bin, ChildProcess};
    let (mut cluster, store) = partial_cluster().await;
    let mut ids = Vec::new();
    for a in 0..30 {
        ids.push(store.enqueue(NewJob::new(cleanup(&format!("a{a}")))).await.unwrap().id);
    }
    cluster.kill(busiest_primary(&cluster));
    let env = vec![
        ("DROVER_WORKER__REDIS_URL", cluster.url()),
        ("DROVER_WORKER__QUEUE__PARTITIONS", "6".to_owned()),
        ("DROVER_WORKER__CONCURRENCY__SYNC", "0".to_owned()),
        ("DROVER_WORKER__CONCURRENCY__BACKFILL", "0".to_owned()),
        ("DROVER_WORKER__CONCURRENCY__CLEANUP", "30".to_owned()),
        // each run outlasts the fence (lease − heartbeat: 1.5 s)
        ("DROVER_TEST_BEHAVIOUR", "sleep.2500".to_owned()),
        ("RUST_LOG", "info".to_owned()),
    ];
    let w = ChildProcess::spawn("worker", &cargo_bin("test_worker"), &[], &env);
    let (ended, left) = ends_on_healthy_shards(&store, &ids, Duration::from_secs(30)).await;
    for job in &ended {
        assert_eq!(job.state, JobState::Succeeded, "{}: {:?}", job.id, job.attempt_history);
        assert!(
            job.attempt_history.iter().all(|a| a.outcome != AttemptOutcome::Released),
            "{} was handed back: {:?}",
            job.id,
            job.attempt_history
        );
    }
    let healthy = ended.len();
    assert!(
        left.is_empty(),
        "jobs on healthy shards not run to the end after 30 s: {left:?} ({healthy} were)\n{}",
        w.log()
    );
    assert!(healthy >= 10, "only {healthy} of 30 jobs on the healthy shards");
}

/// A Redis that stops answering while its socket stays open (a frozen process, a peer
/// gone half-open): after one reply times out the store dials afresh. Found by an audit
/// of unbounded waits: redis-rs's `ConnectionManager` reconnects on socket errors only,
/// so every later command timed out on the same silent socket (for ~15 min, until the
/// kernel gave up on it; forever behind this relay).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_goes_silent_is_dialled_afresh_after_one_timed_out_call() {
    let server = RedisServer::start(Durability::None);
    let proxy = FrozenProxy::start(([127, 0, 0, 1], server.port()).into()).await;
    let store = RedisStore::connect(&proxy.url(), "drover", JobDefaults::default()).await.unwrap();
    store.enqueue(NewJob::new(cleanup("acme"))).await.unwrap();
    proxy.freeze_open_connections();
    let frozen = Instant::now();
    let first = store.enqueue(NewJob::new(cleanup("acme"))).await;
    assert!(first.is_err(), "the silent connection's call times out");
    let took = enqueue_until_ok(&store, "acme", Duration::from_secs(12)).await;
    eprintln!("an enqueue succeeded {} ms after the freeze", (frozen.elapsed()).as_millis());
    assert!(
        took < Duration::from_secs(2),
        "the next call goes over a fresh connection: {took:?}"
    );
}

/// Found by an audit of the queue core (2026-12-05): the cluster client sends a command
/// again when its connection drops before the reply is read — after Redis ran it — and
/// an enqueue of a job without a callback wrote the same job again: back to queued with
/// no attempts used whatever it had become, and counted again. Here each reply is over
/// the servers' output limit, so every send of the batch runs and loses its reply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enqueue_the_cluster_client_sends_again_writes_its_jobs_once() {
    let mut cluster = RedisCluster::start(3, 0);
    let store = RedisStore::connect(&cluster.url(), "drover", Default::default()).await.unwrap();
    store.enqueue(NewJob::new(cleanup("a0"))).await.unwrap();
    let set_limit = |cluster: &mut RedisCluster, limit: &str| {
        for node in cluster.nodes() {
            let _: () = redis::cmd("CONFIG")
                .arg("SET")
                .arg("client-output-buffer-limit")
                .arg(limit)
                .query(&mut node.conn())
                .unwrap();
        }
    };
    set_limit(&mut cluster, "normal 8kb 0 0");
    let batch: Vec<NewJob> = (0..1000)
        .map(|_| {
            let mut job = NewJob::new(cleanup("a1")).answering_waiting();
            job.delay = Some(Duration::from_secs(600));
            job
        })
        .collect();
    let sent = store.enqueue_bulk(batch).await;
    set_limit(&mut cluster, "normal 0 0 0");
    eprintln!(
        "the batch's answer: {:?}",
        sent.as_ref().map(|r| r.len()).map_err(|e| e.to_string())
    );
    let counts = store.account_counts("a1").await.unwrap();
    let cleanup_counts = counts.kinds.iter().find(|(k, _)| *k == JobKind::Cleanup).unwrap().1;
    let scheduled = store.counts(JobKind::Cleanup).await.unwrap().scheduled;
    assert_eq!(scheduled, 1000, "each job is scheduled once");
    assert_eq!(cleanup_counts.scheduled, 1000, "each job is counted once: {cleanup_counts:?}");
}

fn sync(account: &str) -> JobPayload {
    JobPayload::from_json(
        JobKind::Sync,
        json!({"account_id": account, "marketplace_id": "ATVPDKIKX0DER", "resources": ["orders"]}),
    )
    .unwrap()
}

/// Found by the audit of the queue's scripts of 2026-12-06: an enqueue sent again (its
/// reply lost) told whether it had run before from the first job of the call that came
/// to its write. A sync merged into its account's sync under way on the first send is
/// written on the second when that sync has ended meanwhile; it then stood for the whole
/// call ("not run before"), and every later job of the call was written again: one
/// retrying went back to queued, still due in `scheduled`, and was run by two workers.
#[tokio::test]
async fn an_enqueue_sent_again_after_the_queue_moved_on_writes_none_of_its_jobs_again() {
    let lease = Duration::from_secs(30);
    let server = RedisServer::start(Durability::None);
    let store = RedisStore::connect(&server.url(), "drover", JobDefaults::default()).await.unwrap();
    let relay = FrozenProxy::start(([127, 0, 0, 1], server.port()).into()).await;
    let client = RedisStore::connect(&relay.url(), "drover", JobDefaults::default()).await.unwrap();
    client.enqueue(NewJob::new(cleanup("warm-up"))).await.unwrap();
    // Account a's sync runs.
    let under_way = store.enqueue(NewJob::new(sync("a"))).await.unwrap().id;
    let a_run = store.fetch(JobKind::Sync, "w0", 1, lease).await.unwrap().jobs.remove(0);
    assert_eq!(a_run.id, under_way);

    relay.record();
    let sent: Vec<_> = client
        .enqueue_bulk(vec![NewJob::new(sync("a")), NewJob::new(sync("b"))])
        .await
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!((&sent[0].id, sent[0].created), (&under_way, false), "merged into a's sync");
    let b = sent[1].id.clone();
    // b's sync runs and fails (it retries in 300 ms); a's sync ends.
    let run = store.fetch(JobKind::Sync, "w1", 1, lease).await.unwrap().jobs.remove(0);
    assert_eq!(run.id, b);
    let retry = SettleAction::Retry {
        delay: Duration::from_millis(300),
        error: drover::job::ErrorInfo {
            class: drover::job::ErrorClass::Transient,
            message: "503 from getOrders".into(),
        },
    };
    let ended = store
        .settle(
            JobKind::Sync,
            &[
                Settlement {
                    id: b.clone(),
                    token: run.token.clone(),
                    action: retry,
                    attempt: None,
                },
                Settlement {
                    id: under_way.clone(),
                    token: a_run.token.clone(),
                    action: SettleAction::Succeeded(json!({})),
                    attempt: None,
                },
            ],
        )
        .await
        .unwrap();
    assert_eq!(ended, vec![SettleResult::Applied, SettleResult::Applied]);

    // The client sends its enqueue again.
    let reply = relay.send_recorded_again().await;
    assert!(!reply.starts_with(b"-"), "{}", String::from_utf8_lossy(&reply));
    let job = store.get(&b).await.unwrap().unwrap();
    assert_eq!((job.state, job.attempts), (JobState::Retrying, 1), "b's sync is left as it stands");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let mut runs_of_b = 0;
    for worker in ["w2", "w3"] {
        let leased = store.fetch(JobKind::Sync, worker, 10, lease).await.unwrap().jobs;
        runs_of_b += leased.iter().filter(|l| l.id == b).count();
    }
    assert_eq!(runs_of_b, 1, "b's sync is run by one worker at a time");
}

/// Queue-core audit of 2026-12-06 (F1): whether a call ran before is told by its first
/// plain job's record, which the first send writes whatever the queue holds — but since
/// the cap on an account's unfinished jobs, not when that job's account is full. Such a
/// call sent again took itself for a first send and wrote its other jobs again: one
/// running went back to queued, and a second worker leased it.
#[tokio::test]
async fn an_enqueue_sent_again_whose_first_job_was_refused_full_writes_none_of_its_jobs_again() {
    let lease = Duration::from_secs(30);
    let defaults = JobDefaults {
        max_unfinished_per_account: 2,
        ..JobDefaults::default()
    };
    let server = RedisServer::start(Durability::None);
    let store = RedisStore::connect(&server.url(), "drover", defaults.clone()).await.unwrap();
    let relay = FrozenProxy::start(([127, 0, 0, 1], server.port()).into()).await;
    let client = RedisStore::connect(&relay.url(), "drover", defaults).await.unwrap();
    // Account x keeps its two unfinished jobs (y keeps room for one more than the call's).
    for _ in 0..2 {
        client.enqueue(NewJob::new(cleanup("x"))).await.unwrap();
    }

    relay.record();
    let sent = client
        .enqueue_bulk(vec![NewJob::new(cleanup("x")), NewJob::new(cleanup("y"))])
        .await
        .unwrap();
    assert!(
        matches!(sent[0], Err(drover::queue::EnqueueError::AccountFull { .. })),
        "{:?}",
        sent[0]
    );
    let y = sent[1].as_ref().unwrap().id.clone();
    let run = store.fetch(JobKind::Cleanup, "w1", 10, lease).await.unwrap().jobs;
    assert!(run.iter().any(|l| l.id == y), "y's job runs");

    // The client sends its enqueue again.
    let reply = relay.send_recorded_again().await;
    assert!(!reply.starts_with(b"-"), "{}", String::from_utf8_lossy(&reply));
    let job = store.get(&y).await.unwrap().unwrap();
    assert_eq!((job.state, job.attempts), (JobState::Running, 1), "y's job is left as it stands");
    let again = store.fetch(JobKind::Cleanup, "w2", 10, lease).await.unwrap().jobs;
    assert!(again.iter().all(|l| l.id != y), "y's job is run by one worker at a time");
    assert_eq!(store.counts(JobKind::Cleanup).await.unwrap().queued, 0, "nothing is queued twice");
}

/// `n` cleanup jobs, one account each, run and ended (succeeded), spread over the
/// store's partitions; with `callbacks`, each has a completion callback, due.
async fn ended_jobs(store: &RedisStore, n: usize, callbacks: bool) {
    use drover::job::bucket_of;
    use drover::queue::NewCallback;
    for a in 0..n {
        let account = format!("cb{a}");
        let id = drover::job::JobId::with_bucket(JobKind::Cleanup, Some(bucket_of(&account)));
        let mut job = NewJob::new(cleanup(&account));
        if callbacks {
            job = job.callback(NewCallback {
                job_id: id,
                url: "https://hooks.example.com/drover".into(),
                sealed_secret: vec![1, 2, 3],
            });
        }
        store.enqueue(job).await.unwrap();
    }
    let leased = store.fetch(JobKind::Cleanup, "w0", n, Duration::from_secs(30)).await.unwrap().jobs;
    assert_eq!(leased.len(), n);
    let results = store.settle(JobKind::Cleanup, &succeeded(&leased)).await.unwrap();
    assert!(results.iter().all(|r| *r == SettleResult::Applied), "{results:?}");
}

/// Kills the primary serving the trim's lock (`lock_too`), or else one serving some of
/// `store`'s cleanup partitions but not the first's nor the lock's, with a partition
/// served by a live primary after its own, so a call that goes through the partitions
/// in turn meets it between live ones. Returns the live partitions.
fn kill_a_primary_between_partitions(cluster: &mut RedisCluster, store: &RedisStore, lock_too: bool) -> Vec<drover::queue::QueueKeys> {
    let parts = store.all_keys(JobKind::Cleanup);
    let owners: Vec<u16> = parts.iter().map(|k| cluster.primary_serving(&k.slot_key())).collect();
    let lock = cluster.primary_serving(&store.partition_keys(JobKind::Cleanup, None).key("trim:lock"));
    let dead = if lock_too {
        lock
    } else {
        owners
            .iter()
            .enumerate()
            .find(|(i, o)| **o != owners[0] && **o != lock && owners[i + 1..].iter().any(|later| later != *o))
            .map(|(_, o)| *o)
            .unwrap_or_else(|| panic!("no primary between live ones: {owners:?}"))
    };
    cluster.kill(dead);
    parts
        .into_iter()
        .zip(&owners)
        .filter(|(_, o)| **o != dead)
        .map(|(k, _)| k)
        .collect()
}

/// Found by the audit of the queue's scripts of 2026-12-06: a claim of completion
/// callbacks went through the partitions in turn and, when one failed (its shard down),
/// failed whole, dropping the deliveries it had claimed in the partitions before it:
/// their claims were written, so each ran out 30 s later as a `lost` try, and after the
/// last try ended `failed` without ever being sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_shard_down_the_other_partitions_still_hand_out_their_callbacks() {
    use drover::queue::{AccountShare, CallbackStore};
    let (mut cluster, store) = partial_cluster().await;
    ended_jobs(&store, 30, true).await;
    let live = kill_a_primary_between_partitions(&mut cluster, &store, false);
    let claimed = store
        .claim_callbacks(JobKind::Cleanup, "w1", 100, Duration::from_secs(30), 8, &AccountShare::default())
        .await
        .map(|(due, _)| due.len());
    let mut due_on_live = 0;
    for k in &live {
        let mut conn = store.connection();
        due_on_live += redis::cmd("ZCARD")
            .arg(k.key("cbdue"))
            .query_async::<usize>(&mut conn)
            .await
            .unwrap();
    }
    assert!(due_on_live > 0);
    assert_eq!(claimed.ok(), Some(due_on_live), "every live partition's deliveries are handed out");
}

/// Found with the one above: a trim pass stopped at the first failing partition, so the
/// partitions after it were never trimmed while the shard was down; and (review of that
/// fix) with the shard holding the kind's trim lock down, no partition was trimmed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_shard_down_the_other_partitions_are_still_trimmed() {
    for lock_too in [false, true] {
        let (mut cluster, store) = partial_cluster().await;
        ended_jobs(&store, 30, false).await;
        let live = kill_a_primary_between_partitions(&mut cluster, &store, lock_too);
        // Retention 0: every succeeded job of a live partition goes. (The cluster client
        // may fail a first call or two while it learns the node is gone: the trimmer
        // runs every tick, so a few passes.)
        let mut removed = 0;
        for _ in 0..5 {
            if let Ok(Some(t)) = store.trim(JobKind::Cleanup, Duration::ZERO, 500).await {
                removed += t.removed;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(removed > 0, "the passes say what they removed (lock's shard down: {lock_too})");
        for k in &live {
            let mut conn = store.connection();
            let left: usize = redis::cmd("ZCARD")
                .arg(k.key("state:succeeded"))
                .query_async(&mut conn)
                .await
                .unwrap();
            assert_eq!(left, 0, "{} was not trimmed (lock's shard down: {lock_too})", k.prefix());
        }
    }
}

/// Found by an audit of this stop's code under failure (2026-12-06): with one shard down
/// the count of accounts waiting for a turn failed whole, so the sweep counted none and
/// no run of the kind gave its turn away on any partition while the shard was down.
/// The shards that answer are counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_shard_down_the_other_partitions_accounts_still_wait_for_turns() {
    let (mut cluster, store) = partial_cluster().await;
    for a in 0..24 {
        store.enqueue(NewJob::new(cleanup(&format!("a{a}")))).await.unwrap();
    }
    assert_eq!(store.accounts_waiting(JobKind::Cleanup).await.unwrap(), 24);
    kill_a_primary_between_partitions(&mut cluster, &store, false);
    // (the cluster client may fail a first call or two while it learns the node is gone)
    let mut counted = None;
    for _ in 0..10 {
        if let Ok(n) = store.accounts_waiting(JobKind::Cleanup).await {
            counted = Some(n);
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let n = counted.expect("the live shards' accounts are counted");
    assert!(n > 0 && n < 24, "{n} of 24");
}

/// Found by the chaos audit of 2026-12-06: behind Sentinel, looking the primary up takes
/// at least 1 s while the first sentinel listed accepts connections and answers nothing
/// (redis-rs reads the sentinels' answers in list order), and the lease keeper dialled
/// under its call bound (750 ms with a 1.8 s lease): it never connected, so every run
/// was fenced 1.5 s after it started and a 4 s job never finished. The keeper's dial has
/// a bound of its own now; the job runs once, its lease renewed throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_first_sentinel_hangs_keeps_its_leases() {
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let sentinels = RedisSentinels::start(0);
    sentinels.pause_sentinel(0);
    let url = sentinels.url();
    let connect = move || {
        let url = url.clone();
        async move { RedisStore::connect(&url, "drover", JobDefaults::default()).await }
    };
    let store = connect().await.unwrap();
    let id = store.enqueue(NewJob::new(cleanup("slow"))).await.unwrap().id;
    let handler = |_: JobPayload, _: drover::runtime::JobContext| {
        RUNS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Box::pin(async move {
            tokio::time::sleep(Duration::from_secs(4)).await;
            Ok(drover::runtime::Outcome::Succeeded(json!({})))
        }) as futures::future::BoxFuture<'static, Result<drover::runtime::Outcome, drover::JobError>>
    };
    let settings = drover::runtime::WorkerSettings {
        concurrency: [(JobKind::Cleanup, 2), (JobKind::Sync, 0), (JobKind::Backfill, 0)].into(),
        lease: Duration::from_millis(1800),
        heartbeat: Duration::from_millis(300),
        prefetch: 0,
        idle_wait: Duration::from_millis(200),
        ..drover::runtime::WorkerSettings::default()
    };
    let runtime = tokio::spawn(drover::runtime::run(
        store.clone(),
        connect,
        settings,
        handler,
        std::future::pending(),
    ));
    let deadline = Instant::now() + Duration::from_secs(25);
    let job = loop {
        let job = store.get(&id).await.unwrap().unwrap();
        if job.state == JobState::Succeeded {
            break job;
        }
        assert!(
            Instant::now() < deadline,
            "not done after 25 s ({} runs): {:?}",
            RUNS.load(std::sync::atomic::Ordering::SeqCst),
            job.attempt_history
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    runtime.abort();
    assert_eq!(RUNS.load(std::sync::atomic::Ordering::SeqCst), 1, "{:?}", job.attempt_history);
    assert_eq!(job.attempt_history.len(), 1, "{:?}", job.attempt_history);
}
