//! The report document: a tab-separated flat file (header row, one row per order, as
//! SP-API's order reports), gzip-compressed, with optional malformed rows.
use std::io::Write;

use chrono::{DateTime, Utc};
use flate2::write::GzEncoder;
use flate2::Compression;

use amazon_spapi::models::orders_v0::order::{FulfillmentChannel, OrderStatus};

use super::catalog::SimOrder;
use super::rng::SimRng;

/// The header row, a subset of `GET_FLAT_FILE_ALL_ORDERS_DATA_BY_ORDER_DATE_GENERAL`'s
/// columns, in order.
pub const REPORT_COLUMNS: [&str; 15] = [
    "amazon-order-id",
    "merchant-order-id",
    "purchase-date",
    "last-updated-date",
    "order-status",
    "fulfillment-channel",
    "sales-channel",
    "product-name",
    "sku",
    "asin",
    "item-status",
    "quantity",
    "currency",
    "item-price",
    "ship-country",
];

/// How a malformed row is broken; row `k` of a document gets kind `k % 3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformation {
    /// The last three columns are missing.
    WrongColumnCount,
    /// `purchase-date` is not a date (`2024-02-30T25:61:00`).
    BadDate,
    /// `item-price` is not a number (`12.5O`, a letter O).
    NonNumericAmount,
}

impl Malformation {
    fn nth(k: usize) -> Self {
        [Self::WrongColumnCount, Self::BadDate, Self::NonNumericAmount][k % 3]
    }
}

fn flat_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S+00:00").to_string()
}

fn row(o: &SimOrder) -> Vec<String> {
    let status = serde_json::to_value(o.status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let item_status = match o.status {
        OrderStatus::Shipped => "Shipped",
        OrderStatus::Canceled => "Cancelled",
        _ => "Unshipped",
    };
    let channel = match o.channel {
        FulfillmentChannel::Afn => "Amazon",
        FulfillmentChannel::Mfn => "Merchant",
    };
    vec![
        o.id.clone(),
        o.seller_order_id.clone(),
        flat_time(o.purchase),
        flat_time(o.updated),
        status,
        channel.to_owned(),
        "Amazon.com".to_owned(),
        format!("Simulated product {}", o.sku),
        o.sku.clone(),
        o.asin.clone(),
        item_status.to_owned(),
        o.quantity.to_string(),
        "USD".to_owned(),
        o.amount(),
        "US".to_owned(),
    ]
}

fn corrupt(mut fields: Vec<String>, how: Malformation) -> Vec<String> {
    match how {
        Malformation::WrongColumnCount => fields.truncate(fields.len().saturating_sub(3)),
        Malformation::BadDate => fields[2] = "2024-02-30T25:61:00".to_owned(),
        Malformation::NonNumericAmount => fields[13] = "12.5O".to_owned(),
    }
    fields
}

/// The document text. Malformed rows are *extra* rows, each a broken copy of a real one,
/// put at positions drawn from `seed`: without splits the good rows are exactly the
/// orders of the window, so a test can check that a strict parser rejects the file and a
/// lenient one keeps every good row. The first `split` orders of quantity 2 or more are written as
/// two items of their SKU: the first row in the order's place with half the quantity and
/// half the price (rounded down), the second, with the rest, last.
pub(crate) fn render(orders: &[SimOrder], malformed: u32, split: u32, seed: u64) -> String {
    let mut rows: Vec<Vec<String>> = orders.iter().map(row).collect();
    let mut rest = Vec::new();
    for (i, o) in orders.iter().enumerate().filter(|(_, o)| o.quantity >= 2).take(split as usize) {
        let (q, c) = (u64::from(o.quantity), o.amount_cents);
        let cents = |c: u64| format!("{}.{:02}", c / 100, c % 100);
        rows[i][11] = (q / 2).to_string();
        rows[i][13] = cents(c / 2);
        let mut second = row(o);
        second[11] = (q - q / 2).to_string();
        second[13] = cents(c - c / 2);
        rest.push(second);
    }
    rows.extend(rest);
    let mut rng = SimRng::new(seed);
    for k in 0..malformed as usize {
        let base = if orders.is_empty() {
            let mut r = row_placeholder();
            r[0] = format!("000-0000000-{:07}", k);
            r
        } else {
            row(&orders[rng.below(orders.len() as u64) as usize])
        };
        let at = rng.below(rows.len() as u64 + 1) as usize;
        rows.insert(at, corrupt(base, Malformation::nth(k)));
    }
    let mut text = REPORT_COLUMNS.join("\t");
    text.push('\n');
    for r in rows {
        text.push_str(&r.join("\t"));
        text.push('\n');
    }
    text
}

/// A well-formed row for a malformed copy when the window has no orders.
fn row_placeholder() -> Vec<String> {
    let epoch = DateTime::<Utc>::UNIX_EPOCH;
    vec![
        String::new(),
        String::new(),
        flat_time(epoch),
        flat_time(epoch),
        "Shipped".to_owned(),
        "Merchant".to_owned(),
        "Amazon.com".to_owned(),
        "Simulated product".to_owned(),
        "SKU-00000".to_owned(),
        "B000000000".to_owned(),
        "Shipped".to_owned(),
        "1".to_owned(),
        "USD".to_owned(),
        "1.00".to_owned(),
        "US".to_owned(),
    ]
}

pub(crate) fn gzip(text: &str) -> std::io::Result<Vec<u8>> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(text.as_bytes())?;
    encoder.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::generate_orders;
    use chrono::TimeZone;

    fn orders(n: usize) -> Vec<SimOrder> {
        let anchor = Utc.with_ymd_and_hms(2025, 3, 1, 0, 0, 0).single().expect("valid date");
        generate_orders(5, "acct-1", n, anchor, 10)
    }

    #[test]
    fn a_clean_document_has_a_header_and_one_full_row_per_order() {
        let text = render(&orders(7), 0, 0, 1);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 8);
        assert_eq!(lines[0].split('\t').collect::<Vec<_>>(), REPORT_COLUMNS);
        assert!(lines[1..].iter().all(|l| l.split('\t').count() == REPORT_COLUMNS.len()));
    }

    #[test]
    fn malformed_rows_are_extra_and_each_kind_appears() {
        let good = orders(20);
        let text = render(&good, 3, 0, 9);
        let rows: Vec<Vec<&str>> = text.lines().skip(1).map(|l| l.split('\t').collect()).collect();
        assert_eq!(rows.len(), 23);
        assert_eq!(rows.iter().filter(|r| r.len() != REPORT_COLUMNS.len()).count(), 1);
        assert_eq!(rows.iter().filter(|r| r.get(2) == Some(&"2024-02-30T25:61:00")).count(), 1);
        assert_eq!(rows.iter().filter(|r| r.get(13) == Some(&"12.5O")).count(), 1);
        assert_eq!(render(&good, 3, 0, 9), text, "same seed, same document");
    }

    #[test]
    fn gzip_round_trips() {
        let text = render(&orders(3), 1, 0, 2);
        let mut out = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gzip(&text).expect("gzip")[..]), &mut out).expect("gunzip");
        assert_eq!(out, text);
    }
}
