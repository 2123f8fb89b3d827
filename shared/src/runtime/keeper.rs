//! The lease keeper: renews every lease the process holds and delivers cancellations.
//!
//! The keeper runs on its own OS thread with its own runtime and Redis connection, so
//! a handler that blocks the job runtime's threads cannot starve the renewals: a job
//! never loses its lease while its worker lives.
use std::collections::HashMap;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::leases::{Held, LeaseRegistry};
use crate::job::JobId;
use crate::queue::JobStore;

/// Renews every held lease each `interval` until `stop` fires. `connect` builds the
/// keeper's own store on the keeper's own runtime.
pub(crate) fn spawn_keeper<S, C, Fut>(
    registry: LeaseRegistry,
    worker: (String, String),
    connect: C,
    lease: Duration,
    interval: Duration,
    stop: CancellationToken,
) -> std::thread::JoinHandle<()>
where
    S: JobStore,
    C: Fn() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<S, crate::queue::StoreError>>,
{
    std::thread::Builder::new()
        .name("drover-leases".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("lease keeper runtime");
            rt.block_on(async move {
                let mut store = None;
                let mut failing = false;
                let mut tick = tokio::time::interval(interval);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tick.tick() => {}
                    }
                    if store.is_none() {
                        match connect().await {
                            Ok(s) => store = Some(s),
                            Err(e) => {
                                if !failing {
                                    tracing::warn!(error = %e, "lease keeper cannot reach the queue; retrying");
                                    failing = true;
                                }
                                continue;
                            }
                        }
                    }
                    let Some(s) = store.as_ref() else { continue };
                    // Visible to operators as `<ns>:workers:<id>`; gone three beats after death.
                    let _ = s.worker_heartbeat(&worker.0, &worker.1, interval * 3).await;
                    for (kind, held) in registry.snapshot() {
                        let leases: Vec<(JobId, String)> = held.iter().map(|(id, h)| (id.clone(), h.token.clone())).collect();
                        match s.extend_leases(kind, &leases, lease).await {
                            Ok(report) => {
                                if failing {
                                    tracing::info!("lease keeper reaches the queue again");
                                    failing = false;
                                }
                                let by_id: HashMap<&JobId, &Held> = held.iter().map(|(id, h)| (id, h)).collect();
                                for id in &report.lost {
                                    if let Some(h) = by_id.get(id) {
                                        if h.mark_lost() {
                                            tracing::warn!(job_id = %id, "lease lost; stopping the local run");
                                        }
                                    }
                                }
                                for id in &report.cancel_requested {
                                    if let Some(h) = by_id.get(id) {
                                        if !h.cancel.is_cancelled() {
                                            tracing::info!(job_id = %id, "cancellation requested");
                                            h.cancel.cancel();
                                        }
                                    }
                                }
                            }
                            Err(e) => {
                                if !failing {
                                    tracing::warn!(error = %e, kind = %kind, "could not renew leases; retrying");
                                    failing = true;
                                }
                            }
                        }
                    }
                }
            });
        })
        .expect("spawn lease keeper thread")
}
