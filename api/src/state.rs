//! What every handler shares: the store, the keys, the limiter, metrics and limits, and
//! for the accounts endpoints the Postgres repository, the sealing box and the marketplace.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use drover::crypto::SecretBox;
use drover::db::{AccountRepo, AuditLog};
use drover::queue::RedisStore;
use drover::resilience::Resilience;
use tokio_util::sync::CancellationToken;

use crate::auth::KeyRing;
use crate::cursor::Cursors;
use crate::idempotency::IdempotencyClaims;
use crate::metrics::Metrics;
use crate::ratelimit::{KeyLimits, RateLimiter};
use crate::streams::StreamSlots;

/// Limits taken from the validated configuration.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub body_bytes: usize,
    pub csv_bytes: usize,
    pub csv_rows: usize,
    pub request_timeout: Duration,
    pub events_poll: Duration,
    pub events_max: Duration,
    pub idempotency_ttl: Duration,
    /// Largest payload a job may store, as JSON.
    pub payload_bytes: usize,
    /// How many schedules an account (and an API key) may have, and how often each may fire.
    pub schedules: crate::config::SchedulesConfig,
    pub headers: crate::config::HeaderLimits,
    /// Most bytes of request bodies held at once (`api.server.max_body_bytes_in_flight`).
    pub body_bytes_in_flight: usize,
}

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

struct Inner {
    store: RedisStore,
    keys: KeyRing,
    limits_per_key: KeyLimits,
    claims: IdempotencyClaims,
    metrics: Metrics,
    limits: Limits,
    /// Cancelled when the server shuts down, so open event streams end.
    shutdown: CancellationToken,
    accounts: Accounts,
    /// Open event streams, capped per key and per process.
    streams: Arc<StreamSlots>,
    /// The polls the event streams share, one per followed job.
    job_watches: crate::job_watch::JobWatches,
    cursors: Cursors,
    /// Set once the migrations have been applied; until then Postgres is "not ready".
    migrated: AtomicBool,
    /// `/readyz`'s last check, shared by the probes of one second.
    readiness: crate::readiness::Readiness,
    /// What a job's `callback_url` may name; `None`: callbacks are refused.
    callbacks: Option<crate::callbacks::CallbackPolicy>,
    /// Operator actions, in the accounts' database.
    audit: AuditLog,
    /// The console's settings (`api.ui`).
    ui: crate::config::UiConfig,
    /// Console sign-in attempts per client address (`api.ui.login_limit`).
    logins: crate::ui::login_throttle::LoginThrottle,
    /// The console's paced dead-letter replays running here.
    paced_replays: Arc<crate::ui::paced_replays::PacedReplays>,
    /// Whole-record reads in flight, capped per key and per process.
    record_reads: Arc<crate::record_reads::RecordReads>,
    walks: Arc<crate::record_reads::RecordReads>,
    /// Request bodies in flight, in bytes, capped per process and per key.
    body_budget: Arc<crate::body_budget::BodyBudget>,
    /// Actions running to their end on tasks of their own
    /// (`request_id::spawn_for_request`): a shutdown waits for them within its grace.
    background: tokio_util::task::TaskTracker,
}

/// What the accounts endpoints need.
#[derive(Clone)]
pub struct Accounts {
    pub repo: AccountRepo,
    pub secrets: SecretBox,
    /// The marketplace limits, read from the same Redis the workers write them to.
    pub resilience: Resilience,
    /// Calls the LWA token endpoint to validate credentials.
    pub http: reqwest::Client,
    pub token_url: String,
    /// How long one validation exchange may take: `marketplace_timeout_ms`, but always
    /// under the request timeout, so the client gets the precise 503 rather than a timeout.
    pub token_timeout: Duration,
    /// `api.accounts.first_sync`: a new account gets its first sync queued.
    pub first_sync: bool,
    /// Credential checks by non-admin keys, per key (see [`crate::ratelimit::CREDENTIAL_CHECKS`]).
    pub checks: RateLimiter,
}

/// What guards reads that span requests: open event streams and page cursors.
pub struct ReadGuards {
    pub streams: Arc<StreamSlots>,
    pub cursors: Cursors,
}

