//! Chaos: three real worker processes and the HTTP API over a private redis-server with
//! an AOF, while workers are SIGKILLed and replaced, one is SIGSTOPped past its lease and
//! resumed, and Redis itself is SIGKILLed and restarted from its AOF on the same port.
//! Afterwards the queue's promises are checked against the workers' own run log.
use crate::api_support;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use drover::job::{AttemptOutcome, Job, JobId, JobState};
use drover::queue::{JobDefaults, JobStore, RedisStore};
use drover_tests::harness::{ChildProcess, Durability, RedisServer};
use drover_tests::runs::{late_pids, overlapping_runs, pid_of, read_runs};
use nix::sys::signal::Signal;
use serde_json::json;

const JOBS: usize = 300;
const LEASE_MS: u64 = 1500;
const MAX_ATTEMPTS: u32 = 20;

fn now_us() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros()
}

fn worker(redis_url: &str, run_file: &Path, n: usize) -> ChildProcess {
    let env = [
        ("DROVER_WORKER__REDIS_URL", redis_url.to_owned()),
        ("DROVER_WORKER__CONCURRENCY__SYNC", "0".to_owned()),
        ("DROVER_WORKER__CONCURRENCY__BACKFILL", "0".to_owned()),
        // Ample room: recovery measures the reclaim, not a queue behind a saturated pool.
        ("DROVER_WORKER__CONCURRENCY__CLEANUP", "25".to_owned()),
        ("DROVER_WORKER__LEASE_MS", LEASE_MS.to_string()),
        ("DROVER_WORKER__HEARTBEAT_MS", "250".to_owned()),
        ("DROVER_WORKER__GRACE_MS", "2000".to_owned()),
        ("DROVER_WORKER__METRICS_LISTEN", String::new()),
        ("DROVER_TEST_RUN_FILE", run_file.display().to_string()),
        ("RUST_LOG", "info".to_owned()),
    ];
    ChildProcess::test_worker(&format!("worker-{n}"), &env)
}

/// What the chaos thread did, with wall-clock times (µs) to set against the run log.
#[derive(Default)]
struct Chaos {
    /// (pid, when it was SIGKILLed)
    kills: Vec<(u32, u128)>,
    /// (pid, SIGSTOP, SIGCONT)
    stopped: Option<(u32, u128, u128)>,
    /// (Redis SIGKILLed, Redis answering again)
    redis_down: Option<(u128, u128)>,
}

/// Runs the schedule (seconds from its start): kills at 3, 6, 9; worker 2 stopped from
/// 10 to 10 + 2 leases; Redis down from 17 for 2 leases; kills at 24, 27, 30. Kills stay
/// clear of the stop and the outage so each one's recovery is measured on its own, and a
/// `lost` attempt can be attributed to one cause.
fn run_chaos(redis: &mut RedisServer, run_file: &Path) -> (Chaos, Vec<ChildProcess>) {
    let url = redis.url();
    let mut workers: Vec<ChildProcess> = (0..3).map(|n| worker(&url, run_file, n)).collect();
    let mut spawned = 3;
    let start = Instant::now();
    let at = |secs: f64| {
        let due = start + Duration::from_secs_f64(secs);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
    };
    let mut chaos = Chaos::default();
    let mut kill = |slot: usize, workers: &mut Vec<ChildProcess>, chaos: &mut Chaos| {
        let pid = workers[slot].pid();
        workers[slot].kill();
        chaos.kills.push((pid, now_us()));
        workers[slot] = worker(&url, run_file, spawned);
        spawned += 1;
    };
    for (secs, slot) in [(3.0, 0), (6.0, 1), (9.0, 0)] {
        at(secs);
        kill(slot, &mut workers, &mut chaos);
    }
    at(10.0);
    let stopped_at = now_us();
    workers[2].signal(Signal::SIGSTOP);
    std::thread::sleep(Duration::from_millis(2 * LEASE_MS));
    workers[2].signal(Signal::SIGCONT);
    chaos.stopped = Some((workers[2].pid(), stopped_at, now_us()));
    at(17.0);
    let down_at = now_us();
    redis.kill();
    std::thread::sleep(Duration::from_millis(2 * LEASE_MS));
    redis.restart();
    chaos.redis_down = Some((down_at, now_us()));
    for (secs, slot) in [(24.0, 1), (27.0, 0), (30.0, 1)] {
        at(secs);
        kill(slot, &mut workers, &mut chaos);
    }
    (chaos, workers)
}

