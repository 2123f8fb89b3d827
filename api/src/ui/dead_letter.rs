//! `/ui/dead-letter`: dead jobs grouped by error signature, and the replay or discard of
//! a group, a filter or a selection of ids — always through a confirm page that shows the
//! count it will touch; a replay may send a canary first (its jobs shown until they end)
//! before the rest go at `api.ui.replay_rate` jobs a second.
use super::paced_replays::{NotStarted, MAX_PER_KEY};
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;
use serde_json::Value;

use super::notice;
use super::page::{self, Nav, Viewer};
use super::session::Session;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{query, JsonBody};
use crate::handlers::dead_groups::{list_dead_groups, parse_group, NOT_A_GROUP};
use crate::handlers::dead_letter;
use crate::middleware::timeout::Deadline;
use crate::state::AppState;
use crate::views::{ReplayFilter, ReplayRequest};
use chrono::{DateTime, Utc};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Most jobs one console action touches (as `drover dlq` without `--limit`).
const MAX_JOBS: usize = 10_000;
/// Most canary jobs.
const MAX_CANARY: u32 = 20;

#[derive(Debug, Default, Deserialize)]
struct Scope {
    kind: Option<String>,
    account_id: Option<String>,
    notice: Option<String>,
    /// The notice's tag (`ui/notice.rs`): without the right one the notice is not shown.
    ns: Option<String>,
}

fn account_of(v: &Option<String>) -> Option<&str> {
    v.as_deref().filter(|s| !s.is_empty())
}

async fn groups_json(state: &AppState, caller: &Caller, kind: Option<&str>, account: Option<&str>) -> Result<Value, ApiError> {
    let mut q: Vec<(&str, &str)> = vec![("limit", "200")];
    if let Some(k) = kind {
        q.push(("kind", k));
    }
    if let Some(a) = account {
        q.push(("account_id", a));
    }
    let raw = serde_urlencoded::to_string(&q).unwrap_or_default();
    let list = list_dead_groups(State(state.clone()), caller.clone(), RawQuery(Some(raw))).await?;
    Ok(serde_json::to_value(list.0).unwrap_or_default())
}

pub async fn groups(State(state): State<AppState>, caller: Caller, session: Session, RawQuery(raw): RawQuery) -> Response {
    let viewer = Viewer { caller, session };
    let scope: Scope = query(raw.as_deref()).unwrap_or_default();
    let account = account_of(&scope.account_id);
    if let Some(one) = page::one_of_several_accounts(&viewer.caller, "/ui/dead-letter", raw.as_deref(), account) {
        return one;
    }
    let list = match groups_json(&state, &viewer.caller, account_of(&scope.kind), account).await {
        Ok(l) => l,
        Err(e) => return page::error(&e),
    };
    let body = html! {
        @if let Some(n) = notice::shown(&viewer.session, scope.notice.as_deref(), scope.ns.as_deref()) { p.notice { (n) } }
        form method="get" action="/ui/dead-letter" {
            label { "account " input type="text" name="account_id" value=[account]; }
            button type="submit" { "Show" }
        }
        p.muted { "Dead jobs of a kind that failed the same way (error class and message, ids and numbers masked), largest first." }
        table #dlq-groups {
            thead { tr { th { "kind" } th { "count" } th { "class" } @if viewer.acts() { th { "act" } } th { "message" } th { "first seen" } th { "last seen" } th { "newest jobs" } } }
            tbody {
                @for g in list["groups"].as_array().into_iter().flatten() {
                    @let id = g["id"].as_str().unwrap_or_default();
                    tr data-group=(id) {
                        td { (g["kind"].as_str().unwrap_or_default()) }
                        td data-count=(g["count"]) { a href={"/ui/jobs?state=dead&kind=" (g["kind"].as_str().unwrap_or_default()) "&group=" (id) @if let Some(a) = account { "&account_id=" (a) }} { (g["count"]) } }
                        td data-class=(g["class"].as_str().unwrap_or_default()) { (g["class"].as_str().unwrap_or_default()) }
                        @if viewer.acts() {
                            td.actions {
                                form.action.replay-group method="get" action="/ui/dead-letter/confirm" {
                                    input type="hidden" name="group" value=(id);
                                    input type="hidden" name="op" value="replay";
                                    @if let Some(a) = account { input type="hidden" name="account_id" value=(a); }
                                    label { "canary " input type="number" name="canary" value="0" min="0" max=(MAX_CANARY) size="3"; }
                                    button type="submit" { "Replay…" }
                                }
                                form.action.discard-group method="get" action="/ui/dead-letter/confirm" {
                                    input type="hidden" name="group" value=(id);
                                    input type="hidden" name="op" value="discard";
                                    @if let Some(a) = account { input type="hidden" name="account_id" value=(a); }
                                    button type="submit" { "Discard…" }
                                }
                            }
                        }
                        td data-message=(g["message"].as_str().unwrap_or_default()) { code { (g["message"].as_str().unwrap_or_default()) } }
                        td { (page::when(&g["first_seen"])) }
                        td { (page::when(&g["last_seen"])) }
                        td.wrap { @for s in g["sample_job_ids"].as_array().into_iter().flatten() {
                            @let sid = s.as_str().unwrap_or_default();
                            a href={"/ui/jobs/" (sid)} { code { (sid) } } " "
                        } }
                    }
                }
            }
        }
        @if list["groups"].as_array().is_none_or(Vec::is_empty) { p.muted { "The dead letter is empty." } }
    };
    page::render(&viewer, Nav::DeadLetter, "Dead letter", body)
}

