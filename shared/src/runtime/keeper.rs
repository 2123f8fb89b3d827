//! The lease keeper: renews every lease the process holds, delivers cancellations, and
//! fences the process when it cannot renew.
//!
//! The keeper runs on its own OS thread with its own runtime and Redis connection, so
//! a handler that blocks the job runtime's threads cannot starve the renewals: a job
//! never loses its lease while its worker lives and reaches Redis. Each call is bounded
//! well inside the lease, every kind is renewed at once, and the worker heartbeat has
//! its own loop. When a lease has gone `lease − heartbeat` without a renewal the
//! process may no longer hold it, so its run is told it lost the lease and stops before
//! Redis can give the job to another worker (docs/architecture.md, "Worker runtime").
use std::collections::HashMap;
use std::time::Duration;

use futures::future::join_all;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::leases::{Held, LeaseRegistry};
use crate::job::{JobId, JobKind};
use crate::queue::JobStore;

/// The keeper's clock, derived from the lease and the heartbeat.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KeeperTiming {
    pub lease: Duration,
    pub heartbeat: Duration,
}

impl KeeperTiming {
    /// Longest one keeper call may take: a late answer is worth less than a retry on
    /// the next beat, and two tries still fit in what is left of the lease.
    pub fn call_timeout(&self) -> Duration {
        (self.lease.saturating_sub(self.heartbeat) / 2).max(Duration::from_millis(10))
    }

    /// Longest one queue (one shard) may take to answer within a call: just inside the
    /// call's own bound (which then never cuts a round short), so a shard that hangs
    /// rather than refuses is reported unreached on its own while the others' answers
    /// are counted, and a single queue waits almost as long as the whole call did.
    pub fn queue_timeout(&self) -> Duration {
        self.call_timeout() * 19 / 20
    }

    /// How long a lease may go unrenewed before its run is stopped. A healthy lease is
    /// at most one beat plus one call old, i.e. `(lease + heartbeat) / 2`; this leaves
    /// one beat for the run to stop before Redis's expiry.
    pub fn fence_after(&self) -> Duration {
        self.lease.saturating_sub(self.heartbeat)
    }

    /// How often the fence looks at the leases' ages.
    fn fence_check(&self) -> Duration {
        (self.heartbeat / 4).clamp(Duration::from_millis(10), Duration::from_millis(100))
    }
}

/// Renews every held lease each heartbeat until `stop` fires. `connect` builds the
/// keeper's own store on the keeper's own runtime.
pub(crate) fn spawn_keeper<S, C, Fut>(
    registry: LeaseRegistry,
    kinds: Vec<JobKind>,
    worker: (String, String),
    connect: C,
    timing: KeeperTiming,
    stop: CancellationToken,
) -> std::thread::JoinHandle<()>
where
    S: JobStore,
    C: Fn() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<S, crate::queue::StoreError>> + 'static,
{
    std::thread::Builder::new()
        .name("drover-leases".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("lease keeper runtime");
            // Local tasks: a store dialled afresh in the background (`Redial`).
            let local = tokio::task::LocalSet::new();
            local.block_on(&rt, async move {
                tokio::spawn(fence_loop(registry.clone(), timing, stop.clone()));
                renew_loop(registry, kinds, worker, connect, timing, stop).await;
            });
        })
        .expect("spawn lease keeper thread")
}

