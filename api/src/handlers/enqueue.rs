//! What every way of submitting a job shares: the account check, the idempotency key
//! (scoped to the API key), the trace context, and the 202 / 200 answer with why the
//! job waits (`waiting`, as `GET /v1/jobs/{id}` gives it).
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use drover::queue::{EnqueueError, Enqueued, JobStore, NewJob, StoreError};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::SubmitHeaders;
use crate::idempotency::IdempotencyClaims;
use crate::state::AppState;
use crate::views::{status_url, Accepted, WaitingView};
use crate::waiting;

pub async fn enqueue(state: &AppState, caller: &Caller, mut job: NewJob, headers: SubmitHeaders) -> Result<Response, ApiError> {
    let (kind, account) = (job.payload.kind(), job.payload.account_id().clone());
    caller.check_account(account.as_str())?;
    check_payload_size(state, &job)?;
    let mut claim = None;
    if let Some(key) = headers.idempotency_key {
        let scoped = IdempotencyClaims::scoped(&caller.name, &key);
        claim = Some(state.claims().claim(&scoped, kind, account.as_str()).await?);
        job.idempotency_key = Some(scoped);
    }
    // Every job gets a trace: the caller's when it sent one, the request's otherwise (the
    // trace id its log lines carry), so its runs can be found in the tracing UI either way.
    job.traceparent = Some(headers.traceparent.unwrap_or_else(request_traceparent));
    job.trigger.get_or_insert_with(|| "api".to_owned());
    let enqueued = enqueue_answering(state, job).await;
    // Refused with nothing written: the key stays free for another request.
    let refused = match &enqueued {
        Err(EnqueueError::Invalid(_) | EnqueueError::AccountFull { .. } | EnqueueError::Store(StoreError::DurabilityUnsupported(_))) => {
            true
        }
        Err(EnqueueError::Store(e)) => e.is_out_of_memory(),
        _ => false,
    };
    if let (Some(claim), true) = (claim, refused) {
        state.claims().release(claim).await;
    }
    match enqueued {
        Ok((e, waiting)) => {
            tracing::info!(job_id = %e.id, kind = %kind, created = e.created, key = %caller.name, "job accepted");
            Ok(accepted(e, waiting.map(|w| w.seen_by(caller.accounts.is_some()))))
        }
        Err(EnqueueError::IdempotencyConflict { existing }) => Err(ApiError::Conflict(format!(
            "this Idempotency-Key was already used with a different request (job {existing}); use a new key"
        ))),
        Err(EnqueueError::Invalid(why)) => Err(ApiError::field("body", why)),
        Err(EnqueueError::AccountFull { unfinished }) => {
            tracing::info!(kind = %kind, account = %account, unfinished, key = %caller.name, "job refused: its account is full");
            Err(ApiError::AccountFull(format!(
                "account {account} already has {unfinished} unfinished {kind} jobs, the most it may keep \
                 (api.jobs.max_unfinished_per_account); nothing was written: submit again once some have ended"
            )))
        }
        Err(EnqueueError::Store(e)) => Err(e.into()),
    }
}

/// 413 when the payload would store more than `api.jobs.max_payload_bytes`: every read
/// of the whole job (a worker's lease, `GET /v1/jobs/{id}`) costs its size again.
fn check_payload_size(state: &AppState, job: &NewJob) -> Result<(), ApiError> {
    let max = state.limits().payload_bytes;
    let bytes = serde_json::to_vec(&job.payload).map_or(usize::MAX, |v| v.len());
    if bytes > max {
        return Err(ApiError::PayloadTooLarge(format!(
            "the job's payload is {bytes} bytes once stored; at most {max} are allowed: split the SKUs over several jobs"
        )));
    }
    Ok(())
}

/// Enqueues `job` and says why it waits: the queue's reason comes back in the enqueue's
/// own reply (one round trip), and, for the kinds a quota cooldown stops, the account's
/// guards (its cooldown, an open breaker, the seller's rate) are read beside it. The job
/// is stored whatever the guards' read does: a failure leaves the queue's own reason
/// rather than failing the submit, whose answer must say the job exists.
pub(super) async fn enqueue_answering(state: &AppState, job: NewJob) -> Result<(Enqueued, Option<WaitingView>), EnqueueError> {
    let (kind, account) = (job.payload.kind(), job.payload.account_id().clone());
    let (enqueued, guard) = tokio::join!(
        state.store().enqueue(job.answering_waiting()),
        waiting::guard_for(state, kind, &account)
    );
    let mut e = enqueued?;
    let waiting = match guard {
        Ok(guard) => waiting::combine(e.waiting.take(), guard.as_ref()).map(Into::into),
        // the queue's own reason, as GET and the listings answer then (the failure is
        // logged by `waiting::guard_for`, once an outage)
        Err(_) => e.waiting.take().map(Into::into),
    };
    Ok((e, waiting))
}

/// 202 for a new job; 200 when an existing one is returned (idempotent replay, or the
/// account's sync that is already queued or running).
fn accepted(e: Enqueued, waiting: Option<WaitingView>) -> Response {
    let url = status_url(&e.id);
    let status = if e.created { StatusCode::ACCEPTED } else { StatusCode::OK };
    let body = Accepted {
        id: e.id,
        state: e.state,
        status_url: url.clone(),
        waiting,
    };
    (status, [(header::LOCATION, url)], Json(body)).into_response()
}

/// The trace context of the request being served (its log lines' trace), or a fresh
/// one outside a request.
pub(super) fn request_traceparent() -> String {
    crate::middleware::request_id::traceparent().unwrap_or_else(new_traceparent)
}

/// A fresh W3C traceparent: ULIDs give 80 random bits per id, enough for trace ids.
fn new_traceparent() -> String {
    let trace = ulid::Ulid::generate().0;
    let span = ulid::Ulid::generate().0 as u64;
    format!("00-{trace:032x}-{:016x}-01", span.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_traceparent_is_well_formed_and_unique() {
        let a = new_traceparent();
        assert!(drover::job::trace_id_of(&a).is_some(), "{a}");
        assert_ne!(a, new_traceparent());
    }
}
