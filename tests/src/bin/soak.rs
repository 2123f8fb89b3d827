//! Soak: a million no-op jobs through one release `test_worker` at full speed on a
//! private redis-server, enqueued in bulk while the worker drains, with retention 0 so
//! every finished job is trimming's to remove. Prints Redis `used_memory` every
//! interval; a queue that stays bounded plateaus instead of climbing.
//!
//! `cargo build --release -p drover-tests --bins &&
//! $CARGO_TARGET_DIR/release/soak [--jobs 1000000] [--concurrency 64] [--backlog 20000] [--every 10]`
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use drover::job::{JobKind, JobPayload};
use drover::queue::{JobDefaults, JobStore, NewJob, RedisStore};
use drover_tests::harness::{ChildProcess, Durability, RedisServer};
use nix::sys::signal::Signal;
use serde_json::json;

#[derive(Parser)]
struct Args {
    /// Jobs to run in all.
    #[arg(long, default_value_t = 1_000_000)]
    jobs: u64,
    /// The worker's cleanup concurrency.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// The producer waits while more than this many jobs are queued, so memory measures
    /// what finished jobs leave behind, not a growing backlog.
    #[arg(long, default_value_t = 20_000)]
    backlog: u64,
    /// Seconds between samples.
    #[arg(long, default_value_t = 10)]
    every: u64,
    /// `DROVER_WORKER__RETENTION_HOURS` (whole hours; 0 trims a job as soon as it ends).
    #[arg(long, default_value_t = 0)]
    retention_hours: u64,
}

struct Sample {
    secs: u64,
    used_memory: u64,
    done: u64,
    kept: u64,
}

fn used_memory(server: &RedisServer) -> Result<u64> {
    let info: String = redis::cmd("INFO").arg("memory").query(&mut server.conn())?;
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .context("INFO memory has no used_memory")?
        .trim()
        .parse()
        .context("used_memory is a number")
}

fn payload() -> Result<JobPayload> {
    Ok(JobPayload::from_json(
        JobKind::Cleanup,
        json!({"account_id": "t.ok", "marketplace_id": "ATVPDKIKX0DER", "skus": ["SKU-1"]}),
    )?)
}

/// Enqueues `total` jobs in chunks of 1,000, holding back while the queue is over `backlog`.
async fn produce(store: RedisStore, total: u64, backlog: u64) -> Result<()> {
    let mut sent = 0;
    while sent < total {
        if store.counts(JobKind::Cleanup).await?.queued > backlog {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        let n = (total - sent).min(1000);
        let batch = (0..n).map(|_| payload().map(NewJob::new)).collect::<Result<Vec<_>>>()?;
        for r in store.enqueue_bulk(batch).await? {
            r?;
        }
        sent += n;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let server = RedisServer::start(Durability::None);
    let store = RedisStore::connect(&server.url(), "drover", JobDefaults::for_runtime()).await?;
    let env = [
        ("DROVER_WORKER__REDIS_URL", server.url()),
        ("DROVER_WORKER__CONCURRENCY__SYNC", "0".to_owned()),
        ("DROVER_WORKER__CONCURRENCY__BACKFILL", "0".to_owned()),
        ("DROVER_WORKER__CONCURRENCY__CLEANUP", args.concurrency.to_string()),
        ("DROVER_WORKER__RETENTION_HOURS", args.retention_hours.to_string()),
        ("DROVER_WORKER__METRICS_LISTEN", String::new()),
        // Its start and trim reports, not a line per job.
        ("RUST_LOG", "warn,drover::runtime=info".to_owned()),
    ];
    // Built beside this binary (same profile).
    let bin = std::env::current_exe()?.with_file_name("test_worker");
    anyhow::ensure!(bin.exists(), "{} is not built", bin.display());
    let mut worker = ChildProcess::spawn("soak-worker", &bin, &[], &env);
    anyhow::ensure!(
        worker.wait_for_log("worker started", Duration::from_secs(20)),
        "the worker did not start:\n{}",
        worker.log()
    );
    println!(
        "soak: {} no-op jobs, one worker (concurrency {}), retention {} h, backlog ≤ {}",
        args.jobs, args.concurrency, args.retention_hours, args.backlog
    );
    println!("{:>6} {:>14} {:>10} {:>12}", "s", "used_memory", "done", "kept_in_redis");
    let producer = tokio::spawn(produce(store.clone(), args.jobs, args.backlog));
    let started = Instant::now();
    let mut samples = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(args.every));
    loop {
        tick.tick().await;
        let c = store.counts(JobKind::Cleanup).await?;
        let s = Sample {
            secs: started.elapsed().as_secs(),
            used_memory: used_memory(&server)?,
            done: c.succeeded_total,
            kept: c.succeeded + c.dead + c.partial + c.cancelled,
        };
        println!("{:>6} {:>14} {:>10} {:>12}", s.secs, s.used_memory, s.done, s.kept);
        let finished = s.done >= args.jobs;
        let stalled = samples.last().is_some_and(|p: &Sample| p.done == s.done);
        samples.push(s);
        if finished {
            break;
        }
        anyhow::ensure!(!stalled, "no job finished in {} s; worker log:\n{}", args.every, worker.log());
    }
    producer.await??;
    worker.signal(Signal::SIGTERM);
    let _ = worker.wait_exit(Duration::from_secs(30));
    verdict(&samples, started.elapsed());
    Ok(())
}

/// Plateau: the peak of the last third is within 10 % of the peak of the middle third.
fn verdict(samples: &[Sample], took: Duration) {
    let third = samples.len() / 3;
    let done = samples.last().map_or(0, |s| s.done);
    println!(
        "{done} jobs in {:.0} s ({:.0} jobs/s)",
        took.as_secs_f64(),
        done as f64 / took.as_secs_f64()
    );
    if third == 0 {
        println!("too few samples for a verdict");
        return;
    }
    let peak = |s: &[Sample]| s.iter().map(|s| s.used_memory).max().unwrap_or(0);
    let (middle, last) = (peak(&samples[third..2 * third]), peak(&samples[2 * third..]));
    let plateau = last as f64 <= middle as f64 * 1.10;
    println!(
        "peak used_memory: middle third {middle}, last third {last}: {}",
        if plateau { "PLATEAU" } else { "CLIMBING" }
    );
}
