//! The router: which role each endpoint needs, and the middleware around all of them.
//! `/metrics` is not here: it is served on the internal listener (`metrics_listener.rs`).
use axum::extract::DefaultBodyLimit;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::{get, post, put};
use axum::Router;

use crate::auth::{require_admin, require_read, require_submit};
use crate::error::ApiError;
use crate::handlers::{accounts, control, csv_upload, dead_letter, events, health, items, jobs, queues, schedules, submit};
use crate::middleware::{catch_panic::catch_panic, observe::observe, problem::as_problem, request_id::request_id, timeout::timeout};
use crate::state::AppState;

pub fn router(state: AppState) -> Router {
    let limits = *state.limits();
    let read = Router::new()
        .route("/v1/jobs", get(jobs::list_jobs))
        .route("/v1/jobs/{id}", get(jobs::get_job))
        .route("/v1/jobs/{id}/events", get(events::job_events))
        .route("/v1/jobs/{id}/items", get(items::list_items))
        .route("/v1/schedules", get(schedules::list_schedules))
        .route("/v1/schedules/{name}", get(schedules::get_schedule))
        .route("/v1/dead-letter", get(dead_letter::list_dead))
        .route("/v1/queues", get(queues::list_queues))
        .route("/v1/accounts/{id}", get(accounts::get))
        .route("/v1/accounts/{id}/limits", get(accounts::limits))
        .route_layer(from_fn_with_state(state.clone(), require_read));
    let submit = Router::new()
        .route("/v1/jobs", post(submit::submit))
        // Admin, or submit for an account in the key's set: checked by the handler.
        .route("/v1/accounts", post(accounts::create))
        // Submit for the schedule's account (checked by the handler); reads need read.
        .route(
            "/v1/schedules/{name}",
            put(schedules::put_schedule).delete(schedules::delete_schedule),
        )
        .route(
            "/v1/jobs/cleanup.csv",
            post(csv_upload::upload).layer(DefaultBodyLimit::max(limits.csv_bytes)),
        )
        .route_layer(from_fn_with_state(state.clone(), require_submit));
    let admin = Router::new()
        .route("/v1/jobs/{id}/cancel", post(control::cancel))
        .route("/v1/jobs/{id}/retry", post(control::retry))
        .route("/v1/dead-letter/replay", post(dead_letter::replay))
        .route("/v1/queues/{kind}/pause", post(queues::pause))
        .route("/v1/queues/{kind}/resume", post(queues::resume))
        .route_layer(from_fn_with_state(state.clone(), require_admin));
    let open = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/openapi.json", get(health::openapi));
    Router::new()
        .merge(read)
        .merge(submit)
        .merge(admin)
        .merge(open)
        .fallback(|| async { ApiError::NotFound("no such resource".into()) })
        .layer(DefaultBodyLimit::max(limits.body_bytes))
        .layer(from_fn_with_state(state.clone(), timeout))
        .layer(from_fn_with_state(state.clone(), observe))
        .layer(from_fn(catch_panic))
        .layer(from_fn(as_problem))
        .layer(from_fn(request_id))
        .with_state(state)
}
