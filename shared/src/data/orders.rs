//! Orders, upserted by `(account_id, order_id)`; a copy older than the stored one is ignored.
use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use super::DataResult;

/// Where a row came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderSource {
    Sync,
    Report,
}

impl OrderSource {
    fn as_str(self) -> &'static str {
        match self {
            OrderSource::Sync => "sync",
            OrderSource::Report => "report",
        }
    }
}

#[derive(Debug, Clone)]
pub struct OrderRow {
    pub order_id: String,
    pub marketplace_id: String,
    pub purchase_date: DateTime<Utc>,
    pub last_update_date: DateTime<Utc>,
    pub order_status: String,
    pub fulfillment: Option<String>,
    /// Decimal text as upstream sent it (`"12.50"`); Postgres parses it.
    pub order_total: Option<String>,
    pub currency: Option<String>,
    pub raw: serde_json::Value,
}

/// Upsert a page of orders in one statement. Returns the number of rows written
/// (inserted or updated); rows whose stored copy is newer are left alone.
pub async fn upsert(conn: &mut PgConnection, account_id: &str, source: OrderSource, rows: &[OrderRow]) -> DataResult<u64> {
    if rows.is_empty() {
        return Ok(0);
    }
    let col = |f: fn(&OrderRow) -> String| rows.iter().map(f).collect::<Vec<_>>();
    let opt = |f: fn(&OrderRow) -> Option<String>| rows.iter().map(f).collect::<Vec<_>>();
    let purchase: Vec<DateTime<Utc>> = rows.iter().map(|r| r.purchase_date).collect();
    let updated: Vec<DateTime<Utc>> = rows.iter().map(|r| r.last_update_date).collect();
    let done = sqlx::query(
        "INSERT INTO orders (account_id, order_id, marketplace_id, purchase_date, last_update_date, order_status,
                             fulfillment, order_total, currency, source, raw)
         SELECT $1, o.order_id, o.marketplace_id, o.purchase_date, o.last_update_date, o.order_status,
                o.fulfillment, o.order_total::numeric, o.currency, $2, o.raw::jsonb
           FROM UNNEST($3::text[], $4::text[], $5::timestamptz[], $6::timestamptz[], $7::text[], $8::text[], $9::text[],
                       $10::text[], $11::text[])
             AS o(order_id, marketplace_id, purchase_date, last_update_date, order_status, fulfillment, order_total, currency, raw)
         ON CONFLICT (account_id, order_id) DO UPDATE SET
                marketplace_id = EXCLUDED.marketplace_id, purchase_date = EXCLUDED.purchase_date,
                last_update_date = EXCLUDED.last_update_date, order_status = EXCLUDED.order_status,
                fulfillment = COALESCE(EXCLUDED.fulfillment, orders.fulfillment),
                order_total = COALESCE(EXCLUDED.order_total, orders.order_total),
                currency = COALESCE(EXCLUDED.currency, orders.currency),
                source = EXCLUDED.source, raw = EXCLUDED.raw, updated_at = now()
          WHERE orders.last_update_date <= EXCLUDED.last_update_date",
    )
    .bind(account_id)
    .bind(source.as_str())
    .bind(col(|r| r.order_id.clone()))
    .bind(col(|r| r.marketplace_id.clone()))
    .bind(purchase)
    .bind(updated)
    .bind(col(|r| r.order_status.clone()))
    .bind(opt(|r| r.fulfillment.clone()))
    .bind(opt(|r| r.order_total.clone()))
    .bind(opt(|r| r.currency.clone()))
    .bind(col(|r| r.raw.to_string()))
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}
