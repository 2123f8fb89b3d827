//! W3C trace context (`traceparent`) carried API request → job record → worker run →
//! upstream HTTP call.
//!
//! It must work with and without an OTLP exporter. With the OpenTelemetry layer
//! installed, the run's span takes the stored `traceparent` as its parent and an
//! outgoing call carries the id of its own exported span. Without it there are no
//! OpenTelemetry span ids to use, so an outgoing call continues the job's trace under a
//! fresh span id: the upstream still sees which request its call belongs to.
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::job::trace_id_of;

/// The header's name, as W3C spells it.
pub const TRACEPARENT: &str = "traceparent";

/// Makes `span` (not yet entered) a child of the remote `traceparent`. A no-op without
/// the OpenTelemetry layer or with a malformed header.
fn continue_trace(span: &tracing::Span, traceparent: Option<&str>) {
    let Some(tp) = traceparent.filter(|tp| trace_id_of(tp).is_some()) else {
        return;
    };
    let carrier = HashMap::from([(TRACEPARENT.to_owned(), tp.to_owned())]);
    let parent = TraceContextPropagator::new().extract(&carrier);
    // Without the layer (no exporter configured) there is nothing to parent: the
    // fallback in `outgoing` carries the trace instead.
    let _ = span.set_parent(parent);
}

/// The `traceparent` for a call made under `span`: the span's own OpenTelemetry context
/// when the layer is installed, otherwise a child of the job's stored `traceparent`
/// with a fresh span id. `None` when neither exists.
pub fn outgoing(span: &tracing::Span, job_traceparent: Option<&str>) -> Option<String> {
    let cx = span.context();
    if cx.span().span_context().is_valid() {
        let mut carrier = HashMap::new();
        TraceContextPropagator::new().inject_context(&cx, &mut carrier);
        if let Some(tp) = carrier.remove(TRACEPARENT) {
            return Some(tp);
        }
    }
    job_traceparent.and_then(child_of)
}

/// The trace and span ids a run's log lines (and its attempt record) carry: `span`'s
/// OpenTelemetry context when the layer is installed (the ids its exported spans have),
/// otherwise the stored `traceparent`'s trace id under a fresh span id, and for a job
/// made without one (the scheduler's) a fresh trace, so its lines still share an id.
fn log_ids(span: &tracing::Span, traceparent: Option<&str>) -> (String, String) {
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    if sc.is_valid() {
        return (sc.trace_id().to_string(), sc.span_id().to_string());
    }
    fresh_ids(traceparent)
}

/// The `traceparent`'s trace id (or a fresh trace) under a fresh span id.
fn fresh_ids(traceparent: Option<&str>) -> (String, String) {
    // `hex::encode` of the big-endian bytes is what `{:032x}` writes, without the
    // formatting machinery (every run makes two ids)
    let fresh = || hex::encode(rand::random::<u128>().max(1).to_be_bytes());
    let trace = traceparent.and_then(trace_id_of).map_or_else(fresh, str::to_owned);
    (trace, hex::encode(rand::random::<u64>().max(1).to_be_bytes()))
}

/// Set once `telemetry::init` has installed the OpenTelemetry layer; never unset.
static LAYER: AtomicBool = AtomicBool::new(false);

/// Says the OpenTelemetry layer is installed: spans' log ids come from it from now on.
pub(crate) fn layer_installed() {
    LAYER.store(true, Ordering::Relaxed);
}

/// A new span's log ids when they can be known before the span exists — without the
/// OpenTelemetry layer, [`log_ids`] is the `traceparent`'s trace (or a fresh one) under
/// a fresh span id — so the span is made with them and no field is recorded on it
/// later: with the JSON log format every later `record` parses and re-serialises all of
/// the span's fields (a tenth of a worker's CPU at 25k jobs/s, two records a run).
/// `None` with the layer: its ids exist once the span does (see [`span_log_ids`]).
pub fn log_ids_ahead(traceparent: Option<&str>) -> Option<(String, String)> {
    (!LAYER.load(Ordering::Relaxed)).then(|| fresh_ids(traceparent))
}

/// The log ids of `span`, made with `ahead` from [`log_ids_ahead`] as its `trace_id`
/// and `span_id`: those, or with the layer installed, `span` continued from
/// `traceparent` and its exported span's ids recorded on it.
pub fn span_log_ids(span: &tracing::Span, traceparent: Option<&str>, ahead: Option<(String, String)>) -> (String, String) {
    if let Some(ids) = ahead {
        return ids;
    }
    continue_trace(span, traceparent);
    let (trace, span_id) = log_ids(span, traceparent);
    span.record("trace_id", trace.as_str());
    span.record("span_id", span_id.as_str());
    (trace, span_id)
}

/// A `traceparent` that starts a trace of its own (sampled), for a job nothing traced
/// asked for (a schedule's tick): the job, its runs and their lines then share one trace
/// id from the start, shown on the job and its running attempt.
pub fn fresh_traceparent() -> String {
    let (trace, span) = fresh_ids(None);
    format!("00-{trace}-{span}-01")
}

