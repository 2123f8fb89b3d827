//! The worker process: configuration, start-up and the job handlers.
//!
//! - [`config`]: typed, validated worker configuration.
//! - [`app`]: the real worker ([`app::App`]: `build`, then `run_until`) — jobs,
//!   marketplace client, resilience, scheduler.
//! - [`jobs`]: the sync, backfill and cleanup handlers.
//! - [`marketplace`]: the SP-API-shaped client with its guard.
//! - [`metrics`]: Prometheus metrics and their `/metrics` listener (real worker only).
//! - [`run`]: run any handler on the queue runtime until the shutdown future resolves
//!   (the test worker's entry point).
pub mod app;
pub mod config;
pub mod jobs;
pub mod marketplace;
pub mod metrics;

use std::future::Future;

use drover::queue::{RedisStore, StoreError};
use drover::runtime::Handler;
use secrecy::ExposeSecret;

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

/// [`run`] on a store the caller already holds.
pub async fn run_with<H: Handler>(
    store: RedisStore,
    config: WorkerConfig,
    handler: H,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StoreError> {
    let defaults = config.job_defaults();
    let url = config.redis_url.clone();
    let ns = config.namespace.clone();
    let connect = move || {
        let url = url.clone();
        let ns = ns.clone();
        let defaults = defaults.clone();
        async move { RedisStore::connect(url.expose_secret(), &ns, defaults).await }
    };
    drover::runtime::run(store, connect, config.settings(), handler, shutdown).await
}

/// Resolves on the first SIGTERM or SIGINT; a second one exits at once.
pub use drover::shutdown::signal as shutdown_signal;
