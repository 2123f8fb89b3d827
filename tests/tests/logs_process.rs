//! What a real worker process logs (docs/operations.md, "Logs"): at most
//! `INFO_LINES_PER_JOB` info lines per successful job, and every line logged inside a
//! run carrying the job's id, attempt, account, trace id and span id.
use crate::jobs_support;

use std::time::Duration;

use drover::job::{JobId, JobKind, JobState};
use drover_tests::sim::{AccountSpec, FaultSpec};
use jobs_support::{Stack, MARKETPLACE};
use serde_json::{json, Value};

/// The budget stated in docs/operations.md.
const INFO_LINES_PER_JOB: usize = 2;
const JOBS: usize = 30;
const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

/// The worker's JSON lines from "worker started" on (start-up lines are not per job).
fn lines_after_start(log: &str) -> Vec<Value> {
    let mut started = false;
    let mut out = Vec::new();
    for line in log.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else { continue };
        if started {
            out.push(v);
        } else if v["message"] == "worker started" {
            started = true;
        }
    }
    assert!(started, "no 'worker started' line:\n{log}");
    out
}

/// The `job` span's fields, when the line was logged inside a run.
fn job_span(line: &Value) -> Option<&Value> {
    line["spans"].as_array()?.iter().find(|s| s["name"] == "job")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_successful_job_costs_at_most_two_info_lines_and_every_line_of_a_run_names_its_job_and_trace() {
    let mut stack = Stack::start_empty().await;
    let api = stack.start_api().await;
    stack.spawn_worker("worker-1", &[]);
    let acct = stack
        .account(AccountSpec {
            skus: Some(20),
            ..AccountSpec::new("seller-logs")
        })
        .await;
    let skus = stack.sim.admin().skus(acct.as_str()).await.unwrap();
    let payload = |i: usize| json!({"account_id": acct.as_str(), "marketplace_id": MARKETPLACE, "skus": [skus[i % skus.len()]]});

    // One through the API with the client's trace; the rest as the scheduler makes them
    // (no traceparent: each run gets a trace id of its own).
    let res = reqwest::Client::new()
        .post(format!("{api}/v1/jobs"))
        .bearer_auth(drover_api::DEV_KEY)
        .header("traceparent", TRACEPARENT)
        .json(&json!({"kind": "cleanup", "payload": payload(0)}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let traced: JobId = res.json::<Value>().await.unwrap()["id"].as_str().unwrap().parse().unwrap();
    let mut ids = vec![traced.clone()];
    for i in 1..JOBS {
        ids.push(stack.submit(JobKind::Cleanup, payload(i)).await);
    }
    for id in &ids {
        let job = stack.finish(id, Duration::from_secs(60)).await;
        assert_eq!(job.state, JobState::Succeeded, "{job:#?}\n{}", stack.logs());
    }
    // Let the settles of the last runs land in the log.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let lines = lines_after_start(&stack.logs());
    let info: Vec<&Value> = lines.iter().filter(|l| l["level"] == "INFO").collect();
    println!(
        "{} info lines for {JOBS} successful jobs ({:.2} per job)",
        info.len(),
        info.len() as f64 / JOBS as f64
    );
    assert!(
        info.len() <= INFO_LINES_PER_JOB * JOBS,
        "{} info lines for {JOBS} jobs, over the budget of {INFO_LINES_PER_JOB} per job:\n{}",
        info.len(),
        info.iter().map(|l| l.to_string()).collect::<Vec<_>>().join("\n")
    );

    for l in &info {
        println!("  {l}");
    }

    // Successful runs log nothing: make runs fail (5xx), so lines are logged inside them.
    stack
        .faults(
            &acct,
            FaultSpec {
                error_rate_5xx: 1.0,
                ..FaultSpec::default()
            },
        )
        .await;
    stack.submit(JobKind::Cleanup, payload(1)).await;
    let until = std::time::Instant::now() + Duration::from_secs(30);
    let lines = loop {
        let lines = lines_after_start(&stack.logs());
        if lines.iter().filter(|l| job_span(l).is_some()).count() >= 2 {
            break lines;
        }
        assert!(
            std::time::Instant::now() < until,
            "no line logged inside a failing run:\n{}",
            stack.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut in_runs = 0;
    for line in &lines {
        let Some(span) = job_span(line) else { continue };
        in_runs += 1;
        for field in ["job_id", "attempt", "account", "trace_id", "span_id"] {
            let v = &span[field];
            assert!(!v.is_null() && *v != "", "{field} missing from a line logged in a run: {line}");
        }
        assert_eq!(span["account"], acct.as_str(), "{line}");
        if span["job_id"] == traced.as_str() {
            assert_eq!(span["trace_id"], "0af7651916cd43dd8448eb211c80319c", "the client's trace: {line}");
        }
    }
    println!(
        "{in_runs} lines logged inside runs, each with job, attempt, account, trace and span ids, e.g.\n{}",
        lines.iter().find(|l| job_span(l).is_some()).unwrap()
    );
}

/// Jobs of the lease-renewal test: short runs, so that many settle while a renewal that
/// names them is on its way.
const RENEWED_JOBS: usize = 6000;

/// A run that ends and settles while the keeper's renewal naming it is on its way gave
/// its lease back itself: the renewal finds it gone, and that is no lost lease. A worker
/// that renews every 50 ms while it settles thousands of runs a second must log none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_that_settle_while_their_renewal_is_on_its_way_log_no_lost_lease() {
    use drover::job::JobPayload;
    use drover::queue::{JobDefaults, JobStore, NewJob, RedisStore};
    use drover_tests::harness::{ChildProcess, Durability, RedisServer};

    let redis = RedisServer::start(Durability::None);
    let store = RedisStore::connect(&redis.url(), "drover", JobDefaults::default()).await.unwrap();
    let worker = ChildProcess::test_worker(
        "renewing-worker",
        &[
            ("DROVER_WORKER__REDIS_URL", redis.url()),
            ("DROVER_WORKER__CONCURRENCY__SYNC", "0".to_owned()),
            ("DROVER_WORKER__CONCURRENCY__BACKFILL", "0".to_owned()),
            ("DROVER_WORKER__CONCURRENCY__CLEANUP", "50".to_owned()),
            ("DROVER_WORKER__LEASE_MS", "3000".to_owned()),
            ("DROVER_WORKER__HEARTBEAT_MS", "50".to_owned()),
            ("DROVER_WORKER__METRICS_LISTEN", String::new()),
            ("RUST_LOG", "info".to_owned()),
        ],
    );
    let jobs: Vec<NewJob> = (0..RENEWED_JOBS)
        .map(|i| {
            let payload = JobPayload::from_json(
                JobKind::Cleanup,
                json!({"account_id": format!("t.sleep.2_{}", i % 20), "marketplace_id": MARKETPLACE, "skus": ["SKU-1"]}),
            )
            .unwrap();
            NewJob::new(payload)
        })
        .collect();
    for chunk in jobs.chunks(1000) {
        for r in store.enqueue_bulk(chunk.to_vec()).await.unwrap() {
            r.unwrap();
        }
    }
    let until = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let counts = store.counts(JobKind::Cleanup).await.unwrap();
        if counts.succeeded == RENEWED_JOBS as u64 {
            break;
        }
        assert!(std::time::Instant::now() < until, "{counts:?} after 120 s:\n{}", worker.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = worker.log();
    let lost: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("lease lost") || l.contains("could not be renewed"))
        .collect();
    println!("{RENEWED_JOBS} runs of 2 ms renewed every 50 ms: {} lost-lease lines", lost.len());
    assert!(
        lost.is_empty(),
        "every run kept its lease, yet the worker logged:\n{}",
        lost.join("\n")
    );
}

/// Found by an audit of error texts: the API's failure lines named the request but not
/// the key that sent it, so one tenant's failing requests could not be told from
/// another's without the client's request id. The request span now carries the key's
/// name (never the key) once the guard knows it. Here a job's items cannot be read (the
/// table no longer matches: a 500, logged as "request failed").
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_api_failure_line_names_the_key_that_sent_the_request() {
    let stack = Stack::start_empty().await;
    let (api, base) = stack.spawn_api_process(&[]);
    let client = reqwest::Client::new();
    let id = submit_acme_cleanup(&client, &base).await;
    let id = id.as_str();
    sqlx::query("ALTER TABLE job_items RENAME COLUMN detail TO detail_gone")
        .execute(stack.db.pool())
        .await
        .unwrap();
    let res = client
        .get(format!("{base}/v1/jobs/{id}/items"))
        .bearer_auth("drover-dev-key")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 500);
    assert!(api.wait_for_log("request failed", Duration::from_secs(10)), "{}", api.log());
    let log = api.log();
    let failed: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["message"] == "request failed")
        .collect();
    assert_eq!(failed.len(), 1, "{log}");
    let request = failed[0]["spans"]
        .as_array()
        .and_then(|spans| spans.iter().find(|s| s["name"] == "request"))
        .unwrap_or_else(|| panic!("no request span: {}", failed[0]));
    assert_eq!(request["key"], "dev", "{}", failed[0]);
    assert!(!log.contains("drover-dev-key"), "the key itself is never logged");
}

/// Found by the sixth audits of 2026-12-06: an account's guards that could not be read
/// (their keys on a shard that is down, or not what the API expects) were logged at
/// WARN at every read — every `GET` of a waiting job, every submit, and each event
/// stream's poll every second. It is one outage, logged once. Here the account's breaker
/// entry is made unreadable (a string where a hash belongs) and the job read five times.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn guards_the_api_cannot_read_are_logged_once_not_once_a_read() {
    let stack = Stack::start_empty().await;
    let (api, base) = stack.spawn_api_process(&[]);
    stack.unreadable_breaker("acme", "deleteListingsItem").await;
    let client = reqwest::Client::new();
    let id = submit_acme_cleanup(&client, &base).await;
    let id = id.as_str();
    for _ in 0..5 {
        let res = client
            .get(format!("{base}/v1/jobs/{id}"))
            .bearer_auth("drover-dev-key")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "the job is read whatever its guards");
    }
    // (the API writes its lines in batches, a few ms after the answers)
    tokio::time::sleep(Duration::from_millis(500)).await;
    let log = api.log();
    let warned: Vec<&str> = log.lines().filter(|l| l.contains("\"WARN\"") && l.contains("guards")).collect();
    assert!(!warned.is_empty(), "the unreadable guards are logged:\n{log}");
    assert_eq!(
        warned.len(),
        1,
        "{} WARN lines for one outage:\n{}",
        warned.len(),
        warned.join("\n")
    );
}

