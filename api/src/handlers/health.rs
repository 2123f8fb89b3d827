//! Probes, metrics and the OpenAPI document: no API key needed.
use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use drover::queue::JobStore;

use crate::error::{ApiError, Problem, PROBLEM_JSON};
use crate::state::AppState;
use crate::views::Health;

/// How long readiness waits for Redis before calling it down.
const READY_TIMEOUT: Duration = Duration::from_secs(1);

/// Liveness: 200 while the process serves requests.
#[utoipa::path(get, path = "/healthz", tag = "operations", security(()), responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok".into() })
}

/// Readiness: 200 when Redis answers, else a 503 problem naming the dependency.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    security(()),
    responses(
        (status = 200, body = Health),
        (status = 503, description = "A dependency (redis) is unavailable", body = Problem, content_type = PROBLEM_JSON),
    )
)]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    let unavailable = |cause: String| ApiError::Unavailable {
        dependency: "redis",
        cause,
    };
    match tokio::time::timeout(READY_TIMEOUT, state.store().ping()).await {
        Ok(Ok(())) => Ok(Json(Health { status: "ready".into() })),
        Ok(Err(e)) => Err(unavailable(e.to_string())),
        Err(_) => Err(unavailable(format!("no answer to PING within {READY_TIMEOUT:?}"))),
    }
}

/// Prometheus metrics: requests by route and status, latency histograms, queue depth per
/// state and lag per kind (read at scrape time).
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    security(()),
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String))
)]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let text = state.metrics().render(state.store()).await;
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text)
}

/// This API's OpenAPI document, generated from the code.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    security(()),
    responses((status = 200, description = "OpenAPI 3.1 document", content_type = "application/json", body = Object))
)]
pub async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], crate::openapi::json())
}
