//! One app per test: a private redis-server, the API built by the library on port 0, a
//! reqwest client and a direct store handle (to put jobs in states a test needs).
use std::net::SocketAddr;
use std::time::Duration;

use drover::job::{ErrorClass, ErrorInfo, JobId, JobKind, JobPayload};
use drover::queue::{JobDefaults, JobStore, RedisStore, SettleAction, Settlement};
use drover_api::{ApiConfig, KeyEntry, Role};
use drover_tests::harness::{Durability, PgDatabase, RedisServer};
use reqwest::{RequestBuilder, Response};
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Keys every test app knows (name → the key sent in `Authorization: Bearer`).
pub const ADMIN: &str = "k-admin";
pub const READER: &str = "k-read";
pub const SUBMITTER: &str = "k-submit";
/// Admin, but only for account `acme`.
pub const ACME: &str = "k-acme";
/// Read, for accounts `acme` and `globex`.
pub const MULTI: &str = "k-multi";
/// Submit, only for account `acme` (a tenant's integration).
pub const ACME_SUB: &str = "k-acme-sub";
/// Submit, only for account `globex` (another tenant's integration).
pub const GLOBEX_SUB: &str = "k-globex-sub";

pub const MARKETPLACE: &str = "ATVPDKIKX0DER";

/// The sealing key of test apps (not the published dev key, which is refused outside dev mode).
pub const TEST_ENCRYPTION_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// `database.url` of [`test_config`]: [`start`] replaces it with a fresh [`PgDatabase`]
/// that lives as long as the app. Set another URL to use that database instead.
pub const FRESH_DATABASE: &str = "postgres://fresh-test-database.invalid/drover";

fn key(name: &str, secret: &str, role: Role, accounts: Option<&[&str]>) -> KeyEntry {
    KeyEntry {
        name: name.into(),
        key_sha256: drover_api::hash_key(&secret.into()),
        role,
        accounts: accounts.map(|a| a.iter().map(|s| s.to_string()).collect()),
        callback_hosts: None,
        callback_secret: None,
    }
}

pub fn test_config(redis_url: &str) -> ApiConfig {
    let mut c = ApiConfig {
        listen: "127.0.0.1:0".into(),
        metrics_listen: "127.0.0.1:0".into(),
        redis_url: redis_url.into(),
        keys: vec![
            key("admin", ADMIN, Role::Admin, None),
            key("reader", READER, Role::Read, None),
            key("submitter", SUBMITTER, Role::Submit, None),
            key("acme", ACME, Role::Admin, Some(&["acme"])),
            key("multi", MULTI, Role::Read, Some(&["acme", "globex"])),
            key("acme-sub", ACME_SUB, Role::Submit, Some(&["acme"])),
            key("globex-sub", GLOBEX_SUB, Role::Submit, Some(&["globex"])),
        ],
        shutdown_grace_ms: 2000,
        events_poll_ms: 50,
        encryption_key: TEST_ENCRYPTION_KEY.into(),
        // Tests that register accounts point this at a simulator (plain http on loopback).
        marketplace_token_url: "http://127.0.0.1:9/auth/o2/token".into(),
        insecure_marketplace_http: true,
        ..Default::default()
    };
    c.database.url = FRESH_DATABASE.into();
    // Tests send bursts; the limit has its own test.
    c.rate_limit.per_minute = 1_000_000;
    c.rate_limit.burst = 100_000;
    // Tests sign in to the console often, all from 127.0.0.1; the limit has its own test.
    c.ui.login_limit.per_minute = 1_000_000;
    c.ui.login_limit.burst = 100_000;
    c.jobs.max_attempts = 3;
    // Tests that want the scheduler switch it on; elsewhere a tick must not add jobs.
    c.scheduler.enabled = false;
    c
}

pub struct TestApp {
    pub addr: SocketAddr,
    /// The internal listener serving `/metrics`.
    pub metrics_addr: Option<SocketAddr>,
    pub client: reqwest::Client,
    pub redis: RedisServer,
    pub store: RedisStore,
    /// The app's Postgres database (dropped when the app stops).
    pub database_url: String,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<std::io::Result<()>>>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Durability::None, |_| {}).await
}