/// The group's figures as the viewer may see them, or 404 (gone, or not theirs).
async fn group_of(state: &AppState, caller: &Caller, group: &str, account: Option<&str>) -> Result<Value, ApiError> {
    let (kind, _) = parse_group(group).ok_or_else(|| ApiError::field("group", NOT_A_GROUP))?;
    let list = groups_json(state, caller, Some(kind.as_str()), account).await?;
    list["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|g| g["id"].as_str() == Some(group))
        .cloned()
        .ok_or_else(|| ApiError::NotFound("this group has no dead jobs (any more)".into()))
}

/// What an action touches: a group, a filter, or the ids picked on the jobs page.
#[derive(Debug, Clone)]
enum Selection {
    Group {
        group: String,
        account_id: Option<String>,
        dead_before: Option<DateTime<Utc>>,
    },
    Filter(ReplayFilter),
    Ids(Vec<String>),
}

/// Every `name=value` pair of a query or form (ids repeat).
fn pairs(raw: &str) -> Vec<(String, String)> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(raw).unwrap_or_default()
}

fn one<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

impl Selection {
    /// A selection an action may take: picked jobs none of which is left are refused
    /// (found by the console audit and the review of 2026-12-06: they read as every dead
    /// job, at the confirm step and after a canary that took every picked job).
    fn to_act_on(p: &[(String, String)]) -> Result<Selection, ApiError> {
        match Selection::from_pairs(p)? {
            Selection::Ids(ids) if ids.is_empty() => Err(ApiError::field("ids", "pick at least one job")),
            sel => Ok(sel),
        }
    }

