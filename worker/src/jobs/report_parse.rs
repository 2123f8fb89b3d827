//! Strict parsing of order-report flat files (tab-separated, header row first).
//!
//! Every row either becomes a [`ReportLine`] or a [`ParseError`] naming its line and
//! column — nothing is skipped silently. The caller decides what a document with errors
//! means (see the backfill job: more than [`MAX_BAD_ROW_RATIO`] bad rows fail the window).
use chrono::{DateTime, Utc};
use drover::data::report_lines::ReportLine;
use serde::Serialize;

/// Above this share of bad rows a document is not trusted at all.
pub const MAX_BAD_ROW_RATIO: f64 = 0.01;

/// Columns we read, by header name; other columns may come and go.
const REQUIRED: [&str; 11] = [
    "amazon-order-id",
    "sku",
    "asin",
    "purchase-date",
    "last-updated-date",
    "order-status",
    "item-status",
    "quantity",
    "currency",
    "item-price",
    "ship-country",
];

/// One rejected row: 1-based line number in the document (the header is line 1) and
/// the 1-based column with its header name when one field was at fault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParseError {
    pub line: usize,
    pub column: Option<usize>,
    pub column_name: Option<String>,
    pub message: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.column, &self.column_name) {
            (Some(c), Some(name)) => write!(f, "line {}, column {} ({}): {}", self.line, c, name, self.message),
            _ => write!(f, "line {}: {}", self.line, self.message),
        }
    }
}

/// A document that cannot be read at all (no header, missing columns, not UTF-8).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unreadable report document: {0}")]
pub struct DocumentError(pub String);

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParsedReport {
    pub lines: Vec<ReportLine>,
    pub errors: Vec<ParseError>,
}

impl ParsedReport {
    /// Data rows seen (good and bad).
    pub fn rows(&self) -> usize {
        self.lines.len() + self.errors.len()
    }

    /// More than [`MAX_BAD_ROW_RATIO`] of the rows were bad.
    pub fn too_many_errors(&self) -> bool {
        !self.errors.is_empty() && self.errors.len() as f64 > self.rows() as f64 * MAX_BAD_ROW_RATIO
    }
}

/// [`parse`], kept off the thread that polls the runs. A worker's runs are polled on one
/// thread (apalis drives them as one future: docs/architecture.md, "Where runs are
/// polled"), and a document can unpack to `marketplace.max_unpacked_bytes` (256 MiB):
/// parsed inline, it would hold every other run of the worker until it ends. A panic in
/// the parse (a bug) fails the document's window, not the run (the job goes on with its
/// other windows): logged here, in the run's span, with its place; the window's error,
/// which tenants read, says only that the worker stopped on a bug.
pub async fn parse_apart(document: Vec<u8>) -> Result<ParsedReport, DocumentError> {
    match drover::panics::spawn_blocking(move || drover::panics::catch(|| parse(&document))).await {
        Ok(Ok(parsed)) => parsed,
        Ok(Err(p)) => {
            tracing::error!(error = %p, "report parse panicked; its window fails");
            Err(DocumentError("the parse stopped on a bug in the worker".into()))
        }
        Err(e) => Err(DocumentError(format!("the parse stopped: {e}"))),
    }
}

/// Parse a whole document.
pub fn parse(document: &[u8]) -> Result<ParsedReport, DocumentError> {
    let text = std::str::from_utf8(document).map_err(|e| DocumentError(format!("not UTF-8 at byte {}", e.valid_up_to())))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines
        .next()
        .ok_or_else(|| DocumentError("empty document (no header row)".into()))?
        .split('\t')
        .collect();
    let mut index = [0usize; REQUIRED.len()];
    for (slot, name) in index.iter_mut().zip(REQUIRED) {
        *slot = header
            .iter()
            .position(|h| h.trim() == name)
            .ok_or_else(|| DocumentError(format!("header has no {name:?} column")))?;
    }
    let mut out = ParsedReport::default();
    for (i, raw) in lines.enumerate() {
        let line_no = i + 2;
        if raw.trim().is_empty() {
            continue;
        }
        match parse_row(raw, header.len(), &index) {
            Ok(line) => out.lines.push(line),
            Err((column, message)) => out.errors.push(ParseError {
                line: line_no,
                column: column.map(|c| c + 1),
                column_name: column.and_then(|c| header.get(c)).map(|h| h.to_string()),
                message,
            }),
        }
    }
    Ok(out)
}

