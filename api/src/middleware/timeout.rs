//! A bound on how long a request may take to be answered (its headers: a stream such as
//! the job events runs on afterwards). Past it the client gets a 503 problem.
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::state::AppState;

/// When the request is answered with a 503 at the latest: a handler that would rather
/// answer itself (the console's long actions) reads it from the request's extensions.
#[derive(Debug, Clone, Copy)]
pub struct Deadline(pub tokio::time::Instant);

pub async fn timeout(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let limit = state.limits().request_timeout;
    req.extensions_mut().insert(Deadline(tokio::time::Instant::now() + limit));
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(res) => res,
        Err(_) => ApiError::Timeout(limit).into_response(),
    }
}