/// A cleanup of account `acme` submitted to the API at `base` with the dev key: its id.
async fn submit_acme_cleanup(client: &reqwest::Client, base: &str) -> String {
    let submitted: Value = client
        .post(format!("{base}/v1/jobs"))
        .bearer_auth("drover-dev-key")
        .json(&json!({"kind": "cleanup", "payload": {"account_id": "acme", "marketplace_id": MARKETPLACE, "skus": ["SKU-1"]}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    submitted["id"]
        .as_str()
        .unwrap_or_else(|| panic!("not submitted: {submitted}"))
        .to_owned()
}

/// A test worker (Redis only) and the job it ran for account `t.<behaviour>`, with one
/// attempt, once it is dead.
struct DeadJob {
    worker: drover_tests::harness::ChildProcess,
    store: drover::queue::RedisStore,
    id: JobId,
    _redis: drover_tests::harness::RedisServer,
}

async fn run_until_dead(name: &str, behaviour: &str) -> DeadJob {
    use drover::job::JobPayload;
    use drover::queue::{JobDefaults, JobStore, NewJob, RedisStore};
    use drover_tests::harness::{ChildProcess, Durability, RedisServer};

    let redis = RedisServer::start(Durability::None);
    let store = RedisStore::connect(&redis.url(), "drover", JobDefaults::default()).await.unwrap();
    let worker = ChildProcess::test_worker(
        name,
        &[
            ("DROVER_WORKER__REDIS_URL", redis.url()),
            ("DROVER_WORKER__METRICS_LISTEN", String::new()),
            ("RUST_LOG", "info".to_owned()),
        ],
    );
    let payload = JobPayload::from_json(
        JobKind::Cleanup,
        json!({"account_id": format!("t.{behaviour}"), "marketplace_id": MARKETPLACE, "skus": ["SKU-1"]}),
    )
    .unwrap();
    let id = store.enqueue(NewJob::new(payload).max_attempts(1)).await.unwrap().id;
    let until = std::time::Instant::now() + Duration::from_secs(30);
    while store.get(&id).await.unwrap().map(|j| j.state) != Some(JobState::Dead) {
        assert!(std::time::Instant::now() < until, "not dead after 30 s:\n{}", worker.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    DeadJob {
        worker,
        store,
        id,
        _redis: redis,
    }
}

/// The one line of `log` that mentions `text`: JSON, at ERROR, inside the run of `id`'s
/// span, and naming where the test worker's code panicked.
fn one_panic_line(log: &str, text: &str, id: &JobId) -> Value {
    let told: Vec<&str> = log.lines().filter(|l| l.contains(text)).collect();
    assert_eq!(told.len(), 1, "the panic is logged once:\n{}", told.join("\n"));
    let line: Value = serde_json::from_str(told[0]).unwrap_or_else(|e| panic!("not a JSON line ({e}): {}", told[0]));
    assert_eq!(line["level"], "ERROR", "{line}");
    let span = job_span(&line).unwrap_or_else(|| panic!("not inside the run's span: {line}"));
    assert_eq!(span["job_id"], id.as_str(), "{line}");
    assert!(
        line.to_string().contains("test_worker.rs:"),
        "it names where the code panicked: {line}"
    );
    line
}

/// "Every failure is logged once": a job whose handler panics is one line in the
/// worker's log, JSON like every other, inside the run's span and naming where the code
/// panicked; not that line and the runtime's own text on stderr besides.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_run_is_one_json_line_naming_its_job_and_where_it_panicked() {
    let dead = run_until_dead("panicking-worker", "panic").await;
    one_panic_line(&dead.worker.log(), "simulated panic in handler", &dead.id);
}

/// Found by the logging audit of 2026-12-05: a panic in a task a run spawned (the worker
/// parses and gunzips report documents on blocking tasks) was logged by the panic hook
/// on the task's thread, outside the run's span, and again by the run as its failure,
/// whose error (which tenants read) quoted the panic. It is the run's own panic now: one
/// line, inside the run's span, naming where the task panicked, and the attempt says it
/// in our words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_a_task_a_run_spawned_is_one_line_the_runs() {
    use drover::job::ErrorClass;
    use drover::queue::JobStore;

    let dead = run_until_dead("task-panicking-worker", "taskpanic").await;
    let line = one_panic_line(&dead.worker.log(), "simulated panic in a task the run spawned", &dead.id);
    assert_eq!(line["message"], "run panicked", "{line}");
    let job = dead.store.get(&dead.id).await.unwrap().expect("the job");
    let error = job
        .attempt_history
        .last()
        .and_then(|a| a.error.clone())
        .unwrap_or_else(|| panic!("no attempt error: {job:#?}"));
    assert_eq!(error.class, ErrorClass::Panic, "{error:?}");
    assert!(
        !error.message.contains("simulated panic"),
        "the panic's text stays in the log, out of the job: {error:?}"
    );
}

/// WARN lines of a worker's `log`, from "worker started" on, whose message contains `text`.
fn warns_with(log: &str, text: &str) -> Vec<String> {
    lines_after_start(log)
        .into_iter()
        .filter(|v| v["level"] == "WARN" && v["message"].as_str().is_some_and(|m| m.contains(text)))
        .map(|v| v.to_string())
        .collect()
}

/// Found by the logging audit of 2026-12-05: with the database unreachable every run of
/// every job (each runs again every 2 s without using an attempt) logged a WARN
/// "database call failed", for the whole outage. The outage is logged once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreachable_database_is_logged_once_an_outage_not_once_a_run() {
    let mut stack = Stack::start_empty().await;
    let acct = stack.account(AccountSpec::new("seller-pg-down")).await;
    six_cleanups(&stack, &acct).await;
    // A worker whose database is a closed port: every run's first read fails.
    stack.spawn_worker(
        "pg-down",
        &[("DROVER_WORKER__DATABASE__URL", "postgres://postgres@127.0.0.1:1/drover")],
    );
    tokio::time::sleep(Duration::from_secs(12)).await;
    logged_once(&stack.logs(), "database");
}

/// Six one-SKU cleanups of `acct`, submitted to the queue.
async fn six_cleanups(stack: &Stack, acct: &drover::job::AccountId) {
    for _ in 0..6 {
        stack
            .submit(
                JobKind::Cleanup,
                json!({"account_id": acct.as_str(), "marketplace_id": MARKETPLACE, "skus": ["SKU-1"]}),
            )
            .await;
    }
}

/// `log` has one WARN line about `text` (an outage logged once).
fn logged_once(log: &str, text: &str) {
    let failed = warns_with(log, text);
    assert!(!failed.is_empty(), "the outage is logged:\n{log}");
    assert!(
        failed.len() <= 1,
        "{} WARN lines for one outage:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

/// Found by the third round of audits of 2026-12-07: a Postgres that stays read-only (a
/// demoted primary reached through an address not yet moved) had every run log the
/// outage's start and its end — each run's connection was answered (an end, "database
/// answers again") and its first write refused (a start, a WARN) — every 2 s for each
/// job. It is one outage, logged once, its end only once writes are taken again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_read_only_database_is_logged_once_an_outage_not_once_a_run() {
    let mut stack = Stack::start_empty().await;
    let acct = stack.account(AccountSpec::new("seller-pg-read-only")).await;
    stack.spawn_worker("pg-read-only", &[]);
    stack.db.make_read_only().await;
    six_cleanups(&stack, &acct).await;
    tokio::time::sleep(Duration::from_secs(12)).await;
    let log = stack.logs();
    logged_once(&log, "database");
    let ended = lines_after_start(&log)
        .into_iter()
        .filter(|v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("database answers again") || m.starts_with("database takes writes again"))
        })
        .count();
    assert_eq!(ended, 0, "no end is logged while the database stays read-only:\n{log}");
}

/// Found by the chaos audit of 2026-12-06: each batch of outcomes that met a Redis outage
/// logged it (a busy worker's runs end at different times, so one restart gave a WARN
/// per batch), and a fetch over several partitions in one pipeline logged a line per
/// partition. One outage is one WARN of each, and its end one line.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_restart_under_a_busy_worker_is_logged_once_not_once_a_batch() {
    use drover::job::JobPayload;
    use drover::queue::{JobDefaults, JobStore, NewJob, RedisStore};
    use drover_tests::harness::{ChildProcess, Durability, RedisServer};

    let mut redis = RedisServer::start(Durability::AofEverySec);
    let defaults = JobDefaults {
        partitions: drover::queue::Partitions::new(4).unwrap(),
        ..JobDefaults::default()
    };
    let store = RedisStore::connect(&redis.url(), "drover", defaults).await.unwrap();
    let env = [
        ("DROVER_WORKER__REDIS_URL", redis.url()),
        ("DROVER_WORKER__QUEUE__PARTITIONS", "4".to_owned()),
        ("DROVER_WORKER__CONCURRENCY__SYNC", "0".to_owned()),
        ("DROVER_WORKER__CONCURRENCY__BACKFILL", "0".to_owned()),
        ("DROVER_WORKER__CONCURRENCY__CLEANUP", "10".to_owned()),
        ("DROVER_WORKER__METRICS_LISTEN", String::new()),
        ("RUST_LOG", "info".to_owned()),
    ];
    let worker = ChildProcess::test_worker("restarted-redis-worker", &env);
    for i in 0..20u64 {
        let payload = JobPayload::from_json(
            JobKind::Cleanup,
            json!({"account_id": format!("t.sleep.{}_{i}", 300 + 60 * i), "marketplace_id": MARKETPLACE, "skus": ["SKU-1"]}),
        )
        .unwrap();
        store.enqueue(NewJob::new(payload)).await.unwrap();
    }
    let until = std::time::Instant::now() + Duration::from_secs(20);
    while store.counts(JobKind::Cleanup).await.unwrap().running < 5 {
        assert!(std::time::Instant::now() < until, "no runs:\n{}", worker.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(1200)).await; // the leases reach the AOF
    redis.kill();
    tokio::time::sleep(Duration::from_secs(4)).await; // every run ends in the outage
    redis.restart();
    let until = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let counts = store.counts(JobKind::Cleanup).await;
        if counts.as_ref().is_ok_and(|c| c.succeeded == 20) {
            break;
        }
        assert!(std::time::Instant::now() < until, "{counts:?} after 90 s:\n{}", worker.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = worker.log();
    for text in ["could not record", "cannot lease from"] {
        let lines = warns_with(&log, text);
        assert!(!lines.is_empty(), "the outage is logged ({text}):\n{log}");
        assert!(lines.len() == 1, "{} WARN lines for one outage:\n{}", lines.len(), lines.join("\n"));
    }
    let back = log
        .lines()
        .filter(|l| l.contains("job outcomes recorded after their queue came back"))
        .count();
    assert_eq!(back, 1, "its end is logged once:\n{log}");
}

/// Found by the logging audit of 2026-12-05: a Redis that stopped answering while its
/// sockets stayed open (a frozen process) made each connection log a WARN every time a
/// reply timed out and it dialled afresh, for the whole stall. It is logged once, and
/// its end once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_that_stops_answering_is_logged_once_a_stall() {
    use drover_tests::harness::{ChildProcess, Durability, RedisServer};

    let redis = RedisServer::start(Durability::None);
    let worker = ChildProcess::test_worker(
        "stalled-worker",
        &[
            ("DROVER_WORKER__REDIS_URL", redis.url()),
            ("DROVER_WORKER__CONCURRENCY__SYNC", "0".to_owned()),
            ("DROVER_WORKER__CONCURRENCY__BACKFILL", "0".to_owned()),
            ("DROVER_WORKER__METRICS_LISTEN", String::new()),
            ("RUST_LOG", "info".to_owned()),
        ],
    );
    redis.pause();
    tokio::time::sleep(Duration::from_secs(14)).await;
    redis.resume();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let log = worker.log();
    let silent = warns_with(&log, "did not answer in time");
    assert!(!silent.is_empty(), "the stall is logged:\n{log}");
    assert!(
        silent.len() <= 1,
        "{} WARN lines for one stall:\n{}",
        silent.len(),
        silent.join("\n")
    );
}

/// Found by the logging audit of 2026-12-05: a backfill window whose report document had
/// too many bad rows was logged by the parse step ("more than 1% bad rows") and again as
/// the window's failure. It is one line, the window's, which names the report and where
/// the bad rows are.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_backfill_window_is_one_line_naming_its_report_and_bad_rows() {
    let mut stack = Stack::start_empty().await;
    let acct = stack
        .account(AccountSpec {
            orders: Some(3000),
            ..AccountSpec::new("seller-bad-rows")
        })
        .await;
    stack
        .faults(
            &acct,
            FaultSpec {
                malformed_rows: 1,
                ..FaultSpec::default()
            },
        )
        .await;
    stack.spawn_worker("worker-1", &[]);
    // Two 6-hour windows (~12 rows each: 1 bad row is over 1%, so both fail), as in
    // jobs_e2e::malformed_report_rows_end_the_backfill_partial_with_each_parse_error_located.
    let start = chrono::Utc::now() - chrono::Duration::days(40);
    let id = stack
        .submit(
            JobKind::Backfill,
            json!({"account_id": acct.as_str(), "marketplace_id": MARKETPLACE, "window_hours": 6,
                   "report_type": "GET_FLAT_FILE_ALL_ORDERS_DATA_BY_ORDER_DATE_GENERAL",
                   "start": start, "end": start + chrono::Duration::hours(12)}),
        )
        .await;
    let job = stack.finish(&id, Duration::from_secs(60)).await;
    assert_eq!(job.state, JobState::Partial, "{job:#?}\n{}", stack.logs());
    let result = job.result.clone().expect("result");
    assert_eq!(result["failed"], 2, "{result}");

    // Every WARN or ERROR line that names a window, by window.
    let mut by_window: std::collections::BTreeMap<String, Vec<Value>> = Default::default();
    for line in lines_after_start(&stack.logs()) {
        let failure = line["level"] == "WARN" || line["level"] == "ERROR";
        let Some(window) = line["window"].as_str().filter(|_| failure).map(str::to_owned) else {
            continue;
        };
        by_window.entry(window).or_default().push(line);
    }
    assert_eq!(by_window.len(), 2, "both failed windows are logged: {by_window:#?}");
    for (window, lines) in &by_window {
        assert_eq!(
            lines.len(),
            1,
            "window {window} is logged {} times:\n{}",
            lines.len(),
            lines.iter().map(Value::to_string).collect::<Vec<_>>().join("\n")
        );
        let line = &lines[0];
        assert_eq!(line["message"], "backfill window failed; going on with the next", "{line}");
        let detail: Value =
            serde_json::from_str(line["detail"].as_str().unwrap_or_default()).unwrap_or_else(|e| panic!("no detail ({e}): {line}"));
        assert!(detail["report_id"].is_string(), "{line}");
        assert!(detail["bad_rows"].as_u64().is_some_and(|n| n >= 1), "{line}");
        assert!(
            detail["error"].as_str().is_some_and(|e| e.contains("could not be parsed")),
            "{line}"
        );
        assert!(
            detail["parse_errors"][0]["line"].as_u64().is_some_and(|n| n >= 2),
            "where the bad row is: {line}"
        );
    }
}