pub async fn spawn_app_with(durability: Durability, tweak: impl FnOnce(&mut ApiConfig)) -> TestApp {
    let redis = RedisServer::start(durability);
    let mut config = test_config(&redis.url());
    tweak(&mut config);
    let started = start_app(config).await;
    let (addr, stop, server, database_url) = (started.addr, started.stop, started.server, started.database_url);
    let store = RedisStore::connect(&redis.url(), "drover", JobDefaults::default()).await.unwrap();
    TestApp {
        addr,
        metrics_addr: started.metrics_addr,
        client: reqwest::Client::new(),
        redis,
        store,
        database_url,
        stop: Some(stop),
        server: Some(server),
    }
}

/// An app that reaches its Redis through a relay the test can freeze (the test's own
/// store connects directly).
pub async fn spawn_app_behind_relay(tweak: impl FnOnce(&mut ApiConfig)) -> (TestApp, drover_tests::harness::FrozenProxy) {
    let redis = RedisServer::start(Durability::None);
    let target = redis
        .url()
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .parse()
        .expect("a host:port URL");
    let relay = drover_tests::harness::FrozenProxy::start(target).await;
    let mut config = test_config(&relay.url());
    tweak(&mut config);
    let started = start_app(config).await;
    let store = RedisStore::connect(&redis.url(), "drover", JobDefaults::default()).await.unwrap();
    let app = TestApp {
        addr: started.addr,
        metrics_addr: started.metrics_addr,
        client: reqwest::Client::new(),
        redis,
        store,
        database_url: started.database_url,
        stop: Some(started.stop),
        server: Some(started.server),
    };
    (app, relay)
}

/// Build and run an app; (its address, the sender that stops it, its task).
pub async fn start(config: ApiConfig) -> (SocketAddr, oneshot::Sender<()>, JoinHandle<std::io::Result<()>>) {
    let (addr, tx, server, _) = start_with_database(config).await;
    (addr, tx, server)
}

/// [`start`], also giving the database URL the app uses.
pub async fn start_with_database(config: ApiConfig) -> (SocketAddr, oneshot::Sender<()>, JoinHandle<std::io::Result<()>>, String) {
    let s = start_app(config).await;
    (s.addr, s.stop, s.server, s.database_url)
}

/// A running app: its addresses, the sender that stops it, its task, its database URL.
pub struct Started {
    pub addr: SocketAddr,
    pub metrics_addr: Option<SocketAddr>,
    pub stop: oneshot::Sender<()>,
    pub server: JoinHandle<std::io::Result<()>>,
    pub database_url: String,
}

