//! Tenant fairness under a flood, measured (issue 13 item 7). Not a test: it prints figures.
//!
//! Starts a private redis-server, a private Postgres database, the simulator at SP-API's
//! documented rates (deleteListingsItem 5/s, burst 10) and `--workers` release
//! `drover-worker` processes with default settings (plus the same plans as limits).
//! `--flood-accounts` accounts flood (each `--flood-skus` SKUs in cleanups of
//! `--flood-job-skus`, at priority `--flood-priority`), and after
//! `--lead-secs` `--small-accounts` other accounts submit one cleanup of `--small-skus`
//! each. It waits until the small jobs are finished (at most `--max-wait-secs`) and then a
//! fixed `--window-secs`, and prints: p50/p99 submit→start and submit→done of the small
//! jobs (from each job's created_at/started_at/finished_at, plus the simulator's first
//! delete per small account), a flooding account's mean delete rate against its plan
//! (simulator stats), and cleanup slot utilisation (running / slots, sampled from
//! `counts`). It never waits for the whole flood; every process it started is stopped by PID.
//!
//! `cargo build --release -p drover-worker -p drover-tests --bins &&
//!  $CARGO_TARGET_DIR/release/fair_bench [--flood-skus 10000] [--flood-job-skus 100]
//!  [--small-accounts 100] [--small-skus 3] [--workers 1] [--window-secs 30] [--max-wait-secs 180]
//!  [--flood-accounts 1] [--flood-priority 0]`
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use clap::Parser;
use drover::crypto::{EncryptionKey, SecretBox, DEV_ENCRYPTION_KEY};
use drover::db::accounts::{AccountRepo, NewAccount};
use drover::job::{AccountId, Job, JobId, JobKind, JobPayload, MarketplaceId};
use drover::lwa::LwaCredentials;
use drover::queue::{JobDefaults, JobStore, NewJob, RedisStore};
use drover_tests::harness::{ChildProcess, Durability, PgDatabase, RedisServer};
use drover_tests::sim::{AccountSpec, Operation, RateLimit, RateLimits, RateProfile, SimConfig, SimHandle, StatsSnapshot, US_MARKETPLACE};
use nix::sys::signal::Signal;
use serde_json::json;

#[derive(Parser)]
struct Args {
    /// SKUs of each flooding account.
    #[arg(long, default_value_t = 10_000)]
    flood_skus: usize,
    /// Accounts that flood.
    #[arg(long, default_value_t = 1)]
    flood_accounts: usize,
    /// Priority of the flooding accounts' jobs (the small jobs have 0).
    #[arg(long, default_value_t = 0)]
    flood_priority: u8,
    /// SKUs per cleanup job of the flooding account.
    #[arg(long, default_value_t = 100)]
    flood_job_skus: usize,
    #[arg(long, default_value_t = 100)]
    small_accounts: usize,
    #[arg(long, default_value_t = 3)]
    small_skus: usize,
    /// drover-worker processes.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Cleanup slots per worker (the worker default is 50).
    #[arg(long, default_value_t = 50)]
    slots: usize,
    /// deleteListingsItem plan (simulator and worker limits alike).
    #[arg(long, default_value_t = 5.0)]
    rate: f64,
    #[arg(long, default_value_t = 10)]
    burst: u32,
    /// How long the flood runs before the small accounts submit.
    #[arg(long, default_value_t = 2)]
    lead_secs: u64,
    /// Give up on small jobs still unfinished after this long (they count as censored).
    #[arg(long, default_value_t = 180)]
    max_wait_secs: u64,
    /// Rate window after the small jobs are done.
    #[arg(long, default_value_t = 30)]
    window_secs: u64,
    #[arg(long, default_value_t = 100)]
    sample_ms: u64,
    /// Keep the workers' logs in this file (their level: `FAIR_BENCH_WORKER_LOG`, a
    /// `RUST_LOG` filter, default `warn,drover::runtime=info`).
    #[arg(long)]
    worker_log: Option<std::path::PathBuf>,
}

