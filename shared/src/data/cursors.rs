//! Incremental sync positions, one per account, marketplace and resource (a sync is for
//! one marketplace). A page walk stores its `NextToken` with each committed page, so a
//! killed worker's retry resumes after the last committed page; the cursor itself moves
//! only when the walk has reached its end.
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Row};

use super::DataResult;

/// Whose position: an account's resource in one marketplace.
#[derive(Debug, Clone, Copy)]
pub struct Position<'a> {
    pub account_id: &'a str,
    pub marketplace_id: &'a str,
    pub resource: &'a str,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct SyncCursor {
    /// `LastUpdatedAfter` of the next walk; `None` before the first completed sync.
    pub cursor_at: Option<DateTime<Utc>>,
    /// A walk in progress: the token of its next page and its upper bound.
    pub walk: Option<Walk>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Walk {
    pub next_token: String,
    pub before: Option<DateTime<Utc>>,
    /// When the walk's first run began (`None` for a walk stored by an older release).
    pub started: Option<DateTime<Utc>>,
    /// Pages committed so far in this walk.
    pub pages: i32,
    pub job_id: Option<String>,
}

pub async fn load(conn: &mut PgConnection, at: Position<'_>) -> DataResult<SyncCursor> {
    let row = sqlx::query(
        "SELECT cursor_at, walk_next_token, walk_before, walk_started, walk_pages, walk_job_id FROM sync_positions
          WHERE account_id = $1 AND marketplace_id = $2 AND resource = $3",
    )
    .bind(at.account_id)
    .bind(at.marketplace_id)
    .bind(at.resource)
    .fetch_optional(conn)
    .await?;
    let Some(row) = row else { return Ok(SyncCursor::default()) };
    let walk = row.try_get::<Option<String>, _>("walk_next_token")?.map(|next_token| Walk {
        next_token,
        before: row.try_get("walk_before").ok().flatten(),
        started: row.try_get("walk_started").ok().flatten(),
        pages: row.try_get("walk_pages").unwrap_or(0),
        job_id: row.try_get("walk_job_id").ok().flatten(),
    });
    Ok(SyncCursor {
        cursor_at: row.try_get("cursor_at")?,
        walk,
    })
}

/// Record that a page was committed and where the walk goes next (call inside the
/// transaction that wrote the page's rows).
pub async fn save_walk(conn: &mut PgConnection, at: Position<'_>, walk: &Walk) -> DataResult<()> {
    sqlx::query(
        "INSERT INTO sync_positions (account_id, marketplace_id, resource, walk_next_token, walk_before, walk_started,
                                     walk_pages, walk_job_id, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now())
         ON CONFLICT (account_id, marketplace_id, resource) DO UPDATE SET
                walk_next_token = EXCLUDED.walk_next_token, walk_before = EXCLUDED.walk_before,
                walk_started = EXCLUDED.walk_started, walk_pages = EXCLUDED.walk_pages,
                walk_job_id = EXCLUDED.walk_job_id, updated_at = now()",
    )
    .bind(at.account_id)
    .bind(at.marketplace_id)
    .bind(at.resource)
    .bind(&walk.next_token)
    .bind(walk.before)
    .bind(walk.started)
    .bind(walk.pages)
    .bind(&walk.job_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// The walk reached its last page: move the cursor to `cursor_at` and forget the walk
/// (call inside the transaction that wrote the last page's rows).
pub async fn finish_walk(conn: &mut PgConnection, at: Position<'_>, cursor_at: DateTime<Utc>) -> DataResult<()> {
    sqlx::query(
        "INSERT INTO sync_positions (account_id, marketplace_id, resource, cursor_at, updated_at)
         VALUES ($1, $2, $3, $4, now())
         ON CONFLICT (account_id, marketplace_id, resource) DO UPDATE SET
                cursor_at = EXCLUDED.cursor_at, walk_next_token = NULL, walk_before = NULL, walk_started = NULL,
                walk_pages = 0, walk_job_id = NULL, updated_at = now()",
    )
    .bind(at.account_id)
    .bind(at.marketplace_id)
    .bind(at.resource)
    .bind(cursor_at)
    .execute(conn)
    .await?;
    Ok(())
}
