//! `/ui/schedules`: the schedules the key may see, with their next ticks and the last jobs
//! they made (found among each account's newest jobs: one bounded page per account), and
//! the built-in ones the running scheduler makes for every active account.
use std::collections::{BTreeSet, HashMap};

use axum::extract::{RawQuery, State};
use axum::response::Response;
use maud::html;
use serde_json::Value;

use super::page::{self, Nav, Viewer};
use super::session::Session;
use crate::auth::Caller;
use crate::handlers::jobs::list_jobs;
use crate::handlers::schedules::list_schedules;
use crate::state::AppState;

pub async fn page(State(state): State<AppState>, caller: Caller, session: Session, RawQuery(raw): RawQuery) -> Response {
    let viewer = Viewer { caller, session };
    // Only the page's own cursor goes on to the listing (100 schedules a page).
    let cursor: Option<String> = raw
        .as_deref()
        .and_then(|q| serde_urlencoded::from_str::<HashMap<String, String>>(q).ok())
        .and_then(|mut q| q.remove("cursor"));
    let q = cursor.map(|c| serde_urlencoded::to_string([("cursor", c)]).unwrap_or_default());
    let list = match list_schedules(State(state.clone()), viewer.caller.clone(), RawQuery(q)).await {
        Ok(l) => serde_json::to_value(l.0).unwrap_or_default(),
        Err(e) => return page::error(&e),
    };
    // Per account (at most 50 of them), its newest 500 jobs: the ones a schedule made.
    let mut made: HashMap<String, Vec<Value>> = HashMap::new();
    let accounts: BTreeSet<&str> = list["schedules"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["account_id"].as_str())
        .collect();
    // Each listing is charged a read of the key's own budget (the session's check paid
    // for the page): once the budget is spent, the accounts left show no last jobs.
    let reads = &state.limits_per_key().reads;
    for account in accounts.into_iter().take(50) {
        if reads.check(&viewer.caller.name).await.is_err() {
            break;
        }
        let q = serde_urlencoded::to_string([("account_id", account), ("limit", "500")]).unwrap_or_default();
        let Ok(page_json) = list_jobs(State(state.clone()), viewer.caller.clone(), RawQuery(Some(q))).await else {
            continue;
        };
        for j in serde_json::to_value(page_json.0).unwrap_or_default()["jobs"]
            .as_array()
            .into_iter()
            .flatten()
        {
            // The trigger names `<account>/<name>` already (before, found by the console
            // audit of 2026-12-06, the account was put in front again and no row matched).
            if let Some(key) = j["trigger"].as_str().and_then(|t| t.strip_prefix("schedule:")) {
                let seen = made.entry(key.to_owned()).or_default();
                if seen.len() < 3 {
                    seen.push(j.clone());
                }
            }
        }
    }
    let body = html! {
        table #schedules {
            thead { tr { th { "name" } th { "account" } th { "kind" } th { "cron" } th { "enabled" } th { "next ticks" } th { "last jobs" } } }
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
                        td {
                            @if s["enabled"].as_bool() == Some(false) {
                                span.muted { "none: disabled" }
                            } @else {
                                (next_ticks(s["cron"].as_str().unwrap_or_default()).join(", "))
                            }
                        }
                        td {
                            @for j in made.get(&format!("{account}/{name}")).into_iter().flatten() {
                                a href={"/ui/jobs/" (j["id"].as_str().unwrap_or_default())} { (j["state"].as_str().unwrap_or_default()) } " "
                            }
                            a href={"/ui/jobs?account_id=" (account) "&kind=" (s["kind"].as_str().unwrap_or_default())} { "all" }
                        }
                    }
                }
            }
        }
        @if list["schedules"].as_array().is_none_or(Vec::is_empty) { p.muted { "No schedules." } }
        @if let Some(next) = list["next_cursor"].as_str() {
            p { a href={"/ui/schedules?" (serde_urlencoded::to_string([("cursor", next)]).unwrap_or_default())} { "Next schedules" } }
        }
        h2 { "Built-in, for every active account" }
        table #built-in {
            thead { tr { th { "name" } th { "kind" } th { "cron" } th { "next ticks" } th { "jobs' trigger" } } }
            tbody {
                @for b in list["built_in"].as_array().into_iter().flatten() {
                    tr data-schedule=(b["name"].as_str().unwrap_or_default()) {
                        td { (b["name"].as_str().unwrap_or_default()) }
                        td { (b["kind"].as_str().unwrap_or_default()) }
                        td { code { (b["cron"].as_str().unwrap_or_default()) } }
                        td { (next_ticks(b["cron"].as_str().unwrap_or_default()).join(", ")) }
                        td { code { (b["trigger"].as_str().unwrap_or_default()) } }
                    }
                }
            }
        }
        @if list["built_in"].as_array().is_none_or(Vec::is_empty) { p.muted { "None: no scheduler runs the built-in schedules." } }
    };
    page::render(&viewer, Nav::Schedules, "Schedules", body)
}

/// The next three ticks of a cron expression (UTC), as the scheduler reads it.
fn next_ticks(cron: &str) -> Vec<String> {
    let Ok(c) = drover::schedule::spec::parse_cron(cron) else {
        return vec!["-".into()];
    };
    let mut at = chrono::Utc::now();
    let mut out = Vec::new();
    for _ in 0..3 {
        match drover::schedule::spec::next_tick(&c, at) {
            Some(t) => {
                out.push(page::time(&t));
                at = t;
            }
            None => break,
        }
    }
    out
}
