//! The real worker: the queue runtime plus the three jobs, the marketplace client, the
//! shared resilience state and (optionally) the scheduler.
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use drover::crypto::SecretBox;
use drover::db::accounts::AccountRepo;
use drover::queue::RedisStore;
use drover::resilience::Resilience;
use drover::schedule::{AccountSource, ScheduleStore, Scheduler};
use redis::aio::ConnectionManager;
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

/// Run sync, backfill and cleanup jobs until `shutdown` resolves. Redis and PostgreSQL
/// may be down at start-up: Redis is retried here, PostgreSQL lazily by each job (a job
/// that cannot reach it fails transiently and is retried), migrations in the background.
pub async fn run_jobs(config: WorkerConfig, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), StartError> {
    let key = config.validate_jobs()?;
    let stop = CancellationToken::new();
    let trigger = stop.clone();
    tokio::spawn(async move {
        shutdown.await;
        trigger.cancel();
    });

    if !config.metrics_listen.is_empty() {
        crate::metrics::serve(&config.metrics_listen, stop.clone()).await;
    }

    let pool = drover::db::connect_lazy(&config.database)?;
    tokio::spawn(migrate_in_background(pool.clone(), stop.clone()));
    let Some(conn) = connect_redis(&config.redis_url, &stop).await else {
        return Ok(());
    };

    let resilience = Resilience::new(conn.clone(), &config.namespace, config.resilience.clone(), &key);
    let market = MarketplaceClient::new(config.marketplace.clone(), resilience)?;
    let jobs = Jobs::new(market, pool.clone(), SecretBox::new(&key), config.jobs.clone());

    if config.scheduler.enabled {
        let store = RedisStore::connect(&config.redis_url, &config.namespace, config.job_defaults()).await?;
        let accounts: Arc<dyn AccountSource> = Arc::new(AccountRepo::new(pool));
        let scheduler = Scheduler::new(
            store,
            ScheduleStore::new(conn, &config.namespace),
            Some(accounts),
            config.scheduler.clone(),
        );
        tokio::spawn(scheduler.run(stop.clone()));
    }
    crate::run(config, jobs, stop.cancelled_owned()).await?;
    Ok(())
}

async fn migrate_in_background(pool: sqlx::PgPool, stop: CancellationToken) {
    let mut delay = Duration::from_millis(500);
    loop {
        match drover::db::migrate(&pool).await {
            Ok(()) => return,
            Err(e) => tracing::warn!(error = %e, retry_ms = delay.as_millis() as u64, "database migrations not applied yet; retrying"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}

/// A managed connection for the resilience state, retried until Redis answers.
async fn connect_redis(url: &str, stop: &CancellationToken) -> Option<ConnectionManager> {
    let mut delay = Duration::from_millis(100);
    loop {
        let attempt = async { redis::Client::open(url)?.get_connection_manager().await };
        match attempt.await {
            Ok(c) => return Some(c),
            Err(e) => tracing::warn!(error = %e, retry_ms = delay.as_millis() as u64, "redis not reachable at start-up; retrying"),
        }
        tokio::select! {
            _ = stop.cancelled() => return None,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}