type RowError = (Option<usize>, String);

fn parse_row(raw: &str, width: usize, index: &[usize; REQUIRED.len()]) -> Result<ReportLine, RowError> {
    let fields: Vec<&str> = raw.split('\t').collect();
    if fields.len() != width {
        return Err((None, format!("expected {width} tab-separated fields, found {}", fields.len())));
    }
    let text = |k: usize| -> Result<String, RowError> {
        let col = index[k];
        let v = fields[col].trim();
        if v.is_empty() {
            Err((Some(col), format!("{} is empty", REQUIRED[k])))
        } else if v.contains('\0') {
            // PostgreSQL's text holds no NUL: written, the line would fail its whole
            // chunk on every attempt.
            Err((Some(col), format!("{} holds a NUL byte", REQUIRED[k])))
        } else {
            Ok(v.to_owned())
        }
    };
    let time = |k: usize| -> Result<DateTime<Utc>, RowError> {
        let col = index[k];
        DateTime::parse_from_rfc3339(fields[col].trim())
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| (Some(col), format!("{:?} is not an RFC 3339 date-time ({e})", fields[col])))
    };
    let quantity_col = index[7];
    let quantity: i32 = fields[quantity_col].trim().parse().ok().filter(|q| *q >= 0).ok_or_else(|| {
        (
            Some(quantity_col),
            format!("{:?} is not a non-negative whole number", fields[quantity_col]),
        )
    })?;
    let price_col = index[9];
    let price = fields[price_col].trim();
    if !is_decimal(price) {
        return Err((Some(price_col), format!("{price:?} is not a decimal amount")));
    }
    Ok(ReportLine {
        order_id: text(0)?,
        sku: text(1)?,
        asin: text(2)?,
        purchase_date: time(3)?,
        last_updated_date: time(4)?,
        order_status: text(5)?,
        item_status: text(6)?,
        quantity,
        currency: text(8)?,
        item_price: price.to_owned(),
        ship_country: text(10)?,
    })
}

