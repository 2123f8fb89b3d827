//! State one worker process shares between its fetchers, settle layers and keeper.
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::contention::Contention;
use super::leases::{Held, LeaseRegistry, RunLease};
use super::outrank::Outranking;
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
    /// The runs a more urgent job of their own account may outrank.
    pub outranking: Outranking,
}

impl<S: JobStore> Shared<S> {
    /// Record `lease`'s outcome; waits until it is stored (retrying through an outage of
    /// any length while the runtime runs, the lease kept renewed meanwhile) and, once
    /// written, durable (for at most [`give_up_after`] the lease).
    /// The lease is marked settling first (see `Held::settling`); its entry goes when
    /// the `RunLease` is dropped, not here.
    pub async fn settle(&self, kind: JobKind, lease: &RunLease, s: Settlement) -> SettleResult {
        self.settle_held(kind, &lease.held, s).await
    }

    /// [`Self::settle`] for a lease known by its entry only (one withdrawn by the keeper).
    pub async fn settle_held(&self, kind: JobKind, held: &Held, s: Settlement) -> SettleResult {
        held.settling();
        let (tx, rx) = oneshot::channel();
        if self.settle_tx[&kind].send((s, tx)).is_err() {
            return SettleResult::LeaseLost;
        }
        rx.await.unwrap_or(SettleResult::LeaseLost)
    }
}

/// Most first tries in flight at once per kind: while one batch is on the wire the next
/// one is already being collected and sent, so acks are not bound by one round trip.
const SETTLES_IN_FLIGHT: usize = 4;

/// How long a run's outcome, written but not yet as durable as configured, is waited on,
/// or refused by Redis for a reason other than an outage (a script's error) sent again,
/// before the run is let go: `max(60 s, 10 leases)`. (An outcome its queue could not take
/// for an outage is sent again for as long as the runtime runs: letting its run go would
/// stop the renewals, and the job's lease, reclaimed once Redis is back, would be charged
/// an attempt for the outage.)
pub(crate) fn give_up_after(lease: Duration) -> Duration {
    (lease * 10).max(Duration::from_secs(60))
}

/// Writes settlements in batches: whatever has queued up goes in the next script call.
/// Outcomes still unwritten when `ended` fires are answered `Unreached`.
pub(crate) fn spawn_settler<S: JobStore>(
    store: S,
    kind: JobKind,
    give_up: Duration,
    ended: CancellationToken,
    mut rx: mpsc::UnboundedReceiver<SettleRequest>,
) -> tokio::task::JoinHandle<()> {
    let settler = Settler {
        store,
        kind,
        give_up,
        ended,
        spells: Arc::default(),
    };
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
                        in_flight.push(first_try(settler.clone(), batch));
                    }
                },
                Some(()) = in_flight.next(), if !in_flight.is_empty() => {}
            }
        }
    })
}

/// What a kind's settle tasks share: where outcomes go, how long one is tried, when the
/// runtime has ended, and which spells its batches are in.
#[derive(Clone)]
struct Settler<S: JobStore> {
    store: S,
    kind: JobKind,
    give_up: Duration,
    ended: CancellationToken,
    spells: Arc<Spells>,
}

/// The spells a kind's outcomes go through, each logged once however many batches meet
/// it: before (chaos audit of 2026-12-06), every batch that met an outage logged it, so
/// a busy worker logged one Redis restart several times.
#[derive(Default)]
struct Spells {
    /// Batches whose queue cannot be reached.
    unreached: Spell,
    /// Batches written but not yet as durable as configured.
    waiting: Spell,
}

/// How many batches are in one spell: the first to enter says it began, the last to
/// leave that it ended.
#[derive(Default)]
struct Spell(AtomicUsize);

impl Spell {
    /// True for the first batch in.
    fn enter(&self) -> bool {
        self.0.fetch_add(1, Ordering::SeqCst) == 0
    }

    /// True for the last batch out.
    fn leave(&self) -> bool {
        self.0.fetch_sub(1, Ordering::SeqCst) == 1
    }
}

