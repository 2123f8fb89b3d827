//! Which runs a more urgent job of their own account waits for. A job waiting at its
//! account's cap gets no turn until one of the account's runs ends, so without this it
//! waited for a running job's end or slice (20 minutes) whatever its priority (found by
//! the sixth audits of 2026-12-06). In kinds with a per-account cap, runs are noted
//! once they start; every tick the store is asked which of them are outranked
//! ([`crate::queue::JobStore::outranked`]), and the least urgent of each such account
//! gives way at its next step once it has worked its turn
//! ([`super::JobContext::give_way`]).
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::shared::SharedRef;
use crate::job::{JobId, JobKind};
use crate::queue::{JobStore, Leased};

/// A run's standing: not outranked, told to give way (the next tick may take that
/// back), or giving way (it was told when it asked: its account waits for its end).
const RUNS_ON: u8 = 0;
const TOLD: u8 = 1;
const GIVING_WAY: u8 = 2;

/// Runs this long are asked about: a handler asks to give way only once it has worked
/// its turn (seconds), so a run that ends sooner need not be.
const ASK_AFTER: Duration = Duration::from_millis(250);

/// How long one tick's question may take: a shard that hangs answers nothing for its
/// runs (they run on), and the next tick asks again.
const ASK_WITHIN: Duration = Duration::from_secs(1);

/// Every kind's started runs.
#[derive(Default)]
pub(crate) struct Outranking {
    kinds: [Arc<KindRuns>; 3],
}

impl Outranking {
    /// The kinds of `kinds` with a per-account cap in `store`: their runs are noted and
    /// asked about. Set before any run starts (a run started before is never noted).
    pub fn new<S: JobStore>(store: &S, kinds: impl IntoIterator<Item = JobKind>) -> Self {
        let o = Self::default();
        for kind in kinds {
            o.kinds[kind.index()]
                .capped
                .store(store.per_account_cap(kind) > 0, Ordering::Relaxed);
        }
        o
    }

    #[cfg(test)]
    fn capped(&self, kind: JobKind) {
        self.kinds[kind.index()].capped.store(true, Ordering::Relaxed);
    }

    pub fn of(&self, kind: JobKind) -> Arc<KindRuns> {
        self.kinds[kind.index()].clone()
    }
}

/// One kind's started runs, oldest first.
#[derive(Default)]
pub(crate) struct KindRuns {
    capped: AtomicBool,
    runs: Mutex<Runs>,
}

#[derive(Default)]
struct Runs {
    next: u64,
    by_start: BTreeMap<u64, RunOf>,
}

struct RunOf {
    id: JobId,
    account: String,
    since: Instant,
    standing: Arc<AtomicU8>,
}

/// One run asked about: its entry, job and account.
pub(crate) struct Asked {
    entry: u64,
    pub id: JobId,
    pub account: String,
}

impl KindRuns {
    /// The runs started at least `after` ago that run on or were told, oldest first,
    /// leaving out the accounts with a run giving way (it may drain its calls for
    /// seconds; its account's urgent job waits for that one slot, not a second).
    fn to_ask(&self, after: Duration) -> Vec<Asked> {
        let runs = self.runs.lock().unwrap_or_else(|p| p.into_inner());
        let giving_way: HashSet<&str> = runs
            .by_start
            .values()
            .filter(|r| r.standing.load(Ordering::Relaxed) == GIVING_WAY)
            .map(|r| r.account.as_str())
            .collect();
        runs.by_start
            .iter()
            .filter(|(_, r)| r.since.elapsed() >= after && !giving_way.contains(r.account.as_str()))
            .map(|(entry, r)| Asked {
                entry: *entry,
                id: r.id.clone(),
                account: r.account.clone(),
            })
            .collect()
    }

    /// What the store answered for `asked`: the runs at `picked` are told to give way,
    /// the others told before run on (the urgent job was cancelled, or leased since).
    fn tell(&self, asked: &[Asked], picked: &[usize]) {
        let runs = self.runs.lock().unwrap_or_else(|p| p.into_inner());
        for (i, a) in asked.iter().enumerate() {
            let Some(run) = runs.by_start.get(&a.entry) else { continue };
            let (from, to) = if picked.contains(&i) { (RUNS_ON, TOLD) } else { (TOLD, RUNS_ON) };
            let _ = run.standing.compare_exchange(from, to, Ordering::Relaxed, Ordering::Relaxed);
        }
    }
}

/// One run's part: noted among its kind's runs from its start until dropped.
pub(crate) struct RunUrgency {
    kind: Arc<KindRuns>,
    noted: OnceLock<(u64, Arc<AtomicU8>)>,
}

impl RunUrgency {
    pub fn new(kind: Arc<KindRuns>) -> Self {
        Self {
            kind,
            noted: OnceLock::new(),
        }
    }

