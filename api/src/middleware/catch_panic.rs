//! A panicking handler answers 500 like any other internal error: a problem with the
//! request id and a fixed sentence for the client; the panic's message and where it
//! happened are logged once, by `ApiError`, never sent (the panic hook leaves a caught
//! panic to its catcher: `drover::panics`).
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use drover::panics::Caught;

use crate::error::ApiError;

pub async fn catch_panic(req: Request, next: Next) -> Response {
    match Caught::new(next.run(req)).await {
        Ok(res) => res,
        Err(panic) => ApiError::Internal(format!("handler panicked: {panic}")).into_response(),
    }
}
