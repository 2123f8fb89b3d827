//! The values the client's methods take and give, beyond SP-API's own models.
use amazon_spapi::models::orders_v0::Order;
use chrono::{DateTime, Utc};
use drover::job::{AccountId, MarketplaceId};
use drover::lwa::LwaCredentials;
use tokio_util::sync::CancellationToken;

/// What a call needs to know about the seller account it is made for. `Debug` is safe:
/// the credentials redact their secrets.
#[derive(Debug, Clone)]
pub struct AccountCtx {
    pub account_id: AccountId,
    /// The account whose limiter, cooldowns and breakers the calls count against: the
    /// marketplace counts per seller and application, so an account registered with
    /// another's credentials shares that one's (`accounts.limits_of`); else itself.
    pub limits: AccountId,
    pub credentials: LwaCredentials,
    /// Cancels waits for a rate-limit slot, backoffs and the request in flight.
    pub cancel: CancellationToken,
    /// The job's W3C `traceparent`: every SP-API request continues its trace.
    pub traceparent: Option<String>,
}

/// One `getOrders` request: either `created_after` or `last_updated_after` for a first
/// page, or the `next_token` of the previous page (SP-API then ignores the filters).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OrdersQuery {
    pub marketplace_ids: Vec<MarketplaceId>,
    pub created_after: Option<DateTime<Utc>>,
    pub last_updated_after: Option<DateTime<Utc>>,
    pub next_token: Option<String>,
    /// 1..=100 (SP-API's `MaxResultsPerPage`); `None` is SP-API's default of 100.
    pub max_results: Option<u32>,
}

/// One page of orders and the token for the next one (`None` on the last page).
#[derive(Debug, Clone, PartialEq)]
pub struct OrdersPage {
    pub orders: Vec<Order>,
    pub next_token: Option<String>,
    /// The upper bound SP-API applied (`LastUpdatedBefore`), echoed on every page of a
    /// LastUpdatedAfter walk: the next sync's safe `LastUpdatedAfter`.
    pub last_updated_before: Option<DateTime<Utc>>,
}

/// What `deleteListingsItem` did: removed it, or it was not there (404) — both leave
/// the SKU gone, which is what a cleanup wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteOutcome {
    Deleted,
    Absent,
}
