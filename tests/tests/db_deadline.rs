//! The client-side bound on database calls (`CallDeadline`): a call whose connection
//! goes silent mid-reply (a half-open socket) ends as unavailable at its deadline, for
//! the repositories the API, the scheduler and the worker share. Real PostgreSQL behind
//! a relay whose open connections freeze.
use std::future::Future;
use std::time::{Duration, Instant};

use drover::db::{AccountRepo, AuditLog, DatabaseConfig, DbError, NewAuditEntry};
use drover::job::AccountId;
use drover_tests::harness::{FrozenProxy, PgDatabase};
use sqlx::postgres::PgConnectOptions;

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
        let direct: PgConnectOptions = db.url().parse().expect("the test database URL");
        let server = tokio::net::lookup_host((direct.get_host().to_owned(), direct.get_port()))
            .await
            .expect("the database host resolves")
            .next()
            .expect("an address");
        let relay = FrozenProxy::start(server).await;
        let host_port = format!("{}:{}", direct.get_host(), direct.get_port());
        assert!(db.url().contains(&host_port), "the test database URL names its port");
        let config = DatabaseConfig {
            acquire_timeout_ms: 500,
            statement_timeout_ms: 1000,
            ..DatabaseConfig::with_url(db.url().replacen(&host_port, &relay.addr().to_string(), 1))
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
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            let waiting: i64 =
                sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'")
                    .fetch_one(self.db.pool())
                    .await
                    .unwrap();
            if waiting > 0 {
                break;
            }
            assert!(Instant::now() < until, "the call never reached the lock");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
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
