//! `PUT/GET/DELETE /v1/schedules/{name}` and `GET /v1/schedules`: periodic jobs.
//!
//! A schedule is a cron expression (UTC) and the job each tick makes; the scheduler loop
//! in every API replica (and optionally workers) enqueues each tick exactly once — see
//! `drover::schedule`. The job is validated like `POST /v1/jobs` when the schedule is
//! saved, so a bad schedule is a 422 now, not a failed job later.
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::time::Duration;

use chrono::{DateTime, Utc};
use drover::job::{AccountId, FieldError};
use drover::schedule::cadence::check_cadence;
use drover::schedule::spec::{next_tick, parse_cron};
use drover::schedule::{BuiltInSchedule, Schedule, ScheduleError, ScheduleSpec, ScheduleStore};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::audit::{self, Action};
use crate::auth::Caller;
use crate::error::{ApiError, Problem, PROBLEM_JSON};
use crate::extract::{query, JsonBody};
use crate::problem_responses::{BadRequest, RateLimited, Unauthorized, Unavailable, UnsupportedMediaType};
use crate::state::AppState;

/// What `PUT /v1/schedules/{name}` takes.
#[derive(ToSchema)]
#[allow(dead_code)] // documents `ScheduleSpec`, which is what is parsed
pub struct ScheduleBody {
    /// Five fields (minute hour day month weekday) or six with seconds first; UTC. Must
    /// fire within four years (so 29 February is allowed), and at most once per `api.schedules.min_interval_secs`
    /// (default 60).
    #[schema(example = "*/15 * * * *")]
    cron: String,
    /// sync, backfill or cleanup.
    kind: String,
    /// The job's payload, as for `POST /v1/jobs`; at most `api.schedules.max_payload_bytes`
    /// (default 64 KiB) of JSON.
    #[schema(value_type = Object)]
    payload: serde_json::Value,
    /// Default true.
    enabled: Option<bool>,
    /// 0-9, default 0.
    priority: Option<u8>,
    /// 1-100, as for `POST /v1/jobs`.
    max_attempts: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub struct ScheduleView {
    /// Unique per account: other accounts may have a schedule with the same name.
    pub name: String,
    /// The account its jobs act for.
    pub account_id: Option<String>,
    pub cron: String,
    pub kind: String,
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    pub enabled: bool,
    pub priority: u8,
    pub max_attempts: Option<u32>,
    /// When the next tick enqueues a job (absent when disabled).
    pub next_run_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct ScheduleList {
    pub schedules: Vec<ScheduleView>,
    /// Pass as `cursor` for the next page of `schedules`; null on the last page.
    pub next_cursor: Option<String>,
    /// The built-in schedules, each the same for every active account, as the running
    /// scheduler makes them (`api.scheduler.defaults`); none while no scheduler runs them.
    pub built_in: Vec<BuiltInView>,
}

/// A built-in schedule: one job per tick for each active (registered) account.
#[derive(Serialize, ToSchema)]
pub struct BuiltInView {
    /// `builtin.sync`, `builtin.daily_audit` or `builtin.weekly_audit`; reserved, so no
    /// saved schedule can take it.
    pub name: String,
    pub kind: String,
    pub cron: String,
    /// What each account's job holds besides its account and marketplace (an audit's
    /// window ends at the tick and reaches `window_days` back).
    #[schema(value_type = Object)]
    pub job: serde_json::Value,
    /// The trigger its jobs carry, the account's id in place of `<account_id>`.
    #[schema(example = "schedule:builtin.sync.<account_id>")]
    pub trigger: String,
    /// When the next tick enqueues the jobs.
    pub next_run_at: Option<DateTime<Utc>>,
}

impl From<BuiltInSchedule> for BuiltInView {
    fn from(b: BuiltInSchedule) -> Self {
        Self {
            next_run_at: parse_cron(&b.cron).ok().and_then(|c| next_tick(&c, Utc::now())),
            trigger: b.trigger(),
            kind: b.kind.as_str().to_owned(),
            name: b.name,
            cron: b.cron,
            job: b.job,
        }
    }
}

impl From<Schedule> for ScheduleView {
    fn from(s: Schedule) -> Self {
        let next_run_at = s
            .spec
            .enabled
            .then(|| parse_cron(&s.spec.cron).ok())
            .flatten()
            .and_then(|c| next_tick(&c, Utc::now()));
        Self {
            account_id: s.account().map(str::to_owned),
            name: s.name,
            cron: s.spec.cron,
            kind: s.spec.kind.as_str().to_owned(),
            payload: s.spec.payload,
            enabled: s.spec.enabled,
            priority: s.spec.priority,
            max_attempts: s.spec.max_attempts,
            next_run_at,
            created_at: s.created_at,
            updated_at: s.updated_at,
        }
    }
}

fn store(state: &AppState) -> ScheduleStore {
    ScheduleStore::new(state.store().connection(), state.store().namespace()).with_max_per_account(state.limits().schedules.max_per_account)
}

impl From<ScheduleError> for ApiError {
    fn from(e: ScheduleError) -> Self {
        match e {
            ScheduleError::Invalid(fields) => ApiError::Validation(fields),
            // as the queue's own errors say it (a refusal at the memory limit wrote nothing)
            ScheduleError::Store(e) => drover::queue::StoreError::Redis(e).into(),
            ScheduleError::Quota { max } => ApiError::Conflict(format!(
                "the account already has {max} schedules, the most allowed (api.schedules.max_per_account): \
                 delete one first, or replace an existing one"
            )),
            // Only the caller's own count: a scoped key learns nothing of other keys.
            ScheduleError::KeyQuota { max } => ApiError::Conflict(format!(
                "this API key already holds {max} schedules, the most one key may create across all \
                 accounts (api.schedules.max_per_key): delete one first, or replace an existing one"
            )),
            ScheduleError::Corrupt { .. } => ApiError::Internal(e.to_string()),
            ScheduleError::Contended { .. } => ApiError::Conflict(format!("{e}; send it again")),
        }
    }
}

/// `?account_id=`: which account's schedule a key for several accounts means.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ScheduleQuery {
    /// The account whose schedule this is; needed only when several accounts this key may
    /// see have a schedule with this name.
    pub account_id: Option<String>,
}

/// `GET /v1/schedules?account_id=&limit=&cursor=`: a page of schedules.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ScheduleListQuery {
    /// List only this account's schedules (one this key may see).
    pub account_id: Option<String>,
    /// 1 to 100, default 100.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    /// `next_cursor` of the previous page, with the same key and account_id (else 422).
    pub cursor: Option<String>,
}

