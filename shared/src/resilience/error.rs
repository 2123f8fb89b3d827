//! What can go wrong around a marketplace call; the variant tells the caller what to do.
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::operation::Operation;

#[derive(Debug, thiserror::Error)]
pub enum ResilienceError {
    /// Do not call: the operation keeps failing for this account. Snooze until `until`.
    /// `probing`: the circuit is half-open and another caller's probe is out, so the
    /// wait is on that probe's answer, not on this caller's failures.
    #[error("circuit open for {op} until {until}")]
    BreakerOpen {
        op: Operation,
        until: DateTime<Utc>,
        probing: bool,
    },
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
    /// Redis answered with an error (a key of the wrong type, a script that failed):
    /// worth a retry later, but waiting alone may not cure it.
    #[error("resilience store failed: {0}")]
    Store(String),
    /// Redis cannot be reached or is not serving now (refused, dropped or timed out;
    /// loading, failing over, cluster down): an outage, which waiting cures. Nothing can
    /// be known or reserved meanwhile, so the caller stops and comes back.
    #[error("resilience store unavailable: {0}")]
    Unavailable(String),
}

impl From<redis::RedisError> for ResilienceError {
    fn from(e: redis::RedisError) -> Self {
        if is_outage(&e) {
            ResilienceError::Unavailable(e.to_string())
        } else {
            ResilienceError::Store(e.to_string())
        }
    }
}

/// Whether `e` says Redis cannot serve now, rather than that it refused this command:
/// the connection failed (refused, dropped, timed out; a cluster node or a Sentinel
/// primary not found), or the server is not serving yet (loading its data, a failover or
/// a resharding under way, the cluster down).
fn is_outage(e: &redis::RedisError) -> bool {
    use redis::{ErrorKind, ServerErrorKind};
    // A connection refused, reset, dropped or timed out is an `Io` error.
    e.is_io_error()
        || matches!(
            e.kind(),
            ErrorKind::ClusterConnectionNotFound
                | ErrorKind::MasterNameNotFoundBySentinel
                | ErrorKind::NoValidReplicasFoundBySentinel
                | ErrorKind::Server(
                    ServerErrorKind::BusyLoading
                        | ServerErrorKind::TryAgain
                        | ServerErrorKind::ClusterDown
                        | ServerErrorKind::MasterDown
                        | ServerErrorKind::ReadOnly
                )
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::{ErrorKind, RedisError, ServerErrorKind};

    #[test]
    fn a_redis_that_cannot_be_reached_is_an_outage_and_one_that_refuses_a_command_is_not() {
        let outages = [
            RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)),
            RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset)),
            RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut)),
            RedisError::from((ErrorKind::Server(ServerErrorKind::BusyLoading), "LOADING")),
            RedisError::from((ErrorKind::Server(ServerErrorKind::ClusterDown), "CLUSTERDOWN")),
            RedisError::from((ErrorKind::Server(ServerErrorKind::ReadOnly), "READONLY")),
        ];
        for e in outages {
            let text = e.to_string();
            assert!(matches!(ResilienceError::from(e), ResilienceError::Unavailable(_)), "{text}");
        }
        let refusals = [
            RedisError::from((ErrorKind::Server(ServerErrorKind::ResponseError), "WRONGTYPE")),
            RedisError::from((ErrorKind::Server(ServerErrorKind::NoPerm), "NOPERM")),
            RedisError::from((ErrorKind::UnexpectedReturnType, "not a number")),
        ];
        for e in refusals {
            let text = e.to_string();
            assert!(matches!(ResilienceError::from(e), ResilienceError::Store(_)), "{text}");
        }
    }
}
