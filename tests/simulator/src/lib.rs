//! The marketplace simulator: a real HTTP server that speaks the parts of Amazon's
//! SP-API Drover uses (LWA tokens, Orders v0, Listings Items 2021-08-01, Reports
//! 2021-06-30) with its usage plans and with the failures a client must survive,
//! injected per account. Tests start it with [`spawn`] on port 0; the `simulator`
//! binary runs [`serve`] for the demo, docker-compose and benchmarks.
//!
//! Where things are:
//! - [`server`]: routes and [`serve`]; [`handle`]: [`spawn`] and [`SimHandle`].
//! - [`config`]: [`SimConfig`] (seed, demo accounts, limits, report timing).
//! - `gate`: the middleware every marketplace call passes (auth, faults, usage plan,
//!   counters, headers); `conn`: connections a fault can reset.
//! - `lwa`, `orders`, `listings`, `reports`: the endpoints; `flatfile`: report documents.
//! - `state`, `account`, `tokens`, `report_store`: the state behind them; `catalog`:
//!   deterministic orders and SKUs; `rng`: the seeded generator.
//! - [`faults`], [`ratelimit`], [`stats`]: fault specs, usage plans, counters.
//! - [`admin`] (the `/_admin` API, table of paths there) and [`client`] ([`SimAdmin`]).
//!
//! Determinism: orders, SKUs' ASINs and report rows depend only on the seed and the
//! account; tokens, ids and random faults also on the order of calls.
pub mod admin;
pub mod client;
pub mod config;
pub mod faults;
pub mod handle;
pub mod ratelimit;
pub mod server;
pub mod stats;

mod account;
mod catalog;
mod conn;
mod error;
mod extract;
mod flatfile;
mod gate;
mod listings;
mod lwa;
mod operation;
mod orders;
mod report_store;
mod reports;
mod rng;
mod state;
mod tokens;

pub use account::{AccountInfo, AccountSpec};
pub use admin::{AdminError, FaultsView, OrderChange, SkuChange};
pub use client::{AdminClientError, SimAdmin};
pub use config::{Credentials, ReportTiming, SimConfig, US_MARKETPLACE};
pub use error::ApiError;
pub use faults::{Burst5xx, Count, FaultSpec, FaultsRemaining, QuotaWindow, RateLimitBurst};
pub use flatfile::{Malformation, REPORT_COLUMNS};
pub use handle::{spawn, SimHandle};
pub use lwa::TokenResponse;
pub use operation::Operation;
pub use ratelimit::{RateLimit, RateLimits, RateProfile};
pub use report_store::ReportType;
pub use server::serve;
pub use stats::{AccountStats, DeleteOutcome, DeleteRecord, OpStats, StatsSnapshot};
