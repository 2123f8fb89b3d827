//! Logging and tracing set-up shared by the binaries: JSON lines (or human text with
//! `DROVER_LOG_FORMAT=text`), filtered by `RUST_LOG` (default `info`); and, when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set, spans
//! exported over OTLP (HTTP/protobuf) under `service.name` = the binary's name
//! (`OTEL_SERVICE_NAME` wins when set). Off when neither endpoint is set.
//!
//! Spans leave through the SDK's batch processor, on a thread of its own with a bounded
//! queue: a slow or absent collector costs dropped spans, never a slower request or job.
//! An absent collector is logged once, as an outage (`telemetry/export_outage.rs`), not
//! once an export.
mod export_outage;

use std::sync::OnceLock;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter};

/// The environment variables that turn export on (the exporter reads them itself).
const ENDPOINT_VARS: [&str; 2] = ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"];

/// Kept so `shutdown` can flush what is still queued.
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Log to stdout.
pub fn init(service: &'static str) {
    init_with_writer(service, std::io::stdout);
}

/// Log through `writer` (the API hands in a batching stdout writer).
pub fn init_with_writer<W>(service: &'static str, writer: W)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("DROVER_LOG_FORMAT").map(|v| v != "text").unwrap_or(true);
    let (json_layer, text_layer) = if json {
        // (`JsonLines` is the whole line: the event fields flattened, the target, the
        // current span and the span list, as tracing-subscriber's JSON format writes them)
        let layer = fmt::layer()
            .with_writer(writer)
            .fmt_fields(crate::log_fields::JsonSpanFields)
            .event_format(crate::log_format::JsonLines);
        (Some(layer), None)
    } else {
        (None, Some(fmt::layer().with_target(true).with_writer(writer)))
    };
    let (provider, export_error) = match exporter(service) {
        Ok(provider) => (provider, None),
        Err(e) => (None, Some(e)),
    };
    let otel_layer = provider
        .as_ref()
        .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer(service)));
    let result = tracing_subscriber::registry()
        .with(filter)
        // The exporter's outage is ours to log, once (whatever `RUST_LOG` says).
        .with(tracing_subscriber::filter::filter_fn(|meta| {
            !export_outage::sdk_line_per_export(meta)
        }))
        .with(json_layer)
        .with(text_layer)
        .with(otel_layer)
        .try_init();
    if result.is_err() {
        // Already initialised (tests): this provider has no layer to feed.
        if let Some(p) = provider {
            let _ = p.shutdown();
        }
        return;
    }
    // A panic is a log line too, and a caught one is logged once, by its catcher.
    crate::panics::install_hook();
    let exporting = provider.is_some();
    if let Some(p) = provider {
        crate::trace_context::layer_installed();
        let _ = PROVIDER.set(p);
    }
    if let Some(e) = export_error {
        // The exporter's error quotes the endpoint as configured: its password, if it has
        // one, is not shown.
        let e: Vec<String> = e
            .split(' ')
            .map(|w| {
                if w.contains("://") {
                    crate::config::redact::url_without_password(w)
                } else {
                    w.to_owned()
                }
            })
            .collect();
        tracing::warn!(service, error = %e.join(" "), "OTLP trace export is configured but could not start; running without it");
    }
    tracing::debug!(service, otlp = exporting, "logging initialised");
}

/// Flushes the spans still queued for export (a no-op without export). Call once, at
/// exit; it waits for the collector at most the exporter's timeout.
pub fn shutdown() {
    if let Some(p) = PROVIDER.get() {
        if let Err(e) = p.shutdown() {
            tracing::warn!(error = %e, "OTLP trace export did not flush cleanly");
        }
    }
}

/// The OTLP pipeline when an endpoint is configured.
fn exporter(service: &'static str) -> Result<Option<SdkTracerProvider>, String> {
    let configured = ENDPOINT_VARS.iter().any(|k| std::env::var(k).is_ok_and(|v| !v.trim().is_empty()));
    if !configured {
        return Ok(None);
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
        .map_err(|e| e.to_string())?;
    let mut resource = Resource::builder();
    if std::env::var("OTEL_SERVICE_NAME").map_or(true, |v| v.trim().is_empty()) {
        resource = resource.with_service_name(service);
    }
    let exporter = export_outage::Watched::new(exporter, export_outage::endpoint_from_env());
    Ok(Some(
        SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource.build())
            .build(),
    ))
}
