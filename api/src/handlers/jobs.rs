//! `GET /v1/jobs/{id}` and `GET /v1/jobs`.
use axum::extract::{Path, RawQuery, State};
use axum::Json;
use utoipa::IntoParams;

use super::listing::{self, RawList};
use super::load_job;
use crate::auth::Caller;
use crate::error::{ApiError, Problem, PROBLEM_JSON};
use crate::extract::query;
use crate::problem_responses::{Invalid, JobNotFound, RateLimited, Unauthorized, Unavailable};
use crate::state::AppState;
use crate::views::{JobPage, JobView, WaitingView};
use crate::waiting::{self, WaitingJob};

/// One job with its attempt history, progress, result and trace id.
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}",
    tag = "jobs",
    params(("id" = String, Path, description = "Job id, e.g. cleanup_01J9Z3K4M5N6P7Q8R9S0T1V2W3")),
    responses(
        (status = 200, body = JobView),
        Unauthorized,
        JobNotFound,
        RateLimited,
        Unavailable,
    )
)]
pub async fn get_job(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<Json<JobView>, ApiError> {
    // Held until the answer is built (axum writes it out as this returns): the payload
    // is in memory several times over.
    let _reading = state.record_reads().start(&caller.name).await?;
    let job = load_job(&state, &caller, &id).await?;
    // A running job may still wait: leased into a worker's prefetch, not yet started.
    let waiting = if job.state.is_terminal() {
        None
    } else {
        let waits = WaitingJob {
            id: &job.id,
            account_id: job.account_id.as_deref(),
        };
        waiting::waiting(&state, waits).await?
    };
    let mut view = JobView::from(job).callback_seen_by(&caller);
    if caller.accounts.is_some() {
        // Worker names are internal host names and pids: for operators only.
        view = view.without_workers();
    }
    Ok(Json(view.with_waiting(
        waiting.map(|w| WaitingView::from(w).seen_by(caller.accounts.is_some())),
    )))
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // documents `RawList`, which is what is parsed
pub struct ListParams {
    /// sync, backfill or cleanup.
    kind: Option<String>,
    /// scheduled, queued, running, retrying, succeeded, partial, dead or cancelled.
    state: Option<String>,
    /// Required for keys limited to several accounts; forced for keys limited to one.
    account_id: Option<String>,
    /// The class of the job's last error, e.g. `permanent` or `rate_limited`.
    error_class: Option<String>,
    /// 1 to 1000, default 50.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// `next_cursor` of the previous page, with the same key and filters (else 422).
    cursor: Option<String>,
}

/// Jobs, newest first, cursor paginated.
#[utoipa::path(
    get,
    path = "/v1/jobs",
    tag = "jobs",
    params(ListParams),
    responses(
        (status = 200, body = JobPage),
        Unauthorized,
        (status = 403, description = "account_id names an account this key may not see", body = Problem, content_type = PROBLEM_JSON),
        Invalid,
        RateLimited,
        Unavailable,
    )
)]
pub async fn list_jobs(State(state): State<AppState>, caller: Caller, RawQuery(raw): RawQuery) -> Result<Json<JobPage>, ApiError> {
    let raw: RawList = query(raw.as_deref())?;
    let q = listing::to_query(raw, &caller, state.cursors(), None)?;
    Ok(Json(listing::page(&state, &caller, &q).await?))
}
