//! `/ui`: per kind, jobs by state, oldest-ready age and pause (what `GET /v1/queues`
//! answers), live workers, and an hour of jobs succeeded and died per minute.
use axum::extract::State;
use axum::response::Response;
use drover::job::JobKind;
use maud::{html, Markup};
use serde_json::{json, Value};

use super::page::{self, Nav, Viewer};
use super::series;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::handlers::queues::list_queues;
use crate::state::AppState;
use crate::ui::session::Session;

/// The states in the order the table shows them.
pub const STATES: [&str; 9] = [
    "queued",
    "scheduled",
    "running",
    "prefetched",
    "retrying",
    "succeeded",
    "partial",
    "dead",
    "cancelled",
];

pub async fn page(State(state): State<AppState>, caller: Caller, session: Session) -> Response {
    let viewer = Viewer { caller, session };
    match body(&state, &viewer).await {
        Ok(b) => page::render(&viewer, Nav::Overview, "Overview", b),
        Err(e) => page::error(&e),
    }
}

async fn body(state: &AppState, viewer: &Viewer) -> Result<Markup, ApiError> {
    if viewer.caller.accounts.is_some() {
        return Ok(html! {
            p { "Queue-wide figures span every account; this key is limited to some. Its accounts:" }
            ul { @for a in viewer.caller.accounts.iter().flatten() { li { a href={"/ui/accounts/" (a.as_str())} { (a.as_str()) } } } }
        });
    }
    let queues = serde_json::to_value(list_queues(State(state.clone()), viewer.caller.clone()).await?.0).unwrap_or_default();
    let workers = state.store().live_workers().await?;
    let interval = match state.ui().sample_secs {
        60 => "minute".to_owned(),
        n => format!("{n} s"),
    };
    let mut chart: Vec<Value> = Vec::new();
    for kind in JobKind::ALL {
        let rates = series::rates(&series::read(state, kind).await?);
        chart.push(json!({
            "kind": kind.as_str(),
            "t": rates.iter().map(|r| r.0).collect::<Vec<_>>(),
            "succeeded": rates.iter().map(|r| r.1).collect::<Vec<_>>(),
            "died": rates.iter().map(|r| r.2).collect::<Vec<_>>(),
        }));
    }
    Ok(html! {
        section #overview hx-get="/ui" hx-select="#overview" hx-trigger="every 5s" hx-swap="outerHTML" {
            p { "Live workers: " strong #workers-alive { (workers) } }
            table #kinds {
                thead { tr {
                    th { "kind" }
                    @for s in STATES { th { (s) } }
                    th { "oldest ready" } th { "paused" } th { "succeeded in all" }
                } }
                tbody {
                    @for q in queues["queues"].as_array().into_iter().flatten() {
                        tr data-kind=(q["kind"].as_str().unwrap_or_default()) {
                            td { a href={"/ui/jobs?kind=" (q["kind"].as_str().unwrap_or_default())} { (q["kind"].as_str().unwrap_or_default()) } }
                            @for s in STATES { td data-count=(s) { (q["counts"][s].as_u64().unwrap_or(0)) } }
                            td data-lag=(q["lag_ms"].as_u64().unwrap_or(0)) { (page::age(q["lag_ms"].as_u64().unwrap_or(0))) }
                            td data-paused=(q["paused"].as_bool().unwrap_or(false)) { @if q["paused"].as_bool().unwrap_or(false) { "paused" } @else { "-" } }
                            td { (q["succeeded_total"].as_u64().unwrap_or(0)) }
                        }
                    }
                }
            }
        }
        h2 { "Jobs succeeded and died per " (interval) ", last 60" }
        p.muted { "Per kind; a point per " (interval) " once the API has run that long." }
        div #throughput-chart {}
        (page::json_data("throughput-data", &Value::Array(chart)))
    })
}
