//! The console under a full queue, measured (issue 17, "Must show"). Not a test: it prints
//! figures.
//!
//! Starts a private redis-server, a private Postgres database and the API (release build
//! of this crate, in process) with the console; fills the cleanup queue with `--jobs` jobs
//! of `--accounts` accounts, `--dead` of them dead in `--shapes` error shapes that differ
//! only by SKU; then requests each console page `--reps` times in a row (signed in, on
//! loopback) and prints p50 / p95 / max response time per page. Then Redis's own CPU time
//! (`INFO cpu`) over `--window-secs` with nobody looking, against the same window with an
//! overview open (its refresh every 5 s, as a browser tab does it), as the share of one
//! core the console adds. Everything it started is stopped by PID.
//!
//! `cargo build --release -p drover-tests --bins &&
//!  $CARGO_TARGET_DIR/release/console_bench [--jobs 100000] [--dead 10000] [--reps 20] [--window-secs 30]`
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use drover::job::{ErrorClass, ErrorInfo, JobKind, JobPayload};
use drover::queue::{JobStore, NewJob, SettleAction, Settlement};
use drover_tests::harness::{Durability, PgDatabase, RedisServer};
use reqwest::header::{COOKIE, SET_COOKIE};

const KEY: &str = "drover-dev-key";

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 100_000)]
    jobs: usize,
    /// How many of them die.
    #[arg(long, default_value_t = 10_000)]
    dead: usize,
    #[arg(long, default_value_t = 20)]
    shapes: usize,
    #[arg(long, default_value_t = 200)]
    accounts: usize,
    #[arg(long, default_value_t = 20)]
    reps: usize,
    #[arg(long, default_value_t = 30)]
    window_secs: u64,
}

fn cleanup(account: &str, n: usize) -> JobPayload {
    JobPayload::from_json(
        JobKind::Cleanup,
        serde_json::json!({"account_id": account, "marketplace_id": "ATVPDKIKX0DER", "skus": [format!("SKU-{n:06}")]}),
    )
    .expect("a cleanup payload")
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let redis = RedisServer::start(Durability::None);
    let db = PgDatabase::create().await;
    let mut config = drover_api::ApiConfig {
        listen: "127.0.0.1:0".into(),
        metrics_listen: String::new(),
        redis_url: redis.url().into(),
        dev_mode: true,
        ..Default::default()
    };
    config.database.url = db.url().into();
    config.scheduler.enabled = false;
    config.rate_limit.per_minute = 1_000_000;
    config.rate_limit.burst = 100_000;
    config.read_rate_limit.per_minute = 1_000_000;
    config.read_rate_limit.burst = 100_000;
    let app = drover_api::build(config).await.context("the API builds")?;
    let base = format!("http://{}", app.local_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));
    let store = drover::queue::RedisStore::connect(&redis.url(), "drover", drover::queue::JobDefaults::for_runtime()).await?;

    let filled = Instant::now();
    let mut n = 0;
    while n < args.jobs {
        let batch: Vec<NewJob> = (n..(n + 1000).min(args.jobs))
            .map(|i| NewJob::new(cleanup(&format!("acct-{}", i % args.accounts), i)))
            .collect();
        n += batch.len();
        store.enqueue_bulk(batch).await?;
    }
    let mut died = 0;
    while died < args.dead {
        let leased = store
            .fetch(JobKind::Cleanup, "bench", 500.min(args.dead - died), Duration::from_secs(60))
            .await?;
        let settles: Vec<Settlement> = leased
            .jobs
            .into_iter()
            .enumerate()
            .map(|(i, j)| Settlement {
                id: j.id,
                token: j.token,
                action: SettleAction::Dead(ErrorInfo {
                    class: ErrorClass::Permanent,
                    message: format!("shape {} failed for SKU-{:06}", (died + i) % args.shapes, died + i),
                }),
                attempt: None,
            })
            .collect();
        died += settles.len();
        store.settle(JobKind::Cleanup, &settles).await?;
    }
    println!(
        "filled: {} cleanup jobs of {} accounts, {} dead in {} shapes, in {:.1} s",
        args.jobs,
        args.accounts,
        args.dead,
        args.shapes,
        filled.elapsed().as_secs_f64()
    );

    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;
    let login = http.post(format!("{base}/ui/login")).form(&[("key", KEY)]).send().await?;
    let cookie = login.headers()[SET_COOKIE]
        .to_str()?
        .split(';')
        .next()
        .unwrap_or_default()
        .to_owned();
    let some_job: serde_json::Value = http
        .get(format!("{base}/v1/dead-letter?limit=1"))
        .bearer_auth(KEY)
        .send()
        .await?
        .json()
        .await?;
    let job_id = some_job["jobs"][0]["id"].as_str().unwrap_or_default().to_owned();
    let pages = [
        "/ui".to_owned(),
        "/ui/jobs".to_owned(),
        "/ui/jobs?state=dead".to_owned(),
        "/ui/jobs?account_id=acct-7".to_owned(),
        "/ui/dead-letter".to_owned(),
        "/ui/queues".to_owned(),
        format!("/ui/jobs/{job_id}"),
    ];
    println!("{:<28} {:>8} {:>8} {:>8} {:>9}", "page", "p50 ms", "p95 ms", "max ms", "bytes");
    for page in &pages {
        let mut ms = Vec::new();
        let mut bytes = 0;
        for _ in 0..args.reps {
            let t = Instant::now();
            let res = http.get(format!("{base}{page}")).header(COOKIE, &cookie).send().await?;
            let status = res.status();
            let body = res.text().await?;
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
            anyhow::ensure!(status == 200, "{page}: {status}");
            bytes = body.len();
        }
        ms.sort_by(f64::total_cmp);
        let at = |q: f64| ms[((ms.len() as f64 - 1.0) * q).round() as usize];
        println!("{page:<28} {:>8.1} {:>8.1} {:>8.1} {:>9}", at(0.5), at(0.95), at(1.0), bytes);
    }

    let cpu = || -> Result<f64> {
        let mut c = redis.conn();
        let info: String = redis::cmd("INFO").arg("cpu").query(&mut c)?;
        let field = |name: &str| -> f64 {
            info.lines()
                .find_map(|l| l.strip_prefix(&format!("{name}:")))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0.0)
        };
        Ok(field("used_cpu_sys") + field("used_cpu_user"))
    };
    let window = Duration::from_secs(args.window_secs);
    let idle_start = cpu()?;
    tokio::time::sleep(window).await;
    let idle = cpu()? - idle_start;
    let busy_start = cpu()?;
    let until = Instant::now() + window;
    while Instant::now() < until {
        let res = http.get(format!("{base}/ui")).header(COOKIE, &cookie).send().await?;
        anyhow::ensure!(res.status() == 200, "overview: {}", res.status());
        let _ = res.text().await?;
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    let busy = cpu()? - busy_start;
    let secs = window.as_secs_f64();
    println!(
        "redis cpu over {secs:.0} s: idle {:.3}% of a core, overview open (refresh every 5 s) {:.3}%: the console adds {:.3}%",
        idle / secs * 100.0,
        busy / secs * 100.0,
        (busy - idle).max(0.0) / secs * 100.0
    );
    let _ = stop.send(());
    let _ = server.await;
    Ok(())
}