/// The most schedules a page holds (the default): each record may be up to the payload
/// limit, so a page is bounded in bytes as well as in count.
pub const MAX_SCHEDULES_PAGE: usize = 100;

fn not_found(name: &str) -> ApiError {
    ApiError::NotFound(format!("no schedule named {:?}", name.chars().take(100).collect::<String>()))
}

/// The schedule `name` the caller means, among the accounts it may see. Another
/// tenant's schedule of the same name is invisible: the answer is the same 404 as for a
/// name nobody uses.
async fn find(store: &ScheduleStore, caller: &Caller, name: &str, account: Option<String>) -> Result<Schedule, ApiError> {
    // A name that could never be saved (`globex/nightly`, once its `%2F` is decoded) is
    // no schedule, and is looked for nowhere: looking would read fields of other names.
    if drover::schedule::spec::validate_name(name).is_err() {
        return Err(not_found(name));
    }
    let mut found = match (&caller.accounts, account) {
        (_, Some(a)) if !caller.allows_account(&a) => Vec::new(),
        (_, Some(a)) => store.get(Some(&a), name).await?.into_iter().collect(),
        // Two are enough to know the caller must name the account: never every
        // tenant's schedule of the name, read and parsed.
        (None, None) => store.find(name, 2).await?,
        (Some(set), None) => {
            let mut found = Vec::new();
            for a in set {
                found.extend(store.get(Some(a.as_str()), name).await?);
                if found.len() > 1 {
                    break;
                }
            }
            found
        }
    };
    match found.len() {
        0 => Err(not_found(name)),
        1 => Ok(found.remove(0)),
        _ => Err(ApiError::field(
            "account_id",
            "required: several accounts this key may see have a schedule with this name",
        )),
    }
}

