//! `drover-worker healthcheck [address]`: asks the running worker's metrics listener
//! (`worker.metrics_listen` as the worker reads its configuration, probed on loopback) for
//! `/metrics` and fails unless it answers 200 — the image's HEALTHCHECK, as the
//! Kubernetes liveness probe does over the network.
use std::time::Duration;

/// `Some(result)` when `args` (after the binary's name) ask for the health check.
pub fn from_args(args: &[String]) -> Option<Result<(), String>> {
    let listen = match args {
        [cmd] if cmd == "healthcheck" => match crate::WorkerConfig::load(std::env::var("DROVER_CONFIG").ok().as_deref()) {
            Ok(config) if config.metrics_listen.is_empty() => return Some(Err("worker.metrics_listen is off: nothing to ask".into())),
            Ok(config) => config.metrics_listen,
            Err(e) => return Some(Err(format!("configuration: {e}"))),
        },
        [cmd, listen] if cmd == "healthcheck" => listen.clone(),
        _ => return None,
    };
    Some(drover::probe::local_target(&listen).and_then(|addr| drover::probe::http_ok(addr, "/metrics", Duration::from_secs(2))))
}
