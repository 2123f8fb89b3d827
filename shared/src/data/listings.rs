//! Listings as getListingsItem last saw them.
use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use super::run_fence::{RunFence, Write};
use super::DataResult;

#[derive(Debug, Clone)]
pub struct ListingRow {
    pub sku: String,
    pub marketplace_id: String,
    pub asin: Option<String>,
    /// Upstream status (e.g. `BUYABLE`), `ABSENT` when the marketplace answered 404, or
    /// `REFUSED` when it refused the SKU's request (a 4xx other than 401/403).
    pub status: String,
    pub raw: Option<serde_json::Value>,
}

/// Writes what getListingsItem saw, only while `fence`'s run is the job's newest claim
/// (run_fence.rs): a worker resumed after its job was taken over writes no stale listing
/// that the newer run would then count as checked.
pub async fn upsert(conn: &mut PgConnection, fence: RunFence<'_>, account_id: &str, row: &ListingRow) -> DataResult<Write> {
    let done = sqlx::query(
        "INSERT INTO listings (account_id, sku, marketplace_id, asin, status, raw, checked_at)
         SELECT $1, $2, $3, $4, $5, $6::jsonb, now()
          WHERE EXISTS (SELECT 1 FROM job_runs r WHERE r.job_id = $7 AND r.run = $8 FOR SHARE)
         ON CONFLICT (account_id, sku) DO UPDATE SET
                marketplace_id = EXCLUDED.marketplace_id, asin = COALESCE(EXCLUDED.asin, listings.asin),
                status = EXCLUDED.status, raw = COALESCE(EXCLUDED.raw, listings.raw), checked_at = now()",
    )
    .bind(account_id)
    .bind(&row.sku)
    .bind(&row.marketplace_id)
    .bind(&row.asin)
    .bind(&row.status)
    .bind(row.raw.as_ref().map(|v| v.to_string()))
    .bind(fence.job_id)
    .bind(fence.run)
    .execute(conn)
    .await?;
    Ok(Write::of_rows(done.rows_affected()))
}

/// SKUs this account is known to sell — its stored listings and the SKUs of its report
/// lines — not checked since `since`, least recently checked first (a report's SKU never
/// checked before all), at most `limit`: refreshes take the account's SKUs in turn.
pub async fn known_skus(conn: &mut PgConnection, account_id: &str, since: DateTime<Utc>, limit: i64) -> DataResult<Vec<String>> {
    sqlx::query_scalar(
        "SELECT sku FROM (SELECT sku, checked_at FROM listings WHERE account_id = $1
                          UNION ALL
                          SELECT DISTINCT r.sku, NULL::timestamptz FROM report_order_lines r
                           WHERE r.account_id = $1
                             AND NOT EXISTS (SELECT 1 FROM listings l WHERE l.account_id = $1 AND l.sku = r.sku)) s
          WHERE checked_at IS NULL OR checked_at < $2
          ORDER BY checked_at NULLS FIRST, sku LIMIT $3",
    )
    .bind(account_id)
    .bind(since)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// The account's listings checked since `since`: how many, how many of them the
/// marketplace did not have (`ABSENT`), and how many it refused to look up (`REFUSED`).
pub async fn checked_since(conn: &mut PgConnection, account_id: &str, since: DateTime<Utc>) -> DataResult<(i64, i64, i64)> {
    sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE status = 'ABSENT'), count(*) FILTER (WHERE status = 'REFUSED')
           FROM listings WHERE account_id = $1 AND checked_at >= $2",
    )
    .bind(account_id)
    .bind(since)
    .fetch_one(conn)
    .await
}

/// The database's clock (what `checked_at` is written by).
pub async fn now(conn: &mut PgConnection) -> DataResult<DateTime<Utc>> {
    sqlx::query_scalar("SELECT now()").fetch_one(conn).await
}
