//! The queue: a narrow storage contract ([`JobStore`]) and its Redis implementation.
//!
//! Every state change is one Lua script (see `lua/`), so each is atomic and one round
//! trip; all keys of a queue (a kind, or one partition of it: [`Partitions`]) share a hash
//! tag so the scripts run unchanged on Cluster.
mod account_counts;
mod callback_store;
pub mod callbacks;
mod codec;
mod config;
mod counts;
mod dead_groups;
mod durability;
mod enqueue_reply;
mod fate;
mod keys;
mod layout;
mod listing;
mod migrate;
mod needs;
mod partition;
mod partition_health;
mod redis_settings;
mod redis_store;
mod scripts;
mod stats;
pub mod summary;
mod types;
mod visits;
mod waiting;
mod wake;

pub use account_counts::{AccountCounts, AccountStateCounts};
pub use callbacks::{AccountShare, CallbackStatus, CallbackStore, DueCallback, JobCallback, NewCallback, Recorded};
pub use config::QueueConfig;
pub use dead_groups::{DeadGroup, MAX_GROUPS};
pub use durability::{Durability, DurabilityMode, NotDurable};
pub(crate) use fate::jittered;
pub use fate::{decide, Fate, RetryPolicy};
pub use keys::QueueKeys;
pub use migrate::Migrated;
pub use partition::Partitions;
pub use redis_settings::RECOMMENDED_LISTPACK_VALUE;
pub use redis_store::RedisStore;
pub use scripts::LIBRARY as SCRIPTS;
pub use stats::{QueueEvents, WaitingCounts};
pub use types::*;
pub use waiting::{WaitReason, Waiting};

pub(crate) use codec::NEWER_RELEASE;

use std::future::Future;
use std::time::Duration;

use crate::job::{Job, JobId, JobKind, Progress};

