//! The API's typed configuration: defaults → TOML file (`DROVER_CONFIG`) → `DROVER_API__*`
//! environment, validated at start-up with one precise message per problem.
//!
//! ```toml
//! [api]
//! listen = "0.0.0.0:8080"
//! metrics_listen = "0.0.0.0:9465"   # internal: Prometheus only; "" turns metrics off
//! redis_url = "redis://127.0.0.1:6379"
//! namespace = "drover"
//! body_limit_bytes = 1048576
//! request_timeout_ms = 10000
//! rate_limit = { per_minute = 600, burst = 60 }
//!
//! [[api.keys]]
//! name = "ops"
//! key_sha256 = "<64 hex digits: `drover-api hash-key <key>`>"
//! role = "admin"
//!
//! [[api.keys]]
//! name = "acme-portal"
//! key_sha256 = "…"
//! role = "submit"
//! accounts = ["acme-eu", "acme-us"]
//! ```
//!
//! In the environment, keys are one comma-separated list of `name:role:sha256[:acct;acct]`,
//! e.g. `DROVER_API__KEYS=ops:admin:5e88…,portal:submit:9f86…:acme-eu;acme-us`.
use std::net::SocketAddr;
use std::time::Duration;

use drover::config::ConfigError;
use drover::crypto::SecretBox;
use drover::db::DatabaseConfig;
use drover::job::{AccountId, MAX_SKUS};
use drover::queue::{JobDefaults, QueueConfig};
use drover::resilience::ResilienceConfig;
use drover::schedule::SchedulerConfig;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::auth::{KeyRing, Role};

mod accounts;
mod callbacks;
mod keys;
mod schedules;
mod server;
mod streams;
mod ui;
pub use accounts::{AccountsConfig, DEV_TOKEN_URL};
pub use callbacks::CallbacksConfig;
pub use keys::KeyEntry;
pub use schedules::SchedulesConfig;
pub use server::{HeaderLimits, ServerConfig};
pub use streams::StreamsConfig;
pub use ui::{parse_proxy, UiConfig};

