//! The operator audit log: every action taken through the API's action endpoints (cancel,
//! retry, dead-letter replay and discard, pause and resume, schedules) is appended to
//! Postgres's `audit_log` once it has ended — who (the key's name), what, on which
//! target and filter, how many jobs it touched, how it ended — and read back at
//! `GET /v1/audit`. Requests the role guard refuses never reach an action and are not
//! recorded (the access log has them). A row keeps a bounded part of what the request
//! sent (refused requests are recorded too, so their fields are the client's to choose):
//! a long text keeps its head and says how long it was, a long list its first entries.
//! Entries past `api.audit_retention_days` are removed hourly by every replica, so what
//! a key's requests (refused ones included) add to the log is bounded in time.
use std::time::{Duration, Instant};

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

/// Runs `action` (given the state and caller) to its end and records it with its outcome,
/// on a task of its own: a request that its timeout cuts off (a slow Postgres under the
/// audit's insert, a slow Redis under the action) still has what it did recorded, or its
/// failure to record logged, though the client hears the timeout. A successful action
/// touched `touches` targets.
pub async fn recorded<T, F, Fut>(state: &AppState, caller: &Caller, what: Action, touches: u64, action: F) -> Result<T, ApiError>
where
    F: FnOnce(AppState, Caller) -> Fut,
    Fut: std::future::Future<Output = Result<T, ApiError>> + Send + 'static,
    T: Send + 'static,
{
    let name = what.action;
    let work = action(state.clone(), caller.clone());
    let (state, caller) = (state.clone(), caller.clone());
    request_id::spawn_for_request(&state.background().clone(), async move {
        // A panic is the action's failure: recorded as a 500 and logged once, as the
        // error it is answered with (spawned plainly, the hook would log it, and the
        // lost task again, with no entry).
        let result = match drover::panics::Caught::new(work).await {
            Ok(result) => result,
            Err(p) => Err(ApiError::Internal(format!("the {name} action panicked: {p}"))),
        };
        let touched = if result.is_ok() { touches } else { 0 };
        record(&state, &caller, what, touched, outcome(&result)).await;
        result
    })
    .await
    .map_err(|e| ApiError::Internal(format!("the {name} action stopped: {e}")))?
}

/// Appends the action with its outcome. The action has happened either way: a log that
/// cannot be written (Postgres down, schema not yet migrated) is logged once, with the
/// request id and what was done, and the answer to the client is unchanged.
pub async fn record(state: &AppState, caller: &Caller, what: Action, touched: u64, outcome: String) {
    let entry = NewAuditEntry {
        actor: caller.name.clone(),
        action: what.action.to_owned(),
        target: bounded_text(what.target),
        filter: what.filter.map(bounded),
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

/// The most of one text (a target, a string in a filter) a row keeps, in bytes.
const TEXT_BYTES: usize = 256;
/// The most entries of one list (ids of a replay) a row keeps.
const LIST_ENTRIES: usize = 20;
/// A filter still longer than this once bounded (many long fields) is replaced by a note.
const FILTER_BYTES: usize = 4096;

/// `text`, or its head and how long it was; a NUL, which Postgres keeps in neither a
/// text nor a jsonb (the whole row would be refused), reads U+FFFD.
fn bounded_text(text: String) -> String {
    let text = if text.contains('\0') {
        text.replace('\0', "\u{FFFD}")
    } else {
        text
    };
    if text.len() <= TEXT_BYTES {
        return text;
    }
    let mut end = TEXT_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &text[..end], text.len())
}

/// `filter` with each text and list bounded; a note instead when that is still too long.
fn bounded(filter: Value) -> Value {
    let kept = bounded_value(filter);
    let bytes = kept.to_string().len();
    if bytes <= FILTER_BYTES {
        return kept;
    }
    serde_json::json!({"omitted": format!("the request's fields, {bytes} bytes once shortened")})
}

fn bounded_value(value: Value) -> Value {
    match value {
        Value::String(s) => Value::String(bounded_text(s)),
        Value::Array(items) => {
            let n = items.len();
            let mut kept: Vec<Value> = items.into_iter().take(LIST_ENTRIES).map(bounded_value).collect();
            if n > LIST_ENTRIES {
                kept.push(Value::String(format!("… and {} more", n - LIST_ENTRIES)));
            }
            Value::Array(kept)
        }
        Value::Object(fields) => Value::Object(fields.into_iter().map(|(k, v)| (bounded_text(k), bounded_value(v))).collect()),
        other => other,
    }
}

/// How often each replica removes the entries past their retention.
const TRIM_EVERY: Duration = Duration::from_secs(3600);
/// Most entries one statement removes; a round goes on until none is left or it has run
/// for [`TRIM_BUDGET`].
const TRIM_BATCH: i64 = 10_000;
const TRIM_BUDGET: Duration = Duration::from_secs(30);

/// Removes the entries recorded more than `keep_days` ago, at once and then every
/// [`TRIM_EVERY`], until the API shuts down.
pub async fn trim_loop(state: AppState, keep_days: u32) {
    let shutdown = state.shutdown().clone();
    loop {
        let began = Instant::now();
        let mut removed = 0;
        loop {
            match state.audit().trim(keep_days, TRIM_BATCH).await {
                Ok(n) => {
                    removed += n;
                    if n < TRIM_BATCH as u64 || began.elapsed() >= TRIM_BUDGET {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, keep_days, "could not remove audit log entries past their retention; trying again in an hour");
                    break;
                }
            }
        }
        if removed > 0 {
            tracing::info!(removed, keep_days, "audit log entries past their retention removed");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(TRIM_EVERY) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn short_fields_stay_whole_and_long_ones_keep_their_head() {
        let filter = json!({"kind": "cleanup", "ids": (0..25).collect::<Vec<_>>(), "cron": "é".repeat(300)});
        let kept = bounded(filter);
        assert_eq!(kept["kind"], "cleanup");
        assert_eq!(kept["ids"].as_array().unwrap().len(), LIST_ENTRIES + 1);
        assert_eq!(kept["ids"][LIST_ENTRIES], "… and 5 more");
        let cron = kept["cron"].as_str().unwrap();
        assert!(cron.ends_with("… (600 bytes)"), "{cron}");
        assert!(cron.len() <= TEXT_BYTES + 20);
    }

    #[test]
    fn a_filter_of_many_long_fields_becomes_a_note() {
        let fields: serde_json::Map<String, Value> = (0..40).map(|i| (format!("f{i}"), json!("x".repeat(1000)))).collect();
        let kept = bounded(Value::Object(fields));
        assert!(kept["omitted"].as_str().unwrap().contains("bytes once shortened"), "{kept}");
    }
}
