//! PostgreSQL (docs/architecture.md, "Data"): the pool, the embedded migrations and the repositories.
//!
//! - [`DatabaseConfig`]: URL and pool settings (`[<section>.database]`, or `DATABASE_URL`).
//! - [`connect_lazy`]: a pool that connects on first use, so services start while
//!   Postgres is down and say so on their readiness probe.
//! - [`migrate`]: the migrations in `shared/migrations`, embedded at compile time. sqlx
//!   holds an advisory lock while migrating, so every replica may run it at start-up.
//! - [`accounts`]: seller accounts and their encrypted marketplace credentials; which of
//!   them share a seller's marketplace limits (`seller_limits.rs`).
//! - [`audit`]: the operator audit log.
//! - [`CallDeadline`]: the client-side bound on one call, for a connection gone silent.
//! - [`DbError`]: what went wrong, by what the caller should do about it.
pub mod accounts;
pub mod audit;
mod call_deadline;
mod config;
pub mod sealed_column;
mod seller_limits;

use std::time::Duration;

use sqlx::postgres::PgPoolOptions;

pub use accounts::{Account, AccountCredentials, AccountRepo, NewAccount};
pub use audit::{AuditEntry, AuditFilter, AuditLog, NewAuditEntry};
pub use call_deadline::CallDeadline;
pub use config::{default_url, DatabaseConfig, DEFAULT_DATABASE_URL};
pub use sqlx::PgPool;

/// Database failures, by fate. Display never holds the URL, SQL parameters or row data:
/// only what kind of failure it was (and the SQLSTATE code for server errors).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DbError {
    /// Could not reach or use the server (connection refused, pool timeout, shutdown,
    /// statement timeout, serialization failure): retry later.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A unique constraint (e.g. the row already exists).
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("not found: {0}")]
    NotFound(String),
    /// Anything else (a bug, a schema mismatch, undecryptable data): retrying will not help.
    #[error("database error: {0}")]
    Other(String),
}

/// How an unavailable database that answers but takes no writes is described (SQLSTATE
/// 25006, or the readiness probe's check).
const READ_ONLY: &str = "the server is read-only";

impl DbError {
    pub fn is_unavailable(&self) -> bool {
        matches!(self, DbError::Unavailable(_))
    }

    /// The server answers but takes no writes (a replica, a primary demoted mid-failover):
    /// its reads go on, so an outage of this kind ends only with a write answered.
    pub fn is_read_only(&self) -> bool {
        matches!(self, DbError::Unavailable(m) if m.starts_with(READ_ONLY))
    }

    /// The failure in a word, for what tenants read (a job's error): the text, with its
    /// SQLSTATE or constraint name, is for the log.
    pub fn kind(&self) -> &'static str {
        match self {
            DbError::Unavailable(_) => "unavailable",
            DbError::Conflict(_) => "conflict",
            DbError::NotFound(_) => "not found",
            DbError::Other(_) => "error",
        }
    }
}

impl From<sqlx::Error> for DbError {
    fn from(e: sqlx::Error) -> Self {
        use sqlx::Error as E;
        match e {
            E::RowNotFound => DbError::NotFound("no such row".into()),
            // A timeout's text is the client's own (`CallDeadline`) or the OS's: no address.
            E::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => DbError::Unavailable(format!("connection failed: {io}")),
            E::Io(io) => DbError::Unavailable(format!("connection failed: {}", io.kind())),
            E::Tls(_) => DbError::Unavailable("TLS handshake failed".into()),
            E::PoolTimedOut => DbError::Unavailable("no connection available within the acquire timeout".into()),
            E::PoolClosed => DbError::Unavailable("the connection pool is closed".into()),
            E::WorkerCrashed => DbError::Unavailable("the connection worker stopped".into()),
            E::Protocol(_) => DbError::Unavailable("protocol error talking to the server".into()),
            E::Database(db) => from_sqlstate(db.code().as_deref().unwrap_or("?????"), db.constraint()),
            E::Configuration(_) => DbError::Other("invalid connection configuration".into()),
            E::Migrate(m) => (*m).into(),
            // Decode/encode and the like are bugs or schema drift; their text is safe but
            // may quote column values, so only the kind is kept.
            other => DbError::Other(format!("client error ({})", variant_name(&other))),
        }
    }
}