/// Everything the API reads from configuration.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Socket address to listen on; port 0 picks a free port (tests).
    pub listen: String,
    /// Where Prometheus scrapes `GET /metrics`: an internal port, kept off the Service and
    /// the Ingress (the numbers are queue-wide). Empty turns metrics off.
    pub metrics_listen: String,
    /// May hold a password, so it never prints.
    #[serde(serialize_with = "drover::config::redact::url")]
    pub redis_url: SecretString,
    /// Prefix of every Redis key; must match the workers'.
    pub namespace: String,
    /// Largest JSON request body.
    pub body_limit_bytes: usize,
    /// Largest CSV upload (`POST /v1/jobs/cleanup.csv`).
    pub csv_limit_bytes: usize,
    /// Most SKU rows one CSV upload may hold.
    pub csv_max_rows: usize,
    /// Longest a request may take before it is answered 503.
    pub request_timeout_ms: u64,
    /// How long in-flight requests may finish after the shutdown signal.
    pub shutdown_grace_ms: u64,
    /// How often `GET /v1/jobs/{id}/events` looks at the job.
    pub events_poll_ms: u64,
    /// Longest one event stream stays open; clients reconnect for more. Bounds how long
    /// a stream for a job that never ends holds a connection.
    pub events_max_ms: u64,
    pub rate_limit: RateLimitConfig,
    /// Per-key limit on read requests (listings, job views, limits); event streams are
    /// capped by `streams` instead.
    pub read_rate_limit: RateLimitConfig,
    /// Header-read timeout and connection cap of the listener.
    pub server: ServerConfig,
    /// Caps on open event streams, per key and per process.
    pub streams: StreamsConfig,
    /// The operator console at `/ui`.
    pub ui: UiConfig,
    pub jobs: JobDefaultsConfig,
    /// The queues' layout, shared with the workers (`queue.partitions`), and what an
    /// enqueue must reach before it is answered (`queue.durability`; the workers'
    /// `worker.queue` is the same setting for the outcomes they record).
    pub queue: QueueConfig,
    pub keys: Vec<KeyEntry>,
    /// Accept [`DEV_KEY`] as an admin key (and allow starting without keys), and the
    /// published `DEV_ENCRYPTION_KEY`. Never in production: refused unless `listen` is a
    /// loopback address (or `dev_mode_allow_remote`) and `keys` is empty.
    pub dev_mode: bool,
    /// Allow dev mode on a listener that is not loopback: only for a container on a
    /// developer's machine whose published port is bound to the host's 127.0.0.1
    /// (docker-compose.yml). Anyone who reaches the port is an admin.
    pub dev_mode_allow_remote: bool,
    /// PostgreSQL (accounts). See `drover::db::DatabaseConfig` for how `DATABASE_URL` applies.
    pub database: DatabaseConfig,
    /// What `POST /v1/accounts` does besides storing the account (its first sync).
    pub accounts: AccountsConfig,
    /// 32 bytes, base64: seals account credentials at rest. Required outside dev mode.
    #[serde(serialize_with = "drover::config::redact::secret")]
    pub encryption_key: SecretString,
    /// The LWA token endpoint used to check credentials given to `POST /v1/accounts`:
    /// https, and required outside dev mode (dev mode defaults to the simulator's).
    pub marketplace_token_url: String,
    pub marketplace_timeout_ms: u64,
    /// Allow an `http://` token URL outside dev mode: only for a local simulator (tests).
    /// Credentials then cross the wire in cleartext.
    pub insecure_marketplace_http: bool,
    /// The marketplace limits, as the workers use them (shown by `/v1/accounts/{id}/limits`).
    pub resilience: ResilienceConfig,
    /// Periodic jobs: every replica runs the loop; each tick still makes one job.
    pub scheduler: SchedulerConfig,
    /// What one account's schedules may cost: how many, and how often each fires; and
    /// how many one key may create across every account.
    pub schedules: SchedulesConfig,
    /// Completion callbacks beyond each key's own hosts and secret.
    pub callbacks: CallbacksConfig,
    /// How long the audit log keeps an entry (days, 1 to 3650): every replica removes
    /// older ones hourly, so what a key's requests can add to it is bounded in time.
    pub audit_retention_days: u32,
}

/// The key accepted in `dev_mode`, documented so local tools can use it.
pub const DEV_KEY: &str = "drover-dev-key";

/// Per-key limit on write requests, shared by all API replicas through Redis.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Sustained write requests per minute per key.
    pub per_minute: u32,
    /// Requests a key may send at once above the sustained rate.
    pub burst: u32,
}

impl RateLimitConfig {
    /// Console sign-ins: 10 at once per client address, then one every 6 s.
    pub const LOGINS: Self = Self { per_minute: 10, burst: 10 };

    /// Reads: 6,000 a minute (100/s) per key, 600 at once.
    pub const READS: Self = Self {
        per_minute: 6_000,
        burst: 600,
    };
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            per_minute: 600,
            burst: 60,
        }
    }
}

/// Defaults applied to jobs whose request leaves them out.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobDefaultsConfig {
    pub max_attempts: u32,
    pub timeout_ms: u64,
    /// How long an `Idempotency-Key` is remembered.
    pub idempotency_ttl_secs: u64,
    /// Largest payload a job may store, as JSON: a larger one is a 413.
    pub max_payload_bytes: usize,
    /// Most jobs of one kind an account may keep unfinished (queued, scheduled, running,
    /// retrying): a submit past it is a 429 `account-full` and nothing is written, so no
    /// tenant's waiting jobs fill Redis for the others (ended jobs are bounded by the
    /// retention and the write rate).
    pub max_unfinished_per_account: u64,
}

