//! `drover-api`: serve the HTTP API until SIGTERM/SIGINT, or `drover-api hash-key <key>`.
use anyhow::Context;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if let Some(out) = drover_api::cli::subcommand(std::env::args().skip(1))? {
        println!("{out}");
        return Ok(());
    }
    drover::telemetry::init("drover-api");
    let config = drover_api::ApiConfig::load(std::env::var("DROVER_CONFIG").ok().as_deref()).context("configuration")?;
    let app = drover_api::build(config).await?;
    app.run_until(drover_api::cli::shutdown_signal()).await.context("serving")?;
    Ok(())
}