/// Submits every job through the API at a steady pace, each with its own
/// Idempotency-Key, retrying a refused or failed request with the same key; the ids of
/// the jobs the API accepted.
async fn produce(base: String) -> Vec<JobId> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().unwrap();
    let mut ids = Vec::with_capacity(JOBS);
    for i in 0..JOBS {
        // Every fifth job runs for two leases, so renewals matter; all succeed first time.
        let behaviour = if i % 5 == 0 { "sleep.3000" } else { "sleep.1500" };
        let body = json!({"kind": "cleanup", "max_attempts": MAX_ATTEMPTS, "payload":
            {"account_id": format!("t.{behaviour}"), "marketplace_id": api_support::MARKETPLACE, "skus": ["SKU-1"]}});
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let res = client
                .post(format!("{base}/v1/jobs"))
                .bearer_auth(api_support::ADMIN)
                .header("Idempotency-Key", format!("chaos-{i}"))
                .json(&body)
                .send()
                .await;
            if let Ok(res) = res {
                if res.status() == 202 || res.status() == 200 {
                    let v: serde_json::Value = res.json().await.unwrap();
                    ids.push(v["id"].as_str().unwrap().parse().unwrap());
                    break;
                }
            }
            assert!(Instant::now() < deadline, "job {i} was never accepted");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_millis(90)).await;
    }
    ids
}

fn us(t: chrono::DateTime<chrono::Utc>) -> u128 {
    t.timestamp_micros().max(0) as u128
}

