//! A worker process for the process-level tests: the real worker runtime and config,
//! with handlers whose behaviour a test picks per job through the account id
//! (`t.<behaviour>`), or for the whole process with `DROVER_TEST_BEHAVIOUR`.
//!
//! Behaviours: `ok`, `sleep.<ms>`, `block.<ms>` (blocks its thread), `transient`,
//! `permanent`, `panic`, `taskpanic` (panics in a blocking task the run spawned, as the
//! worker's parse and gunzip do), `ratelimited.<ms>`, `flaky.<n>` (fails the first n-1 runs),
//! `cancellable.<ms>` (sleeps in steps, stopping when cancelled), `latency` (records
//! now − the enqueue time carried in the first SKU as `t<unix µs>`, and prints a
//! summary line `LATENCY {json}` when the worker stops; used by the benchmark).
//! Every run is logged to the Redis list `test:runs` as `S|E <job> <pid> <unix µs>`, and
//! also appended to the file named by `DROVER_TEST_RUN_FILE` when set (the chaos test's
//! log, which must outlive a Redis crash: a line pushed while Redis is down is lost).
//! Accounts name behaviours, not sellers, so the per-account caps are off unless
//! `DROVER_TEST_FAIR` is set; a `_<tenant>` suffix (`t.sleep.300_17`) makes many
//! accounts with one behaviour.
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use drover::job::JobPayload;
use drover::runtime::{JobContext, Outcome};
use drover::JobError;
use redis::AsyncCommands;

fn now_us() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_micros()
}

fn run_line(what: &str, id: &str) -> String {
    format!("{what} {id} {} {}", std::process::id(), now_us())
}

/// `DROVER_TEST_RUN_FILE`, read once (every run writes two lines).
fn run_file() -> Option<&'static std::ffi::OsStr> {
    static PATH: std::sync::OnceLock<Option<std::ffi::OsString>> = std::sync::OnceLock::new();
    PATH.get_or_init(|| std::env::var_os("DROVER_TEST_RUN_FILE")).as_deref()
}

fn append_run_file(line: &str) {
    if let Some(path) = run_file() {
        use std::io::Write;
        // One short write per line on an O_APPEND file: lines from several processes
        // never interleave.
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(format!("{line}\n").as_bytes()));
        if let Err(e) = written {
            eprintln!("cannot append to the run file: {e}");
        }
    }
}

async fn record(log: &mut Option<redis::aio::ConnectionManager>, what: &str, id: &str) {
    if log.is_none() && run_file().is_none() {
        return;
    }
    let line = run_line(what, id);
    append_run_file(&line);
    if let Some(conn) = log.as_mut() {
        // Best effort: a Redis outage must not change the job's own outcome.
        let _: Result<(), _> = conn.rpush("test:runs", line).await;
    }
}

/// Writes a run's end to the run file when the runtime drops the handler before it
/// returns (how a cancelled or fenced run is stopped): the run ended then, not at the
/// end of the test.
struct EndOnDrop {
    id: String,
    ended: bool,
}

impl Drop for EndOnDrop {
    fn drop(&mut self) {
        if !self.ended {
            append_run_file(&run_line("E", &self.id));
        }
    }
}

type Histogram = std::sync::Arc<std::sync::Mutex<hdrhistogram::Histogram<u64>>>;

fn record_latency(hist: &Histogram, payload: &JobPayload) {
    if let JobPayload::Cleanup(p) = payload {
        if let Some(sent) = p
            .skus
            .first()
            .and_then(|s| s.as_str().strip_prefix('t'))
            .and_then(|t| t.parse::<u128>().ok())
        {
            let us = now_us().saturating_sub(sent) as u64;
            let _ = hist.lock().expect("histogram lock").record(us.max(1));
        }
    }
}

