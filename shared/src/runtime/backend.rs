//! Our Redis backend under apalis: a fetcher task leases jobs (never more than free
//! slots) and hands them to the worker through a channel. When fetching stops, the
//! fetcher hands back at once what was leased but never started; apalis itself would
//! only close the backend after every running job has ended.
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use apalis_core::backend::{Backend, BackendConfig};
use apalis_core::task::builder::TaskBuilder;
use apalis_core::task::task_id::{RandomId, TaskId};
use apalis_core::task::Task;
use apalis_core::worker::context::WorkerContext;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::context::JobContext;
use super::leases::RunLease;
use super::metrics::{self, RunFate};
use super::pace::{RunPace, MAX_AHEAD};
use super::settle::{counted_fate, SettleLayer};
use super::shared::SharedRef;
use crate::backoff::Backoff;
use crate::job::{AttemptOutcome, AttemptRecord, ErrorClass, ErrorInfo, JobKind, JobPayload};
use crate::queue::{JobStore, Leased, SettleAction, Settlement, StoreError, NEWER_RELEASE};

/// Leased jobs on their way to the worker: shared by apalis (which takes them as slots
/// free up) and the fetcher (which hands back what is left when fetching stops).
type Queue = Arc<Mutex<mpsc::UnboundedReceiver<Task<JobPayload>>>>;

fn lock(queue: &Queue) -> std::sync::MutexGuard<'_, mpsc::UnboundedReceiver<Task<JobPayload>>> {
    queue.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Debug, thiserror::Error)]
#[error("drover backend stopped: {0}")]
pub struct BackendError(String);

pub struct DroverBackend<S: JobStore> {
    shared: SharedRef<S>,
    kind: JobKind,
    concurrency: usize,
    prefetch: usize,
    pace: Arc<RunPace>,
    rx: Option<Queue>,
    fetcher: Option<tokio::task::JoinHandle<()>>,
    closing: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    fetch_stop: CancellationToken,
}

impl<S: JobStore> DroverBackend<S> {
    pub(crate) fn new(shared: SharedRef<S>, kind: JobKind, concurrency: usize, prefetch: usize) -> Self {
        Self {
            fetch_stop: shared.stop_fetching.child_token(),
            shared,
            kind,
            concurrency,
            prefetch,
            pace: Arc::new(RunPace::default()),
            rx: None,
            fetcher: None,
            closing: None,
        }
    }

