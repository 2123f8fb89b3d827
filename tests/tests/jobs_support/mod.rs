//! A whole Drover stack for end-to-end job tests: a private redis-server, a private
//! PostgreSQL database, the marketplace simulator (real HTTP, in this process) and real
//! `drover-worker` processes configured to match the simulator's usage plans.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use drover::crypto::{EncryptionKey, SecretBox, DEV_ENCRYPTION_KEY};
use drover::db::accounts::{AccountRepo, NewAccount};
use drover::job::{AccountId, Job, JobId, JobKind, JobPayload, MarketplaceId};
use drover::lwa::LwaCredentials;
use drover::queue::{JobDefaults, JobStore, NewJob, RedisStore};
use drover_tests::harness::{cargo_bin, ChildProcess, Durability, PgDatabase, RedisServer};
use drover_tests::sim::{AccountSpec, FaultSpec, Operation, RateLimit, SimConfig, SimHandle};

pub const MARKETPLACE: &str = "ATVPDKIKX0DER";

/// Usage plans the simulator enforces and the workers are configured with (the same
/// numbers: a worker that obeys its limiter must never see a 429).
pub fn plans() -> BTreeMap<Operation, RateLimit> {
    BTreeMap::from([
        (Operation::GetOrders, RateLimit::new(20.0, 20)),
        (Operation::GetListingsItem, RateLimit::new(100.0, 100)),
        (Operation::DeleteListingsItem, RateLimit::new(1000.0, 200)),
        (Operation::CreateReport, RateLimit::new(50.0, 20)),
        (Operation::GetReport, RateLimit::new(200.0, 40)),
        (Operation::GetReportDocument, RateLimit::new(50.0, 20)),
        (Operation::GetReports, RateLimit::new(50.0, 20)),
    ])
}

/// [`plans`] with `op`'s plan replaced (for simulator and workers alike).
pub fn plans_with(op: Operation, limit: RateLimit) -> BTreeMap<Operation, RateLimit> {
    let mut plans = plans();
    plans.insert(op, limit);
    plans
}

pub struct Stack {
    pub redis: RedisServer,
    pub db: PgDatabase,
    pub sim: SimHandle,
    pub store: RedisStore,
    config: tempfile::NamedTempFile,
    pub workers: Vec<ChildProcess>,
    plans: BTreeMap<Operation, RateLimit>,
    api: Option<(String, tokio::sync::oneshot::Sender<()>)>,
    /// The API's internal `/metrics` URL, once [`Self::start_api`] ran.
    pub api_metrics: Option<String>,
}

/// Worker settings beyond the plans, as TOML under `[worker]` (tests add their own).
pub const FAST_WORKER: &str = r#"
lease_ms = 1500
heartbeat_ms = 250
grace_ms = 2000
dev_mode = true

[worker.marketplace]
retries = 2
retry_base_ms = 20
retry_max_ms = 200
timeout_ms = 5000
report_poll_interval_ms = 20
report_poll_max_ms = 20000

[worker.retry.sync]
base = 100
max = 500

[worker.retry.backfill]
base = 100
max = 500

[worker.retry.cleanup]
base = 100
max = 500

[worker.resilience.breaker]
window = 2000
min_calls = 10
failure_ratio = 0.5
open_for = 1000

[worker.resilience.cooldown]
steps = [2000, 4000, 8000]
decay_after = 60000
"#;

fn limits_toml(plans: &BTreeMap<Operation, RateLimit>) -> String {
    let mut s = String::from("\n[worker.resilience.limits]\n");
    for (op, plan) in plans {
        s.push_str(&format!("{} = {{ rate = {:?}, burst = {} }}\n", op.name(), plan.rate, plan.burst));
    }
    s
}

impl Stack {
    /// Redis, a database and a simulator with `sim` settings; `extra_toml` is appended
    /// to the workers' configuration file.
    pub async fn start(sim: SimConfig, extra_toml: &str) -> Stack {
        Self::start_with(sim, extra_toml, plans()).await
    }

