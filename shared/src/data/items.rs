//! The per-item record of a job: one row per cleanup SKU, backfill window or sync page,
//! with its outcome and details (error, counts, report id). Rows are seeded `pending`
//! when a job first runs, so a retry knows exactly which items are left. Writes after
//! the seed name their run and land only while it holds the job (`run_fence`).
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, Row};

use super::run_fence::{RunFence, Write};
use super::DataResult;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ItemOutcome {
    Pending,
    /// A window or page fully written.
    Done,
    /// A listing deleted by this job.
    Deleted,
    /// A listing that was already gone (404).
    Absent,
    Failed,
}

impl ItemOutcome {
    pub const ALL: [ItemOutcome; 5] = [Self::Pending, Self::Done, Self::Deleted, Self::Absent, Self::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Done => "done",
            Self::Deleted => "deleted",
            Self::Absent => "absent",
            Self::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.as_str() == s)
    }

    /// Nothing left to do for this item.
    pub fn is_final_success(self) -> bool {
        matches!(self, Self::Done | Self::Deleted | Self::Absent)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Item {
    pub seq: i32,
    pub item: String,
    pub outcome: ItemOutcome,
    pub detail: serde_json::Value,
    pub tries: i32,
    pub updated_at: DateTime<Utc>,
    /// The run whose call for this item went out and was never answered (see
    /// [`mark_sent`]); internal, not shown to clients.
    #[serde(skip)]
    pub sent_by: Option<i64>,
}

/// Totals for a job's result. `skipped` counts items that needed no change (absent).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub total: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub skipped: i64,
    pub pending: i64,
}

/// Insert `items` (in order, numbered from `first_seq`) as pending; items already
/// recorded keep their outcome. Returns how many were new.
pub async fn seed(conn: &mut PgConnection, job_id: &str, first_seq: i32, items: &[String]) -> DataResult<u64> {
    if items.is_empty() {
        return Ok(0);
    }
    let seqs: Vec<i32> = (0..items.len() as i32).map(|i| first_seq + i).collect();
    let done = sqlx::query(
        "INSERT INTO job_items (job_id, seq, item, outcome)
         SELECT $1, s, i, 'pending' FROM UNNEST($2::int4[], $3::text[]) AS t(s, i)
         ON CONFLICT DO NOTHING",
    )
    .bind(job_id)
    .bind(seqs)
    .bind(items)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// Set one item's outcome and details (and count the try), as `fence`'s run; the call
/// the run had sent for it is answered (`sent_by` cleared). The item must exist.
pub async fn set(
    conn: &mut PgConnection,
    fence: RunFence<'_>,
    item: &str,
    outcome: ItemOutcome,
    detail: &serde_json::Value,
) -> DataResult<Write> {
    update(conn, fence, item, (outcome, detail), true).await
}

/// [`set`] for an item a call of which went out and was never answered (a try that
/// timed out or was cut off, or an earlier run's): the note that a run sent it stays,
/// so a later run that finds the call's effect (a delete's 404) knows it may be that
/// call's doing (found by the audit of 2026-12-07, fourth: such a SKU was recorded
/// `absent` by the next attempt).
pub async fn set_unanswered(
    conn: &mut PgConnection,
    fence: RunFence<'_>,
    item: &str,
    outcome: ItemOutcome,
    detail: &serde_json::Value,
) -> DataResult<Write> {
    update(conn, fence, item, (outcome, detail), false).await
}

async fn update(
    conn: &mut PgConnection,
    fence: RunFence<'_>,
    item: &str,
    (outcome, detail): (ItemOutcome, &serde_json::Value),
    answered: bool,
) -> DataResult<Write> {
    let done = sqlx::query(
        "UPDATE job_items SET outcome = $3, detail = $4::jsonb, tries = tries + 1,
                sent_by = CASE WHEN $6 THEN NULL ELSE sent_by END, updated_at = now()
          WHERE job_id = $1 AND item = $2
            AND EXISTS (SELECT 1 FROM job_runs r WHERE r.job_id = $1 AND r.run = $5 FOR SHARE)",
    )
    .bind(fence.job_id)
    .bind(item)
    .bind(outcome.as_str())
    .bind(detail.to_string())
    .bind(fence.run)
    .bind(answered)
    .execute(conn)
    .await?;
    Ok(Write::of_rows(done.rows_affected()))
}

/// What [`mark_sent`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// Marked; no earlier run's call for this item is unanswered.
    Marked,
    /// Marked; an earlier run sent this item's call and never recorded its answer, so
    /// that call may have taken effect (a delete that was answered while its run was
    /// being stopped).
    AfterUnansweredRun(i64),
    /// A later run holds the job: send nothing.
    Fenced,
}

