//! How many jobs of a kind wait for a slot of this process while all its slots are
//! taken: that many runs that have worked their turn hand their jobs back between two
//! steps ([`super::JobContext::give_way`]), so a long job holds a slot for a turn, not for
//! the whole of its work. And which runs a more urgent job of their own account waits
//! for: their account is at its cap, so that job gets no turn until one of them ends.
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::job::{JobId, JobKind};

/// One kind's count, set by the sweep (`sweep.rs`) and taken from by the runs.
#[derive(Default)]
pub(crate) struct Contention {
    kinds: [Arc<KindContention>; 3],
}

/// Jobs of one kind waiting for a slot, and the runs that took one of them to give way
/// and have not ended yet (they still drain their calls in flight: their slots are not
/// free yet, and the job each gives way to still waits).
#[derive(Default)]
pub(crate) struct KindContention {
    waiting: AtomicU64,
    yielding: AtomicU64,
    /// This process's runs of the kind, for the sweep to ask which a more urgent job of
    /// their own account waits for ([`crate::queue::JobStore::outranked`]).
    runs: Mutex<Runs>,
}

#[derive(Default)]
struct Runs {
    next: u64,
    by_turn: HashMap<u64, RunOf>,
}

/// One run as the sweep asks about it.
struct RunOf {
    id: JobId,
    account: String,
    since: Instant,
    /// Set when a more urgent job of its account waits for its slot.
    outranked: Arc<AtomicBool>,
}

impl KindContention {
    /// The runs leased at least `after` ago that are not yet told to give way, as (job,
    /// account) — leaving out the accounts with a run already told and not yet ended (it
    /// may drain its calls for seconds: one waiting job frees one slot of this process).
    pub fn runs_to_ask(&self, after: Duration) -> Vec<(JobId, String)> {
        let runs = self.runs.lock().unwrap_or_else(|p| p.into_inner());
        let told: Vec<&str> = runs
            .by_turn
            .values()
            .filter(|r| r.outranked.load(Ordering::Relaxed))
            .map(|r| r.account.as_str())
            .collect();
        runs.by_turn
            .values()
            .filter(|r| r.since.elapsed() >= after && !told.contains(&r.account.as_str()))
            .map(|r| (r.id.clone(), r.account.clone()))
            .collect()
    }

    /// A more urgent job of their own account waits for these runs' slots: each gives
    /// way when it next asks.
    pub fn outranked(&self, ids: &[JobId]) {
        let runs = self.runs.lock().unwrap_or_else(|p| p.into_inner());
        for run in runs.by_turn.values().filter(|r| ids.contains(&r.id)) {
            run.outranked.store(true, Ordering::Relaxed);
        }
    }
}

impl Contention {
    /// `waiting` jobs wait for a slot: as many runs give way, less those giving way now
    /// (before 2026-12-06 each sweep counted them afresh, so one waiting job made a second
    /// run give way while the first drained).
    pub fn set(&self, kind: JobKind, waiting: u64) {
        let k = &self.kinds[kind.index()];
        let yielding = k.yielding.load(Ordering::Relaxed);
        k.waiting.store(waiting.saturating_sub(yielding), Ordering::Relaxed);
    }

    /// A fetch leased `n` jobs of `kind` into slots that came free: the jobs the count
    /// was of may be among them, so they leave it (found by the fairness audit of
    /// 2026-12-07: the count outlived the fetch until the next sweep, and a run that
    /// passed its turn meanwhile gave way for a job already running). The next sweep
    /// counts again.
    pub fn leased(&self, kind: JobKind, n: u64) {
        let k = &self.kinds[kind.index()];
        let _ = k
            .waiting
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |w| Some(w.saturating_sub(n)));
    }

    /// The count a run of `kind` takes from.
    pub fn of(&self, kind: JobKind) -> Arc<KindContention> {
        self.kinds[kind.index()].clone()
    }
}

/// One run's part in its kind's count: whether it took a waiting job to give way. It is
/// counted as giving way until it is dropped, with the run's last context.
pub(crate) struct RunTurn {
    kind: Arc<KindContention>,
    took: AtomicBool,
    /// Its entry among the kind's runs, while it has an account to be asked about.
    turn: Option<u64>,
    outranked: Arc<AtomicBool>,
}

