//! The worker process: configuration, start-up and the job handlers.
//!
//! - [`config`]: typed, validated worker configuration.
//! - [`app`]: the real worker — jobs, marketplace client, resilience, scheduler.
//! - [`jobs`]: the sync, backfill and cleanup handlers.
//! - [`marketplace`]: the SP-API-shaped client with its guard.
//! - [`metrics`]: Prometheus metrics and their `/metrics` listener (real worker only).
//! - [`run`]: connect to the queue and run jobs until the shutdown future resolves.
pub mod app;
pub mod config;
pub mod jobs;
pub mod marketplace;
pub mod metrics;

use std::future::Future;

use drover::queue::{RedisStore, StoreError};
use drover::runtime::Handler;

pub use config::WorkerConfig;

/// Connect to Redis (retrying until it answers or `shutdown` fires) and run `handler`
/// for every kind with concurrency > 0 until `shutdown` resolves.
pub async fn run<H: Handler>(
    config: WorkerConfig,
    handler: H,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StoreError> {
    let mut shutdown = Box::pin(shutdown);
    let defaults = config.job_defaults();
    let mut delay = std::time::Duration::from_millis(100);
    let store = loop {
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            r = RedisStore::connect(&config.redis_url, &config.namespace, defaults.clone()) => match r {
                Ok(s) => break s,
                Err(e) => {
                    tracing::warn!(error = %e, retry_ms = delay.as_millis() as u64, "queue not reachable at start-up; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(std::time::Duration::from_secs(5));
                }
            }
        }
    };
    let url = config.redis_url.clone();
    let ns = config.namespace.clone();
    let connect = move || {
        let url = url.clone();
        let ns = ns.clone();
        let defaults = defaults.clone();
        async move { RedisStore::connect(&url, &ns, defaults).await }
    };
    drover::runtime::run(store, connect, config.settings(), handler, shutdown).await
}

/// Resolves on the first SIGTERM or SIGINT; a second one exits at once.
pub use drover::shutdown::signal as shutdown_signal;
