//! Building and running the service: `build(config)` validates the configuration,
//! connects to Redis and binds the listener (port 0 picks a free one, reported by
//! [`App::local_addr`]); [`App::run_until`] serves until the given future resolves, then
//! stops accepting, ends event streams and lets in-flight requests finish within the
//! grace period.
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use drover::config::ConfigError;
use drover::db::{AccountRepo, DbError, PgPool};
use drover::queue::{RedisStore, StoreError};
use drover::resilience::Resilience;
use drover::schedule::{AccountSource, ScheduleStore, Scheduler, SchedulerConfig};
use secrecy::ExposeSecret;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::client_slots::ClientSlots;
use crate::config::ApiConfig;
use crate::cursor::Cursors;
use crate::metrics::Metrics;
use crate::ratelimit::{KeyLimits, RateLimiter, CREDENTIAL_CHECKS};
use crate::routes::router;
use crate::serve::{serve, ServerLimits};
use crate::state::{Accounts, AppState, Limits, ReadGuards};
use crate::streams::StreamSlots;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot reach Redis (api.redis_url): {0}")]
    Redis(#[from] StoreError),
    #[error("{0}")]
    Layout(StoreError),
    #[error("cannot set up the Postgres pool (api.database): {0}")]
    Postgres(#[from] DbError),
    #[error("cannot build the marketplace HTTP client: {0}")]
    Http(String),
    #[error("cannot listen on {addr} (api.listen or api.metrics_listen): {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
}

/// How long `build` waits to check the queue layout before leaving it to `run_until`.
const LAYOUT_WAIT: Duration = Duration::from_secs(2);

/// How long `build` waits for the first migration attempt before leaving it to the background.
const FIRST_MIGRATION_WAIT: Duration = Duration::from_secs(3);

/// A bound, ready-to-run API.
pub struct App {
    listener: TcpListener,
    addr: SocketAddr,
    /// The internal `/metrics` listener and its address, unless metrics are off.
    metrics: Option<(TcpListener, SocketAddr)>,
    state: AppState,
    grace: Duration,
    scheduler: SchedulerConfig,
    server: ServerLimits,
    /// Connections per client address on the public listener.
    clients: Arc<ClientSlots>,
}

pub async fn build(config: ApiConfig) -> Result<App, StartError> {
    let valid = config.validate()?;
    if config.dev_mode {
        // The key itself is public (the README gives it), but keys are never logged.
        tracing::warn!("api.dev_mode is on: the documented dev key is accepted as an admin key; never run this in production");
    }
    // Lazy: the API starts while Redis is down and says so on /readyz (503) until it is back.
    let store = RedisStore::connect_lazy(config.redis_url.expose_secret(), &config.namespace, valid.job_defaults.clone())?;
    // With Redis up, a partition count other than the recorded one refuses to start;
    // with Redis away, `run_until` checks once it answers.
    if let Ok(Err(e @ StoreError::Setup(_))) = tokio::time::timeout(LAYOUT_WAIT, store.check_layout()).await {
        return Err(StartError::Layout(e));
    }
    let limits_per_key = KeyLimits {
        writes: RateLimiter::new(store.connection(), &config.namespace, config.rate_limit),
        reads: RateLimiter::named(store.connection(), &config.namespace, "read-ratelimit", config.read_rate_limit),
    };
    let limits = Limits {
        body_bytes: config.body_limit_bytes,
        csv_bytes: config.csv_limit_bytes,
        csv_rows: config.csv_max_rows,
        request_timeout: config.request_timeout(),
        events_poll: Duration::from_millis(config.events_poll_ms),
        events_max: Duration::from_millis(config.events_max_ms),
        idempotency_ttl: valid.job_defaults.idempotency_ttl,
        payload_bytes: config.jobs.max_payload_bytes,
        schedules: config.schedules,
        headers: config.server.header_limits(),
        body_bytes_in_flight: config.server.max_body_bytes_in_flight,
    };
    // Lazy too: the pool connects on first use; migrations run in the background.
    let pool = drover::db::connect_lazy(&config.database)?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_millis(config.marketplace_timeout_ms))
        .connect_timeout(Duration::from_millis(config.marketplace_timeout_ms.min(5_000)))
        // A 307/308 from the token endpoint would re-POST the client secret and refresh
        // token to wherever it points: answer it as the failure it is.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| StartError::Http(e.to_string()))?;
    let accounts = Accounts {
        repo: AccountRepo::new(pool.clone()).bounded_by(config.database.call_deadline()),
        secrets: valid.secrets,
        resilience: Resilience::new(store.connection(), &config.namespace, config.resilience.clone(), &valid.key),
        http,
        token_url: config.token_url().to_owned(),
        // Room is left for the insert and the first sync's enqueue (2 s) after it.
        token_timeout: Duration::from_millis(config.marketplace_timeout_ms)
            .min(config.request_timeout().saturating_sub(Duration::from_secs(3)))
            .max(config.request_timeout() / 2),
        first_sync: config.accounts.first_sync,
        checks: RateLimiter::named(store.connection(), &config.namespace, "credential-checks", CREDENTIAL_CHECKS),
    };
    let streams = StreamSlots::new(config.streams.max_open, config.streams.max_open_per_key);
    let cursors = Cursors::new(valid.cursors);
    let reads = ReadGuards { streams, cursors };
    let callbacks = crate::callbacks::CallbackPolicy {
        allow_http: config.callbacks_allow_http(),
        allow_private_targets: config.callbacks_allow_private_targets(),
        sealer: drover::callback::seal::CallbackSealer::new(&valid.key),
    };
    let state = AppState::new(store, valid.keys, limits_per_key, Metrics::new(), limits, accounts, reads)
        .with_callbacks(callbacks)
        .with_ui(config.ui.clone());
    // Wait briefly for the first attempt, so a healthy start is ready at once; when
    // Postgres is down or slow the attempts go on in the background.
    let (first_attempt, attempted) = oneshot::channel();
    tokio::spawn(migrate_in_background(
        pool,
        state.clone(),
        first_attempt,
        config.audit_retention_days,
    ));
    let _ = tokio::time::timeout(FIRST_MIGRATION_WAIT, attempted).await;
    let listener = TcpListener::bind(valid.listen).await.map_err(|source| StartError::Bind {
        addr: valid.listen,
        source,
    })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: valid.listen,
        source,
    })?;
    let metrics = match valid.metrics_listen {
        Some(at) => {
            let bind_err = |source| StartError::Bind { addr: at, source };
            let l = TcpListener::bind(at).await.map_err(bind_err)?;
            let a = l.local_addr().map_err(bind_err)?;
            tracing::info!(addr = %a, "metrics listening (internal: keep off the Service)");
            Some((l, a))
        }
        None => None,
    };
    tracing::info!(%addr, namespace = %config.namespace, keys = state.keys().len(), "drover-api listening");
    Ok(App {
        listener,
        addr,
        metrics,
        state,
        grace: Duration::from_millis(config.shutdown_grace_ms),
        scheduler: config.scheduler.clone(),
        server: ServerLimits {
            header_read_timeout: Duration::from_millis(config.server.header_read_timeout_ms),
            max_connections: config.server.max_connections,
            write_timeout: Duration::from_millis(config.server.write_timeout_ms),
            headers: config.server.header_limits(),
        },
        // Validated with the configuration: an entry that does not parse stopped the start.
        clients: ClientSlots::new(
            config.server.max_connections_per_client,
            config
                .ui
                .trusted_proxies
                .iter()
                .filter_map(|p| crate::config::parse_proxy(p))
                .collect(),
        ),
    })
}

