//! `drover-worker healthcheck [address]`: asks the running worker's metrics listener
//! (`worker.metrics_listen` as the worker reads its configuration, probed on loopback) for
//! `/metrics` and fails unless it answers 200 — the image's HEALTHCHECK, as the
//! Kubernetes liveness probe does over the network.
use std::time::Duration;

/// Probe `address`, or the configured `worker.metrics_listen` when none is given.
pub fn check(address: Option<String>) -> Result<(), String> {
    let listen = match address {
        Some(listen) => listen,
        None => match crate::WorkerConfig::load(std::env::var("DROVER_CONFIG").ok().as_deref()) {
            Ok(config) if config.metrics_listen.is_empty() => return Err("worker.metrics_listen is off: nothing to ask".into()),
            Ok(config) => config.metrics_listen,
            Err(e) => return Err(format!("configuration: {e}")),
        },
    };
    drover::probe::local_target(&listen).and_then(|addr| drover::probe::http_ok(addr, "/metrics", Duration::from_secs(2)))
}
