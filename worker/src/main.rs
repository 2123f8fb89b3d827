//! The `drover-worker` binary: load the configuration, build the worker, run it until
//! SIGTERM or SIGINT; or a subcommand (`drover-worker --help`: `healthcheck`,
//! `config check`, `partitions migrate`, every setting).
use drover_worker::cli::{self, Command, ConfigCommand, PartitionsCommand};

// glibc malloc showed up as a third of the worker's profile under load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config_file = std::env::var("DROVER_CONFIG").ok();
    // A subcommand's failure is its message and exit code 1, never a backtrace.
    let failed = |e: String| -> ! {
        eprintln!("drover-worker: {e}");
        std::process::exit(1)
    };
    match cli::parse().command {
        None | Some(Command::Run) => {}
        Some(Command::Healthcheck { address }) => {
            drover_worker::healthcheck::check(address).unwrap_or_else(|e| failed(format!("unhealthy: {e}")));
            println!("healthy");
            return Ok(());
        }
        Some(Command::Config(ConfigCommand::Check)) => {
            let (shown, checked) = cli::config_check(config_file.as_deref());
            println!("{shown}");
            checked.unwrap_or_else(|e| failed(e.to_string()));
            println!("configuration is valid");
            return Ok(());
        }
        Some(Command::Partitions(PartitionsCommand::Migrate { to })) => {
            let config = drover_worker::WorkerConfig::layered(config_file.as_deref()).unwrap_or_else(|e| failed(e.to_string()));
            let done = drover_worker::migrate_partitions(&config, to)
                .await
                .unwrap_or_else(|e| failed(format!("partitions not migrated: {e}")));
            println!(
                "moved {} jobs and left {} in place: {} -> {} partitions. Set queue.partitions = {} on every API and worker.",
                done.moved, done.stayed, done.from, done.to, done.to
            );
            return Ok(());
        }
    }
    drover::telemetry::init("drover-worker");
    let config = drover_worker::WorkerConfig::load(config_file.as_deref())?;
    let ran = match drover_worker::app::App::build(config) {
        Ok(app) => app.run_until(drover_worker::shutdown_signal()).await,
        Err(e) => Err(e),
    };
    drover::telemetry::shutdown();
    ran?;
    Ok(())
}