/// The limiter's default rate margin: workers aim at 95 % of the plan.
const RATE_MARGIN: f64 = 0.05;

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let redis = RedisServer::start(Durability::None);
    let db = PgDatabase::create().await;
    let delete_plan = RateLimit::new(args.rate, args.burst);
    let plans = RateLimits::profile(RateProfile::Spapi).merged(&BTreeMap::from([(Operation::DeleteListingsItem, delete_plan)]));
    let sim = drover_tests::sim::spawn(SimConfig {
        accounts: 0,
        rate_limits: plans.clone(),
        ..SimConfig::default()
    })
    .await?;
    let store = RedisStore::connect(&redis.url(), "drover", JobDefaults::for_runtime()).await?;
    println!(
        "fair_bench: {} workers x {} cleanup slots, {} flooding accounts x {} SKUs in jobs of {} at priority {}, \
         {} small accounts x {} SKUs, deleteListingsItem {}/s burst {}, loadavg {}",
        args.workers,
        args.slots,
        args.flood_accounts,
        args.flood_skus,
        args.flood_job_skus,
        args.flood_priority,
        args.small_accounts,
        args.small_skus,
        args.rate,
        args.burst,
        load.trim()
    );

    let setup = Instant::now();
    let mut flood = Vec::with_capacity(args.flood_accounts);
    for i in 1..=args.flood_accounts.max(1) {
        flood.push(register(&sim, &db, &format!("flood-{i:03}"), args.flood_skus).await?);
    }
    let mut small = Vec::with_capacity(args.small_accounts);
    for i in 1..=args.small_accounts {
        small.push(register(&sim, &db, &format!("small-{i:03}"), args.small_skus).await?);
    }
    println!(
        "{} accounts registered in {:.1} s",
        small.len() + flood.len(),
        setup.elapsed().as_secs_f64()
    );

    let mut config = tempfile::Builder::new().suffix(".toml").tempfile()?;
    let mut toml = String::from("[worker]\ndev_mode = true\n[worker.resilience.limits]\n");
    for (op, plan) in &plans.0 {
        toml.push_str(&format!("{} = {{ rate = {:?}, burst = {} }}\n", op.name(), plan.rate, plan.burst));
    }
    config.write_all(toml.as_bytes())?;
    let worker_bin = std::env::current_exe()?.parent().context("exe dir")?.join("drover-worker");
    if !worker_bin.exists() {
        bail!("{} is not built (cargo build --release -p drover-worker)", worker_bin.display());
    }
    let workers: Vec<ChildProcess> = (0..args.workers)
        .map(|i| {
            ChildProcess::spawn(
                &format!("worker-{i}"),
                &worker_bin,
                &[],
                &[
                    ("DROVER_CONFIG", config.path().display().to_string()),
                    ("DROVER_WORKER__REDIS_URL", redis.url()),
                    ("DROVER_WORKER__DATABASE__URL", db.url()),
                    ("DROVER_WORKER__MARKETPLACE__BASE_URL", sim.base_url().to_owned()),
                    ("DROVER_WORKER__METRICS_LISTEN", "127.0.0.1:0".to_owned()),
                    ("DROVER_WORKER__CONCURRENCY__CLEANUP", args.slots.to_string()),
                    (
                        "RUST_LOG",
                        std::env::var("FAIR_BENCH_WORKER_LOG").unwrap_or_else(|_| "warn,drover::runtime=info".to_owned()),
                    ),
                ],
            )
        })
        .collect();
    for w in &workers {
        if !w.wait_for_log("worker started", Duration::from_secs(30)) {
            let log = w.log();
            stop(workers);
            bail!("worker did not start:\n{log}");
        }
    }
    let result = run(&args, &sim, &store, &flood, &small).await;
    let logs: Vec<String> = workers.iter().map(ChildProcess::log).collect();
    if let Some(path) = &args.worker_log {
        std::fs::write(path, logs.join("\n"))?;
    }
    stop(workers);
    sim.shutdown().await?;
    if let Err(e) = result {
        bail!("{e:#}\nworker logs:\n{}", logs.join("\n----\n"));
    }
    Ok(())
}