/// Build and run an app, with a fresh database unless the config names one.
pub async fn start_app(mut config: ApiConfig) -> Started {
    use secrecy::ExposeSecret;
    // The server task owns the database, so it is dropped when the app stops, or when the
    // test's runtime ends (a panicking test included).
    let database = if config.database.url.expose_secret() == FRESH_DATABASE {
        let db = PgDatabase::create().await;
        config.database.url = db.url().into();
        Some(db)
    } else {
        None
    };
    let database_url = config.database.url.expose_secret().to_owned();
    let app = drover_api::build(config).await.expect("the app builds");
    let addr = app.local_addr();
    let metrics_addr = app.metrics_addr();
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let _database = database;
        app.run_until(async move {
            let _ = rx.await;
        })
        .await
    });
    Started {
        addr,
        metrics_addr,
        stop: tx,
        server,
        database_url,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// What a live worker does on every queue it serves each heartbeat (a beat): the
    /// queues count as served for the next 15 s, so a queued job waits for a slot, not
    /// for a worker (`waiting.reason` `queued`, not `no_worker`).
    pub async fn worker_beat(&self) {
        use drover::queue::JobStore;
        for kind in drover::job::JobKind::ALL {
            self.store.beat(kind).await.unwrap();
        }
    }

    /// A counter of the app's Redis from `INFO stats` (`total_commands_processed`,
    /// `total_net_output_bytes`, …).
    pub fn redis_stat(&self, field: &str) -> u64 {
        let info: String = redis::cmd("INFO").arg("stats").query(&mut self.redis.conn()).unwrap();
        info.lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("INFO stats has no {field}"))
    }

    /// `/metrics` on the internal listener.
    pub fn metrics_url(&self) -> String {
        format!("http://{}/metrics", self.metrics_addr.expect("metrics are on in tests"))
    }

    pub fn get(&self, key: &str, path: &str) -> RequestBuilder {
        self.client.get(self.url(path)).bearer_auth(key)
    }

    pub fn post(&self, key: &str, path: &str) -> RequestBuilder {
        self.client.post(self.url(path)).bearer_auth(key)
    }

    pub async fn submit(&self, key: &str, body: &Value) -> Response {
        self.post(key, "/v1/jobs").json(body).send().await.unwrap()
    }

    /// `GET` with this key, expecting a 200 with JSON; the body.
    pub async fn get_json(&self, key: &str, path: &str) -> Value {
        let res = self.get(key, path).send().await.unwrap();
        assert_eq!(res.status(), 200, "GET {path}");
        res.json().await.unwrap()
    }

    /// A `test_worker` process for this app's cleanup jobs (sync and backfill slots 0),
    /// started and announced; `extra` adds or overrides its environment.
    pub fn cleanup_worker(&self, extra: &[(&str, String)]) -> drover_tests::harness::ChildProcess {
        let mut env = vec![
            ("DROVER_WORKER__REDIS_URL", self.redis.url()),
            ("DROVER_WORKER__CONCURRENCY__SYNC", "0".to_owned()),
            ("DROVER_WORKER__CONCURRENCY__BACKFILL", "0".to_owned()),
            ("DROVER_WORKER__METRICS_LISTEN", String::new()),
            ("DROVER_WORKER__ENCRYPTION_KEY", TEST_ENCRYPTION_KEY.to_owned()),
            ("DROVER_WORKER__HEARTBEAT_MS", "100".to_owned()),
            ("DROVER_WORKER__LEASE_MS", "1000".to_owned()),
            ("DROVER_WORKER__IDLE_WAIT_MS", "50".to_owned()),
            ("RUST_LOG", "info".to_owned()),
        ];
        env.extend(extra.iter().cloned());
        let w = drover_tests::harness::ChildProcess::spawn("worker", &drover_tests::harness::cargo_bin("test_worker"), &[], &env);
        assert!(
            w.wait_for_log("callback deliveries started", Duration::from_secs(20)),
            "worker did not start:\n{}",
            w.log()
        );
        w
    }

    /// Submit and expect a 202; the new job's id.
    pub async fn submit_ok(&self, body: &Value) -> JobId {
        let res = self.submit(ADMIN, body).await;
        assert_eq!(res.status(), 202, "{}", res.text().await.unwrap());
        let v: Value = res.json().await.unwrap();
        v["id"].as_str().unwrap().parse().unwrap()
    }

    /// Save a nightly cleanup schedule `name` for `account` with the admin key; expect 201.
    pub async fn schedule_ok(&self, name: &str, account: &str) {
        let body = json!({"cron": "0 2 * * *", "kind": "cleanup", "payload": cleanup_body(account)["payload"]});
        let res = self
            .client
            .put(self.url(&format!("/v1/schedules/{name}")))
            .bearer_auth(ADMIN)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    }

    pub async fn job(&self, key: &str, id: &str) -> (u16, Value) {
        let res = self.get(key, &format!("/v1/jobs/{id}")).send().await.unwrap();
        (res.status().as_u16(), res.json().await.unwrap())
    }

    /// Lease the job as a worker would; it is then `running`. Jobs handed out before it
    /// are released again, untouched.
    pub async fn lease(&self, id: &JobId) -> String {
        let mut others = Vec::new();
        let token = loop {
            let mut fetched = self
                .store
                .fetch(id.kind(), "test-worker", 1, Duration::from_secs(30))
                .await
                .unwrap();
            let leased = fetched.jobs.pop().expect("the job was ready");
            if &leased.id == id {
                break leased.token;
            }
            others.push(Settlement {
                id: leased.id,
                token: leased.token,
                action: SettleAction::Release,
                attempt: None,
            });
        };
        self.store.settle(id.kind(), &others).await.unwrap();
        token
    }

    /// `n` cleanup jobs of each account, enqueued in bulk and all run to `dead` ("SKU
    /// rejected", permanent), as a worker would leave them: thousands in seconds.
    pub async fn dead_in_bulk(&self, accounts: &[(&str, usize)]) {
        let mut jobs = Vec::new();
        for (account, n) in accounts {
            let payload = drover::job::JobPayload::from_json(JobKind::Cleanup, cleanup_body(account)["payload"].clone()).unwrap();
            jobs.extend((0..*n).map(|_| drover::queue::NewJob::new(payload.clone())));
        }
        for r in self.store.enqueue_bulk(jobs).await.unwrap() {
            r.unwrap();
        }
        loop {
            let leased = self
                .store
                .fetch(JobKind::Cleanup, "w1", 1000, Duration::from_secs(30))
                .await
                .unwrap()
                .jobs;
            if leased.is_empty() {
                return;
            }
            let ends: Vec<Settlement> = leased
                .iter()
                .map(|l| Settlement {
                    id: l.id.clone(),
                    token: l.token.clone(),
                    action: SettleAction::Dead(ErrorInfo {
                        class: ErrorClass::Permanent,
                        message: "SKU rejected".into(),
                    }),
                    attempt: None,
                })
                .collect();
            self.store.settle(JobKind::Cleanup, &ends).await.unwrap();
        }
    }

    /// Run the job to `dead` with a permanent error.
    pub async fn kill_job(&self, id: &JobId) {
        self.kill_job_with(id, ErrorClass::Permanent, "upstream said no").await;
    }

    /// Run the job to `dead` with this error.
    pub async fn kill_job_with(&self, id: &JobId, class: ErrorClass, message: &str) {
        let token = self.lease(id).await;
        let error = ErrorInfo {
            class,
            message: message.into(),
        };
        let s = Settlement {
            id: id.clone(),
            token,
            action: SettleAction::Dead(error),
            attempt: None,
        };
        self.store.settle(id.kind(), &[s]).await.unwrap();
    }

    /// Stop the app and wait for it to finish.
    pub async fn stop(mut self) -> std::io::Result<()> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        self.server.take().unwrap().await.unwrap()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

