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

/// Found by the marketplace audit of 2026-12-07 (third): a report line with a NUL byte in a
/// column the store keeps was parsed as good, and PostgreSQL refuses a NUL in `text`
/// (22021) on every attempt: the backfill died and its later windows were never fetched.
/// Such a line is a bad row of its document (named by line and column), and the rest of
/// the chunk is written.
#[tokio::test]
async fn a_report_line_with_a_nul_byte_is_a_bad_row_and_the_rest_of_its_chunk_is_written() {
    const HEADER: &str = "amazon-order-id\tpurchase-date\tlast-updated-date\torder-status\tsku\tasin\titem-status\tquantity\tcurrency\titem-price\tship-country";
    let mut document = String::from(HEADER);
    for n in 0..200 {
        let sku = if n == 7 { "SKU-\0-7".to_owned() } else { format!("SKU-{n}") };
        document.push_str(&format!(
            "\n111-0000001-{n:07}\t2025-01-01T00:00:00+00:00\t2025-01-02T00:00:00+00:00\tShipped\t{sku}\tB000000001\tShipped\t1\tUSD\t9.99\tUS"
        ));
    }
    let parsed = drover_worker::jobs::report_parse::parse(document.as_bytes()).expect("the document reads");
    let db = PgDatabase::create().await;
    let mut conn = db.pool().acquire().await.unwrap();
    let written = report_lines::upsert(
        &mut conn,
        "acme",
        "GET_FLAT_FILE_ALL_ORDERS_DATA_BY_ORDER_DATE_GENERAL",
        "backfill:t",
        &parsed.lines,
    )
    .await
    .expect("the good lines of a document with a NUL byte in one are written");
    assert_eq!(written, 199);
    assert_eq!(parsed.errors.len(), 1, "{:?}", parsed.errors);
    let bad = &parsed.errors[0];
    assert_eq!((bad.line, bad.column_name.as_deref()), (9, Some("sku")), "{bad}");
    assert!(!parsed.too_many_errors(), "one bad row of 200 does not fail the window");
}