    fn from_pairs(p: &[(String, String)]) -> Result<Selection, ApiError> {
        let account_id = one(p, "account_id").map(str::to_owned);
        let dead_before = match one(p, "dead_before") {
            None => None,
            Some(t) => Some(
                DateTime::parse_from_rfc3339(t)
                    .map_err(|_| ApiError::field("dead_before", "not an RFC 3339 time"))?
                    .with_timezone(&Utc),
            ),
        };
        // Each picked id once, in the order first picked.
        let mut picked = std::collections::HashSet::new();
        let ids: Vec<String> = p
            .iter()
            .filter(|(k, v)| k == "ids" && !v.is_empty())
            .flat_map(|(_, v)| v.split(','))
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty() && picked.insert(s.clone()))
            .collect();
        if let Some(group) = one(p, "group") {
            parse_group(group).ok_or_else(|| ApiError::field("group", NOT_A_GROUP))?;
            return Ok(Selection::Group {
                group: group.to_owned(),
                account_id,
                dead_before,
            });
        }
        if ids.is_empty() && one(p, "picked").is_some() {
            // picked jobs none of which is left (nothing ticked, or all of them the
            // canary): never "every dead job"
            return Ok(Selection::Ids(Vec::new()));
        }
        if !ids.is_empty() {
            if ids.len() > MAX_JOBS {
                return Err(ApiError::field("ids", format!("at most {MAX_JOBS} jobs at once")));
            }
            return Ok(Selection::Ids(ids));
        }
        let kind = match one(p, "kind") {
            None => None,
            Some(k) => Some(
                k.parse()
                    .map_err(|e: drover::job::UnknownKind| ApiError::field("kind", e.to_string()))?,
            ),
        };
        let error_class = match one(p, "error_class") {
            None => None,
            Some(c) => Some(drover::job::ErrorClass::parse(c).ok_or_else(|| ApiError::field("error_class", "not an error class"))?),
        };
        Ok(Selection::Filter(ReplayFilter {
            kind,
            account_id,
            error_class,
            group: None,
            dead_before,
        }))
    }

    /// The selection as it stands at `at`: a filter or a group then reaches only the
    /// jobs dead by then — what the confirm page counts — never one that died after
    /// (found by the console audit of 2026-12-07: a confirmed discard deleted for good a
    /// job that died between the count and the click). Picked ids are exact already.
    fn bounded_at(self, at: DateTime<Utc>) -> Selection {
        match self {
            Selection::Group { group, account_id, .. } => Selection::Group {
                group,
                account_id,
                dead_before: Some(at),
            },
            Selection::Filter(f) => Selection::Filter(ReplayFilter {
                dead_before: Some(at),
                ..f
            }),
            ids @ Selection::Ids(_) => ids,
        }
    }

    /// When the jobs it reaches died by, if it is bounded so.
    fn dead_before(&self) -> Option<DateTime<Utc>> {
        match self {
            Selection::Group { dead_before, .. } => *dead_before,
            Selection::Filter(f) => f.dead_before,
            Selection::Ids(_) => None,
        }
    }

    /// The account it is limited to, if it names one.
    fn account(&self) -> Option<&str> {
        match self {
            Selection::Group { account_id, .. } => account_of(account_id),
            Selection::Filter(f) => f.account_id.as_deref().filter(|a| !a.is_empty()),
            Selection::Ids(_) => None,
        }
    }

    /// The hidden fields that carry it to the next step.
    fn fields(&self) -> Vec<(String, String)> {
        let mut out = self.selecting_fields();
        if let Some(t) = self.dead_before() {
            out.push(("dead_before".to_owned(), t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)));
        }
        out
    }

    /// [`Self::fields`] but the time bound: what it selects, in words too.
    fn selecting_fields(&self) -> Vec<(String, String)> {
        match self {
            Selection::Group { group, account_id, .. } => {
                let mut f = vec![("group".to_owned(), group.clone())];
                f.extend(account_id.iter().map(|a| ("account_id".to_owned(), a.clone())));
                f
            }
            Selection::Ids(ids) => vec![("ids".to_owned(), ids.join(",")), ("picked".to_owned(), "1".to_owned())],
            Selection::Filter(f) => {
                let mut out = Vec::new();
                if let Some(k) = f.kind {
                    out.push(("kind".to_owned(), k.to_string()));
                }
                if let Some(a) = &f.account_id {
                    out.push(("account_id".to_owned(), a.clone()));
                }
                if let Some(c) = f.error_class {
                    out.push(("error_class".to_owned(), c.as_str().to_owned()));
                }
                out
            }
        }
    }

    fn describe(&self) -> String {
        match self {
            Selection::Group { group, .. } => format!("group {group}"),
            Selection::Ids(ids) => format!("{} jobs picked", ids.len()),
            Selection::Filter(f) => {
                let parts: Vec<String> = self.selecting_fields().into_iter().map(|(k, v)| format!("{k} = {v}")).collect();
                if parts.is_empty() && f.kind.is_none() {
                    "every dead job".into()
                } else {
                    format!("dead jobs with {}", parts.join(", "))
                }
            }
        }
    }

    /// The filter the API's selection takes (`None` for ids).
    fn filter(&self) -> Option<ReplayFilter> {
        match self {
            Selection::Group {
                group,
                account_id,
                dead_before,
            } => Some(ReplayFilter {
                kind: parse_group(group).map(|g| g.0),
                account_id: account_of(account_id).map(str::to_owned),
                error_class: None,
                group: Some(group.clone()),
                dead_before: *dead_before,
            }),
            Selection::Filter(f) => Some(f.clone()),
            Selection::Ids(_) => None,
        }
    }
}

/// Most pages of the dead-letter listing a filter's count reads: each walks at most
/// 20,000 index entries a queue, whether they match or not (a key scoped to an account
/// walks its account's index of all its jobs), so a page's count stays bounded in time.
const MAX_COUNT_PAGES: usize = 3;

/// How many dead jobs a selection holds, or at least how many: a filter's count stops
/// at [`MAX_COUNT_PAGES`] with more of the index unread.
#[derive(Clone, Copy, PartialEq, Debug)]
struct Count {
    n: u64,
    at_least: bool,
}

impl Count {
    fn exactly(n: u64) -> Count {
        Count { n, at_least: false }
    }
}

impl maud::Render for Count {
    fn render(&self) -> maud::Markup {
        html! { @if self.at_least { "at least " } (self.n) }
    }
}

