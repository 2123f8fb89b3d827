//! Drover's end-to-end support: a harness that starts real processes (redis-server,
//! Postgres databases, the API, workers), the marketplace simulator, and benchmarks.
//!
//! - [`harness`]: private redis-server per test or suite, temp Postgres databases,
//!   child processes stopped by PID.
//! - [`runs`]: the run log test workers write, checked for runs of one job at once.
//! - [`sim`]: the SP-API-shaped marketplace simulator, crate `drover-simulator`
//!   (`tests/simulator`, binary `simulator`), re-exported under its old path.
pub mod harness;
pub mod runs;
pub use drover_simulator as sim;
