//! The three jobs users submit — [`sync`], [`backfill`], [`cleanup`] — behind one
//! [`Jobs`] handler that the worker runtime calls for every kind.
//!
//! Shared rules: the account's credentials come from PostgreSQL (decrypted only here);
//! every marketplace call goes through the client's guard (limiter, breaker, cooldown);
//! per-item outcomes go to `job_items` as they happen, so a rerun does only what is
//! left, and only the job's newest run may write them (`run_fence`); a database error fails the run as transient (nothing is half-written: rows and
//! their item record share a transaction).
mod backfill;
mod cleanup;
mod config;
mod db_outage;
pub mod report_parse;
mod sync;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use drover::crypto::SecretBox;
use drover::data::items::{self, Sent};
use drover::data::run_fence::{self, Write};
use drover::db::accounts::AccountRepo;
use drover::db::{CallDeadline, DbError};
use drover::job::{AccountId, JobPayload};
use drover::runtime::{Handler, JobContext, Outcome};
use drover::JobError;
use sqlx::pool::PoolConnection;
use sqlx::{PgPool, Postgres, Transaction};

pub use config::JobsConfig;
use config::Slice;

use crate::marketplace::{AccountCtx, CallError, MarketplaceClient, Noting};

/// The handler for sync, backfill and cleanup jobs.
#[derive(Clone)]
pub struct Jobs {
    inner: Arc<Inner>,
}

struct Inner {
    market: MarketplaceClient,
    db: PgPool,
    accounts: AccountRepo,
    secrets: SecretBox,
    config: JobsConfig,
    deadline: CallDeadline,
}

impl Jobs {
    /// Every database call of a run is given up, as an unavailable database, after `deadline`.
    pub fn new(market: MarketplaceClient, db: PgPool, deadline: CallDeadline, secrets: SecretBox, config: JobsConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                accounts: AccountRepo::new(db.clone()).bounded_by(deadline),
                market,
                db,
                secrets,
                config,
                deadline,
            }),
        }
    }

    async fn dispatch(self, payload: JobPayload, ctx: JobContext) -> Result<Outcome, JobError> {
        self.claim(&ctx).await?;
        match payload {
            JobPayload::Sync(p) => sync::run(&self, p, &ctx).await,
            JobPayload::Backfill(p) => backfill::run(&self, p, &ctx).await,
            JobPayload::Cleanup(p) => cleanup::run(&self, p, &ctx).await,
        }
    }

    /// The account's credentials, ready for marketplace calls.
    async fn account(&self, id: &AccountId, ctx: &JobContext) -> Result<Seller, JobError> {
        match self.inner.accounts.credentials(id, &self.inner.secrets).await {
            Ok(Some(found)) => Ok(Seller {
                seller_id: found.account.seller_id.clone(),
                call: AccountCtx {
                    account_id: id.clone(),
                    limits: found.limits_of,
                    credentials: found.credentials,
                    cancel: ctx.cancel.clone(),
                    traceparent: ctx.traceparent.clone(),
                },
            }),
            Ok(None) => Err(JobError::permanent(format!(
                "account {id} is not registered (POST /v1/accounts first)"
            ))),
            Err(e) => {
                log_db_error(&e, "reading the job's account");
                if e.is_unavailable() {
                    Err(db_unavailable("accounts database unavailable".into()))
                } else {
                    Err(JobError::permanent(format!("account {id} could not be read ({})", e.kind())))
                }
            }
        }
    }

    /// Claim the job's item record for this run before touching it (`run_fence`).
    async fn claim(&self, ctx: &JobContext) -> Result<(), JobError> {
        let mut conn = self.connection("claiming the job's items").await?;
        let claimed = run_fence::claim(&mut conn, ctx.fence())
            .within(self)
            .await
            .map_err(db_error("claiming the job's items"))?;
        // every run's first write: one answered ends a read-only outage
        db_outage::wrote();
        landed(claimed, ctx, "claiming the job's items")
    }

    fn market(&self) -> &MarketplaceClient {
        &self.inner.market
    }

    fn db(&self) -> &PgPool {
        &self.inner.db
    }

    /// A connection for `what`, within the call deadline.
    async fn connection(&self, what: &str) -> Result<PoolConnection<Postgres>, JobError> {
        self.db().acquire().within(self).await.map_err(db_error(what))
    }

    /// A transaction for `what`, within the call deadline.
    async fn transaction(&self, what: &str) -> Result<Transaction<'static, Postgres>, JobError> {
        self.db().begin().within(self).await.map_err(db_error(what))
    }

    fn config(&self) -> &JobsConfig {
        &self.inner.config
    }
}

