//! `GET /v1/dead-letter`, and `POST /v1/dead-letter/replay` and `…/discard` (admin): one
//! selection of dead jobs (ids, or a filter — kind, account, error class, group — with a
//! limit), then each replayed or deleted.
use std::collections::HashSet;

use axum::extract::{RawQuery, State};
use axum::Json;
use drover::job::{AccountId, ErrorClass, JobId, JobState};
use drover::queue::{JobStore, ListQuery, RetryOutcome};
use utoipa::IntoParams;

use super::dead_groups::{parse_group, NOT_A_GROUP};
use super::listing::{self, RawList, RECORDS_PER_READ};
use super::walks;
use crate::audit::{self, Action};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{query, JsonBody};
use crate::problem_responses::{
    BadRequest, Forbidden, Invalid, PayloadTooLarge, RateLimited, Unauthorized, Unavailable, UnsupportedMediaType,
};
use crate::state::AppState;
use crate::views::{DiscardResult, JobPage, ReplayFilter, ReplayRequest, ReplayResult, Skipped, StoppedEarly};

const MAX_IDS: usize = 1000;
const DEFAULT_REPLAY_LIMIT: u32 = 100;
/// Most pages of the index one filtered action walks, so a request stays bounded in
/// time: each page walks at most 4,000 index entries (the listing's cap for a page of
/// 200), whether or not they match — a key scoped to an account walks that account's
/// index of all its jobs for its dead ones.
const MAX_PAGES: usize = 3;

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // documents `RawList`, which is what is parsed
pub struct DeadLetterParams {
    kind: Option<String>,
    account_id: Option<String>,
    /// The class of the job's last error, e.g. `permanent` or `rate_limited`.
    error_class: Option<String>,
    /// One dead-letter group's jobs: its `id` from `GET /v1/dead-letter/groups`.
    group: Option<String>,
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    cursor: Option<String>,
}

/// Dead jobs, newest first, paginated like `GET /v1/jobs`.
#[utoipa::path(
    get,
    path = "/v1/dead-letter",
    tag = "dead-letter",
    params(DeadLetterParams),
    responses(
        (status = 200, body = JobPage),
        Unauthorized,
        Forbidden,
        Invalid,
        RateLimited,
        Unavailable,
    )
)]
pub async fn list_dead(State(state): State<AppState>, caller: Caller, RawQuery(raw): RawQuery) -> Result<Json<JobPage>, ApiError> {
    let mut raw: RawList = query(raw.as_deref())?;
    raw.state = None;
    let q = listing::to_query(raw, &caller, state.cursors(), Some(JobState::Dead))?;
    Ok(Json(listing::page(&state, &caller, &q).await?))
}

/// Put dead jobs back in the queue, by id or by filter.
#[utoipa::path(
    post,
    path = "/v1/dead-letter/replay",
    tag = "dead-letter",
    request_body = ReplayRequest,
    responses(
        PayloadTooLarge,
        (status = 200, description = "What was replayed and what was skipped (with why)", body = ReplayResult),
        BadRequest,
        Unauthorized,
        Forbidden,
        UnsupportedMediaType,
        Invalid,
        RateLimited,
        Unavailable,
    )
)]
pub async fn replay(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(req): JsonBody<ReplayRequest>,
) -> Result<Json<ReplayResult>, ApiError> {
    let acted = act(&state, &caller, req, Op::Replay).await?;
    Ok(Json(ReplayResult {
        replayed: acted.done,
        skipped: acted.skipped,
        stopped_at_scan_limit: acted.bounded,
        stopped: acted.stopped,
    }))
}

/// Delete dead jobs for good, by id or by filter (the same selection as a replay).
#[utoipa::path(
    post,
    path = "/v1/dead-letter/discard",
    tag = "dead-letter",
    request_body = ReplayRequest,
    responses(
        PayloadTooLarge,
        (status = 200, description = "What was deleted and what was skipped (with why)", body = DiscardResult),
        BadRequest,
        Unauthorized,
        Forbidden,
        UnsupportedMediaType,
        Invalid,
        RateLimited,
        Unavailable,
    )
)]
pub async fn discard(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(req): JsonBody<ReplayRequest>,
) -> Result<Json<DiscardResult>, ApiError> {
    let acted = act(&state, &caller, req, Op::Discard).await?;
    Ok(Json(DiscardResult {
        discarded: acted.done,
        skipped: acted.skipped,
        stopped_at_scan_limit: acted.bounded,
        stopped: acted.stopped,
    }))
}

