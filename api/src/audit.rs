//! The operator audit log: every action taken through the API's action endpoints (cancel,
//! retry, dead-letter replay and discard, pause and resume, schedules) is appended to
//! Postgres's `audit_log` once it has ended — who (the key's name), what, on which
//! target and filter, how many jobs it touched, how it ended — and read back at
//! `GET /v1/audit`. Requests the role guard refuses never reach an action and are not
//! recorded (the access log has them).
use drover::db::NewAuditEntry;
use serde_json::Value;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::middleware::request_id;
use crate::state::AppState;

/// One action, before it is known how it ended.
pub struct Action {
    pub action: &'static str,
    pub target: String,
    pub filter: Option<Value>,
}

impl Action {
    pub fn on(action: &'static str, target: impl Into<String>) -> Self {
        Self {
            action,
            target: target.into(),
            filter: None,
        }
    }

    pub fn with_filter(mut self, filter: Value) -> Self {
        self.filter = Some(filter);
        self
    }
}

/// `ok`, or the status the action ended with (`409 Conflict`). Taken before
/// [`record`] awaits: a response body is `Send` but not `Sync`.
pub fn outcome<T>(result: &Result<T, ApiError>) -> String {
    match result {
        Ok(_) => "ok".to_owned(),
        Err(e) => {
            let s = e.status();
            format!("{} {}", s.as_u16(), s.canonical_reason().unwrap_or(""))
        }
    }
}

/// Appends the action with its outcome. The action has happened either way: a log that
/// cannot be written (Postgres down, schema not yet migrated) is logged once, with the
/// request id and what was done, and the answer to the client is unchanged.
pub async fn record(state: &AppState, caller: &Caller, what: Action, touched: u64, outcome: String) {
    let entry = NewAuditEntry {
        actor: caller.name.clone(),
        action: what.action.to_owned(),
        target: what.target,
        filter: what.filter,
        touched: i64::try_from(touched).unwrap_or(i64::MAX),
        outcome,
        request_id: request_id::current().unwrap_or_default(),
    };
    let written = if state.migrated() {
        state.audit().record(&entry).await.map_err(|e| e.to_string())
    } else {
        Err("the Postgres schema is not migrated yet".to_owned())
    };
    if let Err(error) = written {
        tracing::error!(
            action = entry.action,
            target = entry.target,
            outcome = entry.outcome,
            key = entry.actor,
            error,
            "audit log: could not record an operator action"
        );
    }
}