async fn behave(behaviour: &str, ctx: &JobContext) -> Result<Outcome, JobError> {
    let (name, arg) = behaviour.split_once('.').unwrap_or((behaviour, "0"));
    let n: u64 = arg.parse().unwrap_or(0);
    match name {
        "ok" | "latency" => Ok(Outcome::Succeeded(serde_json::json!({"ok": true}))),
        "sleep" => {
            tokio::time::sleep(Duration::from_millis(n)).await;
            Ok(Outcome::Succeeded(serde_json::json!({"slept_ms": n})))
        }
        "block" => {
            std::thread::sleep(Duration::from_millis(n));
            Ok(Outcome::Succeeded(serde_json::json!({"blocked_ms": n})))
        }
        "transient" => Err(JobError::transient("simulated transient failure")),
        "permanent" => Err(JobError::permanent("simulated permanent failure")),
        "panic" => panic!("simulated panic in handler"),
        "taskpanic" => {
            let n = drover::panics::spawn_blocking(|| -> u64 { panic!("simulated panic in a task the run spawned") })
                .await
                .map_err(|e| JobError::transient(format!("the task stopped: {e}")))?;
            Ok(Outcome::Succeeded(serde_json::json!({"task": n})))
        }
        "ratelimited" => Err(JobError::RateLimited {
            retry_after: Duration::from_millis(n),
            reason: "simulated 429".into(),
        }),
        "flaky" => {
            if u64::from(ctx.attempt) < n {
                Err(JobError::transient(format!("flaky: failing run {} of {n}", ctx.attempt)))
            } else {
                Ok(Outcome::Succeeded(serde_json::json!({"succeeded_on": ctx.attempt})))
            }
        }
        "cancellable" => {
            let steps = n / 50;
            for _ in 0..steps {
                if ctx.is_cancelled() {
                    return Err(JobError::Cancelled);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok(Outcome::Succeeded(serde_json::json!({})))
        }
        other => Err(JobError::permanent(format!("unknown test behaviour {other:?}"))),
    }
}

// glibc malloc showed up as a third of the worker's profile under load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    drover::telemetry::init("test-worker");
    let mut config = drover_worker::WorkerConfig::load(None)?;
    if std::env::var_os("DROVER_TEST_FAIR").is_none() {
        for policy in [&mut config.jobs.sync, &mut config.jobs.backfill, &mut config.jobs.cleanup] {
            policy.per_account = 0;
        }
    }
    let default_behaviour = std::env::var("DROVER_TEST_BEHAVIOUR").unwrap_or_else(|_| "ok".into());
    let log = if std::env::var("DROVER_TEST_LOG_RUNS").is_ok() {
        let client = redis::Client::open(secrecy::ExposeSecret::expose_secret(&config.redis_url))?;
        Some(redis::aio::ConnectionManager::new(client).await?)
    } else {
        None
    };
    let hist: Histogram = std::sync::Arc::new(std::sync::Mutex::new(hdrhistogram::Histogram::new(3).expect("histogram")));
    let latencies = hist.clone();
    let handler = move |payload: JobPayload, ctx: JobContext| {
        let mut log = log.clone();
        record_latency(&latencies, &payload);
        let behaviour = payload
            .account_id()
            .as_str()
            .strip_prefix("t.")
            .map(|b| b.split('_').next().unwrap_or(b).to_owned())
            .unwrap_or_else(|| default_behaviour.clone());
        async move {
            let id = ctx.id.to_string();
            record(&mut log, "S", &id).await;
            let mut end = EndOnDrop {
                id: id.clone(),
                ended: false,
            };
            let r = behave(&behaviour, &ctx).await;
            end.ended = true;
            record(&mut log, "E", &id).await;
            r
        }
    };
    drover_worker::run(config, handler, drover_worker::shutdown_signal()).await?;
    let h = hist.lock().expect("histogram lock");
    if !h.is_empty() {
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        println!(
            "LATENCY {}",
            serde_json::json!({"count": h.len(), "p50_ms": ms(0.5), "p95_ms": ms(0.95), "p99_ms": ms(0.99), "max_ms": h.max() as f64 / 1000.0})
        );
    }
    Ok(())
}