/// How many dead jobs the selection holds now (up to [`MAX_JOBS`]): a group's counter, a
/// filter's matches counted a page at a time, or the picked ids that are dead.
async fn count(state: &AppState, caller: &Caller, sel: &Selection) -> Result<Count, ApiError> {
    match sel {
        Selection::Group { group, account_id, .. } => Ok(Count::exactly(
            group_of(state, caller, group, account_of(account_id)).await?["count"]
                .as_u64()
                .unwrap_or(0)
                .min(MAX_JOBS as u64),
        )),
        Selection::Ids(ids) => {
            let ids: Vec<drover::job::JobId> = ids.iter().filter_map(|id| id.parse().ok()).collect();
            let summaries = dead_letter::picked_summaries(state, caller, &ids).await?;
            Ok(Count::exactly(
                summaries
                    .iter()
                    .flatten()
                    .filter(|s| caller.sees_job(&s.job) && s.job.state == drover::job::JobState::Dead)
                    .count() as u64,
            ))
        }
        Selection::Filter(f) => {
            let (ids, at_least) = dead_ids(state, caller, f, MAX_JOBS, MAX_COUNT_PAGES).await?;
            Ok(Count {
                n: ids.len() as u64,
                at_least,
            })
        }
    }
}

/// Whether the listed job `j` died by `before` (when bounded).
fn dead_by(j: &Value, before: Option<DateTime<Utc>>) -> bool {
    let Some(before) = before else { return true };
    let died = j["finished_at"].as_str().and_then(|t| DateTime::parse_from_rfc3339(t).ok());
    died.is_none_or(|d| d.with_timezone(&Utc) <= before)
}

/// Redis's clock: the one the jobs' times are written by.
async fn redis_now(state: &AppState) -> Result<DateTime<Utc>, ApiError> {
    let mut conn = state.store().connection();
    let (secs, micros): (i64, u32) = redis::cmd("TIME").query_async(&mut conn).await?;
    Ok(DateTime::from_timestamp(secs, micros * 1000).unwrap_or_else(Utc::now))
}

