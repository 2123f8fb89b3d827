//! The storage contract of completion callbacks (docs/architecture.md, "Completion
//! callbacks"): a job's callback is stored with it, every terminal transition makes a
//! delivery due in the same script, and workers claim due deliveries with a lease and
//! record each try.
use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use super::StoreError;
pub use crate::callback::{CallbackStatus, JobCallback};
use crate::callback::{DeliveryRecord, Ended};
use crate::job::{JobId, JobKind};

/// The callback a new job carries. Its id is chosen before the enqueue because the
/// sealed secret is bound to it ([`crate::callback::seal`]).
#[derive(Clone)]
pub struct NewCallback {
    pub job_id: JobId,
    pub url: String,
    /// The key's signing secret, sealed for this job and URL.
    pub sealed_secret: Vec<u8>,
}

impl std::fmt::Debug for NewCallback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewCallback").field("job_id", &self.job_id).finish_non_exhaustive()
    }
}

/// A delivery claimed by a worker: everything one try needs.
#[derive(Clone)]
pub struct DueCallback {
    pub job_id: JobId,
    /// Proves the claim when the try is recorded.
    pub token: String,
    /// 1-based, counting every try of this delivery.
    pub try_number: u32,
    pub delivery_id: String,
    pub url: String,
    pub sealed_secret: Vec<u8>,
    /// How the job ended, or why that could not be read.
    pub ended: Result<Ended, String>,
    pub account: Option<String>,
}

impl std::fmt::Debug for DueCallback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DueCallback")
            .field("delivery_id", &self.delivery_id)
            .field("try_number", &self.try_number)
            .finish_non_exhaustive()
    }
}

/// How a worker's delivery slots are shared between accounts: an account with
/// `per_account` tries in flight here gets no more until one ends, so one tenant's slow
/// receivers hold only their share. `per_account` 0: no cap.
#[derive(Debug, Clone, Default)]
pub struct AccountShare {
    pub per_account: usize,
    /// Tries in flight at this worker, by account (`""`: jobs without one).
    pub in_flight: HashMap<String, usize>,
}

/// What the store answered to a recorded try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    Applied,
    /// Kept in the history only: the claim had run out, or the job ended again since.
    Stale,
    /// The job is gone (trimmed).
    Missing,
}

/// Claiming and recording deliveries; the conformance suite holds every backend to it.
pub trait CallbackStore: Clone + Send + Sync + 'static {
    /// Claim up to `max` due deliveries of `kind` for `lease`, none of an account at its
    /// `share`. A delivery whose tries reached `max_tries` (its last claims ran out) ends
    /// as failed instead. Also returns, when nothing was claimed, how long until the next
    /// one falls due (none when only accounts at their share have some due).
    fn claim_callbacks(
        &self,
        kind: JobKind,
        worker: &str,
        max: usize,
        lease: Duration,
        max_tries: u32,
        share: &AccountShare,
    ) -> impl Future<Output = Result<(Vec<DueCallback>, Option<Duration>), StoreError>> + Send;

    /// Record one try; `next`: when to try again (None: the delivery ends, `delivered`
    /// says how). The history keeps it whatever; the schedule changes only while the
    /// claim is current.
    fn record_callback(
        &self,
        due: &DueCallback,
        record: &DeliveryRecord,
        next: Option<Duration>,
        delivered: bool,
    ) -> impl Future<Output = Result<Recorded, StoreError>> + Send;
}
