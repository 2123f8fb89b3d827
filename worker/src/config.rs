//! The worker's typed configuration, validated at start-up with precise messages.
use std::collections::HashMap;
use std::time::Duration;

use drover::config::ConfigError;
use drover::crypto::EncryptionKey;
use drover::db::DatabaseConfig;
use drover::resilience::ResilienceConfig;
use drover::schedule::SchedulerConfig;
use secrecy::{ExposeSecret, SecretString};

use crate::callbacks::CallbacksConfig;
use crate::jobs::JobsConfig;
use crate::marketplace::MarketplaceConfig;
use drover::job::JobKind;
use drover::queue::{JobDefaults, QueueConfig, RetryPolicy};
use drover::runtime::WorkerSettings;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Concurrency {
    pub sync: usize,
    pub backfill: usize,
    pub cleanup: usize,
}

impl Default for Concurrency {
    /// Cleanup runs wait on the upstream almost all the time (a delete every 0.2 s per
    /// account at SP-API's rate, parked when the wait is longer), so a worker holds many:
    /// with 10, a burst of 100 small sellers waited 9 s for slots behind one flood.
    fn default() -> Self {
        Self {
            sync: 10,
            backfill: 4,
            cleanup: 50,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicies {
    pub sync: Option<RetryPolicy>,
    pub backfill: Option<RetryPolicy>,
    pub cleanup: Option<RetryPolicy>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerConfig {
    /// May carry a password: never printed (Debug shows it redacted).
    #[serde(serialize_with = "drover::config::redact::url")]
    pub redis_url: SecretString,
    pub namespace: String,
    pub concurrency: Concurrency,
    pub lease_ms: u64,
    pub heartbeat_ms: u64,
    pub grace_ms: u64,
    pub fetch_batch: usize,
    /// Jobs leased ahead of free slots per kind while runs are slow or their pace unknown
    /// (default 0: a job leased ahead waits behind this process's runs, where no idle
    /// worker and no other seller's turn can reach it).
    pub prefetch: usize,
    pub idle_wait_ms: u64,
    pub retention_hours: u64,
    /// How long a job's per-item record (`job_items`, `job_runs` in Postgres) is kept
    /// after its newest run started: a day longer than ended jobs are at least
    /// (`retention_hours`, counted from their end); the default, 31 days, outlasts dead
    /// jobs' 30, so a dead job replayed keeps its items done.
    pub items_retention_days: u64,
    pub retry: RetryPolicies,
    /// Where synced data and accounts live.
    pub database: DatabaseConfig,
    /// Base64 of the 32-byte AES-256-GCM key that seals account credentials (the same
    /// key the API uses). Required outside dev mode, and never the published dev key.
    #[serde(serialize_with = "drover::config::redact::optional_secret")]
    pub encryption_key: Option<SecretString>,
    /// Allows the published dev encryption key, a plaintext marketplace and callbacks
    /// to this machine over http (local demo and tests only): refused unless the
    /// marketplace is a loopback simulator (or `dev_mode_allow_remote`).
    pub dev_mode: bool,
    /// Allow dev mode against a simulator that is not on loopback: only for a simulator
    /// in another container of a developer's machine (docker-compose.yml).
    pub dev_mode_allow_remote: bool,
    pub marketplace: MarketplaceConfig,
    pub resilience: ResilienceConfig,
    pub jobs: JobsConfig,
    /// Workers may run the scheduler too (off by default: the API replicas run it).
    pub scheduler: SchedulerConfig,
    /// Where Prometheus scrapes `GET /metrics` (`host:port`; empty = no metrics).
    pub metrics_listen: String,
    /// Completion callbacks: how this worker delivers them.
    pub callbacks: CallbacksConfig,
    /// The queues' layout, shared with the API (`queue.partitions`), and what a job's end
    /// (and a scheduler's enqueue) must reach before it counts as recorded
    /// (`queue.durability`, as the API's `api.queue`).
    pub queue: QueueConfig,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            redis_url: SecretString::from("redis://127.0.0.1:6379"),
            namespace: "drover".into(),
            concurrency: Concurrency::default(),
            lease_ms: WorkerSettings::DEFAULT_LEASE.as_millis() as u64,
            heartbeat_ms: WorkerSettings::DEFAULT_HEARTBEAT.as_millis() as u64,
            grace_ms: 30_000,
            fetch_batch: 100,
            prefetch: 0,
            idle_wait_ms: 5000,
            retention_hours: 24 * 7,
            items_retention_days: 31,
            retry: RetryPolicies::default(),
            database: DatabaseConfig::default(),
            encryption_key: None,
            dev_mode: false,
            dev_mode_allow_remote: false,
            marketplace: MarketplaceConfig::default(),
            resilience: ResilienceConfig::default(),
            jobs: JobsConfig::default(),
            scheduler: SchedulerConfig {
                enabled: false,
                ..SchedulerConfig::default()
            },
            metrics_listen: "0.0.0.0:9464".into(),
            callbacks: CallbacksConfig::default(),
            queue: QueueConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct Root {
    worker: WorkerConfig,
}

impl WorkerConfig {
    /// Defaults → `file` → `DROVER_WORKER__*` environment; then validated.
    pub fn load(file: Option<&str>) -> Result<Self, ConfigError> {
        let worker = Self::layered(file)?;
        worker.validate()?;
        Ok(worker)
    }

    /// Defaults → `file` → environment, not yet validated (`config check` shows it first).
    pub fn layered(file: Option<&str>) -> Result<Self, ConfigError> {
        let mut root: Root = drover::config::load(file)?;
        // The limiter parks a run instead of sleeping past `jobs.park_after_ms`.
        root.worker.resilience.max_wait = Duration::from_millis(root.worker.jobs.park_after_ms);
        Ok(root.worker)
    }

    /// Everything the real worker checks before it starts ([`Self::validate`] and
    /// [`Self::validate_jobs`]), every problem at once.
    pub fn check(&self) -> Result<(), ConfigError> {
        let mut errs = Vec::new();
        for checked in [self.validate(), self.validate_jobs().map(|_| ())] {
            if let Err(ConfigError::Invalid(e)) = checked {
                errs.extend(e);
            }
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(errs))
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut errs = Vec::new();
        if let Err(e) = drover::redis_conn::RedisTarget::parse(self.redis_url.expose_secret()) {
            // The parser's message never repeats the URL.
            errs.push(format!("worker.redis_url: {e}"));
        }
        self.queue.validate("worker.queue", &mut errs);
        if self.namespace.is_empty() || !self.namespace.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            errs.push("worker.namespace must be non-empty letters, digits, '-' or '_'".into());
        }
        let c = &self.concurrency;
        if c.sync + c.backfill + c.cleanup == 0 {
            errs.push("worker.concurrency: at least one kind needs concurrency > 0".into());
        }
        for (name, v) in [("sync", c.sync), ("backfill", c.backfill), ("cleanup", c.cleanup)] {
            if v > 10_000 {
                errs.push(format!("worker.concurrency.{name} = {v} is more than 10000"));
            }
        }
        if self.heartbeat_ms < 50 {
            errs.push(format!("worker.heartbeat_ms = {} must be at least 50", self.heartbeat_ms));
        }
        if self.lease_ms < self.heartbeat_ms * 3 {
            errs.push(format!(
                "worker.lease_ms = {} must be at least 3 × heartbeat_ms ({}) so one late renewal cannot lose a lease",
                self.lease_ms, self.heartbeat_ms
            ));
        }
        if !(1..=10_000).contains(&self.fetch_batch) {
            errs.push(format!("worker.fetch_batch = {} must be between 1 and 10000", self.fetch_batch));
        }
        if self.prefetch > 10_000 {
            errs.push(format!("worker.prefetch = {} is more than 10000", self.prefetch));
        }
        if !(10..=60_000).contains(&self.idle_wait_ms) {
            errs.push(format!("worker.idle_wait_ms = {} must be between 10 and 60000", self.idle_wait_ms));
        }
        if self.grace_ms > 3_600_000 {
            errs.push(format!("worker.grace_ms = {} is more than an hour", self.grace_ms));
        }
        for (name, p) in [
            ("sync", &self.retry.sync),
            ("backfill", &self.retry.backfill),
            ("cleanup", &self.retry.cleanup),
        ] {
            if let Some(p) = p {
                if p.base.is_zero() || p.max < p.base {
                    errs.push(format!("worker.retry.{name}: base must be > 0 and max >= base"));
                }
            }
        }
        errs.extend(self.callbacks.validate());
        if errs.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(errs))
        }
    }

    /// The key that opens sealed secrets (account credentials, callback secrets): the
    /// configured one, or in dev mode the published dev key. Checked by
    /// [`WorkerConfig::validate_jobs`] for the real worker.
    pub fn sealing_key(&self) -> Option<EncryptionKey> {
        match &self.encryption_key {
            None if self.dev_mode => EncryptionKey::parse(drover::crypto::DEV_ENCRYPTION_KEY).ok(),
            None => None,
            Some(k) => EncryptionKey::parse(k.expose_secret()).ok(),
        }
    }

    /// What running the real jobs needs beyond the queue: database, sealing key,
    /// marketplace, limits. Every problem at once; returns the key to use.
    pub fn validate_jobs(&self) -> Result<EncryptionKey, ConfigError> {
        let mut errs = Vec::new();
        if let Err(e) = self.database.validate("worker.database") {
            errs.extend(e);
        }
        if let Err(e) = self.marketplace.validate() {
            errs.extend(e.into_iter().map(|m| format!("worker.marketplace: {m}")));
        }
        self.check_marketplace_transport(&mut errs);
        if let Err(e) = self.resilience.validate() {
            errs.extend(e.into_iter().map(|m| format!("worker.resilience: {m}")));
        }
        errs.extend(self.jobs.validate().into_iter().map(|m| format!("worker.{m}")));
        // Items outlive every job they belong to: an ended job's retention, and a dead
        // job's in the dead letter (a replay goes on from its items; before, found by the
        // data audit of 2026-12-06, 8 days were taken against 30 days of dead jobs, and a
        // dead cleanup replayed after its items were gone sent every delete again).
        let dead_hours = self.job_defaults().dead_retention.as_secs() / 3600;
        let kept_hours = self.retention_hours.max(dead_hours);
        if !(2..=3650).contains(&self.items_retention_days) || self.items_retention_days * 24 < kept_hours + 24 {
            errs.push(format!(
                "worker.items_retention_days = {} must be 2-3650 and keep items a day longer than ended jobs are kept (worker.retention_hours = {}) and dead jobs ({dead_hours} h)",
                self.items_retention_days, self.retention_hours
            ));
        }
        errs.extend(self.scheduler.validate().into_iter().map(|m| format!("worker.{m}")));
        // A tick is enqueued once by its idempotency key: a tick still within the grace
        // once its key has expired (a worker started then) would be enqueued again.
        let key_ttl = self.job_defaults().idempotency_ttl;
        if Duration::from_millis(self.scheduler.misfire_grace_ms) >= key_ttl {
            errs.push(format!(
                "worker.scheduler.misfire_grace_ms = {} must be shorter than the queue's idempotency keys live ({} s): a tick caught up after its key expired would run twice",
                self.scheduler.misfire_grace_ms,
                key_ttl.as_secs()
            ));
        }
        if !self.metrics_listen.is_empty() && self.metrics_listen.parse::<std::net::SocketAddr>().is_err() {
            errs.push(format!(
                "worker.metrics_listen = {:?} is not an address like 0.0.0.0:9464 (empty turns metrics off)",
                self.metrics_listen
            ));
        }
        let key = EncryptionKey::configured(
            self.encryption_key.as_ref().map(|k| k.expose_secret()),
            self.dev_mode,
            "worker.encryption_key",
            "give the API's 32-byte base64 key (DROVER_WORKER__ENCRYPTION_KEY)",
        )
        .map_err(|e| errs.push(e))
        .ok();
        match key {
            Some(key) if errs.is_empty() => Ok(key),
            _ => Err(ConfigError::Invalid(errs)),
        }
    }

    /// Credentials cross the wire to the marketplace: outside dev mode its URLs must be
    /// https (the default is the local simulator's http URL, so a forgotten setting is
    /// refused too). Dev mode opens credentials with the published key, so it runs only
    /// against a simulator on loopback, or one in another container when allowed.
    fn check_marketplace_transport(&self, errs: &mut Vec<String>) {
        let m = &self.marketplace;
        let urls = [("base_url", m.base_url.clone()), ("token_url", m.token_url())];
        if self.dev_mode {
            let url = reqwest::Url::parse(&m.base_url).ok();
            let host = url.as_ref().and_then(|u| u.host_str()).unwrap_or("");
            let loopback = host == "localhost"
                || host
                    .trim_matches(['[', ']'])
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if !loopback && !self.dev_mode_allow_remote {
                errs.push(
                    "worker.dev_mode = true opens credentials with the published dev key, but \
                     worker.marketplace.base_url is not a loopback simulator: turn dev_mode off and give \
                     worker.encryption_key (the API's key), or set worker.dev_mode_allow_remote for a \
                     simulator in another container on your machine"
                        .into(),
                );
            }
        } else if !m.insecure_http {
            for (name, url) in urls {
                if !url.starts_with("https://") {
                    errs.push(format!(
                        "worker.marketplace.{name} must be https outside dev mode (refresh tokens travel \
                         to it; the default is the local simulator's http URL): set SP-API's regional \
                         host, or worker.marketplace.insecure_http = true for a local simulator"
                    ));
                }
            }
        }
    }

    pub fn settings(&self) -> WorkerSettings {
        let mut retry = HashMap::new();
        for (kind, p) in [
            (JobKind::Sync, self.retry.sync),
            (JobKind::Backfill, self.retry.backfill),
            (JobKind::Cleanup, self.retry.cleanup),
        ] {
            if let Some(p) = p {
                retry.insert(kind, p);
            }
        }
        WorkerSettings {
            worker_id: WorkerSettings::new_worker_id(),
            concurrency: HashMap::from([
                (JobKind::Sync, self.concurrency.sync),
                (JobKind::Backfill, self.concurrency.backfill),
                (JobKind::Cleanup, self.concurrency.cleanup),
            ]),
            lease: Duration::from_millis(self.lease_ms),
            heartbeat: Duration::from_millis(self.heartbeat_ms),
            grace: Duration::from_millis(self.grace_ms),
            fetch_batch: self.fetch_batch,
            prefetch: self.prefetch,
            idle_wait: Duration::from_millis(self.idle_wait_ms),
            retry,
            retention: Duration::from_secs(self.retention_hours * 3600),
        }
    }

    pub fn job_defaults(&self) -> JobDefaults {
        JobDefaults {
            per_account: self.jobs.per_account(),
            max_snoozes: self.jobs.max_snoozes,
            max_unfinished_per_account: self.jobs.max_unfinished_per_account,
            partitions: self.queue.partitions(),
            durability: self.queue.durability(),
            declare_every_key: self.queue.declare_every_key,
            ..JobDefaults::for_runtime()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid() {
        WorkerConfig::default().validate().unwrap();
    }

    /// Console audit of 2026-12-06: the API refused a misfire grace at or past its
    /// idempotency keys' lifetime, the worker (which may run the scheduler too) took up to
    /// 30 days while its keys live 24 h, so a tick caught up after its key expired ran twice.
    #[test]
    fn a_scheduler_grace_as_long_as_the_idempotency_keys_live_is_refused() {
        let mut c = WorkerConfig {
            dev_mode: true,
            ..Default::default()
        };
        c.scheduler.misfire_grace_ms = 2 * 24 * 3600 * 1000;
        let errs = c.validate_jobs().unwrap_err().to_string();
        assert!(errs.contains("worker.scheduler.misfire_grace_ms"), "{errs}");
        c.scheduler.misfire_grace_ms = 3600 * 1000;
        c.validate_jobs().unwrap();
    }

    #[test]
    fn items_are_kept_longer_than_dead_jobs_are() {
        let short = WorkerConfig {
            dev_mode: true,
            retention_hours: 168,
            items_retention_days: 8,
            ..Default::default()
        };
        let errs = short.validate_jobs().unwrap_err().to_string();
        assert!(errs.contains("worker.items_retention_days = 8"), "{errs}");
        let long = WorkerConfig {
            dev_mode: true,
            retention_hours: 168,
            items_retention_days: 31,
            ..Default::default()
        };
        long.validate_jobs().unwrap();
    }

    #[test]
    fn the_snooze_cap_is_the_jobs_sections_setting() {
        let mut c = WorkerConfig::default();
        assert_eq!(c.job_defaults().max_snoozes, 1000);
        c.jobs.max_snoozes = 7;
        assert_eq!(c.job_defaults().max_snoozes, 7);
    }

    #[test]
    fn declaring_every_key_is_the_queue_sections_setting() {
        let mut c = WorkerConfig::default();
        assert!(!c.job_defaults().declare_every_key, "off by default: a cluster declares anyway");
        c.queue.declare_every_key = true;
        assert!(c.job_defaults().declare_every_key);
    }

    #[test]
    fn queue_durability_reaches_the_store_and_its_timeout_is_checked() {
        let mut c = WorkerConfig::default();
        c.queue.durability = drover::queue::DurabilityMode::Replica;
        c.queue.durability_timeout_ms = 250;
        let d = c.job_defaults().durability;
        assert_eq!(
            (d.mode, d.timeout),
            (drover::queue::DurabilityMode::Replica, Duration::from_millis(250))
        );
        c.queue.durability_timeout_ms = 0;
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("worker.queue.durability_timeout_ms = 0"), "{err}");
    }

    #[test]
    fn a_lease_shorter_than_three_heartbeats_is_rejected_with_both_values() {
        let c = WorkerConfig {
            lease_ms: 1000,
            heartbeat_ms: 500,
            ..Default::default()
        };
        let msg = c.validate().unwrap_err().to_string();
        assert!(msg.contains("lease_ms = 1000") && msg.contains("heartbeat_ms (500)"), "{msg}");
    }

    #[test]
    fn running_jobs_needs_a_real_encryption_key_outside_dev_mode() {
        let msg = WorkerConfig::default().validate_jobs().unwrap_err().to_string();
        assert!(msg.contains("encryption_key is missing"), "{msg}");
        let dev_key = WorkerConfig {
            encryption_key: Some(drover::crypto::DEV_ENCRYPTION_KEY.to_owned().into()),
            ..Default::default()
        };
        let msg = dev_key.validate_jobs().unwrap_err().to_string();
        assert!(msg.contains("published development key"), "{msg}");
        let dev_mode = WorkerConfig {
            dev_mode: true,
            ..Default::default()
        };
        dev_mode.validate_jobs().unwrap();
    }

    #[test]
    fn metrics_listen_must_be_an_address_or_empty() {
        let bad = WorkerConfig {
            dev_mode: true,
            metrics_listen: "metrics:port".into(),
            ..Default::default()
        };
        let msg = bad.validate_jobs().unwrap_err().to_string();
        assert!(msg.contains("worker.metrics_listen = \"metrics:port\""), "{msg}");
        for ok in ["", "127.0.0.1:0", "[::]:9464"] {
            WorkerConfig {
                dev_mode: true,
                metrics_listen: ok.into(),
                ..Default::default()
            }
            .validate_jobs()
            .unwrap();
        }
    }

    const REAL_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    fn with_key() -> WorkerConfig {
        WorkerConfig {
            encryption_key: Some(REAL_KEY.to_owned().into()),
            ..Default::default()
        }
    }

    #[test]
    fn outside_dev_mode_the_marketplace_urls_must_be_set_and_https() {
        // The default is the local simulator's plaintext URL: a forgotten setting must
        // not send refresh tokens in cleartext to whatever listens there.
        let msg = with_key().validate_jobs().unwrap_err().to_string();
        assert!(msg.contains("worker.marketplace.base_url") && msg.contains("https"), "{msg}");
        let mut c = with_key();
        c.marketplace.base_url = "https://sellingpartnerapi-na.amazon.com".into();
        c.marketplace.token_url = "http://token.example".into();
        let msg = c.validate_jobs().unwrap_err().to_string();
        assert!(msg.contains("worker.marketplace.token_url") && !msg.contains("base_url"), "{msg}");
        c.marketplace.token_url = "https://api.amazon.com/auth/o2/token".into();
        c.validate_jobs().unwrap();
        let mut sim = with_key();
        sim.marketplace.insecure_http = true;
        sim.validate_jobs().unwrap();
    }

    #[test]
    fn dev_mode_is_refused_against_a_marketplace_that_is_not_a_local_simulator() {
        let mut c = WorkerConfig {
            dev_mode: true,
            ..Default::default()
        };
        c.marketplace.base_url = "https://sellingpartnerapi-na.amazon.com".into();
        let msg = c.validate_jobs().unwrap_err().to_string();
        assert!(msg.contains("worker.dev_mode") && msg.contains("loopback"), "{msg}");
        c.marketplace.base_url = "http://simulator:9100".into();
        assert!(
            c.validate_jobs().is_err(),
            "a simulator in another container needs the explicit opt-in"
        );
        c.dev_mode_allow_remote = true;
        c.validate_jobs().unwrap();
        let local = WorkerConfig {
            dev_mode: true,
            ..Default::default()
        };
        local.validate_jobs().unwrap();
    }

    #[test]
    fn the_redis_url_and_its_password_are_never_printed() {
        let c = WorkerConfig {
            redis_url: "redis://:hunter2-secret@redis:6379".to_owned().into(),
            ..Default::default()
        };
        assert!(!format!("{c:?}").contains("hunter2-secret"));
        let bad = WorkerConfig {
            redis_url: "nope://:hunter2-secret@x".to_owned().into(),
            ..Default::default()
        };
        assert!(!bad.validate().unwrap_err().to_string().contains("hunter2-secret"));
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let c = WorkerConfig {
            redis_url: "nope://".to_owned().into(),
            fetch_batch: 0,
            ..Default::default()
        };
        let msg = c.validate().unwrap_err().to_string();
        assert!(msg.contains("redis_url") && msg.contains("fetch_batch"), "{msg}");
    }
}
