//! The real worker: the queue runtime plus the three jobs, the marketplace client, the
//! shared resilience state and (optionally) the scheduler.
//!
//! Built like the API: [`App::build`] validates the configuration and prepares every
//! connection without dialling, so a worker starts (and stops) while Redis or PostgreSQL
//! is down; [`App::run_until`] runs until the shutdown future resolves. The queue's
//! fetchers, the keeper and the scheduler each retry on their own; jobs reach
//! PostgreSQL lazily (a job that cannot fails transiently and is retried); migrations
//! run in the background.
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use drover::crypto::{EncryptionKey, SecretBox};
use drover::db::accounts::AccountRepo;
use drover::queue::RedisStore;
use drover::resilience::Resilience;
use drover::schedule::{AccountSource, ScheduleStore, Scheduler};
use secrecy::ExposeSecret;
use tokio_util::sync::CancellationToken;

use crate::config::WorkerConfig;
use crate::jobs::Jobs;
use crate::marketplace::MarketplaceClient;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] drover::config::ConfigError),
    #[error("database: {0}")]
    Database(#[from] drover::db::DbError),
    #[error("marketplace client: {0}")]
    Client(#[from] crate::marketplace::ClientBuildError),
    #[error(transparent)]
    Queue(#[from] drover::queue::StoreError),
}

/// A worker ready to run: validated, connections prepared but not dialled.
pub struct App {
    config: WorkerConfig,
    key: EncryptionKey,
    pool: sqlx::PgPool,
    store: RedisStore,
}

impl App {
    /// Validate `config` (every problem reported at once) and prepare the connections.
    pub fn build(config: WorkerConfig) -> Result<Self, StartError> {
        let key = config.validate_jobs()?;
        let pool = drover::db::connect_lazy(&config.database)?;
        let store = RedisStore::connect_lazy(config.redis_url.expose_secret(), &config.namespace, config.job_defaults())?;
        Ok(Self { config, key, pool, store })
    }

    /// Run sync, backfill and cleanup jobs (and the scheduler, if enabled) until
    /// `shutdown` resolves, then stop within the grace period.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), StartError> {
        let App { config, key, pool, store } = self;
        let stop = CancellationToken::new();
        let trigger = stop.clone();
        tokio::spawn(async move {
            shutdown.await;
            trigger.cancel();
        });
        // The metrics are served until the runs have drained, not only until the stop
        // is asked (what a drain counts is scraped; a scrape then is answered).
        let metrics_stop = CancellationToken::new();
        let _metrics_until_return = metrics_stop.clone().drop_guard();
        if !config.metrics_listen.is_empty() {
            crate::metrics::serve(&config.metrics_listen, metrics_stop).await;
        }
        let migrations = pool.clone();
        let migrate_stop = stop.clone();
        tokio::spawn(async move { drover::db::migrate_until_done(&migrations, &migrate_stop, None).await });

        let resilience = Resilience::new(store.connection(), &config.namespace, config.resilience.clone(), &key);
        let market = MarketplaceClient::new(config.marketplace.clone(), resilience)?;
        let deadline = config.database.call_deadline();
        let jobs = Jobs::new(market, pool.clone(), deadline, SecretBox::new(&key), config.jobs.clone());
        let keep_items = Duration::from_secs(config.items_retention_days * 86_400);
        tokio::spawn(crate::items_retention::run(pool.clone(), keep_items, deadline, stop.clone()));
        if config.scheduler.enabled {
            let accounts: Arc<dyn AccountSource> = Arc::new(AccountRepo::new(pool).bounded_by(deadline));
            let schedules = ScheduleStore::new(store.connection(), &config.namespace);
            let scheduler = Scheduler::new(store.clone(), schedules, Some(accounts), config.scheduler.clone());
            tokio::spawn(scheduler.run(stop.clone()));
        }
        crate::run_with(store, config, jobs, stop.cancelled_owned()).await?;
        Ok(())
    }
}
