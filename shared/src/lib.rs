//! Drover's common library: everything the API and the workers share.
//!
//! - [`job`]: the job model — ids, kinds, states, typed payloads, attempt records.
//! - [`queue`]: the storage contract ([`queue::JobStore`]) and its Redis backend
//!   ([`queue::RedisStore`]): one Lua script per state change.
//! - [`runtime`]: the worker runtime — our backend under apalis's `WorkerBuilder`, the
//!   settle layer that decides each run's fate, the lease keeper, graceful shutdown.
//! - [`error`]: the errors handlers return; the variant decides the job's fate.
//! - [`config`]: layered, typed configuration.
//! - [`group_commit`]: callers arriving while a call is on the wire share the next one.
//! - [`http_body`]: an HTTP answer's body read with a cap on its size.
//! - [`backoff`]: doubling retry delays that log an outage once.
//! - [`callback`]: completion callbacks — URL and target checks, signing, sealing, retry schedule.
//! - [`shutdown`]: SIGTERM/SIGINT handling for the binaries (a second signal exits at once).
//! - [`telemetry`]: logging and tracing set-up.
//! - [`panics`]: panics logged once, by their catcher or as a log line.
//! - [`trace_context`]: W3C `traceparent` carried from the API request to the worker's upstream calls.
//! - [`resilience`]: Redis-shared rate limiter, quota cooldown, circuit breaker and LWA token cache.
//! - [`db`]: PostgreSQL — pool, embedded migrations, accounts (credentials sealed by [`crypto`]).
//! - [`crypto`]: AES-256-GCM sealing of secrets at rest.
//! - [`data`]: marketplace data in PostgreSQL (orders, report lines, listings, sync cursors, job items).
//! - [`schedule`]: cron schedules in Redis and the scheduler loop (one job per tick across replicas).
//! - [`lwa`]: Login with Amazon — exchanging a seller's refresh token for an access token.
//! - [`redis_conn`]: one Redis connection handle for a single server, a Redis Cluster or a Sentinel-managed primary.
//! - [`probe`]: the binaries' `healthcheck` subcommand (an HTTP GET to their own listener).
pub mod backoff;
pub mod callback;
pub mod config;
pub mod crypto;
pub mod data;
pub mod db;
pub mod error;
pub mod group_commit;
pub mod http_body;
pub mod job;
#[cfg(test)]
mod log_capture;
pub mod log_fields;
pub mod log_format;
pub mod lwa;
pub mod outage;
pub mod panics;
pub mod probe;
pub mod queue;
pub mod redis_conn;
pub mod resilience;
pub mod runtime;
pub mod schedule;
pub mod shutdown;
pub mod telemetry;
pub mod trace_context;

pub use error::JobError;
