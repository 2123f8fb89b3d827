//! The JSON log line: tracing-subscriber's JSON format (event fields at the top, the
//! current span as `span`, every entered span in `spans`), with each span's fields
//! written as they are kept rather than parsed back.
//!
//! tracing-subscriber's format parses a span's kept fields into a `serde_json::Value`
//! and serialises it again, for `span` and once more for each entry of `spans`: with the
//! API's two lines a request, that was 9 % of its CPU under load (docs/benchmarks.md,
//! 2026-12-07). The spans' fields are JSON objects already (`log_fields::JsonSpanFields`),
//! so here they are copied in, their closing brace traded for the span's name. A line
//! reads back as the same object (`tests` below compare the two formats line for line);
//! a span's keys keep the order they were recorded in.
use std::fmt::{self, Write};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormattedFields};
use tracing_subscriber::registry::{LookupSpan, SpanRef};

use crate::log_fields::{quote, Escaped, JsonSpanFields};

/// The event format of the JSON log (`fmt::layer().event_format(JsonLines)` with
/// `fmt_fields(JsonSpanFields)`).
#[derive(Debug, Default, Clone, Copy)]
pub struct JsonLines;

impl<S> FormatEvent<S, JsonSpanFields> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, JsonSpanFields>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        let mut line = String::with_capacity(512);
        line.push_str("{\"timestamp\":\"");
        SystemTime.format_time(&mut Writer::new(&mut line))?;
        line.push_str("\",\"level\":\"");
        line.push_str(meta.level().as_str());
        line.push('"');
        event.record(&mut EventFields(&mut line));
        line.push_str(",\"target\":");
        quote(&mut line, meta.target());
        let current = event.parent().and_then(|id| ctx.span(id)).or_else(|| ctx.lookup_current());
        if let Some(span) = &current {
            line.push_str(",\"span\":");
            write_span(&mut line, span);
            line.push_str(",\"spans\":[");
            if let Some(leaf) = ctx.lookup_current() {
                for (i, span) in leaf.scope().from_root().enumerate() {
                    if i > 0 {
                        line.push(',');
                    }
                    write_span(&mut line, &span);
                }
            }
            line.push(']');
        }
        line.push_str("}\n");
        writer.write_str(&line)
    }
}

/// `{<the span's fields>,"name":<its name>}`.
fn write_span<S>(line: &mut String, span: &SpanRef<'_, S>)
where
    S: for<'a> LookupSpan<'a>,
{
    let ext = span.extensions();
    let fields = ext
        .get::<FormattedFields<JsonSpanFields>>()
        .map(|f| f.fields.as_str())
        .unwrap_or("");
    // `{…}` with fields in it, as `JsonSpanFields` keeps them: open, and go on after them.
    match fields.strip_suffix('}').filter(|f| f.len() > 1 && f.starts_with('{')) {
        Some(open) => {
            line.push_str(open);
            line.push(',');
        }
        None => line.push('{'),
    }
    line.push_str("\"name\":");
    quote(line, span.name());
    line.push('}');
}

/// An event's fields, each `,"name":value`, as tracing-serde writes them: numbers and
/// booleans as they are, strings quoted, anything else by its `Debug`.
struct EventFields<'a>(&'a mut String);

impl EventFields<'_> {
    fn key(&mut self, field: &Field) {
        self.0.push(',');
        quote(self.0, field.name());
        self.0.push(':');
    }
}

impl Visit for EventFields<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.key(field);
        // As serde_json writes it: `1.0`, not `1`; not finite is null.
        let _ = write!(self.0, "{}", serde_json::Value::from(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.key(field);
        let _ = write!(self.0, "{value}");
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.key(field);
        let _ = write!(self.0, "{value}");
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.key(field);
        let _ = write!(self.0, "{value}");
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.key(field);
        quote(self.0, value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.key(field);
        self.0.push('"');
        let _ = write!(Escaped(self.0), "{value:?}");
        self.0.push('"');
    }
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::Registry;

    use super::*;
    use crate::log_capture::Lines;

    /// What `format` logs for events with every kind of field: in no span, in one span,
    /// in nested spans, with an explicit parent, and from the `log` crate.
    fn logged<E>(format: E) -> Vec<serde_json::Value>
    where
        E: FormatEvent<Registry, JsonSpanFields> + Send + Sync + 'static,
    {
        let lines = Lines::default();
        let layer = tracing_subscriber::fmt::layer()
            .with_writer(lines.clone())
            .fmt_fields(JsonSpanFields)
            .event_format(format);
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            let odd = "quote \" backslash \\ newline \n tab \t bell \u{7} é";
            tracing::warn!(n = 1u64, m = -3i64, r = 0.25f64, whole = 2.0f64, inf = f64::INFINITY, yes = true, odd, big = 1u128 << 70, bytes = &b"ab"[..], dbg = ?Some("x"), shown = %"disp", "no span: {}", 42);
            let outer = tracing::info_span!("request", request_id = "01J", method = "POST", key = tracing::field::Empty);
            outer.record("key", "tenant-a");
            outer.record("method", "GET");
            outer.in_scope(|| {
                tracing::info!(job_id = "cleanup_01", "job accepted");
                let inner = tracing::info_span!("upstream", op = "deleteListingsItem");
                inner.in_scope(|| tracing::error!(error = %"boom", "in two spans"));
                let bare = tracing::info_span!("bare");
                bare.in_scope(|| tracing::info!("an empty span"));
                tracing::info!(parent: &bare, "explicit parent");
                let record = log::Record::builder()
                    .args(format_args!("from log"))
                    .level(log::Level::Warn)
                    .target("some_crate::module")
                    .build();
                tracing_log::format_trace(&record).unwrap();
            });
            tracing::info!(parent: &outer, "outside, parent given");
        });
        for raw in lines.raw() {
            // `method`, recorded again, is in a line as often as the span is, not more
            let (method, span) = (raw.matches("\"method\":").count(), raw.matches("\"request_id\":").count());
            assert_eq!(method, span, "{raw}");
        }
        lines
            .lines()
            .into_iter()
            .map(|mut v| {
                let ts = v.as_object_mut().unwrap().remove("timestamp").expect("a timestamp");
                assert!(ts.as_str().is_some_and(|t| t.ends_with('Z') && t.len() >= 20), "{ts}");
                v
            })
            .collect()
    }

    #[test]
    fn a_line_reads_back_as_tracing_subscribers_json_line() {
        let ours = logged(JsonLines);
        let theirs = logged(
            tracing_subscriber::fmt::format()
                .with_target(true)
                .json()
                .flatten_event(true)
                .with_current_span(true),
        );
        assert_eq!(ours.len(), 7, "{ours:#?}");
        for (a, b) in ours.iter().zip(&theirs) {
            assert_eq!(a, b);
        }
        assert_eq!(ours.len(), theirs.len());
        assert_eq!(ours[1]["span"]["key"], "tenant-a", "{}", ours[1]);
        assert_eq!(ours[1]["span"]["method"], "GET", "{}", ours[1]);
        assert_eq!(ours[2]["spans"][0]["name"], "request", "{}", ours[2]);
        assert_eq!(ours[2]["span"]["op"], "deleteListingsItem", "{}", ours[2]);
        assert_eq!(ours[3]["span"], serde_json::json!({"name": "bare"}), "{}", ours[3]);
        assert_eq!(ours[5]["target"], "some_crate::module", "{}", ours[5]);
        assert_eq!(ours[0]["odd"], "quote \" backslash \\ newline \n tab \t bell \u{7} é");
    }
}
