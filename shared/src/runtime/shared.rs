//! State one worker process shares between its fetchers, settle layers and keeper.
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::contention::Contention;
use super::leases::{LeaseRegistry, RunLease};
use super::settings::WorkerSettings;
use super::sweep::SlotWaits;
use crate::backoff::Backoff;
use crate::job::JobKind;
use crate::queue::{JobStore, SettleResult, Settlement, StoreError};

pub(crate) type SettleRequest = (Settlement, oneshot::Sender<SettleResult>);

pub(crate) struct Shared<S: JobStore> {
    pub store: S,
    pub settings: WorkerSettings,
    pub leases: LeaseRegistry,
    /// Stop leasing new jobs (graceful shutdown has begun).
    pub stop_fetching: CancellationToken,
    /// The grace period is over: cut running jobs off and hand them back.
    pub hard_stop: CancellationToken,
    pub settle_tx: HashMap<JobKind, mpsc::UnboundedSender<SettleRequest>>,
    /// Which kinds' fetchers wait for a free slot, and since when (for the sweep).
    pub slot_waits: SlotWaits,
    /// Which kinds have jobs waiting for a slot while every slot is taken.
    pub contention: Contention,
}

impl<S: JobStore> Shared<S> {
    /// Record `lease`'s outcome; waits until it is stored (retrying through outages).
    /// The lease is marked settling first (see `Held::settling`); its entry goes when
    /// the `RunLease` is dropped, not here.
    pub async fn settle(&self, kind: JobKind, lease: &RunLease, s: Settlement) -> SettleResult {
        lease.held.settling();
        let (tx, rx) = oneshot::channel();
        if self.settle_tx[&kind].send((s, tx)).is_err() {
            return SettleResult::LeaseLost;
        }
        rx.await.unwrap_or(SettleResult::LeaseLost)
    }
}

/// Most settle calls in flight at once per kind: while one batch is on the wire the
/// next one is already being collected and sent, so acks are not bound by one round trip.
const SETTLES_IN_FLIGHT: usize = 4;

/// Writes settlements in batches: whatever has queued up goes in the next script call.
pub(crate) fn spawn_settler<S: JobStore>(
    store: S,
    kind: JobKind,
    mut rx: mpsc::UnboundedReceiver<SettleRequest>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut in_flight = FuturesUnordered::new();
        let mut open = true;
        while open || !in_flight.is_empty() {
            tokio::select! {
                first = rx.recv(), if open && in_flight.len() < SETTLES_IN_FLIGHT => match first {
                    None => open = false,
                    Some(first) => {
                        let mut batch = Vec::with_capacity(64);
                        batch.push(first);
                        while batch.len() < 256 {
                            match rx.try_recv() {
                                Ok(r) => batch.push(r),
                                Err(_) => break,
                            }
                        }
                        in_flight.push(settle_batch(store.clone(), kind, batch));
                    }
                },
                Some(()) = in_flight.next(), if !in_flight.is_empty() => {}
            }
        }
    })
}

/// Store one batch, retrying through outages, then answer each run. Outcomes a shard
/// could not take are sent again; outcomes written but not yet durable are waited for,
/// never sent again.
async fn settle_batch<S: JobStore>(store: S, kind: JobKind, batch: Vec<SettleRequest>) {
    let (settlements, replies): (Vec<Settlement>, Vec<_>) = batch.into_iter().unzip();
    let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
    let mut results = vec![SettleResult::Applied; settlements.len()];
    let mut pending: Vec<usize> = (0..settlements.len()).collect();
    let mut waits = false;
    while !pending.is_empty() {
        let batch: Vec<Settlement> = pending.iter().map(|i| settlements[*i].clone()).collect();
        match store.settle(kind, &batch).await {
            Ok(answers) => {
                let mut again = Vec::new();
                for (i, r) in pending.iter().zip(answers) {
                    match r {
                        SettleResult::Unreached => again.push(*i),
                        SettleResult::NotDurable => waits = true,
                        r => results[*i] = r,
                    }
                }
                if !again.is_empty() {
                    let failure = backoff.failed();
                    if failure.first {
                        tracing::warn!(kind = %kind, jobs = again.len(), "could not record some job outcomes (their queue is unreachable); retrying those");
                    }
                    tokio::time::sleep(failure.delay).await;
                }
                pending = again;
            }
            // Written, but not yet as durable as configured: writing it again would
            // record every attempt twice (late), so wait for the write already made.
            Err(StoreError::NotDurable(_)) => {
                waits = true;
                pending.clear();
            }
            Err(e) => {
                let failure = backoff.failed();
                if failure.first {
                    tracing::warn!(error = %e, kind = %kind, jobs = pending.len(), "could not record job outcomes; retrying until the queue is back");
                }
                tokio::time::sleep(failure.delay).await;
            }
        }
    }
    if waits {
        tracing::warn!(kind = %kind, jobs = settlements.len(), "job outcomes recorded but not yet durable; waiting for them");
        await_durable(&store, kind).await;
    }
    if backoff.succeeded() {
        tracing::info!(kind = %kind, "job outcomes recorded after the queue came back");
    }
    for ((s, tx), r) in settlements.iter().zip(replies).zip(results) {
        if r == SettleResult::LeaseLost {
            tracing::warn!(job_id = %s.id, "lease was gone when the run ended; its result is kept on the attempt only");
        }
        let _ = tx.send(r);
    }
}

/// Wait (retrying) until the store's earlier writes are as durable as configured. The
/// runs wait with their leases renewed; a run's lease entry goes once this returns.
async fn await_durable<S: JobStore>(store: &S, kind: JobKind) {
    let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
    while let Err(e) = store.await_durable().await {
        let failure = backoff.failed();
        if failure.first && !matches!(e, StoreError::NotDurable(_)) {
            tracing::warn!(error = %e, kind = %kind, "could not wait for job outcomes to be durable; retrying");
        }
        tokio::time::sleep(failure.delay).await;
    }
    if backoff.succeeded() {
        tracing::info!(kind = %kind, "job outcomes are durable");
    }
}

pub(crate) type SharedRef<S> = Arc<Shared<S>>;