    fn start(&mut self) {
        if self.rx.is_some() {
            return;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let queue: Queue = Arc::new(Mutex::new(rx));
        self.rx = Some(queue.clone());
        let (shared, kind, stop) = (self.shared.clone(), self.kind, self.fetch_stop.clone());
        let room = Room {
            concurrency: self.concurrency,
            prefetch: self.prefetch,
            pace: self.pace.clone(),
        };
        self.fetcher = Some(tokio::spawn(async move {
            fetch_loop(shared.clone(), kind, room, tx, stop).await;
            hand_back_unstarted(&shared, kind, &queue).await;
        }));
    }
}

impl<S: JobStore> Drop for DroverBackend<S> {
    fn drop(&mut self) {
        self.fetch_stop.cancel();
    }
}

/// Longest a fetch waits to gather more free slots while jobs are in flight.
const GATHER: Duration = Duration::from_millis(2);

/// How many jobs one kind's fetcher may hold leased: its slots, plus as many ahead as
/// the pace of its runs allows (see `pace.rs`).
struct Room {
    concurrency: usize,
    prefetch: usize,
    pace: Arc<RunPace>,
}

/// Lease jobs as slots free up and send them to the worker, until `stop` fires.
async fn fetch_loop<S: JobStore>(
    shared: SharedRef<S>,
    kind: JobKind,
    room: Room,
    tx: mpsc::UnboundedSender<Task<JobPayload>>,
    stop: CancellationToken,
) {
    let most_ahead = MAX_AHEAD.max(room.prefetch);
    let slots = Arc::new(Semaphore::new(room.concurrency + most_ahead));
    // Permits held back while the runs are too slow to lease that far ahead.
    let mut held_back: Vec<OwnedSemaphorePermit> = Vec::new();
    let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
    // While every slot is busy, the sweep promotes and reclaims in this fetch's stead. The
    // wait lasts until a fetch is made: slots that came free only to be held back do not
    // end it (before, found by the queue-core audit of 2026-12-06, each did, so with runs
    // ending more often than half a lease a worker working through the jobs it leased
    // ahead neither fetched nor swept).
    let mut waiting = None;
    loop {
        let ahead = room.pace.ahead(room.concurrency, room.prefetch);
        let hold = most_ahead - ahead;
        held_back.truncate(hold);
        while held_back.len() < hold {
            match slots.clone().try_acquire_owned() {
                Ok(p) => held_back.push(p),
                Err(_) => break, // in use now: held back as they come free, next turn
            }
        }
        // Lease in batches of at least a quarter of the capacity when jobs are in flight.
        let batch_floor = ((room.concurrency + ahead) / 4).max(1).min(shared.settings.fetch_batch);
        waiting.get_or_insert_with(|| shared.slot_waits.waiting(kind));
        let mut permits = tokio::select! {
            _ = stop.cancelled() => break,
            p = gather_permits(&slots, batch_floor, shared.settings.fetch_batch) => p,
        };
        if stop.is_cancelled() {
            break;
        }
        // Runs may have turned slow while it waited: the slots that came free are held
        // back first (before 2026-12-06 only the ones found free at the top of a fetch
        // were, so once runs slowed every freed slot went to the next lease and the
        // worker kept leasing jobs it could not start, far ahead of its runs).
        let hold = most_ahead - room.pace.ahead(room.concurrency, room.prefetch);
        while held_back.len() < hold {
            match permits.pop() {
                Some(p) => held_back.push(p),
                None => break,
            }
        }
        if permits.is_empty() {
            continue;
        }
        waiting = None;
        let sent = tokio::time::Instant::now();
        let fetched = match shared
            .store
            .fetch(kind, &shared.settings.worker_id, permits.len(), shared.settings.lease)
            .await
        {
            Ok(f) => f,
            Err(e) => {
                drop(permits);
                if !pause_after_failure(&mut backoff, kind, "fetch", &e, &stop).await {
                    break;
                }
                continue;
            }
        };
        if backoff.succeeded() {
            tracing::info!(kind = %kind, "queue reachable again; fetching resumes");
        }
        let got = fetched.jobs.len();
        shared.contention.leased(kind, got as u64);
        dispatch(&shared, kind, fetched.jobs, sent, permits, &tx).await;
        // Fewer than asked: the lanes are empty (or their accounts at their cap), so ask
        // again only when woken (an enqueue, an ended run freeing an account) or when
        // something falls due, not at once for an empty answer.
        if got == 0 || fetched.drained {
            let wait = fetched.next_due.unwrap_or(shared.settings.idle_wait).min(shared.settings.idle_wait);
            let waited = tokio::select! {
                _ = stop.cancelled() => break,
                r = shared.store.wait_for_work(kind, wait) => r,
            };
            if let Err(e) = waited {
                if !pause_after_failure(&mut backoff, kind, "wait for", &e, &stop).await {
                    break;
                }
            }
        }
    }
}

/// One free slot (waiting for it), then as many more as are free, up to `max`. Under
/// load it waits a moment ([`GATHER`]) for at least `floor`, so one script call leases
/// several jobs: Redis, not the worker, is what saturates first.
async fn gather_permits(slots: &Arc<Semaphore>, floor: usize, max: usize) -> Vec<OwnedSemaphorePermit> {
    let first = slots.clone().acquire_owned().await.expect("slots semaphore is never closed");
    let mut permits = vec![first];
    let gather_until = tokio::time::Instant::now() + GATHER;
    while permits.len() < max {
        match slots.clone().try_acquire_owned() {
            Ok(p) => permits.push(p),
            // Every slot is taken (some by running jobs): a few will free up soon.
            Err(_) if permits.len() < floor => match tokio::time::timeout_at(gather_until, slots.clone().acquire_owned()).await {
                Ok(p) => permits.push(p.expect("slots semaphore is never closed")),
                Err(_) => break,
            },
            Err(_) => break,
        }
    }
    permits
}

/// Log the first failure of an outage, then sleep the backoff; false when `stop` fired.
async fn pause_after_failure(backoff: &mut Backoff, kind: JobKind, what: &str, e: &StoreError, stop: &CancellationToken) -> bool {
    let failure = backoff.failed();
    if failure.first {
        tracing::warn!(kind = %kind, error = %e, "cannot {what} jobs; retrying with backoff");
    }
    tokio::select! {
        _ = stop.cancelled() => false,
        _ = tokio::time::sleep(failure.delay) => true,
    }
}

/// Hand each leased job to the worker with its lease and one of the permits; a record
/// this version cannot read goes to dead at once.
async fn dispatch<S: JobStore>(
    shared: &SharedRef<S>,
    kind: JobKind,
    jobs: Vec<Leased>,
    sent: tokio::time::Instant,
    mut permits: Vec<OwnedSemaphorePermit>,
    tx: &mpsc::UnboundedSender<Task<JobPayload>>,
) {
    for leased in jobs {
        let slot = permits.pop().expect("never more jobs than permits");
        let lease = RunLease::new(&shared.leases, kind, leased, sent, slot);
        let payload = match &lease.leased.payload {
            Ok(p) => p.clone(),
            Err(why) => {
                // A newer release's record waits for its workers; an unreadable one is dead.
                let (s, fate) = if why.starts_with(NEWER_RELEASE) {
                    (for_a_newer_release(&lease, why), RunFate::Snoozed)
                } else {
                    (undecodable(&lease, why, &shared.settings.worker_id), RunFate::Dead)
                };
                let shared = shared.clone();
                tokio::spawn(async move {
                    let answer = shared.settle(kind, &lease, s).await;
                    // counted as any run that ended so: the dead-letter alert reads the dead
                    if let Some(fate) = counted_fate(&answer, fate) {
                        metrics::ended_without_running(kind, fate);
                    }
                    drop(lease);
                });
                continue;
            }
        };
        let leased = &lease.leased;
        let ctx = JobContext::new(
            shared.store.clone(),
            leased,
            &lease.held,
            shared.stop_fetching.clone(),
            (shared.contention.of(kind), shared.outranking.of(kind)),
        );
        let task = TaskBuilder::new(payload)
            .task_id(TaskId::from_string(leased.id.as_str().to_owned()))
            .attempt(leased.attempt.saturating_sub(1) as usize)
            .max_attempts(leased.max_attempts as usize)
            .data(ctx)
            .data(lease)
            .build();
        if let Err(mpsc::error::SendError(task)) = tx.send(task) {
            // The worker is gone: hand the job straight back.
            if let Some(lease) = task.ctx().data().get::<RunLease>().cloned() {
                drop(task);
                shared.settle(kind, &lease, Settlement::release(&lease.leased)).await;
            }
        }
    }
}

/// How long a job written by a newer release waits before it is leased again: a worker of
/// that release usually takes it first (within the queue's snooze cap, 1,000 of these,
/// about 8 hours, after which it is dead).
const NEWER_RELEASE_WAIT: Duration = Duration::from_secs(30);

/// A record a newer release wrote: back to the queue for later, no attempt used and no
/// run recorded (it never started), the reason as its error.
fn for_a_newer_release(lease: &RunLease, why: &str) -> Settlement {
    tracing::warn!(job_id = %lease.leased.id, error = %why, "job written by a newer release; handed back for a worker of that release");
    Settlement {
        id: lease.leased.id.clone(),
        token: lease.leased.token.clone(),
        action: SettleAction::Snooze {
            delay: NEWER_RELEASE_WAIT,
            error: ErrorInfo {
                class: ErrorClass::Interrupted,
                message: why.to_owned(),
            },
            advanced: false,
        },
        attempt: None,
    }
}

/// A record this version cannot decode: dead at once, with the reason, so it never loops.
fn undecodable(lease: &RunLease, why: &str, worker: &str) -> Settlement {
    let leased = &lease.leased;
    tracing::error!(job_id = %leased.id, error = %why, "job record cannot be decoded; moving it to dead");
    let err = ErrorInfo {
        class: ErrorClass::Decode,
        message: why.to_owned(),
    };
    Settlement {
        id: leased.id.clone(),
        token: leased.token.clone(),
        action: SettleAction::Dead(err.clone()),
        attempt: Some(AttemptRecord {
            number: leased.attempt,
            worker: worker.to_owned(),
            started_at: leased.started_at,
            ended_at: lease.now(),
            outcome: AttemptOutcome::Failed,
            error: Some(err),
            trace_id: None,
            late: false,
        }),
    }
}

/// Leased but never started: back to queued at once, no attempt used. Closing the
/// queue first means apalis can no longer take any of them.
async fn hand_back_unstarted<S: JobStore>(shared: &SharedRef<S>, kind: JobKind, queue: &Queue) {
    let unstarted: Vec<RunLease> = {
        let mut rx = lock(queue);
        rx.close();
        claim_unstarted(std::iter::from_fn(|| rx.try_recv().ok()).filter_map(|task| task.ctx().data().get::<RunLease>().cloned()))
    };
    if unstarted.is_empty() {
        return;
    }
    tracing::info!(kind = %kind, jobs = unstarted.len(), "handing back jobs leased but not started");
    futures::future::join_all(unstarted.into_iter().map(|lease| async move {
        shared.settle(kind, &lease, Settlement::release(&lease.leased)).await;
        drop(lease);
    }))
    .await;
}

/// The leases this hand-back takes back, each claimed as a cancel's withdrawal claims
/// one (`Held::withdraw`): one a cancel withdrew first is settled cancelled already, and
/// one claimed here is no longer the cancel's to settle (found by the audits of
/// 2026-12-07, fourth: both were sent, and the second was counted `lost`).
fn claim_unstarted(leases: impl Iterator<Item = RunLease>) -> Vec<RunLease> {
    leases.filter(|lease| lease.held.withdraw()).collect()
}

impl<S: JobStore> Backend for DroverBackend<S> {
    type Task = Task<JobPayload>;
    type Error = BackendError;

