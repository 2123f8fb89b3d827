//! `/ui/jobs` (filtered, newest first, a page at a time, find by id) and `/ui/jobs/{id}`
//! (state, attempts, result, a replay's previous ending, items, why it waits, trace
//! link), whose state section follows the
//! job's event stream until it ends; cancel and retry for admin keys.
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::Value;

use super::page::{self, Nav, Viewer};
use super::session::Session;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::query;
use crate::handlers::{control, dead_letter, items, jobs};
use crate::state::AppState;
use drover::job::JobState;

const KINDS: [&str; 3] = ["sync", "backfill", "cleanup"];

#[derive(Debug, Default, Deserialize)]
struct Filter {
    kind: Option<String>,
    state: Option<String>,
    account_id: Option<String>,
    error_class: Option<String>,
    /// One dead-letter group's jobs (its id from the dead-letter page): the listing is
    /// then the dead letter's, whatever `state` says.
    group: Option<String>,
    cursor: Option<String>,
    id: Option<String>,
}

fn set(v: &Option<String>) -> Option<&str> {
    v.as_deref().filter(|s| !s.is_empty())
}

pub async fn list(State(state): State<AppState>, caller: Caller, session: Session, RawQuery(raw): RawQuery) -> Response {
    let viewer = Viewer { caller, session };
    let filter: Filter = match query(raw.as_deref()) {
        Ok(f) => f,
        Err(e) => return page::error(&e),
    };
    if let Some(one) = page::one_of_several_accounts(&viewer.caller, "/ui/jobs", raw.as_deref(), set(&filter.account_id)) {
        return one;
    }
    if let Some(id) = set(&filter.id) {
        return Redirect::to(&format!("/ui/jobs/{}", urlencode(id.trim()))).into_response();
    }
    // The API's own listing, with the same filters: a group's is the dead letter's
    // (before, found by the seventh audits of 2026-12-07, a group's count linked to
    // every dead job of its kind).
    let group = set(&filter.group);
    let state_filter = if group.is_some() { Some("dead") } else { set(&filter.state) };
    // (a group is of one kind and one error class: with it, only the account narrows it)
    let (kind, class_filter) = match group {
        None => (set(&filter.kind), set(&filter.error_class)),
        Some(_) => (None, None),
    };
    let mut q: Vec<(&str, &str)> = vec![("limit", "50")];
    for (name, value) in [
        ("kind", kind),
        ("state", state_filter.filter(|_| group.is_none())),
        ("group", group),
        ("account_id", set(&filter.account_id)),
        ("error_class", class_filter),
        ("cursor", set(&filter.cursor)),
    ] {
        if let Some(v) = value {
            q.push((name, v));
        }
    }
    let raw_query = RawQuery(Some(serde_urlencoded::to_string(&q).unwrap_or_default()));
    let listed = match group {
        Some(_) => dead_letter::list_dead(State(state.clone()), viewer.caller.clone(), raw_query).await,
        None => jobs::list_jobs(State(state.clone()), viewer.caller.clone(), raw_query).await,
    };
    let page_json = match listed {
        Ok(p) => serde_json::to_value(p.0).unwrap_or_default(),
        Err(e) => return page::error(&e),
    };
    let class = set(&filter.error_class);
    let rows: Vec<&Value> = page_json["jobs"].as_array().into_iter().flatten().collect();
    let next = page_json["next_cursor"].as_str().map(|c| {
        let mut n: Vec<(&str, &str)> = q.iter().copied().filter(|(k, _)| *k != "cursor" && *k != "limit").collect();
        n.push(("cursor", c));
        format!("/ui/jobs?{}", serde_urlencoded::to_string(&n).unwrap_or_default())
    });
    // Dead jobs may be picked for a replay or discard (admin keys).
    let picking = viewer.acts() && state_filter == Some("dead");
    let mut fq: Vec<(&str, &str)> = Vec::new();
    for (name, value) in [
        ("kind", kind),
        ("group", group),
        ("account_id", set(&filter.account_id)),
        ("error_class", class_filter),
    ] {
        if let Some(v) = value {
            fq.push((name, v));
        }
    }
    let filter_query = serde_urlencoded::to_string(&fq).unwrap_or_default();
    let body = html! {
        form #find-job method="get" action="/ui/jobs" {
            label { "Job id " input type="text" name="id" size="30"; }
            button type="submit" { "Open" }
        }
        form #job-filter method="get" action="/ui/jobs" {
            @if let Some(g) = group {
                input type="hidden" name="group" value=(g);
            } @else {
                (select("kind", &KINDS, set(&filter.kind)))
                (select("state", &JOB_STATES, state_filter))
            }
            label { "account " input type="text" name="account_id" value=[set(&filter.account_id)]; }
            @if group.is_none() { (select("error_class", &drover::job::ErrorClass::NAMES, class)) }
            button type="submit" { "Filter" }
        }
        @if let Some(g) = group { p #job-group { "Dead jobs of group " code { (g) } " · " a href="/ui/jobs?state=dead" { "every dead job" } } }
        @if picking {
            form.action.pick-dead method="get" action="/ui/dead-letter/confirm" {
                // says the selection is the ticked boxes: none ticked is refused, never
                // read as a filter of every dead job
                input type="hidden" name="picked" value="1";
                (jobs_table(&rows, true))
                label { "canary " input type="number" name="canary" value="0" min="0" max="20" size="3"; }
                button type="submit" name="op" value="replay" { "Replay picked…" }
                button type="submit" name="op" value="discard" { "Discard picked…" }
            }
            p {
                a.action href={"/ui/dead-letter/confirm?op=replay&" (filter_query)} { "Replay every dead job matching the filter…" } " · "
                a.action href={"/ui/dead-letter/confirm?op=discard&" (filter_query)} { "Discard every dead job matching the filter…" }
            }
        } @else {
            (jobs_table(&rows, false))
        }
        @if let Some(n) = next { p { a #next-page href=(n) { "Older jobs →" } } }
    };
    page::render(&viewer, Nav::Jobs, "Jobs", body)
}

/// The states a listing can be filtered by (the overview's `prefetched` column is a
/// waiting reason, not a state).
const JOB_STATES: [&str; JobState::ALL.len()] = {
    let mut names = [""; JobState::ALL.len()];
    let mut i = 0;
    while i < names.len() {
        names[i] = JobState::ALL[i].as_str();
        i += 1;
    }
    names
};

fn select(name: &str, options: &[&str], chosen: Option<&str>) -> Markup {
    html! {
        label { (name) " "
            select name=(name) {
                option value="" { "any" }
                @for o in options { option value=(o) selected[chosen == Some(*o)] { (o) } }
            }
        }
    }
}

/// The jobs as rows; `pick`: a checkbox (`ids`) per row.
pub fn jobs_table(rows: &[&Value], pick: bool) -> Markup {
    html! {
        table #jobs {
            thead { tr { @if pick { th {} } th { "id" } th { "kind" } th { "state" } th { "account" } th { "attempts" } th { "updated" } th { "last error" } } }
            tbody {
                @for j in rows {
                    @let id = j["id"].as_str().unwrap_or_default();
                    tr data-job-id=(id) {
                        @if pick { td { input type="checkbox" name="ids" value=(id); } }
                        td { a href={"/ui/jobs/" (id)} { code { (id) } } }
                        td { (j["kind"].as_str().unwrap_or_default()) }
                        td.state { (j["state"].as_str().unwrap_or_default()) }
                        td { (j["account_id"].as_str().unwrap_or("-")) }
                        td { (j["attempts"]) "/" (j["max_attempts"]) }
                        td { (page::when(&j["updated_at"])) }
                        td { (error_text(&j["last_error"])) }
                    }
                }
            }
        }
        @if rows.is_empty() { p.muted { "No jobs." } }
    }
}

