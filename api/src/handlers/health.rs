//! Probes and metrics: no API key needed (metrics are served on the internal listener
//! only, see `metrics_listener.rs`; the OpenAPI document is served by `openapi.rs`).
use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use drover::queue::{JobStore, StoreError};

use crate::error::{ApiError, Problem, DURABILITY, PROBLEM_JSON};
use crate::readiness::Outcome;
use crate::state::AppState;
use crate::views::Health;

/// How long readiness waits for Redis before calling it down.
const READY_TIMEOUT: Duration = Duration::from_secs(1);

/// Liveness: 200 while the process serves requests.
#[utoipa::path(get, path = "/healthz", tag = "operations", security(()), responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok".into() })
}

/// Readiness: 200 when Redis answers and Postgres answers and takes writes (and the
/// migrations are applied), else a 503 problem naming the dependencies that are down.
/// Checked at most once a second.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    security(()),
    responses(
        (status = 200, body = Health),
        (status = 503, description = "A dependency (redis, postgres) is unavailable", body = Problem, content_type = PROBLEM_JSON),
    )
)]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    // Shared by the probes of one second (`readiness.rs`): no key is needed to send them.
    match state.readiness().get(|| check_dependencies(&state)).await {
        Outcome::Ready => Ok(Json(Health { status: "ready".into() })),
        Outcome::Down { dependency, .. } => Err(ApiError::NotReady { dependency }),
    }
}

async fn check_dependencies(state: &AppState) -> Outcome {
    let redis = async {
        match tokio::time::timeout(READY_TIMEOUT, state.store().ping()).await {
            Ok(Ok(())) => None,
            Ok(Err(StoreError::DurabilityUnsupported(why))) => Some((DURABILITY, why)),
            Ok(Err(e)) => Some(("redis", e.to_string())),
            Err(_) => Some(("redis", format!("no answer to PING within {READY_TIMEOUT:?}"))),
        }
    };
    let postgres = async {
        match tokio::time::timeout(READY_TIMEOUT, drover::db::ping(state.accounts().repo.pool())).await {
            Ok(Ok(())) if state.migrated() => None,
            Ok(Ok(())) => Some("migrations not applied yet".to_owned()),
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some(format!("no answer within {READY_TIMEOUT:?}")),
        }
    };
    let (redis, postgres) = tokio::join!(redis, postgres);
    let (dependency, cause) = match (redis, postgres) {
        (None, None) => return Outcome::Ready,
        (Some(r), None) => r,
        (None, Some(p)) => ("postgres", p),
        (Some((r, rc)), Some(p)) => (
            if r == DURABILITY { r } else { "redis and postgres" },
            format!("{r}: {rc}; postgres: {p}"),
        ),
    };
    Outcome::Down { dependency, cause }
}

/// Prometheus metrics: requests by route and status, latency histograms, queue depth per
/// state and lag per kind (read at scrape time). Served only on the internal listener
/// (`api.metrics_listen`), so it is not in the public OpenAPI document.
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let text = state.metrics().render(state.store()).await;
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text)
}