async fn renew_loop<S, C, Fut>(
    registry: LeaseRegistry,
    kinds: Vec<JobKind>,
    worker: (String, String),
    connect: C,
    timing: KeeperTiming,
    stop: CancellationToken,
) where
    S: JobStore,
    C: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<S, crate::queue::StoreError>> + 'static,
{
    let call_timeout = timing.call_timeout();
    let mut store: Option<S> = None;
    let mut heartbeat: Option<tokio::task::JoinHandle<()>> = None;
    let mut failing = false;
    let mut redial = Redial::default();
    let mut tick = tokio::time::interval(timing.heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        if let Some(s) = redial.take_dialled().await {
            tracing::info!("lease keeper dialled the queue afresh: a shard had stopped answering");
            store = Some(s);
            if let Some(h) = heartbeat.take() {
                h.abort();
            }
        }
        if let Some(s) = store.as_ref().filter(|_| heartbeat.is_none()) {
            heartbeat = Some(tokio::spawn(heartbeat_loop(s.clone(), worker.clone(), timing, stop.clone())));
        }
        if store.is_none() {
            // A dial has a bound of its own, not a call's: behind Sentinel it looks the
            // primary up, which takes a second or more while the first sentinel listed
            // hangs, and a keeper cut off at its call bound never connected (before,
            // found by the chaos audit of 2026-12-06, every run was then fenced 1.5 s
            // after it started). With no store there is nothing to renew meanwhile.
            let dialled = tokio::select! {
                _ = stop.cancelled() => break,
                dialled = tokio::time::timeout(REDIAL_WITHIN, connect()) => dialled,
            };
            match dialled {
                Ok(Ok(s)) => {
                    if let Some(h) = heartbeat.take() {
                        h.abort();
                    }
                    heartbeat = Some(tokio::spawn(heartbeat_loop(s.clone(), worker.clone(), timing, stop.clone())));
                    store = Some(s);
                }
                Ok(Err(e)) => {
                    if !failing {
                        tracing::warn!(error = %e, "lease keeper cannot reach the queue; retrying");
                        failing = true;
                    }
                    continue;
                }
                Err(_) => {
                    if !failing {
                        tracing::warn!(
                            timeout_ms = REDIAL_WITHIN.as_millis() as u64,
                            "lease keeper cannot reach the queue (no answer); retrying"
                        );
                        failing = true;
                    }
                    continue;
                }
            }
        }
        let Some(s) = store.as_ref() else { continue };
        let held = registry.snapshot();
        // The kinds with no lease here get a beat: without it, a survivor that only
        // fetches now and then would see the quiet after a dead holder's last renewal
        // as an outage (and give the dead lease a grace), and would sleep out its idle
        // wait before it fetched the job again.
        let idle: Vec<JobKind> = kinds.iter().copied().filter(|k| !held.iter().any(|(h, _)| h == k)).collect();
        let beats = join_all(idle.into_iter().map(|kind| async move {
            match tokio::time::timeout(call_timeout, s.beat(kind)).await {
                Ok(Ok(())) => true,
                Ok(Err(e)) => {
                    tracing::debug!(kind = %kind, error = %e, "beat on an idle queue not written");
                    false
                }
                Err(_) => {
                    tracing::debug!(kind = %kind, "beat on an idle queue not answered in time");
                    false
                }
            }
        }));
        let rounds = held.into_iter().map(|(kind, held)| renew_kind(s, &registry, kind, held, timing));
        let (renewed, beaten) = tokio::join!(join_all(rounds), beats);
        let mut timed_out = false;
        let mut silent = false;
        // Whether any queue answered this round: then the connection works, and a kind
        // that timed out has its leases on a shard that does not answer.
        let mut answered = beaten.into_iter().any(|b| b);
        let mut first_error = None;
        for r in renewed {
            match r {
                Ok(()) => answered = true,
                Err(RenewError::TimedOut(kind)) => {
                    timed_out = true;
                    first_error.get_or_insert_with(|| format!("{kind}: no answer within {} ms", call_timeout.as_millis()));
                }
                Err(RenewError::Store(kind, e)) => {
                    first_error.get_or_insert_with(|| format!("{kind}: {e}"));
                }
                Err(RenewError::Unreached {
                    kind,
                    leases,
                    silent: quiet,
                }) => {
                    silent |= quiet;
                    answered = true;
                    first_error.get_or_insert_with(|| format!("{kind}: {leases} leases on a partition that cannot be reached"));
                }
            }
        }
        // A kind whose every lease is on a silent shard times out whole while the others
        // answer: that shard is silent, and the store in use goes on renewing the rest
        // (before 2026-12-06 it was dropped, and dialling afresh waits on every primary,
        // so while one hung no lease of the process was renewed).
        if timed_out && answered {
            silent = true;
            timed_out = false;
        }
        // One shard silent while the others answer: its socket may have gone half-open,
        // which redis-rs does not notice (the call was dropped at its bound, not failed).
        // A fresh store is dialled beside the one in use, which goes on renewing the
        // healthy shards' leases until the fresh one is ready.
        redial.after_round(silent, &connect);
        match first_error {
            None if failing => {
                tracing::info!("lease keeper reaches the queue again");
                failing = false;
            }
            None => {}
            Some(e) if !failing => {
                tracing::warn!(error = %e, "could not renew leases; retrying every beat");
                failing = true;
            }
            Some(_) => {}
        }
        // No queue answered: the connection itself may sit on a half-open socket: dial
        // afresh.
        if timed_out {
            store = None;
        }
    }
    if let Some(h) = heartbeat {
        h.abort();
    }
}