/// The error's class and message; once, where the worker's message already starts with
/// its class (`transient: …`).
fn error_text(e: &Value) -> String {
    match (e["class"].as_str(), e["message"].as_str()) {
        (Some(c), Some(m)) if m.strip_prefix(c).is_some_and(|rest| rest.starts_with(':')) => m.to_owned(),
        (Some(c), Some(m)) => format!("{c}: {m}"),
        _ => "-".into(),
    }
}

/// Most bytes of a job's result a page shows (a backfill's lists every failed window).
const RESULT_SHOWN: usize = 16 * 1024;

/// The result, indented, cut at [`RESULT_SHOWN`] bytes with what was left out said.
fn result_text(result: &Value) -> String {
    let mut text = serde_json::to_string_pretty(result).unwrap_or_default();
    if text.len() > RESULT_SHOWN {
        let cut = (0..=RESULT_SHOWN).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
        let left = text.len() - cut;
        text.truncate(cut);
        text.push_str(&format!("\n… {left} bytes more: GET /v1/jobs/{{id}} has the whole result"));
    }
    text
}

/// `done of total message`, or `done message` while the total is not known (a sync's).
fn progress_text(p: &serde_json::Map<String, Value>) -> String {
    let done = p.get("done").cloned().unwrap_or_default();
    let message = p.get("message").and_then(Value::as_str).unwrap_or_default();
    match p.get("total").filter(|t| !t.is_null()) {
        Some(total) => format!("{done} of {total} {message}"),
        None => format!("{done} {message}"),
    }
}

