//! `POST /v1/jobs/{id}/cancel` and `POST /v1/jobs/{id}/retry` (admin).
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use drover::job::{JobId, JobState};
use drover::queue::{CancelOutcome, JobStore, RetryOutcome};

use super::{load_summary, parse_id};
use crate::audit::{self, Action};
use crate::auth::Caller;
use crate::error::{ApiError, Problem, PROBLEM_JSON};
use crate::problem_responses::{JobNotFound, RateLimited, Unauthorized, Unavailable};
use crate::state::AppState;
use crate::views::{status_url, Accepted, Cancelled};

/// The job id, after checking the caller may touch it (its summary: the account, never
/// the payload). Keys for every account skip the read: the store's script answers "not
/// found" itself.
async fn checked_id(state: &AppState, caller: &Caller, raw: &str) -> Result<JobId, ApiError> {
    if caller.accounts.is_some() {
        Ok(load_summary(state, caller, raw).await?.job.id)
    } else {
        parse_id(raw)
    }
}

fn gone(id: &JobId) -> ApiError {
    ApiError::NotFound(format!("no job with id {:?}", id.as_str()))
}

/// Cancel a queued, scheduled or running job.
#[utoipa::path(
    post,
    path = "/v1/jobs/{id}/cancel",
    tag = "control",
    params(("id" = String, Path, description = "Job id")),
    responses(
        (status = 200, description = "Cancelled at once (it was not running)", body = Cancelled),
        (status = 202, description = "Running: its handler has been told to stop", body = Cancelled),
        Unauthorized,
        (status = 403, description = "The key is not an admin key", body = Problem, content_type = PROBLEM_JSON),
        JobNotFound,
        (status = 409, description = "Already ended", body = Problem, content_type = PROBLEM_JSON),
        RateLimited,
        Unavailable,
    )
)]
pub async fn cancel(State(state): State<AppState>, caller: Caller, Path(raw): Path<String>) -> Result<Response, ApiError> {
    let what = Action::on("job.cancel", raw.clone());
    audit::recorded(&state, &caller, what, 1, |state, caller| async move {
        cancel_job(&state, &caller, &raw).await
    })
    .await
}

async fn cancel_job(state: &AppState, caller: &Caller, raw: &str) -> Result<Response, ApiError> {
    let id = checked_id(state, caller, raw).await?;
    let (status, job_state, requested) = match state.store().cancel(&id).await? {
        CancelOutcome::Cancelled => (StatusCode::OK, JobState::Cancelled, false),
        CancelOutcome::Requested => (StatusCode::ACCEPTED, JobState::Running, true),
        CancelOutcome::AlreadyTerminal(s) => return Err(ApiError::Conflict(format!("job {id} has already ended ({s})"))),
        CancelOutcome::NotFound => return Err(gone(&id)),
    };
    tracing::info!(job_id = %id, requested, key = %caller.name, "job cancelled");
    let body = Cancelled {
        id,
        state: job_state,
        cancel_requested: requested,
    };
    Ok((status, Json(body)).into_response())
}

/// Put a dead, cancelled or partial job back in the queue with a fresh attempt budget: its
/// `max_attempts` grows by the budget it was submitted with, and its run numbers go on.
#[utoipa::path(
    post,
    path = "/v1/jobs/{id}/retry",
    tag = "control",
    params(("id" = String, Path, description = "Job id")),
    responses(
        (status = 202, description = "Queued again", body = Accepted, headers(("Location" = String))),
        Unauthorized,
        (status = 403, description = "The key is not an admin key", body = Problem, content_type = PROBLEM_JSON),
        JobNotFound,
        (status = 409, description = "Not dead, cancelled or partial; or another sync of the account is active", body = Problem, content_type = PROBLEM_JSON),
        RateLimited,
        Unavailable,
    )
)]
pub async fn retry(State(state): State<AppState>, caller: Caller, Path(raw): Path<String>) -> Result<Response, ApiError> {
    let what = Action::on("job.retry", raw.clone());
    audit::recorded(&state, &caller, what, 1, |state, caller| async move {
        retry_job(&state, &caller, &raw).await
    })
    .await
}

async fn retry_job(state: &AppState, caller: &Caller, raw: &str) -> Result<Response, ApiError> {
    let id = checked_id(state, caller, raw).await?;
    match state.store().retry(&id).await? {
        RetryOutcome::Queued => {
            tracing::info!(job_id = %id, key = %caller.name, "job retried");
            let url = status_url(&id);
            let body = Accepted {
                id,
                state: JobState::Queued,
                status_url: url.clone(),
                waiting: None,
            };
            Ok((StatusCode::ACCEPTED, [(header::LOCATION, url)], Json(body)).into_response())
        }
        RetryOutcome::WrongState(s) => Err(ApiError::Conflict(format!(
            "job {id} is {s}; only dead, cancelled or partial jobs can be retried"
        ))),
        RetryOutcome::AccountBusy(holder) => Err(ApiError::Conflict(format!(
            "another sync of this account is queued or running ({holder}); retry when it has ended"
        ))),
        RetryOutcome::NotFound => Err(gone(&id)),
    }
}
