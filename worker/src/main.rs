//! The `drover-worker` binary: load the configuration, build the worker, run it until
//! SIGTERM or SIGINT; or `drover-worker healthcheck [address]`.
// glibc malloc showed up as a third of the worker's profile under load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(checked) = drover_worker::healthcheck::from_args(&args) {
        checked.map_err(|e| anyhow::anyhow!("unhealthy: {e}"))?;
        println!("healthy");
        return Ok(());
    }
    drover::telemetry::init("drover-worker");
    let config = drover_worker::WorkerConfig::load(std::env::var("DROVER_CONFIG").ok().as_deref())?;
    let ran = match drover_worker::app::App::build(config) {
        Ok(app) => app.run_until(drover_worker::shutdown_signal()).await,
        Err(e) => Err(e),
    };
    drover::telemetry::shutdown();
    ran?;
    Ok(())
}