/// What one round of a batch left: outcomes not written (their queue could not be
/// reached) and outcomes written but not yet as durable as configured.
#[derive(Default)]
struct Left {
    unreached: Vec<SettleRequest>,
    waiting: Vec<SettleRequest>,
    error: Option<StoreError>,
}

/// One batch's first try. Each run is answered as soon as its outcome is stored; what is
/// left goes to a task of its own, so a queue that stays down (a shard without a replica)
/// or a wait for durability holds up no other queue's outcomes.
async fn first_try<S: JobStore>(settler: Settler<S>, batch: Vec<SettleRequest>) {
    let left = settle_round(&settler.store, settler.kind, batch, false).await;
    if !left.unreached.is_empty() || !left.waiting.is_empty() {
        tokio::spawn(settle_left(settler, left));
    }
}

/// Send `batch` once, answering each run whose outcome was stored. `again`: the batch
/// may have been applied already (its reply lost, or its durability wait fell short).
async fn settle_round<S: JobStore>(store: &S, kind: JobKind, batch: Vec<SettleRequest>, again: bool) -> Left {
    let mut left = Left::default();
    let settlements: Vec<Settlement> = batch.iter().map(|(s, _)| s.clone()).collect();
    match store.settle(kind, &settlements).await {
        Ok(answers) => {
            for (request, r) in batch.into_iter().zip(answers) {
                match r {
                    SettleResult::Unreached => left.unreached.push(request),
                    SettleResult::NotDurable => left.waiting.push(request),
                    // A hand-back records no run, so `settle.lua` cannot tell one it
                    // applied before from a lease gone: either way the lease is over and
                    // the job back in its queue (or reclaimed into it).
                    SettleResult::LeaseLost if again && request.0.attempt.is_none() => answer(request, SettleResult::Applied),
                    r => answer(request, r),
                }
            }
        }
        // Written, but not yet as durable as configured: sent again with the next wait
        // (`settle.lua` recognises a run it has recorded, so nothing is written twice).
        Err(StoreError::NotDurable(_)) => left.waiting = batch,
        Err(e) => {
            left.unreached = batch;
            left.error = Some(e);
        }
    }
    left
}

/// (A lost lease is logged by the run's own end, `settle::log_end`, in the job's span.)
fn answer((_, tx): SettleRequest, r: SettleResult) {
    let _ = tx.send(r);
}

/// Record what a batch's first try left: the unreached outcomes, then the written ones
/// until they are durable.
async fn settle_left<S: JobStore>(settler: Settler<S>, left: Left) {
    let waiting = record_unreached(&settler, left).await;
    if !waiting.is_empty() {
        await_durable(&settler, waiting).await;
    }
}

/// Send the unreached outcomes again until their queue takes them (or the runtime
/// ends; for at most `give_up` while Redis refuses them for a reason other than an
/// outage, each then sent alone, so one bad outcome holds up no other); the outcomes
/// written but not yet durable, to wait for.
async fn record_unreached<S: JobStore>(settler: &Settler<S>, mut left: Left) -> Vec<SettleRequest> {
    let Settler {
        store,
        kind,
        give_up,
        ended,
        spells,
    } = settler;
    let (kind, give_up) = (*kind, *give_up);
    let began = tokio::time::Instant::now();
    let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
    let unreached = !left.unreached.is_empty();
    if unreached && spells.unreached.enter() {
        let jobs = left.unreached.len();
        match &left.error {
            Some(e) => tracing::warn!(error = %e, kind = %kind, jobs, "could not record job outcomes; retrying until their queue is back"),
            None => tracing::warn!(kind = %kind, jobs, "could not record some job outcomes (their queue is unreachable); retrying those"),
        }
    }
    let mut recorded = true;
    while !left.unreached.is_empty() {
        let delay = backoff.failed().delay;
        let refused = left.error.as_ref().filter(|e| !e.is_outage());
        if let Some(e) = refused.filter(|_| began.elapsed() + delay > give_up) {
            tracing::error!(
                kind = %kind,
                jobs = left.unreached.len(),
                after_s = give_up.as_secs(),
                error = %e,
                "gave up recording job outcomes Redis kept refusing; each job runs again once its lease runs out"
            );
            for request in left.unreached.drain(..) {
                answer(request, SettleResult::Unreached);
            }
            recorded = false;
            break;
        }
        let one_by_one = refused.is_some();
        tokio::select! {
            _ = ended.cancelled() => {
                tracing::error!(
                    kind = %kind,
                    jobs = left.unreached.len(),
                    "the worker stopped before its queue took these job outcomes; each job runs again once its lease runs out"
                );
                for request in left.unreached.drain(..) {
                    answer(request, SettleResult::Unreached);
                }
                recorded = false;
                break;
            }
            _ = tokio::time::sleep(delay) => {}
        }
        let batch = std::mem::take(&mut left.unreached);
        let round = send_again(store, kind, batch, one_by_one).await;
        left.unreached = round.unreached;
        left.waiting.extend(round.waiting);
        left.error = round.error;
    }
    if unreached && spells.unreached.leave() && recorded {
        tracing::info!(kind = %kind, "job outcomes recorded after their queue came back");
    }
    left.waiting
}

