//! What can go wrong around a marketplace call; the variant tells the caller what to do.
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::operation::Operation;

#[derive(Debug, thiserror::Error)]
pub enum ResilienceError {
    /// Do not call: the operation keeps failing for this account. Snooze until `until`.
    #[error("circuit open for {op} until {until}")]
    BreakerOpen { op: Operation, until: DateTime<Utc> },
    /// Do not call: the account's report quota is exhausted. Snooze until `until`.
    #[error("account in quota cooldown until {until}: {reason}")]
    Cooldown { until: DateTime<Utc>, reason: String },
    /// The next rate-limit slot is further away than `max_wait` (it is this far away);
    /// nothing was reserved.
    #[error("next rate-limit slot in {0:?}")]
    WaitTooLong(Duration),
    #[error("cancelled")]
    Cancelled,
    /// The token fetch failed (its error as text; the fetch must not put secrets in it).
    #[error("token refresh failed: {0}")]
    Token(String),
    /// Redis did not answer: worth a retry later.
    #[error("resilience store unavailable: {0}")]
    Store(String),
}

impl From<redis::RedisError> for ResilienceError {
    fn from(e: redis::RedisError) -> Self {
        ResilienceError::Store(e.to_string())
    }
}
