//! The client-side bound on database calls (`CallDeadline`): a call whose connection
//! goes silent mid-reply (a half-open socket) ends as unavailable at its deadline, for
//! the repositories the API, the scheduler and the worker share. Real PostgreSQL behind
//! a relay whose open connections freeze.
use std::future::Future;
use std::time::{Duration, Instant};

use drover::db::{AccountRepo, AuditLog, DatabaseConfig, DbError, NewAuditEntry};
use drover::job::AccountId;
use drover_tests::harness::{FrozenProxy, PgDatabase};

/// The test database, reached through a relay, with calls bounded at 0.5 s acquire +
/// 1 s statement + 2 s.
struct Relayed {
    db: PgDatabase,
    relay: FrozenProxy,
    config: DatabaseConfig,
}

impl Relayed {
    async fn start() -> Relayed {
        let db = PgDatabase::create().await;
        let relay = FrozenProxy::start(db.server_addr().await).await;
        let config = DatabaseConfig {
            acquire_timeout_ms: 500,
            statement_timeout_ms: 1000,
            ..DatabaseConfig::with_url(db.url_at(relay.addr()))
        };
        Relayed { db, relay, config }
    }

    /// `call` made while `table` is locked by another session, its connection frozen
    /// while it waits on the lock: what it answered, and when.
    async fn silent<T: Send + 'static>(
        &self,
        table: &str,
        call: impl Future<Output = Result<T, DbError>> + Send + 'static,
    ) -> (Result<T, DbError>, Duration) {
        let mut lock = self.db.pool().begin().await.unwrap();
        // Test-only SQL: the table name is this file's own literal.
        sqlx::query(sqlx::AssertSqlSafe(format!("LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")))
            .execute(&mut *lock)
            .await
            .unwrap();
        let call = tokio::spawn(call);
        self.db.until_a_backend_waits("Lock", Duration::from_secs(10)).await;
        self.relay.freeze_open_connections();
        let frozen_at = Instant::now();
        let answer = tokio::time::timeout(Duration::from_secs(15), call)
            .await
            .unwrap_or_else(|_| panic!("no answer {:?} after the connection went silent", frozen_at.elapsed()))
            .expect("the call does not panic");
        lock.rollback().await.unwrap();
        (answer, frozen_at.elapsed())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_audit_entry_whose_connection_goes_silent_is_given_up_at_the_deadline() {
    let relayed = Relayed::start().await;
    let pool = drover::db::connect_lazy(&relayed.config).unwrap();
    let audit = AuditLog::new(pool).bounded_by(relayed.config.call_deadline());
    let entry = NewAuditEntry {
        actor: "ops".into(),
        action: "queue.pause".into(),
        target: "cleanup".into(),
        filter: None,
        touched: 0,
        outcome: "ok".into(),
        request_id: "req-1".into(),
    };
    let (answer, took) = relayed.silent("audit_log", async move { audit.record(&entry).await }).await;
    assert!(answer.as_ref().is_err_and(DbError::is_unavailable), "{answer:?}");
    assert!(took < Duration::from_secs(5), "answered {took:?} after the connection went silent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_read_whose_connection_goes_silent_is_given_up_at_the_deadline() {
    let relayed = Relayed::start().await;
    let pool = drover::db::connect_lazy(&relayed.config).unwrap();
    let repo = AccountRepo::new(pool).bounded_by(relayed.config.call_deadline());
    let id = AccountId::parse("seller-silent".to_owned()).unwrap();
    let (answer, took) = relayed
        .silent("accounts", async move { repo.get(&id).await.map(|a| a.is_some()) })
        .await;
    assert!(answer.as_ref().is_err_and(DbError::is_unavailable), "{answer:?}");
    assert!(took < Duration::from_secs(5), "answered {took:?} after the connection went silent");
}

/// Data audit of 2026-12-06: the pool set only `statement_timeout`, so a transaction whose
/// connection went silent between its statements (its COMMIT never reached the server)
/// stayed open on the server until TCP gave up on it (about 2 h), and its locks — here a
/// job's run claim — held every later run of the job. The server now ends a transaction
/// left idle longer than one call's deadline (3.5 s here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_whose_connection_went_silent_lets_its_locks_go_soon_after_the_deadline() {
    use drover::data::run_fence::{claim, RunFence, Write};
    let relayed = Relayed::start().await;
    let pool = drover::db::connect_lazy(&relayed.config).unwrap();
    let mut tx = pool.begin().await.unwrap();
    let first = RunFence {
        job_id: "cleanup_silent",
        run: 100,
    };
    assert_eq!(claim(&mut tx, first).await.unwrap(), Write::Landed);
    relayed.relay.freeze_open_connections();
    let _ = tokio::time::timeout(Duration::from_secs(1), tx.commit()).await;
    // A later run claims the job on a connection of its own.
    let started = Instant::now();
    let mut direct = relayed.db.pool().acquire().await.unwrap();
    let later = RunFence {
        job_id: "cleanup_silent",
        run: 200,
    };
    let claimed = tokio::time::timeout(Duration::from_secs(20), claim(&mut direct, later)).await;
    assert!(
        matches!(claimed, Ok(Ok(Write::Landed))),
        "the later run's claim: {claimed:?} after {:?}",
        started.elapsed()
    );
    assert!(started.elapsed() < Duration::from_secs(10), "it waited {:?}", started.elapsed());
}

/// Data audit of 2026-12-06: the items retention called the pool with no bound of its
/// own, so a pass whose connection went silent waited forever and the loop never ran
/// again (`job_items` grew without end). A batch is given up after its budget and one
/// call's deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_items_retention_pass_whose_connection_goes_silent_is_given_up() {
    let relayed = Relayed::start().await;
    let pool = drover::db::connect_lazy(&relayed.config).unwrap();
    let call = relayed.config.call_deadline();
    let (removed, took) = relayed
        .silent("job_runs", async move {
            Ok::<_, DbError>(drover_worker::items_retention::pass(&pool, Duration::from_secs(86_400), call).await)
        })
        .await;
    assert_eq!(removed.unwrap().jobs, 0);
    assert!(took < Duration::from_secs(12), "answered {took:?} after the connection went silent");
}
