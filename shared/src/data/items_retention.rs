//! The per-item record's retention: `job_items` and `job_runs` rows of jobs whose newest
//! run claimed them longer ago than the retention are removed, a bounded batch at a time
//! (a cleanup job holds up to 100,000 items), so the record does not grow for ever.
use std::time::Duration;

use sqlx::PgPool;

use super::DataResult;

/// Item rows one statement removes: a job's 100,000 never in one transaction.
const ITEMS_PER_DELETE: i64 = 10_000;

/// What one call removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Removed {
    pub jobs: u64,
    pub items: u64,
}

/// Removes the items and the run claim of up to `jobs` jobs whose newest run claimed
/// them more than `older_than` ago, oldest first. A job claimed again meanwhile (a
/// replay) keeps its claim; its next run seeds the items it lost as pending again.
pub async fn remove_stale(pool: &PgPool, older_than: Duration, jobs: i64) -> DataResult<Removed> {
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
    if stale.is_empty() {
        return Ok(removed);
    }
    loop {
        let done = sqlx::query(
            "DELETE FROM job_items WHERE ctid = ANY(ARRAY(
               SELECT ctid FROM job_items WHERE job_id = ANY($1) LIMIT $2))",
        )
        .bind(&stale)
        .bind(ITEMS_PER_DELETE)
        .execute(pool)
        .await?
        .rows_affected();
        removed.items += done;
        if done < ITEMS_PER_DELETE as u64 {
            break;
        }
    }
    removed.jobs = sqlx::query("DELETE FROM job_runs WHERE job_id = ANY($1) AND claimed_at < now() - make_interval(secs => $2)")
        .bind(&stale)
        .bind(secs)
        .execute(pool)
        .await?
        .rows_affected();
    Ok(removed)
}
