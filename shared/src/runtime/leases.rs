//! The leases a worker process holds: one entry per (job, token), owned by the run.
//!
//! A run's [`RunLease`] carries a guard whose drop removes exactly that run's entry, so
//! nothing else (a settle, a later lease of the same job) can remove it, and a run
//! dropped without settling stops being renewed. When the same job is leased to this
//! process again (its old lease ran out and the fetch reclaimed it), the older entry is
//! marked lost and its run told to stop: only one run per job is ever renewed.
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::job::{JobId, JobKind};
use crate::queue::Leased;

/// One held lease as the keeper and the run see it.
#[derive(Clone)]
pub(crate) struct Held {
    pub token: String,
    /// Fires when the run must stop: cancelled by a user, or its lease is gone.
    pub cancel: CancellationToken,
    /// Fires only when the lease is gone (`cancel` is its child): the run then gets
    /// only `run_end::lost_grace` to wind down, since Redis may give the job to another
    /// run as soon as the lease it last set runs out.
    pub gone: CancellationToken,
    state: Arc<HeldState>,
}

/// What the run and the keeper both change, in one allocation.
struct HeldState {
    /// Set when the lease is gone (reported lost, leased again, or fenced).
    lost: AtomicBool,
    /// Set when the run's outcome is on its way to Redis: the settle gives the lease
    /// back, so a renewal that then finds it gone has lost nothing.
    settling: AtomicBool,
    /// Whether the run has started, and whether Redis has been told (see [`Start`]).
    start: AtomicU8,
    /// When the call that last set the lease's expiry was sent (the fetch, then each
    /// renewal): Redis's expiry is at most one lease after this.
    renewed: Mutex<Instant>,
    /// The fetcher's slot the lease takes, until its run has ended or it was withdrawn.
    slot: Mutex<Option<OwnedSemaphorePermit>>,
}

impl Held {
    fn new(token: String, leased_at: Instant) -> Self {
        let gone = CancellationToken::new();
        Self {
            token,
            cancel: gone.child_token(),
            gone,
            state: Arc::new(HeldState {
                lost: AtomicBool::new(false),
                settling: AtomicBool::new(false),
                start: AtomicU8::new(Start::NotYet as u8),
                renewed: Mutex::new(leased_at),
                slot: Mutex::new(None),
            }),
        }
    }

    /// A renewal sent at `sent` succeeded.
    pub fn renewed(&self, sent: Instant) {
        let mut at = self.state.renewed.lock().unwrap_or_else(|p| p.into_inner());
        *at = (*at).max(sent);
    }

