//! The endpoints, one concept per file (docs/architecture.md, "HTTP API").
pub mod account_counts;
pub mod account_credentials;
pub mod account_list;
pub mod accounts;
pub mod audit;
pub mod control;
pub mod csv_upload;
pub mod dead_groups;
pub mod dead_letter;
mod enqueue;
pub mod events;
mod first_sync;
pub mod health;
pub mod items;
pub mod jobs;
mod listing;
pub mod queues;
pub mod schedules;
pub mod submit;
mod walks;

use drover::job::{Job, JobId};
use drover::queue::summary::JobSummary;
use drover::queue::JobStore;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

/// A path id that cannot name a job is simply not found.
pub fn parse_id(raw: &str) -> Result<JobId, ApiError> {
    raw.parse().map_err(|_| not_found(raw))
}

fn not_found(raw: &str) -> ApiError {
    ApiError::NotFound(format!("no job with id {:?}", raw.chars().take(64).collect::<String>()))
}

/// The job, if it exists and the caller may see it; otherwise the same 404 either way.
/// For a key limited to accounts the job's summary (its account) is read first, so
/// another tenant's job is refused at the cost of a missing one, whatever it holds.
pub async fn load_job(state: &AppState, caller: &Caller, raw_id: &str) -> Result<Job, ApiError> {
    if caller.accounts.is_some() {
        load_summary(state, caller, raw_id).await?;
    }
    let id = parse_id(raw_id)?;
    match state.store().get(&id).await? {
        Some(job) if caller.sees_job(&job) => Ok(job),
        _ => Err(not_found(raw_id)),
    }
}

/// [`load_job`] without the payload, result and attempts: what views that do not show
/// them read, at a cost that does not grow with the payload.
pub async fn load_summary(state: &AppState, caller: &Caller, raw_id: &str) -> Result<JobSummary, ApiError> {
    let id = parse_id(raw_id)?;
    match state.store().summary(&id).await? {
        Some(s) if caller.sees_job(&s.job) => Ok(s),
        _ => Err(not_found(raw_id)),
    }
}