/// Server errors by SQLSTATE class: the message text may quote values, the code does not.
fn from_sqlstate(code: &str, constraint: Option<&str>) -> DbError {
    match code {
        "23505" => DbError::Conflict(format!("unique constraint {} violated", constraint.unwrap_or("?"))),
        "57014" => DbError::Unavailable("statement timeout (SQLSTATE 57014)".into()),
        "40001" | "40P01" => DbError::Unavailable(format!("transaction conflict, retry (SQLSTATE {code})")),
        c if c.starts_with("08") || c.starts_with("53") || c.starts_with("57P") => {
            DbError::Unavailable(format!("server not accepting work (SQLSTATE {c})"))
        }
        c if c.starts_with("28") => DbError::Unavailable(format!("authentication failed (SQLSTATE {c})")),
        "3D000" => DbError::Unavailable("the database does not exist (SQLSTATE 3D000)".into()),
        // A server that answers but takes no writes (a primary demoted mid-failover,
        // reached through an address not yet moved), and a session it ended for idling
        // in a transaction: the database is not there for this work yet (before, found
        // by the durability audit of 2026-12-07, third, a 500 and a used attempt).
        "25006" => DbError::Unavailable(format!("{READ_ONLY} (SQLSTATE 25006): a failover under way?")),
        "25P03" => DbError::Unavailable("the session was ended idle in a transaction (SQLSTATE 25P03)".into()),
        c => DbError::Other(format!("server error (SQLSTATE {c})")),
    }
}

/// `e` as a worker reading the accounts sees it: a column or table this release reads
/// that the database does not have yet means its migrations have not run (a worker of
/// this release starts beside the previous release's schema and applies them in the
/// background), which passes like an outage; elsewhere such an error is a bug (500).
pub(crate) fn schema_behind_is_unavailable(e: sqlx::Error) -> DbError {
    match e.as_database_error().and_then(|d| d.code()) {
        Some(code) if code == "42703" || code == "42P01" => DbError::Unavailable(format!(
            "the schema is older than this release: migrations not applied yet (SQLSTATE {code})"
        )),
        _ => e.into(),
    }
}

fn variant_name(e: &sqlx::Error) -> &'static str {
    use sqlx::Error as E;
    match e {
        E::ColumnDecode { .. } | E::Decode(_) => "decode",
        E::Encode(_) => "encode",
        E::ColumnNotFound(_) | E::ColumnIndexOutOfBounds { .. } => "column",
        E::TypeNotFound { .. } => "type",
        _ => "other",
    }
}

impl From<sqlx::migrate::MigrateError> for DbError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        use sqlx::migrate::MigrateError as M;
        match e {
            M::Execute(e) | M::ExecuteMigration(e, _) => e.into(),
            // The rest name migrations and versions, never data.
            other => DbError::Other(format!("migration failed: {other}")),
        }
    }
}

/// A pool that opens connections on first use. Each new connection gets the configured
/// `statement_timeout`, so a runaway query cannot hold a connection forever. A connection
/// coming back must answer a ping within 2 s or it is closed (and the server ends a
/// transaction left idle longer than one call's deadline): one whose call was given up
/// ([`CallDeadline`]) may have gone silent, and sqlx's own check on release has no bound,
/// so it would hold its place in the pool until the kernel gave up on the socket.
pub fn connect_lazy(cfg: &DatabaseConfig) -> Result<PgPool, DbError> {
    let options = config::parse_url(&cfg.url).map_err(|why| DbError::Other(format!("database.url {why}")))?;
    let statement_timeout_ms = cfg.statement_timeout_ms;
    // A transaction whose client went silent between its statements (its call given up at
    // the deadline) is ended by the server soon after, not when TCP gives up on it (about
    // 2 h): its locks (a job's run claim, its sync position) held every later run of the
    // job meanwhile (found by the data audit of 2026-12-06).
    let idle_in_transaction_ms = cfg.call_deadline().limit().as_millis() as u64;
    let pool = PgPoolOptions::new()
        .max_connections(cfg.max_connections)
        .min_connections(cfg.min_connections)
        .acquire_timeout(cfg.acquire_timeout())
        .idle_timeout((cfg.idle_timeout_ms > 0).then(|| Duration::from_millis(cfg.idle_timeout_ms)))
        .after_connect(move |conn, _meta| {
            Box::pin(async move {
                // `SET statement_timeout = …` takes no bind parameters; set_config does.
                sqlx::query(
                    "SELECT set_config('statement_timeout', $1, false), set_config('idle_in_transaction_session_timeout', $2, false)",
                )
                .bind(statement_timeout_ms.to_string())
                .bind(idle_in_transaction_ms.to_string())
                .execute(&mut *conn)
                .await?;
                Ok(())
            })
        })
        .after_release(|conn, _meta| {
            Box::pin(async move {
                use sqlx::Connection;
                Ok(tokio::time::timeout(call_deadline::RELEASE_CHECK, conn.ping())
                    .await
                    .is_ok_and(|pinged| pinged.is_ok()))
            })
        })
        .connect_lazy_with(options);
    Ok(pool)
}

