//! A Redis failover under load (issue 16): while the API takes enqueues and three worker
//! processes run jobs, a primary is SIGKILLed — the Sentinel-managed primary (two
//! replicas), or one of a 3-primary Redis Cluster's primaries (one replica each; the
//! kind in 6 partitions spread over all three). A replica is promoted; API and workers
//! carry on without a restart. With `queue.durability = replica` no job the API answered
//! 202 for is lost and no job runs twice at once; with `local` the test reports how many
//! were lost (replication is asynchronous: some may be).
use crate::api_support;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use api_support::*;
use drover::queue::{DurabilityMode, JobDefaults, JobStore, RedisStore};
use drover_tests::harness::{cargo_bin, ChildProcess, RedisCluster, RedisSentinels};
use drover_tests::runs::{late_pids, overlapping_runs, read_runs};
use serde_json::Value;

struct Outcome {
    /// Job ids the API answered 202 for.
    accepted: Vec<String>,
    /// Of those, how many were accepted after the promotion.
    accepted_after: usize,
    /// Of those, how many the new primary does not hold (GET 404).
    lost: Vec<String>,
    /// From the promotion to the end of the first job accepted after it that the new
    /// primary kept (a worker fetched and finished it there). Printed, not asserted: it is
    /// a figure (≈ 0.3–2 s on a quiet machine), and a timing assert flakes under CI's load.
    /// `None` when every job accepted after the promotion was lost: with `local` nothing
    /// is promised for any job, and CI once saw one accepted just after the promotion gone
    /// later (the sentinels were still reconfiguring the replicas).
    workers_back: Option<Duration>,
    /// Runs of one job at once (by the workers' run log), none of them refused as late.
    overlaps: Vec<String>,
}

/// Where the queue lives: behind Sentinel, or on a Redis Cluster.
enum Topology {
    Sentinel(RedisSentinels),
    Cluster(RedisCluster),
}

impl Topology {
    fn sentinel() -> Self {
        Self::Sentinel(RedisSentinels::start(2))
    }

    /// 3 primaries with `replicas` replicas each. `replica` durability through a failover
    /// needs 2: the promoted replica must itself have one to acknowledge to (with 1, the
    /// shard that failed over can neither take nor run jobs until a replica rejoins).
    fn cluster(replicas: usize) -> Self {
        Self::Cluster(RedisCluster::start(3, replicas))
    }

    fn url(&self) -> String {
        match self {
            Self::Sentinel(s) => s.url(),
            Self::Cluster(c) => c.url(),
        }
    }

    /// On a cluster the kind is split so that every primary holds some of it.
    fn partitions(&self) -> u16 {
        match self {
            Self::Sentinel(_) => 1,
            Self::Cluster(_) => 6,
        }
    }

    /// SIGKILLs the primary (on a cluster, the one holding the most keys — jobs of the
    /// kind, after the checks that every primary holds some) and waits for a replica to
    /// take over.
    fn fail_over(&mut self, within: Duration) {
        match self {
            Self::Sentinel(s) => {
                s.fail_over(within);
            }
            Self::Cluster(c) => {
                let spread = c.keys_per_primary();
                eprintln!("keys per primary before the kill: {spread:?}");
                assert!(
                    spread.len() == 3 && spread.iter().all(|(_, k)| *k > 0),
                    "the kind's jobs spread over every primary: {spread:?}"
                );
                let victim = spread.iter().max_by_key(|(_, k)| *k).map(|(p, _)| *p).unwrap();
                c.kill(victim);
                c.wait_until_ok(within);
                assert!(!c.primaries().contains(&victim), "a replica took over from {victim}");
            }
        }
    }
}