impl Default for JobDefaultsConfig {
    fn default() -> Self {
        let d = JobDefaults::default();
        Self {
            max_attempts: d.max_attempts,
            timeout_ms: d.timeout.as_millis() as u64,
            idempotency_ttl_secs: d.idempotency_ttl.as_secs(),
            max_payload_bytes: 1024 * 1024,
            max_unfinished_per_account: drover::queue::DEFAULT_MAX_UNFINISHED_PER_ACCOUNT,
        }
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:8080".into(),
            metrics_listen: "0.0.0.0:9465".into(),
            redis_url: SecretString::from("redis://127.0.0.1:6379"),
            namespace: "drover".into(),
            body_limit_bytes: 1024 * 1024,
            csv_limit_bytes: 10 * 1024 * 1024,
            csv_max_rows: MAX_SKUS,
            request_timeout_ms: 10_000,
            shutdown_grace_ms: 10_000,
            events_poll_ms: 200,
            events_max_ms: 15 * 60 * 1000,
            rate_limit: RateLimitConfig::default(),
            read_rate_limit: RateLimitConfig::READS,
            server: ServerConfig::default(),
            streams: StreamsConfig::default(),
            ui: UiConfig::default(),
            jobs: JobDefaultsConfig::default(),
            queue: QueueConfig::default(),
            keys: Vec::new(),
            dev_mode: false,
            dev_mode_allow_remote: false,
            database: DatabaseConfig::default(),
            accounts: AccountsConfig::default(),
            encryption_key: SecretString::from(""),
            marketplace_token_url: String::new(),
            marketplace_timeout_ms: 10_000,
            insecure_marketplace_http: false,
            resilience: ResilienceConfig::default(),
            scheduler: SchedulerConfig::default(),
            schedules: SchedulesConfig::default(),
            callbacks: CallbacksConfig::default(),
            audit_retention_days: 90,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Root {
    api: ApiConfig,
}

/// What validation yields: the parsed forms the app runs with.
#[derive(Debug)]
pub struct Validated {
    pub listen: SocketAddr,
    /// The internal listener for `/metrics`; none when metrics are off.
    pub metrics_listen: Option<SocketAddr>,
    pub keys: KeyRing,
    pub job_defaults: JobDefaults,
    /// Seals and opens account credentials.
    pub secrets: SecretBox,
    /// Seals page cursors (a key derived from the same setting).
    pub cursors: SecretBox,
    /// `api.encryption_key` itself: the LWA token cache derives its key from it.
    pub key: drover::crypto::EncryptionKey,
}

impl ApiConfig {
    /// Defaults → `file` → `DROVER_API__*` environment; then validated.
    pub fn load(file: Option<&str>) -> Result<Self, ConfigError> {
        let api = Self::layered(file)?;
        api.validate()?;
        Ok(api)
    }

    /// Defaults → `file` → environment, not yet validated (`config check` shows it first).
    pub fn layered(file: Option<&str>) -> Result<Self, ConfigError> {
        let root: Root = drover::config::load(file)?;
        Ok(root.api)
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// Check everything at once and report every problem, naming the setting.
    pub fn validate(&self) -> Result<Validated, ConfigError> {
        let mut errs = Vec::new();
        let listen = match self.listen.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                errs.push(format!(
                    "api.listen = {:?} is not a socket address such as 0.0.0.0:8080",
                    self.listen
                ));
                None
            }
        };
        let metrics_listen = match self.metrics_listen.trim() {
            "" => None,
            m => match m.parse::<SocketAddr>() {
                Ok(a) if Some(a) == listen && a.port() != 0 => {
                    errs.push(format!(
                        "api.metrics_listen = {m:?} is api.listen: metrics need a port of their own, off the Service"
                    ));
                    None
                }
                Ok(a) => Some(a),
                Err(_) => {
                    errs.push(format!(
                        "api.metrics_listen = {m:?} is not a socket address such as 0.0.0.0:9465 (empty turns metrics off)"
                    ));
                    None
                }
            },
        };
        if let Err(e) = drover::redis_conn::RedisTarget::parse(self.redis_url.expose_secret()) {
            // The URL may hold a password: name the problem, not the URL.
            errs.push(format!("api.redis_url is {e}"));
        }
        let partitions = self.queue.validate("api.queue", &mut errs);
        if self.namespace.is_empty() || !self.namespace.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            errs.push(format!(
                "api.namespace = {:?} must be non-empty letters, digits, '-' or '_'",
                self.namespace
            ));
        }
        if !(1024..=64 * 1024 * 1024).contains(&self.body_limit_bytes) {
            errs.push(format!(
                "api.body_limit_bytes = {} must be between 1024 and 67108864",
                self.body_limit_bytes
            ));
        }
        if !(1024..=512 * 1024 * 1024).contains(&self.csv_limit_bytes) {
            errs.push(format!(
                "api.csv_limit_bytes = {} must be between 1024 and 536870912",
                self.csv_limit_bytes
            ));
        }
        // One body takes at most the seven eighths of the budget the keys share
        // (`body_budget.rs`): a larger limit would let a body hold more than it reserved.
        let shared = self.server.max_body_bytes_in_flight - self.server.max_body_bytes_in_flight / 8;
        for (name, limit) in [
            ("api.body_limit_bytes", self.body_limit_bytes),
            ("api.csv_limit_bytes", self.csv_limit_bytes),
        ] {
            if limit > shared {
                errs.push(format!(
                    "{name} = {limit} is more than seven eighths of api.server.max_body_bytes_in_flight ({}): raise that, or lower this",
                    self.server.max_body_bytes_in_flight
                ));
            }
        }
        if !(1..=3650).contains(&self.audit_retention_days) {
            errs.push(format!(
                "api.audit_retention_days = {} must be between 1 and 3650",
                self.audit_retention_days
            ));
        }
        if !(1..=MAX_SKUS).contains(&self.csv_max_rows) {
            errs.push(format!("api.csv_max_rows = {} must be between 1 and {MAX_SKUS}", self.csv_max_rows));
        }
        if !(100..=300_000).contains(&self.request_timeout_ms) {
            errs.push(format!(
                "api.request_timeout_ms = {} must be between 100 and 300000",
                self.request_timeout_ms
            ));
        }
        if self.shutdown_grace_ms > 600_000 {
            errs.push(format!(
                "api.shutdown_grace_ms = {} is more than 10 minutes",
                self.shutdown_grace_ms
            ));
        }
        if !(10..=10_000).contains(&self.events_poll_ms) {
            errs.push(format!("api.events_poll_ms = {} must be between 10 and 10000", self.events_poll_ms));
        }
        if !(100..=3600 * 1000).contains(&self.events_max_ms) {
            errs.push(format!(
                "api.events_max_ms = {} must be between 100 and 3600000 (one hour)",
                self.events_max_ms
            ));
        }
        for (name, limit) in [
            ("rate_limit", &self.rate_limit),
            ("read_rate_limit", &self.read_rate_limit),
            ("ui.login_limit", &self.ui.login_limit),
        ] {
            if limit.per_minute == 0 || limit.per_minute > 6_000_000 {
                errs.push(format!(
                    "api.{name}.per_minute = {} must be between 1 and 6000000",
                    limit.per_minute
                ));
            }
            if limit.burst == 0 {
                errs.push(format!("api.{name}.burst must be at least 1"));
            }
        }
        errs.extend(self.scheduler.validate().into_iter().map(|e| format!("api.{e}")));
        errs.extend(self.server.validate());
        errs.extend(self.streams.validate());
        errs.extend(self.ui.validate());
        errs.extend(self.schedules.validate());
        if !(1..=100).contains(&self.jobs.max_attempts) {
            errs.push(format!(
                "api.jobs.max_attempts = {} must be between 1 and 100",
                self.jobs.max_attempts
            ));
        }
        if self.jobs.timeout_ms < 1000 {
            errs.push(format!("api.jobs.timeout_ms = {} must be at least 1000", self.jobs.timeout_ms));
        }
        if !(1024..=64 * 1024 * 1024).contains(&self.jobs.max_payload_bytes) {
            errs.push(format!(
                "api.jobs.max_payload_bytes = {} must be between 1024 and 67108864",
                self.jobs.max_payload_bytes
            ));
        }
        if !(1..=drover::queue::MAX_MAX_UNFINISHED_PER_ACCOUNT).contains(&self.jobs.max_unfinished_per_account) {
            errs.push(format!(
                "api.jobs.max_unfinished_per_account = {} must be between 1 and {}",
                self.jobs.max_unfinished_per_account,
                drover::queue::MAX_MAX_UNFINISHED_PER_ACCOUNT
            ));
        }
        if self.jobs.idempotency_ttl_secs == 0 {
            errs.push("api.jobs.idempotency_ttl_secs must be at least 1".into());
        }
        // A tick is enqueued once by its idempotency key: a tick still within the grace
        // once its key has expired (a replica started then) would be enqueued again.
        if self.scheduler.misfire_grace_ms / 1000 >= self.jobs.idempotency_ttl_secs {
            errs.push(format!(
                "api.scheduler.misfire_grace_ms = {} must be shorter than api.jobs.idempotency_ttl_secs = {} (in ms): a tick caught up after its idempotency key expired would run twice",
                self.scheduler.misfire_grace_ms, self.jobs.idempotency_ttl_secs
            ));
        }
        let keys = self.validate_keys(&mut errs);
        let secrets = accounts::validate(self, &mut errs);
        if let (true, Some((secrets, cursors, key))) = (errs.is_empty(), secrets) {
            Ok(Validated {
                listen: listen.expect("checked above"),
                metrics_listen,
                keys,
                job_defaults: JobDefaults {
                    max_attempts: self.jobs.max_attempts,
                    timeout: Duration::from_millis(self.jobs.timeout_ms),
                    idempotency_ttl: Duration::from_secs(self.jobs.idempotency_ttl_secs),
                    partitions: partitions.unwrap_or_default(),
                    durability: self.queue.durability(),
                    declare_every_key: self.queue.declare_every_key,
                    max_unfinished_per_account: self.jobs.max_unfinished_per_account,
                    ..JobDefaults::default()
                },
                secrets,
                cursors,
                key,
            })
        } else {
            Err(ConfigError::Invalid(errs))
        }
    }