/// Send outcomes written but not yet as durable as configured again, each time with
/// the wait, until it passes or `give_up` has gone by ([`give_up_after`]); the runs wait
/// with their leases renewed.
async fn await_durable<S: JobStore>(settler: &Settler<S>, waiting: Vec<SettleRequest>) {
    let Settler {
        store,
        kind,
        give_up,
        spells,
        ..
    } = settler;
    let (kind, give_up) = (*kind, *give_up);
    // The first batch of a spell says so, and what keeps it from ending.
    let (first, mut logged) = (spells.waiting.enter(), false);
    if first {
        tracing::warn!(kind = %kind, jobs = waiting.len(), "job outcomes recorded but not yet durable; waiting for them");
    }
    // The wait has its own `give_up` from now, however long the outage before it lasted.
    let deadline = tokio::time::Instant::now() + give_up;
    let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
    let (mut waiting, mut durable, mut refused) = (waiting, true, false);
    while !waiting.is_empty() {
        let delay = backoff.failed().delay;
        if tokio::time::Instant::now() + delay > deadline {
            tracing::error!(
                kind = %kind,
                jobs = waiting.len(),
                after_s = give_up.as_secs(),
                "job outcomes recorded but still not durable; letting their runs go"
            );
            for request in waiting.drain(..) {
                answer(request, SettleResult::NotDurable);
            }
            durable = false;
            break;
        }
        tokio::time::sleep(delay).await;
        // Sent again with its wait, not waited for alone: a lone wait on a connection
        // re-dialled after a failover counts no write and passes at once, although the
        // replica promoted may never have received the outcome (before, found by the
        // Redis failover audit of 2026-12-06, its job was then reclaimed and run again).
        // Refused for a reason other than an outage: each sent alone from then on, so one
        // bad outcome holds up no other.
        let round = send_again(store, kind, waiting, refused).await;
        if let Some(e) = round.error.as_ref().filter(|_| first && !logged) {
            logged = true;
            tracing::warn!(error = %e, kind = %kind, "could not wait for job outcomes to be durable; retrying");
        }
        refused = round.error.as_ref().is_some_and(|e| !e.is_outage());
        waiting = round.waiting;
        waiting.extend(round.unreached);
    }
    if spells.waiting.leave() && durable {
        tracing::info!(kind = %kind, "job outcomes are durable");
    }
}

/// Send outcomes that may have been applied already once more, in one call or each
/// alone (`one_by_one`: Redis refused the last call for a reason other than an outage).
async fn send_again<S: JobStore>(store: &S, kind: JobKind, batch: Vec<SettleRequest>, one_by_one: bool) -> Left {
    if !one_by_one {
        return settle_round(store, kind, batch, true).await;
    }
    let mut round = Left::default();
    for request in batch {
        let one = settle_round(store, kind, vec![request], true).await;
        round.unreached.extend(one.unreached);
        round.waiting.extend(one.waiting);
        round.error = one.error.or(round.error);
    }
    round
}

pub(crate) type SharedRef<S> = Arc<Shared<S>>;
