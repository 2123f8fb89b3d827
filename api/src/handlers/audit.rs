//! `GET /v1/audit`: the operator audit log, newest first, a page at a time, all of it or
//! one key's or one action's entries (keys for every account only: the log names other
//! tenants' jobs and accounts).
use axum::extract::{RawQuery, State};
use axum::Json;
use chrono::{DateTime, Utc};
use drover::db::{AuditEntry, AuditFilter};
use drover::job::FieldError;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::query;
use crate::problem_responses::{Forbidden, Invalid, RateLimited, Unauthorized, Unavailable};
use crate::state::AppState;

const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 1000;
/// Longest `actor` or `action` asked for (a key's name, an action's, are shorter).
const MAX_NAME: usize = 200;

/// Query parameters as sent; an empty value is taken as absent.
#[derive(Debug, Default, Deserialize)]
struct RawParams {
    limit: Option<String>,
    before: Option<String>,
    actor: Option<String>,
    action: Option<String>,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // documents `RawParams`, which is what is parsed
pub struct AuditParams {
    /// 1 to 1000, default 50.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// `next_before` of the previous page: older entries.
    #[param(minimum = 1)]
    before: Option<i64>,
    /// Only this key's entries (its name, as `actor` shows it).
    actor: Option<String>,
    /// Only this action's entries, e.g. `dlq.discard`.
    action: Option<String>,
}

/// One operator action.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntryView {
    pub id: i64,
    pub at: DateTime<Utc>,
    /// The API key's name.
    pub actor: String,
    /// `job.cancel`, `job.retry`, `dlq.replay`, `dlq.discard`, `queue.pause`, `queue.resume`,
    /// `schedule.put`, `schedule.delete`, `account.credentials`.
    pub action: String,
    /// The job id, queue kind, schedule name, account id or `dead-letter`.
    pub target: String,
    /// The selection or filter the action applied to, when it has one.
    #[schema(value_type = Option<Object>)]
    pub filter: Option<serde_json::Value>,
    /// How many jobs (or schedules) it changed.
    pub touched: i64,
    /// `ok`, or the status it ended with (e.g. `409 Conflict`).
    pub outcome: String,
    /// The request's `X-Request-Id`.
    pub request_id: String,
}

impl From<AuditEntry> for AuditEntryView {
    fn from(e: AuditEntry) -> Self {
        Self {
            id: e.id,
            at: e.at,
            actor: e.actor,
            action: e.action,
            target: e.target,
            filter: e.filter,
            touched: e.touched,
            outcome: e.outcome,
            request_id: e.request_id,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    pub entries: Vec<AuditEntryView>,
    /// Pass as `before` for the next (older) page; null on the last page.
    pub next_before: Option<i64>,
}

/// What operators did, newest first (keys for every account).
#[utoipa::path(
    get,
    path = "/v1/audit",
    tag = "operations",
    params(AuditParams),
    responses(
        (status = 200, body = AuditPage),
        Unauthorized,
        Forbidden,
        Invalid,
        RateLimited,
        Unavailable,
    )
)]
pub async fn list_audit(State(state): State<AppState>, caller: Caller, RawQuery(raw): RawQuery) -> Result<Json<AuditPage>, ApiError> {
    caller.require_unscoped("the audit log")?;
    let raw: RawParams = query(raw.as_deref())?;
    let mut errors = Vec::new();
    let limit = match raw.limit.filter(|l| !l.is_empty()) {
        None => DEFAULT_LIMIT,
        Some(l) => match l.parse::<i64>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                errors.push(FieldError::new("limit", format!("must be a whole number from 1 to {MAX_LIMIT}")));
                DEFAULT_LIMIT
            }
        },
    };
    let before = match raw.before.filter(|b| !b.is_empty()) {
        None => None,
        Some(b) => match b.parse::<i64>() {
            Ok(n) if n >= 1 => Some(n),
            _ => {
                errors.push(FieldError::new("before", "must be a positive whole number (next_before of a page)"));
                None
            }
        },
    };
    let mut name = |field: &str, value: Option<String>| {
        let value = value.filter(|v| !v.is_empty());
        if value
            .as_ref()
            .is_some_and(|v| v.len() > MAX_NAME || v.chars().any(char::is_control))
        {
            errors.push(FieldError::new(field, format!("at most {MAX_NAME} bytes, no control characters")));
            return None;
        }
        value
    };
    let only = AuditFilter {
        actor: name("actor", raw.actor),
        action: name("action", raw.action),
    };
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    if !state.migrated() {
        return Err(ApiError::Unavailable {
            dependency: "postgres",
            cause: "migrations not applied yet".into(),
        });
    }
    // One more than asked for says whether there is a next page.
    let mut entries = state.audit().page(before, limit + 1, &only).await?;
    let next_before = if entries.len() as i64 > limit {
        entries.truncate(limit as usize);
        entries.last().map(|e| e.id)
    } else {
        None
    };
    Ok(Json(AuditPage {
        entries: entries.into_iter().map(Into::into).collect(),
        next_before,
    }))
}
