//! Completion callbacks, the worker's side (docs/architecture.md, "Completion
//! callbacks"): a loop of its own, apart from the job slots, claims due deliveries,
//! signs and POSTs each, and records every try on the job.
//!
//! - [`config`]: `worker.callbacks.*` (concurrency, timeout, tries, backoff, targets).
//! - [`resolver`]: the DNS resolver that refuses non-public addresses before connecting.
//! - [`deliver`]: one try — body, signature, request, what its answer means.
//! - [`pump`]: the loop — claims with a lease, bounded concurrency, retries, shutdown.
pub mod config;
pub mod deliver;
pub mod pump;
pub mod resolver;

pub use config::CallbacksConfig;
pub use deliver::Deliverer;
pub use pump::run;
