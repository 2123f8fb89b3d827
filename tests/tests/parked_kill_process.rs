//! SIGKILL of a worker process while jobs are parked on the limiter: nothing is lost,
//! no job runs twice at once, every SKU is deleted exactly once upstream and recorded
//! exactly once in PostgreSQL. Real `drover-worker` processes, the simulator enforcing
//! a deleteListingsItem plan far below what the jobs ask for, Redis and PostgreSQL.
use crate::jobs_support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use drover::job::{AttemptOutcome, JobId, JobKind, JobState};
use drover::queue::{JobStore, WaitReason};
use drover_tests::sim::{AccountSpec, DeleteOutcome, Operation, RateLimit, SimConfig};
use jobs_support::{plans, Stack, MARKETPLACE};
use serde_json::json;

/// deleteListingsItem per second and burst, for simulator and workers alike: each job's
/// four parallel deletes reserve slots further out than `park_after_ms`, so runs park.
const RATE: f64 = 10.0;
const BURST: u32 = 5;
const ACCOUNTS: usize = 2;
const JOBS_PER_ACCOUNT: usize = 4;
const SKUS_PER_JOB: usize = 12;
const PARALLELISM: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_killed_while_jobs_are_parked_loses_nothing_and_runs_nothing_twice_at_once() {
    let started = Instant::now();
    let mut limits = plans();
    limits.insert(Operation::DeleteListingsItem, RateLimit::new(RATE, BURST));
    let sim = SimConfig {
        accounts: 0,
        ..SimConfig::fast()
    };
    let mut stack = Stack::start_with(sim, "", limits).await;
    let mut accounts = Vec::new();
    for i in 0..ACCOUNTS {
        let id = stack
            .account(AccountSpec {
                skus: Some(JOBS_PER_ACCOUNT * SKUS_PER_JOB),
                ..AccountSpec::new(format!("seller-park-{i}"))
            })
            .await;
        accounts.push(id);
    }
    let env = [
        ("DROVER_WORKER__JOBS__PARK_AFTER_MS", "150"),
        ("DROVER_WORKER__JOBS__CLEANUP_PARALLELISM", "4"),
    ];
    let victim = stack.spawn_worker("worker-victim", &env);
    stack.spawn_worker("worker-survivor", &env);
    let victim_pid = stack.workers[victim].pid();

    let mut jobs: BTreeMap<JobId, (String, Vec<String>)> = BTreeMap::new();
    for account in &accounts {
        let skus = stack.sim.admin().skus(account.as_str()).await.unwrap();
        for chunk in skus.chunks(SKUS_PER_JOB) {
            let id = stack
                .submit(
                    JobKind::Cleanup,
                    json!({"account_id": account.as_str(), "marketplace_id": MARKETPLACE, "skus": chunk}),
                )
                .await;
            jobs.insert(id, (account.to_string(), chunk.to_vec()));
        }
    }

    // Kill the victim once jobs are parked on the limiter and it holds a lease.
    let victim_tag = format!("-{victim_pid}-");
    let is_victim = |w: Option<&str>| w.is_some_and(|w| w.contains(&victim_tag));
    let until = Instant::now() + Duration::from_secs(20);
    let (parked, held) = loop {
        let mut parked = 0;
        let mut held = Vec::new();
        for id in jobs.keys() {
            let job = stack.store.get(id).await.unwrap().unwrap();
            if job.state == JobState::Running && is_victim(job.worker.as_deref()) {
                held.push(id.clone());
            }
            if let Some(w) = stack.store.waiting(id).await.unwrap() {
                if w.reason == WaitReason::RateLimit {
                    parked += 1;
                }
            }
        }
        if parked > 0 && !held.is_empty() {
            break (parked, held);
        }
        assert!(Instant::now() < until, "no parked job while the victim runs one\n{}", stack.logs());
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    stack.workers[victim].kill();
    println!("SIGKILLed the victim with {parked} jobs parked and {} leased to it", held.len());

    // Nothing lost: every job ends, and succeeds.
    let mut finished = HashMap::new();
    for id in jobs.keys() {
        let job = stack.finish(id, Duration::from_secs(45)).await;
        assert_eq!(job.state, JobState::Succeeded, "{job:#?}\n{}", stack.logs());
        finished.insert(id.clone(), job);
    }

    // Nothing run twice at once: a job's runs (but a late one, whose result was not
    // applied) never overlap in time.
    let mut lost = 0;
    let mut snoozed = 0;
    for (id, job) in &finished {
        let mut runs: Vec<_> = job.attempt_history.iter().filter(|a| !a.late).collect();
        runs.sort_by_key(|a| a.started_at);
        for pair in runs.windows(2) {
            assert!(
                pair[0].ended_at <= pair[1].started_at,
                "job {id}: runs overlap: {:#?}",
                job.attempt_history
            );
        }
        lost += runs.iter().filter(|a| a.outcome == AttemptOutcome::Lost).count();
        snoozed += runs.iter().filter(|a| a.outcome == AttemptOutcome::Snoozed).count();
    }
    assert!(snoozed >= 1, "runs parked");
    // What the victim held was taken back from it and finished by the survivor (a run
    // it had started is recorded `lost`; a lease it had not started yet costs nothing).
    for id in &held {
        let job = &finished[id];
        assert!(!is_victim(job.worker.as_deref()), "job {id} was finished by {:?}", job.worker);
    }

    // Every SKU deleted upstream exactly once; every 404 afterwards is the rerun of a
    // delete the victim had in flight when it died.
    let stats = stack.sim.admin().stats().await.unwrap();
    let mut absent_upstream = 0;
    for account in &accounts {
        let records = &stats.accounts[account.as_str()].deletes;
        let mut deleted: HashMap<&str, usize> = HashMap::new();
        for r in records.iter().filter(|r| r.outcome == DeleteOutcome::Deleted) {
            *deleted.entry(r.sku.as_str()).or_default() += 1;
        }
        for (sku_account, skus) in jobs.values() {
            if sku_account != account.as_str() {
                continue;
            }
            for sku in skus {
                assert_eq!(deleted.get(sku.as_str()), Some(&1), "{account}/{sku} deleted exactly once");
            }
        }
        absent_upstream += records.iter().filter(|r| r.outcome == DeleteOutcome::NotFound).count();
        assert_eq!(
            records.iter().filter(|r| r.outcome == DeleteOutcome::Throttled).count(),
            0,
            "the workers kept to the plan"
        );
    }

    // One item row per SKU, each with its outcome: `deleted`, or — for a delete the
    // victim made but could not record before it died (at most its calls in flight),
    // which its rerun found gone — `deleted` by that earlier run when the victim had
    // noted the call before sending it, `absent` otherwise.
    let mut absent_rows = 0;
    for (id, (_, skus)) in &jobs {
        let rows: Vec<(String, String, bool)> =
            sqlx::query_as("SELECT item, outcome, detail ? 'deleted_by_run' FROM job_items WHERE job_id = $1")
                .bind(id.as_str())
                .fetch_all(stack.db.pool())
                .await
                .unwrap();
        let items: HashSet<&str> = rows.iter().map(|(i, _, _)| i.as_str()).collect();
        assert_eq!(rows.len(), skus.len(), "job {id}: one row per SKU");
        assert_eq!(items, skus.iter().map(String::as_str).collect(), "job {id}");
        for (item, outcome, by_earlier_run) in &rows {
            match outcome.as_str() {
                "deleted" if *by_earlier_run => absent_rows += 1,
                "deleted" => {}
                "absent" => absent_rows += 1,
                other => panic!("job {id}: {item} ended {other}"),
            }
        }
    }
    assert_eq!(absent_rows, absent_upstream, "each 404 is recorded once, on its SKU");
    assert!(
        absent_rows <= held.len() * PARALLELISM,
        "{absent_rows} SKUs re-found absent; the victim had at most {} deletes in flight",
        held.len() * PARALLELISM
    );
    println!(
        "{} jobs, {} SKUs: all succeeded; {} held by the victim, {lost} run(s) recorded lost, {snoozed} parks, {absent_rows} SKU(s) deleted by the killed run and found absent by its rerun; {:.1} s",
        jobs.len(),
        ACCOUNTS * JOBS_PER_ACCOUNT * SKUS_PER_JOB,
        held.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(started.elapsed() < Duration::from_secs(60), "bounded in time");
}
