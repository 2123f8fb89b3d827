//! Pure decisions about one HTTP answer: what it means, how long to wait, what to say.
//! Kept free of I/O so they are unit- and property-tested without a server.
use std::time::Duration;

use amazon_spapi::models::listings_items_2021_08_01::ErrorList;
use reqwest::header::HeaderMap;
use reqwest::StatusCode;

/// `x-amzn-RateLimit-Limit`: the rate (requests per second) SP-API applies to this call.
pub(crate) const RATE_LIMIT_HEADER: &str = "x-amzn-ratelimit-limit";
/// Upstream messages are the seller's or Amazon's text; keep them short in our errors.
const MAX_REASON: usize = 300;

/// What one answer means for the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Disposition {
    Success,
    NotFound,
    /// The access token was refused: refresh once, then give up.
    Unauthorized,
    RateLimited,
    /// 5xx: the service is in trouble (counts against the breaker).
    ServerError,
    /// Any other 4xx: our request is wrong and stays wrong.
    ClientError,
}

pub(crate) fn disposition(status: StatusCode) -> Disposition {
    match status.as_u16() {
        200..=299 => Disposition::Success,
        404 => Disposition::NotFound,
        401 => Disposition::Unauthorized,
        429 => Disposition::RateLimited,
        500..=599 => Disposition::ServerError,
        // 3xx reach us too (redirects are not followed: see client.rs); the rest are 4xx.
        _ => Disposition::ClientError,
    }
}

/// `Retry-After` in whole or fractional seconds (SP-API sends seconds; an HTTP-date is
/// not used by it and is ignored, leaving the caller's default).
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let raw = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    let secs: f64 = raw.parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(86_400.0)))
}

/// Whether an answer's `x-amzn-RateLimit-Limit` is the seller's usage plan: a refused
/// token (401) or access (403) is answered by the marketplace's gate before the plan
/// applies, with a rate that may be another plan's (found by the worker-resilience audit
/// of 2026-12-07, second).
pub(crate) fn speaks_for_the_plan(status: StatusCode) -> bool {
    !matches!(status.as_u16(), 401 | 403)
}

/// The rate SP-API says applies, when present and sane.
pub(crate) fn rate_limit(headers: &HeaderMap) -> Option<f64> {
    let rate: f64 = headers.get(RATE_LIMIT_HEADER)?.to_str().ok()?.trim().parse().ok()?;
    (rate.is_finite() && rate > 0.0).then_some(rate)
}

/// Full-jitter exponential backoff: a uniform pick (`jitter` in 0..1) below
/// min(max, base × 2^attempt). Full jitter spreads the retries of many workers that
/// failed together instead of having them return in lock step.
pub(crate) fn backoff(attempt: u32, base: Duration, max: Duration, jitter: f64) -> Duration {
    let ceiling = base.saturating_mul(2u32.saturating_pow(attempt.min(30))).min(max);
    ceiling.mul_f64(jitter.clamp(0.0, 1.0))
}

/// `Code: message` from an SP-API `{"errors":[...]}` body, else the status text. Never
/// the raw body: it could echo anything.
pub(crate) fn upstream_reason(status: StatusCode, body: &[u8]) -> String {
    let described = serde_json::from_slice::<ErrorList>(body).ok().and_then(|list| {
        list.errors.first().map(|e| {
            let mut text = format!("{}: {}", e.code, e.message);
            if list.errors.len() > 1 {
                text.push_str(&format!(" (+{} more)", list.errors.len() - 1));
            }
            text
        })
    });
    let text = described.unwrap_or_else(|| status.canonical_reason().unwrap_or("unexpected status").to_owned());
    truncate(&text, MAX_REASON)
}

fn truncate(text: &str, max: usize) -> String {
    let clean: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if clean.chars().count() <= max {
        clean
    } else {
        let mut cut: String = clean.chars().take(max).collect();
        cut.push('…');
        cut
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use reqwest::header::HeaderValue;

    use super::*;

    #[test]
    fn statuses_map_to_their_disposition() {
        let d = |s: u16| disposition(StatusCode::from_u16(s).unwrap());
        assert_eq!(d(200), Disposition::Success);
        assert_eq!(d(202), Disposition::Success);
        assert_eq!(d(404), Disposition::NotFound);
        assert_eq!(d(401), Disposition::Unauthorized);
        assert_eq!(d(429), Disposition::RateLimited);
        assert_eq!(d(500), Disposition::ServerError);
        assert_eq!(d(503), Disposition::ServerError);
        assert_eq!(d(400), Disposition::ClientError);
        assert_eq!(d(403), Disposition::ClientError);
    }

    #[test]
    fn retry_after_and_rate_limit_headers_are_read_when_sane() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert("retry-after", HeaderValue::from_static("2"));
        h.insert(RATE_LIMIT_HEADER, HeaderValue::from_static("0.0167"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        assert_eq!(rate_limit(&h), Some(0.0167));
        h.insert("retry-after", HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"));
        h.insert(RATE_LIMIT_HEADER, HeaderValue::from_static("-1"));
        assert_eq!(retry_after(&h), None);
        assert_eq!(rate_limit(&h), None);
    }

    #[test]
    fn upstream_errors_keep_the_sp_api_code_and_message() {
        let body = br#"{"errors":[{"code":"InvalidInput","message":"SKU \"X\" is invalid"}]}"#;
        assert_eq!(upstream_reason(StatusCode::BAD_REQUEST, body), "InvalidInput: SKU \"X\" is invalid");
        assert_eq!(upstream_reason(StatusCode::BAD_GATEWAY, b"<html>"), "Bad Gateway");
        let long = format!(r#"{{"errors":[{{"code":"X","message":"{}"}}]}}"#, "a".repeat(1000));
        assert!(upstream_reason(StatusCode::BAD_REQUEST, long.as_bytes()).chars().count() <= MAX_REASON + 1);
    }

    proptest! {
        #[test]
        fn backoff_stays_within_the_exponential_ceiling_and_the_cap(
            attempt in 0u32..64, base_ms in 1u64..10_000, max_ms in 1u64..100_000, jitter in 0.0f64..=1.0,
        ) {
            let base = Duration::from_millis(base_ms);
            let max = Duration::from_millis(max_ms);
            let d = backoff(attempt, base, max, jitter);
            prop_assert!(d <= max);
            prop_assert!(d <= base.saturating_mul(2u32.saturating_pow(attempt.min(30))));
        }

        #[test]
        fn full_jitter_reaches_the_ceiling_at_one_and_zero_at_zero(attempt in 0u32..8) {
            let base = Duration::from_millis(100);
            let max = Duration::from_secs(60);
            prop_assert_eq!(backoff(attempt, base, max, 0.0), Duration::ZERO);
            prop_assert_eq!(backoff(attempt, base, max, 1.0), base * 2u32.pow(attempt));
        }
    }
}