enum RenewError {
    TimedOut(JobKind),
    Store(JobKind, crate::queue::StoreError),
    /// The kind's other leases were renewed; these many, on a queue that could not be
    /// reached (`silent`: that did not answer in time), were not.
    Unreached {
        kind: JobKind,
        leases: usize,
        silent: bool,
    },
}

/// A fresh store dialled in the background while one shard stays silent: after
/// [`SILENT_ROUNDS`] rounds in a row, at most once every [`REDIAL_EVERY`], each dial
/// bounded by [`REDIAL_WITHIN`]; the keeper takes it once it is ready.
struct Redial<S: 'static> {
    silent_rounds: u32,
    last: Option<Instant>,
    dialling: Option<tokio::task::JoinHandle<Option<S>>>,
}

impl<S: 'static> Default for Redial<S> {
    fn default() -> Self {
        Self {
            silent_rounds: 0,
            last: None,
            dialling: None,
        }
    }
}

const SILENT_ROUNDS: u32 = 2;
const REDIAL_EVERY: Duration = Duration::from_secs(5);
const REDIAL_WITHIN: Duration = Duration::from_secs(5);

impl<S: 'static> Redial<S> {
    fn after_round<C, Fut>(&mut self, silent: bool, connect: &C)
    where
        C: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<S, crate::queue::StoreError>> + 'static,
    {
        self.silent_rounds = if silent { self.silent_rounds + 1 } else { 0 };
        let due = self.last.is_none_or(|at| at.elapsed() >= REDIAL_EVERY);
        if self.silent_rounds >= SILENT_ROUNDS && self.dialling.is_none() && due {
            self.last = Some(Instant::now());
            let dial = connect();
            self.dialling = Some(tokio::task::spawn_local(async move {
                match tokio::time::timeout(REDIAL_WITHIN, dial).await {
                    Ok(Ok(s)) => Some(s),
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, "lease keeper could not dial the queue afresh; keeps the store it has");
                        None
                    }
                    Err(_) => {
                        tracing::debug!("lease keeper's fresh dial did not answer in time; keeps the store it has");
                        None
                    }
                }
            }));
        }
    }

    /// The fresh store, once its dial has ended well.
    async fn take_dialled(&mut self) -> Option<S> {
        if !self.dialling.as_ref().is_some_and(|h| h.is_finished()) {
            return None;
        }
        self.dialling.take()?.await.ok().flatten()
    }
}