    /// How long since the lease was last known to be renewed.
    pub fn unrenewed_for(&self, now: Instant) -> std::time::Duration {
        now.saturating_duration_since(*self.state.renewed.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Mark the lease gone and tell the run to stop; true the first time.
    pub fn mark_lost(&self) -> bool {
        let first = !self.state.lost.swap(true, Ordering::SeqCst);
        self.gone.cancel();
        first
    }

    pub fn is_lost(&self) -> bool {
        self.state.lost.load(Ordering::SeqCst)
    }

    /// The run's outcome is being sent, which gives the lease back: from now on a
    /// renewal that finds the lease gone, or one that is late, stops nothing. The lease
    /// is still renewed until the settle is answered (an outage may hold it up).
    pub fn settling(&self) {
        self.state.settling.store(true, Ordering::SeqCst);
    }

    /// Whether the run's outcome has been sent to Redis (its settle gives the lease back).
    pub fn is_settling(&self) -> bool {
        self.state.settling.load(Ordering::SeqCst)
    }

    /// The handler is about to run: from now on a crash of this process uses the attempt.
    /// False when the lease was withdrawn first (its run must not start).
    pub fn started(&self) -> bool {
        self.state
            .start
            .compare_exchange(Start::NotYet as u8, Start::Started as u8, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }

    /// Takes back a lease whose run has not started (its job was cancelled while it
    /// waited for a slot, or a shutdown hands it back): true when this call did, and its
    /// run will never start nor will another taker have it.
    pub fn withdraw(&self) -> bool {
        self.state
            .start
            .compare_exchange(Start::NotYet as u8, Start::Withdrawn as u8, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }

    /// Whether the lease was taken back before its run started.
    pub fn is_withdrawn(&self) -> bool {
        self.state.start.load(Ordering::SeqCst) == Start::Withdrawn as u8
    }

    /// Let the fetcher lease another job in this one's place.
    pub fn free_slot(&self) {
        drop(self.state.slot.lock().unwrap_or_else(|p| p.into_inner()).take());
    }

    /// Leased and handed to the worker, not yet started (waiting for a slot).
    pub fn not_started(&self) -> bool {
        self.state.start.load(Ordering::SeqCst) == Start::NotYet as u8
    }

    /// Started, and Redis not yet told so.
    pub fn start_unreported(&self) -> bool {
        self.state.start.load(Ordering::SeqCst) == Start::Started as u8
    }

    /// Redis now knows the run started.
    pub fn start_reported(&self) {
        self.state.start.store(Start::Reported as u8, Ordering::SeqCst);
    }
}

/// A run's start as Redis learns it. A leased job whose start Redis never learned is
/// handed back without using an attempt when its worker dies (fetch.lua); the keeper
/// reports starts with its next renewal, so only a run that ended before that is never
/// reported — and it settled, so nothing is left to hand back.
#[repr(u8)]
enum Start {
    NotYet = 0,
    Started = 1,
    Reported = 2,
    /// Taken back before it started: cancelled and settled so without a slot
    /// (`withdraw.rs`), or handed back by a shutdown (`backend.rs`, `claim_unstarted`).
    Withdrawn = 3,
}

/// A lease withdrawn by the keeper, for the runtime to settle: its kind, job and lease.
pub(crate) type Withdrawal = (JobKind, JobId, Held);

/// Per kind (by `JobKind::index`), each held lease by job. Job ids are the queue's own,
/// never a client's, so the map hashes them with a fast hasher.
type Entries = [HashMap<JobId, Held, foldhash::fast::RandomState>; 3];

#[derive(Default, Clone)]
pub(crate) struct LeaseRegistry {
    inner: Arc<Mutex<Entries>>,
    /// Where the leases the keeper withdraws go (none: no lease is withdrawn).
    withdrawals: Option<mpsc::UnboundedSender<Withdrawal>>,
}

impl LeaseRegistry {
    /// A registry whose withdrawn leases are sent to the returned receiver.
    pub fn withdrawing() -> (Self, mpsc::UnboundedReceiver<Withdrawal>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let registry = Self {
            withdrawals: Some(tx),
            ..Self::default()
        };
        (registry, rx)
    }

    /// A cancel reached `id`'s lease: one whose run has not started is withdrawn and
    /// handed to the runtime to settle at once, without waiting for a slot; true then.
    pub fn withdraw(&self, kind: JobKind, id: &JobId, held: &Held) -> bool {
        let Some(tx) = &self.withdrawals else { return false };
        held.withdraw() && tx.send((kind, id.clone(), held.clone())).is_ok()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        // A panic while holding this lock leaves plain data behind: keep going.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Register a fresh lease of `id` under `token`, taken by a fetch sent at
    /// `leased_at`. An entry for the same job under another token is an older run whose
    /// lease Redis has already given away.
    pub fn insert(&self, kind: JobKind, id: JobId, token: String, leased_at: Instant) -> (Held, LeaseGuard) {
        let held = Held::new(token.clone(), leased_at);
        let older = self.lock()[kind.index()].insert(id.clone(), held.clone());
        if let Some(older) = older.filter(|o| o.token != token) {
            if older.mark_lost() {
                tracing::warn!(job_id = %id, "job leased again by this process: its earlier run lost the lease and is stopped");
            }
        }
        let guard = LeaseGuard {
            registry: self.clone(),
            kind,
            id,
            token,
        };
        (held, guard)
    }

    /// Remove `id`'s entry only if it is still the lease under `token`.
    pub fn remove(&self, kind: JobKind, id: &JobId, token: &str) {
        let mut entries = self.lock();
        let m = &mut entries[kind.index()];
        if m.get(id).is_some_and(|h| h.token == token) {
            m.remove(id);
        }
    }

    /// Whether `id`'s run under `token` still holds its entry (it has not ended).
    pub fn holds(&self, kind: JobKind, id: &JobId, token: &str) -> bool {
        self.lock()[kind.index()].get(id).is_some_and(|h| h.token == token)
    }

    /// How many jobs of `kind` this process leased that wait for a slot to start.
    pub fn not_started(&self, kind: JobKind) -> usize {
        self.lock()[kind.index()].values().filter(|h| h.not_started()).count()
    }

    /// Every held lease, by kind.
    pub fn snapshot(&self) -> Vec<(JobKind, Vec<(JobId, Held)>)> {
        let entries = self.lock();
        JobKind::ALL
            .into_iter()
            .zip(entries.iter())
            .filter(|(_, m)| !m.is_empty())
            .map(|(k, m)| (k, m.iter().map(|(id, h)| (id.clone(), h.clone())).collect()))
            .collect()
    }

    #[cfg(test)]
    fn token_of(&self, kind: JobKind, id: &JobId) -> Option<String> {
        self.lock()[kind.index()].get(id).map(|h| h.token.clone())
    }
}

/// Removes exactly one (job, token) entry when dropped.
pub(crate) struct LeaseGuard {
    registry: LeaseRegistry,
    kind: JobKind,
    id: JobId,
    token: String,
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        self.registry.remove(self.kind, &self.id, &self.token);
    }
}

/// Everything a leased run owns: the lease record, its registry entry and its slot.
/// The slot goes back as soon as the handler has ended ([`RunLease::free_slot`]): a run
/// whose outcome is on its way to Redis no longer needs it, and holding it would put a
/// settle round trip between every two leases. Otherwise the entry and the slot are
/// released when the last clone is dropped, whether the run
/// settled, was handed back, or was dropped midway.
#[derive(Clone)]
pub(crate) struct RunLease {
    pub leased: Arc<Leased>,
    pub held: Held,
    /// When the fetch that took the lease was sent (this process's monotonic clock).
    leased_at: Instant,
    _guard: Arc<LeaseGuard>,
}

impl RunLease {
    pub fn new(registry: &LeaseRegistry, kind: JobKind, leased: Leased, leased_at: Instant, slot: OwnedSemaphorePermit) -> Self {
        let (held, guard) = registry.insert(kind, leased.id.clone(), leased.token.clone(), leased_at);
        *held.state.slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(slot);
        Self {
            leased: Arc::new(leased),
            held,
            leased_at,
            _guard: Arc::new(guard),
        }
    }

    /// Now, on Redis's clock: the lease's Redis time plus how long this process has held
    /// it by its monotonic clock. An attempt's start is Redis time, so its end is too —
    /// a worker whose wall clock is off never records a run that ends before it started.
    pub fn now(&self) -> DateTime<Utc> {
        self.leased.started_at + chrono::Duration::from_std(self.leased_at.elapsed()).unwrap_or_default()
    }

    /// The handler has ended: let the fetcher lease another job in its place.
    pub fn free_slot(&self) {
        self.held.free_slot();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(kind: JobKind) -> JobId {
        JobId::new(kind)
    }

    #[test]
    fn a_second_lease_of_the_same_job_stops_the_first_run_and_replaces_its_entry() {
        let reg = LeaseRegistry::default();
        let job = id(JobKind::Sync);
        let (first, _g1) = reg.insert(JobKind::Sync, job.clone(), "T1".into(), Instant::now());
        let (second, _g2) = reg.insert(JobKind::Sync, job.clone(), "T2".into(), Instant::now());
        assert!(first.is_lost() && first.cancel.is_cancelled(), "the first run is told");
        assert!(!second.is_lost() && !second.cancel.is_cancelled());
        assert_eq!(reg.token_of(JobKind::Sync, &job).as_deref(), Some("T2"));
    }

    #[test]
    fn a_lease_is_held_until_its_guard_goes_and_only_under_its_token() {
        let reg = LeaseRegistry::default();
        let job = id(JobKind::Cleanup);
        let (_, g1) = reg.insert(JobKind::Cleanup, job.clone(), "T1".into(), Instant::now());
        assert!(reg.holds(JobKind::Cleanup, &job, "T1"));
        assert!(!reg.holds(JobKind::Cleanup, &job, "T0"), "another run's token");
        assert!(!reg.holds(JobKind::Sync, &job, "T1"), "another kind");
        drop(g1);
        assert!(!reg.holds(JobKind::Cleanup, &job, "T1"), "the run ended");
    }

    #[test]
    fn a_lease_waits_for_a_slot_until_its_run_starts() {
        let reg = LeaseRegistry::default();
        assert_eq!(reg.not_started(JobKind::Cleanup), 0);
        let (held, _g1) = reg.insert(JobKind::Cleanup, id(JobKind::Cleanup), "T1".into(), Instant::now());
        let (_, _g2) = reg.insert(JobKind::Cleanup, id(JobKind::Cleanup), "T2".into(), Instant::now());
        assert_eq!(reg.not_started(JobKind::Cleanup), 2);
        assert_eq!(reg.not_started(JobKind::Sync), 0, "kinds are apart");
        held.started();
        assert_eq!(reg.not_started(JobKind::Cleanup), 1);
    }

    #[test]
    fn the_first_runs_guard_does_not_remove_the_second_lease() {
        let reg = LeaseRegistry::default();
        let job = id(JobKind::Cleanup);
        let (_, g1) = reg.insert(JobKind::Cleanup, job.clone(), "T1".into(), Instant::now());
        let (_, g2) = reg.insert(JobKind::Cleanup, job.clone(), "T2".into(), Instant::now());
        drop(g1);
        assert_eq!(reg.token_of(JobKind::Cleanup, &job).as_deref(), Some("T2"));
        drop(g2);
        assert_eq!(reg.token_of(JobKind::Cleanup, &job), None);
    }

    #[test]
    fn a_settling_run_stops_nothing_and_keeps_its_entry() {
        let reg = LeaseRegistry::default();
        let job = id(JobKind::Sync);
        let (held, _guard) = reg.insert(JobKind::Sync, job.clone(), "T".into(), Instant::now());
        assert!(!held.is_settling());
        held.settling();
        assert!(held.is_settling());
        assert!(!held.is_lost() && !held.cancel.is_cancelled(), "settling stops nothing");
        assert!(reg.holds(JobKind::Sync, &job, "T"), "still renewed until the settle is answered");
    }

    #[test]
    fn a_run_dropped_without_settling_is_no_longer_renewed() {
        let reg = LeaseRegistry::default();
        let (_, guard) = reg.insert(JobKind::Backfill, id(JobKind::Backfill), "T".into(), Instant::now());
        assert_eq!(reg.snapshot().len(), 1);
        drop(guard);
        assert!(reg.snapshot().is_empty());
    }
}
