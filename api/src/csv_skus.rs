//! Reading SKUs from a CSV upload: one column, an optional `sku` header, blank lines
//! skipped, repeats dropped (first one kept). Every bad row is reported by line number.
use drover::job::{FieldError, Sku};

/// Most row errors reported at once; the rest are summarised.
const MAX_REPORTED: usize = 20;

#[derive(Debug, PartialEq, Eq)]
pub enum CsvError {
    /// More data rows than allowed.
    TooManyRows {
        max: usize,
        line: u64,
    },
    /// Rows that are not a valid SKU, each named by its line.
    Rows(Vec<FieldError>),
    Empty,
}

pub fn parse_skus(body: &[u8], max_rows: usize) -> Result<Vec<Sku>, CsvError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::None)
        .from_reader(body);
    let mut skus: Vec<Sku> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut errors = Vec::new();
    let mut bad_rows = 0usize;
    let mut record = csv::ByteRecord::new();
    let mut first = true;
    loop {
        let line = reader.position().line();
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let line = e.position().map(|p| p.line()).unwrap_or(line);
                push(&mut errors, &mut bad_rows, line, "is not valid CSV".into());
                break;
            }
        }
        let line = record.position().map(|p| p.line()).unwrap_or(line);
        let is_first = std::mem::replace(&mut first, false);
        if record.len() == 1 && record[0].is_empty() {
            continue; // a blank line
        }
        if record.len() != 1 {
            push(
                &mut errors,
                &mut bad_rows,
                line,
                format!("expected one column (sku), found {}", record.len()),
            );
            continue;
        }
        let Ok(text) = std::str::from_utf8(&record[0]) else {
            push(&mut errors, &mut bad_rows, line, "is not valid UTF-8".into());
            continue;
        };
        if is_first && text.eq_ignore_ascii_case("sku") {
            continue; // the optional header
        }
        match Sku::parse(text) {
            Ok(sku) => {
                if seen.insert(sku.clone()) {
                    if skus.len() == max_rows {
                        return Err(CsvError::TooManyRows { max: max_rows, line });
                    }
                    skus.push(sku);
                }
            }
            Err(why) => push(&mut errors, &mut bad_rows, line, why),
        }
    }
    if bad_rows > MAX_REPORTED {
        errors.push(FieldError::new(
            "body",
            format!("{} more rows are invalid", bad_rows - MAX_REPORTED),
        ));
    }
    if !errors.is_empty() {
        return Err(CsvError::Rows(errors));
    }
    if skus.is_empty() {
        return Err(CsvError::Empty);
    }
    Ok(skus)
}

fn push(errors: &mut Vec<FieldError>, bad_rows: &mut usize, line: u64, message: String) {
    *bad_rows += 1;
    if *bad_rows <= MAX_REPORTED {
        errors.push(FieldError::new(format!("line {line}"), message));
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn strs(skus: &[Sku]) -> Vec<&str> {
        skus.iter().map(Sku::as_str).collect()
    }

    #[test]
    fn a_header_blank_lines_and_repeats_are_tolerated() {
        let skus = parse_skus(b"sku\r\nA-1\n\nB 2\nA-1\n\"C,3\"\n", 10).unwrap();
        assert_eq!(strs(&skus), ["A-1", "B 2", "C,3"]);
    }

    #[test]
    fn without_a_header_the_first_row_is_a_sku() {
        assert_eq!(strs(&parse_skus(b"X1\nX2", 10).unwrap()), ["X1", "X2"]);
    }

    #[test]
    fn bad_rows_are_named_by_line() {
        let err = parse_skus(b"sku\nok-1\n bad\nA,B\nok-2\n", 10).unwrap_err();
        let CsvError::Rows(rows) = err else { panic!("{err:?}") };
        assert_eq!(rows[0].field, "line 3");
        assert!(rows[0].message.contains("white space"), "{}", rows[0].message);
        assert_eq!(rows[1].field, "line 4");
        assert!(rows[1].message.contains("found 2"));
    }

    #[test]
    fn more_rows_than_allowed_names_the_first_line_over() {
        assert_eq!(
            parse_skus(b"a\nb\nc\nd\n", 3).unwrap_err(),
            CsvError::TooManyRows { max: 3, line: 4 }
        );
    }

    #[test]
    fn a_body_without_skus_is_empty() {
        assert_eq!(parse_skus(b"sku\n\n", 3).unwrap_err(), CsvError::Empty);
        assert_eq!(parse_skus(b"", 3).unwrap_err(), CsvError::Empty);
    }

    #[test]
    fn only_the_first_errors_are_listed() {
        let body = " x\n".repeat(50);
        let CsvError::Rows(rows) = parse_skus(body.as_bytes(), 100).unwrap_err() else {
            panic!()
        };
        assert_eq!(rows.len(), MAX_REPORTED + 1);
        assert!(rows.last().unwrap().message.contains("30 more rows"));
    }

    proptest! {
        #[test]
        fn any_list_of_valid_skus_round_trips(skus in prop::collection::vec("[A-Za-z0-9][A-Za-z0-9 _.-]{0,30}[A-Za-z0-9]", 1..50)) {
            let mut unique = Vec::new();
            for s in &skus {
                if !unique.contains(s) { unique.push(s.clone()); }
            }
            let body = format!("sku\n{}\n", skus.join("\n"));
            let parsed = parse_skus(body.as_bytes(), 1000).unwrap();
            prop_assert_eq!(strs(&parsed), unique.iter().map(String::as_str).collect::<Vec<_>>());
        }

        #[test]
        fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_skus(&body, 10);
        }
    }
}
