//! Drover's benchmark: the same five measurements as the peers' harness
//! (`../shared/bench/peers`), on a private redis-server, printing a table.
//!
//! Build and run (release): `cargo build --release -p drover-tests --bins &&
//! $CARGO_TARGET_DIR/release/bench [--n 50000] [--reps 3] [--aof] [--partitions N] [--only enqueue,process,latency,crash,memory]`
//! `bench --cluster 3 --partitions 6 --only enqueue,process`: the same rows on a private
//! Redis Cluster of 3 primaries (no replicas) instead of one redis-server; add
//! `--accounts 64` to spread the jobs over 64 accounts (one account stays in one
//! partition, so one account's jobs all go to one primary).
//! `bench --profile`: each enqueue and process row also notes where Redis spent its time
//! per job in its first run (`INFO commandstats`; one redis-server, not a cluster).
//! `bench --only durability [--secs 5] [--redis8 PATH]`: enqueue cost of each
//! `queue.durability` mode, on servers of its own (`bench_parts/durability.rs`).
//! Workers are separate `test_worker` processes, as the peers fork theirs; each process
//! row notes, per run, the CPU time they used per job (`bench_parts/proc_cpu.rs`).
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use drover::job::{JobKind, JobPayload};
use drover::queue::{JobDefaults, JobStore, NewJob, RedisStore};
use drover_tests::harness::{ChildProcess, Durability, RedisCluster, RedisServer};
use nix::sys::signal::Signal;
use redis::AsyncCommands;
use serde_json::json;

#[path = "bench_parts/commandstats.rs"]
mod commandstats;
#[path = "bench_parts/durability.rs"]
mod durability;
#[path = "bench_parts/proc_cpu.rs"]
mod proc_cpu;

struct Args {
    n: usize,
    reps: usize,
    aof: bool,
    lat_rate: u64,
    lat_secs: u64,
    crash_n: usize,
    /// `queue.partitions` of the store and the workers.
    partitions: u16,
    /// Primaries of a Redis Cluster to run on (0: one plain redis-server).
    cluster: usize,
    /// Accounts the no-op jobs are spread over (1: all in account `bench`).
    accounts: usize,
    only: Vec<String>,
    secs: u64,
    redis8: Option<String>,
    /// Print where Redis spent its time per job in each enqueue and process row's notes
    /// (`INFO commandstats` around its first run; one redis-server only).
    profile: bool,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        n: 50_000,
        reps: 3,
        aof: false,
        lat_rate: 2000,
        lat_secs: 10,
        crash_n: 10_000,
        partitions: 1,
        cluster: 0,
        accounts: 1,
        only: vec![],
        secs: 5,
        redis8: None,
        profile: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--n" => a.n = val()?.parse()?,
            "--reps" => a.reps = val()?.parse()?,
            "--aof" => a.aof = true,
            "--lat-rate" => a.lat_rate = val()?.parse()?,
            "--lat-secs" => a.lat_secs = val()?.parse()?,
            "--crash-n" => a.crash_n = val()?.parse()?,
            "--partitions" => a.partitions = val()?.parse()?,
            "--cluster" => a.cluster = val()?.parse()?,
            "--accounts" => a.accounts = val()?.parse::<usize>()?.max(1),
            "--only" => a.only = val()?.split(',').map(str::to_owned).collect(),
            "--secs" => a.secs = val()?.parse()?,
            "--redis8" => a.redis8 = Some(val()?),
            "--profile" => a.profile = true,
            other => bail!("unknown flag {other}; see the doc comment at the top of tests/src/bin/bench.rs"),
        }
    }
    if a.only.is_empty() {
        a.only = ["enqueue", "process", "latency", "crash", "memory"].map(String::from).to_vec();
    }
    Ok(a)
}

fn sibling(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let p = exe.parent().context("exe dir")?.join(name);
    if !p.exists() {
        bail!("{} missing: build with `cargo build --release -p drover-tests --bins`", p.display());
    }
    Ok(p)
}

/// The cap on an account's unfinished jobs the rows run with: on, so an enqueue pays
/// for its check as behind the API, and never reached.
pub const BENCH_ACCOUNT_CAP: u64 = 100_000_000;

/// How many accounts the many-sellers memory row spreads its 100k jobs over.
const MANY_ACCOUNTS: usize = 1000;

fn now_us() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_micros()
}

