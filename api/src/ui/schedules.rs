//! `/ui/schedules`: the schedules the key may see, with their next tick.
use axum::extract::State;
use axum::response::Response;
use maud::html;

use super::page::{self, Nav, Viewer};
use super::session::Session;
use crate::auth::Caller;
use crate::handlers::schedules::list_schedules;
use crate::state::AppState;

pub async fn page(State(state): State<AppState>, caller: Caller, session: Session) -> Response {
    let viewer = Viewer { caller, session };
    let list = match list_schedules(State(state.clone()), viewer.caller.clone()).await {
        Ok(l) => serde_json::to_value(l.0).unwrap_or_default(),
        Err(e) => return page::error(&e),
    };
    let body = html! {
        table #schedules {
            thead { tr { th { "name" } th { "account" } th { "kind" } th { "cron" } th { "enabled" } th { "next tick" } th { "its jobs" } } }
            tbody {
                @for s in list["schedules"].as_array().into_iter().flatten() {
                    @let name = s["name"].as_str().unwrap_or_default();
                    @let account = s["account_id"].as_str().unwrap_or_default();
                    tr data-schedule=(name) {
                        td { (name) }
                        td { (account) }
                        td { (s["kind"].as_str().unwrap_or_default()) }
                        td { code { (s["cron"].as_str().unwrap_or_default()) } }
                        td { (s["enabled"]) }
                        td { (page::when(&s["next_run_at"])) }
                        td { a href={"/ui/jobs?account_id=" (account) "&kind=" (s["kind"].as_str().unwrap_or_default())} { "jobs" } }
                    }
                }
            }
        }
        @if list["schedules"].as_array().is_none_or(Vec::is_empty) { p.muted { "No schedules." } }
    };
    page::render(&viewer, Nav::Schedules, "Schedules", body)
}
