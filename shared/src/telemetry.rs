//! Logging set-up shared by the binaries: JSON lines (or human text with
//! `DROVER_LOG_FORMAT=text`), filtered by `RUST_LOG` (default `info`).
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::{fmt, EnvFilter};

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
    let builder = fmt().with_env_filter(filter).with_target(true).with_writer(writer);
    let result = if json {
        builder.json().flatten_event(true).with_current_span(true).try_init()
    } else {
        builder.try_init()
    };
    if result.is_ok() {
        tracing::debug!(service, "logging initialised");
    }
}
