//! A private PostgreSQL database per test: `drover_t_<random>` created on the server named
//! by `DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`), migrated,
//! and dropped — `WITH (FORCE)`, so open connections do not keep it alive — when the
//! handle is dropped, including when the test panics.
use std::str::FromStr;

use drover::db::{DatabaseConfig, PgPool};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{AssertSqlSafe, Connection};

const DEFAULT_SERVER_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

pub struct PgDatabase {
    name: String,
    url: String,
    server_url: String,
    pool: PgPool,
}

impl PgDatabase {
    /// A fresh, migrated database. Panics (failing the test) when the server is unreachable.
    pub async fn create() -> PgDatabase {
        let server_url = std::env::var("DATABASE_URL")
            .ok()
            .filter(|u| !u.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_SERVER_URL.to_owned());
        let name = format!("drover_t_{:016x}", rand::random::<u64>());
        let mut admin = connect(&server_url).await;
        // The name is ours (hex digits); CREATE DATABASE takes no bind parameters.
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
        let _ = admin.close().await;
        let url = with_database(&server_url, &name);
        let pool = drover::db::connect_lazy(&DatabaseConfig::with_url(url.clone())).expect("the test database URL is valid");
        let db = PgDatabase {
            name,
            url,
            server_url,
            pool,
        };
        drover::db::migrate(&db.pool).await.expect("migrations apply to a fresh database");
        db
    }

    pub fn url(&self) -> String {
        self.url.clone()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Makes this database read-only and ends its sessions, so they start again
    /// read-only, as a demoted primary's would.
    pub async fn make_read_only(&self) {
        make_read_only(&self.pool).await;
    }

    /// The server's address (to put a relay in front of it).
    pub async fn server_addr(&self) -> std::net::SocketAddr {
        let opts = options(&self.url);
        tokio::net::lookup_host((opts.get_host().to_owned(), opts.get_port()))
            .await
            .expect("the database host resolves")
            .next()
            .expect("the database host has an address")
    }

    /// This database's URL with its server at `addr` (a relay in front of it).
    pub fn url_at(&self, addr: std::net::SocketAddr) -> String {
        let mut u = reqwest::Url::parse(&self.url).expect("the database URL is valid");
        u.set_ip_host(addr.ip()).expect("the database URL names a host");
        u.set_port(Some(addr.port())).expect("the database URL names a host");
        u.to_string()
    }

    /// Waits until a backend of this database waits on `wait`: a `wait_event` (`PgSleep`)
    /// or a `wait_event_type` (`Lock`). Panics after `within`.
    pub async fn until_a_backend_waits(&self, wait: &str, within: std::time::Duration) {
        let until = std::time::Instant::now() + within;
        loop {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND (wait_event = $1 OR wait_event_type = $1)",
            )
            .bind(wait)
            .fetch_one(&self.pool)
            .await
            .expect("pg_stat_activity reads");
            if waiting > 0 {
                return;
            }
            assert!(std::time::Instant::now() < until, "no backend waited on {wait} within {within:?}");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        // Drop is sync and may run inside (or after) the test's runtime: do the async work
        // on a thread of our own with its own small runtime, and wait for it.
        let (server_url, name) = (self.server_url.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(async move {
                let mut admin = PgConnection::connect_with(&options(&server_url)).await?;
                sqlx::query(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
                    .execute(&mut admin)
                    .await?;
                admin.close().await?;
                Ok::<_, anyhow::Error>(())
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("could not drop test database {}: {e}", self.name),
            Err(_) => eprintln!("could not drop test database {}: the dropping thread panicked", self.name),
        }
    }
}

fn options(url: &str) -> PgConnectOptions {
    PgConnectOptions::from_str(url).expect("DATABASE_URL is a valid PostgreSQL URL")
}

async fn connect(url: &str) -> PgConnection {
    PgConnection::connect_with(&options(url))
        .await
        .unwrap_or_else(|e| panic!("cannot reach PostgreSQL (DATABASE_URL or {DEFAULT_SERVER_URL}): {e}"))
}

/// `url` with its database (path) replaced by `name`, query parameters kept.
fn with_database(url: &str, name: &str) -> String {
    let mut u = reqwest::Url::parse(url).expect("DATABASE_URL is a valid URL");
    u.set_path(&format!("/{name}"));
    u.to_string()
}

/// Makes the database `pool` reaches read-only and ends its other sessions, so they start
/// again read-only, as a demoted primary's would.
pub async fn make_read_only(pool: &PgPool) {
    let db: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(pool)
        .await
        .expect("the database answers");
    sqlx::query(AssertSqlSafe(format!(
        "ALTER DATABASE \"{db}\" SET default_transaction_read_only = on"
    )))
    .execute(pool)
    .await
    .expect("the database is made read-only");
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")
        .execute(pool)
        .await
        .expect("its sessions end");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_is_swapped_and_the_rest_kept() {
        assert_eq!(
            with_database("postgres://u:p@h:5433/postgres?sslmode=disable", "drover_t_1"),
            "postgres://u:p@h:5433/drover_t_1?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
    }
}
