//! The worker process: configuration, start-up and the job handlers.
//!
//! - [`config`]: typed, validated worker configuration.
//! - [`callbacks`]: completion callbacks — the delivery loop beside the job slots.
//! - [`app`]: the real worker ([`app::App`]: `build`, then `run_until`) — jobs,
//!   marketplace client, resilience, scheduler.
//! - [`jobs`]: the sync, backfill and cleanup handlers.
//! - [`marketplace`]: the SP-API-shaped client with its guard.
//! - [`metrics`]: Prometheus metrics and their `/metrics` listener (real worker only).
//! - [`cli`]: the command line (`--help` with every setting, `config check`).
//! - [`healthcheck`]: the `healthcheck` subcommand (the image's HEALTHCHECK).
//! - [`run`]: run any handler on the queue runtime until the shutdown future resolves
//!   (the test worker's entry point).
pub mod app;
pub mod callbacks;
pub mod cli;
pub mod config;
pub mod healthcheck;
pub mod items_retention;
pub mod jobs;
pub mod marketplace;
pub mod metrics;

use std::future::Future;

use drover::queue::{RedisStore, StoreError};
use drover::runtime::Handler;
use secrecy::ExposeSecret;
use tokio_util::sync::CancellationToken;

pub use config::WorkerConfig;

/// Run `handler` for every kind with concurrency > 0 until `shutdown` resolves. Redis
/// is dialled lazily: while it is down the fetchers and the lease keeper retry.
pub async fn run<H: Handler>(
    config: WorkerConfig,
    handler: H,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StoreError> {
    let store = RedisStore::connect_lazy(config.redis_url.expose_secret(), &config.namespace, config.job_defaults())?;
    run_with(store, config, handler, shutdown).await
}

/// [`run`] on a store the caller already holds. Callback deliveries run beside the
/// jobs (their own tasks, never a job slot) and stop with them.
pub async fn run_with<H: Handler>(
    store: RedisStore,
    config: WorkerConfig,
    handler: H,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StoreError> {
    let stop = CancellationToken::new();
    let trigger = stop.clone();
    tokio::spawn(async move {
        shutdown.await;
        trigger.cancel();
    });
    // A worker whose partition count differs from the one recorded in Redis would put
    // jobs where no one else looks: it stops, saying so (at once if Redis is up now).
    let layout = store.clone();
    let layout_stop = stop.clone();
    let misfit = tokio::spawn(async move {
        let e = layout.keep_layout(true).await;
        tracing::error!(error = %e, "the worker stops: its queue layout differs from the one in Redis");
        layout_stop.cancel();
        Err::<(), _>(e)
    });
    let settings = config.settings();
    let callbacks = start_callbacks(&store, &config, &settings.worker_id, stop.clone());
    let defaults = config.job_defaults();
    let url = config.redis_url.clone();
    let ns = config.namespace.clone();
    let connect = move || {
        let url = url.clone();
        let ns = ns.clone();
        let defaults = defaults.clone();
        async move { RedisStore::connect(url.expose_secret(), &ns, defaults).await }
    };
    let ran = drover::runtime::run(store, connect, settings, handler, stop.clone().cancelled_owned()).await;
    stop.cancel();
    // The deliveries have drained since the stop began, beside the jobs' grace; past the
    // runtime's own stop they get 2 s more, so a slow receiver cannot hold the worker
    // for its whole try timeout (a try not recorded is tried again after its lease).
    if let Some(mut c) = callbacks {
        if tokio::time::timeout(CALLBACKS_AFTER_STOP, &mut c).await.is_err() {
            c.abort();
            tracing::warn!("callback deliveries still in flight at exit are left to their lease");
        }
    }
    if misfit.is_finished() {
        if let Ok(Err(e)) = misfit.await {
            return Err(e);
        }
    } else {
        misfit.abort();
    }
    ran
}

/// How long callback deliveries may go on once the runtime has stopped.
const CALLBACKS_AFTER_STOP: std::time::Duration = std::time::Duration::from_secs(2);

/// Start the delivery loop, unless this worker delivers no callbacks or has no key to
/// open their secrets with (said once, so it is not mistaken for a silent failure).
fn start_callbacks(
    store: &RedisStore,
    config: &WorkerConfig,
    worker_id: &str,
    stop: CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    if config.callbacks.concurrency == 0 {
        return None;
    }
    let Some(key) = config.sealing_key() else {
        tracing::warn!("callback deliveries are off: worker.encryption_key is not set (the API's key opens their secrets)");
        return None;
    };
    let mut settings = config.callbacks.clone();
    if config.dev_mode {
        // The dev key's callbacks go to this machine, over http (docs/callbacks.md).
        settings.allow_http = true;
        settings.allow_private_targets = true;
    }
    let deliverer = match callbacks::Deliverer::new(&settings, drover::callback::seal::CallbackSealer::new(&key)) {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(error = %e, "callback deliveries are off");
            return None;
        }
    };
    Some(tokio::spawn(callbacks::run(
        store.clone(),
        deliverer,
        settings,
        worker_id.to_owned(),
        stop,
    )))
}

/// Resolves on the first SIGTERM or SIGINT; a second one exits at once.
pub use drover::shutdown::signal as shutdown_signal;

/// `drover-worker partitions migrate --to N`: moves the queues in Redis from the
/// partition count recorded there to `to` (every API and worker stopped; see
/// `drover::queue::RedisStore::migrate_partitions`). Set `queue.partitions = N` on every
/// process afterwards.
pub async fn migrate_partitions(config: &WorkerConfig, to: u16) -> Result<drover::queue::Migrated, StoreError> {
    let to = drover::queue::Partitions::new(to).map_err(StoreError::Setup)?;
    let probe = RedisStore::connect(config.redis_url.expose_secret(), &config.namespace, config.job_defaults()).await?;
    let mut defaults = config.job_defaults();
    if let Some(recorded) = probe.recorded_partitions().await? {
        defaults.partitions = drover::queue::Partitions::new(recorded).map_err(StoreError::Setup)?;
    }
    let store = RedisStore::connect(config.redis_url.expose_secret(), &config.namespace, defaults).await?;
    store.migrate_partitions(to).await
}
