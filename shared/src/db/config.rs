//! `[<section>.database]`: where PostgreSQL is and how the pool behaves.
use std::str::FromStr;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgConnectOptions;

/// Used when neither the configuration nor `DATABASE_URL` names a database.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/drover";

/// The pool's settings.
///
/// Where the URL comes from, first match wins:
/// 1. `database.url` given explicitly (config file, or `DROVER_<SECTION>__DATABASE__URL`);
/// 2. the plain `DATABASE_URL` environment variable (what sqlx tooling, the README and CI use);
/// 3. [`DEFAULT_DATABASE_URL`].
///
/// This falls out of the config layering: the serde default of `url` reads
/// `DATABASE_URL`, and any explicit value overrides the default.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// May hold a password, so it never prints (Debug shows `[REDACTED]`).
    #[serde(serialize_with = "crate::config::redact::url")]
    pub url: SecretString,
    pub max_connections: u32,
    pub min_connections: u32,
    /// Longest a query waits for a free connection before the database counts as unavailable.
    pub acquire_timeout_ms: u64,
    /// Set on every connection (`SET statement_timeout`); 0 disables it.
    pub statement_timeout_ms: u64,
    /// Idle connections above `min_connections` close after this; 0 keeps them.
    pub idle_timeout_ms: u64,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: SecretString::from(default_url()),
            max_connections: 10,
            min_connections: 0,
            acquire_timeout_ms: 5_000,
            statement_timeout_ms: 30_000,
            idle_timeout_ms: 600_000,
        }
    }
}

/// `DATABASE_URL` when set and non-empty, else [`DEFAULT_DATABASE_URL`].
pub fn default_url() -> String {
    std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned())
}

impl DatabaseConfig {
    /// A configuration for `url` with the default pool settings.
    pub fn with_url(url: impl Into<String>) -> Self {
        Self {
            url: SecretString::from(url.into()),
            ..Self::default()
        }
    }

    pub fn acquire_timeout(&self) -> Duration {
        Duration::from_millis(self.acquire_timeout_ms)
    }

    /// How long one call may go unanswered before it counts as unavailable.
    pub fn call_deadline(&self) -> super::CallDeadline {
        super::CallDeadline::from_config(self)
    }

    /// Every problem at once, each naming the setting under `prefix` (e.g. `api.database`).
    pub fn validate(&self, prefix: &str) -> Result<(), Vec<String>> {
        let mut errs = Vec::new();
        if let Err(why) = parse_url(&self.url) {
            errs.push(format!("{prefix}.url {why}"));
        }
        if !(1..=1000).contains(&self.max_connections) {
            errs.push(format!(
                "{prefix}.max_connections = {} must be between 1 and 1000",
                self.max_connections
            ));
        }
        if self.min_connections > self.max_connections {
            errs.push(format!(
                "{prefix}.min_connections = {} must not exceed max_connections = {}",
                self.min_connections, self.max_connections
            ));
        }
        if !(100..=300_000).contains(&self.acquire_timeout_ms) {
            errs.push(format!(
                "{prefix}.acquire_timeout_ms = {} must be between 100 and 300000",
                self.acquire_timeout_ms
            ));
        }
        if self.statement_timeout_ms != 0 && !(100..=24 * 3600 * 1000).contains(&self.statement_timeout_ms) {
            errs.push(format!(
                "{prefix}.statement_timeout_ms = {} must be 0 (off) or between 100 and 86400000",
                self.statement_timeout_ms
            ));
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs)
        }
    }
}

/// The URL's connect options. The error names the problem, never the URL (it may hold a password).
pub(crate) fn parse_url(url: &SecretString) -> Result<PgConnectOptions, String> {
    let raw = url.expose_secret();
    if !(raw.starts_with("postgres://") || raw.starts_with("postgresql://")) {
        return Err("must be a PostgreSQL URL: postgres://[user[:password]@]host[:port]/database".into());
    }
    PgConnectOptions::from_str(raw)
        .map_err(|_| "is not a valid PostgreSQL URL: postgres://[user[:password]@]host[:port]/database".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid() {
        DatabaseConfig::with_url(DEFAULT_DATABASE_URL).validate("x.database").unwrap();
    }

    #[test]
    fn every_problem_is_named_and_the_url_is_never_shown() {
        let c = DatabaseConfig {
            url: SecretString::from("mysql://root:hunter2@db/x"),
            max_connections: 0,
            min_connections: 3,
            acquire_timeout_ms: 1,
            statement_timeout_ms: 5,
            idle_timeout_ms: 0,
        };
        let msg = c.validate("api.database").unwrap_err().join("\n");
        for needle in [
            "api.database.url",
            "api.database.max_connections = 0",
            "api.database.min_connections = 3",
            "api.database.acquire_timeout_ms = 1",
            "api.database.statement_timeout_ms = 5",
        ] {
            assert!(msg.contains(needle), "{needle} missing from {msg}");
        }
        assert!(!msg.contains("hunter2"), "{msg}");
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