    fn validate_keys(&self, errs: &mut Vec<String>) -> KeyRing {
        let mut ring = KeyRing::default();
        if self.keys.is_empty() && !self.dev_mode {
            errs.push(
                "api.keys is empty: configure at least one key (store its hash, from `drover-api hash-key <key>`), \
                 or set api.dev_mode = true for local development"
                    .into(),
            );
        }
        for (i, k) in self.keys.iter().enumerate() {
            let at = format!("api.keys[{i}] ({:?})", k.name);
            if k.name.is_empty()
                || k.name.len() > 64
                || !k
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
            {
                errs.push(format!("{at}: name must be 1 to 64 letters, digits, '-', '_' or '.'"));
            }
            // One hash, or several joined by '+' while the key is rotated (',' separates
            // the entries of DROVER_API__KEYS).
            let hashes: Option<Vec<[u8; 32]>> = k
                .key_sha256
                .split('+')
                .map(|h| match hex::decode(h.trim()) {
                    Ok(h) if h.len() == 32 => Some(<[u8; 32]>::try_from(h.as_slice()).expect("length checked")),
                    _ => None,
                })
                .collect();
            if hashes.is_none() {
                errs.push(format!(
                    "{at}: key_sha256 must be 64 hex digits, the SHA-256 of the key (see `drover-api hash-key`), \
                     or several joined by '+' while the key is rotated"
                ));
            }
            let accounts = match &k.accounts {
                None => None,
                Some(list) if list.is_empty() => {
                    errs.push(format!("{at}: accounts is an empty list; leave it out to allow every account"));
                    None
                }
                Some(list) => {
                    let mut parsed = Vec::new();
                    for a in list {
                        match AccountId::parse(a.as_str()) {
                            Ok(a) => parsed.push(a),
                            Err(e) => errs.push(format!("{at}: accounts: {e}")),
                        }
                    }
                    Some(parsed)
                }
            };
            let callbacks = callbacks::grant(k, &at, errs);
            if let Some(hashes) = hashes {
                if let Err(e) = ring.add_with_callbacks(&k.name, &hashes, k.role, accounts, callbacks) {
                    errs.push(format!("{at}: {e}"));
                }
            }
        }
        let dev_hash = crate::auth::sha256(DEV_KEY.as_bytes());
        for (i, k) in self.keys.iter().enumerate() {
            if k.key_sha256.split('+').any(|h| hex::decode(h.trim()).is_ok_and(|h| h == dev_hash)) {
                errs.push(format!(
                    "api.keys[{i}] ({:?}): key_sha256 is the hash of the published dev key {DEV_KEY:?}, \
                     which anyone can send; use a key of your own (`drover-api hash-key -`)",
                    k.name
                ));
            }
        }
        if self.dev_mode {
            self.check_dev_mode(errs);
            if let Err(e) = ring.add_with_callbacks("dev", &[dev_hash], Role::Admin, None, Some(callbacks::dev_grant())) {
                errs.push(format!("api.dev_mode: {e}"));
            }
        }
        ring
    }

