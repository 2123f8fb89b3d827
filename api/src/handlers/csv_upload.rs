//! `POST /v1/jobs/cleanup.csv`: a cleanup job from a CSV of SKUs.
use axum::extract::{RawQuery, State};
use axum::response::Response;
use drover::job::{AccountId, CleanupPayload, FieldError, JobPayload, MarketplaceId};
use drover::queue::NewJob;
use serde::Deserialize;
use utoipa::IntoParams;

use super::enqueue::enqueue;
use crate::auth::Caller;
use crate::csv_skus::{parse_skus, CsvError};
use crate::error::{ApiError, Problem, PROBLEM_JSON};
use crate::extract::{query, CsvBody, SubmitHeaders};
use crate::problem_responses::{Forbidden, SubmitLimited, Unauthorized};
use crate::state::AppState;
use crate::views::Accepted;

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CsvParams {
    /// The seller account whose listings are deleted.
    #[param(example = "acme-eu", required = true)]
    account_id: Option<String>,
    #[param(example = "A1PA6795UKMFR9", required = true)]
    marketplace_id: Option<String>,
}

/// Enqueue a cleanup job from a CSV body: one SKU per line, optional `sku` header.
#[utoipa::path(
    post,
    path = "/v1/jobs/cleanup.csv",
    tag = "jobs",
    params(
        CsvParams,
        ("Idempotency-Key" = Option<String>, Header, description = "As for POST /v1/jobs."),
        ("traceparent" = Option<String>, Header, description = "W3C trace context to continue."),
    ),
    request_body(content = String, content_type = "text/csv", description = "SKUs, one per line; an optional first line `sku`"),
    responses(
        (status = 202, description = "Accepted: a new cleanup job", body = Accepted, headers(("Location" = String))),
        (status = 200, description = "Idempotent replay", body = Accepted, headers(("Location" = String))),
        Unauthorized,
        Forbidden,
        (status = 409, description = "Idempotency key reused with another request", body = Problem, content_type = PROBLEM_JSON),
        (status = 413, description = "Body over the CSV size limit, or the payload over api.jobs.max_payload_bytes once stored", body = Problem, content_type = PROBLEM_JSON),
        (status = 415, description = "Not text/csv", body = Problem, content_type = PROBLEM_JSON),
        (status = 422, description = "Bad query parameters, too many rows, or bad rows (named by line)", body = Problem, content_type = PROBLEM_JSON),
        SubmitLimited,
        (status = 503, description = "Redis did not answer; the outcome is unknown: retry with the same Idempotency-Key", body = Problem, content_type = PROBLEM_JSON),
    )
)]
pub async fn upload(
    State(state): State<AppState>,
    caller: Caller,
    headers: SubmitHeaders,
    RawQuery(raw): RawQuery,
    CsvBody(body): CsvBody,
) -> Result<Response, ApiError> {
    let params: CsvParams = query(raw.as_deref())?;
    let mut errors = Vec::new();
    let account_id = required(params.account_id, "account_id", AccountId::parse, &mut errors);
    let marketplace_id = required(params.marketplace_id, "marketplace_id", MarketplaceId::parse, &mut errors);
    let (Some(account_id), Some(marketplace_id)) = (account_id, marketplace_id) else {
        return Err(ApiError::Validation(errors));
    };
    // Before reading thousands of rows: is this key allowed to act for the account?
    caller.check_account(account_id.as_str())?;
    let skus = parse_skus(&body, state.limits().csv_rows).map_err(|e| match e {
        CsvError::TooManyRows { max, line } => ApiError::field(format!("line {line}"), format!("more than {max} SKUs; split the upload")),
        CsvError::Rows(rows) => ApiError::Validation(rows),
        CsvError::Empty => ApiError::field("body", "holds no SKUs"),
    })?;
    let payload = JobPayload::Cleanup(CleanupPayload {
        account_id,
        marketplace_id,
        skus,
    });
    payload.validate().map_err(|e| ApiError::Validation(e.0))?;
    enqueue(&state, &caller, NewJob::new(payload), headers).await
}

fn required<T>(value: Option<String>, field: &str, parse: fn(String) -> Result<T, String>, errors: &mut Vec<FieldError>) -> Option<T> {
    match value {
        None => {
            errors.push(FieldError::new(field, "is required"));
            None
        }
        Some(v) => parse(v).map_err(|why| errors.push(FieldError::new(field, why))).ok(),
    }
}
