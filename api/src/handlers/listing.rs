//! Turning list query parameters into a store query, with the caller's account scope
//! forced on it, and a store page into a response page.
use std::collections::HashMap;
use std::str::FromStr;

use drover::job::{AccountId, JobId, JobKind, JobState};
use drover::queue::{ListQuery, Waiting};
use serde::Deserialize;

use super::dead_groups::{parse_group, NOT_A_GROUP};
use super::walks;
use crate::auth::Caller;
use crate::cursor::Cursors;
use crate::error::ApiError;
use crate::state::AppState;
use crate::views::{JobPage, JobSummaryView, WaitingView};
use crate::waiting::{waiting_many, WaitingJob};

pub const DEFAULT_LIMIT: usize = 50;
pub const MAX_LIMIT: usize = 1000;
/// Job records a listing may read for one read of its key's budget: a page reading more
/// (its filter's walk and the jobs it shows) is charged one read for each such many more.
pub const RECORDS_PER_READ: u64 = 200;

/// Query parameters as sent; each is checked and named when wrong. An empty value is
/// taken as absent.
#[derive(Debug, Default, Deserialize)]
pub struct RawList {
    pub kind: Option<String>,
    pub state: Option<String>,
    pub account_id: Option<String>,
    pub limit: Option<String>,
    pub cursor: Option<String>,
    /// Dead-letter listings only: one group's jobs.
    pub group: Option<String>,
    /// The class of the job's last error.
    pub error_class: Option<String>,
}

fn present(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.is_empty())
}

/// Check every parameter, collecting every problem.
pub fn to_query(raw: RawList, caller: &Caller, cursors: &Cursors, forced_state: Option<JobState>) -> Result<ListQuery, ApiError> {
    let mut errors = Vec::new();
    let mut q = ListQuery {
        limit: DEFAULT_LIMIT,
        state: forced_state,
        ..Default::default()
    };
    if let Some(k) = present(raw.kind) {
        match JobKind::from_str(&k) {
            Ok(k) => q.kinds = vec![k],
            Err(e) => errors.push(drover::job::FieldError::new("kind", e.to_string())),
        }
    }
    if let Some(s) = present(raw.state) {
        match JobState::from_str(&s) {
            Ok(s) => q.state = Some(s),
            Err(e) => errors.push(drover::job::FieldError::new("state", e.to_string())),
        }
    }
    let account = match present(raw.account_id) {
        None => None,
        Some(a) => match AccountId::parse(a) {
            Ok(a) => Some(a.as_str().to_owned()),
            Err(e) => {
                errors.push(drover::job::FieldError::new("account_id", e));
                None
            }
        },
    };
    if let Some(l) = present(raw.limit) {
        match l.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => q.limit = n,
            _ => errors.push(drover::job::FieldError::new(
                "limit",
                format!("must be a whole number from 1 to {MAX_LIMIT}"),
            )),
        }
    }
    if let Some(c) = present(raw.error_class) {
        match drover::job::ErrorClass::parse(&c) {
            Some(c) => q.error_class = Some(c.as_str().to_owned()),
            None => errors.push(drover::job::FieldError::new(
                "error_class",
                format!("not an error class ({})", drover::job::ErrorClass::NAMES.join(", ")),
            )),
        }
    }
    if let Some(g) = present(raw.group) {
        match (forced_state, parse_group(&g)) {
            (Some(JobState::Dead), Some((kind, sig))) if q.kinds.iter().all(|k| *k == kind) => {
                q.kinds = vec![kind];
                q.group = Some(sig);
            }
            (Some(JobState::Dead), Some(_)) => errors.push(drover::job::FieldError::new("group", "the group is of another kind")),
            (Some(JobState::Dead), None) => errors.push(drover::job::FieldError::new("group", NOT_A_GROUP)),
            _ => errors.push(drover::job::FieldError::new("group", "only the dead letter is listed by group")),
        }
    }
    let cursor = present(raw.cursor);
    if let Some(c) = &cursor {
        // Only its shape here, so every bad parameter is named at once; it is opened below.
        if !Cursors::well_formed(c) {
            errors.push(drover::job::FieldError::new("cursor", Cursors::INVALID));
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    q.account_id = caller.account_filter(account)?;
    // Opened last: a cursor is bound to the key and to every filter of the query.
    if let Some(c) = cursor {
        q.cursor = Some(cursors.decode(&c, &caller.name, &q)?);
    }
    Ok(q)
}

/// A page of summaries: payloads and results are neither read nor returned, so a page
/// costs the same whatever tenants put in them.
pub async fn page(state: &AppState, caller: &Caller, query: &ListQuery) -> Result<JobPage, ApiError> {
    let walk = walks::start(state, caller).await?;
    let page = state.store().list_summaries(query).await?;
    // The request's check paid for its first records; the rest are charged (a filter
    // that matches little reads up to 20 times its limit a kind).
    walk.charge(page.records_read + page.jobs.len() as u64, RECORDS_PER_READ).await;
    // Why each waiting job waits: one bounded script per waiting job in one round trip,
    // and the quota cooldowns of their accounts in another.
    let waiting_jobs: Vec<WaitingJob<'_>> = page
        .jobs
        .iter()
        // (a running job may still wait in a worker's prefetch)
        .filter(|s| !s.job.state.is_terminal())
        .map(|s| WaitingJob {
            id: &s.job.id,
            account_id: s.job.account_id.as_deref(),
        })
        .collect();
    let mut waits: HashMap<JobId, Waiting> = waiting_jobs
        .iter()
        .map(|j| j.id.clone())
        .zip(waiting_many(state, &waiting_jobs).await?)
        .filter_map(|(id, w)| w.map(|w| (id, w)))
        .collect();
    Ok(JobPage {
        jobs: page
            .jobs
            .into_iter()
            .map(|s| {
                let waiting = waits
                    .remove(&s.job.id)
                    .map(|w| WaitingView::from(w).seen_by(caller.accounts.is_some()));
                JobSummaryView::from(s).with_waiting(waiting)
            })
            .collect(),
        next_cursor: page.next.as_ref().map(|c| state.cursors().encode(c, &caller.name, query)),
    })
}
