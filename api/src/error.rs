//! The one error type of the API. Each variant decides the status code; every error
//! leaves as `application/problem+json` (RFC 9457) carrying the request id. A 5xx never
//! shows its cause to the client: the cause is logged once, here, with the request id.
use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use drover::job::FieldError;
use drover::queue::StoreError;
use serde::Serialize;
use utoipa::ToSchema;

use crate::middleware::request_id::{self, Advice};

pub const PROBLEM_JSON: &str = "application/problem+json";
/// The "dependency" `/readyz` names when Redis answers but cannot provide
/// `queue.durability` (too old for WAITAOF, AOF off).
pub const DURABILITY: &str = "queue.durability";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not JSON at all (syntax), or a header is unusable.
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    /// The key is valid but its role or accounts do not allow this.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// The job's state does not allow it, or an idempotency key was reused differently.
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// Too many request headers, or too many bytes of them.
    #[error("{0}")]
    HeadersTooLarge(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    /// Fields that failed validation, each named.
    #[error("invalid request: {0:?}")]
    Validation(Vec<FieldError>),
    #[error("rate limit exceeded; retry in {retry_after:?}")]
    RateLimited { retry_after: Duration },
    /// Past the cap on open event streams (per key or per process).
    #[error("{detail}")]
    TooManyStreams { detail: String, retry_after: Duration },
    /// 429: the key (or the process) has as many whole-record reads in flight as it may.
    #[error("{detail}")]
    TooManyInFlight { detail: String, retry_after: Duration },
    /// 429: the job's account keeps as many unfinished jobs of its kind as it may
    /// (`api.jobs.max_unfinished_per_account`); nothing was written.
    #[error("{0}")]
    AccountFull(String),
    /// 503: the process holds as many request bodies in flight as it may
    /// (`body_budget.rs`); nothing was read or done.
    #[error("{0}")]
    Busy(String),
    /// Redis is at its memory limit (`maxmemory`) and refused the write before it ran:
    /// nothing was written. Reads still answer.
    #[error("the queue is out of memory: {cause}")]
    QueueFull { cause: String },
    /// A dependency (Redis) did not answer: the outcome is unknown.
    #[error("{dependency} unavailable: {cause}")]
    Unavailable { dependency: &'static str, cause: String },
    /// The write was applied but did not reach `queue.durability` in time: the same
    /// request again (same Idempotency-Key) returns the same job once it has.
    #[error("accepted but not yet durable: {cause}")]
    NotDurable { cause: String },
    /// Redis cannot provide the configured `queue.durability`; nothing was written.
    #[error("queue durability unavailable: {cause}")]
    DurabilityUnsupported { cause: String },
    /// `/readyz`: a dependency is down. Logged by `readiness.rs` when it changes, not here
    /// (probes need no key: one line per probe would let anyone flood the log).
    #[error("not ready: {dependency} did not answer")]
    NotReady { dependency: &'static str },
    /// A third party (the marketplace) could not be reached; the detail says what to do.
    #[error("{0}")]
    UpstreamUnavailable(String),
    #[error("request timed out after {0:?}")]
    Timeout(Duration),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::Validation(vec![FieldError::new(field, message)])
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::HeadersTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::RateLimited { .. }
            | ApiError::TooManyStreams { .. }
            | ApiError::TooManyInFlight { .. }
            | ApiError::AccountFull(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable { .. }
            | ApiError::QueueFull { .. }
            | ApiError::Busy(_)
            | ApiError::NotDurable { .. }
            | ApiError::DurabilityUnsupported { .. }
            | ApiError::NotReady { .. }
            | ApiError::UpstreamUnavailable(_)
            | ApiError::Timeout(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// (slug for `type`, title): stable, so clients can branch on `type`.
    pub(crate) fn kind(&self) -> (&'static str, &'static str) {
        match self {
            ApiError::BadRequest(_) => ("bad-request", "Bad request"),
            ApiError::Unauthorized(_) => ("unauthorized", "Missing or invalid API key"),
            ApiError::Forbidden(_) => ("forbidden", "Not allowed for this key"),
            ApiError::NotFound(_) => ("not-found", "Not found"),
            ApiError::Conflict(_) => ("conflict", "Conflict"),
            ApiError::PayloadTooLarge(_) => ("payload-too-large", "Request body too large"),
            ApiError::UnsupportedMediaType(_) => ("unsupported-media-type", "Unsupported media type"),
            ApiError::HeadersTooLarge(_) => ("headers-too-large", "Request headers too large"),
            ApiError::MethodNotAllowed => ("method-not-allowed", "Method not allowed"),
            ApiError::Validation(_) => ("validation", "Invalid request"),
            ApiError::RateLimited { .. } => ("rate-limited", "Too many requests"),
            ApiError::TooManyStreams { .. } => ("too-many-streams", "Too many open event streams"),
            ApiError::TooManyInFlight { .. } => ("too-many-in-flight", "Too many reads in flight"),
            ApiError::AccountFull(_) => ("account-full", "Too many unfinished jobs for this account"),
            ApiError::Unavailable { .. } | ApiError::NotReady { .. } | ApiError::DurabilityUnsupported { .. } => {
                ("unavailable", "Service unavailable")
            }
            ApiError::Busy(_) => ("busy", "Too many request bodies in flight"),
            ApiError::QueueFull { .. } => ("queue-full", "Queue out of memory"),
            ApiError::NotDurable { .. } => ("not-durable", "Accepted but not yet durable"),
            ApiError::UpstreamUnavailable(_) => ("upstream-unavailable", "Upstream service unavailable"),
            ApiError::Timeout(_) => ("timeout", "Request timed out"),
            ApiError::Internal(_) => ("internal", "Internal server error"),
        }
    }

    /// What the client is told. For 5xx this is a fixed sentence, never the cause.
    pub(crate) fn detail(&self) -> String {
        match self {
            ApiError::BadRequest(d)
            | ApiError::Unauthorized(d)
            | ApiError::Forbidden(d)
            | ApiError::NotFound(d)
            | ApiError::Conflict(d)
            | ApiError::PayloadTooLarge(d)
            | ApiError::UnsupportedMediaType(d)
            | ApiError::HeadersTooLarge(d)
            | ApiError::AccountFull(d)
            | ApiError::UpstreamUnavailable(d)
            | ApiError::TooManyStreams { detail: d, .. }
            | ApiError::TooManyInFlight { detail: d, .. } => d.clone(),
            ApiError::Busy(d) => d.clone(),
            ApiError::MethodNotAllowed => "this method is not allowed on this path".into(),
            ApiError::Validation(errors) => match errors.as_slice() {
                [one] => format!("{}: {}", one.field, one.message),
                many => format!("{} fields are invalid", many.len()),
            },
            ApiError::RateLimited { retry_after } => format!(
                "this key sent more requests than its limit allows; retry in {} s",
                retry_after_secs(*retry_after)
            ),
            // A reply lost after the script ran looks the same as one never sent: a write
            // may have happened (review F8).
            ApiError::Unavailable { dependency, .. } => format!("dependency {dependency} did not answer; {}", unsure()),
            // The write stays applied: only a retry with its key is a safe one.
            ApiError::NotDurable { .. } => match request_id::advice() {
                Advice::RetryWithKey => "accepted but not yet durable: retry with the same Idempotency-Key".into(),
                _ => "accepted but not yet durable: the job was written and may be lost if Redis fails now; \
                      check before you retry (a retry without an Idempotency-Key makes another job)"
                    .into(),
            },
            ApiError::DurabilityUnsupported { .. } => {
                "the queue cannot store jobs as durably as this service is configured to; nothing was written".into()
            }
            ApiError::QueueFull { .. } => "the queue is at its memory limit and takes no new writes now; \
                                           nothing was written: retry later (reads still answer)"
                .into(),
            ApiError::NotReady { dependency: DURABILITY } => {
                "not ready: redis cannot provide the configured queue.durability (see the log)".into()
            }
            ApiError::NotReady { dependency } => format!("not ready: {dependency} did not answer"),
            ApiError::Timeout(after) => format!("the request did not complete within {} ms; {}", after.as_millis(), unsure()),
            ApiError::Internal(_) => "an internal error occurred; quote the request id when reporting it".into(),
        }
    }

    /// When the client may try again, as `Retry-After` says it (the API's problem and the
    /// console's error page alike).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::RateLimited { retry_after }
            | ApiError::TooManyStreams { retry_after, .. }
            | ApiError::TooManyInFlight { retry_after, .. } => Some(*retry_after),
            // A retry of a write not yet durable is asked for only with its key.
            ApiError::NotDurable { .. } => (request_id::advice() == Advice::RetryWithKey).then_some(Duration::from_secs(1)),
            ApiError::Unavailable { .. } | ApiError::Busy(_) | ApiError::NotReady { .. } | ApiError::Timeout(_) => {
                Some(Duration::from_secs(1))
            }
            ApiError::DurabilityUnsupported { .. } => Some(Duration::from_secs(30)),
            ApiError::QueueFull { .. } => Some(Duration::from_secs(5)),
            // room comes back as the account's jobs end: no sooner than a run or two
            ApiError::AccountFull(_) => Some(Duration::from_secs(30)),
            ApiError::UpstreamUnavailable(_) => Some(Duration::from_secs(5)),
            _ => None,
        }
    }
}

/// What a request that got no answer may have done, and how to retry it safely.
fn unsure() -> &'static str {
    match request_id::advice() {
        Advice::Retry => "this read changed nothing: retry the request",
        Advice::RetryWithKey => "the outcome is unknown (the write may have happened): retry with the same Idempotency-Key",
        Advice::CheckFirst { takes_key: true } => {
            "the outcome is unknown (the write may have happened): check before you retry \
             (send an Idempotency-Key to make a retry safe)"
        }
        Advice::CheckFirst { takes_key: false } => "the outcome is unknown (the change may have happened): check before you retry",
    }
}

/// Whole seconds, rounded up, at least 1 (what `Retry-After` can say).
pub fn retry_after_secs(d: Duration) -> u64 {
    d.as_millis().div_ceil(1000).max(1) as u64
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            e if e.is_out_of_memory() => ApiError::QueueFull { cause: e.to_string() },
            StoreError::Redis(e) => ApiError::Unavailable {
                dependency: "redis",
                cause: e.to_string(),
            },
            StoreError::Protocol(p) => ApiError::Internal(format!("unexpected reply from the queue: {p}")),
            StoreError::Setup(m) => ApiError::Internal(format!("the queue cannot be used as configured: {m}")),
            StoreError::NotDurable(n) => ApiError::NotDurable { cause: n.to_string() },
            StoreError::DurabilityUnsupported(cause) => ApiError::DurabilityUnsupported { cause },
        }
    }
}

