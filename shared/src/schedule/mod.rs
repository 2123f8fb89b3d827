//! Periodic jobs: cron schedules kept in Redis, and the scheduler loop that turns their
//! ticks into jobs.
//!
//! - [`spec`]: a schedule (name, cron expression, the job it makes) and its validation.
//! - [`cadence`]: how often a cron fires, checked when a schedule is saved.
//! - [`store`]: schedules in one Redis hash, `<ns>:schedules` (`<account>/<name>` → JSON):
//!   names are per account, an account may have at most so many, and so may the API key
//!   that created them, whatever their accounts (`create.lua`). A per-account index of
//!   the fields lets an account's listing read only its own.
//! - [`scheduler`]: the loop any number of API or worker replicas run.
//! - [`config`]: its settings and the built-in schedules' defaults.
//! - [`built_in`]: the built-in schedules it makes, recorded in Redis for the listings.
//! - [`counters`]: the ticks it made and missed, for `/metrics`.
//!
//! Exactly one job per tick however many replicas run the loop: every replica enqueues
//! a tick's job with the idempotency key `schedule:<account>/<name>:<tick unix seconds>`, and the
//! queue's enqueue script returns the existing job for a key it has seen. No leader
//! election, no lock to lose: a replica that dies mid-tick leaves nothing half-done.
pub mod built_in;
pub mod cadence;
pub mod config;
pub mod counters;
pub mod scheduler;
pub mod spec;
pub mod store;

pub use built_in::BuiltInSchedule;
pub use config::{BuiltIn, DefaultSchedules, SchedulerConfig};
pub use counters::ScheduleCounters;
pub use scheduler::{AccountSource, RegisteredAccount, Scheduler};
pub use spec::{Schedule, ScheduleError, ScheduleSpec};
pub use store::ScheduleStore;
