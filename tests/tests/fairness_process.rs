//! Per-account caps and turns across real worker processes (the tests' `test_worker`,
//! with caps on) against a private redis-server: the cap holds across every process,
//! and a flood of one account never keeps the others waiting.
use std::collections::HashMap;
use std::time::{Duration, Instant};

use drover::job::{JobId, JobKind, JobPayload, JobState};
use drover::queue::{JobDefaults, JobStore, NewJob, RedisStore};
use drover_tests::harness::{cargo_bin, ChildProcess, Durability, RedisServer};
use serde_json::json;

const CAP: usize = 2;

fn job(account: &str) -> NewJob {
    let payload = JobPayload::from_json(
        JobKind::Cleanup,
        json!({"account_id": account, "marketplace_id": "ATVPDKIKX0DER", "skus": ["SKU-1"]}),
    )
    .unwrap();
    NewJob::new(payload)
}

fn worker(server: &RedisServer, name: &str) -> ChildProcess {
    let env = vec![
        ("DROVER_WORKER__REDIS_URL", server.url()),
        ("DROVER_WORKER__CONCURRENCY__SYNC", "0".to_owned()),
        ("DROVER_WORKER__CONCURRENCY__BACKFILL", "0".to_owned()),
        ("DROVER_WORKER__CONCURRENCY__CLEANUP", "20".to_owned()),
        ("DROVER_WORKER__JOBS__CLEANUP__PER_ACCOUNT", CAP.to_string()),
        ("DROVER_WORKER__METRICS_LISTEN", String::new()),
        ("DROVER_TEST_FAIR", "1".to_owned()),
        ("DROVER_TEST_LOG_RUNS", "1".to_owned()),
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

/// Every logged run as (job, start µs, end µs).
fn runs(server: &RedisServer) -> Vec<(String, u128, u128)> {
    let lines: Vec<String> = redis::cmd("LRANGE")
        .arg("test:runs")
        .arg(0)
        .arg(-1)
        .query(&mut server.conn())
        .unwrap();
    let mut open: HashMap<String, u128> = HashMap::new();
    let mut out = Vec::new();
    for line in lines {
        let parts: Vec<&str> = line.split(' ').collect();
        let (what, id, at) = (parts[0], parts[1].to_owned(), parts[3].parse::<u128>().unwrap());
        if what == "S" {
            open.insert(id, at);
        } else if let Some(start) = open.remove(&id) {
            out.push((id, start, at));
        }
    }
    out
}

/// Most runs of one account that overlapped at any moment.
fn most_at_once(spans: &mut [(u128, u128)]) -> usize {
    let mut edges: Vec<(u128, i32)> = spans.iter().flat_map(|(s, e)| [(*s, 1), (*e, -1)]).collect();
    // An end at the same instant as a start frees the slot first.
    edges.sort_by_key(|(t, d)| (*t, *d));
    let (mut now, mut most) = (0i32, 0i32);
    for (_, d) in edges {
        now += d;
        most = most.max(now);
    }
    most as usize
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_workers_hold_every_accounts_cap_and_start_every_accounts_first_job_within_two_seconds() {
    let server = RedisServer::start(Durability::None);
    let store = RedisStore::connect(&server.url(), "drover", JobDefaults::default()).await.unwrap();
    let _workers: Vec<ChildProcess> = (0..4).map(|i| worker(&server, &format!("worker-{i}"))).collect();

    // One account floods first; then 50 accounts submit a few jobs each.
    let mut account_of: HashMap<String, String> = HashMap::new();
    let flood = "t.sleep.200_flood";
    for r in store.enqueue_bulk((0..100).map(|_| job(flood)).collect()).await.unwrap() {
        account_of.insert(r.unwrap().id.to_string(), flood.to_owned());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut firsts: Vec<(JobId, Instant)> = Vec::new();
    for n in 0..50 {
        let account = format!("t.sleep.200_{n}");
        let jobs = (0..4).map(|_| job(&account)).collect();
        let submitted = Instant::now();
        let ids: Vec<JobId> = store.enqueue_bulk(jobs).await.unwrap().into_iter().map(|r| r.unwrap().id).collect();
        firsts.push((ids[0].clone(), submitted));
        for id in ids {
            account_of.insert(id.to_string(), account.clone());
        }
    }

    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let c = store.counts(JobKind::Cleanup).await.unwrap();
        if c.succeeded == account_of.len() as u64 {
            break;
        }
        assert!(Instant::now() < deadline, "not all jobs ended: {c:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let mut slowest = chrono::Duration::zero();
    for (id, _) in &firsts {
        let job = store.get(id).await.unwrap().unwrap();
        assert_eq!(job.state, JobState::Succeeded);
        let waited = job.started_at.unwrap() - job.created_at;
        slowest = slowest.max(waited);
    }
    println!("slowest first-job start of 50 accounts behind a 100-job flood: {slowest}");
    assert!(slowest <= chrono::Duration::seconds(2), "an account's first job waited {slowest}");

    let mut spans: HashMap<String, Vec<(u128, u128)>> = HashMap::new();
    for (id, start, end) in runs(&server) {
        spans.entry(account_of[&id].clone()).or_default().push((start, end));
    }
    assert_eq!(spans.values().map(Vec::len).sum::<usize>(), account_of.len(), "each job ran once");
    for (account, s) in &mut spans {
        let most = most_at_once(s);
        assert!(most <= CAP, "{account} had {most} runs at once (cap {CAP})");
    }
    assert_eq!(most_at_once(spans.get_mut(flood).unwrap()), CAP, "the flood used its whole cap");
}