impl From<drover::db::DbError> for ApiError {
    fn from(e: drover::db::DbError) -> Self {
        use drover::db::DbError;
        match e {
            DbError::Unavailable(cause) => ApiError::Unavailable {
                dependency: "postgres",
                cause,
            },
            DbError::Conflict(d) => ApiError::Conflict(d),
            DbError::NotFound(d) => ApiError::NotFound(d),
            DbError::Other(cause) => ApiError::Internal(format!("postgres: {cause}")),
        }
    }
}

impl From<drover::resilience::ResilienceError> for ApiError {
    fn from(e: drover::resilience::ResilienceError) -> Self {
        use drover::resilience::ResilienceError;
        match e {
            ResilienceError::Store(cause) | ResilienceError::Unavailable(cause) => ApiError::Unavailable {
                dependency: "redis",
                cause,
            },
            other => ApiError::Internal(format!("resilience: {other}")),
        }
    }
}

impl From<redis::RedisError> for ApiError {
    fn from(e: redis::RedisError) -> Self {
        StoreError::Redis(e).into()
    }
}

/// The problem document (RFC 9457) every error response carries.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A stable URI naming the kind of problem, e.g. `urn:drover:problem:validation`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Echoes `X-Request-Id`; quote it when reporting a problem.
    pub request_id: String,
    /// Present on 422: one entry per invalid field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
}

