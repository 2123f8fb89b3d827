//! When each resource of an account last synced successfully (`orders`, `listings`,
//! `order_reports`): what the account view shows as the "last known data" while a quota
//! is exhausted. Only a completed sync writes it, and it never moves back.
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Row};

use super::DataResult;

/// The resources a successful sync is recorded for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncedResource {
    /// getOrders pages of a sync job, up to the walk's end.
    Orders,
    /// The listings refresh of a sync job.
    Listings,
    /// Order reports of a backfill job that ended with every window done.
    OrderReports,
}

impl SyncedResource {
    pub const ALL: [SyncedResource; 3] = [SyncedResource::Orders, SyncedResource::Listings, SyncedResource::OrderReports];

    pub fn as_str(self) -> &'static str {
        match self {
            SyncedResource::Orders => "orders",
            SyncedResource::Listings => "listings",
            SyncedResource::OrderReports => "order_reports",
        }
    }
}

/// The last successful sync of each resource of an account; `None` for one never synced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LastSynced {
    pub orders: Option<DateTime<Utc>>,
    pub listings: Option<DateTime<Utc>>,
    pub order_reports: Option<DateTime<Utc>>,
}

/// Record that `resource` of `account_id` finished syncing now (the database's clock).
/// Call it inside the transaction that commits the sync's last rows where there is one,
/// so the time is never ahead of the data.
pub async fn record(conn: &mut PgConnection, account_id: &str, resource: SyncedResource, job_id: &str) -> DataResult<()> {
    sqlx::query(
        "INSERT INTO last_synced (account_id, resource, synced_at, job_id) VALUES ($1, $2, now(), $3)
         ON CONFLICT (account_id, resource) DO UPDATE SET synced_at = EXCLUDED.synced_at, job_id = EXCLUDED.job_id
          WHERE last_synced.synced_at <= EXCLUDED.synced_at",
    )
    .bind(account_id)
    .bind(resource.as_str())
    .bind(job_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Every resource's last successful sync for one account (one indexed read).
pub async fn load(conn: &mut PgConnection, account_id: &str) -> DataResult<LastSynced> {
    let rows = sqlx::query("SELECT resource, synced_at FROM last_synced WHERE account_id = $1")
        .bind(account_id)
        .fetch_all(conn)
        .await?;
    let mut out = LastSynced::default();
    for row in rows {
        let at: DateTime<Utc> = row.try_get("synced_at")?;
        match row.try_get::<String, _>("resource")?.as_str() {
            "orders" => out.orders = Some(at),
            "listings" => out.listings = Some(at),
            "order_reports" => out.order_reports = Some(at),
            _ => {} // a resource a newer version records: not shown by this one
        }
    }
    Ok(out)
}
