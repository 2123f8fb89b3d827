//! The operator audit log (`audit_log`): one row per action an operator took through
//! the API, appended after the action and never changed, read newest first (all of it,
//! or one key's or one action's rows), and removed once past its retention.
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{FromRow, PgPool};

use super::{CallDeadline, DbError};

/// One action as the API records it.
#[derive(Debug, Clone)]
pub struct NewAuditEntry {
    /// The API key's name (never the key).
    pub actor: String,
    /// What was done, e.g. `job.cancel`, `queue.pause`, `dlq.replay`.
    pub action: String,
    /// What it was done to: a job id, a kind, a schedule's name, an account id.
    pub target: String,
    /// The filter or selection it applied to, when it applied to many.
    pub filter: Option<serde_json::Value>,
    /// How many jobs (or records) it changed.
    pub touched: i64,
    /// `ok`, or the HTTP status and reason the action ended with (`409 Conflict`).
    pub outcome: String,
    pub request_id: String,
}

/// One row of the log.
#[derive(Debug, Clone, PartialEq, Serialize, FromRow)]
pub struct AuditEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub filter: Option<serde_json::Value>,
    pub touched: i64,
    pub outcome: String,
    pub request_id: String,
}

/// Which entries a page holds: every one, or only one key's, or one action's, or both.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub action: Option<String>,
}

#[derive(Clone)]
pub struct AuditLog {
    pool: PgPool,
    deadline: CallDeadline,
}

impl AuditLog {
    /// Calls bounded by the default [`CallDeadline`]; see [`Self::bounded_by`].
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            deadline: CallDeadline::default(),
        }
    }

    /// Every call given up (as unavailable) after `deadline`.
    pub fn bounded_by(self, deadline: CallDeadline) -> Self {
        Self { deadline, ..self }
    }

    pub async fn record(&self, e: &NewAuditEntry) -> Result<(), DbError> {
        let insert = sqlx::query(
            "INSERT INTO audit_log (actor, action, target, filter, touched, outcome, request_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&e.actor)
        .bind(&e.action)
        .bind(&e.target)
        .bind(&e.filter)
        .bind(e.touched)
        .bind(&e.outcome)
        .bind(&e.request_id)
        .execute(&self.pool);
        self.deadline.bound(insert).await?;
        Ok(())
    }

    /// Up to `limit` entries, newest first, older than `before` (an id) when given, and
    /// only those of `only`'s actor and action when it names them.
    pub async fn page(&self, before: Option<i64>, limit: i64, only: &AuditFilter) -> Result<Vec<AuditEntry>, DbError> {
        let page = sqlx::query_as(
            "SELECT id, at, actor, action, target, filter, touched, outcome, request_id FROM audit_log \
             WHERE ($1::bigint IS NULL OR id < $1) AND ($3::text IS NULL OR actor = $3) \
             AND ($4::text IS NULL OR action = $4) ORDER BY id DESC LIMIT $2",
        )
        .bind(before)
        .bind(limit)
        .bind(&only.actor)
        .bind(&only.action)
        .fetch_all(&self.pool);
        Ok(self.deadline.bound(page).await?)
    }

    /// Removes those of the `batch` oldest entries (by id, which follows the time they
    /// were recorded) recorded more than `keep_days` days ago by the database's clock;
    /// how many it removed (fewer than `batch`: none older is left). Each call reads at
    /// most `batch` rows, however long the log.
    pub async fn trim(&self, keep_days: u32, batch: i64) -> Result<u64, DbError> {
        let trim = sqlx::query(
            "DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log ORDER BY id LIMIT $2) \
             AND at < now() - make_interval(days => $1)",
        )
        .bind(keep_days as i32)
        .bind(batch)
        .execute(&self.pool);
        Ok(self.deadline.bound(trim).await?.rows_affected())
    }
}
