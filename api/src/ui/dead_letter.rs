//! `/ui/dead-letter`: dead jobs grouped by error signature, and a group's replay or
//! discard — always through a confirm page that shows the count it will touch; a replay
//! may send a canary first (its jobs shown until they end) before the rest go at
//! `api.ui.replay_rate` jobs a second.
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::html;
use serde::Deserialize;
use serde_json::Value;

use super::page::{self, Nav, Viewer};
use super::session::Session;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{query, JsonBody};
use crate::handlers::dead_groups::{list_dead_groups, parse_group, NOT_A_GROUP};
use crate::handlers::dead_letter;
use crate::state::AppState;
use crate::views::{ReplayFilter, ReplayRequest};

/// Most jobs one console action touches (as `drover dlq` without `--limit`).
const MAX_JOBS: usize = 10_000;
/// Most canary jobs.
const MAX_CANARY: u32 = 20;

#[derive(Debug, Default, Deserialize)]
struct Scope {
    kind: Option<String>,
    account_id: Option<String>,
    notice: Option<String>,
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
    let list = match groups_json(&state, &viewer.caller, account_of(&scope.kind), account).await {
        Ok(l) => l,
        Err(e) => return page::error(&e),
    };
    let body = html! {
        @if let Some(n) = &scope.notice { p.notice { (n) } }
        form method="get" action="/ui/dead-letter" {
            label { "account " input type="text" name="account_id" value=[account]; }
            button type="submit" { "Show" }
        }
        p.muted { "Dead jobs of a kind that failed the same way (error class and message, ids and numbers masked), largest first." }
        table #dlq-groups {
            thead { tr { th { "kind" } th { "count" } th { "class" } th { "message" } th { "first seen" } th { "last seen" } th { "newest jobs" } @if viewer.acts() { th { "act" } } } }
            tbody {
                @for g in list["groups"].as_array().into_iter().flatten() {
                    @let id = g["id"].as_str().unwrap_or_default();
                    tr data-group=(id) {
                        td { (g["kind"].as_str().unwrap_or_default()) }
                        td data-count=(g["count"]) { a href={"/ui/jobs?state=dead&kind=" (g["kind"].as_str().unwrap_or_default())} { (g["count"]) } }
                        td data-class=(g["class"].as_str().unwrap_or_default()) { (g["class"].as_str().unwrap_or_default()) }
                        td data-message=(g["message"].as_str().unwrap_or_default()) { code { (g["message"].as_str().unwrap_or_default()) } }
                        td { (g["first_seen"].as_str().unwrap_or_default()) }
                        td { (g["last_seen"].as_str().unwrap_or_default()) }
                        td { @for s in g["sample_job_ids"].as_array().into_iter().flatten() {
                            @let sid = s.as_str().unwrap_or_default();
                            a href={"/ui/jobs/" (sid)} { code { (sid) } } " "
                        } }
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
                    }
                }
            }
        }
        @if list["groups"].as_array().is_none_or(Vec::is_empty) { p.muted { "The dead letter is empty." } }
    };
    page::render(&viewer, Nav::DeadLetter, "Dead letter", body)
}