/// Create or replace the schedule `name` of the payload's account. 201 when new, 200
/// when replaced. Names are per account: another tenant's schedule of the same name is
/// neither seen nor touched. A creation counts against the account's quota and against
/// the calling key's, across all its accounts; a replace against neither.
#[utoipa::path(
    put,
    path = "/v1/schedules/{name}",
    tag = "schedules",
    params(("name" = String, Path, description = "1-100 of A-Z a-z 0-9 - _ .")),
    request_body = ScheduleBody,
    responses(
        (status = 200, description = "Replaced", body = ScheduleView),
        (status = 201, description = "Created", body = ScheduleView),
        BadRequest,
        Unauthorized,
        (status = 403, description = "Not a submit key, or the payload's account is not one this key may act for", body = Problem, content_type = PROBLEM_JSON),
        (status = 409, description = "The account already has api.schedules.max_per_account schedules, or the key already holds api.schedules.max_per_key (across all accounts)", body = Problem, content_type = PROBLEM_JSON),
        (status = 413, description = "The payload is over api.schedules.max_payload_bytes (or api.jobs.max_payload_bytes, when that is smaller)", body = Problem, content_type = PROBLEM_JSON),
        UnsupportedMediaType,
        (status = 422, description = "Fields are invalid (named); the cron fires more often than api.schedules.min_interval_secs or not within four years", body = Problem, content_type = PROBLEM_JSON),
        (status = 429, description = "Rate limited: schedule writes count against the key's write limit", body = Problem, content_type = PROBLEM_JSON),
        Unavailable,
    )
)]
pub async fn put_schedule(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    JsonBody(spec): JsonBody<ScheduleSpec>,
) -> Result<Response, ApiError> {
    let what = Action::on("schedule.put", name.clone()).with_filter(serde_json::json!({"account_id": spec.account(), "cron": spec.cron}));
    audit::recorded(&state, &caller, what, 1, |state, caller| async move {
        put(&state, &caller, &name, spec).await
    })
    .await
}

async fn put(state: &AppState, caller: &Caller, name: &str, spec: ScheduleSpec) -> Result<Response, ApiError> {
    // Validation first (a malformed account id is a 422 naming it, as for `POST /v1/jobs`;
    // it says nothing of any tenant), then whether the key may act for the account.
    check_bounds(state, name, &spec)?;
    match spec.account() {
        Some(a) => caller.check_account(a)?,
        None => caller.require_unscoped("schedules without an account")?,
    }
    // Counted against the key too: a key for every account may name accounts that are
    // not registered (as `POST /v1/jobs` accepts them), so the per-account quota alone
    // would let it hold `max_per_account` for every account id it makes up.
    let max_per_key = state.limits().schedules.max_per_key;
    let (schedule, created) = store(state).with_max_per_key(&caller.name, max_per_key).put(name, spec).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(ScheduleView::from(schedule))).into_response())
}