/// One kind's renewal: note which leases are still ours, lost, or cancelled.
async fn renew_kind<S: JobStore>(
    s: &S,
    registry: &LeaseRegistry,
    kind: JobKind,
    held: Vec<(JobId, Held)>,
    timing: KeeperTiming,
) -> Result<(), RenewError> {
    let leases: Vec<(JobId, String)> = held.iter().map(|(id, h)| (id.clone(), h.token.clone())).collect();
    let sent = Instant::now();
    // The start report and the renewal go out together under one deadline, so a round
    // takes one call timeout at most, never two (a connection gone half-open is dialled
    // afresh that much sooner). A start report that failed is sent again next beat; it
    // never holds back renewals. Each queue answers within its own bound, inside the
    // round's: a shard that hangs leaves only its own leases unrenewed.
    let deadline = sent + timing.call_timeout();
    let within = timing.queue_timeout();
    let (starts, extended) = tokio::join!(
        report_starts(s, kind, &held, deadline, within),
        tokio::time::timeout_at(deadline, s.extend_leases(kind, &leases, timing.lease, within)),
    );
    let report = match extended {
        Ok(Ok(r)) => r,
        // No queue answered in time: the connection may have gone silent.
        Ok(Err(e)) if e.is_timeout() => return Err(RenewError::TimedOut(kind)),
        Ok(Err(e)) => return Err(RenewError::Store(kind, e)),
        Err(_) => return Err(RenewError::TimedOut(kind)),
    };
    let by_id: HashMap<&JobId, &Held> = held.iter().map(|(id, h)| (id, h)).collect();
    for id in &report.lost {
        if let Some(h) = by_id.get(id) {
            // A run that settled, or began to, while this renewal was on its way gave
            // its lease back itself: nothing was lost (a settle that finds the lease
            // gone says so itself).
            if !h.is_settling() && registry.holds(kind, id, &h.token) && h.mark_lost() {
                tracing::warn!(job_id = %id, "lease lost; stopping the local run");
            }
        }
    }
    for id in &report.cancel_requested {
        if let Some(h) = by_id.get(id) {
            if !h.cancel.is_cancelled() {
                tracing::info!(job_id = %id, "cancellation requested");
                h.cancel.cancel();
                // One still waiting for a slot ends now, not when a slot frees.
                registry.withdraw(kind, id, h);
            }
        }
    }
    for (id, h) in &held {
        if !report.lost.contains(id) && !report.unreached.contains(id) {
            h.renewed(sent);
        }
    }
    starts?;
    if !report.unreached.is_empty() {
        return Err(RenewError::Unreached {
            kind,
            leases: report.unreached.len(),
            silent: report.silent,
        });
    }
    Ok(())
}

/// Tells Redis which runs started since the last beat, so a crash from now on uses
/// their attempts while prefetched jobs that never started go back for free. A run whose
/// queue did not answer is reported again next beat. Only the renewal's silence has the
/// keeper dial afresh: the start report shares its connection.
async fn report_starts<S: JobStore>(
    s: &S,
    kind: JobKind,
    held: &[(JobId, Held)],
    deadline: Instant,
    within: Duration,
) -> Result<(), RenewError> {
    let started: Vec<&(JobId, Held)> = held.iter().filter(|(_, h)| h.start_unreported()).collect();
    if started.is_empty() {
        return Ok(());
    }
    let runs: Vec<(JobId, String)> = started.iter().map(|(id, h)| (id.clone(), h.token.clone())).collect();
    let unreached = match tokio::time::timeout_at(deadline, s.mark_started(kind, &runs, within)).await {
        Ok(Ok(unreached)) => unreached,
        Ok(Err(e)) => return Err(RenewError::Store(kind, e)),
        Err(_) => return Err(RenewError::TimedOut(kind)),
    };
    for (id, h) in started {
        if !unreached.contains(id) {
            h.start_reported();
        }
    }
    Ok(())
}

/// Announces the worker as `<ns>:workers:<id>`, gone three beats after it dies. Kept
/// off the renewal path so a slow write here never delays a renewal.
async fn heartbeat_loop<S: JobStore>(store: S, worker: (String, String), timing: KeeperTiming, stop: CancellationToken) {
    let mut tick = tokio::time::interval(timing.heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let beat = store.worker_heartbeat(&worker.0, &worker.1, timing.heartbeat * 3);
        if let Ok(Err(e)) = tokio::time::timeout(timing.call_timeout(), beat).await {
            tracing::debug!(error = %e, "worker heartbeat not written");
        }
    }
}

async fn fence_loop(registry: LeaseRegistry, timing: KeeperTiming, stop: CancellationToken) {
    let mut tick = tokio::time::interval(timing.fence_check());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let fenced = fence(&registry, Instant::now(), timing.fence_after());
        if fenced > 0 {
            tracing::warn!(
                runs = fenced,
                unrenewed_ms = timing.fence_after().as_millis() as u64,
                "leases could not be renewed in time: stopping their runs before Redis gives the jobs to another worker"
            );
        }
    }
}

