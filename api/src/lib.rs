//! Drover's HTTP API (docs/architecture.md, "HTTP API"): submit, query and control jobs; secured by API keys,
//! rate-limited per key in Redis, documented by a generated OpenAPI spec.
//!
//! Where things are:
//! - [`app`]: [`build`] (config → bound [`App`]) and [`App::run_until`] (graceful shutdown).
//! - [`config`]: typed, layered, validated configuration (`DROVER_API__*`).
//! - [`cli`]: the server binary's command line (`hash-key`, `healthcheck`, `config check`,
//!   `--help` with every setting) and its shutdown signal. The operators' client `drover`
//!   is a binary of its own (`src/bin/drover/`), a thin HTTP client of the API.
//! - [`serve`]: the listener loop (header-read timeout, connection cap).
//! - [`routes`]: the router — each endpoint registered once for routing and the document,
//!   which role it needs, the middleware order.
//! - [`handlers`]: the endpoints, one concept per file.
//! - [`views`]: request and response bodies (what the OpenAPI document shows).
//! - [`error`]: [`ApiError`], the one error type, rendered as `application/problem+json`.
//! - [`problem_responses`]: the error responses endpoints document, each written once.
//! - [`auth`]: API keys (SHA-256, constant-time), roles and account scopes.
//! - [`audit`]: operator actions appended to Postgres's audit log (`GET /v1/audit`).
//! - [`callbacks`]: a job's `callback_url` checked on submit, the key's secret sealed into the job.
//! - [`ratelimit`]: per-key GCRA on writes, one Lua script in Redis.
//! - [`idempotency`]: `Idempotency-Key` scoped per API key and per kind.
//! - [`extract`]: body, query and header extractors mapping bad input to 400/413/415/422.
//! - [`middleware`]: request id, problem rewriting, panic catching, metrics and access log, timeout.
//! - [`metrics`]: the Prometheus recorder and queue gauges read at scrape time.
//! - [`metrics_listener`]: the internal listener that serves them (`api.metrics_listen`).
//! - [`readiness`]: `/readyz`'s dependency checks, shared by the probes of one second.
//! - [`streams`]: caps on open event streams, per key and per process.
//! - [`waiting`]: why a job waits: the queue's reason combined with the account's quota cooldown.
//! - [`cursor`], [`csv_skus`]: pure pieces (page cursors, CSV uploads).
//! - [`openapi`]: the generated OpenAPI document and its endpoint.
pub mod app;
pub mod audit;
pub mod auth;
pub mod body_budget;
pub mod callbacks;
pub mod cli;
pub mod client_slots;
pub mod config;
pub mod csv_skus;
pub mod cursor;
pub mod error;
pub mod extract;
pub mod handlers;
pub mod idempotency;
pub mod job_watch;
pub mod metrics;
pub mod metrics_listener;
pub mod middleware;
pub mod openapi;
pub mod paced_writes;
pub mod problem_responses;
pub mod ratelimit;
pub mod readiness;
pub mod record_reads;
pub mod routes;
pub mod serve;
pub mod state;
pub mod streams;
pub mod ui;
pub mod views;
pub mod waiting;

pub use app::{build, App, StartError};
pub use auth::{hash_key, Role};
pub use config::{ApiConfig, KeyEntry, DEV_KEY};
pub use error::ApiError;