    fn poll_ready(&mut self, _cx: &mut Context<'_>, _worker: &WorkerContext) -> Poll<Result<(), Self::Error>> {
        self.start();
        Poll::Ready(Ok(()))
    }

    fn poll_next(&mut self, cx: &mut Context<'_>, _worker: &WorkerContext) -> Poll<Option<Result<Self::Task, Self::Error>>> {
        self.start();
        let queue = self.rx.as_ref().expect("started above");
        match lock(queue).poll_recv(cx) {
            Poll::Ready(Some(task)) => Poll::Ready(Some(Ok(task))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_close(&mut self, cx: &mut Context<'_>, _worker: &WorkerContext) -> Poll<Result<(), Self::Error>> {
        if self.closing.is_none() {
            self.fetch_stop.cancel();
            let fetcher = self.fetcher.take();
            let queue = self.rx.take();
            let shared = self.shared.clone();
            let kind = self.kind;
            self.closing = Some(Box::pin(async move {
                // The fetcher hands back what was never started as it ends.
                if let Some(f) = fetcher {
                    let _ = f.await;
                }
                if let Some(queue) = queue {
                    hand_back_unstarted(&shared, kind, &queue).await;
                }
            }));
        }
        match self.closing.as_mut().expect("set above").as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Ok(())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: JobStore> BackendConfig for DroverBackend<S> {
    type Args = JobPayload;
    type Id = RandomId;
    type Kind = apalis_core::backend::finalize::Ephemeral;
    type Config = ();
    type Layer = SettleLayer<S>;

    fn config(&self) -> &Self::Config {
        &()
    }

    fn middleware(&mut self, _worker: &mut WorkerContext) -> Self::Layer {
        SettleLayer::new(self.shared.clone(), self.kind, self.pace.clone())
    }
}

#[cfg(test)]
mod tests {
    use tokio::time::Instant;

    use chrono::Utc;

    use super::*;
    use crate::job::JobId;
    use crate::runtime::leases::LeaseRegistry;

    fn lease(registry: &LeaseRegistry) -> RunLease {
        let leased = Leased {
            id: JobId::new(JobKind::Cleanup),
            token: "T".into(),
            attempt: 1,
            max_attempts: 3,
            budget: None,
            started_at: Utc::now(),
            timeout: Duration::ZERO,
            traceparent: None,
            payload: Err("not needed".into()),
        };
        let slot = Arc::new(Semaphore::new(1)).try_acquire_owned().unwrap();
        RunLease::new(registry, JobKind::Cleanup, leased, Instant::now(), slot)
    }

    #[test]
    fn a_lease_the_shutdown_hands_back_is_not_withdrawn_by_a_cancel_too() {
        let (registry, mut withdrawn) = LeaseRegistry::withdrawing();
        let (ours, theirs) = (lease(&registry), lease(&registry));
        // A cancel withdrew one first: the hand-back leaves it to the cancel's settle.
        assert!(registry.withdraw(JobKind::Cleanup, &theirs.leased.id, &theirs.held));
        let handed = claim_unstarted([ours.clone(), theirs.clone()].into_iter());
        assert_eq!(handed.len(), 1);
        assert_eq!(handed[0].leased.id, ours.leased.id);
        // A cancel that comes after the hand-back took its lease withdraws nothing.
        assert!(!registry.withdraw(JobKind::Cleanup, &ours.leased.id, &ours.held));
        assert_eq!(withdrawn.try_recv().map(|w| w.1).ok(), Some(theirs.leased.id.clone()));
        assert!(withdrawn.try_recv().is_err(), "one settle a lease");
    }
}