/// A job as the API stores one: a real marketplace id, two SKUs, a trace context.
fn realistic(i: usize, accounts: usize) -> NewJob {
    let account = format!("seller-{}", i % accounts.max(1));
    let payload = JobPayload::from_json(
        JobKind::Cleanup,
        json!({"account_id": account, "marketplace_id": "ATVPDKIKX0DER", "skus": [format!("SKU-{i}-A"), format!("SKU-{i}-B")]}),
    )
    .expect("valid payload");
    NewJob::new(payload).traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
}

/// The i-th no-op job, in account `bench`, or `b<i mod accounts>` (four digits at least):
/// as long a name as `bench` up to 10,000 accounts, so spreading the jobs does not push
/// the payload past Redis's default `hash-max-listpack-value` (64) and change how the
/// job's hash is stored.
fn noop(i: usize, accounts: usize) -> NewJob {
    let account = if accounts > 1 {
        format!("b{:04}", i % accounts)
    } else {
        "bench".to_owned()
    };
    let payload = JobPayload::from_json(
        JobKind::Cleanup,
        json!({"account_id": account, "marketplace_id": "M", "skus": [format!("s{i}")]}),
    )
    .expect("valid payload");
    NewJob::new(payload)
}

fn behaving(behaviour: &str) -> NewJob {
    let payload = JobPayload::from_json(
        JobKind::Cleanup,
        json!({"account_id": format!("t.{behaviour}"), "marketplace_id": "M", "skus": ["x"]}),
    )
    .expect("valid payload");
    NewJob::new(payload)
}

struct Row {
    bench: String,
    config: String,
    unit: &'static str,
    runs: Vec<f64>,
    notes: String,
}

impl Row {
    fn median(&self) -> f64 {
        let mut v = self.runs.clone();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    }
    fn spread(&self) -> f64 {
        let max = self.runs.iter().copied().fold(f64::MIN, f64::max);
        let min = self.runs.iter().copied().fold(f64::MAX, f64::min);
        (max - min) / self.median() * 100.0
    }
}

/// What the bench runs on; dropped (stopped) at the end.
enum Target {
    Server(RedisServer),
    Cluster(RedisCluster),
}

impl Target {
    fn url(&self) -> String {
        match self {
            Self::Server(s) => s.url(),
            Self::Cluster(c) => c.url(),
        }
    }

    fn describe(&self, aof: bool) -> String {
        match self {
            Self::Server(s) => format!("127.0.0.1:{} ({})", s.port(), if aof { "aof everysec" } else { "noaof" }),
            Self::Cluster(c) => format!("a cluster of {} primaries (noaof)", c.primaries().len()),
        }
    }
}

struct Bench {
    args: Args,
    server: Target,
    store: RedisStore,
    worker_bin: PathBuf,
    rows: Vec<Row>,
}

impl Bench {
    async fn flush(&self) -> Result<()> {
        let mut c = self.store.connection();
        let _: () = redis::cmd("FLUSHALL").query_async(&mut c).await?;
        Ok(())
    }

    fn start_workers(&self, procs: usize, concurrency: usize, behaviour: &str, log_runs: bool) -> Vec<ChildProcess> {
        let ws: Vec<ChildProcess> = (0..procs)
            .map(|i| {
                let mut env = vec![
                    ("DROVER_WORKER__REDIS_URL", self.server.url()),
                    ("DROVER_WORKER__CONCURRENCY__SYNC", "0".into()),
                    ("DROVER_WORKER__CONCURRENCY__BACKFILL", "0".into()),
                    ("DROVER_WORKER__CONCURRENCY__CLEANUP", concurrency.to_string()),
                    ("DROVER_TEST_BEHAVIOUR", behaviour.into()),
                    ("DROVER_WORKER__QUEUE__PARTITIONS", self.args.partitions.to_string()),
                    ("RUST_LOG", "warn,drover::runtime=info".into()),
                ];
                if log_runs {
                    env.push(("DROVER_TEST_LOG_RUNS", "1".into()));
                }
                ChildProcess::spawn(&format!("worker-{i}"), &self.worker_bin, &[], &env)
            })
            .collect();
        for w in &ws {
            assert!(
                w.wait_for_log("worker started", Duration::from_secs(30)),
                "worker did not start:\n{}",
                w.log()
            );
        }
        ws
    }

