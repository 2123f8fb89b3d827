//! `GET /v1/jobs/{id}/items`: what a job did per item — cleanup SKUs, backfill windows,
//! sync pages — from PostgreSQL, in order, cursor paginated, optionally one outcome.
use axum::extract::{Path, RawQuery, State};
use axum::Json;
use chrono::{DateTime, Utc};
use drover::data::items::{self, ItemOutcome};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{load_summary, walks};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::query;
use crate::problem_responses::{Invalid, JobNotFound, RateLimited, Unauthorized, Unavailable};
use crate::state::AppState;

/// Read as every listing reads its parameters: an empty one is absent, and unknown ones
/// are ignored (found by the audit of 2026-12-07: `?outcome=&limit=`, what a form sends
/// for "no filter", was a 422 here only).
#[derive(Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ItemsParams {
    /// pending, done, deleted, absent or failed.
    outcome: Option<String>,
    /// 1 to 1000, default 100.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// One item of a job.
#[derive(Serialize, ToSchema)]
pub struct ItemView {
    /// The SKU, the window (`start/end`) or the page (`orders/page-00001`).
    pub item: String,
    /// pending, done, deleted, absent (already gone) or failed.
    pub outcome: String,
    /// Why it failed, report id, rows written, parse errors with line and column...
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
    pub tries: i32,
    pub updated_at: DateTime<Utc>,
}

/// Totals over all of the job's items.
#[derive(Serialize, ToSchema)]
pub struct ItemsSummary {
    pub total: i64,
    pub succeeded: i64,
    pub failed: i64,
    /// Needed no change (e.g. the listing was already absent).
    pub skipped: i64,
    pub pending: i64,
}

#[derive(Serialize, ToSchema)]
pub struct ItemPage {
    pub job_id: String,
    pub summary: ItemsSummary,
    pub items: Vec<ItemView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// What an items cursor is bound to, besides the key: the job and the outcome filter it
/// was made for (found by the audit of 2026-12-07: a plain `item:<seq>` was taken on
/// any job and under any filter, so a walk could skip items without an error).
fn cursor_listing(job: &str, outcome: Option<&ItemOutcome>) -> String {
    format!("items\0{job}\0{}", outcome.map(|o| o.as_str()).unwrap_or(""))
}

fn decode_cursor(state: &AppState, raw: &str, key: &str, listing: &str) -> Result<i32, ApiError> {
    let after = state.cursors().decode_after(raw, key, listing)?;
    after
        .parse()
        .map_err(|_| ApiError::field("cursor", "is not a cursor returned by this API"))
}

/// By what the caller should do: an unavailable database is a 503 with its safe text,
/// anything else a 500 naming only its kind (`DbError` never quotes SQL values).
fn db_error(e: impl Into<drover::db::DbError>) -> ApiError {
    e.into().into()
}

/// Items a page's totals may count for one read of the key's budget: every page counts
/// all of the job's items by outcome (up to 100,000 for a cleanup), and is charged one
/// read for each such many more.
pub const ITEMS_COUNTED_PER_READ: u64 = 2000;

/// Per-item results of a job, in the order the job took them.
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}/items",
    tag = "jobs",
    params(("id" = String, Path, description = "Job id"), ItemsParams),
    responses(
        (status = 200, body = ItemPage),
        Unauthorized,
        JobNotFound,
        Invalid,
        RateLimited,
        Unavailable,
    )
)]
pub async fn list_items(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<ItemPage>, ApiError> {
    let params: ItemsParams = query(raw.as_deref())?;
    let present = |v: Option<String>| v.filter(|s| !s.is_empty());
    let (outcome, limit, cursor) = (present(params.outcome), present(params.limit), present(params.cursor));
    let mut errors = Vec::new();
    let outcome = match outcome.as_deref() {
        None => None,
        Some(o) => match ItemOutcome::parse(o) {
            Some(o) => Some(o),
            None => {
                errors.push(drover::job::FieldError::new(
                    "outcome",
                    "must be pending, done, deleted, absent or failed",
                ));
                None
            }
        },
    };
    let limit = match limit.as_deref().map(str::parse::<u32>) {
        None => 100,
        Some(Ok(l)) if (1..=1000).contains(&l) => l,
        Some(_) => {
            errors.push(drover::job::FieldError::new("limit", "must be a whole number from 1 to 1000"));
            100
        }
    };
    let listing = cursor_listing(&id, outcome.as_ref());
    let after = match cursor
        .as_deref()
        .map(|c| decode_cursor(&state, c, &caller.name, &listing))
        .transpose()
    {
        Ok(a) => a,
        Err(ApiError::Validation(mut e)) => {
            errors.append(&mut e);
            None
        }
        Err(e) => return Err(e),
    };
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    // The summary: the page needs the job's id and account, never its payload.
    let job = load_summary(&state, &caller, &id).await?.job;
    let walk = walks::start(&state, &caller).await?;
    // Once the schema is in (before, a 500 for each call: the hostile-tenant audit of
    // 2026-12-07, second); until then a 503 to retry, as every Postgres-backed route.
    let repo = super::accounts::repo(&state)?;
    let deadline = repo.deadline();
    let mut conn = deadline.bound(repo.pool().acquire()).await.map_err(db_error)?;
    let summary = deadline.bound(items::summary(&mut conn, job.id.as_str())).await.map_err(db_error)?;
    // The request's check paid for counting its first items; the rest are charged.
    walk.charge(u64::try_from(summary.total).unwrap_or(0), ITEMS_COUNTED_PER_READ).await;
    let mut page = deadline
        .bound(items::page(&mut conn, job.id.as_str(), outcome, after, i64::from(limit) + 1))
        .await
        .map_err(db_error)?;
    let more = page.len() > limit as usize;
    page.truncate(limit as usize);
    let next_cursor = more
        .then(|| {
            page.last()
                .map(|i| state.cursors().encode_after(&i.seq.to_string(), &caller.name, &listing))
        })
        .flatten();
    Ok(Json(ItemPage {
        job_id: job.id.as_str().to_owned(),
        summary: ItemsSummary {
            total: summary.total,
            succeeded: summary.succeeded,
            failed: summary.failed,
            skipped: summary.skipped,
            pending: summary.pending,
        },
        items: page
            .into_iter()
            .map(|i| ItemView {
                item: i.item,
                outcome: i.outcome.as_str().to_owned(),
                detail: i.detail,
                tries: i.tries,
                updated_at: i.updated_at,
            })
            .collect(),
        next_cursor,
    }))
}