async fn wait_all_terminal(store: &RedisStore, ids: &[JobId], timeout: Duration) -> Vec<Job> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut jobs = Vec::with_capacity(ids.len());
        for id in ids {
            match store.get(id).await {
                Ok(Some(j)) if j.state.is_terminal() => jobs.push(j),
                _ => break,
            }
        }
        if jobs.len() == ids.len() {
            return jobs;
        }
        if Instant::now() > deadline {
            let mut stuck = Vec::new();
            for id in ids {
                let j = store.get(id).await.unwrap();
                if !j.as_ref().is_some_and(|j| j.state.is_terminal()) {
                    stuck.push(format!("{id}: {:?}", j.map(|j| (j.state, j.attempt_history))));
                }
            }
            panic!("{} accepted jobs never finished (or were lost):\n{}", stuck.len(), stuck.join("\n"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_worker_kills_a_stopped_worker_and_a_redis_crash_no_job_is_lost_run_twice_or_charged_for_the_outage() {
    let mut redis = RedisServer::start(Durability::AofEverySec);
    let dir = tempfile::tempdir().unwrap();
    let run_file = dir.path().join("runs.log");
    let mut config = api_support::test_config(&redis.url());
    config.jobs.max_attempts = MAX_ATTEMPTS;
    let (addr, stop_api, api, _) = api_support::start_with_database(config).await;
    let store = RedisStore::connect(&redis.url(), "drover", JobDefaults::default()).await.unwrap();

    let producer = tokio::spawn(produce(format!("http://{addr}")));
    let chaos_file = run_file.clone();
    let (redis_back, chaos, workers) = tokio::task::spawn_blocking(move || {
        let (chaos, workers) = run_chaos(&mut redis, &chaos_file);
        (redis, chaos, workers)
    })
    .await
    .unwrap();
    let _redis = redis_back;
    let ids = producer.await.unwrap();
    assert_eq!(ids.len(), JOBS);
    let jobs = wait_all_terminal(&store, &ids, Duration::from_secs(40)).await;
    let finished = now_us();
    drop(workers);
    let _ = stop_api.send(());
    let _ = api.await;

    // Nothing lost: every accepted job exists and succeeded (each succeeds on its first run).
    let not_ok: Vec<_> = jobs
        .iter()
        .filter(|j| j.state != JobState::Succeeded)
        .map(|j| (j.id.to_string(), j.state, &j.attempt_history))
        .collect();
    assert!(not_ok.is_empty(), "jobs that did not succeed: {not_ok:#?}");

    let runs = read_runs(&run_file);
    let killed: HashMap<u32, u128> = chaos.kills.iter().copied().collect();
    let (stopped_pid, stop_at, cont_at) = chaos.stopped.unwrap();
    let (down_at, back_at) = chaos.redis_down.unwrap();
    let by_id: HashMap<String, &Job> = jobs.iter().map(|j| (j.id.to_string(), j)).collect();

    // No two overlapping runs of one job, unless the queue recorded one of them `late`
    // (its result was refused). A run that logged no end lasted until its worker's kill.
    let late: HashMap<String, HashSet<u32>> = jobs.iter().map(|j| (j.id.to_string(), late_pids(j))).collect();
    let (overlaps, excused_overlaps) = overlapping_runs(&runs, &late, |pid| killed.get(&pid).copied().unwrap_or(finished));
    let late_runs = jobs.iter().flat_map(|j| &j.attempt_history).filter(|a| a.late).count();
    eprintln!("{excused_overlaps} overlapping pairs of runs, each with one run recorded late; {late_runs} late runs in all");
    assert!(
        overlaps.is_empty(),
        "runs of one job at once, neither recorded late (start µs, end µs, pid):\n{}",
        overlaps.join("\n")
    );

    // No attempt used by the Redis restart: a `lost` attempt is excused only for a
    // worker that was SIGKILLed, or for the stopped one while it was stopped (and the
    // grace after). Anything else was charged to a live worker.
    let excuse_until = cont_at + u128::from(LEASE_MS) * 2000;
    let (mut charged, mut lost_to_stop) = (Vec::new(), 0);
    for j in &jobs {
        for a in j.attempt_history.iter().filter(|a| a.outcome == AttemptOutcome::Lost) {
            let pid = pid_of(&a.worker);
            let excused = pid.is_some_and(|p| {
                killed.contains_key(&p) || (p == stopped_pid && us(a.ended_at) >= stop_at && us(a.ended_at) <= excuse_until)
            });
            if !excused {
                charged.push(format!("{}: {a:?}", j.id));
            } else if pid == Some(stopped_pid) {
                lost_to_stop += 1;
            }
        }
    }
    eprintln!(
        "stopped worker: {lost_to_stop} runs reclaimed while it was stopped; redis down {} ms; {} lost attempts charged to live workers",
        (back_at - down_at) / 1000,
        charged.len()
    );
    assert!(
        charged.is_empty(),
        "attempts used though their worker was alive:\n{}",
        charged.join("\n")
    );

    // Recovery: from each kill to the last of the killed worker's cut-off jobs running again.
    let mut recoveries = Vec::new();
    for (pid, at) in &chaos.kills {
        let cut_off: Vec<&String> = runs
            .iter()
            .filter(|(_, rs)| rs.iter().any(|(p, _, end)| p == pid && end.is_none()))
            .map(|(id, _)| id)
            .collect();
        let (mut slowest, mut slowest_id) = (0u128, None);
        for id in &cut_off {
            let again = runs[*id]
                .iter()
                .filter(|(p, s, _)| p != pid && s > at)
                .map(|(_, s, _)| s - at)
                .min()
                .unwrap_or_else(|| panic!("job {id} cut off by the kill of {pid} never ran again"));
            if again > slowest {
                (slowest, slowest_id) = (again, Some(*id));
            }
        }
        // Where the time went for the slowest: the reclaim (the `lost` record) or after it.
        let reclaimed_after = slowest_id.and_then(|id| {
            by_id[id]
                .attempt_history
                .iter()
                .find(|a| pid_of(&a.worker) == Some(*pid))
                .map(|a| (us(a.ended_at).saturating_sub(*at) / 1000, a.outcome))
        });
        let line = format!(
            "kill of {pid}: {} jobs cut off, all running again after {} ms (last: {slowest_id:?}, its reclaim after {reclaimed_after:?} ms)",
            cut_off.len(),
            slowest / 1000
        );
        eprintln!("{line}");
        recoveries.push((slowest, line));
    }
    let worst = recoveries.iter().map(|(us, _)| *us).max().unwrap_or(0);
    let distinct: HashSet<&u32> = chaos.kills.iter().map(|(p, _)| p).collect();
    assert_eq!(distinct.len(), 6, "six different workers were killed");
    let slow: Vec<&String> = recoveries.iter().filter(|(us, _)| *us > 5_000_000).map(|(_, l)| l).collect();
    assert!(worst <= 5_000_000, "max recovery {} ms > 5 s: {slow:#?}", worst / 1000);
}
