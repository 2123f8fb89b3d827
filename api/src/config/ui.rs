//! `api.ui`: the operator console at `/ui` (see docs/console.md).
use serde::{Deserialize, Serialize};

use super::RateLimitConfig;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct UiConfig {
    /// Serve the console at `/ui`.
    pub enabled: bool,
    /// Mark the session cookie `Secure` even when the request did not say it came over
    /// TLS (behind a proxy that does not send `X-Forwarded-Proto`).
    pub secure_cookies: bool,
    /// How long a console session lasts without use, in minutes.
    pub session_minutes: u64,
    /// Sign-in attempts (`POST /ui/login`, right key or wrong) per client address: a key
    /// cannot be guessed online faster than this, across all replicas.
    pub login_limit: RateLimitConfig,
    /// Live console sessions one key may hold; signing in once more ends its oldest.
    pub max_sessions_per_key: u32,
    /// Proxies (addresses or CIDR ranges, e.g. the Ingress controller's pods) whose
    /// `X-Forwarded-For` names the client; empty: the client is the connection's peer.
    pub trusted_proxies: Vec<String>,
    /// A link from a job to its trace, `{trace_id}` replaced (empty: no link), e.g.
    /// `http://jaeger:16686/trace/{trace_id}`.
    pub trace_url: String,
    /// Jobs a second a console replay sends after its canary.
    pub replay_rate: u32,
    /// How often one replica samples each kind's totals for the overview's chart, in
    /// seconds (a point a minute by default).
    pub sample_secs: u64,
}

impl Default for UiConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            secure_cookies: false,
            session_minutes: 480,
            login_limit: RateLimitConfig::LOGINS,
            max_sessions_per_key: 20,
            trusted_proxies: Vec::new(),
            trace_url: String::new(),
            replay_rate: 20,
            sample_secs: 60,
        }
    }
}

impl UiConfig {
    pub fn validate(&self) -> Vec<String> {
        let mut errs = Vec::new();
        if !(5..=7 * 24 * 60).contains(&self.session_minutes) {
            errs.push(format!(
                "api.ui.session_minutes = {} must be between 5 and 10080 (a week)",
                self.session_minutes
            ));
        }
        if !(1..=1000).contains(&self.max_sessions_per_key) {
            errs.push(format!(
                "api.ui.max_sessions_per_key = {} must be between 1 and 1000",
                self.max_sessions_per_key
            ));
        }
        for p in &self.trusted_proxies {
            if parse_proxy(p).is_none() {
                errs.push(format!(
                    "api.ui.trusted_proxies: {p:?} is not an IP address or CIDR range (e.g. 10.0.0.0/8)"
                ));
            }
        }
        if !(1..=3600).contains(&self.sample_secs) {
            errs.push(format!("api.ui.sample_secs = {} must be between 1 and 3600", self.sample_secs));
        }
        if !(1..=1000).contains(&self.replay_rate) {
            errs.push(format!("api.ui.replay_rate = {} must be between 1 and 1000", self.replay_rate));
        }
        if !(self.trace_url.is_empty() || self.trace_url.starts_with("https://") || self.trace_url.starts_with("http://")) {
            errs.push("api.ui.trace_url must be an http(s) URL (with {trace_id} where the id goes)".into());
        }
        errs
    }
}

/// One `trusted_proxies` entry: an address (`10.1.2.3`) or a range (`10.0.0.0/8`).
pub fn parse_proxy(entry: &str) -> Option<ipnet::IpNet> {
    let entry = entry.trim();
    entry
        .parse::<ipnet::IpNet>()
        .ok()
        .or_else(|| entry.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from))
}