impl RunTurn {
    /// The part of a run of `id` for `account` (None: a job of no account, which no
    /// job of its own account can outrank).
    pub fn new(kind: Arc<KindContention>, id: &JobId, account: Option<&str>) -> Self {
        let outranked = Arc::new(AtomicBool::new(false));
        let turn = account.map(|account| {
            let mut runs = kind.runs.lock().unwrap_or_else(|p| p.into_inner());
            let turn = runs.next;
            runs.next += 1;
            let run = RunOf {
                id: id.clone(),
                account: account.to_owned(),
                since: Instant::now(),
                outranked: outranked.clone(),
            };
            runs.by_turn.insert(turn, run);
            turn
        });
        Self {
            kind,
            took: AtomicBool::new(false),
            turn,
            outranked,
        }
    }

    /// True when this run should give way: a more urgent job of its own account waits
    /// for its slot, or it took one waiting job off the count (or had already taken one).
    pub fn give_way(&self) -> bool {
        if self.outranked.load(Ordering::Relaxed) || self.took.load(Ordering::Relaxed) {
            return true;
        }
        let taken = self
            .kind
            .waiting
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok();
        if taken {
            self.kind.yielding.fetch_add(1, Ordering::Relaxed);
            self.took.store(true, Ordering::Relaxed);
        }
        taken
    }
}

impl Drop for RunTurn {
    fn drop(&mut self) {
        if *self.took.get_mut() {
            self.kind.yielding.fetch_sub(1, Ordering::Relaxed);
        }
        if let Some(turn) = self.turn {
            let mut runs = self.kind.runs.lock().unwrap_or_else(|p| p.into_inner());
            runs.by_turn.remove(&turn);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_many_runs_give_way_as_jobs_wait_and_kinds_are_apart() {
        let c = Contention::default();
        let run = || RunTurn::new(c.of(JobKind::Cleanup), &JobId::new(JobKind::Cleanup), None);
        assert!(!run().give_way(), "nothing waits");
        c.set(JobKind::Cleanup, 2);
        let (a, b, d) = (run(), run(), run());
        assert!(a.give_way() && a.give_way(), "a run that gives way is told so again");
        assert!(b.give_way());
        assert!(!d.give_way(), "two waited: two runs give way");
        assert!(
            !RunTurn::new(c.of(JobKind::Sync), &JobId::new(JobKind::Sync), None).give_way(),
            "kinds are apart"
        );
        drop((a, b));
        c.set(JobKind::Cleanup, 0);
        assert!(!d.give_way(), "the next sweep found none waiting");
    }

    #[test]
    fn a_sweep_does_not_count_again_a_job_a_run_is_giving_way_to() {
        let c = Contention::default();
        c.set(JobKind::Cleanup, 1);
        let first = RunTurn::new(c.of(JobKind::Cleanup), &JobId::new(JobKind::Cleanup), None);
        assert!(first.give_way());
        // The next sweep still sees the job waiting: the first run has not ended.
        c.set(JobKind::Cleanup, 1);
        let second = RunTurn::new(c.of(JobKind::Cleanup), &JobId::new(JobKind::Cleanup), None);
        assert!(!second.give_way(), "the job is already given way to");
        drop(first);
        c.set(JobKind::Cleanup, 1);
        assert!(second.give_way(), "a job waiting after that run ended is another");
    }

    #[tokio::test(start_paused = true)]
    async fn an_outranked_run_gives_way_and_its_account_is_not_asked_about_again_until_it_ends() {
        let c = Contention::default();
        let kind = c.of(JobKind::Cleanup);
        let id = || JobId::new(JobKind::Cleanup);
        let (a1, a2, b) = (id(), id(), id());
        let r1 = RunTurn::new(kind.clone(), &a1, Some("a"));
        let r2 = RunTurn::new(kind.clone(), &a2, Some("a"));
        let _rb = RunTurn::new(kind.clone(), &b, Some("b"));
        assert!(kind.runs_to_ask(Duration::from_millis(250)).is_empty(), "too new to ask about");
        tokio::time::advance(Duration::from_millis(300)).await;
        assert_eq!(kind.runs_to_ask(Duration::from_millis(250)).len(), 3);
        kind.outranked(std::slice::from_ref(&a1));
        assert!(r1.give_way() && !r2.give_way(), "only the run named gives way");
        assert_eq!(
            c.of(JobKind::Cleanup).yielding.load(Ordering::Relaxed),
            0,
            "no waiting job of the count taken"
        );
        let asked: Vec<String> = kind.runs_to_ask(Duration::from_millis(250)).into_iter().map(|(_, a)| a).collect();
        assert_eq!(asked, vec!["b".to_owned()], "a's run told is still draining");
        drop(r1);
        assert_eq!(kind.runs_to_ask(Duration::from_millis(250)).len(), 2, "a ended run leaves the runs");
    }
}