/// Same trace and flags as `parent`, a new random span id.
pub fn child_of(parent: &str) -> Option<String> {
    let trace = trace_id_of(parent)?;
    let flags = parent.rsplit('-').next()?;
    // An all-zero span id is invalid.
    let span = rand::random::<u64>().max(1);
    Some(format!("00-{trace}-{span:016x}-{flags}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn span_id(tp: &str) -> &str {
        tp.split('-').nth(2).unwrap()
    }

    #[test]
    fn a_child_keeps_the_trace_and_flags_under_a_new_span_id() {
        let a = child_of(TP).unwrap();
        let b = child_of(TP).unwrap();
        assert_eq!(trace_id_of(&a), trace_id_of(TP));
        assert!(a.starts_with("00-") && a.ends_with("-01"), "{a}");
        assert_ne!(span_id(&a), span_id(TP));
        assert_ne!(span_id(&a), span_id(&b));
        assert_eq!(
            child_of("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")
                .unwrap()
                .rsplit('-')
                .next(),
            Some("00")
        );
    }

    #[test]
    fn fresh_ids_are_lowercase_hex_of_the_w3c_lengths_and_keep_a_parents_trace() {
        let (trace, span) = fresh_ids(None);
        assert_eq!((trace.len(), span.len()), (32, 16));
        for id in [&trace, &span] {
            assert!(id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)), "{id}");
            assert!(id.bytes().any(|b| b != b'0'), "never all zeros: {id}");
        }
        assert_ne!(fresh_ids(None), fresh_ids(None));
        let n: u128 = 0x0af7651916cd43dd8448eb211c80319c;
        assert_eq!(hex::encode(n.to_be_bytes()), format!("{n:032x}"));
        assert_eq!(hex::encode(7u64.to_be_bytes()), format!("{:016x}", 7u64));
        assert_eq!(fresh_ids(Some(TP)).0, "4bf92f3577b34da6a3ce929d0e0e4736");
    }

    #[test]
    fn a_malformed_parent_has_no_child() {
        assert_eq!(child_of("00-nothex-00f067aa0ba902b7-01"), None);
        assert_eq!(outgoing(&tracing::Span::none(), Some("garbage")), None);
    }

    #[test]
    fn without_the_opentelemetry_layer_calls_still_continue_the_job_trace() {
        let span = tracing::info_span!("job");
        continue_trace(&span, Some(TP));
        let tp = outgoing(&span, Some(TP)).unwrap();
        assert_eq!(trace_id_of(&tp), trace_id_of(TP));
        assert_ne!(span_id(&tp), span_id(TP));
        assert_eq!(outgoing(&span, None), None);
    }

    #[test]
    fn with_the_opentelemetry_layer_a_call_carries_its_own_span_in_the_job_trace() {
        use opentelemetry::trace::TracerProvider as _;
        use tracing_subscriber::layer::SubscriberExt;

        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("test"));
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            let job = tracing::info_span!("job");
            continue_trace(&job, Some(TP));
            let call = job.in_scope(|| tracing::info_span!("upstream"));
            let tp = outgoing(&call, Some(TP)).unwrap();
            assert_eq!(trace_id_of(&tp), trace_id_of(TP));
            assert_ne!(span_id(&tp), span_id(TP));
            let own = call.context().span().span_context().span_id().to_string();
            assert_eq!(span_id(&tp), own);
        });
    }

    #[test]
    fn without_the_layer_a_spans_log_ids_are_known_before_it_is_made_and_with_it_they_are_its_exported_spans() {
        use opentelemetry::trace::TracerProvider as _;
        use tracing_subscriber::layer::SubscriberExt;

        // No test here installs the layer through `telemetry::init`.
        let ahead = log_ids_ahead(Some(TP)).expect("known ahead without the layer");
        assert_eq!(Some(ahead.0.as_str()), trace_id_of(TP));
        assert_eq!(ahead.1.len(), 16);
        assert_ne!(ahead.1, span_id(TP));
        let job = tracing::info_span!("job", trace_id = ahead.0.as_str(), span_id = ahead.1.as_str());
        assert_eq!(span_log_ids(&job, Some(TP), Some(ahead.clone())), ahead);
        let own = log_ids_ahead(None).unwrap();
        assert_ne!(
            Some(own.0.as_str()),
            trace_id_of(TP),
            "a job without a traceparent gets a trace of its own"
        );

        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("test"));
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
            let job = tracing::info_span!("job", trace_id = tracing::field::Empty, span_id = tracing::field::Empty);
            let (trace, span) = span_log_ids(&job, Some(TP), None);
            assert_eq!(Some(trace.as_str()), trace_id_of(TP), "continued from the traceparent");
            assert_eq!(span, job.context().span().span_context().span_id().to_string());
        });
    }

    #[test]
    fn a_runs_log_ids_are_its_exported_spans_with_the_layer_and_the_jobs_trace_without() {
        use opentelemetry::trace::TracerProvider as _;
        use tracing_subscriber::layer::SubscriberExt;

        let (trace, span) = log_ids(&tracing::info_span!("job"), Some(TP));
        assert_eq!(Some(trace.as_str()), trace_id_of(TP));
        assert_eq!(span.len(), 16);
        assert_ne!(span, span_id(TP));
        let (own, _) = log_ids(&tracing::info_span!("job"), None);
        assert_eq!(own.len(), 32, "a job without a traceparent gets a trace of its own");
        assert_ne!(Some(own.as_str()), trace_id_of(TP));

        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("test"));
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
            let job = tracing::info_span!("job");
            continue_trace(&job, Some(TP));
            let (trace, span) = log_ids(&job, Some(TP));
            assert_eq!(Some(trace.as_str()), trace_id_of(TP));
            assert_eq!(span, job.context().span().span_context().span_id().to_string());
        });
    }
}
