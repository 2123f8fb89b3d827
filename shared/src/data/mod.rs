//! Marketplace data in PostgreSQL: what the jobs write and the API reads back.
//!
//! - [`orders`]: orders from getOrders and order reports, upserted by order id.
//! - [`report_lines`]: order-report lines, upserted by (order, sku).
//! - [`listings`]: listings as last seen.
//! - [`cursors`]: incremental sync positions, including a page walk in progress.
//! - [`items`]: the per-item record of a job (cleanup SKUs, backfill windows, sync pages).
//! - [`run_fence`]: which run of a job may still write its items.
//! - [`items_retention`]: the per-item record of jobs long gone, removed.
//! - [`last_synced`]: when each resource of an account last synced successfully.
//!
//! Every write is idempotent (keyed by the upstream identity) so a retried page, window
//! or SKU never duplicates rows. The schema is in `shared/migrations/`.
pub mod cursors;
pub mod items;
pub mod items_retention;
pub mod last_synced;
pub mod listings;
pub mod orders;
pub mod report_lines;
pub mod run_fence;

/// Errors of this layer are sqlx's; callers decide their fate (a job treats them as
/// transient, the API as 503).
pub type DataResult<T> = Result<T, sqlx::Error>;
