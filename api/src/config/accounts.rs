//! Settings of the accounts endpoints: Postgres, the key that seals credentials, the
//! marketplace token service used to validate them.
//!
//! ```toml
//! [api]
//! encryption_key = "<32 random bytes, base64: `openssl rand -base64 32`>"
//! marketplace_token_url = "https://api.amazon.com/auth/o2/token"   # required, https, outside dev mode
//! marketplace_timeout_ms = 10000
//!
//! [api.accounts]
//! first_sync = true   # POST /v1/accounts queues the account's first sync (trigger `account_created`)
//!
//! [api.database]
//! url = "postgres://drover:…@db:5432/drover"   # or DROVER_API__DATABASE__URL; else DATABASE_URL
//! max_connections = 10
//! ```
use drover::crypto::{EncryptionKey, SecretBox};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use super::ApiConfig;

/// Where the simulator (`tests/simulator/src/bin/simulator.rs`, default `127.0.0.1:9100`) answers
/// LWA: the token URL in dev mode when none is set. Outside dev mode there is no default,
/// so a forgotten setting cannot send credentials in cleartext to whatever listens there.
pub const DEV_TOKEN_URL: &str = "http://127.0.0.1:9100/auth/o2/token";

/// `[api.accounts]`: what creating an account does besides storing it.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccountsConfig {
    /// Queue a sync of the new account (its first marketplace, orders and listings) once
    /// it is stored. A request may turn it off for itself (`"first_sync": false`); when
    /// this is off, no request turns it on.
    pub first_sync: bool,
}

impl Default for AccountsConfig {
    fn default() -> Self {
        Self { first_sync: true }
    }
}

impl ApiConfig {
    /// The LWA token endpoint to use: the configured one, or in dev mode the simulator's.
    pub fn token_url(&self) -> &str {
        match self.marketplace_token_url.trim() {
            "" if self.dev_mode => DEV_TOKEN_URL,
            url => url,
        }
    }
}

/// Check the accounts settings, adding one message per problem; when the key is usable,
/// the credentials box, the page-cursor box and the key itself (the token cache derives
/// its own from it).
pub(super) fn validate(c: &ApiConfig, errs: &mut Vec<String>) -> Option<(SecretBox, SecretBox, EncryptionKey)> {
    if let Err(e) = c.database.validate("api.database") {
        errs.extend(e);
    }
    if c.token_url().is_empty() {
        errs.push(
            "api.marketplace_token_url is not set: give the LWA token endpoint, \
             e.g. https://api.amazon.com/auth/o2/token (only dev mode defaults to the local simulator)"
                .into(),
        );
    } else if let Some(why) = url_problem(c.token_url(), c.dev_mode || c.insecure_marketplace_http) {
        // The URL may carry user:password; only its redacted form is shown.
        errs.push(format!(
            "api.marketplace_token_url = {:?} {why}",
            drover::config::redact::url_without_password(c.token_url())
        ));
    }
    if !(100..=120_000).contains(&c.marketplace_timeout_ms) {
        errs.push(format!(
            "api.marketplace_timeout_ms = {} must be between 100 and 120000",
            c.marketplace_timeout_ms
        ));
    }
    if let Err(e) = c.resilience.validate() {
        errs.extend(e.into_iter().map(|m| format!("api.resilience: {m}")));
    }
    // Cursors are sealed under a key of their own, derived from the same setting.
    encryption_key(c, errs).map(|k| (SecretBox::new(&k), SecretBox::new(&k.derive("page cursors")), k))
}

/// The client secret and refresh token are posted to this URL: `https` only, unless
/// `http_allowed` (dev mode, or `api.insecure_marketplace_http` for a local simulator).
fn url_problem(url: &str, http_allowed: bool) -> Option<&'static str> {
    match reqwest::Url::parse(url) {
        Ok(u) if u.scheme() == "https" && u.has_host() => None,
        Ok(u) if u.scheme() == "http" && u.has_host() && http_allowed => None,
        Ok(u) if u.scheme() == "http" && u.has_host() => Some(
            "is http: credentials would cross the network in cleartext; use https \
             (api.insecure_marketplace_http = true allows http, for a local simulator only)",
        ),
        _ => Some("must be an https URL such as https://api.amazon.com/auth/o2/token"),
    }
}