fn urlencode(s: &str) -> String {
    serde_urlencoded::to_string([("", s)])
        .unwrap_or_default()
        .trim_start_matches('=')
        .to_owned()
}

async fn load(state: &AppState, caller: &Caller, id: &str) -> Result<Value, ApiError> {
    let view = jobs::get_job(State(state.clone()), caller.clone(), Path(id.to_owned())).await?;
    Ok(serde_json::to_value(view.0).unwrap_or_default())
}

pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    session: Session,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let viewer = Viewer { caller, session };
    let job = match load(&state, &viewer.caller, &id).await {
        Ok(j) => j,
        Err(e) => return page::error(&e),
    };
    let outcome: ItemsFilter = query(raw.as_deref()).unwrap_or_default();
    let filter = set(&outcome.outcome)
        .map(|o| format!("outcome={}&", urlencode(o)))
        .unwrap_or_default();
    let items_query = match set(&outcome.cursor) {
        Some(c) => format!("{filter}limit=100&cursor={}", urlencode(c)),
        None => format!("{filter}limit=100"),
    };
    let items = items::list_items(
        State(state.clone()),
        viewer.caller.clone(),
        Path(id.clone()),
        RawQuery(Some(items_query)),
    )
    .await
    .map(|p| serde_json::to_value(p.0).unwrap_or_default());
    // A page of items refused (the key's read budget, its turns for walks) or failed is
    // said so, never shown as "null items" (console audit of 2026-12-06).
    let (items, items_problem) = match items {
        Ok(v) => (v, None),
        Err(e) => {
            if e.status().is_server_error() {
                tracing::warn!(job_id = %id, error = %e, "console job page: its items could not be read");
            }
            (Value::Null, Some(format!("{}: {}", e.kind().1, e.detail())))
        }
    };
    let trace = job["trace_id"]
        .as_str()
        .filter(|_| !state.ui().trace_url.is_empty())
        .map(|t| state.ui().trace_url.replace("{trace_id}", t));
    let body = html! {
        p { code { (id) } " · " (job["kind"].as_str().unwrap_or_default()) " · account " (job["account_id"].as_str().unwrap_or("-"))
            " · trigger " (job["trigger"].as_str().unwrap_or("-"))
            @if let Some(t) = &trace { " · " a #trace-link href=(t) { "trace" } } }
        (live_page_block(&job, &viewer))
        h2 { "Payload" }
        pre.payload { (summary(&job["payload"])) }
        h2 { "Items" }
        @if let Some(problem) = &items_problem {
            p.problem { "Items not shown: " (problem) }
        } @else {
            p { (items["summary"]["total"]) " items: " (items["summary"]["succeeded"]) " succeeded, " (items["summary"]["failed"]) " failed, "
                (items["summary"]["skipped"]) " skipped, " (items["summary"]["pending"]) " pending" }
        }
        form method="get" action={"/ui/jobs/" (id)} {
            (select("outcome", &["pending", "done", "deleted", "absent", "failed"], set(&outcome.outcome)))
            button type="submit" { "Show" }
        }
        table #items {
            thead { tr { th { "item" } th { "outcome" } th { "tries" } th { "detail" } } }
            tbody {
                @for it in items["items"].as_array().into_iter().flatten() {
                    tr { td { (it["item"].as_str().unwrap_or_default()) } td { (it["outcome"].as_str().unwrap_or_default()) } td { (it["tries"]) } td { code { (it["detail"]) } } }
                }
            }
        }
        @if let Some(next) = items["next_cursor"].as_str() {
            p { a #items-next href={"/ui/jobs/" (id) "?" (filter) "cursor=" (urlencode(next))} { "Next 100 items" } }
        }
    };
    page::render(&viewer, Nav::Jobs, "Job", body)
}

#[derive(Debug, Default, Deserialize)]
struct ItemsFilter {
    outcome: Option<String>,
    /// Where the items table goes on (the items listing's `next_cursor`).
    cursor: Option<String>,
}

/// The part of a job page that changes while it runs: state, progress, why it waits,
/// the actions its state allows, and its attempts.
/// The job's live section with, while the job has not ended, the job's event stream
/// around it: the stream's element is never replaced (a new element opens a new stream,
/// whose first event asked for a refresh that replaced it again, round after round:
/// console audit of 2026-12-06), and it closes on the `end` event the console's stream
/// sends after the job has ended (else the browser reopens a stream that ended: console
/// audit of 2026-12-06).
fn live_page_block(job: &Value, viewer: &Viewer) -> Markup {
    let id = job["id"].as_str().unwrap_or_default();
    html! {
        @if ended(job) {
            (live_block(job, viewer))
        } @else {
            div #job-stream hx-ext="sse" sse-connect={"/ui/jobs/" (id) "/events"} sse-close=(STREAM_END) {
                (live_block(job, viewer))
            }
        }
    }
}