    /// [`Stack::start`] with a fast simulator that has no demo accounts, and the
    /// workers' default configuration: the test registers what it needs.
    pub async fn start_empty() -> Stack {
        Self::start(
            SimConfig {
                accounts: 0,
                ..SimConfig::fast()
            },
            "",
        )
        .await
    }

    /// As [`Stack::start`], with other usage plans (for simulator and workers alike).
    pub async fn start_with(mut sim: SimConfig, extra_toml: &str, plans: BTreeMap<Operation, RateLimit>) -> Stack {
        let redis = RedisServer::start(Durability::None);
        let db = PgDatabase::create().await;
        sim.rate_limits = sim.rate_limits.merged(&plans);
        let sim = drover_tests::sim::spawn(sim).await.expect("simulator starts");
        let store = RedisStore::connect(
            &redis.url(),
            "drover",
            JobDefaults {
                max_attempts: 5,
                ..Default::default()
            },
        )
        .await
        .expect("queue reachable");
        let mut config = tempfile::Builder::new().suffix(".toml").tempfile().expect("temp config");
        write!(config, "[worker]\n{FAST_WORKER}{}\n{extra_toml}", limits_toml(&plans)).expect("write config");
        Stack {
            redis,
            db,
            sim,
            store,
            config,
            workers: Vec::new(),
            plans,
            api: None,
            api_metrics: None,
        }
    }

    /// Start the HTTP API in this process (dev mode: key `drover-dev-key`) on a free
    /// port, over the same Redis and database; returns its base URL.
    pub async fn start_api(&mut self) -> String {
        let mut config = drover_api::ApiConfig {
            listen: "127.0.0.1:0".into(),
            metrics_listen: "127.0.0.1:0".into(),
            redis_url: self.redis.url().to_owned().into(),
            dev_mode: true,
            marketplace_token_url: self.sim.lwa_url(),
            ..Default::default()
        };
        config.database.url = self.db.url().into();
        config.scheduler.enabled = false;
        config.rate_limit.per_minute = 1_000_000;
        config.rate_limit.burst = 100_000;
        let app = drover_api::build(config).await.expect("the API builds");
        let url = format!("http://{}", app.local_addr());
        self.api_metrics = app.metrics_addr().map(|a| format!("http://{a}/metrics"));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(app.run_until(async move {
            let _ = rx.await;
        }));
        self.api = Some((url.clone(), tx));
        url
    }