/// Note, before sending an item's marketplace call, that `fence`'s run sends it. Says
/// whether an earlier run had sent it without recording the answer.
pub async fn mark_sent(conn: &mut PgConnection, fence: RunFence<'_>, item: &str) -> DataResult<Sent> {
    let row: Option<(Option<i64>,)> = sqlx::query_as(
        "UPDATE job_items i SET sent_by = $3, updated_at = now()
           FROM (SELECT job_id, item, sent_by FROM job_items WHERE job_id = $1 AND item = $2 FOR UPDATE) before
          WHERE i.job_id = before.job_id AND i.item = before.item
            AND EXISTS (SELECT 1 FROM job_runs r WHERE r.job_id = $1 AND r.run = $3 FOR SHARE)
         RETURNING before.sent_by",
    )
    .bind(fence.job_id)
    .bind(item)
    .bind(fence.run)
    .fetch_optional(conn)
    .await?;
    Ok(match row {
        None => Sent::Fenced,
        Some((Some(earlier),)) if earlier != fence.run => Sent::AfterUnansweredRun(earlier),
        Some(_) => Sent::Marked,
    })
}

/// Take back [`mark_sent`]'s note: the call was answered in a way that says it changed
/// nothing upstream (a 429), and the item stays to do.
pub async fn unmark_sent(conn: &mut PgConnection, fence: RunFence<'_>, item: &str) -> DataResult<()> {
    sqlx::query("UPDATE job_items SET sent_by = NULL WHERE job_id = $1 AND item = $2 AND sent_by = $3")
        .bind(fence.job_id)
        .bind(item)
        .bind(fence.run)
        .execute(conn)
        .await?;
    Ok(())
}

/// [`unmark_sent`] for a refused call noted over an earlier run's note (`earlier`, whose
/// call is still unanswered): the note goes back to that run.
pub async fn give_back_sent(conn: &mut PgConnection, fence: RunFence<'_>, item: &str, earlier: i64) -> DataResult<()> {
    sqlx::query("UPDATE job_items SET sent_by = $4 WHERE job_id = $1 AND item = $2 AND sent_by = $3")
        .bind(fence.job_id)
        .bind(item)
        .bind(fence.run)
        .bind(earlier)
        .execute(conn)
        .await?;
    Ok(())
}

/// Keep notes on an item without changing its outcome (e.g. the report id of a window
/// in progress, so a rerun polls that report instead of creating another), as `fence`'s run.
pub async fn note(conn: &mut PgConnection, fence: RunFence<'_>, item: &str, detail: &serde_json::Value) -> DataResult<Write> {
    let done = sqlx::query(
        "UPDATE job_items SET detail = detail || $3::jsonb, updated_at = now()
          WHERE job_id = $1 AND item = $2
            AND EXISTS (SELECT 1 FROM job_runs r WHERE r.job_id = $1 AND r.run = $4 FOR SHARE)",
    )
    .bind(fence.job_id)
    .bind(item)
    .bind(detail.to_string())
    .bind(fence.run)
    .execute(conn)
    .await?;
    Ok(Write::of_rows(done.rows_affected()))
}

