//! How one worker process runs: its identity, concurrency per kind, lease timing,
//! shutdown grace, fetch sizes, retry policies and retention.
use std::collections::HashMap;
use std::time::Duration;

use crate::job::JobKind;
use crate::queue::RetryPolicy;

/// How one worker process runs.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Unique per process start, so a restarted worker is never locked out.
    pub worker_id: String,
    /// Jobs run at once, per kind; a kind with 0 is not served.
    pub concurrency: HashMap<JobKind, usize>,
    /// How long a lease lasts without renewal: a dead worker's jobs run again after this.
    pub lease: Duration,
    /// How often leases are renewed (and cancellations noticed).
    pub heartbeat: Duration,
    /// How long running jobs may finish after a shutdown signal.
    pub grace: Duration,
    /// Most jobs leased in one fetch.
    pub fetch_batch: usize,
    /// Jobs leased ahead of free slots, per kind, while runs are slow or their pace is
    /// unknown (default 0): a prefetched job waits in this process behind its runs, where
    /// no idle worker can take it and its seller's turn is not weighed against others'. Fast runs lease further ahead (see `pace.rs`). They go back to the
    /// queue untouched as soon as fetching stops.
    pub prefetch: usize,
    /// Longest blocking wait for new work before fetching again anyway.
    pub idle_wait: Duration,
    pub retry: HashMap<JobKind, RetryPolicy>,
    /// Terminal jobs older than this are trimmed (dead jobs are kept).
    pub retention: Duration,
}

impl WorkerSettings {
    /// The default lease: a SIGKILLed worker's jobs run again within it (under 2 s).
    pub const DEFAULT_LEASE: Duration = Duration::from_millis(1800);
    /// The default renewal period: the keeper fences a run after `lease − heartbeat`.
    pub const DEFAULT_HEARTBEAT: Duration = Duration::from_millis(300);

    pub fn new_worker_id() -> String {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let host = host.trim();
        format!(
            "{}-{}-{}",
            if host.is_empty() { "worker" } else { host },
            std::process::id(),
            ulid::Ulid::generate()
        )
    }

    pub fn retry_for(&self, kind: JobKind) -> RetryPolicy {
        self.retry.get(&kind).copied().unwrap_or_default()
    }
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            worker_id: Self::new_worker_id(),
            concurrency: JobKind::ALL.into_iter().map(|k| (k, 10)).collect(),
            lease: Self::DEFAULT_LEASE,
            heartbeat: Self::DEFAULT_HEARTBEAT,
            grace: Duration::from_secs(30),
            fetch_batch: 100,
            prefetch: 0,
            idle_wait: Duration::from_secs(5),
            retry: HashMap::new(),
            retention: Duration::from_secs(7 * 24 * 3600),
        }
    }
}
