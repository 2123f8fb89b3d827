//! Span export whose outage is logged once. With the collector gone, the SDK logs every
//! export that fails: the batch processor an ERROR (`BatchSpanProcessor.ExportError`,
//! target `opentelemetry_sdk`) and the OTLP exporter a WARN once its retries are spent
//! (`Export.Failed.*`, target `opentelemetry-otlp`), so two lines every 5 s, more under
//! load. Those lines are kept out of our log ([`sdk_line_per_export`]) and [`Watched`]
//! says it as the other outages are said: the first failure (WARN, naming the endpoint
//! without its password) and the first success after it (INFO, with the spans lost).
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use opentelemetry_sdk::Resource;

use crate::outage::Outage;

/// A span exporter, its failures logged as an outage.
#[derive(Debug)]
pub(super) struct Watched<E> {
    inner: E,
    /// Where the spans go, as logged: without its password.
    endpoint: String,
    down: Outage,
    /// Spans in the exports that failed since the outage began.
    lost: AtomicU64,
}

impl<E> Watched<E> {
    /// `endpoint` is shown as given: redact it first.
    pub(super) fn new(inner: E, endpoint: String) -> Self {
        Self {
            inner,
            endpoint,
            down: Outage::new(),
            lost: AtomicU64::new(0),
        }
    }
}

