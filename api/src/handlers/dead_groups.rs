//! `GET /v1/dead-letter/groups`: the dead letter grouped by error signature (class and
//! message with ids and numbers masked), largest first, from counters kept when jobs die;
//! and the group ids (`<kind>.<signature>`) that `GET /v1/dead-letter?group=` and a
//! replay or discard `filter.group` take.
use std::str::FromStr;

use axum::extract::{RawQuery, State};
use axum::Json;
use chrono::{DateTime, Utc};
use drover::job::{AccountId, FieldError, JobKind};
use drover::queue::{DeadGroup, MAX_GROUPS};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::query;
use crate::problem_responses::{Forbidden, Invalid, RateLimited, Unauthorized, Unavailable};
use crate::state::AppState;
use crate::views::kind_schema;

const DEFAULT_LIMIT: usize = 50;

/// Query parameters as sent; an empty value is taken as absent.
#[derive(Debug, Default, Deserialize)]
struct RawParams {
    kind: Option<String>,
    account_id: Option<String>,
    limit: Option<String>,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // documents `RawParams`, which is what is parsed
pub struct DeadGroupParams {
    /// One kind's groups (default: every kind's).
    kind: Option<String>,
    /// Count only this account's dead jobs (a key limited to several accounts names one).
    account_id: Option<String>,
    /// 1 to 200, default 50: the largest groups.
    #[param(minimum = 1, maximum = 200)]
    limit: Option<u32>,
}

/// The dead jobs of one kind that failed the same way.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadGroupView {
    /// `<kind>.<signature>`: give it as `group` to list, replay or discard the group.
    pub id: String,
    #[schema(schema_with = kind_schema)]
    pub kind: JobKind,
    /// The error class, e.g. `permanent`.
    pub class: String,
    /// What every job of the group said, with quoted text and ids and numbers (words of
    /// four or more characters holding a digit) masked.
    pub message: String,
    pub count: u64,
    /// When the first and the newest of its jobs died.
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    /// Its newest dead jobs (up to 3), newest first.
    pub sample_job_ids: Vec<String>,
}

impl From<DeadGroup> for DeadGroupView {
    fn from(g: DeadGroup) -> Self {
        let at = |ms: i64| DateTime::from_timestamp_millis(ms).unwrap_or_default();
        Self {
            id: format!("{}.{}", g.kind, g.signature),
            kind: g.kind,
            class: g.class,
            message: g.message,
            count: g.count,
            first_seen: at(g.first_ms),
            last_seen: at(g.last_ms),
            sample_job_ids: g.samples.iter().map(ToString::to_string).collect(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeadGroupList {
    pub groups: Vec<DeadGroupView>,
}

/// The dead letter grouped by error signature, largest groups first.
#[utoipa::path(
    get,
    path = "/v1/dead-letter/groups",
    tag = "dead-letter",
    params(DeadGroupParams),
    responses(
        (status = 200, body = DeadGroupList),
        Unauthorized,
        Forbidden,
        Invalid,
        RateLimited,
        Unavailable,
    )
)]
pub async fn list_dead_groups(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(raw): RawQuery,
) -> Result<Json<DeadGroupList>, ApiError> {
    let raw: RawParams = query(raw.as_deref())?;
    let mut errors = Vec::new();
    let kinds = match raw.kind.filter(|k| !k.is_empty()) {
        None => JobKind::ALL.to_vec(),
        Some(k) => match JobKind::from_str(&k) {
            Ok(k) => vec![k],
            Err(e) => {
                errors.push(FieldError::new("kind", e.to_string()));
                Vec::new()
            }
        },
    };
    let account = match raw.account_id.filter(|a| !a.is_empty()) {
        None => None,
        Some(a) => match AccountId::parse(a) {
            Ok(a) => Some(a.as_str().to_owned()),
            Err(e) => {
                errors.push(FieldError::new("account_id", e));
                None
            }
        },
    };
    let limit = match raw.limit.filter(|l| !l.is_empty()) {
        None => DEFAULT_LIMIT,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=MAX_GROUPS).contains(&n) => n,
            _ => {
                errors.push(FieldError::new("limit", format!("must be a whole number from 1 to {MAX_GROUPS}")));
                DEFAULT_LIMIT
            }
        },
    };
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let account = caller.account_filter(account)?;
    let mut groups = Vec::new();
    for kind in kinds {
        groups.extend(state.store().dead_groups(kind, account.as_deref(), limit).await?);
    }
    groups.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| b.last_ms.cmp(&a.last_ms)));
    groups.truncate(limit);
    Ok(Json(DeadGroupList {
        groups: groups.into_iter().map(Into::into).collect(),
    }))
}

/// Why a group id was refused.
pub const NOT_A_GROUP: &str = "not a dead-letter group id (`<kind>.<signature>`, from GET /v1/dead-letter/groups)";

/// A group id, `<kind>.<signature>` (16 hex digits), as the kind and the signature.
pub fn parse_group(raw: &str) -> Option<(JobKind, String)> {
    let (kind, sig) = raw.split_once('.')?;
    let kind = JobKind::from_str(kind).ok()?;
    let hex = sig.len() == 16 && sig.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    hex.then(|| (kind, sig.to_owned()))
}
