//! `drover-api`: serve the HTTP API until SIGTERM/SIGINT, or run a subcommand
//! (`drover-api --help`: `hash-key`, `healthcheck`, `config check`, every setting).
use anyhow::Context;

mod log_writer;

// glibc malloc was 14 % of the API's CPU under load (perf, POST /v1/jobs); the workers
// use mimalloc for the same reason.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // A subcommand's failure is its message and exit code 1, never a backtrace.
    match drover_api::cli::run(drover_api::cli::parse().command) {
        Ok(None) => {}
        Ok(Some(out)) => {
            println!("{out}");
            return Ok(());
        }
        Err(e) => {
            eprintln!("drover-api: {e}");
            std::process::exit(1);
        }
    }
    let _flush_logs = init_logging()?;
    let config = drover_api::ApiConfig::load(std::env::var("DROVER_CONFIG").ok().as_deref()).context("configuration")?;
    let app = drover_api::build(config).await?;
    let served = app.run_until(drover_api::cli::shutdown_signal()).await;
    drover::telemetry::shutdown();
    served.context("serving")?;
    Ok(())
}

/// `drover::telemetry`'s set-up, with the lines written in batches by a thread of their
/// own (a write(2) per line was 6 % of the API's CPU under load): see `log_writer`.
fn init_logging() -> anyhow::Result<log_writer::FlushGuard> {
    let (writer, guard) = log_writer::BatchedStdout::start().context("starting the log writer")?;
    drover::telemetry::init_with_writer("drover-api", writer);
    Ok(guard)
}
