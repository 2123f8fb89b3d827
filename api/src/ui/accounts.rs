//! `/ui/accounts` (the accounts the key may see) and `/ui/accounts/{id}`: last successful
//! sync per resource, the marketplace limits as the workers share them (limiter tokens and
//! next slot per operation, quota cooldown, breakers), its jobs by state (counters kept by
//! the queue), its newest jobs and its dead-letter groups.
use axum::body::to_bytes;
use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use drover::queue::AccountStateCounts;
use maud::html;
use serde_json::Value;

use super::jobs::jobs_table;
use super::page::{self, Nav, Viewer};
use super::session::Session;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::handlers::dead_groups::list_dead_groups;
use crate::handlers::{account_counts, account_list, accounts, jobs};
use crate::state::AppState;

pub async fn list(State(state): State<AppState>, caller: Caller, session: Session, RawQuery(raw): RawQuery) -> Response {
    let viewer = Viewer { caller, session };
    let page_json = match account_list::list(State(state.clone()), viewer.caller.clone(), RawQuery(raw)).await {
        Ok(p) => serde_json::to_value(p.0).unwrap_or_default(),
        Err(e) => return page::error(&e),
    };
    let body = html! {
        table #accounts {
            thead { tr { th { "account" } th { "seller" } th { "marketplaces" } th { "active" } th { "created" } } }
            tbody {
                @for a in page_json["accounts"].as_array().into_iter().flatten() {
                    @let id = a["id"].as_str().unwrap_or_default();
                    tr data-account=(id) {
                        td { a href={"/ui/accounts/" (id)} { (id) } }
                        td { (a["seller_id"].as_str().unwrap_or_default()) }
                        td { (a["marketplace_ids"].as_array().map(|m| m.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", ")).unwrap_or_default()) }
                        td { (a["active"]) }
                        td { (page::when(&a["created_at"])) }
                    }
                }
            }
        }
        @if let Some(after) = page_json["next_after"].as_str() { p { a #next-page href={"/ui/accounts?after=" (after)} { "More →" } } }
    };
    page::render(&viewer, Nav::Accounts, "Accounts", body)
}

pub async fn show(State(state): State<AppState>, caller: Caller, session: Session, Path(id): Path<String>) -> Response {
    let viewer = Viewer { caller, session };
    match detail(&state, &viewer, &id).await {
        Ok(body) => page::render(&viewer, Nav::Accounts, &format!("Account {id}"), body),
        Err(e) => page::error(&e),
    }
}

async fn detail(state: &AppState, viewer: &Viewer, id: &str) -> Result<maud::Markup, ApiError> {
    let caller = &viewer.caller;
    let account =
        serde_json::to_value(accounts::get(State(state.clone()), caller.clone(), Path(id.to_owned())).await?.0).unwrap_or_default();
    let limits_res = accounts::limits(State(state.clone()), caller.clone(), Path(id.to_owned())).await?;
    let bytes = to_bytes(limits_res.into_body(), 1 << 20)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let limits: Value = serde_json::from_slice(&bytes).unwrap_or_default();
    let counts = serde_json::to_value(
        account_counts::counts(State(state.clone()), caller.clone(), Path(id.to_owned()))
            .await?
            .0,
    )
    .unwrap_or_default();
    // Its newest 20 jobs.
    let q = serde_urlencoded::to_string([("account_id", id), ("limit", "20")]).unwrap_or_default();
    let recent =
        serde_json::to_value(jobs::list_jobs(State(state.clone()), caller.clone(), RawQuery(Some(q))).await?.0).unwrap_or_default();
    let gq = serde_urlencoded::to_string([("account_id", id)]).unwrap_or_default();
    let groups =
        serde_json::to_value(list_dead_groups(State(state.clone()), caller.clone(), RawQuery(Some(gq))).await?.0).unwrap_or_default();
    let rows: Vec<&Value> = recent["jobs"].as_array().into_iter().flatten().collect();
    let kinds: Vec<&Value> = counts["kinds"].as_array().into_iter().flatten().collect();
    let total = |s: &str| kinds.iter().filter_map(|k| k["counts"][s].as_u64()).sum::<u64>();
    Ok(html! {
        p { "Seller " (account["seller_id"].as_str().unwrap_or_default()) " · active " (account["active"]) }
        h2 { "Last successful sync" }
        table #last-synced {
            tbody { @for (k, v) in account["last_synced"].as_object().into_iter().flatten() { tr { th { (k) } td { (v.as_str().unwrap_or("never")) } } } }
        }
        h2 { "Marketplace limits" }
        pre #account-limits { (serde_json::to_string_pretty(&limits).unwrap_or_default()) }
        h2 { "Dead-letter groups" }
        table #account-dlq {
            thead { tr { th { "group" } th { "count" } th { "class" } th { "message" } } }
            tbody { @for g in groups["groups"].as_array().into_iter().flatten() {
                tr { td { code { (g["id"].as_str().unwrap_or_default()) } } td { (g["count"]) } td { (g["class"].as_str().unwrap_or_default()) } td { code { (g["message"].as_str().unwrap_or_default()) } } }
            } }
        }
        h2 { "Jobs by state" }
        @if counts["complete"] == Value::Bool(false) {
            p.muted #counting { "Still counting jobs made before this release: figures are too low for now." }
        }
        table #account-states {
            thead { tr { th { "kind" } @for s in AccountStateCounts::STATES { th { (s) } } } }
            tbody {
                @for k in &kinds {
                    tr data-kind=(k["kind"].as_str().unwrap_or_default()) {
                        th { (k["kind"].as_str().unwrap_or_default()) }
                        @for s in AccountStateCounts::STATES { td { (k["counts"][s]) } }
                    }
                }
                tr.total { th { "all" } @for s in AccountStateCounts::STATES { td data-count=(s) { (total(s)) } } }
            }
        }
        h2 { "Recent jobs" }
        (jobs_table(&rows, false))
        p { a href={"/ui/jobs?account_id=" (id)} { "All of its jobs →" } }
    })
}
