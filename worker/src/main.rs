use drover::job::JobPayload;
use drover::runtime::{JobContext, Outcome};
use drover::JobError;

// glibc malloc showed up as a third of the worker's profile under load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    drover::telemetry::init("drover-worker");
    let config = drover_worker::WorkerConfig::load(std::env::var("DROVER_CONFIG").ok().as_deref())?;
    // The sync / backfill / cleanup handlers land with the marketplace client; until
    // then this build refuses those jobs permanently, so none is run half-way.
    let handler = |payload: JobPayload, _ctx: JobContext| async move {
        Err::<Outcome, _>(JobError::permanent(format!(
            "this worker build has no handler for {} jobs yet",
            payload.kind()
        )))
    };
    drover_worker::run(config, handler, drover_worker::shutdown_signal()).await?;
    Ok(())
}
