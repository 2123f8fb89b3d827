//! The client-side bound on a database call: `statement_timeout` ends a slow query on the
//! server, but a call whose connection went silent (a half-open socket after a network
//! partition or a NAT dropping its state) hears nothing, and sqlx has no read timeout.
use std::future::Future;
use std::time::Duration;

use super::DatabaseConfig;

/// What a call may take beyond waiting for a connection and the server's own bound.
const MARGIN: Duration = Duration::from_secs(2);

/// The server's bound when `statement_timeout` is off (0): the client still gives up.
const UNBOUNDED_STATEMENT: Duration = Duration::from_secs(300);

/// How long a connection coming back to the pool may take to show it still answers.
pub(super) const RELEASE_CHECK: Duration = Duration::from_secs(2);

/// How long one database call may take before it counts as unavailable: the acquire
/// timeout, plus the statement timeout (300 s when it is off), plus 2 s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallDeadline(Duration);

impl CallDeadline {
    pub fn from_config(cfg: &DatabaseConfig) -> Self {
        let statement = match cfg.statement_timeout_ms {
            0 => UNBOUNDED_STATEMENT,
            ms => Duration::from_millis(ms),
        };
        Self(cfg.acquire_timeout() + statement + MARGIN)
    }

    pub fn limit(&self) -> Duration {
        self.0
    }

    /// `call`, or an I/O error of kind `TimedOut` once the deadline passes (it counts as
    /// unavailable, see `DbError`). The call's connection is then dropped mid-reply; the
    /// pool checks it before reuse and closes it if it does not answer ([`RELEASE_CHECK`]).
    pub async fn bound<T>(&self, call: impl Future<Output = Result<T, sqlx::Error>>) -> Result<T, sqlx::Error> {
        match tokio::time::timeout(self.0, call).await {
            Ok(result) => result,
            Err(_) => Err(sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no reply from the database within {} ms", self.0.as_millis()),
            ))),
        }
    }
}

impl Default for CallDeadline {
    fn default() -> Self {
        Self::from_config(&DatabaseConfig::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deadline_is_the_acquire_and_statement_timeouts_plus_a_margin() {
        let mut cfg = DatabaseConfig::default();
        assert_eq!(CallDeadline::from_config(&cfg).limit(), Duration::from_secs(5 + 30 + 2));
        cfg.statement_timeout_ms = 0;
        assert_eq!(CallDeadline::from_config(&cfg).limit(), Duration::from_secs(5 + 300 + 2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_that_never_answers_ends_as_unavailable_at_the_deadline() {
        let deadline = CallDeadline(Duration::from_secs(3));
        let started = tokio::time::Instant::now();
        let e = deadline.bound(std::future::pending::<Result<(), sqlx::Error>>()).await.unwrap_err();
        assert_eq!(started.elapsed(), Duration::from_secs(3));
        assert!(super::super::DbError::from(e).is_unavailable());
    }
}