impl<E: SpanExporter> SpanExporter for Watched<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len() as u64;
        let result = self.inner.export(batch).await;
        match &result {
            Ok(()) => {
                if self.down.answered() {
                    let lost = self.lost.swap(0, Ordering::Relaxed);
                    tracing::info!(endpoint = %self.endpoint, lost_spans = lost, "OTLP trace export works again");
                }
            }
            Err(e) => {
                self.lost.fetch_add(spans, Ordering::Relaxed);
                if self.down.failed() {
                    tracing::warn!(
                        endpoint = %self.endpoint,
                        error = %e,
                        "OTLP trace export failing: spans are dropped until the collector takes them again (logged again when it does)"
                    );
                } else {
                    tracing::debug!(endpoint = %self.endpoint, error = %e, "OTLP trace export still failing");
                }
            }
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn shutdown(&self) -> OTelSdkResult {
        self.inner.shutdown()
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The SDK's lines about one failed (or throttled) export, which [`Watched`] replaces:
/// the batch processor's ERROR, and the OTLP exporter's WARN when it gives up (retries
/// spent, deadline passed, an error not worth retrying) and INFO per throttled retry.
/// Matched by target and event name (the SDK's `otel_*!` macros set both), so its other
/// lines (spans dropped for a full queue, a shutdown that timed out: each once) stay.
/// The OTLP HTTP client's own lines go too: one a request at debug, and its network
/// error names the request's URL with any password in it.
pub(super) fn sdk_line_per_export(meta: &tracing::Metadata<'_>) -> bool {
    match meta.target() {
        "opentelemetry_sdk" => meta.name() == "BatchSpanProcessor.ExportError",
        "opentelemetry-otlp" => {
            meta.name().starts_with("Export.Failed.")
                || meta.name() == "Export.InProgress.Throttled"
                || meta.name().starts_with("HttpClient.")
        }
        _ => false,
    }
}

/// The traces endpoint the OTLP exporter reads from the environment, as it resolves it
/// (the traces variable as it is, else the general one with `/v1/traces`), without its
/// password.
pub(super) fn endpoint_from_env() -> String {
    let traces = std::env::var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").unwrap_or_default();
    let url = if traces.is_empty() {
        let base = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").unwrap_or_default();
        format!("{}/v1/traces", base.strip_suffix('/').unwrap_or(&base))
    } else {
        traces
    };
    crate::config::redact::url_without_password(&url)
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use opentelemetry_sdk::error::OTelSdkError;

    use super::*;
    use crate::log_capture::Lines;

    /// An exporter whose exports end as scripted, one answer each.
    #[derive(Debug)]
    struct Scripted(Mutex<VecDeque<bool>>);

    impl SpanExporter for Scripted {
        async fn export(&self, _batch: Vec<SpanData>) -> OTelSdkResult {
            match self.0.lock().unwrap().pop_front() {
                Some(true) => Ok(()),
                _ => Err(OTelSdkError::InternalFailure("HTTP export failed: network error".into())),
            }
        }
    }

    /// Found by the logging audit of 2026-12-05 (the SDK logged each failed export):
    /// four failed exports, two that work, one more failure are one WARN when the first
    /// fails, one INFO when the next works (with the spans lost meanwhile), and one WARN
    /// for the new outage — at info, the level the binaries log at.
    #[tokio::test]
    async fn an_export_outage_is_logged_when_it_begins_and_when_it_ends() {
        let log = Lines::default();
        let _default = tracing::subscriber::set_default(log.subscriber(tracing::Level::INFO));
        let script = [false, false, false, false, true, true, false];
        let exporter = Watched::new(
            Scripted(Mutex::new(script.into_iter().collect())),
            "http://drover:<secret>@collector:4318/v1/traces".into(),
        );
        let mut results = Vec::new();
        for _ in script {
            results.push(exporter.export(vec![span(), span()]).await.is_ok());
        }
        assert_eq!(results, script, "the exporter's answers are passed on");

        let logged = log.lines();
        let said: Vec<(&str, &str)> = logged
            .iter()
            .map(|v| (v["level"].as_str().unwrap_or(""), v["message"].as_str().unwrap_or("")))
            .collect();
        let failing = "OTLP trace export failing: spans are dropped until the collector takes them again (logged again when it does)";
        assert_eq!(
            said,
            [("WARN", failing), ("INFO", "OTLP trace export works again"), ("WARN", failing)],
            "{logged:#?}"
        );
        assert_eq!(logged[0]["endpoint"], "http://drover:<secret>@collector:4318/v1/traces");
        assert!(logged[0]["error"].as_str().unwrap_or("").contains("network error"), "{logged:#?}");
        assert_eq!(logged[1]["lost_spans"], 8, "four failed exports of two spans: {logged:#?}");
    }

    /// The lines as the SDK's `otel_*!` macros make them (target and event name set),
    /// through the filter the binaries' log has.
    #[test]
    fn only_the_sdks_lines_about_each_export_are_kept_out() {
        use tracing_subscriber::layer::SubscriberExt;

        let log = Lines::default();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_subscriber::filter::filter_fn(|m| !sdk_line_per_export(m)))
            .with(tracing_subscriber::fmt::layer().json().flatten_event(true).with_writer(log.clone()));
        tracing::subscriber::with_default(subscriber, || {
            let error = "Operation failed: HTTP export failed: network error";
            tracing::error!(name: "BatchSpanProcessor.ExportError", target: "opentelemetry_sdk", name = "BatchSpanProcessor.ExportError", error);
            tracing::warn!(name: "Export.Failed.Exhausted", target: "opentelemetry-otlp", name = "Export.Failed.Exhausted", retries = 3);
            tracing::warn!(name: "Export.Failed.DeadlineExceeded", target: "opentelemetry-otlp", name = "Export.Failed.DeadlineExceeded");
            tracing::info!(name: "Export.InProgress.Throttled", target: "opentelemetry-otlp", name = "Export.InProgress.Throttled");
            // its URL may carry a password
            tracing::warn!(name: "HttpClient.NetworkError", target: "opentelemetry-otlp", name = "HttpClient.NetworkError", url = "http://u:hunter2@collector/v1/traces");
            // kept: said once, not once an export
            tracing::warn!(name: "BatchSpanProcessor.SpanDroppingStarted", target: "opentelemetry_sdk", name = "BatchSpanProcessor.SpanDroppingStarted");
            // kept: ours, whatever its name
            tracing::warn!(name: "BatchSpanProcessor.ExportError", "not the SDK's");
        });
        let kept = log.lines();
        assert_eq!(kept.len(), 2, "{kept:#?}");
        assert_eq!(kept[0]["name"], "BatchSpanProcessor.SpanDroppingStarted", "{kept:#?}");
        assert_eq!(kept[1]["message"], "not the SDK's", "{kept:#?}");
    }

    fn span() -> SpanData {
        use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState};
        SpanData {
            span_context: SpanContext::new(
                TraceId::from(1u128),
                SpanId::from(1u64),
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            ),
            parent_span_id: SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: SpanKind::Internal,
            name: "job".into(),
            start_time: std::time::SystemTime::UNIX_EPOCH,
            end_time: std::time::SystemTime::UNIX_EPOCH,
            attributes: Vec::new(),
            dropped_attributes_count: 0,
            events: Default::default(),
            links: Default::default(),
            status: Status::Unset,
            instrumentation_scope: Default::default(),
        }
    }
}
