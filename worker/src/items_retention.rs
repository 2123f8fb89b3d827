//! The per-item record's retention loop: every ten minutes, the `job_items` and
//! `job_runs` rows of jobs whose newest run claimed them more than
//! `worker.items_retention_days` ago are removed (`drover::data::items_retention`),
//! batch after batch for at most a few seconds a pass.
use std::time::{Duration, Instant};

use drover::data::items_retention::{remove_stale, Removed};
use drover::db::CallDeadline;
use drover::outage::Outage;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// How often a pass runs.
const EVERY: Duration = Duration::from_secs(600);
/// Jobs a batch looks at.
const BATCH: i64 = 100;
/// How long one pass may keep removing before it waits for the next (checked between
/// jobs: one job's items go in one transaction).
const BUDGET: Duration = Duration::from_secs(5);

/// Passes that failed (logged once an outage).
static FAILING: Outage = Outage::new();

/// Runs passes until `stop` fires.
pub async fn run(pool: PgPool, keep: Duration, call: CallDeadline, stop: CancellationToken) {
    loop {
        pass(&pool, keep, call).await;
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(EVERY) => {}
        }
    }
}

/// One pass: batches until one finds fewer stale jobs than it asked for, or the budget
/// is spent. A batch that hears nothing for its budget and one call's deadline (`call`)
/// is given up: its connection went silent, and sqlx has no read timeout of its own
/// (before, found by the data audit of 2026-12-06, such a pass waited forever and the
/// loop never ran again).
pub async fn pass(pool: &PgPool, keep: Duration, call: CallDeadline) -> Removed {
    let deadline = Instant::now() + BUDGET;
    let mut total = Removed::default();
    loop {
        let batch = tokio::time::timeout(BUDGET + call.limit(), remove_stale(pool, keep, BATCH, deadline));
        let answer = batch.await.unwrap_or_else(|_| {
            Err(sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no reply from the database within {} ms", (BUDGET + call.limit()).as_millis()),
            )))
        });
        match answer {
            Ok(r) => {
                total.jobs += r.jobs;
                total.items += r.items;
                total.seen += r.seen;
                if FAILING.answered() {
                    tracing::info!("the per-item record's retention works again");
                }
                if r.seen < BATCH as u64 || r.jobs == 0 || Instant::now() >= deadline {
                    break;
                }
            }
            Err(e) => {
                if FAILING.failed() {
                    tracing::warn!(error = %e, "could not remove the per-item record of jobs past worker.items_retention_days; trying again every 10 min");
                }
                break;
            }
        }
    }
    if total.jobs > 0 {
        tracing::info!(
            jobs = total.jobs,
            items = total.items,
            keep_days = keep.as_secs() / 86_400,
            "per-item record of old jobs removed"
        );
    }
    total
}
