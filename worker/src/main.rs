// glibc malloc showed up as a third of the worker's profile under load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    drover::telemetry::init("drover-worker");
    let config = drover_worker::WorkerConfig::load(std::env::var("DROVER_CONFIG").ok().as_deref())?;
    let ran = drover_worker::app::run_jobs(config, drover_worker::shutdown_signal()).await;
    drover::telemetry::shutdown();
    ran?;
    Ok(())
}
