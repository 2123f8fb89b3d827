//! Leases withdrawn before their run started: a job cancelled while it waited in this
//! worker's prefetch ends at once, not when a slot frees (a run ahead of it may work a
//! whole slice first), and frees its fetch slot and its account's hold with it.
//!
//! The keeper hands such a lease over as it delivers the cancel
//! (`LeaseRegistry::withdraw`); the task queued for the worker then finds it withdrawn
//! and ends without running (`settle.rs`). Whichever of the two takes the lease's start
//! first wins, so a run either starts or is withdrawn, never both.
use std::time::Instant;

use tokio::sync::mpsc;

use super::leases::Withdrawal;
use super::metrics::{self, RunFate};
use super::run_end::CANCELLED_BEFORE_START;
use super::settle::counted_fate;
use super::shared::SharedRef;
use crate::job::{ErrorClass, ErrorInfo};
use crate::queue::{JobStore, SettleAction, Settlement};

/// Settle every withdrawn lease as it comes, each on its own task (an outage holds up
/// none of the others), until the registry's senders are gone.
pub(crate) async fn withdraw_loop<S: JobStore>(shared: SharedRef<S>, mut withdrawn: mpsc::UnboundedReceiver<Withdrawal>) {
    while let Some((kind, id, held)) = withdrawn.recv().await {
        let shared = shared.clone();
        tokio::spawn(async move {
            let began = Instant::now();
            let settlement = Settlement {
                id: id.clone(),
                token: held.token.clone(),
                action: SettleAction::Cancelled(ErrorInfo {
                    class: ErrorClass::Cancelled,
                    message: CANCELLED_BEFORE_START.into(),
                }),
                // no run is recorded: it never started
                attempt: None,
            };
            let answer = shared.settle_held(kind, &held, settlement).await;
            held.free_slot();
            shared.leases.remove(kind, &id, &held.token);
            if let Some(fate) = counted_fate(&answer, RunFate::Cancelled) {
                metrics::ended_without_running(kind, fate);
            }
            tracing::info!(
                job_id = %id,
                kind = %kind,
                outcome = ?answer,
                took_ms = began.elapsed().as_millis() as u64,
                "cancelled while it waited for a slot; ended without running"
            );
        });
    }
}
