//! `GET /v1/queues` and `POST /v1/queues/{kind}/pause|resume`. Queue-wide, so only keys
//! not limited to accounts may use them.
use std::str::FromStr;

use axum::extract::{Path, State};
use axum::Json;
use drover::job::JobKind;
use drover::queue::JobStore;

use crate::audit::{self, Action};
use crate::auth::Caller;
use crate::error::{ApiError, Problem, PROBLEM_JSON};
use crate::problem_responses::{Forbidden, RateLimited, Unauthorized, Unavailable};
use crate::state::AppState;
use crate::views::{PauseState, QueueView, Queues, StateCounts};

/// Counts per state, pause state and lag of every queue.
#[utoipa::path(
    get,
    path = "/v1/queues",
    tag = "queues",
    responses(
        (status = 200, body = Queues),
        Unauthorized,
        (status = 403, description = "Key limited to accounts", body = Problem, content_type = PROBLEM_JSON),
        RateLimited,
        Unavailable,
    )
)]
pub async fn list_queues(State(state): State<AppState>, caller: Caller) -> Result<Json<Queues>, ApiError> {
    caller.require_unscoped("the queue overview")?;
    let mut queues = Vec::new();
    for kind in JobKind::ALL {
        let c = state.store().counts(kind).await?;
        queues.push(QueueView {
            kind,
            counts: StateCounts {
                scheduled: c.scheduled,
                queued: c.queued,
                running: c.running,
                prefetched: c.prefetched,
                retrying: c.retrying,
                succeeded: c.succeeded,
                partial: c.partial,
                dead: c.dead,
                cancelled: c.cancelled,
            },
            paused: c.paused,
            lag_ms: c.lag_ms,
            succeeded_total: c.succeeded_total,
        });
    }
    Ok(Json(Queues { queues }))
}

/// Stop handing out jobs of a kind (running jobs go on).
#[utoipa::path(
    post,
    path = "/v1/queues/{kind}/pause",
    tag = "queues",
    params(("kind" = String, Path, description = "The queue: sync, backfill or cleanup.")),
    responses(
        (status = 200, body = PauseState),
        Unauthorized,
        Forbidden,
        (status = 404, description = "No such queue", body = Problem, content_type = PROBLEM_JSON),
        RateLimited,
        Unavailable,
    )
)]
pub async fn pause(State(state): State<AppState>, caller: Caller, Path(kind): Path<String>) -> Result<Json<PauseState>, ApiError> {
    set_paused(&state, &caller, &kind, true).await
}

/// Hand out jobs of a kind again.
#[utoipa::path(
    post,
    path = "/v1/queues/{kind}/resume",
    tag = "queues",
    params(("kind" = String, Path, description = "The queue: sync, backfill or cleanup.")),
    responses(
        (status = 200, body = PauseState),
        Unauthorized,
        Forbidden,
        (status = 404, description = "No such queue", body = Problem, content_type = PROBLEM_JSON),
        RateLimited,
        Unavailable,
    )
)]
pub async fn resume(State(state): State<AppState>, caller: Caller, Path(kind): Path<String>) -> Result<Json<PauseState>, ApiError> {
    set_paused(&state, &caller, &kind, false).await
}

async fn set_paused(state: &AppState, caller: &Caller, kind: &str, paused: bool) -> Result<Json<PauseState>, ApiError> {
    let action = if paused { "queue.pause" } else { "queue.resume" };
    let kind = kind.to_owned();
    let what = Action::on(action, kind.clone());
    audit::recorded(state, caller, what, 0, |state, caller| async move {
        change_paused(&state, &caller, &kind, paused).await
    })
    .await
}

async fn change_paused(state: &AppState, caller: &Caller, kind: &str, paused: bool) -> Result<Json<PauseState>, ApiError> {
    let kind = JobKind::from_str(kind).map_err(|e| ApiError::NotFound(e.to_string()))?;
    caller.require_unscoped("pausing a queue")?;
    state.store().set_paused(kind, paused).await?;
    tracing::info!(kind = %kind, paused, key = %caller.name, "queue pause state changed");
    Ok(Json(PauseState { kind, paused }))
}
