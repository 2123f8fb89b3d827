//! The middleware every marketplace call passes through, in this order:
//!
//! 1. which operation (from the matched route) and which account (from the access
//!    token; for document downloads, from the document id, as a pre-signed URL needs
//!    no token) — 401 otherwise;
//! 2. admission: quota window, reset, forced 429, usage-plan bucket, 5xx faults;
//! 3. latency, then the handler (or the fault's answer, or a connection reset);
//! 4. counting the outcome (and recording deletes), `x-amzn-RateLimit-Limit` and
//!    `x-amzn-RequestId` headers, and a trickled body if asked.
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, RawPathParams, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::conn::ConnHandle;
use super::error::ApiError;
use super::faults::Verdict;
use super::operation::Operation;
use super::state::Sim;
use super::stats::CallEnd;

/// The account a call was admitted for, for handlers to extract.
#[derive(Debug, Clone)]
pub(crate) struct Caller(pub(crate) String);

/// The access token header SP-API calls carry.
pub(crate) const ACCESS_TOKEN: &str = "x-amz-access-token";
const RATE_LIMIT_HEADER: HeaderName = HeaderName::from_static("x-amzn-ratelimit-limit");
const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-amzn-requestid");

pub(crate) async fn gate(State(sim): State<Arc<Sim>>, request: Request, next: Next) -> Response {
    let op = request
        .extensions()
        .get::<MatchedPath>()
        .and_then(|path| Operation::from_route(request.method(), path.as_str()));
    let Some(op) = op else {
        return next.run(request).await;
    };
    let (mut parts, body) = request.into_parts();
    let params = RawPathParams::from_request_parts(&mut parts, &()).await.ok();
    let param = |name: &str| {
        params
            .as_ref()
            .and_then(|p| p.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_owned()))
    };
    let conn = parts.extensions.get::<ConnectInfo<ConnHandle>>().map(|info| info.0.clone());

    let caller = if op == Operation::DownloadReportDocument {
        let owner = param("document_id").and_then(|doc| sim.lock().reports.by_document(&doc).map(|r| r.spec.account.clone()));
        owner.ok_or_else(|| {
            sim.count_unauthenticated(op);
            ApiError::NotFound("No such report document.".to_owned())
        })
    } else {
        let token = parts.headers.get(ACCESS_TOKEN).and_then(|v| v.to_str().ok());
        sim.authenticate(token, op)
    };
    let account = match caller {
        Ok(account) => account,
        Err(error) => return decorate(error.into_response(), sim.rate_limit(None, op).header_value()),
    };
    let limit = sim.rate_limit(Some(&account), op).header_value();
    let traceparent = parts.headers.get("traceparent").and_then(|v| v.to_str().ok());
    let Some(admission) = sim.admit(&account, op, traceparent) else {
        return decorate(
            ApiError::Unauthorized("The account of this token no longer exists.".to_owned()).into_response(),
            limit,
        );
    };
    let sku = if op == Operation::DeleteListingsItem { param("sku") } else { None };
    let mut call = InFlight {
        sim: sim.clone(),
        account: account.clone(),
        op,
        sku,
        open: true,
    };

    if !admission.latency.is_zero() {
        tokio::time::sleep(admission.latency).await;
    }
    let response = match admission.verdict {
        Some(Verdict::Reset) => {
            call.end(CallEnd::Reset);
            return reset_response(conn);
        }
        Some(Verdict::Reject(error)) => error.into_response(),
        None => {
            parts.extensions.insert(Caller(account));
            next.run(Request::from_parts(parts, body)).await
        }
    };
    call.end(CallEnd::Status(response.status().as_u16()));
    let response = decorate(response, limit);
    if admission.slow_body.is_zero() {
        response
    } else {
        trickle(response, admission.slow_body).await
    }
}

/// Counts a call's end exactly once, or frees its slot if the client went away first
/// (hyper drops the handler future then, and this with it).
struct InFlight {
    sim: Arc<Sim>,
    account: String,
    op: Operation,
    sku: Option<String>,
    open: bool,
}

impl InFlight {
    fn end(&mut self, end: CallEnd) {
        if std::mem::take(&mut self.open) {
            self.sim.finish(&self.account, self.op, end, self.sku.as_deref());
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.open {
            self.sim.abandon(&self.account, self.op);
        }
    }
}

fn decorate(mut response: Response, rate_limit: String) -> Response {
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&rate_limit) {
        headers.insert(RATE_LIMIT_HEADER, value);
    }
    if let Ok(value) = HeaderValue::from_str(&ulid::Ulid::generate().to_string()) {
        headers.insert(REQUEST_ID_HEADER, value);
    }
    response
}

/// Resets the connection (see `conn`). The response returned is never written: hyper
/// fails on the first write. Without a connection handle (not served by `serve`), the
/// body fails instead, which truncates the answer after its headers.
fn reset_response(conn: Option<ConnHandle>) -> Response {
    match conn {
        Some(conn) => {
            conn.reset();
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
        None => {
            let failing =
                futures::stream::once(async { Err::<Bytes, _>(std::io::Error::other("simulator: connection reset by fault injection")) });
            (StatusCode::OK, Body::from_stream(failing)).into_response()
        }
    }
}

/// Sends the body in ten pieces spread over `total`, headers first.
async fn trickle(response: Response, total: Duration) -> Response {
    let (parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return Response::from_parts(parts, Body::empty());
    };
    const PIECES: usize = 10;
    let piece = bytes.len().div_ceil(PIECES).max(1);
    let pause = total / PIECES as u32;
    let stream = futures::stream::unfold((bytes, 0usize), move |(bytes, offset)| async move {
        if offset >= bytes.len() {
            return None;
        }
        tokio::time::sleep(pause).await;
        let end = (offset + piece).min(bytes.len());
        Some((Ok::<_, Infallible>(bytes.slice(offset..end)), (bytes, end)))
    });
    Response::from_parts(parts, Body::from_stream(stream))
}
