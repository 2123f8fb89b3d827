//! The first sync of a new account: `POST /v1/accounts` queues one sync job (trigger
//! `account_created`) once the account is stored, unless the request says
//! `"first_sync": false` or `api.accounts.first_sync` is off.
//!
//! The account is stored first and stays stored whatever happens here: a sync that
//! cannot be queued is reported in the answer (`first_sync_error`) and logged once, and
//! the client submits one itself (a sync already queued for the account is returned
//! rather than duplicated, so that retry is always safe).
use std::time::Duration;

use drover::db::Account;
use drover::job::{JobPayload, SyncPayload, SyncResource};
use drover::queue::{EnqueueError, NewJob, StoreError};

use super::enqueue::{enqueue_answering, request_traceparent};
use crate::state::AppState;
use crate::views::{status_url, Accepted};

/// The trigger recorded on the job (`trigger` in its views).
pub const TRIGGER: &str = "account_created";

/// How long queuing may take: the account is already stored, so its answer must not be
/// lost to the request timeout while Redis does not answer.
const QUEUE_TIMEOUT: Duration = Duration::from_secs(2);

/// What became of the first sync.
#[derive(Debug)]
pub enum FirstSync {
    /// Queued (or the account's sync already queued or running).
    Queued(Accepted),
    /// Not asked for: the request or the configuration turned it off.
    Off,
    /// Could not be queued; the text says why and what to do.
    Failed(String),
}

/// Queue the account's first sync: its first marketplace, orders and listings.
pub async fn queue(state: &AppState, account: &Account) -> FirstSync {
    let Some(marketplace) = account.marketplace_ids.first() else {
        return FirstSync::Off; // an account always names one; nothing to sync otherwise
    };
    let mut job = NewJob::new(JobPayload::Sync(SyncPayload {
        account_id: account.id.clone(),
        marketplace_id: marketplace.clone(),
        resources: vec![SyncResource::Orders, SyncResource::Listings],
        since: None,
    }))
    .trigger(TRIGGER);
    job.traceparent = Some(request_traceparent());
    // What the client reads says what happened, never the queue's own error text (the
    // log line, once, carries it for the operator).
    let (why, cause) = match tokio::time::timeout(QUEUE_TIMEOUT, enqueue_answering(state, job)).await {
        Ok(Ok((e, waiting))) => {
            tracing::info!(account = %account.id, job_id = %e.id, created = e.created, "first sync queued");
            return FirstSync::Queued(Accepted {
                status_url: status_url(&e.id),
                id: e.id,
                state: e.state,
                waiting,
            });
        }
        Ok(Err(EnqueueError::Store(StoreError::NotDurable(e)))) => (
            "it was queued but is not yet durable (a sync submitted while it is queued returns it)".to_owned(),
            e.to_string(),
        ),
        Ok(Err(EnqueueError::Store(e))) => ("the queue did not take it".to_owned(), e.to_string()),
        Ok(Err(e)) => (e.to_string(), e.to_string()),
        Err(_) => {
            let why = format!("the queue did not answer within {QUEUE_TIMEOUT:?}; it may have been queued");
            (why.clone(), why)
        }
    };
    tracing::warn!(account = %account.id, error = %cause, "account created, but its first sync could not be queued");
    FirstSync::Failed(format!(
        "the account is stored, but its first sync could not be queued: {why}; submit a sync with POST /v1/jobs"
    ))
}