/// The live section alone, what `/live` answers: refreshed whole on each of the stream's
/// events while the job has not ended, still once it has.
fn live_block(job: &Value, viewer: &Viewer) -> Markup {
    let id = job["id"].as_str().unwrap_or_default();
    html! {
        @if ended(job) {
            section #job-live { (live_section(job, viewer)) }
        } @else {
            // (`end` too: a refresh for the last state refused or cut short is made again
            // as the stream closes; a newer event replaces one in flight)
            section #job-live hx-get={"/ui/jobs/" (id) "/live"} hx-trigger={"sse:state, sse:progress, sse:waiting, sse:" (STREAM_END)} hx-sync="this:replace" hx-swap="outerHTML" {
                (live_section(job, viewer))
            }
        }
    }
}

/// The event the console's job stream ends with once the job has ended.
const STREAM_END: &str = "end";

/// Whether the job (as the API shows it) has ended.
fn ended(job: &Value) -> bool {
    matches!(job["state"].as_str(), Some("succeeded" | "partial" | "dead" | "cancelled"))
}

fn live_section(job: &Value, viewer: &Viewer) -> Markup {
    let id = job["id"].as_str().unwrap_or_default();
    let terminal = ended(job);
    html! {
        p { "State: " strong #job-state { (job["state"].as_str().unwrap_or_default()) }
            " · attempts " (job["attempts"]) "/" (job["max_attempts"])
            " · updated " (page::when(&job["updated_at"])) }
        @if let Some(p) = job["progress"].as_object() {
            p { "Progress: " (progress_text(p)) }
        }
        @if !job["last_error"].is_null() { p.problem { "Last error: " (error_text(&job["last_error"])) } }
        @if job["cancel_requested"].as_bool() == Some(true) && !terminal {
            p #job-cancel-requested { "Cancel requested: the run stops at its next step." }
        }
        div #job-waiting {
            @if let Some(w) = job["waiting"].as_object() {
                "Waiting: " strong { (w.get("reason").and_then(Value::as_str).unwrap_or_default()) }
                @if let Some(u) = w.get("until").and_then(Value::as_str) { " until " (u) }
                // what comes after the wait, and what the reason names (found by the API
                // audit of 2026-12-07, third: the page showed a past `until` alone)
                @if let Some(then) = w.get("detail").and_then(|d| d.get("then")).and_then(Value::as_str) { ", then " (then) }
                @if let Some(op) = w.get("detail").and_then(|d| d.get("operation")).and_then(Value::as_str) { " (" (op) ")" }
            }
        }
        @if viewer.acts() {
            div.actions {
                @if !terminal { (page::action(viewer, &format!("/ui/jobs/{id}/cancel"), "cancel", "Cancel", &[])) }
                @if matches!(job["state"].as_str(), Some("dead" | "cancelled" | "partial")) {
                    (page::action(viewer, &format!("/ui/jobs/{id}/retry"), "retry", "Retry", &[]))
                }
            }
        }
        // how a replayed job's previous life ended, and what the job ended with (found by
        // the audit of 2026-12-07, third: the page showed neither)
        @if let Some(prev) = job["previous_ending"].as_object() {
            p #job-previous-ending { "Replayed: its previous life ended "
                strong { (prev.get("state").and_then(Value::as_str).unwrap_or_default()) }
                " " (page::when(prev.get("finished_at").unwrap_or(&Value::Null)))
                @if let Some(e) = prev.get("error").filter(|e| !e.is_null()) { ": " (error_text(e)) } }
        }
        @if !job["result"].is_null() {
            h2 { "Result" }
            pre #job-result { (result_text(&job["result"])) }
        }
        h2 { "Attempts" }
        table #attempts {
            thead { tr { th { "#" } th { "worker" } th { "started" } th { "took" } th { "outcome" } th { "error" } } }
            tbody {
                @for a in job["attempt_history"].as_array().into_iter().flatten() {
                    tr {
                        td { (a["number"]) }
                        td { (a["worker"].as_str().unwrap_or("-")) }
                        td { (page::when(&a["started_at"])) }
                        td { (took(a)) }
                        td { (a["outcome"].as_str().unwrap_or_default()) @if a["late"].as_bool() == Some(true) { " (late)" } }
                        td { (error_text(&a["error"])) }
                    }
                }
            }
        }
    }
}