/// Mark every lease unrenewed for `after` as lost (its run is told to stop); returns
/// how many were newly fenced.
fn fence(registry: &LeaseRegistry, now: Instant, after: Duration) -> usize {
    let mut fenced = 0;
    for (_, held) in registry.snapshot() {
        for (_, h) in held {
            // A run whose outcome is on its way has nothing left to stop.
            if !h.is_lost() && !h.is_settling() && h.unrenewed_for(now) >= after && h.mark_lost() {
                fenced += 1;
            }
        }
    }
    fenced
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::run_end::lost_grace;

    fn timing() -> KeeperTiming {
        KeeperTiming {
            lease: Duration::from_secs(3),
            heartbeat: Duration::from_millis(500),
        }
    }

    #[test]
    fn keeper_calls_time_out_well_inside_the_lease_and_a_healthy_lease_is_never_fenced() {
        let t = timing();
        assert_eq!(t.call_timeout(), Duration::from_millis(1250));
        // The oldest a renewed lease gets: one beat, then one slow call that succeeds.
        assert!(t.heartbeat + t.call_timeout() < t.fence_after());
        assert!(t.fence_after() < t.lease);
        // A shard that hangs answers its timeout before the round's own deadline.
        assert_eq!(t.queue_timeout(), Duration::from_micros(1_187_500));
    }

    /// A fenced run is dropped `lost_grace` after it is told (`run_end::run_to_end`), so
    /// the latest it ends is one fence check and that grace after `fence_after`: inside
    /// the lease Redis last set, for the defaults and for the tightest timing the
    /// worker's config allows (a 50 ms beat, a lease of three beats).
    #[test]
    fn a_fenced_run_ends_before_the_lease_redis_last_set_runs_out() {
        for (lease, heartbeat) in [(1800, 300), (3000, 500), (150, 50), (60_000, 10_000)] {
            let t = KeeperTiming {
                lease: Duration::from_millis(lease),
                heartbeat: Duration::from_millis(heartbeat),
            };
            assert!(t.fence_after() + t.fence_check() + lost_grace(t.heartbeat) < t.lease, "{t:?}");
            assert!(
                t.heartbeat + t.call_timeout() <= t.fence_after(),
                "{t:?}: a renewal in time is never fenced"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_unrenewed_for_lease_minus_a_beat_is_fenced_once_and_its_run_told() {
        let reg = LeaseRegistry::default();
        let t = timing();
        let (held, _guard) = reg.insert(JobKind::Sync, JobId::new(JobKind::Sync), "T".into(), Instant::now());
        tokio::time::advance(t.fence_after() - Duration::from_millis(1)).await;
        assert_eq!(fence(&reg, Instant::now(), t.fence_after()), 0);
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(fence(&reg, Instant::now(), t.fence_after()), 1);
        assert!(held.is_lost() && held.cancel.is_cancelled());
        assert_eq!(fence(&reg, Instant::now(), t.fence_after()), 0, "fenced once");
    }

    #[tokio::test(start_paused = true)]
    async fn a_run_whose_outcome_is_on_its_way_is_not_fenced() {
        let reg = LeaseRegistry::default();
        let t = timing();
        let (held, _guard) = reg.insert(JobKind::Sync, JobId::new(JobKind::Sync), "T".into(), Instant::now());
        held.settling();
        tokio::time::advance(t.lease).await;
        assert_eq!(fence(&reg, Instant::now(), t.fence_after()), 0);
        assert!(!held.is_lost() && !held.cancel.is_cancelled());
    }

    #[tokio::test(start_paused = true)]
    async fn a_renewal_restarts_the_fence_clock_from_when_it_was_sent() {
        let reg = LeaseRegistry::default();
        let t = timing();
        let (held, _guard) = reg.insert(JobKind::Sync, JobId::new(JobKind::Sync), "T".into(), Instant::now());
        tokio::time::advance(Duration::from_secs(2)).await;
        held.renewed(Instant::now());
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(fence(&reg, Instant::now(), t.fence_after()), 0);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(fence(&reg, Instant::now(), t.fence_after()), 1);
    }
}
