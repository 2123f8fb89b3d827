//! The HTTP server: routes, and `serve` on a listener until shutdown.
use std::future::Future;
use std::sync::Arc;

use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;

use super::config::SimConfig;
use super::conn::{ConnHandle, ResettableListener};
use super::error::ApiError;
use super::operation::paths;
use super::state::Sim;
use super::{admin, gate, listings, lwa, orders, reports};

fn router(sim: Arc<Sim>) -> Router {
    let marketplace = Router::new()
        .route(paths::ORDERS, get(orders::get_orders))
        .route(paths::LISTINGS_ITEM, get(listings::get_item).delete(listings::delete_item))
        .route(paths::REPORTS, post(reports::create_report).get(reports::get_reports))
        .route(paths::REPORT, get(reports::get_report))
        .route(paths::DOCUMENT, get(reports::get_document))
        .route(paths::DOWNLOAD, get(reports::download))
        .route_layer(middleware::from_fn_with_state(sim.clone(), gate::gate));
    Router::new()
        .merge(marketplace)
        .route(paths::TOKEN, post(lwa::token))
        .merge(admin::routes())
        .route("/healthz", get(|| async { "ok" }))
        .fallback(not_found)
        .with_state(sim)
}

async fn not_found() -> Response {
    ApiError::NotFound("Resource not found.".to_owned()).into_response()
}

/// Serves the simulator on `listener` until `shutdown` completes, then lets open
/// requests finish. Fails on an invalid configuration or a server error.
pub async fn serve(listener: TcpListener, config: SimConfig, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    config
        .validate()
        .map_err(|e| anyhow::anyhow!("invalid simulator configuration: {e}"))?;
    let addr = listener.local_addr()?;
    let sim = Arc::new(Sim::new(config, format!("http://{addr}")));
    let app = router(sim).into_make_service_with_connect_info::<ConnHandle>();
    axum::serve(ResettableListener(listener), app)
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}