/// Apply the embedded migrations (idempotent; safe to run from every replica at once).
/// Migrations a newer release applied are ignored, not an error: they only add tables
/// and columns, so an older release still runs on the newer schema (a rollback, or an
/// old replica restarting during a rolling upgrade).
pub async fn migrate(pool: &PgPool) -> Result<(), DbError> {
    let mut migrator = sqlx::migrate!("./migrations");
    migrator.set_ignore_missing(true);
    let mut run = LeavesThePool(Some(pool.acquire().await?));
    let conn = run.0.as_mut().expect("acquired");
    migrator.run_direct(None, &mut **conn, false).await?;
    // done: the connection goes back to the pool, its lock released by the run
    drop(run.0.take());
    Ok(())
}

/// The migration run's connection, closed rather than given back to the pool unless the
/// run succeeded: sqlx returns from a failed run (or one dropped at its deadline) with its
/// advisory lock still held by the session, and back in the pool that connection held
/// every other replica's migration off until it was closed (found by the durability audit
/// of 2026-12-07, second).
struct LeavesThePool(Option<sqlx::pool::PoolConnection<sqlx::Postgres>>);

impl Drop for LeavesThePool {
    fn drop(&mut self) {
        if let Some(conn) = self.0.take() {
            // out of the pool and dropped: its socket closes, the session and its lock end
            drop(conn.detach());
        }
    }
}

/// The longest one try at the migrations may go without finishing (each statement is
/// also bounded by the server's `statement_timeout`).
pub const MIGRATION_DEADLINE: Duration = Duration::from_secs(300);

/// Apply the migrations, retrying with backoff (up to 30 s) while Postgres cannot be
/// reached or fails, until done (true) or `stop` fires (false). One try that hears
/// nothing for [`MIGRATION_DEADLINE`] (a connection gone silent) is given up and retried. Every replica of the API
/// and the worker may do this at once: sqlx serialises them with an advisory lock.
/// `first_attempt` hears when the first try is over, so a caller can wait briefly for a
/// healthy start and leave a slow one to the background.
pub async fn migrate_until_done(
    pool: &PgPool,
    stop: &tokio_util::sync::CancellationToken,
    first_attempt: Option<tokio::sync::oneshot::Sender<()>>,
) -> bool {
    let mut first_attempt = first_attempt;
    let mut backoff = crate::backoff::Backoff::new(Duration::from_millis(250), Duration::from_secs(30));
    loop {
        let result = match tokio::time::timeout(MIGRATION_DEADLINE, migrate(pool)).await {
            Ok(result) => result,
            Err(_) => Err(DbError::Unavailable(format!(
                "no reply within {} s while migrating",
                MIGRATION_DEADLINE.as_secs()
            ))),
        };
        if let Some(tx) = first_attempt.take() {
            let _ = tx.send(());
        }
        let delay = match result {
            Ok(()) => {
                tracing::info!("postgres migrations applied");
                return true;
            }
            // The error never holds the URL or data; see DbError.
            Err(e) => {
                let delay = backoff.failed().delay;
                if e.is_unavailable() {
                    tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "postgres not reachable for migrations");
                } else {
                    tracing::error!(error = %e, retry_in_ms = delay.as_millis() as u64, "postgres migrations failed");
                }
                delay
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.cancelled() => return false,
        }
    }
}

/// The readiness probe: the server answers and takes writes. A server in recovery (a
/// replica, a primary demoted mid-failover) or whose sessions are read-only answers
/// `SELECT 1` yet refuses every write (found by the audit of 2026-12-07, third: `/readyz`
/// stayed green while registrations answered 503 and runs stopped for the outage).
pub async fn ping(pool: &PgPool) -> Result<(), DbError> {
    let read_only: bool = sqlx::query_scalar("SELECT pg_is_in_recovery() OR current_setting('transaction_read_only') = 'on'")
        .fetch_one(pool)
        .await?;
    if read_only {
        return Err(DbError::Unavailable(format!("{READ_ONLY}: a failover under way?")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_are_classified_by_sqlstate_without_their_text() {
        assert!(matches!(from_sqlstate("23505", Some("accounts_pkey")), DbError::Conflict(m) if m.contains("accounts_pkey")));
        assert!(from_sqlstate("57014", None).is_unavailable());
        assert!(from_sqlstate("08006", None).is_unavailable());
        assert!(from_sqlstate("57P01", None).is_unavailable());
        assert!(from_sqlstate("28P01", None).is_unavailable());
        assert!(from_sqlstate("25006", None).is_unavailable());
        assert_eq!(from_sqlstate("22P02", None), DbError::Other("server error (SQLSTATE 22P02)".into()));
    }

    #[test]
    fn connection_failures_are_unavailable() {
        let e: DbError = sqlx::Error::Io(std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "10.0.0.1:5432")).into();
        assert!(e.is_unavailable());
        assert!(!e.to_string().contains("10.0.0.1"), "{e}");
        assert!(DbError::from(sqlx::Error::PoolTimedOut).is_unavailable());
    }

    #[test]
    fn a_bad_url_is_refused_without_echoing_it() {
        let e = connect_lazy(&DatabaseConfig::with_url("postgres://u:hunter2@host:notaport/db")).unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }
}