fn took(a: &Value) -> String {
    let at = |k: &str| a[k].as_str().and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok());
    match (at("started_at"), at("ended_at")) {
        (Some(s), Some(e)) => page::age((e - s).num_milliseconds().max(0) as u64),
        _ => "-".into(),
    }
}

/// The payload, its first 2,000 characters.
fn summary(payload: &Value) -> String {
    let text = serde_json::to_string_pretty(payload).unwrap_or_default();
    match text.char_indices().nth(2000) {
        Some((cut, _)) => format!("{}\n… ({} characters in all)", &text[..cut], text.chars().count()),
        None => text,
    }
}

/// The state section alone, for the live refresh.
pub async fn live(State(state): State<AppState>, caller: Caller, session: Session, Path(id): Path<String>) -> Response {
    let viewer = Viewer { caller, session };
    match load(&state, &viewer.caller, &id).await {
        Ok(job) => page::fragment(live_block(&job, &viewer)),
        Err(e) => page::error(&e),
    }
}

/// The job's event stream (the API's), for the live section, then `end` when it stopped
/// because the job has ended (or is gone): the page closes its stream then. A stream
/// that stopped for another reason (its time is up, its slot went to another) ends
/// without it, and the browser opens a new one.
pub async fn events(
    State(state): State<AppState>,
    caller: Caller,
    session: Session,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
) -> Response {
    use axum::response::sse::{Event, KeepAlive, Sse};
    use futures::StreamExt;
    let resumed = crate::handlers::events::resumed_from(&headers);
    let stream = match crate::handlers::events::job_event_stream(state.clone(), &caller, &id, resumed).await {
        Ok(stream) => stream,
        Err(e) => return page::error(&e),
    };
    // The stream ends with its session (signed out, or ended past its key's cap): found
    // by the hostile-tenant audit of 2026-12-07, a signed-out browser went on getting the
    // job's events until `api.events_max_ms`.
    let ended = {
        let state = state.clone();
        async move {
            loop {
                tokio::time::sleep(SESSION_CHECK_EVERY).await;
                if !super::session::still_open(&state, &session).await {
                    return;
                }
            }
        }
    };
    let stream = stream.take_until(ended);
    let end = futures::stream::once(async move {
        let over = match crate::handlers::load_summary(&state, &caller, &id).await {
            Ok(s) => s.job.state.is_terminal(),
            Err(e) => e.status() == axum::http::StatusCode::NOT_FOUND,
        };
        // (an event without data is never dispatched by a browser)
        over.then(|| Ok(Event::default().event(STREAM_END).data("ended")))
    })
    .filter_map(std::future::ready);
    Sse::new(stream.chain(end))
        .keep_alive(KeepAlive::new().interval(crate::handlers::events::KEEP_ALIVE_EVERY))
        .into_response()
}

pub async fn cancel(state: State<AppState>, caller: Caller, Path(id): Path<String>) -> Response {
    back_to_job(control::cancel(state, caller, Path(id.clone())).await, &id)
}

pub async fn retry(state: State<AppState>, caller: Caller, Path(id): Path<String>) -> Response {
    back_to_job(control::retry(state, caller, Path(id.clone())).await, &id)
}

/// How often an open console event stream looks whether its session has ended.
const SESSION_CHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

fn back_to_job(result: Result<Response, ApiError>, id: &str) -> Response {
    match result {
        Ok(_) => Redirect::to(&format!("/ui/jobs/{}", urlencode(id))).into_response(),
        Err(e) => page::error(&e),
    }
}