/// What a schedule may cost, beyond its fields being valid: each tick is a job made with
/// no request to rate-limit, so the cron may fire at most once per
/// `api.schedules.min_interval_secs` and must fire within four years. The payload is capped
/// by `api.schedules.max_payload_bytes` (or the jobs' cap, when smaller; 413): each
/// listing of the account's schedules, and each scheduler read, carries every payload.
fn check_bounds(state: &AppState, name: &str, spec: &ScheduleSpec) -> Result<(), ApiError> {
    let mut errors = match spec.validate(name) {
        Ok(_) => Vec::new(),
        Err(ScheduleError::Invalid(errors)) => errors,
        Err(e) => return Err(e.into()),
    };
    if let Ok(cron) = parse_cron(&spec.cron) {
        let min = Duration::from_secs(state.limits().schedules.min_interval_secs);
        if let Err(why) = check_cadence(&cron, Utc::now(), min) {
            errors.push(FieldError::new("cron", why));
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let limits = state.limits();
    let (max, setting) = if limits.schedules.max_payload_bytes <= limits.payload_bytes {
        (limits.schedules.max_payload_bytes, "api.schedules.max_payload_bytes")
    } else {
        (limits.payload_bytes, "api.jobs.max_payload_bytes")
    };
    let bytes = serde_json::to_vec(&spec.payload).map_or(usize::MAX, |v| v.len());
    if bytes > max {
        return Err(ApiError::PayloadTooLarge(format!(
            "the schedule's payload is {bytes} bytes; at most {max} are allowed ({setting})"
        )));
    }
    Ok(())
}

#[utoipa::path(
    get,
    path = "/v1/schedules/{name}",
    tag = "schedules",
    params(("name" = String, Path), ScheduleQuery),
    responses(
        (status = 200, body = ScheduleView),
        Unauthorized,
        (status = 404, description = "No such schedule among the accounts this key may see", body = Problem, content_type = PROBLEM_JSON),
        (status = 422, description = "Several accounts have a schedule with this name: give account_id", body = Problem, content_type = PROBLEM_JSON),
        RateLimited,
        Unavailable,
    )
)]
pub async fn get_schedule(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<ScheduleView>, ApiError> {
    let q: ScheduleQuery = query(raw.as_deref())?;
    Ok(Json(find(&store(&state), &caller, &name, q.account_id).await?.into()))
}

/// Schedules this key may see, by account and name, and the built-in ones the running
/// scheduler makes for every active account. A key for some accounts reads only those
/// accounts' schedules from Redis (their indexes), never another tenant's.
#[utoipa::path(
    get,
    path = "/v1/schedules",
    tag = "schedules",
    params(ScheduleListQuery),
    responses(
        (status = 200, body = ScheduleList),
        Unauthorized,
        (status = 403, description = "The account is not one this key may see", body = Problem, content_type = PROBLEM_JSON),
        (status = 422, description = "A malformed account_id", body = Problem, content_type = PROBLEM_JSON),
        RateLimited,
        Unavailable,
    )
)]
pub async fn list_schedules(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(raw): RawQuery,
) -> Result<Json<ScheduleList>, ApiError> {
    let q: ScheduleListQuery = query(raw.as_deref())?;
    let limit = match q.limit.filter(|l| !l.is_empty()) {
        None => MAX_SCHEDULES_PAGE,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=MAX_SCHEDULES_PAGE).contains(&n) => n,
            _ => {
                return Err(ApiError::field(
                    "limit",
                    format!("must be a whole number from 1 to {MAX_SCHEDULES_PAGE}"),
                ))
            }
        },
    };
    let account = match q.account_id.filter(|a| !a.is_empty()) {
        Some(a) => {
            let a = AccountId::parse(a).map_err(|e| ApiError::field("account_id", e))?;
            caller.check_account(a.as_str())?;
            Some(a)
        }
        None => None,
    };
    // A cursor is bound to the key and the account filter.
    let listing = format!("schedules\0{}", account.as_ref().map_or("", |a| a.as_str()));
    let after = match q.cursor.filter(|c| !c.is_empty()) {
        Some(c) => Some(state.cursors().decode_after(&c, &caller.name, &listing)?),
        None => None,
    };
    // Held until the answer is built (axum writes it out as this returns): the page's
    // payloads are in memory.
    let _reading = state.record_reads().start(&caller.name).await?;
    let store = store(&state);
    let after = after.as_deref();
    let page = match (&account, &caller.accounts) {
        (Some(a), _) => store.page(Some(&[a.as_str()]), after, limit).await?,
        (None, None) => store.page(None, after, limit).await?,
        (None, Some(set)) => {
            let accounts: Vec<&str> = set.iter().map(|a| a.as_str()).collect();
            store.page(Some(&accounts), after, limit).await?
        }
    };
    let next_cursor = page.next.map(|after| state.cursors().encode_after(&after, &caller.name, &listing));
    let mut out = Vec::new();
    for s in page.schedules {
        match s {
            Ok(s) if visible(&caller, &s) => out.push(s.into()),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "unreadable schedule skipped in listing"),
        }
    }
    let built_in = match store.built_ins().await {
        Ok(b) => b.into_iter().map(Into::into).collect(),
        // Written by another release in a shape this one does not read: the saved
        // schedules are still listed.
        Err(e @ ScheduleError::Corrupt { .. }) => {
            tracing::warn!(error = %e, "built-in schedules unreadable, not listed");
            Vec::new()
        }
        Err(e) => return Err(e.into()),
    };
    Ok(Json(ScheduleList {
        schedules: out,
        next_cursor,
        built_in,
    }))
}

fn visible(caller: &Caller, s: &Schedule) -> bool {
    match s.account() {
        Some(a) => caller.allows_account(a),
        None => caller.accounts.is_none(),
    }
}

/// Delete a schedule; jobs it already enqueued are not touched.
#[utoipa::path(
    delete,
    path = "/v1/schedules/{name}",
    tag = "schedules",
    params(("name" = String, Path), ScheduleQuery),
    responses(
        (status = 204, description = "Deleted"),
        Unauthorized,
        (status = 403, description = "Not a submit key", body = Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "No such schedule among the accounts this key may see", body = Problem, content_type = PROBLEM_JSON),
        (status = 422, description = "Several accounts have a schedule with this name: give account_id", body = Problem, content_type = PROBLEM_JSON),
        RateLimited,
        Unavailable,
    )
)]
pub async fn delete_schedule(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<StatusCode, ApiError> {
    let what = Action::on("schedule.delete", name.clone());
    audit::recorded(&state, &caller, what, 1, |state, caller| async move {
        delete(&state, &caller, &name, raw.as_deref()).await
    })
    .await
}

async fn delete(state: &AppState, caller: &Caller, name: &str, raw: Option<&str>) -> Result<StatusCode, ApiError> {
    let q: ScheduleQuery = query(raw)?;
    let store = store(state);
    let s = find(&store, caller, name, q.account_id).await?;
    if !store.delete(s.account(), &s.name).await? {
        return Err(not_found(name));
    }
    Ok(StatusCode::NO_CONTENT)
}