/// Marks a response whose body is already a problem document, or a console page (HTML
/// for a browser, which `as_problem` must not turn into JSON).
#[derive(Debug, Clone, Copy)]
pub struct IsProblem;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let request_id = request_id::current().unwrap_or_default();
        match &self {
            ApiError::Internal(cause) => tracing::error!(%request_id, status = status.as_u16(), cause = %cause, "request failed"),
            ApiError::Unavailable { dependency, cause } => {
                tracing::warn!(%request_id, status = status.as_u16(), dependency, cause = %cause, "dependency unavailable")
            }
            ApiError::QueueFull { cause } => {
                tracing::warn!(%request_id, status = status.as_u16(), cause = %cause, "Redis is at its memory limit (maxmemory); the write was refused")
            }
            ApiError::NotDurable { cause } => {
                tracing::warn!(%request_id, status = status.as_u16(), cause = %cause, "write accepted but not yet durable; the client is told to retry")
            }
            ApiError::Timeout(after) => {
                tracing::warn!(%request_id, status = status.as_u16(), timeout_ms = after.as_millis() as u64, "request timed out")
            }
            _ => {}
        }
        let (slug, title) = self.kind();
        let retry_after = self.retry_after();
        let unauthorized = matches!(self, ApiError::Unauthorized(_));
        let detail = self.detail();
        let errors = match self {
            ApiError::Validation(errors) => Some(errors),
            _ => None,
        };
        let problem = Problem {
            kind: format!("urn:drover:problem:{slug}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail,
            request_id,
            errors,
        };
        let body = serde_json::to_vec(&problem).unwrap_or_else(|_| b"{}".to_vec());
        let mut res = (status, body).into_response();
        let headers = res.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(after) = retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs(after)));
        }
        if unauthorized {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"drover\""));
        }
        res.extensions_mut().insert(IsProblem);
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }

    #[test]
    fn a_store_outage_is_a_503_that_does_not_show_its_cause() {
        let e: ApiError = redis::RedisError::from(std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "secret-host:6379")).into();
        assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(!e.detail().contains("secret-host"));
        assert!(e.detail().contains("redis"));
        // It may have been written: the safe advice is a retry with the same key.
        assert!(e.detail().contains("retry with the same Idempotency-Key"), "{}", e.detail());
        assert!(!e.detail().contains("nothing was"), "{}", e.detail());
    }
}
