//! Order-report lines, upserted by `(account_id, report_type, order_id, sku)`.
use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use super::DataResult;

/// One parsed line of an order report (see the worker's strict parser).
#[derive(Debug, Clone, PartialEq)]
pub struct ReportLine {
    pub order_id: String,
    pub sku: String,
    pub asin: String,
    pub purchase_date: DateTime<Utc>,
    pub last_updated_date: DateTime<Utc>,
    pub order_status: String,
    pub item_status: String,
    pub quantity: i32,
    pub currency: String,
    /// Decimal text, already checked to be a number.
    pub item_price: String,
    pub ship_country: String,
}

/// Upsert a document's lines in one statement; returns the rows written. A line whose
/// order and SKU come again in `lines` gives way to the one updated last (the later on a
/// tie), as a later statement's would: Postgres refuses one statement that writes a row
/// twice (found by the marketplace audit of 2026-12-07, third: such a chunk failed every
/// attempt, and the backfill died with its later windows never fetched).
pub async fn upsert(conn: &mut PgConnection, account_id: &str, report_type: &str, job_id: &str, lines: &[ReportLine]) -> DataResult<u64> {
    if lines.is_empty() {
        return Ok(0);
    }
    let mut latest: std::collections::HashMap<(&str, &str), usize> = std::collections::HashMap::with_capacity(lines.len());
    for (i, l) in lines.iter().enumerate() {
        let kept = latest.entry((l.order_id.as_str(), l.sku.as_str())).or_insert(i);
        if lines[*kept].last_updated_date <= l.last_updated_date {
            *kept = i;
        }
    }
    let deduped: Vec<ReportLine>;
    let lines = if latest.len() == lines.len() {
        lines
    } else {
        let mut keep: Vec<usize> = latest.into_values().collect();
        keep.sort_unstable();
        deduped = keep.into_iter().map(|i| lines[i].clone()).collect();
        &deduped[..]
    };
    let col = |f: fn(&ReportLine) -> String| lines.iter().map(f).collect::<Vec<_>>();
    let purchase: Vec<DateTime<Utc>> = lines.iter().map(|l| l.purchase_date).collect();
    let updated: Vec<DateTime<Utc>> = lines.iter().map(|l| l.last_updated_date).collect();
    let quantity: Vec<i32> = lines.iter().map(|l| l.quantity).collect();
    let done = sqlx::query(
        "INSERT INTO report_order_lines (account_id, report_type, job_id, order_id, sku, asin, purchase_date, last_updated_date,
                                         order_status, item_status, quantity, currency, item_price, ship_country)
         SELECT $1, $2, $3, l.order_id, l.sku, l.asin, l.purchase_date, l.last_updated_date, l.order_status, l.item_status,
                l.quantity, l.currency, l.item_price::numeric, l.ship_country
           FROM UNNEST($4::text[], $5::text[], $6::text[], $7::timestamptz[], $8::timestamptz[], $9::text[], $10::text[],
                       $11::int4[], $12::text[], $13::text[], $14::text[])
             AS l(order_id, sku, asin, purchase_date, last_updated_date, order_status, item_status, quantity, currency,
                  item_price, ship_country)
         ON CONFLICT (account_id, report_type, order_id, sku) DO UPDATE SET
                asin = EXCLUDED.asin, purchase_date = EXCLUDED.purchase_date, last_updated_date = EXCLUDED.last_updated_date,
                order_status = EXCLUDED.order_status, item_status = EXCLUDED.item_status, quantity = EXCLUDED.quantity,
                currency = EXCLUDED.currency, item_price = EXCLUDED.item_price, ship_country = EXCLUDED.ship_country,
                job_id = EXCLUDED.job_id, updated_at = now()
          WHERE report_order_lines.last_updated_date <= EXCLUDED.last_updated_date",
    )
    .bind(account_id)
    .bind(report_type)
    .bind(job_id)
    .bind(col(|l| l.order_id.clone()))
    .bind(col(|l| l.sku.clone()))
    .bind(col(|l| l.asin.clone()))
    .bind(purchase)
    .bind(updated)
    .bind(col(|l| l.order_status.clone()))
    .bind(col(|l| l.item_status.clone()))
    .bind(quantity)
    .bind(col(|l| l.currency.clone()))
    .bind(col(|l| l.item_price.clone()))
    .bind(col(|l| l.ship_country.clone()))
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}
