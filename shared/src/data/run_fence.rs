//! Fencing for the per-item record: which run of a job may still write its items.
//!
//! A run claims its job in `job_runs` before it touches an item, with its run number
//! (its lease time by the queue's clock, so a later run of the same job has a larger
//! one). Every item write names its run and lands only while that run is the job's
//! newest claim: a worker stopped past its lease and resumed after another worker took
//! the job over writes nothing more. A write and a claim serialise on the job's row, so
//! a write that began before a later claim lands before it, and none after.
use sqlx::PgConnection;

use super::DataResult;

/// One run of one job, as item writes name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunFence<'a> {
    pub job_id: &'a str,
    pub run: i64,
}

/// Whether a fenced write landed.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    Landed,
    /// A later run of the job has claimed it (or the item does not exist): nothing written.
    Fenced,
}

impl Write {
    pub(crate) fn of_rows(rows: u64) -> Self {
        if rows > 0 {
            Self::Landed
        } else {
            Self::Fenced
        }
    }
}

/// Whether `fence`'s run is still the job's newest claim, its claim held to the end of
/// the transaction `conn` is in (a later claim waits for it): what the transaction
/// writes next lands only for the run that holds the job.
pub async fn hold(conn: &mut PgConnection, fence: RunFence<'_>) -> DataResult<Write> {
    let held: Option<i32> = sqlx::query_scalar("SELECT 1 FROM job_runs WHERE job_id = $1 AND run = $2 FOR SHARE")
        .bind(fence.job_id)
        .bind(fence.run)
        .fetch_optional(conn)
        .await?;
    Ok(if held.is_some() { Write::Landed } else { Write::Fenced })
}

/// Claim the job for `fence.run`. `Fenced` when a later run already holds it.
pub async fn claim(conn: &mut PgConnection, fence: RunFence<'_>) -> DataResult<Write> {
    let done = sqlx::query(
        "INSERT INTO job_runs (job_id, run) VALUES ($1, $2)
         ON CONFLICT (job_id) DO UPDATE SET run = EXCLUDED.run, claimed_at = now()
          WHERE job_runs.run <= EXCLUDED.run",
    )
    .bind(fence.job_id)
    .bind(fence.run)
    .execute(conn)
    .await?;
    Ok(Write::of_rows(done.rows_affected()))
}