/// What a dead-letter action did: the ids done and those skipped, whether a filter's
/// walk stopped at its bound before the selection's end, and the error that stopped it
/// part-way, if one did after it had done or skipped some (found by the audit of
/// 2026-12-07: such an action answered only the error, and the ids it had already
/// replayed or deleted for good were told to no one).
struct Acted {
    done: Vec<String>,
    skipped: Vec<Skipped>,
    bounded: bool,
    stopped: Option<StoppedEarly>,
}

/// Selects the dead jobs, applies `op` to each and records the action in the audit log
/// with what it did, also when it stopped part-way. It runs to its end on a task of its
/// own: the request timeout would otherwise drop it part-way, with jobs deleted or
/// replayed and neither the audit entry nor the log line written. The client may still
/// hear the timeout.
async fn act(state: &AppState, caller: &Caller, req: ReplayRequest, op: Op) -> Result<Acted, ApiError> {
    let (state, caller) = (state.clone(), caller.clone());
    crate::middleware::request_id::spawn_for_request(&state.background().clone(), async move {
        act_to_the_end(&state, &caller, req, op).await
    })
    .await
    .map_err(|e| ApiError::Internal(format!("the dead-letter action stopped: {e}")))?
}

async fn act_to_the_end(state: &AppState, caller: &Caller, req: ReplayRequest, op: Op) -> Result<Acted, ApiError> {
    let action = match op {
        Op::Replay => "dlq.replay",
        Op::Discard => "dlq.discard",
    };
    let what = Action::on(action, "dead-letter").with_filter(serde_json::to_value(&req).unwrap_or_default());
    let (mut done, mut skipped) = (Vec::new(), Vec::new());
    let mut walk = Walk::default();
    let result = select(state, caller, req, op, &mut done, &mut skipped, &mut walk).await;
    audit::record(state, caller, what, done.len() as u64, audit::outcome(&result)).await;
    let stopped = match result {
        Ok(()) => None,
        Err(e) if done.is_empty() && skipped.is_empty() => return Err(e),
        Err(e) => {
            tracing::warn!(action, error = %e, done = done.len(), skipped = skipped.len(), key = %caller.name, "dead-letter action stopped part-way");
            Some(StoppedEarly {
                kind: format!("urn:drover:problem:{}", e.kind().0),
                detail: e.detail(),
                error: Some(e),
            })
        }
    };
    if stopped.is_none() {
        tracing::info!(action, done = done.len(), skipped = skipped.len(), key = %caller.name, "dead-letter action");
    }
    Ok(Acted {
        done,
        skipped,
        bounded: walk.bounded,
        stopped,
    })
}

/// Replays a selection (a filter, e.g. a group) at most `per_second` jobs a second until
/// none is left, `max` are replayed or the server shuts down, then records one audit entry
/// for all of it (the console's "replay the rest", after a canary). Returns how many.
pub async fn replay_paced(state: AppState, caller: Caller, filter: ReplayFilter, per_second: u32, max: usize) -> usize {
    let what = Action::on("dlq.replay", "dead-letter").with_filter(serde_json::json!({"filter": &filter, "per_second": per_second}));
    let (mut done, mut skipped) = (Vec::new(), Vec::new());
    // The walk goes on from tick to tick: each tick walks a bounded part of the index.
    let mut walk = Walk::default();
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    // One write of the key's budget for each 1,000 jobs after the first (the request
    // that started it paid for those), as the API charges each call of 1,000; over the
    // budget, the replay waits until it may go on.
    let mut charged = 1;
    let result = loop {
        tokio::select! {
            _ = state.shutdown().cancelled() => break Ok(()),
            _ = tick.tick() => {}
        }
        if done.len() >= charged * 1000 {
            match state.limits_per_key().writes.check(&caller.name).await {
                Ok(()) => charged += 1,
                Err(ApiError::RateLimited { .. }) => continue,
                Err(e) => break Err(e),
            }
        }
        let before = done.len();
        let asked = per_second.min((max - before) as u32).max(1);
        let req = ReplayRequest {
            ids: None,
            filter: Some(filter.clone()),
            limit: Some(asked),
        };
        skipped.clear();
        walk.bounded = false;
        match select(&state, &caller, req, Op::Replay, &mut done, &mut skipped, &mut walk).await {
            Ok(()) => {}
            // The key owes for its walks (this replay's among them), or its other walks
            // hold its turns: the replay waits, and its walk goes on from where it was.
            Err(ApiError::RateLimited { .. } | ApiError::TooManyInFlight { .. }) => continue,
            Err(e) => break Err(e),
        }
        // Fewer than asked with the walk at the index's end: the selection is used up
        // (what is left was skipped).
        let used_up = done.len() - before < asked as usize && !walk.bounded;
        if used_up || done.len() >= max {
            break Ok(());
        }
    };
    if let Err(e) = &result {
        tracing::warn!(error = %e, replayed = done.len(), key = %caller.name, "paced dead-letter replay stopped");
    }
    audit::record(&state, &caller, what, done.len() as u64, audit::outcome(&result)).await;
    tracing::info!(action = "dlq.replay", done = done.len(), per_second, key = %caller.name, "dead-letter action");
    done.len()
}

