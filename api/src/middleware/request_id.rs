//! `X-Request-Id`: taken from the client when sane, otherwise a new ULID; echoed on every
//! response and carried by the request's tracing span and every problem document.
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use axum::extract::Request;
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::FutureExt;
use tracing::Instrument;

use crate::error::{ApiError, IsProblem};

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

tokio::task_local! {
    static REQUEST_ID: Arc<str>;
}

/// The id of the request being handled by this task, if any.
pub fn current() -> Option<String> {
    REQUEST_ID.try_with(|id| id.to_string()).ok()
}

/// A client's id is kept when it is 1–128 characters of `[A-Za-z0-9._:-]`, so it can go
/// into logs and headers unescaped.
fn sane(v: &HeaderValue) -> Option<&str> {
    let s = v.to_str().ok()?;
    let ok = !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b));
    ok.then_some(s)
}

pub async fn request_id(req: Request, next: Next) -> Response {
    let id: Arc<str> = req
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(sane)
        .map(Arc::from)
        .unwrap_or_else(|| Arc::from(ulid::Ulid::generate().to_string()));
    // The method from a fixed set: any token is a method, so the raw one would let anyone
    // write whatever they like, at any length, into every log line of the request.
    let method = super::observe::method_label(req.method());
    let span = tracing::info_span!("request", request_id = %id, method, path = %req.uri().path());
    let run = AssertUnwindSafe(next.run(req)).catch_unwind();
    let res = REQUEST_ID
        .scope(id.clone(), async move {
            let res = match run.await {
                Ok(res) => res,
                Err(panic) => {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    ApiError::Internal(format!("handler panicked: {what}")).into_response()
                }
            };
            as_problem(res)
        })
        .instrument(span)
        .await;
    let mut res = res;
    if let Ok(v) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(X_REQUEST_ID.clone(), v);
    }
    res
}

/// Error responses made outside our handlers (axum's 404/405) become problems too, so a
/// client only ever has to read one error shape.
fn as_problem(res: Response) -> Response {
    let status = res.status();
    if !(status.is_client_error() || status.is_server_error()) || res.extensions().get::<IsProblem>().is_some() {
        return res;
    }
    let err = match status {
        StatusCode::METHOD_NOT_ALLOWED => {
            let allow = res.headers().get(header::ALLOW).cloned();
            let mut r = ApiError::MethodNotAllowed.into_response();
            if let Some(allow) = allow {
                r.headers_mut().insert(header::ALLOW, allow);
            }
            return r;
        }
        StatusCode::NOT_FOUND => ApiError::NotFound("no such resource".into()),
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge("request body too large".into()),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType("unsupported content type".into()),
        s if s.is_server_error() => ApiError::Internal(format!("unhandled {s} response")),
        s => ApiError::BadRequest(s.canonical_reason().unwrap_or("bad request").to_lowercase()),
    };
    err.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_short_plain_ids_are_kept() {
        assert_eq!(sane(&HeaderValue::from_static("abc-123_x.y:z")), Some("abc-123_x.y:z"));
        assert_eq!(sane(&HeaderValue::from_static("")), None);
        assert_eq!(sane(&HeaderValue::from_static("has space")), None);
        assert_eq!(sane(&HeaderValue::from_str(&"a".repeat(129)).unwrap()), None);
    }
}