fn worker(url: &str, name: &str, durability: DurabilityMode, partitions: u16, run_file: &Path) -> ChildProcess {
    let env = vec![
        ("DROVER_TEST_RUN_FILE", run_file.display().to_string()),
        ("DROVER_WORKER__REDIS_URL", url.to_owned()),
        ("DROVER_WORKER__QUEUE__PARTITIONS", partitions.to_string()),
        ("DROVER_WORKER__CONCURRENCY__SYNC", "0".to_owned()),
        ("DROVER_WORKER__CONCURRENCY__BACKFILL", "0".to_owned()),
        ("DROVER_WORKER__CONCURRENCY__CLEANUP", "4".to_owned()),
        ("DROVER_WORKER__QUEUE__DURABILITY", durability.as_str().to_owned()),
        ("DROVER_TEST_BEHAVIOUR", "sleep.20".to_owned()),
        ("RUST_LOG", "info".to_owned()),
    ];
    let w = ChildProcess::spawn(name, &cargo_bin("test_worker"), &[], &env);
    assert!(
        w.wait_for_log("worker started", Duration::from_secs(20)),
        "worker did not start:\n{}",
        w.log()
    );
    w
}

/// The API as a client sees it (TestApp wants a single RedisServer; this one runs on
/// Sentinel).
struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.post(format!("{}{path}", self.base)).bearer_auth(ADMIN)
    }

    /// What `GET /v1/jobs/{id}` answers: its status (0: no answer) and JSON body (null
    /// when it has none).
    async fn get(&self, id: &str) -> (u16, Value) {
        match self.http.get(format!("{}/v1/jobs/{id}", self.base)).bearer_auth(ADMIN).send().await {
            Ok(res) => (res.status().as_u16(), res.json().await.unwrap_or_default()),
            Err(_) => (0, Value::Null),
        }
    }
}

/// One job in ten runs 1.5 s (runs that span the failover), the rest 20 ms, over seven
/// accounts each.
fn account(n: usize) -> String {
    if n.is_multiple_of(10) {
        format!("t.sleep.1500_{}", n % 7)
    } else {
        format!("acct-{}", n % 7)
    }
}

fn now_us() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_micros()
}

/// What `GET /v1/jobs/{id}` answers, status and body, for a failure's message.
async fn answer(app: &Api, id: &str) -> String {
    match app.http.get(format!("{}/v1/jobs/{id}", app.base)).bearer_auth(ADMIN).send().await {
        Ok(res) => {
            let status = res.status().as_u16();
            format!("{status} {}", res.text().await.unwrap_or_default())
        }
        Err(e) => format!("no answer: {e}"),
    }
}

async fn state(app: &Api, id: &str) -> (u16, String) {
    let (status, body) = app.get(id).await;
    (status, body["state"].as_str().unwrap_or_default().to_owned())
}

