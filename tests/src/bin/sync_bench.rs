//! How long a sync of 5,000 orders takes against the time the marketplace's rate limits
//! allow at minimum (issue target: within 2×). Not a test: it prints figures.
//!
//! Starts a private redis-server, a private Postgres database, the simulator (getOrders
//! plan `--rate`/`--burst`, 5,000 orders = 50 pages of 100) and one `drover-worker`
//! process configured with the same plan, runs `--reps` syncs of fresh accounts, and
//! prints each run's time beside the minimum: `max(0, pages − burst) / rate` (the
//! simulator's bucket starts full).
//!
//! `cargo build --release -p drover-worker -p drover-tests --bins &&
//!  $CARGO_TARGET_DIR/release/sync_bench [--rate 10] [--burst 20] [--orders 5000] [--reps 3] [--cold-start empty|full]`
use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use drover::crypto::{EncryptionKey, SecretBox, DEV_ENCRYPTION_KEY};
use drover::db::accounts::{AccountRepo, NewAccount};
use drover::job::{AccountId, JobKind, JobPayload, JobState, MarketplaceId};
use drover::lwa::LwaCredentials;
use drover::queue::{JobDefaults, JobStore, NewJob, RedisStore};
use drover_tests::harness::{ChildProcess, Durability, PgDatabase, RedisServer};
use drover_tests::sim::{AccountSpec, Operation, RateLimit, SimConfig, US_MARKETPLACE};

#[derive(Parser)]
struct Args {
    /// getOrders requests per second (simulator and workers alike).
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    #[arg(long, default_value_t = 20)]
    burst: u32,
    #[arg(long, default_value_t = 5000)]
    orders: usize,
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// The limiter's assumption for an account it has no state for: empty or full.
    #[arg(long, default_value = "empty")]
    cold_start: String,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let redis = RedisServer::start(Durability::None);
    let db = PgDatabase::create().await;
    let plan = RateLimit::new(args.rate, args.burst);
    let mut sim_config = SimConfig {
        accounts: 0,
        ..SimConfig::fast()
    };
    sim_config.rate_limits = sim_config.rate_limits.merged(&BTreeMap::from([(Operation::GetOrders, plan)]));
    let sim = drover_tests::sim::spawn(sim_config).await?;
    let store = RedisStore::connect(&redis.url(), "drover", JobDefaults::default()).await?;

    let mut config = tempfile::Builder::new().suffix(".toml").tempfile()?;
    write!(
        config,
        "[worker]\ndev_mode = true\n[worker.resilience.limits]\ngetOrders = {{ rate = {:?}, burst = {} }}\n\
         [worker.resilience.limiter]\ncold_start = {:?}\n",
        args.rate, args.burst, args.cold_start
    )?;
    let worker_bin = std::env::current_exe()?.parent().context("exe dir")?.join("drover-worker");
    if !worker_bin.exists() {
        bail!("{} is not built (cargo build --release -p drover-worker)", worker_bin.display());
    }
    let worker = ChildProcess::spawn(
        "worker",
        &worker_bin,
        &[],
        &[
            ("DROVER_CONFIG", config.path().display().to_string()),
            ("DROVER_WORKER__REDIS_URL", redis.url()),
            ("DROVER_WORKER__DATABASE__URL", db.url()),
            ("DROVER_WORKER__MARKETPLACE__BASE_URL", sim.base_url().to_owned()),
            ("RUST_LOG", "warn,drover::runtime=info".to_owned()),
        ],
    );
    if !worker.wait_for_log("worker started", Duration::from_secs(30)) {
        bail!("worker did not start:\n{}", worker.log());
    }

    let pages = args.orders.div_ceil(100);
    let minimum = pages.saturating_sub(args.burst as usize) as f64 / args.rate;
    println!(
        "sync of {} orders ({pages} pages of 100), getOrders plan {}/s burst {}, limiter cold start {}: minimum the limits allow {minimum:.2} s",
        args.orders, args.rate, args.burst, args.cold_start
    );
    let repo = AccountRepo::new(db.pool().clone());
    let secrets = SecretBox::new(&EncryptionKey::parse(DEV_ENCRYPTION_KEY).map_err(anyhow::Error::msg)?);
    for rep in 1..=args.reps {
        let name = format!("bench-{rep}");
        let info = sim
            .admin()
            .register_account(&AccountSpec {
                orders: Some(args.orders),
                rate_limits: BTreeMap::from([(Operation::GetOrders, plan)]),
                ..AccountSpec::new(name.clone())
            })
            .await?;
        let id = AccountId::parse(name.clone()).map_err(anyhow::Error::msg)?;
        repo.insert(
            &NewAccount {
                id: id.clone(),
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
        let since = chrono::Utc::now() - chrono::Duration::days(90);
        let payload = JobPayload::from_json(
            JobKind::Sync,
            serde_json::json!({"account_id": name, "marketplace_id": US_MARKETPLACE, "resources": ["orders"], "since": since}),
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        let submitted = Instant::now();
        let job_id = store.enqueue(NewJob::new(payload)).await?.id;
        let job = loop {
            let job = store.get(&job_id).await?.context("job vanished")?;
            if job.state.is_terminal() {
                break job;
            }
            if submitted.elapsed() > Duration::from_secs(600) {
                bail!("sync did not finish in 10 minutes:\n{}", worker.log());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let took = submitted.elapsed().as_secs_f64();
        if job.state != JobState::Succeeded {
            bail!("sync ended {:?}: {:?}", job.state, job.attempt_history);
        }
        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM orders WHERE account_id = $1")
            .bind(&name)
            .fetch_one(db.pool())
            .await?;
        println!(
            "run {rep}: {took:.2} s submit→done, {rows} orders stored, {:.2}× the minimum{}",
            if minimum > 0.0 { took / minimum } else { f64::NAN },
            if minimum > 0.0 && took <= 2.0 * minimum {
                " (target ≤ 2×: met)"
            } else {
                " (target ≤ 2×: MISSED)"
            }
        );
    }
    Ok(())
}
