//! The worker runtime: apalis's `Monitor` and `WorkerBuilder` over our backend.
//!
//! One apalis worker per job kind, each fed by a fetcher that leases at most as many
//! jobs as it has free slots. Shutdown (docs/architecture.md, "Worker runtime"): stop
//! fetching and hand back what never started, let running jobs finish within the grace
//! period, then cut the rest off and hand them back without using an attempt; past
//! grace + [`HAND_BACK`] whatever is unsettled is left to its lease.
mod backend;
mod contention;
mod context;
mod keeper;
mod leases;
pub mod metrics;
mod outrank;
mod pace;
mod run_end;
mod settings;
mod settle;
mod shared;
mod sweep;
mod withdraw;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use apalis_core::monitor::Monitor;
use apalis_core::task::data::Data;
use apalis_core::worker::builder::WorkerBuilder;
use tokio_util::sync::CancellationToken;

pub use backend::{BackendError, DroverBackend};
pub use context::{Handler, JobContext, Outcome};
pub use settings::WorkerSettings;

use crate::job::{JobKind, JobPayload};
use crate::queue::{JobStore, StoreError};

/// Kinds whose trim is failing (an outage logged once; indexed by [`JobKind::index`]).
static TRIM_FAILING: [crate::outage::Outage; JobKind::ALL.len()] = [const { crate::outage::Outage::new() }; JobKind::ALL.len()];

/// Longest the runtime keeps trying to hand jobs back to Redis once the grace period
/// is over; jobs still unsettled then are reclaimed when their leases expire.
pub const HAND_BACK: Duration = Duration::from_secs(2);

/// Run workers for every kind with concurrency > 0 until `shutdown` resolves, then stop
/// gracefully. `connect` opens a second store for the lease keeper's own thread.
pub async fn run<S, H, C, CF, F>(store: S, connect: C, settings: WorkerSettings, handler: H, shutdown: F) -> Result<(), StoreError>
where
    S: JobStore,
    H: Handler,
    C: Fn() -> CF + Send + 'static,
    CF: Future<Output = Result<S, StoreError>> + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let handler: Arc<dyn Handler> = Arc::new(handler);
    let kinds: Vec<(JobKind, usize)> = JobKind::ALL
        .into_iter()
        .filter_map(|k| settings.concurrency.get(&k).copied().filter(|c| *c > 0).map(|c| (k, c)))
        .collect();

    let mut settle_tx = HashMap::new();
    let mut settlers = Vec::new();
    // Outcomes their queue has not taken are sent again until the runtime ends (or its
    // future is dropped).
    let settles_ended = CancellationToken::new();
    let _settles_end = settles_ended.clone().drop_guard();
    for (kind, _) in &kinds {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        settle_tx.insert(*kind, tx);
        settlers.push(shared::spawn_settler(
            store.clone(),
            *kind,
            shared::give_up_after(settings.lease),
            settles_ended.clone(),
            rx,
        ));
    }
    let stop_fetching = CancellationToken::new();
    let hard_stop = CancellationToken::new();
    let (leases, withdrawn) = leases::LeaseRegistry::withdrawing();
    let shared = Arc::new(shared::Shared {
        store: store.clone(),
        settings: settings.clone(),
        leases,
        stop_fetching: stop_fetching.clone(),
        hard_stop: hard_stop.clone(),
        settle_tx,
        slot_waits: sweep::SlotWaits::default(),
        contention: contention::Contention::default(),
        outranking: outrank::Outranking::new(&store, kinds.iter().map(|(k, _)| *k)),
    });

    let keeper_stop = CancellationToken::new();
    let timing = keeper::KeeperTiming {
        lease: settings.lease,
        heartbeat: settings.heartbeat,
    };
    let info = serde_json::json!({
        "pid": std::process::id(),
        "started_at": chrono::Utc::now(),
        "kinds": kinds.iter().map(|(k, c)| (k.as_str(), *c)).collect::<HashMap<_, _>>(),
    })
    .to_string();
    let keeper = keeper::spawn_keeper(
        shared.leases.clone(),
        kinds.iter().map(|(k, _)| *k).collect(),
        (settings.worker_id.clone(), info),
        connect,
        timing,
        keeper_stop.clone(),
    );

    let trimmer = tokio::spawn(trim_loop(
        store.clone(),
        kinds.iter().map(|(k, _)| *k).collect(),
        settings.retention,
        stop_fetching.clone(),
    ));

    let withdrawer = tokio::spawn(withdraw::withdraw_loop(shared.clone(), withdrawn));

    let sweeper = tokio::spawn(sweep::sweep_loop(
        shared.clone(),
        kinds.iter().map(|(k, _)| *k).collect(),
        stop_fetching.clone(),
    ));

    let outranker = tokio::spawn(outrank::outrank_loop(
        shared.clone(),
        kinds.iter().map(|(k, _)| *k).collect(),
        stop_fetching.clone(),
    ));

    let mut monitor = Monitor::new().should_restart(|ctx, err| {
        tracing::error!(worker = ctx.name(), error = %err, "worker stopped with an error; restarting it");
        true
    });
    for (kind, concurrency) in kinds {
        let shared = shared.clone();
        let handler = handler.clone();
        let name = format!("{}:{}", kind, settings.worker_id);
        monitor = monitor.register(move |_restarts| {
            let handler = handler.clone();
            WorkerBuilder::new(name.as_str())
                .backend(DroverBackend::new(shared.clone(), kind, concurrency, shared.settings.prefetch))
                .layer(tower::limit::ConcurrencyLimitLayer::new(concurrency))
                .build(move |payload: JobPayload, ctx: Data<context::JobContext>| {
                    let handler = handler.clone();
                    async move { handler.run(payload, ctx.0).await.map_err(apalis_core::error::BoxDynError::from) }
                })
        });
    }

    tracing::info!(worker_id = %settings.worker_id, "worker started");
    let grace = settings.grace;
    let grace_over = hard_stop.clone();
    let signal = async move {
        shutdown.await;
        tracing::info!(
            grace_ms = grace.as_millis() as u64,
            "shutdown: no new jobs; waiting for running jobs"
        );
        stop_fetching.cancel();
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            tracing::warn!("grace period over: handing the remaining running jobs back to the queue");
            hard_stop.cancel();
        });
        Ok(())
    };
    // Stopping is bounded whatever Redis does: past the grace period, hand-backs get
    // HAND_BACK to reach Redis; what is still unsettled then is left to its lease.
    let handed_back = async {
        grace_over.cancelled().await;
        tokio::time::sleep(HAND_BACK).await;
    };
    tokio::select! {
        result = monitor.run_with_signal(signal) => if let Err(e) = result {
            tracing::error!(error = %e, "worker monitor ended with an error");
        },
        _ = handed_back => tracing::warn!(
            hand_back_ms = HAND_BACK.as_millis() as u64,
            "could not hand every job back in time (is Redis reachable?); they are reclaimed when their leases expire"
        ),
    }
    trimmer.abort();
    sweeper.abort();
    outranker.abort();
    withdrawer.abort();
    drop(shared);
    for s in settlers {
        s.abort();
    }
    keeper_stop.cancel();
    // The keeper's calls are bounded, so it ends within one call; never wait longer.
    let (joined, keeper_done) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = keeper.join();
        let _ = joined.send(());
    });
    let _ = tokio::time::timeout(timing.call_timeout() + Duration::from_millis(100), keeper_done).await;
    tracing::info!("worker stopped");
    Ok(())
}

