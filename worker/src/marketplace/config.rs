//! How the worker reaches the marketplace: endpoints, timeouts, pool size and the
//! in-call retry budget. The `[worker.marketplace]` section once the lead wires it in.
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The simulator's default listen address (`tests/simulator/src/bin/simulator.rs`), so a local
/// run needs no configuration; production points `base_url` at SP-API's regional host.
pub const DEFAULT_BASE_URL: &str = "http://127.0.0.1:9100";
/// LWA's path on the token host (`https://api.amazon.com/auth/o2/token` in production).
pub const TOKEN_PATH: &str = "/auth/o2/token";

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MarketplaceConfig {
    /// SP-API host, e.g. `https://sellingpartnerapi-na.amazon.com`.
    pub base_url: String,
    /// LWA token endpoint; empty means `base_url` + `/auth/o2/token` (the simulator's layout).
    pub token_url: String,
    /// One SP-API call, connect to last body byte.
    pub timeout_ms: u64,
    /// One report-document download (larger bodies, S3 in production).
    pub download_timeout_ms: u64,
    /// Largest report document downloaded, as sent (compressed); more is a permanent error.
    pub max_document_bytes: u64,
    /// Largest report document once gunzipped (a decompression bomb stops here).
    pub max_unpacked_bytes: u64,
    pub connect_timeout_ms: u64,
    /// Idle keep-alive connections kept per host.
    pub pool_idle_per_host: usize,
    /// Extra attempts inside one call for transient errors and short 429s (0 = none);
    /// longer waits go back to the queue as a snooze instead of holding a worker slot.
    pub retries: u32,
    /// Full-jitter exponential backoff between in-call retries: base × 2^attempt, capped.
    pub retry_base_ms: u64,
    /// Also the longest `Retry-After` a non-report 429 is waited out in-call, and never
    /// longer than the limiter's `max_wait` (`jobs.park_after_ms`): a longer one parks
    /// the job instead.
    pub retry_max_ms: u64,
    /// For the backfill handler: how often to poll a report, and for how long at most.
    pub report_poll_interval_ms: u64,
    pub report_poll_max_ms: u64,
    pub user_agent: String,
    /// Allow `http://` marketplace URLs outside dev mode: only for a local simulator
    /// (tests). Refresh tokens then cross the wire in cleartext.
    pub insecure_http: bool,
}

impl Default for MarketplaceConfig {
    fn default() -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_owned(),
            token_url: String::new(),
            timeout_ms: 30_000,
            download_timeout_ms: 60_000,
            max_document_bytes: 128 * 1024 * 1024,
            max_unpacked_bytes: 256 * 1024 * 1024,
            connect_timeout_ms: 5_000,
            pool_idle_per_host: 32,
            retries: 2,
            retry_base_ms: 200,
            retry_max_ms: 5_000,
            report_poll_interval_ms: 2_000,
            report_poll_max_ms: 600_000,
            user_agent: concat!("drover/", env!("CARGO_PKG_VERSION"), " (Language=Rust)").to_owned(),
            insecure_http: false,
        }
    }
}

impl MarketplaceConfig {
    /// The LWA endpoint in effect.
    pub fn token_url(&self) -> String {
        if self.token_url.is_empty() {
            format!("{}{TOKEN_PATH}", self.base_url.trim_end_matches('/'))
        } else {
            self.token_url.clone()
        }
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
    pub fn download_timeout(&self) -> Duration {
        Duration::from_millis(self.download_timeout_ms)
    }
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }
    pub fn retry_base(&self) -> Duration {
        Duration::from_millis(self.retry_base_ms)
    }
    pub fn retry_max(&self) -> Duration {
        Duration::from_millis(self.retry_max_ms)
    }
    pub fn report_poll_interval(&self) -> Duration {
        Duration::from_millis(self.report_poll_interval_ms)
    }
    pub fn report_poll_max(&self) -> Duration {
        Duration::from_millis(self.report_poll_max_ms)
    }