impl AppState {
    pub fn new(
        store: RedisStore,
        keys: KeyRing,
        limits_per_key: KeyLimits,
        metrics: Metrics,
        limits: Limits,
        accounts: Accounts,
        reads: ReadGuards,
    ) -> Self {
        let ReadGuards { streams, cursors } = reads;
        let claims = IdempotencyClaims::new(store.connection(), store.namespace(), limits.idempotency_ttl);
        let audit = AuditLog::new(accounts.repo.pool().clone()).bounded_by(accounts.repo.deadline());
        let ui = crate::config::UiConfig::default();
        let logins = crate::ui::login_throttle::LoginThrottle::new(store.connection(), store.namespace(), &ui);
        let paced_replays = Arc::new(crate::ui::paced_replays::PacedReplays::new(store.connection(), store.namespace()));
        Self(Arc::new(Inner {
            store,
            keys,
            limits_per_key,
            claims,
            metrics,
            limits,
            shutdown: CancellationToken::new(),
            accounts,
            streams,
            job_watches: Default::default(),
            cursors,
            migrated: AtomicBool::new(false),
            readiness: crate::readiness::Readiness::default(),
            callbacks: None,
            audit,
            ui,
            logins,
            paced_replays,
            record_reads: Default::default(),
            walks: Arc::new(crate::record_reads::RecordReads::walks()),
            body_budget: crate::body_budget::BodyBudget::new(limits.body_bytes_in_flight),
            background: tokio_util::task::TaskTracker::new(),
        }))
    }

    /// Accept `callback_url` under `policy`. Set while building, before the state is shared.
    pub fn with_callbacks(mut self, policy: crate::callbacks::CallbackPolicy) -> Self {
        Arc::get_mut(&mut self.0)
            .expect("callbacks are set before the state is shared")
            .callbacks = Some(policy);
        self
    }

    /// The console's settings. Set while building, before the state is shared.
    pub fn with_ui(mut self, ui: crate::config::UiConfig) -> Self {
        let logins = crate::ui::login_throttle::LoginThrottle::new(self.store().connection(), self.store().namespace(), &ui);
        let inner = Arc::get_mut(&mut self.0).expect("the console is set before the state is shared");
        inner.ui = ui;
        inner.logins = logins;
        self
    }

    pub fn record_reads(&self) -> &Arc<crate::record_reads::RecordReads> {
        &self.0.record_reads
    }
    /// Turns for walks charged after the fact (`handlers/listing.rs`).
    pub fn walks(&self) -> &Arc<crate::record_reads::RecordReads> {
        &self.0.walks
    }

    pub fn body_budget(&self) -> &Arc<crate::body_budget::BodyBudget> {
        &self.0.body_budget
    }

    /// The actions at work on tasks of their own, which a shutdown waits for.
    pub fn background(&self) -> &tokio_util::task::TaskTracker {
        &self.0.background
    }

    pub fn paced_replays(&self) -> &Arc<crate::ui::paced_replays::PacedReplays> {
        &self.0.paced_replays
    }

    pub fn ui(&self) -> &crate::config::UiConfig {
        &self.0.ui
    }

    pub fn login_throttle(&self) -> &crate::ui::login_throttle::LoginThrottle {
        &self.0.logins
    }

    pub fn callbacks(&self) -> Option<&crate::callbacks::CallbackPolicy> {
        self.0.callbacks.as_ref()
    }

    pub fn audit(&self) -> &AuditLog {
        &self.0.audit
    }

    pub fn store(&self) -> &RedisStore {
        &self.0.store
    }
    pub fn readiness(&self) -> &crate::readiness::Readiness {
        &self.0.readiness
    }
    pub fn keys(&self) -> &KeyRing {
        &self.0.keys
    }
    pub fn limits_per_key(&self) -> &KeyLimits {
        &self.0.limits_per_key
    }
    pub fn claims(&self) -> &IdempotencyClaims {
        &self.0.claims
    }
    pub fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }
    pub fn limits(&self) -> &Limits {
        &self.0.limits
    }
    pub fn shutdown(&self) -> &CancellationToken {
        &self.0.shutdown
    }
    pub fn accounts(&self) -> &Accounts {
        &self.0.accounts
    }
    pub fn cursors(&self) -> &Cursors {
        &self.0.cursors
    }
    pub fn job_watches(&self) -> &crate::job_watch::JobWatches {
        &self.0.job_watches
    }
    pub fn streams(&self) -> &Arc<StreamSlots> {
        &self.0.streams
    }
    pub fn migrated(&self) -> bool {
        self.0.migrated.load(Ordering::Acquire)
    }
    pub fn set_migrated(&self) {
        self.0.migrated.store(true, Ordering::Release);
    }
}
