//! `drover-api`: serve the HTTP API until SIGTERM/SIGINT, or `drover-api hash-key <key>`.
use anyhow::Context;
use tracing_subscriber::{fmt, EnvFilter};

mod log_writer;

// glibc malloc was 14 % of the API's CPU under load (perf, POST /v1/jobs); the workers
// use mimalloc for the same reason.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if let Some(out) = drover_api::cli::subcommand(std::env::args().skip(1))? {
        println!("{out}");
        return Ok(());
    }
    let _flush_logs = init_logging()?;
    let config = drover_api::ApiConfig::load(std::env::var("DROVER_CONFIG").ok().as_deref()).context("configuration")?;
    let app = drover_api::build(config).await?;
    app.run_until(drover_api::cli::shutdown_signal()).await.context("serving")?;
    Ok(())
}

/// As `drover::telemetry::init` (same filter, formats and fields), but the lines are
/// written in batches by a thread of their own: see `log_writer`.
fn init_logging() -> anyhow::Result<log_writer::FlushGuard> {
    let (writer, guard) = log_writer::BatchedStdout::start().context("starting the log writer")?;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("DROVER_LOG_FORMAT").map(|v| v != "text").unwrap_or(true);
    let builder = fmt().with_env_filter(filter).with_target(true).with_writer(writer);
    let result = if json {
        builder.json().flatten_event(true).with_current_span(true).try_init()
    } else {
        builder.try_init()
    };
    if result.is_ok() {
        tracing::debug!(service = "drover-api", "logging initialised");
    }
    Ok(guard)
}
