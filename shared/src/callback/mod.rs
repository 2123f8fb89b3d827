//! Completion callbacks (docs/architecture.md, "Completion callbacks"; receivers:
//! docs/callbacks.md): what the API checks when a job names a `callback_url`, what the
//! worker signs and sends when the job ends, and how it retries.
//!
//! - [`url`]: [`CallbackUrl`], an absolute URL fit to call (scheme, length, no userinfo).
//! - [`hosts`]: [`HostPattern`], one entry of a key's `callback_hosts` allowlist.
//! - [`target`]: which addresses a callback may never reach (loopback, private, …).
//! - [`signature`]: `Drover-Signature` — HMAC-SHA256 over timestamp, delivery id and body.
//! - [`seal`]: the key's signing secret sealed into the job record, bound to the job and URL.
//! - [`retry`]: what a try's answer means (delivered, try again later, give up) and when.
//! - [`record`]: the delivery body and the history entries kept on the job.
pub mod hosts;
pub mod record;
pub mod retry;
pub mod seal;
pub mod signature;
pub mod target;
pub mod url;

pub use hosts::HostPattern;
pub use record::{CallbackStatus, DeliveryBody, DeliveryRecord, DeliveryResult, Ended, JobCallback};
pub use retry::{RetrySchedule, Verdict};
pub use url::CallbackUrl;

/// The dev key's callback secret in dev mode: published like the dev key itself, so a
/// local receiver can verify signatures with nothing configured. Never outside dev mode.
pub const DEV_CALLBACK_SECRET: &str = "drover-dev-callback-secret-published-do-not-use";