async fn run(mut redis: Topology, durability: DurabilityMode) -> Outcome {
    let url = redis.url();
    let partitions = redis.partitions();
    let mut config = test_config(&url);
    config.queue.partitions = partitions;
    config.queue.durability = durability;
    config.queue.durability_timeout_ms = 1000;
    let server = start_app(config).await;
    let app = Api {
        base: format!("http://{}", server.addr),
        http: reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap(),
    };
    let dir = tempfile::tempdir().unwrap();
    let run_file = dir.path().join("runs.log");
    let workers: Vec<ChildProcess> = (0..3)
        .map(|i| worker(&url, &format!("w{i}"), durability, partitions, &run_file))
        .collect();

    let mut accepted = Vec::new();
    let mut accepted_after = 0;
    let mut promoted_at: Option<chrono::DateTime<chrono::Utc>> = None;
    let mut after: Vec<String> = Vec::new();
    let started = Instant::now();
    let mut n = 0;
    let mut answers: HashMap<u16, u32> = HashMap::new();
    // Until 8 s from the start, and at least 3 s after the promotion: under load a
    // cluster's failover alone has taken more than 6 s (CI, 2026-12-05), which left no
    // time to submit to the new primary.
    let mut promoted: Option<Instant> = None;
    while started.elapsed() < Duration::from_secs(8) || promoted.is_some_and(|p| p.elapsed() < Duration::from_secs(3)) {
        if promoted_at.is_none() && started.elapsed() > Duration::from_secs(2) {
            redis.fail_over(Duration::from_secs(20));
            promoted_at = Some(chrono::Utc::now());
            promoted = Some(Instant::now());
        }
        n += 1;
        let res = app
            .post("/v1/jobs")
            .header("Idempotency-Key", format!("k-{n}"))
            .json(&cleanup_body(&account(n)))
            .send()
            .await;
        let status = res.as_ref().map(|r| r.status().as_u16()).unwrap_or(0);
        *answers.entry(status).or_insert(0u32) += 1;
        if let Ok(res) = res {
            if res.status() == 202 {
                let v: Value = res.json().await.unwrap();
                let id = v["id"].as_str().unwrap().to_owned();
                if promoted_at.is_some() {
                    accepted_after += 1;
                    after.push(id.clone());
                }
                accepted.push(id);
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let promoted_at = promoted_at.expect("the primary was killed");
    eprintln!("enqueue answers by status: {answers:?}");

    // Every accepted job is on the new primary (or lost), and the workers finish the rest.
    let mut lost = Vec::new();
    let mut pending: Vec<String> = Vec::new();
    for id in &accepted {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match state(&app, id).await {
                (404, _) => {
                    lost.push(id.clone());
                    break;
                }
                (200, st) => {
                    if st != "succeeded" {
                        pending.push(id.clone());
                    }
                    break;
                }
                (status, _) => {
                    assert!(Instant::now() < deadline, "GET {id} kept answering {status}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while !pending.is_empty() {
        if Instant::now() >= deadline {
            let mut shown = Vec::new();
            for id in &pending {
                shown.push(format!("{id}: GET answers {}", answer(&app, id).await));
                if shown.len() == 10 {
                    break;
                }
            }
            panic!(
                "{} accepted jobs never finished after the failover:\n{}",
                pending.len(),
                shown.join("\n")
            );
        }
        let mut still = Vec::new();
        for id in pending {
            match state(&app, &id).await {
                (_, st) if st == "succeeded" => {}
                // With `local` a record seen after the promotion may still be gone after
                // a later role change (the sentinels reconfiguring, or a second failover
                // on a loaded machine): lost, which `local` allows.
                (404, _) if durability == DurabilityMode::Local => lost.push(id),
                _ => still.push(id),
            }
        }
        pending = still;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The first job accepted after the promotion that was kept and finished. A reader may
    // see a result before it is as durable as configured (Redis has no isolation from
    // writes still being acknowledged): a job seen succeeded whose end a later role change
    // rolled back runs again and ends again, so its record is read until it has ended.
    let mut workers_back = None;
    for id in after.iter().filter(|id| !lost.contains(id)) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let finished = loop {
            let (status, job) = app.get(id).await;
            if let (200, Some(at)) = (status, job["finished_at"].as_str()) {
                break Some(at.parse::<chrono::DateTime<chrono::Utc>>().unwrap());
            }
            if status == 404 && durability == DurabilityMode::Local {
                break None; // gone, which `local` allows
            }
            assert!(
                Instant::now() < deadline,
                "a job accepted after the promotion ends; GET {id} answers {}",
                answer(&app, id).await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        if let Some(finished) = finished {
            workers_back = Some((finished - promoted_at).to_std().unwrap_or_default());
            break;
        }
    }

    let finished_us = now_us();
    drop(workers);
    // No job ran twice at once: a job's runs never overlap unless the queue refused one
    // of them as late (its lease had passed to another worker; its result was dropped).
    let defaults = JobDefaults {
        partitions: drover::queue::Partitions::new(partitions).unwrap(),
        ..Default::default()
    };
    let store = RedisStore::connect(&url, "drover", defaults).await.unwrap();
    let mut late: HashMap<String, HashSet<u32>> = HashMap::new();
    for id in accepted.iter().filter(|id| !lost.contains(id)) {
        let found = store.get(&id.parse().unwrap()).await.unwrap();
        // With `local` nothing is promised for any job (a record seen once may be gone after
        // a later role change: CI saw it); with `replica` every accepted job stays.
        let Some(job) = found else {
            assert_eq!(durability, DurabilityMode::Local, "{id}: a job the API answered for is gone");
            continue;
        };
        late.insert(id.clone(), late_pids(&job));
    }
    let (overlaps, excused) = overlapping_runs(&read_runs(&run_file), &late, |_| finished_us);
    eprintln!("{excused} overlapping pairs of runs with one run recorded late");
    let _ = server.stop.send(());
    Outcome {
        accepted,
        accepted_after,
        lost,
        workers_back,
        overlaps,
    }
}

fn report(topology: &str, mode: &str, o: &Outcome) {
    eprintln!(
        "{topology}, {mode}: {} accepted ({} after the promotion), {} lost, workers back after {:?}, {} pairs of runs of one job at once",
        o.accepted.len(),
        o.accepted_after,
        o.lost.len(),
        o.workers_back,
        o.overlaps.len()
    );
}

/// `replica`: nothing the API accepted is lost, the workers come back, no job runs twice at once.
fn assert_replica_promises(o: &Outcome) {
    assert!(o.lost.is_empty(), "accepted jobs lost in the failover: {:?}", o.lost);
    assert!(o.accepted_after > 0, "the API accepted jobs on the new primary without a restart");
    assert!(o.workers_back.is_some(), "workers finished jobs accepted on the new primary");
    assert!(o.overlaps.is_empty(), "runs of one job at once:\n{}", o.overlaps.join("\n"));
}

/// `local`: API and workers carry on; what was lost is reported (asynchronous
/// replication), and runs of one job at once are not ruled out (a lease the dead
/// primary took may never reach the new one).
fn assert_local_carries_on(o: &Outcome) {
    assert!(o.accepted_after > 0, "the API accepted jobs on the new primary without a restart");
    assert!(o.lost.len() < o.accepted.len(), "most accepted jobs survive");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_replica_durability_a_sentinel_failover_loses_no_job_the_api_accepted() {
    let o = run(Topology::sentinel(), DurabilityMode::Replica).await;
    report("sentinel", "replica", &o);
    assert_replica_promises(&o);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_local_durability_a_sentinel_failover_keeps_serving_and_reports_what_it_lost() {
    let o = run(Topology::sentinel(), DurabilityMode::Local).await;
    report("sentinel", "local", &o);
    assert_local_carries_on(&o);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_replica_durability_a_cluster_primarys_death_loses_no_job_the_api_accepted() {
    let o = run(Topology::cluster(2), DurabilityMode::Replica).await;
    report("cluster", "replica", &o);
    assert_replica_promises(&o);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_local_durability_a_cluster_primarys_death_keeps_serving_and_reports_what_it_lost() {
    let o = run(Topology::cluster(1), DurabilityMode::Local).await;
    report("cluster", "local", &o);
    assert_local_carries_on(&o);
}

/// With `replica` durability on a healthy cluster the API accepts what it is sent: each
/// enqueue's wait runs where the write went (found by the failover test above: before
/// the fix most enqueues were 503 "not yet durable" with no failure at all).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_replica_durability_a_healthy_cluster_accepts_every_enqueue() {
    let redis = Topology::cluster(1);
    let mut config = test_config(&redis.url());
    config.queue.partitions = redis.partitions();
    config.queue.durability = DurabilityMode::Replica;
    config.queue.durability_timeout_ms = 1000;
    let server = start_app(config).await;
    let app = Api {
        base: format!("http://{}", server.addr),
        http: reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap(),
    };
    for n in 0..30 {
        let res = app
            .post("/v1/jobs")
            .header("Idempotency-Key", format!("k-{n}"))
            .json(&cleanup_body(&account(n)))
            .send()
            .await
            .unwrap();
        let status = res.status();
        let body = res.text().await.unwrap();
        assert_eq!(status, 202, "enqueue {n}: {body}");
    }
    let _ = server.stop.send(());
}
