//! `GET /v1/jobs/{id}/items`: what a job did per item — cleanup SKUs, backfill windows,
//! sync pages — from PostgreSQL, in order, cursor paginated, optionally one outcome.
use axum::extract::{Path, RawQuery, State};
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
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

#[derive(Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
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

fn decode_cursor(raw: &str) -> Result<i32, ApiError> {
    let bad = || ApiError::field("cursor", "is not a cursor returned by this API");
    if raw.len() > 64 {
        return Err(bad());
    }
    let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| bad())?;
    std::str::from_utf8(&bytes)
        .ok()
        .and_then(|s| s.strip_prefix("item:"))
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)
}

fn encode_cursor(seq: i32) -> String {
    URL_SAFE_NO_PAD.encode(format!("item:{seq}"))
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
    let mut errors = Vec::new();
    let outcome = match params.outcome.as_deref() {
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
    let limit = match params.limit.as_deref().map(str::parse::<u32>) {
        None => 100,
        Some(Ok(l)) if (1..=1000).contains(&l) => l,
        Some(_) => {
            errors.push(drover::job::FieldError::new("limit", "must be a whole number from 1 to 1000"));
            100
        }
    };
    let after = match params.cursor.as_deref().map(decode_cursor).transpose() {
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
    let repo = &state.accounts().repo;
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
    let next_cursor = more.then(|| page.last().map(|i| encode_cursor(i.seq))).flatten();
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn item_cursors_round_trip(seq in 0i32..i32::MAX) {
            prop_assert_eq!(decode_cursor(&encode_cursor(seq)).ok(), Some(seq));
        }

        #[test]
        fn anything_else_is_a_named_422(s in "[ -~]{0,80}") {
            if let Err(e) = decode_cursor(&s) {
                prop_assert!(matches!(e, ApiError::Validation(ref f) if f[0].field == "cursor"));
            }
        }
    }
}