impl Handler for Jobs {
    fn run(&self, payload: JobPayload, ctx: JobContext) -> Pin<Box<dyn Future<Output = Result<Outcome, JobError>> + Send>> {
        Box::pin(self.clone().dispatch(payload, ctx))
    }
}

/// A database call of a run, given up after the call deadline: the connection may have
/// gone silent, and then only the deadline ends the wait (it counts as unavailable).
pub(crate) trait DbCall<T>: Future<Output = Result<T, sqlx::Error>> + Sized {
    fn within(self, jobs: &Jobs) -> impl Future<Output = Result<T, sqlx::Error>> {
        let call = jobs.inner.deadline.bound(self);
        async move {
            let r = call.await;
            if r.is_ok() {
                db_outage::answered();
            }
            r
        }
    }
}

impl<T, F: Future<Output = Result<T, sqlx::Error>>> DbCall<T> for F {}

/// A registered account, as a job needs it.
pub(crate) struct Seller {
    pub seller_id: String,
    pub call: AccountCtx,
}

/// A database error ends the run: as transient (the job is retried, using an attempt),
/// or, when the database cannot be reached, as interrupted (it runs again without using
/// one). Either way what was committed stays committed.
pub(crate) fn db_error(what: &str) -> impl FnOnce(sqlx::Error) -> JobError + '_ {
    move |e| {
        let e = DbError::from(e);
        log_db_error(&e, what);
        if e.is_unavailable() {
            return db_unavailable(format!("database unavailable while {what}"));
        }
        JobError::transient(format!("database error while {what} ({})", e.kind()))
    }
}

/// A database error's own words (a SQLSTATE, a constraint's name; never SQL values) go
/// to the log, in the job's span; the job's error, which tenants read, names only what
/// failed and how, in a word.
/// An unreachable database is logged once an outage (`db_outage`), not once a run.
fn log_db_error(e: &DbError, what: &str) {
    if e.is_unavailable() {
        db_outage::unreachable(e, what);
    } else {
        tracing::warn!(error = %e, during = what, "database call failed");
    }
}

/// How long a run stopped by an unavailable database waits before the job runs again.
const DB_RETRY: std::time::Duration = std::time::Duration::from_secs(2);

/// The database cannot be reached (connections refused or ended, the server shutting
/// down or not accepting work): the run stops and the job runs again after [`DB_RETRY`]
/// without using an attempt, as after a Redis outage.
fn db_unavailable(reason: String) -> JobError {
    JobError::Unavailable {
        retry_after: DB_RETRY,
        reason,
    }
}

/// A fenced write that did not land: a later run of this job holds it (this worker was
/// stopped past its lease and the job was taken over), so this run stops. Its lease is
/// gone, so the queue keeps what it reports as a late attempt only.
pub(crate) fn landed(write: Write, ctx: &JobContext, what: &str) -> Result<(), JobError> {
    match write {
        Write::Landed => Ok(()),
        Write::Fenced => {
            // (the run's end says so, once: `run failed`, with this error)
            tracing::debug!(job_id = %ctx.id, run = ctx.run, "{what}: a later run of this job holds it; this run stops");
            Err(JobError::transient(format!("{what}: a later run of this job holds it")))
        }
    }
}

/// What a noted call leaves to know once it has ended: whether a call for the item went
/// out unanswered before it — in an earlier run, or in an earlier try of this call.
#[derive(Default)]
pub(crate) struct SentNote {
    /// The earlier run whose call for the item went out unanswered.
    earlier: Mutex<Option<i64>>,
    /// A try of this call may have reached the marketplace without an answer read.
    unanswered: AtomicBool,
}

impl SentNote {
    /// The note of a call for an item whose earlier call went out unanswered, as the run
    /// knows it: the item's note as read at the run's start (an earlier run's), or a call
    /// of this run whose tries went out unanswered and which then gave way to a rate
    /// limit (its item sent again). A later refusal of this call leaves the note (found
    /// by the review of 2026-12-07, fifth stop: a 429 took back an earlier run's note,
    /// and a SKU sent again in the same run read its own delete's 404 as `absent`).
    pub(crate) fn after(earlier: Option<i64>) -> Self {
        Self {
            earlier: Mutex::new(earlier),
            unanswered: AtomicBool::new(false),
        }
    }

