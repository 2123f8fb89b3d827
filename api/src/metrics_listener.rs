//! The internal listener for Prometheus (`api.metrics_listen`, default `0.0.0.0:9465`):
//! `GET /metrics` only. The public listener does not serve it, because the queue gauges
//! and per-route request counts are queue-wide, what `GET /v1/queues` refuses to scoped
//! keys. Keep this port off the Service and the Ingress; Prometheus scrapes pods on it.
use axum::middleware::from_fn;
use axum::routing::get;
use axum::Router;

use crate::error::ApiError;
use crate::handlers::health;
use crate::middleware::{catch_panic::catch_panic, problem::as_problem, request_id::request_id};
use crate::state::AppState;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(health::metrics))
        .fallback(|| async { ApiError::NotFound("only /metrics is served here".into()) })
        // The public router's outer three, in the same order: one error shape everywhere.
        .layer(from_fn(catch_panic))
        .layer(from_fn(as_problem))
        .layer(from_fn(request_id))
        .with_state(state)
}
