//! Logging set-up shared by the binaries: JSON lines (or human text on a terminal),
//! filtered by `RUST_LOG` (default `info`).
use tracing_subscriber::{fmt, EnvFilter};

pub fn init(service: &'static str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("DROVER_LOG_FORMAT").map(|v| v != "text").unwrap_or(true);
    let builder = fmt().with_env_filter(filter).with_target(true);
    let result = if json {
        builder.json().flatten_event(true).with_current_span(true).try_init()
    } else {
        builder.try_init()
    };
    if result.is_ok() {
        tracing::debug!(service, "logging initialised");
    }
}
