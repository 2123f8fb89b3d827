//! The job model: ids, kinds, states, typed payloads and what the queue records.
mod id;
mod kind;
mod newtypes;
mod payload;
mod record;
mod state;

pub use id::{bucket_of, InvalidJobId, JobId, BUCKETS};
pub use kind::{JobKind, UnknownKind};
pub use newtypes::{AccountId, MarketplaceId, Sku};
pub use payload::{
    BackfillPayload, CleanupPayload, FieldError, JobPayload, PayloadError, SyncPayload, SyncResource, MAX_BACKFILL_DAYS, MAX_SKUS,
};
pub use record::{trace_id_of, AttemptOutcome, AttemptRecord, ErrorClass, ErrorInfo, Job, PreviousEnding, Progress};
pub use state::{JobState, UnknownState};
