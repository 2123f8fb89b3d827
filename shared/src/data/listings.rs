//! Listings as getListingsItem last saw them.
use sqlx::PgConnection;

use super::DataResult;

#[derive(Debug, Clone)]
pub struct ListingRow {
    pub sku: String,
    pub marketplace_id: String,
    pub asin: Option<String>,
    /// Upstream status (e.g. `BUYABLE`), or `ABSENT` when the marketplace answered 404.
    pub status: String,
    pub raw: Option<serde_json::Value>,
}

pub async fn upsert(conn: &mut PgConnection, account_id: &str, row: &ListingRow) -> DataResult<()> {
    sqlx::query(
        "INSERT INTO listings (account_id, sku, marketplace_id, asin, status, raw, checked_at)
         VALUES ($1, $2, $3, $4, $5, $6::jsonb, now())
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
    .execute(conn)
    .await?;
    Ok(())
}

/// SKUs this account is known to sell: its stored listings and the SKUs of its report
/// lines, in SKU order, at most `limit`.
pub async fn known_skus(conn: &mut PgConnection, account_id: &str, limit: i64) -> DataResult<Vec<String>> {
    sqlx::query_scalar(
        "SELECT sku FROM (SELECT sku FROM listings WHERE account_id = $1
                          UNION SELECT sku FROM report_order_lines WHERE account_id = $1) s
          ORDER BY sku LIMIT $2",
    )
    .bind(account_id)
    .bind(limit)
    .fetch_all(conn)
    .await
}