    /// The run has started: noted, if its kind has a cap and its job an account.
    pub fn started(&self, leased: &Leased) {
        if !self.kind.capped.load(Ordering::Relaxed) {
            return;
        }
        let Ok(payload) = &leased.payload else { return };
        let standing = Arc::new(AtomicU8::new(RUNS_ON));
        let mut runs = self.kind.runs.lock().unwrap_or_else(|p| p.into_inner());
        let entry = runs.next;
        runs.next += 1;
        let run = RunOf {
            id: leased.id.clone(),
            account: payload.account_id().as_str().to_owned(),
            since: Instant::now(),
            standing: standing.clone(),
        };
        runs.by_start.insert(entry, run);
        drop(runs);
        let _ = self.noted.set((entry, standing));
    }

    /// True when a more urgent job of its account waits for its slot; from then on it
    /// is giving way (and told so again).
    pub fn give_way(&self) -> bool {
        let Some((_, standing)) = self.noted.get() else { return false };
        match standing.compare_exchange(TOLD, GIVING_WAY, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => true,
            Err(now) => now == GIVING_WAY,
        }
    }
}

impl Drop for RunUrgency {
    fn drop(&mut self) {
        if let Some((entry, _)) = self.noted.get() {
            let mut runs = self.kind.runs.lock().unwrap_or_else(|p| p.into_inner());
            runs.by_start.remove(entry);
        }
    }
}

/// How often the runs are asked about: a quarter lease, within bounds.
fn tick(lease: Duration) -> Duration {
    (lease / 4).clamp(Duration::from_millis(50), Duration::from_millis(2500))
}

/// Until `stop`: every tick, for each capped kind with runs to ask about, the store's
/// answer told to them. A question unanswered (an outage, a hung shard) tells no run.
pub(crate) async fn outrank_loop<S: JobStore>(shared: SharedRef<S>, kinds: Vec<JobKind>, stop: CancellationToken) {
    let every = tick(shared.settings.lease);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        for kind in &kinds {
            let runs = shared.outranking.of(*kind);
            let asked = runs.to_ask(ASK_AFTER);
            if asked.is_empty() {
                continue;
            }
            let pairs: Vec<(JobId, String)> = asked.iter().map(|a| (a.id.clone(), a.account.clone())).collect();
            match tokio::time::timeout(ASK_WITHIN, shared.store.outranked(&pairs)).await {
                Ok(Ok(picked)) => runs.tell(&asked, &picked),
                Ok(Err(e)) => {
                    tracing::debug!(kind = %kind, error = %e, "could not read whether a more urgent job waits for its account's slot")
                }
                Err(_) => tracing::debug!(kind = %kind, "no answer in time to whether a more urgent job waits for its account's slot"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::JobPayload;

    fn leased(account: &str) -> Leased {
        let payload = serde_json::json!({"account_id": account, "marketplace_id": "M", "skus": ["a"]});
        Leased {
            id: JobId::new(JobKind::Cleanup),
            token: "w:1:0".into(),
            attempt: 1,
            max_attempts: 3,
            budget: None,
            started_at: chrono::Utc::now(),
            timeout: Duration::from_secs(60),
            traceparent: None,
            payload: JobPayload::from_json(JobKind::Cleanup, payload).map_err(|e| e.to_string()),
        }
    }

    fn accounts(asked: &[Asked]) -> Vec<&str> {
        asked.iter().map(|a| a.account.as_str()).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_told_run_gives_way_once_asked_and_its_account_waits_for_it_alone() {
        let o = Outranking::default();
        o.capped(JobKind::Cleanup);
        let kind = o.of(JobKind::Cleanup);
        let (a1, a2, b) = (
            RunUrgency::new(kind.clone()),
            RunUrgency::new(kind.clone()),
            RunUrgency::new(kind.clone()),
        );
        assert!(kind.to_ask(ASK_AFTER).is_empty(), "no run has started");
        a1.started(&leased("a"));
        a2.started(&leased("a"));
        b.started(&leased("b"));
        assert!(kind.to_ask(ASK_AFTER).is_empty(), "too new to ask about");
        tokio::time::advance(Duration::from_millis(300)).await;
        let asked = kind.to_ask(ASK_AFTER);
        assert_eq!(accounts(&asked), ["a", "a", "b"], "oldest first");
        kind.tell(&asked, &[0]);
        // The next tick finds the urgent job gone: the run told runs on.
        let asked = kind.to_ask(ASK_AFTER);
        kind.tell(&asked, &[]);
        assert!(!a1.give_way(), "told, then not: it runs on");
        kind.tell(&asked, &[0]);
        assert!(
            a1.give_way() && a1.give_way() && !a2.give_way(),
            "only the run told gives way, and is told so again"
        );
        kind.tell(&asked, &[]);
        assert!(a1.give_way(), "a run giving way stays so");
        assert_eq!(accounts(&kind.to_ask(ASK_AFTER)), ["b"], "a's run giving way is still draining");
        drop(a1);
        assert_eq!(accounts(&kind.to_ask(ASK_AFTER)), ["a", "b"], "an ended run leaves the runs");
    }

    #[test]
    fn runs_of_a_kind_without_a_cap_are_not_noted() {
        let o = Outranking::default();
        let run = RunUrgency::new(o.of(JobKind::Sync));
        run.started(&leased("a"));
        assert!(run.noted.get().is_none() && !run.give_way());
    }
}
