//! `/ui/audit`: the operator audit log, newest first (keys for every account only).
use axum::extract::{RawQuery, State};
use axum::response::Response;
use maud::html;

use super::page::{self, Nav, Viewer};
use super::session::Session;
use crate::auth::Caller;
use crate::handlers::audit::list_audit;
use crate::state::AppState;

pub async fn page(State(state): State<AppState>, caller: Caller, session: Session, RawQuery(raw): RawQuery) -> Response {
    let viewer = Viewer { caller, session };
    // The next page keeps the filters the page was asked for.
    let filters: Vec<(String, String)> = serde_urlencoded::from_str::<Vec<(String, String)>>(raw.as_deref().unwrap_or_default())
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, v)| (k == "actor" || k == "action") && !v.is_empty())
        .collect();
    let kept = match serde_urlencoded::to_string(&filters) {
        Ok(q) if !q.is_empty() => format!("&{q}"),
        _ => String::new(),
    };
    let log = match list_audit(State(state.clone()), viewer.caller.clone(), RawQuery(raw)).await {
        Ok(l) => serde_json::to_value(l.0).unwrap_or_default(),
        Err(e) => return page::error(&e),
    };
    let body = html! {
        table #audit {
            thead { tr { th { "when" } th { "who" } th { "what" } th { "target" } th { "selection" } th { "touched" } th { "outcome" } th { "request" } } }
            tbody {
                @for e in log["entries"].as_array().into_iter().flatten() {
                    tr {
                        td { (page::when(&e["at"])) }
                        td { (e["actor"].as_str().unwrap_or_default()) }
                        td { (e["action"].as_str().unwrap_or_default()) }
                        td { code { (e["target"].as_str().unwrap_or_default()) } }
                        td { @if !e["filter"].is_null() { code { (e["filter"]) } } }
                        td { (e["touched"]) }
                        td { (e["outcome"].as_str().unwrap_or_default()) }
                        td { code { (e["request_id"].as_str().unwrap_or_default()) } }
                    }
                }
            }
        }
        @if let Some(b) = log["next_before"].as_i64() { p { a #next-page href={"/ui/audit?before=" (b) (kept)} { "Older →" } } }
    };
    page::render(&viewer, Nav::Audit, "Audit log", body)
}