fn encryption_key(c: &ApiConfig, errs: &mut Vec<String>) -> Option<EncryptionKey> {
    EncryptionKey::configured(
        Some(c.encryption_key.expose_secret()),
        c.dev_mode,
        "api.encryption_key",
        "set 32 random bytes in base64 (`openssl rand -base64 32`); it seals account credentials in Postgres",
    )
    .map_err(|e| errs.push(e))
    .ok()
}

#[cfg(test)]
mod tests {
    use drover::crypto::DEV_ENCRYPTION_KEY;
    use secrecy::SecretString;

    use super::*;

    fn errors(c: &ApiConfig) -> String {
        let mut errs = Vec::new();
        validate(c, &mut errs);
        errs.join("\n")
    }

    #[test]
    fn a_missing_or_published_key_is_refused_outside_dev_mode() {
        let missing = ApiConfig::default();
        assert!(errors(&missing).contains("api.encryption_key is missing"));
        let dev_key = ApiConfig {
            encryption_key: SecretString::from(DEV_ENCRYPTION_KEY),
            ..Default::default()
        };
        assert!(errors(&dev_key).contains("published development key"));
        for dev in [missing, dev_key] {
            let c = ApiConfig { dev_mode: true, ..dev };
            assert_eq!(errors(&c), "");
        }
    }

    /// L4: credentials must not go in cleartext, nor to a simulator nobody configured.
    #[test]
    fn outside_dev_mode_the_token_url_must_be_set_and_https() {
        let key = SecretString::from("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=");
        let unset = ApiConfig {
            encryption_key: key.clone(),
            ..Default::default()
        };
        let msg = errors(&unset);
        assert!(msg.contains("api.marketplace_token_url is not set"), "{msg}");
        let plain = ApiConfig {
            encryption_key: key.clone(),
            marketplace_token_url: "http://lwa.example/auth/o2/token".into(),
            ..Default::default()
        };
        let msg = errors(&plain);
        assert!(msg.contains("api.marketplace_token_url") && msg.contains("https"), "{msg}");
        // Found by an audit of error texts: a refused URL was echoed with its password.
        let with_password = ApiConfig {
            encryption_key: key.clone(),
            marketplace_token_url: "http://lwa:hunter2@lwa.example/auth/o2/token".into(),
            ..Default::default()
        };
        let msg = errors(&with_password);
        assert!(msg.contains("lwa.example") && !msg.contains("hunter2"), "{msg}");
        let tls = ApiConfig {
            encryption_key: key.clone(),
            marketplace_token_url: "https://api.amazon.com/auth/o2/token".into(),
            ..Default::default()
        };
        assert_eq!(errors(&tls), "");
        // A local simulator over http only when asked for by name.
        let sim = ApiConfig {
            encryption_key: key,
            marketplace_token_url: "http://127.0.0.1:9100/auth/o2/token".into(),
            insecure_marketplace_http: true,
            ..Default::default()
        };
        assert_eq!(errors(&sim), "");
    }

    #[test]
    fn a_malformed_key_is_named_without_echoing_it() {
        let c = ApiConfig {
            encryption_key: SecretString::from("c2hvcnQtc2VjcmV0"),
            marketplace_token_url: "ftp://x".into(),
            marketplace_timeout_ms: 1,
            ..Default::default()
        };
        let msg = errors(&c);
        for needle in [
            "api.encryption_key decodes to 12 bytes",
            "api.marketplace_token_url",
            "api.marketplace_timeout_ms = 1",
        ] {
            assert!(msg.contains(needle), "{needle} missing from {msg}");
        }
        assert!(!msg.contains("c2hvcnQtc2VjcmV0"), "{msg}");
    }
}
