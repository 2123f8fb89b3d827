//! Middleware every request passes through, outermost first:
//! [`request_id`] (id, span, panics, bare errors → problems) → [`observe`] (metrics,
//! access log) → [`timeout`] → per-route auth (`crate::auth`) → handler.
pub mod observe;
pub mod request_id;
pub mod timeout;
