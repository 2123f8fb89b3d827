//! The per-item record's retention: `job_items` and `job_runs` rows of jobs whose newest
//! run claimed them longer ago than the retention are removed, one job at a time in a
//! transaction that holds the job's claim row, so a run claiming the job again waits
//! and then seeds its items afresh, and never finds them half removed.
use std::time::{Duration, Instant};

use sqlx::PgPool;

use super::DataResult;

/// What one call removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Removed {
    pub jobs: u64,
    pub items: u64,
    /// Stale jobs looked at (removed, claimed again meanwhile, or held by another
    /// process's pass): fewer than asked for means none is left for now.
    pub seen: u64,
}

/// Removes the items and the run claim of up to `jobs` jobs whose newest run claimed
/// them more than `older_than` ago, oldest first, until `deadline` (checked between
/// jobs: one job's items, up to 100,000 rows, go in one transaction). A job claimed
/// again meanwhile keeps everything; a job another process is removing is passed over.
pub async fn remove_stale(pool: &PgPool, older_than: Duration, jobs: i64, deadline: Instant) -> DataResult<Removed> {
    let secs = older_than.as_secs_f64();
    let stale: Vec<String> = sqlx::query_scalar(
        "SELECT job_id FROM job_runs WHERE claimed_at < now() - make_interval(secs => $1)
          ORDER BY claimed_at LIMIT $2",
    )
    .bind(secs)
    .bind(jobs)
    .fetch_all(pool)
    .await?;
    let mut removed = Removed::default();
    for job_id in &stale {
        if Instant::now() >= deadline {
            break;
        }
        removed.seen += 1;
        let mut tx = pool.begin().await?;
        // The claim row, still stale, held to the end: a run's claim or fence read waits.
        let held: Option<i32> = sqlx::query_scalar(
            "SELECT 1 FROM job_runs WHERE job_id = $1 AND claimed_at < now() - make_interval(secs => $2)
              FOR UPDATE SKIP LOCKED",
        )
        .bind(job_id)
        .bind(secs)
        .fetch_optional(&mut *tx)
        .await?;
        if held.is_none() {
            continue; // claimed again, or another process's pass holds it
        }
        removed.items += sqlx::query("DELETE FROM job_items WHERE job_id = $1")
            .bind(job_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM job_runs WHERE job_id = $1")
            .bind(job_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        removed.jobs += 1;
    }
    Ok(removed)
}