#[derive(Debug, Default, Deserialize)]
struct Proposal {
    group: String,
    op: String,
    account_id: Option<String>,
    canary: Option<u32>,
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

/// What an action will touch, before it happens.
pub async fn confirm(State(state): State<AppState>, caller: Caller, session: Session, RawQuery(raw): RawQuery) -> Response {
    let viewer = Viewer { caller, session };
    let p: Proposal = match query(raw.as_deref()) {
        Ok(p) => p,
        Err(e) => return page::error(&e),
    };
    if !viewer.acts() {
        return page::error(&ApiError::Forbidden("replaying and discarding need an admin key".into()));
    }
    if p.op != "replay" && p.op != "discard" {
        return page::error(&ApiError::field("op", "replay or discard"));
    }
    let g = match group_of(&state, &viewer.caller, &p.group, account_of(&p.account_id)).await {
        Ok(g) => g,
        Err(e) => return page::error(&e),
    };
    let count = g["count"].as_u64().unwrap_or(0).min(MAX_JOBS as u64);
    let canary = p.canary.unwrap_or(0).min(MAX_CANARY);
    let canary_s = canary.to_string();
    let mut fields: Vec<(&str, &str)> = vec![("group", p.group.as_str()), ("op", p.op.as_str()), ("canary", canary_s.as_str())];
    if let Some(a) = account_of(&p.account_id) {
        fields.push(("account_id", a));
    }
    let rate = state.ui().replay_rate;
    let body = html! {
        p { "Group " code { (p.group) } ": " code { (g["message"].as_str().unwrap_or_default()) } " (" (g["class"].as_str().unwrap_or_default()) ")" }
        @if p.op == "discard" {
            p.warning { "This deletes " strong #confirm-count { (count) } " dead jobs for good." }
        } @else if canary > 0 {
            p { "This replays " strong #confirm-count { (count) } " dead jobs: " (canary) " first as a canary; the rest only when you say so after they have ended, at " (rate) " a second." }
        } @else {
            p { "This replays " strong #confirm-count { (count) } " dead jobs, at " (rate) " a second." }
        }
        form.action #confirm method="post" action="/ui/dead-letter/act" {
            (viewer.csrf())
            @for (name, value) in &fields { input type="hidden" name=(name) value=(value); }
            button type="submit" { @if p.op == "discard" { "Discard them" } @else { "Replay" } }
        }
        p { a href="/ui/dead-letter" { "Cancel" } }
    };
    page::render(&viewer, Nav::DeadLetter, "Confirm", body)
}

#[derive(Debug, Deserialize)]
pub struct ActForm {
    group: String,
    /// replay | discard | rest (the replay after a canary)
    op: String,
    account_id: Option<String>,
    canary: Option<u32>,
}

pub async fn act(State(state): State<AppState>, caller: Caller, Form(f): Form<ActForm>) -> Response {
    let Some((kind, _)) = parse_group(&f.group) else {
        return page::error(&ApiError::field("group", NOT_A_GROUP));
    };
    let filter = ReplayFilter {
        kind: Some(kind),
        account_id: account_of(&f.account_id).map(str::to_owned),
        error_class: None,
        group: Some(f.group.clone()),
    };
    let canary = f.canary.unwrap_or(0).min(MAX_CANARY);
    match f.op.as_str() {
        "discard" => {
            let mut discarded = 0;
            while discarded < MAX_JOBS {
                let req = ReplayRequest {
                    ids: None,
                    filter: Some(filter.clone()),
                    limit: Some(1000),
                };
                match dead_letter::discard(State(state.clone()), caller.clone(), JsonBody(req)).await {
                    Ok(r) if r.0.discarded.is_empty() => break,
                    Ok(r) => discarded += r.0.discarded.len(),
                    Err(e) => return page::error(&e),
                }
            }
            notice(&format!("Discarded {discarded} dead jobs of group {}.", f.group))
        }
        "replay" if canary > 0 => {
            let req = ReplayRequest {
                ids: None,
                filter: Some(filter),
                limit: Some(canary),
            };
            match dead_letter::replay(State(state.clone()), caller.clone(), JsonBody(req)).await {
                Ok(r) => {
                    let ids = r.0.replayed.join(",");
                    let mut q = vec![("group", f.group.as_str()), ("ids", ids.as_str())];
                    if let Some(a) = account_of(&f.account_id) {
                        q.push(("account_id", a));
                    }
                    Redirect::to(&format!(
                        "/ui/dead-letter/canary?{}",
                        serde_urlencoded::to_string(&q).unwrap_or_default()
                    ))
                    .into_response()
                }
                Err(e) => page::error(&e),
            }
        }
        "replay" | "rest" => {
            let rate = state.ui().replay_rate;
            tokio::spawn(dead_letter::replay_paced(state.clone(), caller, filter, rate, MAX_JOBS));
            notice(&format!("Replaying group {} at {rate} jobs a second.", f.group))
        }
        _ => page::error(&ApiError::field("op", "replay, discard or rest")),
    }
}

fn notice(text: &str) -> Response {
    let q = serde_urlencoded::to_string([("notice", text)]).unwrap_or_default();
    Redirect::to(&format!("/ui/dead-letter?{q}")).into_response()
}

#[derive(Debug, Default, Deserialize)]
struct CanaryQuery {
    group: String,
    ids: String,
    account_id: Option<String>,
}

/// The canary's jobs until they end; then the rest may follow (only if all succeeded).
pub async fn canary(State(state): State<AppState>, caller: Caller, session: Session, RawQuery(raw): RawQuery) -> Response {
    let viewer = Viewer { caller, session };
    let q: CanaryQuery = match query(raw.as_deref()) {
        Ok(q) => q,
        Err(e) => return page::error(&e),
    };
    let mut rows = Vec::new();
    for id in q.ids.split(',').filter(|s| !s.is_empty()).take(MAX_CANARY as usize) {
        let st = match crate::handlers::jobs::get_job(State(state.clone()), viewer.caller.clone(), axum::extract::Path(id.to_owned())).await
        {
            Ok(j) => j.0.state.to_string(),
            Err(ApiError::NotFound(_)) => "gone".to_owned(),
            Err(e) => return page::error(&e),
        };
        rows.push((id.to_owned(), st));
    }
    let ended = |s: &str| matches!(s, "succeeded" | "partial" | "dead" | "cancelled" | "gone");
    let all_ended = rows.iter().all(|(_, s)| ended(s));
    let all_ok = rows.iter().all(|(_, s)| s == "succeeded");
    let left = group_of(&state, &viewer.caller, &q.group, account_of(&q.account_id))
        .await
        .map(|g| g["count"].as_u64().unwrap_or(0))
        .unwrap_or(0);
    let mut fields: Vec<(&str, &str)> = vec![("group", q.group.as_str()), ("op", "rest")];
    if let Some(a) = account_of(&q.account_id) {
        fields.push(("account_id", a));
    }
    let body = html! {
        section #canary-live hx-get="" hx-select="#canary-live" hx-trigger=[(!all_ended).then_some("every 2s")] hx-swap="outerHTML" {
            p { "Canary of group " code { (q.group) } "; " strong #group-left { (left) } " jobs of the group are still dead and wait." }
            table #canary {
                thead { tr { th { "job" } th { "state" } } }
                tbody { @for (id, st) in &rows { tr data-job-id=(id) { td { a href={"/ui/jobs/" (id)} { code { (id) } } } td data-state=(st) { (st) } } } }
            }
            @if !all_ended {
                p.muted { "Waiting for the canary to end…" }
            } @else if all_ok {
                @if viewer.acts() {
                    form.action #replay-rest method="post" action="/ui/dead-letter/act" {
                        (viewer.csrf())
                        @for (name, value) in &fields { input type="hidden" name=(name) value=(value); }
                        button type="submit" { "Replay the other " (left) }
                    }
                }
            } @else {
                p.problem { "A canary job did not succeed: the rest stay in the dead letter." }
            }
        }
    };
    page::render(&viewer, Nav::DeadLetter, "Canary", body)
}