/// What is done to each dead job selected.
#[derive(Clone, Copy)]
enum Op {
    Replay,
    Discard,
}

/// Where a filter's walk of the index is: the position to go on from, and whether its
/// last part stopped at the page bound before the index's end.
#[derive(Default)]
struct Walk {
    from: Option<drover::queue::Cursor>,
    bounded: bool,
}

/// The ids the operation was applied to, and the ones skipped with why.
struct Out<'a> {
    op: Op,
    done: &'a mut Vec<String>,
    skipped: &'a mut Vec<Skipped>,
}

async fn select(
    state: &AppState,
    caller: &Caller,
    req: ReplayRequest,
    op: Op,
    done: &mut Vec<String>,
    skipped: &mut Vec<Skipped>,
    walk: &mut Walk,
) -> Result<(), ApiError> {
    let mut out = Out { op, done, skipped };
    let out = &mut out;
    match (req.ids, req.filter) {
        (Some(ids), None) => {
            if req.limit.is_some() {
                return Err(ApiError::field("limit", "only applies with filter"));
            }
            if ids.len() > MAX_IDS {
                return Err(ApiError::field("ids", format!("at most {MAX_IDS} ids per request")));
            }
            by_ids(state, caller, ids, out).await
        }
        (None, Some(filter)) => {
            let limit = req.limit.unwrap_or(DEFAULT_REPLAY_LIMIT);
            if !(1..=MAX_IDS as u32).contains(&limit) {
                return Err(ApiError::field("limit", format!("must be between 1 and {MAX_IDS}")));
            }
            by_filter(state, caller, filter, limit as usize, out, walk).await
        }
        _ => Err(ApiError::field("body", "give exactly one of ids or filter")),
    }
}

async fn by_ids(state: &AppState, caller: &Caller, ids: Vec<String>, out: &mut Out<'_>) -> Result<(), ApiError> {
    let mut seen = HashSet::new();
    for raw in ids {
        if !seen.insert(raw.clone()) {
            continue;
        }
        let skip = |reason: &str| Skipped {
            id: raw.clone(),
            reason: reason.to_owned(),
        };
        let Ok(id) = raw.parse::<JobId>() else {
            out.skipped.push(skip("not a job id"));
            continue;
        };
        // The summary (state and account, not the payload or attempts): another tenant's
        // job reads exactly as a missing one, at the same cost.
        match state.store().summary(&id).await? {
            None => out.skipped.push(skip("not found")),
            Some(s) if !caller.sees_job(&s.job) => out.skipped.push(skip("not found")),
            Some(s) if s.job.state != JobState::Dead => out.skipped.push(skip(&format!("not dead ({})", s.job.state))),
            Some(s) => apply(state, &s.job.id, out).await?,
        }
    }
    Ok(())
}

async fn by_filter(
    state: &AppState,
    caller: &Caller,
    filter: ReplayFilter,
    limit: usize,
    out: &mut Out<'_>,
    walk: &mut Walk,
) -> Result<(), ApiError> {
    let account = match filter.account_id {
        None => None,
        Some(a) => Some(
            AccountId::parse(a)
                .map_err(|e| ApiError::field("filter.account_id", e))?
                .as_str()
                .to_owned(),
        ),
    };
    let group = match filter.group.as_deref() {
        None => None,
        Some(raw) => match parse_group(raw) {
            Some((kind, _)) if filter.kind.is_some_and(|k| k != kind) => {
                return Err(ApiError::field("filter.group", "the group is of another kind than filter.kind"))
            }
            Some(g) => Some(g),
            None => return Err(ApiError::field("filter.group", NOT_A_GROUP)),
        },
    };
    let mut q = ListQuery {
        kinds: group.as_ref().map(|g| g.0).or(filter.kind).into_iter().collect(),
        state: Some(JobState::Dead),
        account_id: caller.account_filter(account)?,
        group: group.map(|g| g.1),
        error_class: filter
            .error_class
            .and_then(|c| serde_json::to_value(c).ok()?.as_str().map(str::to_owned)),
        limit: 200,
        cursor: None,
    };
    // Charged for the records it walks, like a listing (before, found by the hostile-tenant
    // audit of 2026-12-06, a selection walking 12,000 records cost one write).
    let turn = walks::start(state, caller).await?;
    q.cursor = walk.from.take();
    let mut records = 0;
    let walked = walk_pages(state, (filter.error_class, filter.dead_before), q, limit, out, walk, &mut records).await;
    turn.charge(records, RECORDS_PER_READ).await;
    walked
}

