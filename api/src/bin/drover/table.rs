//! Human output: aligned columns, and `key: value` lines for one record.
use serde_json::Value;

/// A table of rows under a header, each column as wide as its widest cell.
pub struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&'static str]) -> Self {
        Self {
            header: header.to_vec(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.len()).collect();
        for r in &self.rows {
            for (w, c) in widths.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count());
            }
        }
        let line = |cells: Vec<&str>| {
            let mut out = String::new();
            for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
                if i + 1 == cells.len() {
                    out.push_str(c);
                } else {
                    out.push_str(&format!("{c:<w$}  "));
                }
            }
            out.trim_end().to_owned()
        };
        let mut out = line(self.header.clone());
        for r in &self.rows {
            out.push('\n');
            out.push_str(&line(r.iter().map(String::as_str).collect()));
        }
        out
    }
}

/// A JSON value as a cell: strings bare, null as `-`. Control characters are shown
/// escaped (`\u{1b}`), never written to the terminal: what a tenant named (a schedule, an
/// account) reaches an operator's screen through the audit log, and an escape sequence
/// there could rewrite the screen or the clipboard (found by the hostile-tenant audit of
/// 2026-12-07, fourth).
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => inert(s),
        other => inert(&other.to_string()),
    }
}

/// `s` with its control characters escaped.
fn inert(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_owned();
    }
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// The field `path` (dot-separated) of `v` as a cell.
pub fn at(v: &Value, path: &str) -> String {
    let mut cur = v;
    for part in path.split('.') {
        cur = cur.get(part).unwrap_or(&Value::Null);
    }
    cell(cur)
}

/// One record as `key: value` lines, nested objects flattened with dots.
pub fn record(v: &Value) -> String {
    let mut lines = Vec::new();
    flatten("", v, &mut lines);
    let width = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    lines
        .into_iter()
        .map(|(k, v)| format!("{k:<width$}  {v}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(map) if !map.is_empty() => {
            for (k, child) in map {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                flatten(&key, child, out);
            }
        }
        Value::Array(items) if !items.is_empty() && items.iter().any(|i| i.is_object()) => {
            for (i, child) in items.iter().enumerate() {
                flatten(&format!("{prefix}[{i}]"), child, out);
            }
        }
        other => out.push((prefix.to_owned(), cell(other))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn control_characters_are_shown_escaped() {
        assert_eq!(cell(&json!("a\u{1b}]52;c;x\u{7}b")), "a\\u{1b}]52;c;x\\u{7}b");
        assert_eq!(cell(&json!("plain ü")), "plain ü");
    }

    #[test]
    fn columns_are_as_wide_as_their_widest_cell() {
        let mut t = Table::new(&["ID", "STATE"]);
        t.row(vec!["a-long-id".into(), "queued".into()]);
        t.row(vec!["b".into(), "dead".into()]);
        assert_eq!(t.render(), "ID         STATE\na-long-id  queued\nb          dead");
    }

    #[test]
    fn a_record_is_flattened_with_dots() {
        let v = json!({"id": "x", "progress": {"done": 3, "total": null}, "attempts": [{"n": 1}]});
        let out = record(&v);
        let lines: Vec<&str> = out.lines().map(str::trim_end).collect();
        for want in ["id              x", "progress.done   3", "progress.total  -", "attempts[0].n   1"] {
            assert!(lines.contains(&want), "{want:?} not in\n{out}");
        }
    }
}
