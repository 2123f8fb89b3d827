//! Middleware every request passes through, outermost first:
//! [`request_id`] (id and span) → [`problem`] (bare errors → problems) →
//! [`header_limits`] (too many or too large headers → 431) → [`catch_panic`]
//! (panics → 500 problems) → [`observe`] (metrics, access log) → [`timeout`] → per-route
//! auth (`crate::auth`) → handler.
pub mod catch_panic;
pub mod header_limits;
pub mod observe;
pub mod problem;
pub mod request_id;
pub mod timeout;