/// What the queue must offer: the API, the worker runtime and the conformance suite are
/// all written against this trait, never against Redis directly.
pub trait JobStore: Clone + Send + Sync + 'static {
    /// Enqueue one job (idempotency key and per-account exclusivity honoured).
    fn enqueue(&self, job: NewJob) -> impl Future<Output = Result<Enqueued, EnqueueError>> + Send;
    /// Enqueue many jobs in one pipelined round trip; each gets its own outcome.
    fn enqueue_bulk(&self, jobs: Vec<NewJob>) -> impl Future<Output = Result<Vec<Result<Enqueued, EnqueueError>>, StoreError>> + Send;
    /// Promote due jobs, reclaim expired leases and lease up to `max` ready jobs.
    fn fetch(&self, kind: JobKind, worker: &str, max: usize, lease: Duration) -> impl Future<Output = Result<Fetched, StoreError>> + Send;
    /// Apply the outcomes of finished runs (each checked against its lease). Each queue
    /// answers for its own outcomes: `NotDurable` / `Unreached` mark those of a queue
    /// that did not acknowledge or could not be reached while others did; the call fails
    /// only when every outcome met the same failure.
    fn settle(&self, kind: JobKind, settlements: &[Settlement]) -> impl Future<Output = Result<Vec<SettleResult>, StoreError>> + Send;
    /// Renew leases; reports leases lost and jobs whose cancellation was requested. Each
    /// queue (each shard) answers for its own leases: those of a queue that cannot be
    /// reached or does not answer `within` are reported unreached, so a shard that hangs
    /// holds up no other's renewals; the call fails only when no queue answered.
    fn extend_leases(
        &self,
        kind: JobKind,
        leases: &[(JobId, String)],
        lease: Duration,
        within: Duration,
    ) -> impl Future<Output = Result<LeaseReport, StoreError>> + Send;
    /// A live worker's beat on the queues of a kind where it holds no lease: Redis notes
    /// that it served them (so a reclaim tells a dead holder from a Redis outage) and an
    /// idle fetcher is woken when a lease there has run out, so a dead worker's jobs run
    /// again one beat after their leases end.
    fn beat(&self, kind: JobKind) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Record that these leased runs have started (a lease that never started is handed
    /// back without using an attempt if its worker dies). Each queue records its own
    /// runs' starts; returns the runs whose queue could not be reached or did not answer
    /// `within` (to be sent again), and fails only when no queue answered.
    fn mark_started(
        &self,
        kind: JobKind,
        runs: &[(JobId, String)],
        within: Duration,
    ) -> impl Future<Output = Result<Vec<JobId>, StoreError>> + Send;
    /// Record progress; false when the caller no longer holds the lease.
    fn set_progress(&self, id: &JobId, token: &str, progress: &Progress) -> impl Future<Output = Result<bool, StoreError>> + Send;
    fn cancel(&self, id: &JobId) -> impl Future<Output = Result<CancelOutcome, StoreError>> + Send;
    /// Requeue a dead, cancelled or partial job with a fresh attempt budget.
    fn retry(&self, id: &JobId) -> impl Future<Output = Result<RetryOutcome, StoreError>> + Send;
    /// Requeue a job only while it is dead (the dead letter's replay: a job replayed
    /// and then cancelled or ended partial since it was listed stays as it is).
    fn replay_dead(&self, id: &JobId) -> impl Future<Output = Result<RetryOutcome, StoreError>> + Send;
    fn get(&self, id: &JobId) -> impl Future<Output = Result<Option<Job>, StoreError>> + Send;
    /// Why a job that is neither running nor finished has not started (None otherwise).
    fn waiting(&self, id: &JobId) -> impl Future<Output = Result<Option<Waiting>, StoreError>> + Send;
    /// Newest first, cursor paginated.
    fn list(&self, query: &ListQuery) -> impl Future<Output = Result<Page, StoreError>> + Send;
    fn counts(&self, kind: JobKind) -> impl Future<Output = Result<QueueCounts, StoreError>> + Send;
    fn set_paused(&self, kind: JobKind, paused: bool) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Delete dead jobs by id; returns how many were removed.
    fn purge_dead(&self, kind: JobKind, ids: &[JobId]) -> impl Future<Output = Result<u64, StoreError>> + Send;
    /// Delete terminal jobs of `kind` that ended before `retention` ago (dead ones after
    /// the store's own dead retention, and past its dead cap), in chunks of `limit`, until
    /// caught up or a time budget is spent; one trimmer per kind at a time. Returns how were removed and how many are still due (`None`: another process holds
    /// the kind's trim lock).
    fn trim(&self, kind: JobKind, retention: Duration, limit: usize) -> impl Future<Output = Result<Option<Trimmed>, StoreError>> + Send;
    /// How many accounts have a job of `kind` ready for a slot: their turns on offer
    /// (`passes`) in the partitions that are not paused.
    fn accounts_waiting(&self, kind: JobKind) -> impl Future<Output = Result<u64, StoreError>> + Send;
    /// Of these runs of one kind (each a leased job with its account), the positions of
    /// those that should give way to a more urgent job of their own account: the account
    /// is at its cap of running jobs (its lane set aside in `blocked`), its queue neither
    /// paused nor held after a restart, and the best job its lane holds has a higher
    /// priority than theirs. At most one an account: the least urgent, the first given
    /// among equals. A partition that does not answer outranks none of its runs.
    fn outranked(&self, runs: &[(JobId, String)]) -> impl Future<Output = Result<Vec<usize>, StoreError>> + Send;
    /// The runs one account may have at once of `kind` when this store fetches (0: no
    /// cap).
    fn per_account_cap(&self, kind: JobKind) -> u32;
    /// Block until work may be there (new job, due time) or `timeout` passes.
    fn wait_for_work(&self, kind: JobKind, timeout: Duration) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Redis answers, and can provide the configured durability.
    fn ping(&self) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Wait until this store's earlier writes are as durable as configured, after a
    /// [`StoreError::NotDurable`] (which leaves the write applied). A wait on a connection
    /// re-dialled since (a failover) counts no write and passes at once: the runtime
    /// sends its settles again instead.
    fn await_durable(&self) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Announce a live worker (`<namespace>:workers:<id>`, expiring after `ttl`).
    fn worker_heartbeat(&self, worker: &str, info: &str, ttl: Duration) -> impl Future<Output = Result<(), StoreError>> + Send;
}