pub fn cleanup_body(account: &str) -> Value {
    json!({"kind": "cleanup", "payload": {"account_id": account, "marketplace_id": MARKETPLACE, "skus": ["SKU-1", "SKU-2"]}})
}

pub fn sync_body(account: &str) -> Value {
    json!({"kind": "sync", "payload": {"account_id": account, "marketplace_id": MARKETPLACE, "resources": ["orders"]}})
}

pub fn cleanup_payload(account: &str) -> JobPayload {
    JobPayload::from_json(
        JobKind::Cleanup,
        json!({"account_id": account, "marketplace_id": MARKETPLACE, "skus": ["SKU-1"]}),
    )
    .unwrap()
}

/// A problem document's `errors[].field` values.
pub fn fields(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .map(|a| a.iter().map(|e| e["field"].as_str().unwrap_or_default().to_owned()).collect())
        .unwrap_or_default()
}

/// Assert the response is a problem with `status`; the problem.
pub async fn problem(res: Response, status: u16) -> Value {
    assert_eq!(res.status().as_u16(), status, "unexpected status");
    let ct = res.headers()["content-type"].to_str().unwrap().to_owned();
    assert_eq!(ct, "application/problem+json");
    let rid = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], status);
    assert_eq!(body["request_id"], rid.as_str(), "the problem carries the request id");
    assert!(body["type"].as_str().unwrap().starts_with("urn:drover:problem:"));
    assert!(!body["title"].as_str().unwrap().is_empty());
    body
}

/// How many times the Redis behind `conn` has answered `cmd` (lowercase, e.g. `hgetall`),
/// from `INFO commandstats`.
pub async fn command_calls(conn: &mut drover::redis_conn::RedisConn, cmd: &str) -> u64 {
    let info: String = redis::cmd("INFO").arg("commandstats").query_async(conn).await.unwrap();
    let prefix = format!("cmdstat_{cmd}:calls=");
    info.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}