/// The summaries (state and account, never a payload) of jobs picked by id, in one round
/// trip, charged like a listing's walk: a walk turn first, then a read for every
/// [`RECORDS_PER_READ`] (found by the hostile-tenant audit of 2026-12-07, third: the
/// console's confirm and canary pages read up to 10,000 picked ids on one read each).
pub async fn picked_summaries(
    state: &AppState,
    caller: &Caller,
    ids: &[JobId],
) -> Result<Vec<Option<drover::queue::summary::JobSummary>>, ApiError> {
    let turn = walks::start(state, caller).await?;
    let summaries = state.store().summaries(ids).await;
    turn.charge(ids.len() as u64, RECORDS_PER_READ).await;
    Ok(summaries?)
}

/// Up to [`MAX_PAGES`] pages of the dead jobs `q` selects, each one of `error_class`
/// and dead by `dead_before` (if given) replayed or discarded until `limit` are;
/// `records` counts the records walked.
async fn walk_pages(
    state: &AppState,
    (error_class, dead_before): (Option<ErrorClass>, Option<chrono::DateTime<chrono::Utc>>),
    mut q: ListQuery,
    limit: usize,
    out: &mut Out<'_>,
    walk: &mut Walk,
    records: &mut u64,
) -> Result<(), ApiError> {
    // `limit` is this call's: a paced replay keeps its running total in `out.done` from
    // tick to tick (found by the hostile-tenant audit of 2026-12-07, third: every tick
    // after the first found the total at its limit, replayed nothing and ended the replay).
    let limit = out.done.len() + limit;
    for page_number in 0..=MAX_PAGES {
        if out.done.len() >= limit {
            // Went on from where this page began: what it held past the limit is left.
            walk.from = q.cursor;
            return Ok(());
        }
        if page_number == MAX_PAGES {
            walk.from = q.cursor;
            walk.bounded = true;
            return Ok(());
        }
        // Summaries: the payloads of the dead jobs scanned are never read.
        let page = state.store().list_summaries(&q).await?;
        *records += page.records_read + page.jobs.len() as u64;
        for job in page.jobs.into_iter().map(|s| s.job) {
            if out.done.len() >= limit {
                break;
            }
            let class = job.last_error.as_ref().map(|e| e.class);
            if error_class.is_some() && class != error_class {
                continue;
            }
            if dead_before.is_some_and(|t| job.finished_at.is_some_and(|f| f > t)) {
                continue;
            }
            apply(state, &job.id, out).await?;
        }
        if out.done.len() >= limit {
            // the next turn of the loop keeps this page's start
            continue;
        }
        match page.next {
            Some(c) => q.cursor = Some(c),
            None => return Ok(()),
        }
    }
    Ok(())
}

async fn apply(state: &AppState, job: &JobId, out: &mut Out<'_>) -> Result<(), ApiError> {
    let id = job.to_string();
    let skip = |reason: String| Skipped { id: id.clone(), reason };
    match out.op {
        // Requeues it only if it is still dead (it may have been replayed and cancelled
        // or ended partial since it was listed).
        Op::Replay => match state.store().replay_dead(job).await? {
            RetryOutcome::Queued => out.done.push(id.clone()),
            RetryOutcome::NotFound => out.skipped.push(skip("not found".into())),
            RetryOutcome::WrongState(s) => out.skipped.push(skip(format!("not dead ({s})"))),
            RetryOutcome::AccountBusy(holder) => out.skipped.push(skip(format!("another sync of the account is active ({holder})"))),
        },
        // Removes it only if it is still dead (a replay may have taken it meanwhile).
        Op::Discard => match state.store().purge_dead(job.kind(), std::slice::from_ref(job)).await? {
            0 => out.skipped.push(skip("no longer dead".into())),
            _ => out.done.push(id.clone()),
        },
    }
    Ok(())
}