async fn trim_loop<S: JobStore>(store: S, kinds: Vec<JobKind>, retention: Duration, stop: CancellationToken) {
    // While a trim call still finds work (each call stops after its time budget), the
    // next comes right after a short pause, so trimming keeps up with any sustained rate
    // instead of a fixed number of jobs per tick. Idle ticks are short too: a call that
    // finds nothing due costs a few O(1) commands, and at 12,500 jobs/s a 30 s idle
    // tick let 400,000 finished jobs (1 GB) pile up before the first trim (soak).
    const IDLE: Duration = Duration::from_secs(2);
    const BEHIND: Duration = Duration::from_millis(200);
    let mut pause = Duration::ZERO;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(pause) => {}
        }
        let mut removed = 0;
        for kind in &kinds {
            match store.trim(*kind, retention, 500).await {
                Ok(Some(t)) => {
                    if TRIM_FAILING[kind.index()].answered() {
                        tracing::info!(kind = %kind, "trimming works again");
                    }
                    removed += t.removed;
                    metrics::trim_backlog(*kind, t.backlog);
                }
                Ok(None) => {} // another worker is trimming this kind
                // Once a failure, not once a tick: retention is not kept meanwhile.
                Err(e) if TRIM_FAILING[kind.index()].failed() => {
                    tracing::warn!(kind = %kind, error = %e, "trimming failed: retention is not kept for this kind until it works (logged again when it does)");
                }
                Err(e) => tracing::debug!(kind = %kind, error = %e, "trim failed again"),
            }
        }
        if removed > 0 {
            tracing::debug!(removed, "trimmed terminal jobs past retention");
        }
        pause = if removed > 0 { BEHIND } else { IDLE };
    }
}