    /// The earlier run whose call went out unanswered, or this run when one of this
    /// call's own tries did: a 404 or 429 that follows may be that call's doing.
    pub(crate) fn sent_unanswered_by(&self, ctx: &JobContext) -> Option<i64> {
        let earlier = *self.earlier.lock().unwrap_or_else(|e| e.into_inner());
        earlier.or_else(|| self.unanswered.load(Ordering::Relaxed).then_some(ctx.run))
    }
}

/// Notes on `item`, right before its `op` call goes out, that this run sent it
/// (`items::mark_sent`); `sent` learns the earlier run whose call for it went out
/// unanswered, if any, and whether a try of this call did. A later run holding the job,
/// or a database error, stops the call unsent (as a transient error: should this run's
/// lease still stand, the job must not end as cancelled; an unavailable database stops
/// the run without using an attempt).
pub(crate) fn note_sent<'a>(jobs: &'a Jobs, ctx: &'a JobContext, item: &'a str, op: &'static str, sent: &'a SentNote) -> Noting<'a> {
    let earlier = &sent.earlier;
    let before_send = Box::pin(async move {
        let mark = async {
            let mut conn = jobs.db().acquire().await?;
            items::mark_sent(&mut conn, ctx.fence(), item).await
        };
        match mark.within(jobs).await {
            Ok(Sent::Marked) => {
                // No earlier run's note is left (an earlier run's answer recorded since
                // it was read): only this run's own unanswered call still counts.
                let mut e = earlier.lock().unwrap_or_else(|e| e.into_inner());
                if e.is_some_and(|run| run != ctx.run) {
                    *e = None;
                }
                Ok(())
            }
            Ok(Sent::AfterUnansweredRun(run)) => {
                *earlier.lock().unwrap_or_else(|e| e.into_inner()) = Some(run);
                Ok(())
            }
            Ok(Sent::Fenced) => {
                tracing::debug!(job_id = %ctx.id, run = ctx.run, item, op, "a later run of this job holds it; the call is not sent");
                Err(CallError::Transient {
                    op,
                    reason: "a later run of this job holds it".to_owned(),
                })
            }
            Err(e) => {
                let e = DbError::from(e);
                log_db_error(&e, "noting the call before sending it");
                // An outage stops the run without using an attempt, as everywhere else.
                if e.is_unavailable() {
                    return Err(CallError::Interrupted {
                        op,
                        reason: "database unavailable noting the call before sending it".into(),
                        retry_after: DB_RETRY,
                    });
                }
                Err(CallError::Transient {
                    op,
                    reason: format!("database error noting the call before sending it ({})", e.kind()),
                })
            }
        }
    });
    Noting {
        before_send,
        unanswered: &sent.unanswered,
    }
}

/// A call [`note_sent`] marked was refused with a 429 (`RateLimited`) or as a refusal of
/// the account's access (401, 403, credentials rejected: the review of 2026-12-07, a
/// replay took a 404 after it for this call's delete): it changed nothing upstream, so
/// the mark is taken back and a rerun does not take the item's state for this call's
/// effect — unless an earlier try of the call, or an earlier call for the item (an
/// earlier run's, or this run's), went out unanswered, which may have: then the note
/// stays, an earlier run's given back to that run (so a rerun names the run whose delete
/// it may be, and a backfill looks for that run's report). Best effort: a failure is
/// logged and leaves the mark.
pub(crate) async fn unmark_if_refused(jobs: &Jobs, ctx: &JobContext, item: &str, err: &CallError, sent: &SentNote) {
    let refused = matches!(err, CallError::RateLimited { .. }) || err.is_account_refusal();
    let earlier = *sent.earlier.lock().unwrap_or_else(|e| e.into_inner());
    if !refused || sent.unanswered.load(Ordering::Relaxed) || earlier == Some(ctx.run) {
        return;
    }
    let unmark = async {
        let mut conn = jobs.db().acquire().await?;
        match earlier {
            Some(run) => items::give_back_sent(&mut conn, ctx.fence(), item, run).await,
            None => items::unmark_sent(&mut conn, ctx.fence(), item).await,
        }
    };
    if let Err(e) = unmark.within(jobs).await {
        tracing::warn!(job_id = %ctx.id, item, error = %e, "could not take back the note of a refused call");
    }
}

/// Cancelled between steps: stop before the next one.
pub(crate) fn check_cancel(ctx: &JobContext) -> Result<(), JobError> {
    if ctx.is_cancelled() {
        Err(JobError::Cancelled)
    } else {
        Ok(())
    }
}
