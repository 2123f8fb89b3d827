//! `drover-api`: serve the HTTP API, or `drover-api hash-key <key>` to print the SHA-256
//! to put in `api.keys[].key_sha256`.
use anyhow::Context;
use secrecy::SecretString;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [cmd, key] = args.as_slice() {
        if cmd == "hash-key" {
            println!("{}", drover_api::hash_key(&SecretString::from(key.as_str())));
            return Ok(());
        }
    }
    anyhow::ensure!(args.is_empty(), "usage: drover-api [hash-key <key>]");
    drover::telemetry::init("drover-api");
    let config = drover_api::ApiConfig::load(std::env::var("DROVER_CONFIG").ok().as_deref()).context("configuration")?;
    let app = drover_api::build(config).await?;
    app.run_until(drover_worker_free_shutdown()).await.context("serving")?;
    Ok(())
}

/// Resolves on SIGTERM or SIGINT.
async fn drover_worker_free_shutdown() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}
