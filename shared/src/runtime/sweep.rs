//! Due jobs promoted and expired leases reclaimed while every slot of a kind is busy. A
//! fetch does both, but a fetcher fetches only when it has a free slot: with long runs
//! in every slot, a delayed job would stay `scheduled` past its time and a dead worker's
//! job `running`, until some run ended. The sweep makes the fetch without leasing, and
//! notes whether jobs wait for a slot meanwhile (`contention.rs`).
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::shared::SharedRef;
use crate::job::JobKind;
use crate::queue::JobStore;

/// Per kind: since when its fetcher has been waiting for a free slot (ms since `epoch`,
/// plus one; 0 while it is not waiting).
#[derive(Debug)]
pub(crate) struct SlotWaits {
    epoch: Instant,
    since: [AtomicU64; 3],
}

impl Default for SlotWaits {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            since: Default::default(),
        }
    }
}

impl SlotWaits {
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    /// `kind`'s fetcher waits for a free slot from now until the returned guard drops
    /// (it has a slot again, or stopped).
    pub fn waiting(&self, kind: JobKind) -> SlotWait<'_> {
        self.since[kind.index()].store(self.now(), Ordering::Relaxed);
        SlotWait { waits: self, kind }
    }

    /// How long `kind`'s fetcher has waited for a slot without a fetch being made for
    /// it (None: it is not waiting). Each sweep restarts the count.
    fn waited(&self, kind: JobKind) -> Option<Duration> {
        let since = self.since[kind.index()].load(Ordering::Relaxed);
        (since > 0).then(|| Duration::from_millis(self.now().saturating_sub(since)))
    }

    /// A sweep was made for `kind`: count again from now, if it still waits.
    fn swept(&self, kind: JobKind) {
        let now = self.now();
        let _ = self.since[kind.index()].fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| (s > 0).then_some(now));
    }
}

/// One fetcher's wait for a slot, counted in [`SlotWaits`] while it lasts.
pub(crate) struct SlotWait<'a> {
    waits: &'a SlotWaits,
    kind: JobKind,
}

impl Drop for SlotWait<'_> {
    fn drop(&mut self) {
        self.waits.since[self.kind.index()].store(0, Ordering::Relaxed);
    }
}

/// Most calls one sweep of a kind makes while jobs are still due (each promotes up to a
/// chunk of them: 20 calls are 10,000 jobs).
const SWEEP_CALLS: usize = 20;

/// How often a kind whose fetcher waits for a slot is swept: half a lease, so a dead
/// worker's job is reclaimed about as soon as a fetch would have reclaimed it.
fn period(lease: Duration) -> Duration {
    (lease / 2).clamp(Duration::from_millis(100), Duration::from_secs(5))
}

/// Until `stop`: for each kind whose fetcher has waited a period for a slot, one fetch
/// of no jobs (promotion and reclaim only).
pub(crate) async fn sweep_loop<S: JobStore>(shared: SharedRef<S>, kinds: Vec<JobKind>, stop: CancellationToken) {
    let every = period(shared.settings.lease);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every / 2) => {}
        }
        for kind in &kinds {
            // Jobs leased ahead wait for a slot whether or not the fetcher does.
            let leased_ahead = shared.leases.not_started(*kind) as u64;
            match shared.slot_waits.waited(*kind) {
                None => {
                    // The fetcher has room: what waits in Redis it fetches itself.
                    shared.contention.set(*kind, leased_ahead);
                    continue;
                }
                Some(w) if w < every => continue,
                Some(_) => {}
            }
            shared.slot_waits.swept(*kind);
            let (worker, lease) = (&shared.settings.worker_id, shared.settings.lease);
            // A call promotes one chunk of due jobs, in due order across accounts: while
            // more are due the sweep goes on, so one seller's thousands falling due at
            // once do not hold every other seller's due job out of its lane for a sweep
            // period per chunk.
            for _ in 0..SWEEP_CALLS {
                match shared.store.fetch(*kind, worker, 0, lease).await {
                    Ok(f) if f.next_due == Some(Duration::ZERO) => {}
                    Ok(_) => break,
                    Err(e) => {
                        // the fetcher logs outages when it fetches; a sweep only tries again
                        tracing::debug!(kind = %kind, error = %e, "sweep of due jobs and expired leases failed");
                        break;
                    }
                }
            }
            shared.contention.set(*kind, leased_ahead + offered(&shared, *kind).await);
        }
    }
}

/// Every slot of `kind` is taken: how many jobs wait in Redis for one (one for each
/// account whose turn is on offer)? An unanswered read counts as none.
async fn offered<S: JobStore>(shared: &SharedRef<S>, kind: JobKind) -> u64 {
    shared.store.accounts_waiting(kind).await.unwrap_or_else(|e| {
        tracing::debug!(kind = %kind, error = %e, "could not read whether jobs wait for a slot");
        0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_kind_counts_as_waiting_from_when_its_fetcher_began_and_again_after_each_sweep() {
        let w = SlotWaits::default();
        assert_eq!(w.waited(JobKind::Cleanup), None);
        let wait = w.waiting(JobKind::Cleanup);
        tokio::time::advance(Duration::from_millis(700)).await;
        assert_eq!(w.waited(JobKind::Cleanup), Some(Duration::from_millis(700)));
        assert_eq!(w.waited(JobKind::Sync), None, "kinds are apart");
        w.swept(JobKind::Cleanup);
        tokio::time::advance(Duration::from_millis(100)).await;
        assert_eq!(w.waited(JobKind::Cleanup), Some(Duration::from_millis(100)));
        drop(wait);
        w.swept(JobKind::Cleanup);
        assert_eq!(w.waited(JobKind::Cleanup), None, "a sweep does not start a wait");
    }

    #[test]
    fn the_period_is_half_a_lease_within_bounds() {
        assert_eq!(period(Duration::from_millis(1800)), Duration::from_millis(900));
        assert_eq!(period(Duration::from_secs(60)), Duration::from_secs(5));
        assert_eq!(period(Duration::from_millis(50)), Duration::from_millis(100));
    }
}
