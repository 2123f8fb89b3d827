//! `POST /v1/jobs`: validate the request fully (422 naming each bad field), then enqueue.
use std::time::Duration;

use axum::extract::State;
use axum::response::Response;
use chrono::Utc;
use drover::job::{FieldError, JobId, JobPayload};
use drover::queue::{NewJob, Partitions};

use super::enqueue::enqueue;
use crate::auth::{Caller, Principal};
use crate::callbacks::CallbackPolicy;
use crate::error::{ApiError, Problem, PROBLEM_JSON};
use crate::extract::{JsonBody, SubmitHeaders};
use crate::problem_responses::{BadRequest, Forbidden, Invalid, SubmitLimited, Unauthorized};
use crate::state::AppState;
use crate::views::{Accepted, SubmitJob};

const MAX_DELAY: Duration = Duration::from_secs(366 * 24 * 3600);
const MAX_TIMEOUT_MS: u64 = 24 * 3600 * 1000;

/// Enqueue a job.
#[utoipa::path(
    post,
    path = "/v1/jobs",
    tag = "jobs",
    request_body = SubmitJob,
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "Replaying the same key and body returns the same job (200); the same key with another body is a 409. Scoped to the API key."),
        ("traceparent" = Option<String>, Header, description = "W3C trace context to continue; stored on the job."),
    ),
    responses(
        (status = 202, description = "Accepted: a new job", body = Accepted, headers(("Location" = String, description = "The job's URL"))),
        (status = 200, description = "An existing job: idempotent replay, or the account's sync of that marketplace already under way (queued, running, or parked by the marketplace's limits) that covers the request's resources and `since` (a queued one takes missing resources on; one under way takes on a higher priority asked for)", body = Accepted, headers(("Location" = String))),
        BadRequest,
        Unauthorized,
        Forbidden,
        (status = 409, description = "Idempotency key reused with another request", body = Problem, content_type = PROBLEM_JSON),
        (status = 413, description = "Body too large, or the payload over api.jobs.max_payload_bytes once stored", body = Problem, content_type = PROBLEM_JSON),
        (status = 415, description = "Not application/json", body = Problem, content_type = PROBLEM_JSON),
        Invalid,
        SubmitLimited,
        (status = 503, description = "Redis did not answer; the outcome is unknown: retry with the same Idempotency-Key", body = Problem, content_type = PROBLEM_JSON),
    )
)]
pub async fn submit(
    State(state): State<AppState>,
    caller: Caller,
    headers: SubmitHeaders,
    JsonBody(req): JsonBody<SubmitJob>,
) -> Result<Response, ApiError> {
    let job = new_job(req, &caller, state.callbacks(), state.store().defaults().partitions)?;
    enqueue(&state, &caller, job, headers).await
}

/// Every problem with the request at once, each naming its field.
fn new_job(req: SubmitJob, caller: &Principal, callbacks: Option<&CallbackPolicy>, partitions: Partitions) -> Result<NewJob, ApiError> {
    let mut errors = Vec::new();
    let payload = match JobPayload::from_json(req.kind, req.payload) {
        Ok(p) => Some(p),
        Err(e) => {
            errors.extend(e.0);
            None
        }
    };
    let callback = match (req.callback_url.as_deref(), callbacks) {
        (None, _) => None,
        (Some(_), None) => {
            errors.push(FieldError::new("callback_url", "this API does not make callbacks"));
            None
        }
        (Some(url), Some(policy)) => {
            // The id is made now (the callback's secret is sealed to it), in the
            // account's partition as the store would place the job.
            let account = payload.as_ref().map(|p| p.account_id().to_string()).unwrap_or_default();
            let job_id = JobId::with_bucket(req.kind, partitions.bucket_for(&account, None));
            match policy.callback(url, caller, job_id) {
                Ok(c) => Some(c),
                Err(e) => {
                    errors.push(e);
                    None
                }
            }
        }
    };
    if req.run_at.is_some() && req.delay_ms.is_some() {
        errors.push(FieldError::new("delay_ms", "set at most one of run_at and delay_ms"));
    }
    if let Some(at) = req.run_at {
        if at > Utc::now() + chrono::Duration::from_std(MAX_DELAY).expect("fits") {
            errors.push(FieldError::new("run_at", "must be within a year from now"));
        }
    }
    if let Some(ms) = req.delay_ms {
        if Duration::from_millis(ms) > MAX_DELAY {
            errors.push(FieldError::new("delay_ms", "must be at most a year"));
        }
    }
    if let Some(n) = req.max_attempts {
        if !(1..=100).contains(&n) {
            errors.push(FieldError::new("max_attempts", "must be between 1 and 100"));
        }
    }
    if let Some(p) = req.priority {
        if p > 9 {
            errors.push(FieldError::new("priority", "must be between 0 and 9"));
        }
    }
    if let Some(ms) = req.timeout_ms {
        if !(1000..=MAX_TIMEOUT_MS).contains(&ms) {
            errors.push(FieldError::new("timeout_ms", format!("must be between 1000 and {MAX_TIMEOUT_MS}")));
        }
    }
    let Some(payload) = payload.filter(|_| errors.is_empty()) else {
        return Err(ApiError::Validation(errors));
    };
    let mut job = NewJob::new(payload);
    job.run_at = req.run_at;
    job.delay = req.delay_ms.filter(|ms| *ms > 0).map(Duration::from_millis);
    job.priority = req.priority.unwrap_or(0);
    job.max_attempts = req.max_attempts;
    job.timeout = req.timeout_ms.map(Duration::from_millis);
    job.callback = callback;
    Ok(job)
}