/// Record an item that was not seeded in advance (sync pages), or overwrite it, as
/// `fence`'s run.
pub async fn put(
    conn: &mut PgConnection,
    fence: RunFence<'_>,
    seq: i32,
    item: &str,
    outcome: ItemOutcome,
    detail: &serde_json::Value,
) -> DataResult<Write> {
    let done = sqlx::query(
        "INSERT INTO job_items (job_id, seq, item, outcome, detail, tries)
         SELECT $1, $2, $3, $4, $5::jsonb, 1
          WHERE EXISTS (SELECT 1 FROM job_runs r WHERE r.job_id = $1 AND r.run = $6 FOR SHARE)
         ON CONFLICT (job_id, item) DO UPDATE SET outcome = EXCLUDED.outcome, detail = EXCLUDED.detail,
                tries = job_items.tries + 1, updated_at = now()",
    )
    .bind(fence.job_id)
    .bind(seq)
    .bind(item)
    .bind(outcome.as_str())
    .bind(detail.to_string())
    .bind(fence.run)
    .execute(conn)
    .await?;
    Ok(Write::of_rows(done.rows_affected()))
}

fn item_from(row: &sqlx::postgres::PgRow) -> DataResult<Item> {
    let outcome: String = row.try_get("outcome")?;
    Ok(Item {
        seq: row.try_get("seq")?,
        item: row.try_get("item")?,
        outcome: ItemOutcome::parse(&outcome).ok_or_else(|| sqlx::Error::Decode(format!("unknown item outcome {outcome:?}").into()))?,
        detail: row.try_get("detail")?,
        tries: row.try_get("tries")?,
        updated_at: row.try_get("updated_at")?,
        sent_by: row.try_get("sent_by")?,
    })
}

/// Items of a job in order, optionally one outcome only, after `after_seq`, at most `limit`.
pub async fn page(
    conn: &mut PgConnection,
    job_id: &str,
    outcome: Option<ItemOutcome>,
    after_seq: Option<i32>,
    limit: i64,
) -> DataResult<Vec<Item>> {
    let rows = sqlx::query(
        "SELECT seq, item, outcome, detail, tries, updated_at, sent_by FROM job_items
          WHERE job_id = $1 AND ($2::text IS NULL OR outcome = $2) AND seq > $3
          ORDER BY seq LIMIT $4",
    )
    .bind(job_id)
    .bind(outcome.map(ItemOutcome::as_str))
    .bind(after_seq.unwrap_or(-1))
    .bind(limit)
    .fetch_all(conn)
    .await?;
    rows.iter().map(item_from).collect()
}

/// Items still to do (pending, or failed on an earlier run), in order.
pub async fn unfinished(conn: &mut PgConnection, job_id: &str) -> DataResult<Vec<Item>> {
    let rows = sqlx::query(
        "SELECT seq, item, outcome, detail, tries, updated_at, sent_by FROM job_items
          WHERE job_id = $1 AND outcome IN ('pending', 'failed') ORDER BY seq",
    )
    .bind(job_id)
    .fetch_all(conn)
    .await?;
    rows.iter().map(item_from).collect()
}

/// Items done although some of their input rows were rejected (`detail.bad_rows > 0`):
/// a backfill window whose document had a few unparseable rows.
pub async fn done_with_rejected_rows(conn: &mut PgConnection, job_id: &str) -> DataResult<i64> {
    sqlx::query_scalar("SELECT count(*) FROM job_items WHERE job_id = $1 AND outcome = 'done' AND (detail->>'bad_rows')::int > 0")
        .bind(job_id)
        .fetch_one(conn)
        .await
}

pub async fn summary(conn: &mut PgConnection, job_id: &str) -> DataResult<Summary> {
    let rows = sqlx::query("SELECT outcome, count(*) AS n FROM job_items WHERE job_id = $1 GROUP BY outcome")
        .bind(job_id)
        .fetch_all(conn)
        .await?;
    let mut s = Summary::default();
    for row in rows {
        let outcome: String = row.try_get("outcome")?;
        let n: i64 = row.try_get("n")?;
        s.total += n;
        match ItemOutcome::parse(&outcome) {
            Some(ItemOutcome::Done | ItemOutcome::Deleted) => s.succeeded += n,
            Some(ItemOutcome::Absent) => s.skipped += n,
            Some(ItemOutcome::Failed) => s.failed += n,
            Some(ItemOutcome::Pending) | None => s.pending += n,
        }
    }
    Ok(s)
}
