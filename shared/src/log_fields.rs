//! How a span's fields are kept for the JSON log lines: one JSON object, written straight
//! into the span's string as each field is visited.
//!
//! tracing-subscriber's own `JsonFields` puts every field in a map of `serde_json::Value`s
//! and serialises the map, for every span made, whether or not a line is ever logged in
//! it; a worker makes one span a run, and that was a fifth of its instructions a no-op
//! job (docs/benchmarks.md). The JSON event format reads the string back as an object,
//! so a line comes out as before: the same keys, the same values.
use std::fmt::{self, Write};

use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FormatFields, FormattedFields};

/// The span fields of the JSON log format (`fmt::layer().json().fmt_fields(JsonSpanFields)`).
#[derive(Debug, Default, Clone, Copy)]
pub struct JsonSpanFields;

impl<'writer> FormatFields<'writer> for JsonSpanFields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut object = Object::default();
        fields.record(&mut object);
        writer.write_char('{')?;
        writer.write_str(&object.body)?;
        writer.write_char('}')
    }

    /// A field recorded later goes in the same object; one recorded again replaces its
    /// earlier value (as `JsonFields` did), so a line never carries a key twice.
    fn add_fields(&self, current: &'writer mut FormattedFields<Self>, fields: &tracing::span::Record<'_>) -> fmt::Result {
        let mut object = Object::default();
        fields.record(&mut object);
        if object.body.is_empty() {
            return Ok(());
        }
        let fields = &mut current.fields;
        // (a key's text found in a value only takes the slower way, to the same object)
        let again = object.names.iter().any(|n| fields.contains(&format!("\"{n}\":")));
        if again {
            let parse = |text: &str| match serde_json::from_str::<serde_json::Value>(text) {
                Ok(serde_json::Value::Object(map)) => map,
                _ => serde_json::Map::new(),
            };
            let mut merged = parse(fields);
            merged.extend(parse(&format!("{{{}}}", object.body)));
            *fields = serde_json::Value::Object(merged).to_string();
        } else if fields.len() > 2 && fields.ends_with('}') {
            // `{…}` with fields in it: the new ones go before its closing brace.
            fields.pop();
            fields.push(',');
            fields.push_str(&object.body);
            fields.push('}');
        } else {
            *fields = format!("{{{}}}", object.body);
        }
        Ok(())
    }
}

/// The `"name":value` pairs visited so far, comma-separated, and their names.
struct Object {
    body: String,
    names: Vec<&'static str>,
}

impl Default for Object {
    fn default() -> Self {
        // A run's span (six fields) fits without growing.
        Self {
            body: String::with_capacity(192),
            names: Vec::new(),
        }
    }
}

impl Object {
    fn key(&mut self, field: &Field) {
        if !self.body.is_empty() {
            self.body.push(',');
        }
        let name = field.name();
        let name = name.strip_prefix("r#").unwrap_or(name);
        self.names.push(name);
        quote(&mut self.body, name);
        self.body.push(':');
    }

    fn raw(&mut self, field: &Field, value: impl fmt::Display) {
        self.key(field);
        let _ = write!(self.body, "{value}");
    }
}

impl Visit for Object {
    fn record_f64(&mut self, field: &Field, value: f64) {
        // As serde_json writes it: `1.0`, not `1`; not finite is null.
        self.raw(field, serde_json::Value::from(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.raw(field, value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.raw(field, value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.raw(field, value);
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.key(field);
        quote(&mut self.body, value);
    }

    fn record_bytes(&mut self, field: &Field, value: &[u8]) {
        self.raw(field, serde_json::Value::from(value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.key(field);
        self.body.push('"');
        let _ = write!(Escaped(&mut self.body), "{value:?}");
        self.body.push('"');
    }
}

/// `s` as a JSON string, escaped as serde_json escapes it.
pub(crate) fn quote(out: &mut String, s: &str) {
    out.push('"');
    escape_into(out, s);
    out.push('"');
}

/// Writes what it is given into a JSON string's body, escaped: a value's `Debug` or
/// `Display` goes straight in, with no string of its own in between.
pub(crate) struct Escaped<'a>(pub(crate) &'a mut String);

impl Write for Escaped<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        escape_into(self.0, s);
        Ok(())
    }
}

fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

fn escape_into(out: &mut String, s: &str) {
    if !s.bytes().any(needs_escape) {
        out.push_str(s);
        return;
    }
    let mut from = 0;
    for (i, b) in s.bytes().enumerate() {
        if !needs_escape(b) {
            continue;
        }
        out.push_str(&s[from..i]);
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x08 => out.push_str("\\b"),
            0x0c => out.push_str("\\f"),
            _ => {
                let _ = write!(out, "\\u{b:04x}");
            }
        }
        from = i + 1;
    }
    out.push_str(&s[from..]);
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::fmt::format::JsonFields;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;
    use crate::log_capture::Lines;

    /// The lines a span with every kind of field, recorded at once and later, gives.
    fn logged<N>(fields: N) -> Vec<serde_json::Value>
    where
        N: for<'w> FormatFields<'w> + Send + Sync + 'static,
    {
        let lines = Lines::default();
        let layer = tracing_subscriber::fmt::layer()
            .with_writer(lines.clone())
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .fmt_fields(fields);
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            let odd = "quote \" backslash \\ newline \n tab \t bell \u{7} é";
            let span = tracing::info_span!(
                "job",
                job_id = "cleanup_01J",
                attempt = 3u32,
                delta = -2i64,
                ok = true,
                ratio = 0.5f64,
                whole = 2.0f64,
                odd,
                debug = ?Some("x"),
                r#type = "kept",
                late = tracing::field::Empty,
                trace_id = tracing::field::Empty,
            );
            span.in_scope(|| tracing::info!(n = 1, "first"));
            span.record("trace_id", "abc");
            span.record("late", 7u64);
            span.record("trace_id", "def");
            span.in_scope(|| tracing::info!("second"));
            let bare = tracing::info_span!("bare");
            bare.in_scope(|| tracing::info!("third"));
            bare.record("nothing", 1);
        });
        lines
            .lines()
            .into_iter()
            .map(|mut v| {
                v.as_object_mut().unwrap().remove("timestamp");
                v
            })
            .collect()
    }

    #[test]
    fn a_spans_fields_log_as_tracing_subscribers_json_fields_log_them() {
        let ours = logged(JsonSpanFields);
        assert_eq!(ours.len(), 3);
        assert_eq!(ours, logged(JsonFields::default()));
        assert_eq!(ours[1]["span"]["trace_id"], "def", "{}", ours[1]);
        assert_eq!(ours[1]["span"]["late"], 7);
        assert_eq!(ours[0]["span"]["odd"], "quote \" backslash \\ newline \n tab \t bell \u{7} é");
    }
}