    /// Every problem at once, each naming its key under `marketplace.`.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut errs = Vec::new();
        check_url("marketplace.base_url", &self.base_url, &mut errs);
        if !self.token_url.is_empty() {
            check_url("marketplace.token_url", &self.token_url, &mut errs);
        }
        for (name, v, min, max) in [
            ("timeout_ms", self.timeout_ms, 10, 600_000),
            ("download_timeout_ms", self.download_timeout_ms, 10, 3_600_000),
            ("connect_timeout_ms", self.connect_timeout_ms, 10, 120_000),
            ("retry_base_ms", self.retry_base_ms, 1, 600_000),
            ("retry_max_ms", self.retry_max_ms, 1, 3_600_000),
            ("report_poll_interval_ms", self.report_poll_interval_ms, 10, 3_600_000),
            ("report_poll_max_ms", self.report_poll_max_ms, 10, 86_400_000),
            ("max_document_bytes", self.max_document_bytes, 1, 1 << 32),
            ("max_unpacked_bytes", self.max_unpacked_bytes, 1, 1 << 32),
        ] {
            if !(min..=max).contains(&v) {
                errs.push(format!("marketplace.{name} = {v} must be between {min} and {max}"));
            }
        }
        if self.retry_max_ms < self.retry_base_ms {
            errs.push(format!(
                "marketplace.retry_max_ms = {} must be at least retry_base_ms ({})",
                self.retry_max_ms, self.retry_base_ms
            ));
        }
        if self.report_poll_max_ms < self.report_poll_interval_ms {
            errs.push(format!(
                "marketplace.report_poll_max_ms = {} must be at least report_poll_interval_ms ({})",
                self.report_poll_max_ms, self.report_poll_interval_ms
            ));
        }
        if self.retries > 10 {
            errs.push(format!("marketplace.retries = {} is more than 10", self.retries));
        }
        if self.pool_idle_per_host > 10_000 {
            errs.push(format!(
                "marketplace.pool_idle_per_host = {} is more than 10000",
                self.pool_idle_per_host
            ));
        }
        if self.user_agent.is_empty() || reqwest::header::HeaderValue::from_str(&self.user_agent).is_err() {
            errs.push("marketplace.user_agent must be a non-empty, printable header value".to_owned());
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs)
        }
    }
}

fn check_url(name: &str, value: &str, errs: &mut Vec<String>) {
    match reqwest::Url::parse(value) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => {
            if url.query().is_some() || url.password().is_some() {
                errs.push(format!("{name} must not carry a query or a password"));
            }
        }
        Ok(_) => errs.push(format!("{name} must be an http(s) URL with a host")),
        Err(e) => errs.push(format!("{name} is not a URL: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid_and_point_at_the_local_simulator() {
        let c = MarketplaceConfig::default();
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.token_url(), "http://127.0.0.1:9100/auth/o2/token");
    }

    #[test]
    fn an_explicit_token_url_wins() {
        let c = MarketplaceConfig {
            base_url: "https://sellingpartnerapi-na.amazon.com/".into(),
            token_url: "https://api.amazon.com/auth/o2/token".into(),
            ..Default::default()
        };
        assert_eq!(c.token_url(), "https://api.amazon.com/auth/o2/token");
        let c = MarketplaceConfig {
            token_url: String::new(),
            ..c
        };
        assert_eq!(c.token_url(), "https://sellingpartnerapi-na.amazon.com/auth/o2/token");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let c = MarketplaceConfig {
            base_url: "ftp://x".into(),
            timeout_ms: 0,
            retry_base_ms: 500,
            retry_max_ms: 100,
            retries: 50,
            user_agent: String::new(),
            ..Default::default()
        };
        let errs = c.validate().unwrap_err();
        assert_eq!(errs.len(), 5, "{errs:#?}");
        assert!(errs.iter().any(|e| e.contains("marketplace.base_url")));
        assert!(errs.iter().any(|e| e.contains("marketplace.timeout_ms = 0")));
        assert!(errs.iter().any(|e| e.contains("retry_max_ms = 100")));
        assert!(errs.iter().any(|e| e.contains("marketplace.retries = 50")));
        assert!(errs.iter().any(|e| e.contains("user_agent")));
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = serde_json::from_str::<MarketplaceConfig>(r#"{"timeout":5}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
        let c: MarketplaceConfig = serde_json::from_str(r#"{"retries":0}"#).unwrap();
        assert_eq!(c.retries, 0);
        assert_eq!(c.timeout_ms, 30_000);
    }
}