    async fn succeeded(&self) -> Result<u64> {
        let mut c = self.store.connection();
        let mut total = 0;
        // One pipeline per partition: on a cluster they live on different primaries.
        for k in self.store.all_keys(JobKind::Cleanup) {
            let n: u64 = c.zcard(k.key("state:succeeded")).await?;
            total += n;
        }
        Ok(total)
    }

    async fn wait_succeeded(&self, n: u64, timeout: Duration) -> Result<Instant> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.succeeded().await? >= n {
                return Ok(Instant::now());
            }
            if Instant::now() > deadline {
                bail!("only {} of {n} jobs succeeded within {timeout:?}", self.succeeded().await?);
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    async fn bulk_enqueue(&self, n: usize) -> Result<()> {
        self.bulk_enqueue_of(n, noop, self.args.accounts).await
    }

    /// `n` jobs made by `job(i, accounts)`, in bulk calls of 1000.
    async fn bulk_enqueue_of(&self, n: usize, job: fn(usize, usize) -> NewJob, accounts: usize) -> Result<()> {
        for start in (0..n).step_by(1000) {
            let jobs = (start..(start + 1000).min(n)).map(|i| job(i, accounts)).collect();
            for r in self.store.enqueue_bulk(jobs).await? {
                r?;
            }
        }
        Ok(())
    }

    async fn enqueue(&mut self) -> Result<()> {
        let n = self.args.n;
        let mut bulk = vec![];
        let mut single = vec![];
        let (mut bulk_notes, mut single_notes) = (String::new(), String::new());
        for _ in 0..self.args.reps {
            self.flush().await?;
            let before = self.profile_snapshot(bulk.is_empty()).await?;
            let t = Instant::now();
            self.bulk_enqueue(n).await?;
            bulk.push(n as f64 / t.elapsed().as_secs_f64());
            if let Some(before) = before {
                bulk_notes = self.profile_since(&before, n).await?;
            }

            self.flush().await?;
            let before = self.profile_snapshot(single.is_empty()).await?;
            let t = Instant::now();
            let lanes = 100;
            let tasks: Vec<_> = (0..lanes)
                .map(|lane| {
                    let store = self.store.clone();
                    let accounts = self.args.accounts;
                    tokio::spawn(async move {
                        for i in (lane..n).step_by(lanes) {
                            store.enqueue(noop(i, accounts)).await?;
                        }
                        anyhow::Ok(())
                    })
                })
                .collect();
            for t in tasks {
                t.await??;
            }
            single.push(n as f64 / t.elapsed().as_secs_f64());
            if let Some(before) = before {
                single_notes = self.profile_since(&before, n).await?;
            }
        }
        self.rows.push(Row {
            bench: "enqueue".into(),
            config: "bulk, batches of 1000".into(),
            unit: "jobs/s",
            runs: bulk,
            notes: bulk_notes,
        });
        self.rows.push(Row {
            bench: "enqueue".into(),
            config: "single, 100 in flight".into(),
            unit: "jobs/s",
            runs: single,
            notes: single_notes,
        });
        Ok(())
    }

    async fn process(&mut self) -> Result<()> {
        let n = self.args.n;
        for (procs, conc) in [(1, 1), (1, 10), (1, 50), (2, 50)] {
            let mut runs = vec![];
            let mut notes = String::new();
            let mut worker_cpu = vec![];
            for _ in 0..self.args.reps {
                self.flush().await?;
                self.bulk_enqueue(n).await?;
                self.store_paused(true).await?;
                let workers = self.start_workers(procs, conc, "ok", false);
                // Their CPU, and Redis's with --profile, is counted once they have started,
                // so it is what running the jobs cost.
                for w in &workers {
                    if !w.wait_for_log("worker started", Duration::from_secs(10)) {
                        bail!("a worker did not start within 10 s:\n{}", w.log());
                    }
                }
                let before = self.profile_snapshot(runs.is_empty()).await?;
                let pids: Vec<u32> = workers.iter().map(ChildProcess::pid).collect();
                let cpu_before: Vec<_> = pids.iter().map(|p| proc_cpu::used(*p)).collect();
                let t0 = Instant::now();
                self.store_paused(false).await?;
                let t1 = self.wait_succeeded(n as u64, Duration::from_secs(600)).await?;
                runs.push(n as f64 / (t1 - t0).as_secs_f64());
                let cpu = proc_cpu::used_since(&pids, &cpu_before);
                worker_cpu.push(format!("{:.1}", cpu.as_secs_f64() * 1e6 / n as f64));
                if let Some(before) = before {
                    notes = self.profile_since(&before, n).await?;
                }
                stop(workers);
            }
            let cpu_note = format!("worker CPU per job {} µs", worker_cpu.join(" / "));
            self.rows.push(Row {
                bench: "process".into(),
                config: format!("{procs} proc x c{conc} (completed jobs kept)"),
                unit: "jobs/s",
                runs,
                notes: if notes.is_empty() {
                    cpu_note
                } else {
                    format!("{cpu_note}; {notes}")
                },
            });
        }
        Ok(())
    }

    /// With `--profile`, on the first run of a row (`first`): Redis's command counters now.
    async fn profile_snapshot(&self, first: bool) -> Result<Option<commandstats::Snapshot>> {
        if !(self.args.profile && first) {
            return Ok(None);
        }
        Ok(Some(commandstats::snapshot(&mut self.store.connection()).await?))
    }

    /// Where Redis spent its time per job since `before`.
    async fn profile_since(&self, before: &commandstats::Snapshot, jobs: usize) -> Result<String> {
        let after = commandstats::snapshot(&mut self.store.connection()).await?;
        Ok(commandstats::per_job(before, &after, jobs as u64))
    }

    async fn store_paused(&self, paused: bool) -> Result<()> {
        self.store.set_paused(JobKind::Cleanup, paused).await?;
        Ok(())
    }

    async fn latency(&mut self) -> Result<()> {
        let total = (self.args.lat_rate * self.args.lat_secs) as usize;
        let mut runs = vec![];
        let mut notes = vec![];
        for _ in 0..self.args.reps {
            self.flush().await?;
            let workers = self.start_workers(1, 50, "latency", false);
            let start = Instant::now();
            let interval = Duration::from_secs_f64(1.0 / self.args.lat_rate as f64);
            let mut handles = Vec::with_capacity(total);
            for i in 0..total {
                tokio::time::sleep_until((start + interval * i as u32).into()).await;
                let store = self.store.clone();
                handles.push(tokio::spawn(async move {
                    let payload = JobPayload::from_json(
                        JobKind::Cleanup,
                        json!({"account_id": "bench", "marketplace_id": "M", "skus": [format!("t{}", now_us())]}),
                    )
                    .expect("valid payload");
                    store.enqueue(NewJob::new(payload)).await
                }));
            }
            let offered = total as f64 / start.elapsed().as_secs_f64();
            for h in handles {
                h.await??;
            }
            self.wait_succeeded(total as u64, Duration::from_secs(120)).await?;
            let mut ws = workers;
            for w in &ws {
                w.signal(Signal::SIGTERM);
            }
            let mut summary = None;
            for w in ws.iter_mut() {
                w.wait_exit(Duration::from_secs(30));
                summary = w.log().lines().find_map(|l| l.strip_prefix("LATENCY ").map(str::to_owned));
            }
            let s: serde_json::Value = serde_json::from_str(&summary.context("worker printed no latency summary")?)?;
            runs.push(s["p50_ms"].as_f64().unwrap_or(f64::NAN));
            notes.push(format!(
                "p95 {} / p99 {} / max {} ms, offered {:.0}/s",
                s["p95_ms"], s["p99_ms"], s["max_ms"], offered
            ));
        }
        self.rows.push(Row {
            bench: "latency".into(),
            config: format!(
                "enqueue->handler start, {}/s for {}s, 1proc x c50",
                self.args.lat_rate, self.args.lat_secs
            ),
            unit: "ms p50",
            runs,
            notes: notes.join("; "),
        });
        Ok(())
    }

    async fn crash(&mut self) -> Result<()> {
        let n = self.args.crash_n;
        let mut runs = vec![];
        let mut notes = vec![];
        for _ in 0..self.args.reps {
            self.flush().await?;
            for start in (0..n).step_by(1000) {
                self.store
                    .enqueue_bulk((start..(start + 1000).min(n)).map(|_| behaving("sleep.50")).collect())
                    .await?;
            }
            self.store_paused(true).await?;
            let mut a = self.start_workers(1, 50, "ok", true);
            self.store_paused(false).await?;
            tokio::time::sleep(Duration::from_secs(2)).await;
            let a_pid = a[0].pid();
            a[0].kill();
            let killed = now_us();
            let b = self.start_workers(1, 50, "ok", true);
            self.wait_succeeded(n as u64, Duration::from_secs(600)).await?;
            let mut c = self.store.connection();
            let lines: Vec<String> = redis::cmd("LRANGE").arg("test:runs").arg(0).arg(-1).query_async(&mut c).await?;
            // (job) -> starts by pid, and which of A's runs never ended
            let mut starts: HashMap<String, Vec<(u32, u128)>> = HashMap::new();
            let mut open_in_a: HashMap<String, bool> = HashMap::new();
            for l in &lines {
                let p: Vec<&str> = l.split(' ').collect();
                let (what, id, pid, at): (&str, &str, u32, u128) = (p[0], p[1], p[2].parse()?, p[3].parse()?);
                if pid == a_pid {
                    *open_in_a.entry(id.to_owned()).or_default() = what == "S";
                }
                if what == "S" {
                    starts.entry(id.to_owned()).or_default().push((pid, at));
                }
            }
            let active: Vec<&String> = open_in_a.iter().filter(|(_, open)| **open).map(|(id, _)| id).collect();
            let restarts: Vec<u128> = active
                .iter()
                .filter_map(|id| {
                    starts[*id]
                        .iter()
                        .filter(|(pid, at)| *pid != a_pid && *at > killed)
                        .map(|(_, at)| at - killed)
                        .min()
                })
                .collect();
            let last = restarts.iter().max().copied().unwrap_or(0) as f64 / 1000.0;
            let first = restarts.iter().min().copied().unwrap_or(0) as f64 / 1000.0;
            let twice = starts.values().filter(|s| s.len() > 1).count();
            runs.push(last);
            notes.push(format!(
                "{} active at kill, first restarted {first:.0} ms, {n}/{n} succeeded, {twice} ran twice",
                active.len()
            ));
            stop(b);
        }
        self.rows.push(Row {
            bench: "crash".into(),
            config: format!("{}k x 50 ms, c50, SIGKILL at 2 s: kill -> last active job restarted", n / 1000),
            unit: "ms",
            runs,
            notes: notes.join("; "),
        });
        Ok(())
    }

    async fn memory(&mut self) -> Result<()> {
        let runs = self.memory_per_job(noop, self.args.accounts).await?;
        self.rows.push(Row {
            bench: "memory".into(),
            config: "Redis used_memory per queued job (100k)".into(),
            unit: "bytes",
            runs,
            notes: String::new(),
        });
        let runs = self.memory_per_finished_job().await?;
        self.rows.push(Row {
            bench: "memory".into(),
            config: "Redis used_memory per succeeded job (50k, kept until trimmed)".into(),
            unit: "bytes",
            runs,
            notes: String::new(),
        });
        // A job as the API stores one (a real marketplace id, two SKUs, a trace context)
        // at Redis's default hash-max-listpack-value and at the one redis.conf ships.
        for limit in [64, drover::queue::RECOMMENDED_LISTPACK_VALUE] {
            let _: () = redis::cmd("CONFIG")
                .arg("SET")
                .arg("hash-max-listpack-value")
                .arg(limit)
                .query_async(&mut self.store.connection())
                .await?;
            let runs = self.memory_per_job(realistic, self.args.accounts).await?;
            self.rows.push(Row {
                bench: "memory".into(),
                config: format!("per queued realistic job (100k), hash-max-listpack-value {limit}"),
                unit: "bytes",
                runs,
                notes: String::new(),
            });
        }
        // The same jobs as many sellers queue them, 100 an account: each account's lane
        // and index stay compact (a listpack up to zset-max-listpack-entries, 128), so
        // this is the figure a deployment of many accounts sees.
        let runs = self.memory_per_job(realistic, MANY_ACCOUNTS).await?;
        self.rows.push(Row {
            bench: "memory".into(),
            config: format!(
                "per queued realistic job (100k) over {MANY_ACCOUNTS} accounts, hash-max-listpack-value {}",
                drover::queue::RECOMMENDED_LISTPACK_VALUE
            ),
            unit: "bytes",
            runs,
            notes: String::new(),
        });
        Ok(())
    }

    /// Redis `used_memory` per queued job over 100k jobs made by `job` over `accounts`,
    /// once per rep.
    async fn memory_per_job(&self, job: fn(usize, usize) -> NewJob, accounts: usize) -> Result<Vec<f64>> {
        let n = 100_000;
        let mut runs = vec![];
        for _ in 0..self.args.reps {
            self.flush().await?;
            let before = used_memory(&self.store).await?;
            self.bulk_enqueue_of(n, job, accounts).await?;
            let after = used_memory(&self.store).await?;
            runs.push((after - before) as f64 / n as f64);
        }
        Ok(runs)
    }

    /// Redis `used_memory` per job left by 50k no-op jobs that ran and succeeded (what
    /// retention keeps), once per rep.
    async fn memory_per_finished_job(&self) -> Result<Vec<f64>> {
        let n = 50_000;
        let mut runs = vec![];
        for _ in 0..self.args.reps {
            self.flush().await?;
            let before = used_memory(&self.store).await?;
            self.bulk_enqueue(n).await?;
            let workers = self.start_workers(1, 50, "ok", false);
            self.wait_succeeded(n as u64, Duration::from_secs(120)).await?;
            stop(workers);
            let after = used_memory(&self.store).await?;
            runs.push((after - before) as f64 / n as f64);
        }
        Ok(runs)
    }
}

async fn used_memory(store: &RedisStore) -> Result<i64> {
    let mut c = store.connection();
    let info: String = redis::cmd("INFO").arg("memory").query_async(&mut c).await?;
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .context("used_memory")?
        .trim()
        .parse()
        .context("used_memory value")
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

// glibc malloc showed up as a third of the worker's profile under load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> Result<()> {
    let args = parse_args()?;
    if args.only == ["durability"] {
        return durability::run(args.secs, durability::redis8(args.redis8)).await;
    }
    let server = if args.cluster > 0 {
        if args.aof || args.only.iter().any(|o| o != "enqueue" && o != "process") {
            bail!("--cluster runs the enqueue and process rows only, without --aof");
        }
        Target::Cluster(RedisCluster::start(args.cluster, 0))
    } else {
        Target::Server(RedisServer::start(if args.aof {
            Durability::AofEverySec
        } else {
            Durability::None
        }))
    };
    let defaults = JobDefaults {
        partitions: drover::queue::Partitions::new(args.partitions).map_err(anyhow::Error::msg)?,
        // on, as the API has it, out of the way of rows that queue 100k jobs of an account
        max_unfinished_per_account: BENCH_ACCOUNT_CAP,
        ..JobDefaults::for_runtime()
    };
    let store = RedisStore::connect(&server.url(), "drover", defaults).await?;
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let version: String = {
        let mut c = store.connection();
        // A cluster answers INFO from every primary: a map of node to text.
        let info: redis::Value = redis::cmd("INFO").arg("server").query_async(&mut c).await?;
        let info: String = match info {
            redis::Value::Map(nodes) => nodes
                .into_iter()
                .next()
                .map(|(_, text)| redis::from_redis_value(text))
                .transpose()?
                .unwrap_or_default(),
            one => redis::from_redis_value(one)?,
        };
        info.lines()
            .find_map(|l| l.strip_prefix("redis_version:"))
            .unwrap_or("?")
            .trim()
            .to_owned()
    };
    eprintln!(
        "drover bench: redis {version} on {}, {} partition(s), {} account(s), loadavg {}",
        server.describe(args.aof),
        args.partitions,
        args.accounts,
        load.trim()
    );
    let mut b = Bench {
        worker_bin: sibling("test_worker")?,
        args,
        server,
        store,
        rows: vec![],
    };
    let only = b.args.only.clone();
    for part in &only {
        match part.as_str() {
            "enqueue" => b.enqueue().await?,
            "process" => b.process().await?,
            "latency" => b.latency().await?,
            "crash" => b.crash().await?,
            "memory" => b.memory().await?,
            other => bail!("unknown bench {other}"),
        }
    }
    println!("| bench | config | median | unit | min–max (spread) | notes |");
    println!("|---|---|---:|---|---|---|");
    for r in &b.rows {
        let min = r.runs.iter().copied().fold(f64::MAX, f64::min);
        let max = r.runs.iter().copied().fold(f64::MIN, f64::max);
        println!(
            "| {} | {} | {:.2} | {} | {:.2}–{:.2} ({:.1}%) | {} |",
            r.bench,
            r.config,
            r.median(),
            r.unit,
            min,
            max,
            r.spread(),
            r.notes
        );
    }
    for r in &b.rows {
        println!(
            "{}",
            json!({"bench": r.bench, "config": r.config, "unit": r.unit, "median": r.median(), "runs": r.runs, "notes": r.notes, "variant": if b.args.aof {"aof"} else {"noaof"}})
        );
    }
    Ok(())
}
