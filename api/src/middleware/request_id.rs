//! `X-Request-Id`: taken from the client when sane, otherwise a new ULID; echoed on every
//! response and carried by the request's tracing span. Handlers and the error type read
//! it with [`current`], so every problem document can quote it.
//!
//! The span carries the request's trace too (`trace_id`, `span_id` on every line logged
//! inside it): the client's `traceparent` continued, or a new trace. A job submitted by
//! the request without a `traceparent` of its own gets [`traceparent`], so its runs
//! share the trace id of the request that made it.
use std::sync::Arc;

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use drover::job::trace_id_of;
use drover::trace_context::{log_ids_ahead, span_log_ids, TRACEPARENT};
use tokio_util::task::TaskTracker;
use tracing::Instrument;

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// What a request's task knows about itself.
struct Scope {
    id: Arc<str>,
    /// The request's own trace context (`00-<trace>-<span>-01`).
    traceparent: String,
    /// What a client that got no answer should do next.
    advice: Advice,
}

/// What a client that got no answer (a dependency down, a timeout) should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Advice {
    /// GET or HEAD: the request changed nothing; retry it.
    Retry,
    /// A write sent with an `Idempotency-Key` to a route that takes one: retry with it.
    RetryWithKey,
    /// A write sent without a key: it may have happened; look before retrying.
    /// `takes_key`: the route takes an `Idempotency-Key`, which makes a retry safe.
    CheckFirst { takes_key: bool },
}

/// The routes that take an `Idempotency-Key` (POST).
const KEYED_PATHS: [&str; 2] = ["/v1/jobs", "/v1/jobs/cleanup.csv"];

impl Advice {
    fn of(req: &Request) -> Advice {
        use axum::http::Method;
        if matches!(*req.method(), Method::GET | Method::HEAD) {
            Advice::Retry
        } else {
            let takes_key = *req.method() == Method::POST && KEYED_PATHS.contains(&req.uri().path());
            if takes_key && req.headers().contains_key("idempotency-key") {
                Advice::RetryWithKey
            } else {
                Advice::CheckFirst { takes_key }
            }
        }
    }
}

tokio::task_local! {
    static REQUEST: Arc<Scope>;
}

/// The id of the request being handled by this task, if any.
pub fn current() -> Option<String> {
    REQUEST.try_with(|s| s.id.to_string()).ok()
}

/// What the client of the request being handled by this task should do when it gets no
/// answer (outside a request: retry with the same key, the careful default).
pub fn advice() -> Advice {
    REQUEST.try_with(|s| s.advice).unwrap_or(Advice::RetryWithKey)
}

/// The trace context of the request being handled by this task, if any: the trace its
/// log lines carry, under the request's span.
pub fn traceparent() -> Option<String> {
    REQUEST.try_with(|s| s.traceparent.clone()).ok()
}

/// Spawns `work` as a task of its own, counted in `tasks` (the state's `background`,
/// which a shutdown waits for within its grace), that keeps the request's id, advice and
/// trace context, and its span: work that must run to its end even when the request
/// timeout drops the handler (its audit entry and log lines still name the request).
pub fn spawn_for_request<F>(tasks: &TaskTracker, work: F) -> tokio::task::JoinHandle<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let span = tracing::Span::current();
    match REQUEST.try_with(Arc::clone) {
        Ok(scope) => tasks.spawn(REQUEST.scope(scope, work).instrument(span)),
        Err(_) => tasks.spawn(work.instrument(span)),
    }
}

/// A client's id is kept when it is 1–128 characters of `[A-Za-z0-9._:-]`, so it can go
/// into logs and headers unescaped.
fn sane(v: &HeaderValue) -> Option<&str> {
    let s = v.to_str().ok()?;
    let ok = !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b));
    ok.then_some(s)
}

/// The outermost middleware: everything inside it (panics caught, errors rewritten as
/// problems) runs with the id in scope and in the span.
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
    let incoming = req
        .headers()
        .get(TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .filter(|tp| trace_id_of(tp).is_some())
        .map(str::to_owned);
    let ahead = log_ids_ahead(incoming.as_deref());
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method,
        path = %logged_path(req.uri().path()),
        trace_id = ahead.as_ref().map(|(t, _)| t.as_str()),
        span_id = ahead.as_ref().map(|(_, s)| s.as_str()),
        // The API key's name, once the guard knows it (`auth::guard`).
        key = tracing::field::Empty,
    );
    let (trace, span_id) = span_log_ids(&span, incoming.as_deref(), ahead);
    let scope = Arc::new(Scope {
        id: id.clone(),
        traceparent: format!("00-{trace}-{span_id}-01"),
        advice: Advice::of(&req),
    });
    let mut res = REQUEST.scope(scope, next.run(req)).instrument(span).await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(X_REQUEST_ID.clone(), v);
    }
    res
}

/// Most bytes of a request's path its log lines carry: a path is the client's to make
/// as long as hyper takes (64 KiB), and every line of the request repeats it.
const LOGGED_PATH_BYTES: usize = 256;

/// The path as logged: at most [`LOGGED_PATH_BYTES`], cut on a character, with `…` and
/// the length when cut.
fn logged_path(path: &str) -> std::borrow::Cow<'_, str> {
    if path.len() <= LOGGED_PATH_BYTES {
        return path.into();
    }
    let mut end = LOGGED_PATH_BYTES;
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…({} bytes)", &path[..end], path.len()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_path_is_logged_cut_with_its_length() {
        assert_eq!(logged_path("/v1/jobs/x"), "/v1/jobs/x");
        let long = format!("/v1/{}", "é".repeat(10_000));
        let logged = logged_path(&long);
        assert!(logged.len() < 300, "{}", logged.len());
        assert!(logged.ends_with(&format!("…({} bytes)", long.len())), "{logged}");
    }

    #[test]
    fn only_short_plain_ids_are_kept() {
        assert_eq!(sane(&HeaderValue::from_static("abc-123_x.y:z")), Some("abc-123_x.y:z"));
        assert_eq!(sane(&HeaderValue::from_static("")), None);
        assert_eq!(sane(&HeaderValue::from_static("has space")), None);
        assert_eq!(sane(&HeaderValue::from_str(&"a".repeat(129)).unwrap()), None);
    }
}