/// The measured scenario, once the workers run.
async fn run(
    args: &Args,
    sim: &SimHandle,
    store: &RedisStore,
    flood: &[(String, Vec<String>)],
    small: &[(String, Vec<String>)],
) -> Result<()> {
    let mut flood_jobs = 0;
    for (account, skus) in flood {
        for chunk in skus.chunks(args.flood_job_skus.max(1)) {
            store.enqueue(cleanup(account, chunk)?.priority(args.flood_priority)).await?;
            flood_jobs += 1;
        }
    }
    tokio::time::sleep(Duration::from_secs(args.lead_secs)).await;

    let slots = (args.workers * args.slots) as f64;
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = tokio::spawn(sample_running(
        store.clone(),
        sampling.clone(),
        Duration::from_millis(args.sample_ms),
    ));

    // a flooding account's mean
    let deletes_of = |s: &StatsSnapshot| {
        flood
            .iter()
            .map(|(a, _)| s.op(a, Operation::DeleteListingsItem).accepted)
            .sum::<u64>()
            / flood.len() as u64
    };
    let s0 = sim.admin().stats().await?;
    let t0 = Instant::now();
    let mut ids = Vec::with_capacity(small.len());
    for (account, skus) in small {
        ids.push(store.enqueue(cleanup(account, skus)?).await?.id);
    }
    let submitted_in = t0.elapsed();

    let deadline = t0 + Duration::from_secs(args.max_wait_secs);
    let mut open: Vec<JobId> = ids.clone();
    while !open.is_empty() && Instant::now() < deadline {
        let mut still = Vec::with_capacity(open.len());
        for id in open {
            let job = store.get(&id).await?.context("small job vanished")?;
            if !job.state.is_terminal() {
                still.push(id);
            }
        }
        open = still;
        if !open.is_empty() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let t1 = Instant::now();
    let s1 = sim.admin().stats().await?;
    tokio::time::sleep(Duration::from_secs(args.window_secs)).await;
    let t2 = Instant::now();
    let s2 = sim.admin().stats().await?;
    sampling.store(false, Ordering::Relaxed);
    let samples = sampler.await??;
    let now = Utc::now();

    let mut jobs: Vec<Job> = Vec::with_capacity(ids.len());
    for id in &ids {
        jobs.push(store.get(id).await?.context("small job vanished")?);
    }
    let secs = |a: DateTime<Utc>, b: DateTime<Utc>| (b - a).num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6;
    let start: Vec<(f64, bool)> = jobs
        .iter()
        .map(|j| {
            j.started_at
                .map_or((secs(j.created_at, now), false), |s| (secs(j.created_at, s), true))
        })
        .collect();
    let done: Vec<(f64, bool)> = jobs
        .iter()
        .map(|j| {
            j.finished_at
                .map_or((secs(j.created_at, now), false), |f| (secs(j.created_at, f), true))
        })
        .collect();
    let first_call: Vec<(f64, bool)> = jobs
        .iter()
        .zip(small)
        .map(|(j, (account, _))| {
            let first = s2.accounts.get(account).and_then(|a| a.deletes.iter().map(|d| d.at).min());
            first.map_or((secs(j.created_at, now), false), |f| (secs(j.created_at, f), true))
        })
        .collect();
    let succeeded = jobs.iter().filter(|j| j.state == drover::job::JobState::Succeeded).count();

    let rate = |a: &StatsSnapshot, b: &StatsSnapshot, d: Duration| (deletes_of(b) - deletes_of(a)) as f64 / d.as_secs_f64();
    let whole = rate(&s0, &s2, t2 - t0);
    let small_phase = rate(&s0, &s1, t1 - t0);
    let tail = rate(&s1, &s2, t2 - t1);
    let allowed = args.rate * (1.0 - RATE_MARGIN);
    let throttled: u64 = flood
        .iter()
        .map(|(a, _)| s2.op(a, Operation::DeleteListingsItem).rate_limited)
        .sum();
    let util = |from: Instant, to: Instant| {
        let v: Vec<f64> = samples
            .iter()
            .filter(|(t, _)| *t >= from && *t <= to)
            .map(|(_, r)| *r as f64)
            .collect();
        let mean = v.iter().sum::<f64>() / v.len().max(1) as f64;
        let max = v.iter().copied().fold(0.0, f64::max);
        (mean / slots * 100.0, mean, max)
    };
    let (u_small, m_small, x_small) = util(t0, t1);
    let (u_tail, m_tail, x_tail) = util(t1, t2);

    println!(
        "flood: {flood_jobs} jobs submitted, {} s head start; {} small jobs submitted in {:.0} ms",
        args.lead_secs,
        ids.len(),
        submitted_in.as_secs_f64() * 1e3
    );
    println!(
        "small jobs: {succeeded}/{} succeeded, {} unfinished after {:.1} s (censored: their figure is a lower bound, shown as >)",
        jobs.len(),
        done.iter().filter(|(_, ok)| !ok).count(),
        (t1 - t0).as_secs_f64()
    );
    for (what, v) in [
        ("submit→start (started_at)", &start),
        ("submit→first delete (simulator)", &first_call),
        ("submit→done (finished_at)", &done),
    ] {
        println!("  {what:<34} p50 {}  p99 {}  max {}", pct(v, 0.50), pct(v, 0.99), pct(v, 1.0));
    }
    println!(
        "a flooding account (mean of {}): {whole:.2} deletes/s over the whole window ({:.1} s) = {:.0} % of the plan {} /s, {:.0} % of the worker's allowed {allowed:.2} /s; \
         {small_phase:.2}/s while the small jobs ran ({:.1} s), {tail:.2}/s in the {:.0} s after; {throttled} throttled (429); {} of {} SKUs deleted",
        flood.len(),
        (t2 - t0).as_secs_f64(),
        whole / args.rate * 100.0,
        args.rate,
        whole / allowed * 100.0,
        (t1 - t0).as_secs_f64(),
        (t2 - t1).as_secs_f64(),
        deletes_of(&s2),
        args.flood_skus
    );
    println!(
        "cleanup slots ({slots:.0}): running/slots {u_small:.0} % while the small jobs ran (mean {m_small:.1}, max {x_small:.0}), \
         {u_tail:.0} % after (mean {m_tail:.1}, max {x_tail:.0})"
    );
    println!(
        "{}",
        json!({
            "bench": "fair", "workers": args.workers, "slots": slots, "flood_skus": args.flood_skus,
            "flood_accounts": flood.len(), "flood_priority": args.flood_priority,
            "flood_job_skus": args.flood_job_skus, "small_accounts": args.small_accounts,
            "small_done": done.iter().filter(|(_, ok)| *ok).count(), "small_succeeded": succeeded,
            "start_p50_s": pct_num(&start, 0.5), "start_p99_s": pct_num(&start, 0.99),
            "first_call_p50_s": pct_num(&first_call, 0.5), "first_call_p99_s": pct_num(&first_call, 0.99),
            "done_p50_s": pct_num(&done, 0.5), "done_p99_s": pct_num(&done, 0.99),
            "flood_rate_whole": whole, "flood_rate_small_phase": small_phase, "flood_rate_tail": tail,
            "flood_plan": args.rate, "flood_allowed": allowed, "flood_throttled": throttled,
            "util_small_phase_pct": u_small, "util_tail_pct": u_tail,
            "small_phase_s": (t1 - t0).as_secs_f64(), "tail_s": (t2 - t1).as_secs_f64(),
        })
    );
    Ok(())
}

/// Register an account with `skus` listings in the simulator and in Drover; its id and SKUs.
async fn register(sim: &SimHandle, db: &PgDatabase, name: &str, skus: usize) -> Result<(String, Vec<String>)> {
    let info = sim
        .admin()
        .register_account(&AccountSpec {
            skus: Some(skus),
            ..AccountSpec::new(name)
        })
        .await?;
    let secrets = SecretBox::new(&EncryptionKey::parse(DEV_ENCRYPTION_KEY).map_err(anyhow::Error::msg)?);
    AccountRepo::new(db.pool().clone())
        .insert(
            &NewAccount {
                id: AccountId::parse(info.account_id.clone()).map_err(anyhow::Error::msg)?,
                seller_id: info.seller_id.clone(),
                marketplace_ids: vec![MarketplaceId::parse(US_MARKETPLACE).map_err(anyhow::Error::msg)?],
                credentials: LwaCredentials {
                    client_id: info.client_id.clone(),
                    client_secret: sim.config().client_secret.clone().into(),
                    refresh_token: info.refresh_token.clone().into(),
                },
            },
            &secrets,
        )
        .await?;
    let listed = sim.admin().skus(name).await?;
    Ok((info.account_id, listed))
}

fn cleanup(account: &str, skus: &[String]) -> Result<NewJob> {
    let payload = JobPayload::from_json(
        JobKind::Cleanup,
        json!({"account_id": account, "marketplace_id": US_MARKETPLACE, "skus": skus}),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(NewJob::new(payload))
}

/// Running cleanup jobs every `every` until `on` is cleared.
async fn sample_running(store: RedisStore, on: Arc<AtomicBool>, every: Duration) -> Result<Vec<(Instant, u64)>> {
    let mut samples = Vec::new();
    while on.load(Ordering::Relaxed) {
        let c = store.counts(JobKind::Cleanup).await?;
        samples.push((Instant::now(), c.running));
        tokio::time::sleep(every).await;
    }
    Ok(samples)
}

/// Nearest-rank percentile; `>` when it falls on an unfinished (censored) value.
fn pct(v: &[(f64, bool)], p: f64) -> String {
    match pick(v, p) {
        Some((x, true)) => format!("{x:.3} s"),
        Some((x, false)) => format!(">{x:.1} s"),
        None => "-".into(),
    }
}

fn pct_num(v: &[(f64, bool)], p: f64) -> serde_json::Value {
    match pick(v, p) {
        Some((x, true)) => json!(x),
        Some((x, false)) => json!(format!(">{x:.1}")),
        None => serde_json::Value::Null,
    }
}

fn pick(v: &[(f64, bool)], p: f64) -> Option<(f64, bool)> {
    let mut s = v.to_vec();
    // Unfinished ones sort last: their true value is at least the figure they carry.
    s.sort_by(|a, b| (!a.1).cmp(&!b.1).then(a.0.total_cmp(&b.0)));
    let rank = ((p * s.len() as f64).ceil() as usize).clamp(1, s.len().max(1));
    s.get(rank - 1).copied()
}

fn stop(workers: Vec<ChildProcess>) {
    for w in &workers {
        w.signal(Signal::SIGTERM);
    }
    for mut w in workers {
        if w.wait_exit(Duration::from_secs(20)).is_none() {
            w.kill();
        }
    }
}