    /// Whether a job's `callback_url` may be `http://`: in dev mode, or when asked for.
    pub fn callbacks_allow_http(&self) -> bool {
        self.dev_mode || self.callbacks.allow_http
    }

    /// Whether a job's `callback_url` may be a non-public IP literal: in dev mode (the
    /// dev key calls back to this machine), or when asked for.
    pub fn callbacks_allow_private_targets(&self) -> bool {
        self.dev_mode || self.callbacks.allow_private_targets
    }

    /// Dev mode makes the published [`DEV_KEY`] an admin for every account: allowed only
    /// where nobody else can send it (a loopback listener, or a container whose published
    /// port is on the host's loopback: `dev_mode_allow_remote`), and never beside real keys,
    /// which would mean a deployment that holds real data.
    fn check_dev_mode(&self, errs: &mut Vec<String>) {
        let loopback = self.listen.parse::<SocketAddr>().is_ok_and(|a| a.ip().is_loopback());
        if !loopback && !self.dev_mode_allow_remote {
            errs.push(format!(
                "api.dev_mode = true accepts the published dev key as an admin, but api.listen = {:?} is not a \
                 loopback address: listen on 127.0.0.1, or turn dev_mode off and configure api.keys",
                self.listen
            ));
        }
        if !self.keys.is_empty() {
            errs.push(
                "api.dev_mode = true is refused beside api.keys: configured keys mean a real deployment, where the \
                 published dev key must not be an admin; turn api.dev_mode off"
                    .into(),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str, role: Role) -> KeyEntry {
        KeyEntry {
            name: name.into(),
            key_sha256: hex::encode(crate::auth::sha256(name.as_bytes())),
            role,
            accounts: None,
            callback_hosts: None,
            callback_secret: None,
        }
    }

    #[test]
    fn the_defaults_with_one_key_are_valid() {
        let c = ApiConfig {
            keys: vec![key("ops", Role::Admin)],
            encryption_key: SecretString::from("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="),
            marketplace_token_url: "https://api.amazon.com/auth/o2/token".into(),
            ..Default::default()
        };
        let v = c.validate().unwrap();
        assert_eq!(v.listen.port(), 8080);
        assert_eq!(v.keys.len(), 1);
    }

    /// Found by the review of 2026-12-06's changes: a body limit above what one body may
    /// reserve of `api.server.max_body_bytes_in_flight` (its seven eighths) was accepted,
    /// and a body then held more than it had reserved.
    #[test]
    fn a_body_limit_above_what_one_body_may_reserve_is_refused() {
        let mut c = ApiConfig {
            keys: vec![key("ops", Role::Admin)],
            encryption_key: SecretString::from("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="),
            marketplace_token_url: "https://api.amazon.com/auth/o2/token".into(),
            ..Default::default()
        };
        c.server.max_body_bytes_in_flight = 8 << 20;
        let msg = c.validate().unwrap_err().to_string();
        assert!(
            msg.contains("api.csv_limit_bytes = 10485760") && msg.contains("max_body_bytes_in_flight"),
            "{msg}"
        );
        c.csv_limit_bytes = 7 << 20;
        assert!(c.validate().is_ok());
    }

    /// Found by the audit of 2026-12-06: a grace longer than the idempotency keys live
    /// was accepted, and a replica started after a tick's key expired (but within the
    /// grace) enqueued the tick again; a grace of u64::MAX cast to -1 ms and no schedule
    /// ever fired.
    #[test]
    fn a_misfire_grace_as_long_as_the_idempotency_keys_live_is_refused() {
        for grace in [25 * 3600 * 1000, u64::MAX] {
            let mut c = ApiConfig {
                keys: vec![key("ops", Role::Admin)],
                encryption_key: SecretString::from("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="),
                marketplace_token_url: "https://api.amazon.com/auth/o2/token".into(),
                ..Default::default()
            };
            c.scheduler.misfire_grace_ms = grace;
            let msg = c.validate().unwrap_err().to_string();
            assert!(
                msg.contains("api.scheduler.misfire_grace_ms") && msg.contains("api.jobs.idempotency_ttl_secs"),
                "{msg}"
            );
        }
    }

    #[test]
    fn no_keys_is_refused_unless_dev_mode() {
        let msg = ApiConfig::default().validate().unwrap_err().to_string();
        assert!(msg.contains("api.keys is empty") && msg.contains("hash-key"), "{msg}");
        let dev = ApiConfig {
            dev_mode: true,
            listen: "127.0.0.1:8080".into(),
            ..Default::default()
        };
        let ring = dev.validate().unwrap().keys;
        assert_eq!(ring.len(), 1);
        let dev_key = ring.authenticate(&SecretString::from(DEV_KEY)).unwrap();
        let grant = dev_key.callbacks.as_ref().expect("the dev key may call back");
        assert!(grant.hosts.iter().any(|h| h.matches("localhost")) && grant.hosts.iter().any(|h| h.matches("127.0.0.1")));
        assert!(dev.callbacks_allow_http() && dev.callbacks_allow_private_targets());
    }

    #[test]
    fn every_problem_is_reported_at_once_naming_the_setting() {
        let c = ApiConfig {
            listen: "nowhere".into(),
            redis_url: SecretString::from("nope://secret@host"),
            namespace: "a b".into(),
            request_timeout_ms: 5,
            keys: vec![KeyEntry {
                name: "ops".into(),
                key_sha256: "abc".into(),
                role: Role::Read,
                accounts: Some(vec!["bad account".into()]),
                callback_hosts: None,
                callback_secret: None,
            }],
            ..Default::default()
        };
        let msg = c.validate().unwrap_err().to_string();
        for needle in [
            "api.listen",
            "api.redis_url",
            "api.namespace",
            "api.request_timeout_ms = 5",
            "api.keys[0] (\"ops\"): key_sha256",
            "accounts: account_id",
        ] {
            assert!(msg.contains(needle), "{needle} missing from {msg}");
        }
        assert!(!msg.contains("secret@host"), "the redis URL may hold a password: {msg}");
    }

    /// M7: the published dev key must never open a reachable or real deployment.
    #[test]
    fn dev_mode_is_refused_off_loopback_or_beside_real_keys() {
        let open = ApiConfig {
            dev_mode: true,
            ..Default::default()
        };
        let msg = open.validate().unwrap_err().to_string();
        assert!(
            msg.contains("api.dev_mode") && msg.contains("api.listen = \"0.0.0.0:8080\""),
            "{msg}"
        );
        let with_keys = ApiConfig {
            dev_mode: true,
            listen: "127.0.0.1:8080".into(),
            keys: vec![key("ops", Role::Admin)],
            ..Default::default()
        };
        let msg = with_keys.validate().unwrap_err().to_string();
        assert!(msg.contains("api.dev_mode") && msg.contains("api.keys"), "{msg}");
        for listen in ["127.0.0.1:8080", "[::1]:0"] {
            let local = ApiConfig {
                dev_mode: true,
                listen: listen.into(),
                ..Default::default()
            };
            assert!(local.validate().is_ok(), "{listen}");
        }
    }

    #[test]
    fn the_dev_keys_hash_is_refused_outside_dev_mode() {
        let c = ApiConfig {
            keys: vec![
                key("ops", Role::Admin),
                KeyEntry {
                    name: "copied".into(),
                    key_sha256: hex::encode(crate::auth::sha256(DEV_KEY.as_bytes())),
                    role: Role::Admin,
                    accounts: None,
                    callback_hosts: None,
                    callback_secret: None,
                },
            ],
            encryption_key: SecretString::from("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="),
            ..Default::default()
        };
        let msg = c.validate().unwrap_err().to_string();
        assert!(msg.contains("api.keys[1] (\"copied\")") && msg.contains("dev key"), "{msg}");
        assert!(!msg.contains(&c.keys[1].key_sha256), "{msg}");
    }

    #[test]
    fn duplicate_key_names_and_hashes_are_rejected() {
        let c = ApiConfig {
            keys: vec![key("ops", Role::Admin), key("ops", Role::Read)],
            ..Default::default()
        };
        let msg = c.validate().unwrap_err().to_string();
        assert!(msg.contains("api.keys[1]") && msg.contains("already"), "{msg}");
    }

    /// The one test that touches the process environment (tests run in parallel).
    #[test]
    fn a_file_is_layered_over_the_defaults_and_the_environment_over_the_file() {
        let ops = hex::encode(crate::auth::sha256(b"ops"));
        let path = std::env::temp_dir().join(format!("drover-api-config-{}.toml", std::process::id()));
        std::fs::write(
            &path,
            format!(
                "[api]\nlisten = \"127.0.0.1:9000\"\nnamespace = \"fromfile\"\nrequest_timeout_ms = 2500\n\
                 marketplace_token_url = \"https://api.amazon.com/auth/o2/token\"\n\
                 encryption_key = \"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\"\n\
                 [[api.keys]]\nname = \"ops\"\nkey_sha256 = \"{ops}\"\nrole = \"admin\"\naccounts = [\"acme\"]\n"
            ),
        )
        .unwrap();
        // DATABASE_URL applies unless database.url is given explicitly.
        std::env::set_var("DATABASE_URL", "postgres://from-plain-env/db");
        let plain = ApiConfig::load(path.to_str()).map(|c| c.database.url.expose_secret().to_owned());
        std::env::set_var("DROVER_API__DATABASE__URL", "postgres://from-drover-env/db");
        let explicit = ApiConfig::load(path.to_str()).map(|c| c.database.url.expose_secret().to_owned());
        std::env::remove_var("DROVER_API__DATABASE__URL");
        std::env::remove_var("DATABASE_URL");
        assert_eq!(plain.unwrap(), "postgres://from-plain-env/db");
        assert_eq!(explicit.unwrap(), "postgres://from-drover-env/db");

        let c = ApiConfig::load(path.to_str()).unwrap();
        assert_eq!(
            (c.listen.as_str(), c.namespace.as_str(), c.request_timeout_ms),
            ("127.0.0.1:9000", "fromfile", 2500)
        );
        assert_eq!(c.keys[0].accounts, Some(vec!["acme".to_owned()]));
        assert_eq!(c.body_limit_bytes, ApiConfig::default().body_limit_bytes, "defaults fill the rest");

        let read = hex::encode(crate::auth::sha256(b"read"));
        std::env::set_var("DROVER_API__NAMESPACE", "fromenv");
        std::env::set_var("DROVER_API__RATE_LIMIT__BURST", "7");
        std::env::set_var("DROVER_API__KEYS", format!("ops:admin:{ops},viewer:read:{read}:acme;globex"));
        let c = ApiConfig::load(path.to_str());
        std::env::set_var("DROVER_API__REQUEST_TIMEOUT_MS", "5");
        let bad = ApiConfig::load(path.to_str());
        for k in [
            "DROVER_API__NAMESPACE",
            "DROVER_API__RATE_LIMIT__BURST",
            "DROVER_API__KEYS",
            "DROVER_API__REQUEST_TIMEOUT_MS",
        ] {
            std::env::remove_var(k);
        }
        std::fs::remove_file(&path).unwrap();
        let c = c.unwrap();
        assert_eq!(
            (c.namespace.as_str(), c.listen.as_str(), c.rate_limit.burst),
            ("fromenv", "127.0.0.1:9000", 7)
        );
        assert_eq!(c.keys.len(), 2);
        assert_eq!(c.keys[1].role, Role::Read);
        assert_eq!(c.keys[1].accounts, Some(vec!["acme".to_owned(), "globex".to_owned()]));
        let msg = bad.unwrap_err().to_string();
        assert!(msg.contains("api.request_timeout_ms = 5"), "{msg}");
    }
}
