//! How a simulator is set up: seed, demo accounts, usage plans, report timing and the
//! faults every account starts with.
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::faults::FaultSpec;
use super::ratelimit::{RateLimits, RateProfile};

/// The US marketplace, which demo accounts sell in unless told otherwise.
pub const US_MARKETPLACE: &str = "ATVPDKIKX0DER";

/// Everything a simulator needs to start. `Default` is the SP-API-like setup with three
/// demo accounts; [`SimConfig::fast`] is the same with fast rate limits.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Seeds orders, SKUs' ASINs, tokens, submission ids and random faults.
    pub seed: u64,
    /// Demo accounts `acct-1` .. `acct-N` (refresh tokens `rt-acct-1` ..).
    pub accounts: usize,
    pub orders_per_account: usize,
    /// Listings `SKU-00001` .. per demo account.
    pub skus_per_account: usize,
    /// The LWA application's credentials, shared by all demo accounts (as one app's
    /// credentials are shared by all its sellers in LWA).
    pub client_id: String,
    pub client_secret: String,
    pub marketplace_id: String,
    /// Lifetime of access tokens unless an account's faults say otherwise.
    pub token_ttl: Duration,
    pub rate_limits: RateLimits,
    pub reports: ReportTiming,
    /// SP-API cancels a report that has no data; clients must treat CANCELLED as an
    /// empty window. Off: such reports end DONE with a header-only document.
    pub cancel_empty_reports: bool,
    /// Faults every account starts with (and returns to on reset or `DELETE` faults).
    pub default_faults: FaultSpec,
    /// The "now" generated orders lead up to (they spread over the 60 days before it).
    /// Default: midnight UTC of the day the simulator starts, so a day's runs agree.
    pub anchor: Option<DateTime<Utc>>,
    /// Base URL put into report document URLs; default: the `Host` the client used.
    pub public_url: Option<String>,
}

/// When a report is done: after `polls_to_done` getReport calls *and* `min_processing`
/// since creation. Earlier polls see IN_QUEUE (the first) then IN_PROGRESS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportTiming {
    pub polls_to_done: u32,
    pub min_processing: Duration,
}

impl Default for ReportTiming {
    fn default() -> Self {
        Self {
            polls_to_done: 2,
            min_processing: Duration::ZERO,
        }
    }
}

/// LWA credentials for one seller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    pub client_id: String,
    pub client_secret: String,
    pub refresh_token: String,
}

impl Credentials {
    /// The form body of an LWA refresh-token grant with these credentials.
    pub fn token_request_body(&self) -> String {
        [
            ("grant_type", "refresh_token"),
            ("refresh_token", self.refresh_token.as_str()),
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.client_secret.as_str()),
        ]
        .iter()
        .map(|(k, v)| format!("{k}={}", form_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
    }
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn form_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => char::from(b).to_string(),
            b' ' => "+".to_owned(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            seed: 42,
            accounts: 3,
            orders_per_account: 500,
            skus_per_account: 200,
            client_id: "amzn1.application-oa2-client.sim".to_owned(),
            client_secret: "sim-client-secret".to_owned(),
            marketplace_id: US_MARKETPLACE.to_owned(),
            token_ttl: Duration::from_secs(3600),
            rate_limits: RateLimits::default(),
            reports: ReportTiming::default(),
            cancel_empty_reports: true,
            default_faults: FaultSpec::default(),
            anchor: None,
            public_url: None,
        }
    }
}

impl SimConfig {
    /// The default setup with the fast rate profile, for tests and the demo.
    pub fn fast() -> Self {
        Self {
            rate_limits: RateLimits::profile(RateProfile::Fast),
            ..Self::default()
        }
    }

    pub fn demo_account_ids(&self) -> Vec<String> {
        (1..=self.accounts).map(|i| format!("acct-{i}")).collect()
    }

    /// The refresh token of an account that did not bring its own.
    pub fn refresh_token_for(account_id: &str) -> String {
        format!("rt-{account_id}")
    }

    /// Credentials of a demo account (`None` for names outside `acct-1..acct-N`).
    pub fn credentials(&self, account_id: &str) -> Option<Credentials> {
        self.demo_account_ids().iter().any(|id| id == account_id).then(|| Credentials {
            client_id: self.client_id.clone(),
            client_secret: self.client_secret.clone(),
            refresh_token: Self::refresh_token_for(account_id),
        })
    }

    /// Says precisely what is wrong, before anything starts.
    pub fn validate(&self) -> Result<(), String> {
        self.rate_limits.validate()?;
        self.default_faults.validate().map_err(|e| format!("default faults: {e}"))?;
        if self.client_id.is_empty() || self.client_secret.is_empty() {
            return Err("client_id and client_secret must not be empty".to_owned());
        }
        if self.marketplace_id.is_empty() {
            return Err("marketplace_id must not be empty".to_owned());
        }
        if self.skus_per_account > 99_999 {
            return Err(format!(
                "skus_per_account is at most 99999 (SKU-00001..SKU-99999), got {}",
                self.skus_per_account
            ));
        }
        if self.orders_per_account > 0 && self.skus_per_account == 0 {
            return Err("orders need SKUs: skus_per_account must be at least 1 when orders_per_account is not 0".to_owned());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_credentials_exist_only_for_demo_accounts() {
        let config = SimConfig {
            accounts: 2,
            ..SimConfig::default()
        };
        assert_eq!(config.credentials("acct-2").map(|c| c.refresh_token), Some("rt-acct-2".to_owned()));
        assert_eq!(config.credentials("acct-3"), None);
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn the_token_request_body_is_form_encoded() {
        let creds = Credentials {
            client_id: "a b".into(),
            client_secret: "s&t=1".into(),
            refresh_token: "Atzr|x".into(),
        };
        assert_eq!(
            creds.token_request_body(),
            "grant_type=refresh_token&refresh_token=Atzr%7Cx&client_id=a+b&client_secret=s%26t%3D1"
        );
    }
}