/// Found by the logging audit of 2026-12-05: while the OTLP collector could not be
/// reached, the SDK logged every export that failed (an ERROR from the batch processor
/// and a WARN from the exporter once its retries were spent: every 5 s, more under
/// load). The outage is logged once, naming the endpoint without its password, and its
/// end once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreachable_otlp_collector_is_logged_once_an_outage_not_once_an_export() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use drover::job::JobPayload;
    use drover::queue::{JobDefaults, JobStore, NewJob, RedisStore};
    use drover_tests::harness::{ChildProcess, Durability, RedisServer};

    // A collector that is down: it takes each connection and closes it unanswered.
    let down = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = down.local_addr().unwrap();
    let tries = Arc::new(AtomicUsize::new(0));
    let counted = tries.clone();
    let refusing = tokio::spawn(async move {
        while let Ok((conn, _)) = down.accept().await {
            drop(conn);
            counted.fetch_add(1, Ordering::Relaxed);
        }
    });

    let redis = RedisServer::start(Durability::None);
    let store = RedisStore::connect(&redis.url(), "drover", JobDefaults::default()).await.unwrap();
    let worker = ChildProcess::test_worker(
        "otlp-down-worker",
        &[
            ("DROVER_WORKER__REDIS_URL", redis.url()),
            ("DROVER_WORKER__CONCURRENCY__SYNC", "0".to_owned()),
            ("DROVER_WORKER__CONCURRENCY__BACKFILL", "0".to_owned()),
            ("DROVER_WORKER__METRICS_LISTEN", String::new()),
            ("RUST_LOG", "info".to_owned()),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://drover:hunter2@{addr}")),
            // An export every 100 ms rather than every 5 s.
            ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
        ],
    );
    // Runs, whose spans are exported, for as long as the test goes on.
    let feeding = tokio::spawn(async move {
        let payload = JobPayload::from_json(
            JobKind::Cleanup,
            json!({"account_id": "t.ok", "marketplace_id": MARKETPLACE, "skus": ["SKU-1"]}),
        )
        .unwrap();
        loop {
            store.enqueue(NewJob::new(payload.clone())).await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });

    // Several exports fail (each tries the collector 4 times before it gives up).
    let until = std::time::Instant::now() + Duration::from_secs(60);
    while tries.load(Ordering::Relaxed) < 12 {
        assert!(
            std::time::Instant::now() < until,
            "{} tries in 60 s:\n{}",
            tries.load(Ordering::Relaxed),
            worker.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let failed = export_failures(&worker.log());
    assert_eq!(
        failed.len(),
        1,
        "{} WARN or ERROR lines for one outage of the collector:\n{}",
        failed.len(),
        failed.iter().map(Value::to_string).collect::<Vec<_>>().join("\n")
    );
    assert_eq!(failed[0]["level"], "WARN", "{}", failed[0]);
    assert_eq!(
        failed[0]["endpoint"],
        format!("http://drover:<secret>@{addr}/v1/traces"),
        "{}",
        failed[0]
    );

    // The collector comes back, at the same address.
    refusing.abort();
    let _ = refusing.await;
    let up = tokio::net::TcpListener::bind(addr).await.unwrap();
    let app = axum::Router::new().route("/v1/traces", axum::routing::post(|| async { axum::http::StatusCode::OK }));
    tokio::spawn(async move { axum::serve(up, app).await });
    assert!(
        worker.wait_for_log("OTLP trace export works again", Duration::from_secs(30)),
        "the end of the outage is logged:\n{}",
        worker.log()
    );
    feeding.abort();

    let log = worker.log();
    assert_eq!(export_failures(&log).len(), 1, "still the one line:\n{log}");
    assert!(!log.contains("hunter2"), "the endpoint's password is never logged:\n{log}");
    let back: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["message"] == "OTLP trace export works again")
        .collect();
    assert_eq!(back.len(), 1, "{back:?}");
    assert_eq!(back[0]["level"], "INFO", "{}", back[0]);
}

/// The WARN and ERROR lines of `log` about exporting spans: the SDK's own, and ours
/// (not the SDK's one line that spans are being dropped, which a slow outage on a loaded
/// machine may bring, once).
fn export_failures(log: &str) -> Vec<Value> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["level"] == "WARN" || v["level"] == "ERROR")
        .filter(|v| v["name"] != "BatchSpanProcessor.SpanDroppingStarted")
        .filter(|v| {
            v["target"].as_str().is_some_and(|t| t.starts_with("opentelemetry"))
                || v["message"].as_str().is_some_and(|m| m.contains("OTLP"))
        })
        .collect()
}