/// `123`, `-4.50`, `0.5`: digits with at most one point and at most 2 decimals
/// (what `numeric(14,2)` stores without rounding).
fn is_decimal(s: &str) -> bool {
    let digits = s.strip_prefix('-').unwrap_or(s);
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    !int.is_empty()
        && int.len() <= 12
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.len() <= 2
        && frac.bytes().all(|b| b.is_ascii_digit())
        && !(digits.contains('.') && frac.is_empty())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;
    use proptest::prelude::*;

    const HEADER: &str = "amazon-order-id\tmerchant-order-id\tpurchase-date\tlast-updated-date\torder-status\tfulfillment-channel\tsales-channel\tproduct-name\tsku\tasin\titem-status\tquantity\tcurrency\titem-price\tship-country";

    fn row(id: &str, date: &str, price: &str) -> String {
        format!("{id}\tM-1\t{date}\t2025-01-02T00:00:00+00:00\tShipped\tAmazon\tAmazon.com\tThing\tSKU-1\tB000000001\tShipped\t2\tUSD\t{price}\tUS")
    }

    fn doc(rows: &[String]) -> Vec<u8> {
        let mut s = String::from(HEADER);
        for r in rows {
            s.push('\n');
            s.push_str(r);
        }
        s.push('\n');
        s.into_bytes()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_document_is_parsed_while_the_other_runs_go_on() {
        // One thread, as a worker's runs have: a task beside the parse must get turns
        // while the document is parsed, not only once it is done.
        let rows: Vec<String> = (0..50_000)
            .map(|i| row(&format!("111-{i}"), "2025-01-01T10:00:00+00:00", "1.00"))
            .collect();
        let document = doc(&rows);
        let turns = Arc::new(AtomicUsize::new(0));
        let counted = turns.clone();
        let beside = tokio::spawn(async move {
            loop {
                counted.fetch_add(1, Ordering::Relaxed);
                tokio::task::yield_now().await;
            }
        });
        let parsed = parse_apart(document).await.expect("readable");
        let during = turns.load(Ordering::Relaxed);
        beside.abort();
        assert_eq!(parsed.lines.len(), 50_000);
        assert!(during > 0, "the task beside the parse had no turn until the parse ended");
    }

    #[test]
    fn a_clean_document_yields_one_line_per_row() {
        let parsed = parse(&doc(&[
            row("111-1", "2025-01-01T10:00:00+00:00", "12.50"),
            row("111-2", "2025-01-01T11:00:00+00:00", "3"),
        ]))
        .expect("readable");
        assert_eq!(parsed.errors, vec![]);
        assert_eq!(parsed.lines.len(), 2);
        assert_eq!(parsed.lines[0].order_id, "111-1");
        assert_eq!(parsed.lines[0].quantity, 2);
        assert_eq!(parsed.lines[0].item_price, "12.50");
    }

    #[test]
    fn a_bad_date_is_reported_with_its_line_and_column() {
        let parsed = parse(&doc(&[
            row("111-1", "2025-01-01T10:00:00+00:00", "1.00"),
            row("111-2", "2024-02-30T25:61:00", "1.00"),
        ]))
        .expect("readable");
        assert_eq!(parsed.lines.len(), 1);
        assert_eq!(parsed.errors.len(), 1);
        let e = &parsed.errors[0];
        assert_eq!((e.line, e.column, e.column_name.as_deref()), (3, Some(3), Some("purchase-date")));
    }

    #[test]
    fn a_non_numeric_amount_is_reported_with_its_column() {
        let parsed = parse(&doc(&[row("111-1", "2025-01-01T10:00:00+00:00", "12.5O")])).expect("readable");
        let e = &parsed.errors[0];
        assert_eq!((e.line, e.column, e.column_name.as_deref()), (2, Some(14), Some("item-price")));
        assert!(e.to_string().contains("line 2, column 14 (item-price)"), "{e}");
    }

    #[test]
    fn a_row_with_missing_fields_is_reported_without_a_column() {
        let short = row("111-1", "2025-01-01T10:00:00+00:00", "1.00")
            .rsplitn(4, '\t')
            .last()
            .expect("fields")
            .to_owned();
        let parsed = parse(&doc(&[short])).expect("readable");
        assert_eq!(parsed.errors[0].column, None);
        assert!(parsed.errors[0].message.contains("expected 15"), "{}", parsed.errors[0].message);
    }

    #[test]
    fn a_document_without_a_required_column_is_unreadable() {
        let err = parse(b"amazon-order-id\tsku\n1\t2\n").expect_err("missing columns");
        assert!(
            err.to_string().contains("purchase-date") || err.to_string().contains("asin"),
            "{err}"
        );
        assert!(parse(b"").is_err());
    }

    #[test]
    fn one_bad_row_in_a_hundred_is_tolerated_but_two_are_not() {
        let good: Vec<String> = (0..99)
            .map(|i| row(&format!("111-{i}"), "2025-01-01T10:00:00+00:00", "1.00"))
            .collect();
        let mut rows = good.clone();
        rows.push(row("bad-1", "nope", "1.00"));
        assert!(!parse(&doc(&rows)).expect("readable").too_many_errors());
        rows.push(row("bad-2", "nope", "1.00"));
        assert!(parse(&doc(&rows)).expect("readable").too_many_errors());
    }

    proptest! {
        #[test]
        fn every_row_is_either_a_line_or_an_error(cells in proptest::collection::vec("[ -~\t]{0,60}", 0..40)) {
            let rows: Vec<String> = cells.into_iter().filter(|c| !c.trim().is_empty()).collect();
            let parsed = parse(&doc(&rows)).expect("header is fine");
            prop_assert_eq!(parsed.rows(), rows.len());
        }

        #[test]
        fn decimals_with_up_to_two_places_are_accepted(int in 0u64..1_000_000_000, frac in 0u32..100) {
            let s = format!("{int}.{frac:02}");
            prop_assert!(is_decimal(&s));
            let broken = format!("{s}O");
            prop_assert!(!is_decimal(&broken));
        }
    }
}
