//! Order-report lines (`drover::data::report_lines`) on a real PostgreSQL database: a
//! document's lines are upserted a chunk at a time by account, report type, order and SKU.
use chrono::{Duration, Utc};
use drover::data::report_lines::{self, ReportLine};
use drover_tests::harness::PgDatabase;

fn line(order: &str, sku: &str, quantity: i32, minutes_ago: i64) -> ReportLine {
    let at = Utc::now() - Duration::minutes(minutes_ago);
    ReportLine {
        order_id: order.into(),
        sku: sku.into(),
        asin: "B000TEST01".into(),
        purchase_date: at,
        last_updated_date: at,
        order_status: "Shipped".into(),
        item_status: "Shipped".into(),
        quantity,
        currency: "USD".into(),
        item_price: "9.99".into(),
        ship_country: "US".into(),
    }
}

/// Found by the marketplace audit of 2026-12-07 (third): a chunk naming one order and SKU
/// twice was refused by Postgres ("ON CONFLICT DO UPDATE command cannot affect row a
/// second time"), the error was taken for transient, and every attempt met it again: the
/// backfill died and its later windows were never fetched. The chunk keeps the line most
/// recently updated of each order and SKU (the later one on a tie), as a later chunk's
/// line replaces an earlier one's.
#[tokio::test]
async fn a_chunk_naming_one_order_and_sku_twice_keeps_the_latest_line() {
    let db = PgDatabase::create().await;
    let mut conn = db.pool().acquire().await.unwrap();
    let lines = vec![
        line("111-0000001-0000001", "SKU-1", 1, 10),
        line("111-0000001-0000001", "SKU-2", 5, 10),
        line("111-0000001-0000001", "SKU-1", 3, 5),
    ];
    let written = report_lines::upsert(
        &mut conn,
        "acme",
        "GET_FLAT_FILE_ALL_ORDERS_DATA_BY_ORDER_DATE_GENERAL",
        "backfill:t",
        &lines,
    )
    .await
    .expect("a chunk with a repeated order and SKU is written");
    assert_eq!(written, 2);
    let kept: Vec<(String, i32)> = sqlx::query_as("SELECT sku, quantity FROM report_order_lines WHERE account_id = 'acme' ORDER BY sku")
        .fetch_all(&mut *conn)
        .await
        .unwrap();
    assert_eq!(kept, [("SKU-1".to_owned(), 3), ("SKU-2".to_owned(), 5)]);
}