    /// Start a `drover-api` process (dev mode: key `drover-dev-key`) on a free port, over
    /// the same Redis and database, with `extra_env`; returns it and its base URL.
    pub fn spawn_api_process(&self, extra_env: &[(&str, &str)]) -> (ChildProcess, String) {
        let mut env: Vec<(&str, String)> = vec![
            ("DROVER_API__LISTEN", "127.0.0.1:0".into()),
            ("DROVER_API__METRICS_LISTEN", "127.0.0.1:0".into()),
            ("DROVER_API__REDIS_URL", self.redis.url()),
            ("DROVER_API__DATABASE__URL", self.db.url()),
            ("DROVER_API__DEV_MODE", "true".into()),
            ("DROVER_API__SCHEDULER__ENABLED", "false".into()),
            ("RUST_LOG", "info".into()),
        ];
        env.extend(extra_env.iter().map(|(k, v)| (*k, v.to_string())));
        let api = ChildProcess::spawn("drover-api", &cargo_bin("drover-api"), &[], &env);
        assert!(
            api.wait_for_log("drover-api listening", Duration::from_secs(30)),
            "the API did not start:\n{}",
            api.log()
        );
        let log = api.log();
        let addr = log
            .lines()
            .filter(|l| l.contains("drover-api listening"))
            .find_map(|l| {
                serde_json::from_str::<serde_json::Value>(l).ok()?["addr"]
                    .as_str()
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| panic!("no address in the API's log:\n{log}"));
        (api, format!("http://{addr}"))
    }

    /// Makes `account`'s circuit breaker entry for `operation` unreadable (a string where
    /// a hash belongs): every read of its guards then fails, as on a shard that is down.
    pub async fn unreadable_breaker(&self, account: &str, operation: &str) {
        let mut conn = redis::Client::open(self.redis.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let _: () = redis::cmd("SET")
            .arg(format!("drover:cb:{{{account}}}:{operation}"))
            .arg("not a breaker")
            .query_async(&mut conn)
            .await
            .unwrap();
    }

    /// Puts `account`'s circuit breaker for `operation` half-open with another caller's
    /// probe out for `out_for` from now (Redis's clock), as while a probe call hangs: the
    /// seller's other calls of the operation are refused until it ends.
    pub async fn breaker_probe_out(&self, account: &str, operation: &str, out_for: Duration) {
        let mut conn = redis::Client::open(self.redis.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let (secs, micros): (i64, i64) = redis::cmd("TIME").query_async(&mut conn).await.unwrap();
        let until = secs * 1000 + micros / 1000 + out_for.as_millis() as i64;
        let key = format!("drover:cb:{{{account}}}:{operation}");
        let _: () = redis::pipe()
            .hset_multiple(&key, &[("st", "half".to_owned()), ("pu", until.to_string())])
            .pexpire(&key, 120_000)
            .query_async(&mut conn)
            .await
            .unwrap();
    }

    /// Start a `drover-worker` process and wait until it runs.
    pub fn spawn_worker(&mut self, name: &str, extra_env: &[(&str, &str)]) -> usize {
        let mut env = vec![
            ("DROVER_CONFIG", self.config.path().display().to_string()),
            ("DROVER_WORKER__REDIS_URL", self.redis.url()),
            ("DROVER_WORKER__DATABASE__URL", self.db.url()),
            ("DROVER_WORKER__MARKETPLACE__BASE_URL", self.sim.base_url().to_owned()),
            ("RUST_LOG", "info".to_owned()),
        ];
        // Port 0 unless the test asks for one, so workers on one machine never collide.
        if !extra_env.iter().any(|(k, _)| *k == "DROVER_WORKER__METRICS_LISTEN") {
            env.push(("DROVER_WORKER__METRICS_LISTEN", "127.0.0.1:0".to_owned()));
        }
        env.extend(extra_env.iter().map(|(k, v)| (*k, v.to_string())));
        let w = ChildProcess::spawn(name, &cargo_bin("drover-worker"), &[], &env);
        assert!(
            w.wait_for_log("worker started", Duration::from_secs(30)),
            "worker did not start:\n{}",
            w.log()
        );
        self.workers.push(w);
        self.workers.len() - 1
    }

    /// A worker in this process, wired as the real one (`drover_worker::app::App`) from the
    /// workers' configuration over the stack's queue, database and simulator, but for its
    /// rate-limit store (limiter, breaker, cooldown, token cache), which is the Redis at
    /// `store_url` rather than the queue's: a test can make that store fail while the
    /// queue's Redis stays up (as one shard of a cluster can). It stops when the returned
    /// sender is dropped (or the test ends).
    pub fn run_worker_with_limiter_store(&self, store_url: &str) -> tokio::sync::oneshot::Sender<()> {
        use drover::redis_conn::{RedisSource, Timeouts};
        use drover::resilience::Resilience;
        use drover_worker::jobs::Jobs;
        use drover_worker::marketplace::MarketplaceClient;

        let path = self.config.path().to_str().expect("a UTF-8 temp path").to_owned();
        let mut config = drover_worker::WorkerConfig::load(Some(path.as_str())).expect("the workers' configuration");
        config.redis_url = self.redis.url().into();
        config.namespace = "drover".into();
        config.database.url = self.db.url().into();
        config.marketplace.base_url = self.sim.base_url().to_owned();
        let key = config.validate_jobs().expect("a valid worker configuration");
        let pool = drover::db::connect_lazy(&config.database).expect("a database pool");
        let store = RedisSource::new(store_url)
            .expect("the store's URL")
            .lazy(Timeouts::default())
            .expect("a connection to the store");
        let resilience = Resilience::new(store, &config.namespace, config.resilience.clone(), &key);
        let market = MarketplaceClient::new(config.marketplace.clone(), resilience).expect("the marketplace client");
        let jobs = Jobs::new(
            market,
            pool,
            config.database.call_deadline(),
            SecretBox::new(&key),
            config.jobs.clone(),
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(drover_worker::run(config, jobs, async move {
            let _ = stopped.await;
        }));
        stop
    }

    /// Register a simulator account (with `spec`'s data) and the same account in Drover.
    /// Its usage plans are the stack's, but for those `spec` names (the marketplace's
    /// own for this account, which the workers' configuration does not know).
    pub async fn account(&self, spec: AccountSpec) -> AccountId {
        let mut spec = spec;
        let own = std::mem::take(&mut spec.rate_limits);
        spec.rate_limits = self.plans.clone();
        spec.rate_limits.extend(own);
        let info = self.sim.admin().register_account(&spec).await.expect("simulator account");
        let id = AccountId::parse(info.account_id.clone()).expect("account id");
        self.store_account(&id, &info).await;
        id
    }

    /// Another Drover account, `id`, for the simulator seller behind `of`, with the very
    /// same credentials (one seller registered twice, as for two of its marketplaces):
    /// the marketplace counts both accounts' calls against that seller's one plan.
    pub async fn same_seller_as(&self, id: &str, of: &AccountId) -> AccountId {
        let info = self
            .sim
            .admin()
            .accounts()
            .await
            .expect("simulator accounts")
            .into_iter()
            .find(|a| a.account_id == of.as_str())
            .expect("the seller is in the simulator");
        let id = AccountId::parse(id).expect("account id");
        self.store_account(&id, &info).await;
        id
    }

    /// Store Drover account `id` with the simulator account `info`'s credentials.
    async fn store_account(&self, id: &AccountId, info: &drover_tests::sim::AccountInfo) {
        let repo = AccountRepo::new(self.db.pool().clone());
        let key = EncryptionKey::parse(DEV_ENCRYPTION_KEY).expect("dev key");
        repo.insert(
            &NewAccount {
                id: id.clone(),
                seller_id: info.seller_id.clone(),
                marketplace_ids: vec![MarketplaceId::parse(MARKETPLACE).expect("marketplace")],
                credentials: LwaCredentials {
                    client_id: info.client_id.clone(),
                    client_secret: self.sim.config().client_secret.clone().into(),
                    refresh_token: info.refresh_token.clone().into(),
                },
            },
            &SecretBox::new(&key),
        )
        .await
        .expect("account stored");
    }

    /// A seller of `skus` listings in the simulator, suffering `faults`: its account and
    /// its SKUs.
    pub async fn seller(&self, name: &str, skus: usize, faults: FaultSpec) -> (AccountId, Vec<String>) {
        let acct = self
            .account(AccountSpec {
                skus: Some(skus),
                ..AccountSpec::new(name)
            })
            .await;
        let listed = self.sim.admin().skus(acct.as_str()).await.expect("simulator SKUs");
        self.faults(&acct, faults).await;
        (acct, listed)
    }

    /// Replace the account's faults in the simulator.
    pub async fn faults(&self, account: &AccountId, spec: FaultSpec) {
        self.sim
            .admin()
            .set_faults(account.as_str(), &spec)
            .await
            .expect("simulator faults");
    }

    /// Wait until the job reports at least `done` items of progress.
    pub async fn progress_at_least(&self, id: &JobId, done: u64, timeout: Duration) {
        let until = Instant::now() + timeout;
        loop {
            let job = self.store.get(id).await.expect("store").expect("job exists");
            if job.progress.as_ref().is_some_and(|p| p.done >= done) {
                return;
            }
            assert!(
                Instant::now() < until && !job.state.is_terminal(),
                "no progress to {done}: {job:#?}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// What the simulator saw of `account`'s calls of `op`.
    pub async fn op_stats(&self, account: &AccountId, op: Operation) -> drover_tests::sim::OpStats {
        let stats = self.sim.admin().stats().await.expect("simulator stats");
        stats.accounts[account.as_str()].operations[&op].clone()
    }

    /// A sync of `account`'s `resources` in the stack's marketplace.
    pub async fn submit_sync(&self, account: &AccountId, resources: &[&str]) -> JobId {
        self.submit(
            JobKind::Sync,
            serde_json::json!({"account_id": account.as_str(), "marketplace_id": MARKETPLACE, "resources": resources}),
        )
        .await
    }

    pub async fn submit(&self, kind: JobKind, payload: serde_json::Value) -> JobId {
        let payload = JobPayload::from_json(kind, payload).expect("valid payload");
        self.store.enqueue(NewJob::new(payload)).await.expect("enqueued").id
    }

    /// Wait until a run of the job has ended with an error, and give that error (or fail
    /// the test after `timeout` with the job and the workers' logs).
    pub async fn first_run_error(&self, id: &JobId, timeout: Duration) -> drover::job::ErrorInfo {
        let until = Instant::now() + timeout;
        loop {
            let job = self.store.get(id).await.expect("store").expect("job exists");
            if let Some(e) = job.attempt_history.iter().find_map(|a| a.error.clone()) {
                return e;
            }
            assert!(
                Instant::now() < until,
                "no run of {id} ended after {timeout:?}: {job:#?}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Wait until the job is in a terminal state (or `timeout`, which fails the test
    /// with the job and the workers' logs).
    pub async fn finish(&self, id: &JobId, timeout: Duration) -> Job {
        let until = Instant::now() + timeout;
        loop {
            let job = self.store.get(id).await.expect("store").expect("job exists");
            if job.state.is_terminal() {
                return job;
            }
            if Instant::now() > until {
                panic!("job {id} not finished after {timeout:?}: {job:#?}\n{}", self.logs());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Submit a cleanup of `skus` for `account` in the test marketplace.
    pub async fn submit_cleanup(&self, account: &AccountId, skus: &[String]) -> JobId {
        self.submit(
            JobKind::Cleanup,
            serde_json::json!({"account_id": account.as_str(), "marketplace_id": MARKETPLACE, "skus": skus}),
        )
        .await
    }

    /// Submit a backfill of `account`'s last `days` days of orders (by order date), one
    /// report per day.
    pub async fn submit_backfill_days(&self, account: &AccountId, days: i64) -> JobId {
        let end = chrono::Utc::now();
        let start = end - chrono::Duration::days(days);
        self.submit(
            JobKind::Backfill,
            serde_json::json!({"account_id": account.as_str(), "marketplace_id": MARKETPLACE, "window_hours": 24,
                "report_type": "GET_FLAT_FILE_ALL_ORDERS_DATA_BY_ORDER_DATE_GENERAL", "start": start, "end": end}),
        )
        .await
    }

    /// The SKUs the marketplace itself deleted for `account` (answered 204, not 404),
    /// one entry per delete, in the order they arrived.
    pub async fn deleted_by_marketplace(&self, account: &AccountId) -> Vec<String> {
        let deletes = self.sim.admin().deletes(account.as_str()).await.expect("simulator deletes");
        deletes
            .into_iter()
            .filter(|d| d.outcome == drover_tests::sim::DeleteOutcome::Deleted)
            .map(|d| d.sku)
            .collect()
    }

    pub fn logs(&self) -> String {
        self.workers.iter().map(|w| w.log()).collect::<Vec<_>>().join("\n----\n")
    }

    pub async fn count(&self, sql: &str, bind: &str) -> i64 {
        sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql.to_owned()))
            .bind(bind)
            .fetch_one(self.db.pool())
            .await
            .expect("count query")
    }
}