/// Apply the migrations in the background until done or shut down, then mark the
/// state ready for requests that need the schema.
async fn migrate_in_background(pool: PgPool, state: AppState, first_attempt: oneshot::Sender<()>, audit_retention_days: u32) {
    if drover::db::migrate_until_done(&pool, state.shutdown(), Some(first_attempt)).await {
        state.set_migrated();
        tokio::spawn(crate::audit::trim_loop(state.clone(), audit_retention_days));
        // Credentials sealed before they were bound to their row and column.
        let accounts = state.accounts();
        match accounts.repo.reseal_legacy(&accounts.secrets).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(resealed = n, "credentials re-sealed, bound to their account and column"),
            Err(e) => tracing::warn!(error = %e, "re-sealing credentials failed; the next start tries again (they still open)"),
        }
        // Accounts registered before their seller's limits could be shared.
        match accounts.repo.fill_seller_limits(&accounts.secrets).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(accounts = n, "accounts given the seller whose marketplace limits they share"),
            Err(e) => {
                tracing::warn!(error = %e, "finding which accounts share a seller's limits failed; the next start tries again (each keeps its own until then)")
            }
        }
    }
}

impl App {
    /// The address actually bound (the real port when configured with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The internal metrics listener's address (none when `api.metrics_listen` is empty).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|(_, a)| *a)
    }

    /// Serve until `shutdown` resolves, then drain for at most the grace period.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        let token = self.state.shutdown().clone();
        if self.scheduler.enabled {
            let accounts: Arc<dyn AccountSource> = Arc::new(self.state.accounts().repo.clone());
            let schedules = ScheduleStore::new(self.state.store().connection(), self.state.store().namespace());
            let scheduler = Scheduler::new(self.state.store().clone(), schedules, Some(accounts), self.scheduler.clone())
                .with_counters(self.state.metrics().schedule_counters());
            tokio::spawn(scheduler.run(token.clone()));
        }
        if self.state.ui().enabled {
            tokio::spawn(crate::ui::series::run(self.state.clone()));
        }
        if let Some((listener, _)) = self.metrics {
            let metrics = crate::metrics_listener::router(self.state.clone());
            // internal: its scrapers are few and known, so no per-client cap
            tokio::spawn(serve(
                listener,
                metrics,
                self.server,
                ClientSlots::new(0, Vec::new()),
                token.clone(),
            ));
        }
        let store = self.state.store().clone();
        let background = self.state.background().clone();
        let app = router(self.state);
        let mut server = tokio::spawn(serve(self.listener, app, self.server, self.clients, token.clone()));
        // Redis may have been away at start: the layout is checked once it answers, and
        // an API whose partition count differs stops rather than misplace jobs. The count
        // is recorded again every few seconds (a Redis that lost its data).
        let misfit = async move { store.keep_layout(false).await };
        tokio::select! {
            r = &mut server => return r.unwrap_or_else(|e| Err(std::io::Error::other(e))),
            e = misfit => {
                tracing::error!(error = %e, "the API stops: its queue layout differs from the one in Redis");
                token.cancel();
                return Err(std::io::Error::other(e.to_string()));
            }
            _ = shutdown => {}
        }
        tracing::info!(
            grace_ms = self.grace.as_millis() as u64,
            "shutting down: finishing in-flight requests"
        );
        token.cancel();
        let deadline = tokio::time::Instant::now() + self.grace;
        let served = match tokio::time::timeout_at(deadline, &mut server).await {
            Ok(r) => r.unwrap_or_else(|e| Err(std::io::Error::other(e))),
            Err(_) => {
                tracing::warn!("grace period over; closing the remaining connections");
                server.abort();
                Ok(())
            }
        };
        finish_background(&background, deadline).await;
        served
    }
}

/// Waits, until `deadline`, for the actions still at work on tasks of their own (a
/// cancel or dead-letter action its request's timeout cut off, an account's first
/// steps): the process ends with `main`, and with it any such task, which then left
/// neither its audit entry nor a line (found by the fifth audits of 2026-12-06). Those
/// still at work at the deadline are logged, once.
async fn finish_background(background: &tokio_util::task::TaskTracker, deadline: tokio::time::Instant) {
    background.close();
    if tokio::time::timeout_at(deadline, background.wait()).await.is_err() {
        tracing::error!(
            actions = background.len(),
            "grace period over with actions still at work: they stop unfinished, and their audit entries are not written"
        );
    }
}
