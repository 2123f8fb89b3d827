//! `/ui/queues`: every kind's counts, oldest-ready age and pause, with pause and resume
//! for admin keys (the API's own handlers, so the audit log has them).
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;

use super::page::{self, Nav, Viewer};
use super::session::Session;
use crate::auth::Caller;
use crate::handlers::queues::{list_queues, pause as api_pause, resume as api_resume};
use crate::state::AppState;

pub async fn page(State(state): State<AppState>, caller: Caller, session: Session) -> Response {
    let viewer = Viewer { caller, session };
    let queues = match list_queues(State(state.clone()), viewer.caller.clone()).await {
        Ok(q) => serde_json::to_value(q.0).unwrap_or_default(),
        Err(e) => return page::error(&e),
    };
    let body = html! {
        table #queues {
            thead { tr { th { "kind" } th { "queued" } th { "running" } th { "scheduled" } th { "retrying" } th { "dead" } th { "oldest ready" } th { "paused" } @if viewer.acts() { th { "act" } } } }
            tbody {
                @for q in queues["queues"].as_array().into_iter().flatten() {
                    @let kind = q["kind"].as_str().unwrap_or_default();
                    @let paused = q["paused"].as_bool().unwrap_or(false);
                    tr data-kind=(kind) {
                        td { (kind) }
                        @for s in ["queued", "running", "scheduled", "retrying", "dead"] { td data-count=(s) { (q["counts"][s]) } }
                        td { (page::age(q["lag_ms"].as_u64().unwrap_or(0))) }
                        td data-paused=(paused) { @if paused { "paused" } @else { "-" } }
                        @if viewer.acts() {
                            td {
                                @if paused { (page::action(&viewer, &format!("/ui/queues/{kind}/resume"), "resume", "Resume", &[])) }
                                @else { (page::action(&viewer, &format!("/ui/queues/{kind}/pause"), "pause", "Pause", &[])) }
                            }
                        }
                    }
                }
            }
        }
    };
    page::render(&viewer, Nav::Queues, "Queues", body)
}

pub async fn pause(state: State<AppState>, caller: Caller, Path(kind): Path<String>) -> Response {
    match api_pause(state, caller, Path(kind)).await {
        Ok(_) => Redirect::to("/ui/queues").into_response(),
        Err(e) => page::error(&e),
    }
}

pub async fn resume(state: State<AppState>, caller: Caller, Path(kind): Path<String>) -> Response {
    match api_resume(state, caller, Path(kind)).await {
        Ok(_) => Redirect::to("/ui/queues").into_response(),
        Err(e) => page::error(&e),
    }
}
