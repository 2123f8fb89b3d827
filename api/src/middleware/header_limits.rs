//! Request headers past `api.server.max_headers` or `max_header_bytes` get a 431 problem
//! (with the request id, never echoing them) before any key check or handler runs.
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::config::HeaderLimits;
use crate::error::ApiError;

pub async fn header_limits(State(limits): State<HeaderLimits>, req: Request, next: Next) -> Response {
    let headers = req.headers();
    let bytes: usize = headers.iter().map(|(name, value)| name.as_str().len() + value.len()).sum();
    if headers.len() > limits.max_headers || bytes > limits.max_bytes {
        return ApiError::HeadersTooLarge(format!(
            "request headers too large: {} headers of {} bytes; at most {} headers and {} bytes",
            headers.len(),
            bytes,
            limits.max_headers,
            limits.max_bytes
        ))
        .into_response();
    }
    next.run(req).await
}