/// The ids of the dead jobs `f` selects, newest first, up to `max`, listed a page of
/// 1,000 at a time (at most `pages`) as the CLI lists them (each page's walk is charged),
/// and whether more may match: the listing stopped at `max` or `pages`, or a page after
/// the first was refused by the key's budget (what was listed is kept). An action on a filter acts on
/// these ids: one call walking the index itself stops at its scan limit, and found
/// nothing of a filter whose matches lie beyond it (console audit of 2026-12-06).
async fn dead_ids(state: &AppState, caller: &Caller, f: &ReplayFilter, max: usize, pages: usize) -> Result<(Vec<String>, bool), ApiError> {
    let mut ids: Vec<String> = Vec::new();
    let mut cursor: Option<String> = None;
    let class = f.error_class.map(|c| c.as_str());
    for page_number in 0..pages {
        let mut q: Vec<(&str, String)> = vec![("limit", "1000".into())];
        if let Some(k) = f.kind {
            q.push(("kind", k.to_string()));
        }
        if let Some(a) = &f.account_id {
            q.push(("account_id", a.clone()));
        }
        if let Some(c) = f.error_class {
            q.push(("error_class", c.as_str().to_owned()));
        }
        if let Some(g) = &f.group {
            q.push(("group", g.clone()));
        }
        if let Some(c) = &cursor {
            q.push(("cursor", c.clone()));
        }
        let raw = serde_urlencoded::to_string(&q).unwrap_or_default();
        let listed = match dead_letter::list_dead(State(state.clone()), caller.clone(), RawQuery(Some(raw))).await {
            Ok(listed) => listed,
            Err(ApiError::RateLimited { .. } | ApiError::TooManyInFlight { .. }) if page_number > 0 => return Ok((ids, true)),
            Err(e) => return Err(e),
        };
        let page = serde_json::to_value(listed.0).unwrap_or_default();
        let matching = page["jobs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|j| class.is_none_or(|c| j["last_error"]["class"].as_str() == Some(c)))
            .filter(|j| dead_by(j, f.dead_before))
            .filter_map(|j| j["id"].as_str());
        for id in matching {
            if ids.len() >= max {
                return Ok((ids, true));
            }
            ids.push(id.to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return Ok((ids, false)),
        }
    }
    Ok((ids, true))
}

/// What an action will touch, before it happens.
pub async fn confirm(State(state): State<AppState>, caller: Caller, session: Session, RawQuery(raw): RawQuery) -> Response {
    let viewer = Viewer { caller, session };
    if !viewer.acts() {
        return page::error(&ApiError::Forbidden("replaying and discarding need an admin key".into()));
    }
    let p = pairs(raw.as_deref().unwrap_or_default());
    let op = one(&p, "op").unwrap_or_default().to_owned();
    if op != "replay" && op != "discard" {
        return page::error(&ApiError::field("op", "replay or discard"));
    }
    let sel = match Selection::to_act_on(&p) {
        Ok(s) => s,
        Err(e) => return page::error(&e),
    };
    // What the count finds now is what the action reaches, however long the click takes.
    let sel = match sel.dead_before() {
        Some(_) => sel,
        None => match redis_now(&state).await {
            Ok(now) => sel.bounded_at(now),
            Err(e) => return page::error(&e),
        },
    };
    let count = match count(&state, &viewer.caller, &sel).await {
        Ok(n) => n,
        Err(e) => return page::error(&e),
    };
    let canary = one(&p, "canary").and_then(|c| c.parse::<u32>().ok()).unwrap_or(0).min(MAX_CANARY);
    let mut fields = sel.fields();
    fields.push(("op".into(), op.clone()));
    fields.push(("canary".into(), canary.to_string()));
    // Picked jobs (at most MAX_JOBS, each read when picked) go at once; a filter or a
    // group is paced (found by the console audit of 2026-12-06: the page said picked jobs
    // went at the pace too).
    let pace = if matches!(sel, Selection::Ids(_)) {
        "at once".to_owned()
    } else {
        format!("at {} a second", state.ui().replay_rate)
    };
    let body = html! {
        @if let Selection::Group { group, account_id, .. } = &sel {
            @if let Ok(g) = group_of(&state, &viewer.caller, group, account_of(account_id)).await {
                p { "Group " code { (group) } ": " code { (g["message"].as_str().unwrap_or_default()) } " (" (g["class"].as_str().unwrap_or_default()) ")" }
            }
        } @else {
            p { "Selection: " (sel.describe()) }
        }
        @if op == "discard" {
            p.warning { "This deletes " strong #confirm-count { (count) } " dead jobs for good." }
        } @else if canary > 0 {
            p { "This replays " strong #confirm-count { (count) } " dead jobs: " (canary) " first as a canary; the rest only when you say so after they have ended, " (pace) "." }
        } @else {
            p { "This replays " strong #confirm-count { (count) } " dead jobs, " (pace) "." }
        }
        @if count == Count::exactly(0) {
            p.muted { "Nothing to do." }
        } @else {
            form.action #confirm method="post" action="/ui/dead-letter/act" {
                (viewer.csrf())
                @for (name, value) in &fields { input type="hidden" name=(name) value=(value); }
                button type="submit" { @if op == "discard" { "Discard them" } @else { "Replay" } }
            }
        }
        p { a href={"/ui/dead-letter" @if let Some(a) = sel.account() { "?account_id=" (a) }} { "Cancel" } }
    };
    page::render(&viewer, Nav::DeadLetter, "Confirm", body)
}

pub async fn act(
    State(state): State<AppState>,
    caller: Caller,
    session: Session,
    deadline: Option<axum::Extension<Deadline>>,
    body: axum::body::Bytes,
) -> Response {
    let deadline = deadline.map(|axum::Extension(d)| d);
    let p = pairs(std::str::from_utf8(&body).unwrap_or_default());
    let sel = match Selection::to_act_on(&p) {
        Ok(s) => s,
        Err(e) => return page::error(&e),
    };
    let op = one(&p, "op").unwrap_or_default();
    let canary = one(&p, "canary").and_then(|c| c.parse::<u32>().ok()).unwrap_or(0).min(MAX_CANARY);
    match (op, &sel) {
        ("discard", _) => {
            let (st, who, what) = (state.clone(), caller.clone(), sel.clone());
            within_the_request((&state, deadline), &session, &sel, ("Discarded", "discard"), |done| async move {
                discard_all(&st, &who, &what, &done).await
            })
            .await
        }
        ("replay", _) if canary > 0 => {
            let req = match &sel {
                Selection::Ids(ids) => ReplayRequest {
                    ids: Some(ids.iter().take(canary as usize).cloned().collect()),
                    filter: None,
                    limit: None,
                },
                // A group's canaries are listed as a filter's are: a call walking its index
                // from the newest end passed over the jobs dead by the bound when many
                // died after it (the console audit of 2026-12-07, second).
                Selection::Filter(_) | Selection::Group { .. } => {
                    match dead_ids(&state, &caller, &sel.filter().unwrap_or_default(), canary as usize, MAX_COUNT_PAGES).await {
                        Ok((ids, _)) => ReplayRequest {
                            ids: Some(ids),
                            filter: None,
                            limit: None,
                        },
                        Err(e) => return page::error(&e),
                    }
                }
            };
            match dead_letter::replay(State(state.clone()), caller.clone(), JsonBody(req)).await {
                // No canary could go (another sync of its account is active, the jobs are
                // no longer dead, the walk found none): nothing else goes either, as the
                // CLI says (found by the console audit of 2026-12-06: the canary page
                // then offered the rest at once, no canary having run).
                Ok(r) if r.0.replayed.is_empty() => {
                    let why: Vec<String> = r.0.skipped.iter().take(5).map(|s| format!("{}: {}", s.id, s.reason)).collect();
                    page::error(&ApiError::Conflict(format!(
                        "no canary could be replayed{}; nothing else was",
                        if why.is_empty() {
                            String::new()
                        } else {
                            format!(" ({})", why.join("; "))
                        }
                    )))
                }
                Ok(r) => {
                    let mut rest = sel.clone();
                    if let Selection::Ids(ids) = &mut rest {
                        ids.retain(|id| !r.0.replayed.contains(id));
                    }
                    let mut q = rest.fields();
                    q.push(("canary_ids".into(), r.0.replayed.join(",")));
                    Redirect::to(&format!(
                        "/ui/dead-letter/canary?{}",
                        serde_urlencoded::to_string(&q).unwrap_or_default()
                    ))
                    .into_response()
                }
                Err(e) => page::error(&e),
            }
        }
        ("replay" | "rest", Selection::Ids(ids)) => {
            let (st, who, ids) = (state.clone(), caller.clone(), ids.clone());
            within_the_request((&state, deadline), &session, &sel, ("Replayed", "replay"), |done| async move {
                let (n, stopped) = by_ids(&st, &who, &ids, false, &done).await;
                (n, stopped, false)
            })
            .await
        }
        ("replay" | "rest", _) => {
            let rate = state.ui().replay_rate;
            let filter = sel.filter().unwrap_or_default();
            // The selection without its time bound: each confirm page stamps its own, and
            // two of them for one group are one replay (found by the review of 2026-12-07).
            let selection = serde_json::to_string(&ReplayFilter {
                dead_before: None,
                ..filter.clone()
            })
            .unwrap_or_default();
            match state.paced_replays().start(&caller.name, &selection).await {
                Ok(running) => {
                    // Counted with the actions a shutdown waits for: it stops at the
                    // shutdown, and its audit entry is written as it ends.
                    state.background().clone().spawn(async move {
                        let _running = running;
                        dead_letter::replay_paced(state.clone(), caller, filter, rate, MAX_JOBS).await
                    });
                    done(&session, &sel, &format!("Replaying {} at {rate} jobs a second.", sel.describe()))
                }
                Err(NotStarted::AlreadyRunning) => done(
                    &session,
                    &sel,
                    &format!(
                        "Already replaying {} at {rate} jobs a second; nothing more was started.",
                        sel.describe()
                    ),
                ),
                Err(NotStarted::TooMany) => done(
                    &session,
                    &sel,
                    &format!("This key has {MAX_PER_KEY} paced replays running; start another once one has finished."),
                ),
                Err(NotStarted::Unavailable(e)) => page::error(&e),
            }
        }
        _ => page::error(&ApiError::field("op", "replay, discard or rest")),
    }
}

/// The notice of an action that did `n` jobs: stopped short by the key's write budget,
/// it says so and when to go on; stopped by another error, that error's page.
/// Runs a console action of many calls (up to [`MAX_JOBS`] jobs, 1,000 a call) on a task
/// of its own, so the request's timeout never cuts it short: its answer when it ends
/// within most of the request's time, else a notice of how far it has got while it goes
/// on to its end (found by the console audit of 2026-12-07: the request's timeout dropped
/// the loop part-way, and the browser got the API's problem JSON with nothing said of the
/// jobs already done). `work` counts the jobs done in the counter it is given.
async fn within_the_request<F>(
    (state, deadline): (&AppState, Option<Deadline>),
    session: &Session,
    sel: &Selection,
    (did, verb): (&str, &str),
    work: impl FnOnce(Arc<AtomicUsize>) -> F,
) -> Response
where
    F: std::future::Future<Output = (usize, Option<ApiError>, bool)> + Send + 'static,
{
    let done_so_far = Arc::new(AtomicUsize::new(0));
    let mut task = crate::middleware::request_id::spawn_for_request(state.background(), work(done_so_far.clone()));
    // A quarter of the request's time before its deadline (counted from when it came, not
    // from this handler: found by the review of 2026-12-07, a slow form left the API's
    // timeout to answer first).
    let limit = state.limits().request_timeout;
    let answer_at = deadline.map_or_else(|| tokio::time::Instant::now() + limit * 3 / 4, |d| d.0 - limit / 4);
    match tokio::time::timeout_at(answer_at, &mut task).await {
        Ok(Ok(outcome)) => finished(session, sel, (did, verb), outcome),
        Ok(Err(e)) => page::error(&ApiError::Internal(format!("the console action stopped: {e}"))),
        Err(_) => {
            // How it ends is logged, since the page no longer says it.
            let (action, describe) = (did.to_owned(), sel.describe());
            state.background().spawn(async move {
                match task.await {
                    Ok((n, Some(e), _)) => {
                        tracing::warn!(action = %action, done = n, selection = %describe, error = %e, "console action stopped part-way in the background")
                    }
                    Ok((n, None, _)) => {
                        tracing::info!(action = %action, done = n, selection = %describe, "console action ended in the background")
                    }
                    Err(e) => tracing::error!(action = %action, selection = %describe, error = %e, "console action stopped"),
                }
            });
            answered_so_far(session, sel, did, &done_so_far)
        }
    }
}

/// The page of an action that goes on in the background: how far it has got.
fn answered_so_far(session: &Session, sel: &Selection, did: &str, done_so_far: &AtomicUsize) -> Response {
    self::done(
        session,
        sel,
        &format!(
            "{did} {} dead jobs so far ({}); the rest goes on in the background: reload to see what is left.",
            done_so_far.load(Ordering::Relaxed),
            sel.describe()
        ),
    )
}

fn finished(
    session: &Session,
    sel: &Selection,
    (did, verb): (&str, &str),
    (n, stopped, more): (usize, Option<ApiError>, bool),
) -> Response {
    match stopped {
        None if more => done(
            session,
            sel,
            &format!("{did} {n} dead jobs ({}); more may match (only so many are listed at once): {verb} again.", sel.describe()),
        ),
        None => done(session, sel, &format!("{did} {n} dead jobs ({}).", sel.describe())),
        Some(ApiError::RateLimited { retry_after }) => done(
            session,
            sel,
            &format!(
                "{did} {n} dead jobs ({}); the rest is past this key's budget (its writes, or its reads for walking the dead letter): {verb} again in {} s.",
                sel.describe(),
                retry_after.as_secs().max(1)
            ),
        ),
        // What was done is said with what stopped the rest (before, the error page alone).
        Some(e) if n > 0 => done(
            session,
            sel,
            &format!(
                "{did} {n} dead jobs ({}); then it stopped: {}: {} ({verb} again for the rest).",
                sel.describe(),
                e.kind().1,
                e.detail()
            ),
        ),
        Some(e) => page::error(&e),
    }
}

/// Replays (or discards) `ids` in calls of 1,000 (each after the first costs a write):
/// how many went, and what stopped it short.
async fn by_ids(state: &AppState, caller: &Caller, ids: &[String], discard: bool, went_so_far: &AtomicUsize) -> (usize, Option<ApiError>) {
    let mut went = 0;
    for (n, chunk) in ids.chunks(1000).enumerate() {
        if let Err(e) = charge_chunk(state, caller, n).await {
            return (went, Some(e));
        }
        let req = ReplayRequest {
            ids: Some(chunk.to_vec()),
            filter: None,
            limit: None,
        };
        let (state, caller) = (State(state.clone()), caller.clone());
        let answer = if discard {
            dead_letter::discard(state, caller, JsonBody(req))
                .await
                .map(|r| (r.0.discarded.len(), r.0.stopped))
        } else {
            dead_letter::replay(state, caller, JsonBody(req))
                .await
                .map(|r| (r.0.replayed.len(), r.0.stopped))
        };
        match answer {
            Ok((k, stopped)) => {
                went += k;
                went_so_far.store(went, Ordering::Relaxed);
                if let Some(e) = stopped.and_then(|s| s.error) {
                    return (went, Some(e));
                }
            }
            Err(e) => return (went, Some(e)),
        }
    }
    (went, None)
}

/// Discards the selection in calls of 1,000 (each after the first costs a write): how
/// many went, what stopped it short (a 429 over the key's budget: what went is kept and
/// said), and whether more may match. A filter or a group is listed first, up to
/// [`MAX_JOBS`] of its jobs dead by its bound, and those ids go (found by the console
/// audit of 2026-12-07, second: a group's calls each walked its index from the newest
/// end, so 600 jobs dead after the count hid the counted ones from every call, and the
/// cap, checked between calls of 1,000, let 200 unconfirmed ones go).
async fn discard_all(state: &AppState, caller: &Caller, sel: &Selection, done: &AtomicUsize) -> (usize, Option<ApiError>, bool) {
    let listed;
    let (ids, more): (&[String], bool) = match (sel, sel.filter()) {
        (Selection::Ids(ids), _) => (ids, false),
        (_, Some(f)) => match dead_ids(state, caller, &f, MAX_JOBS, MAX_JOBS / 1000).await {
            Ok((ids, more)) => {
                listed = ids;
                (&listed, more)
            }
            Err(e) => return (0, Some(e), false),
        },
        (_, None) => (&[], false),
    };
    let (discarded, stopped) = by_ids(state, caller, ids, true, done).await;
    (discarded, stopped, more)
}

/// One write of the key's budget for each chunk of 1,000 jobs after the first (the
/// request paid for that one), as the API charges each call of 1,000: one console
/// action is not ten calls' work for the price of one.
async fn charge_chunk(state: &AppState, caller: &Caller, chunk: usize) -> Result<(), ApiError> {
    if chunk == 0 {
        return Ok(());
    }
    state.limits_per_key().writes.check(&caller.name).await
}

/// Back to the groups, with the action's notice for this session.
/// (On the selection's account's groups when it names one: a key for several accounts
/// would otherwise land on its first account's.)
fn done(session: &Session, sel: &Selection, text: &str) -> Response {
    let account = sel
        .account()
        .map(|a| format!("{}&", serde_urlencoded::to_string([("account_id", a)]).unwrap_or_default()))
        .unwrap_or_default();
    Redirect::to(&format!("/ui/dead-letter?{account}{}", notice::query(session, text))).into_response()
}

/// The canary's jobs until they end; then the rest may follow (only if all succeeded).
pub async fn canary(State(state): State<AppState>, caller: Caller, session: Session, RawQuery(raw): RawQuery) -> Response {
    let viewer = Viewer { caller, session };
    if !viewer.acts() {
        return page::error(&ApiError::Forbidden("replaying and discarding need an admin key".into()));
    }
    let p = pairs(raw.as_deref().unwrap_or_default());
    let sel = match Selection::from_pairs(&p) {
        Ok(s) => s,
        Err(e) => return page::error(&e),
    };
    let mut rows = Vec::new();
    for id in one(&p, "canary_ids")
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
        .take(MAX_CANARY as usize)
    {
        // The state only: a summary, at a cost that does not grow with the payload (the
        // whole record, read for each of up to 20 ids at every refresh, cost a key one
        // read of its budget for 20 reads of up to 1 MiB each).
        let st = match crate::handlers::load_summary(&state, &viewer.caller, id).await {
            Ok(s) => s.job.state.to_string(),
            Err(ApiError::NotFound(_)) => "gone".to_owned(),
            Err(e) => return page::error(&e),
        };
        rows.push((id.to_owned(), st));
    }
    let ended = |s: &str| matches!(s, "succeeded" | "partial" | "dead" | "cancelled" | "gone");
    let all_ended = rows.iter().all(|(_, s)| ended(s));
    // (no canary at all, as a hand-made address may say, is not a canary that succeeded)
    let all_ok = !rows.is_empty() && rows.iter().all(|(_, s)| s == "succeeded");
    // Not counted (the key's budget, Redis): said so, never shown as none left.
    let left = count(&state, &viewer.caller, &sel).await.map_err(|e| e.detail());
    let mut fields = sel.fields();
    fields.push(("op".into(), "rest".into()));
    let body = html! {
        section #canary-live hx-get="" hx-select="#canary-live" hx-trigger=[(!all_ended || left.is_err()).then_some("every 2s")] hx-swap="outerHTML" {
            @match &left {
                Ok(left) => p { "Canary of " (sel.describe()) "; " strong #group-left { (left) } " other dead jobs wait." },
                Err(why) => p { "Canary of " (sel.describe()) "; the other dead jobs could not be counted just now (" (why) "): looking again." },
            }
            table #canary {
                thead { tr { th { "job" } th { "state" } } }
                tbody { @for (id, st) in &rows { tr data-job-id=(id) { td { a href={"/ui/jobs/" (id)} { code { (id) } } } td data-state=(st) { (st) } } } }
            }
            @if !all_ended {
                p.muted { "Waiting for the canary to end…" }
            } @else if all_ok {
                @if let Ok(left) = &left {
                    @if left.n > 0 {
                        form.action #replay-rest method="post" action="/ui/dead-letter/act" {
                            (viewer.csrf())
                            @for (name, value) in &fields { input type="hidden" name=(name) value=(value); }
                            button type="submit" { "Replay the other " (left) }
                        }
                    }
                }
            } @else {
                p.problem { "A canary job did not succeed: the rest stay in the dead letter." }
            }
        }
    };
    page::render(&viewer, Nav::DeadLetter, "Canary", body)
}
