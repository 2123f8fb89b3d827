//! The worker's client to the marketplace (Amazon SP-API; the simulator in tests).
//!
//! - [`client`]: [`MarketplaceClient`] and its typed operations over `amazon-spapi`'s models.
//! - `call`: the guard every rate-limited call passes — quota cooldown, circuit breaker,
//!   shared rate limiter, shared LWA token, timeout, classification, in-call retries.
//! - `classify`: pure decisions about an answer (disposition, headers, backoff).
//! - `download`: report document downloads (pre-signed URLs, gzip).
//! - `verdicts`: the resilience layer's errors as [`CallError`]s (a store outage stops
//!   the run), and the store's failures logged at most once a minute.
//! - [`config`]: [`MarketplaceConfig`]; [`error`]: [`CallError`] and its job fate;
//!   [`types`]: what the methods take and give.
mod call;
mod classify;
pub mod client;
pub mod config;
mod download;
pub mod error;
pub mod types;
mod verdicts;

pub(crate) use call::Noting;
pub use client::{ClientBuildError, MarketplaceClient};
pub use config::MarketplaceConfig;
pub use error::CallError;
pub use types::{AccountCtx, DeleteOutcome, OrdersPage, OrdersQuery};
