//! `[api.callbacks]`: what a job's `callback_url` may name beyond a key's own
//! `callback_hosts` (docs/callbacks.md).
//!
//! ```toml
//! [api.callbacks]
//! allow_http = false              # http:// URLs outside dev mode (local receivers in tests only)
//! allow_private_targets = false   # IP literals in loopback/private/link-local ranges
//! ```
use drover::callback::HostPattern;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use super::KeyEntry;
use crate::auth::CallbackGrant;

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CallbacksConfig {
    /// Accept `http://` callback URLs outside dev mode: job data and signatures then
    /// cross the network in cleartext. For a local receiver in tests only.
    pub allow_http: bool,
    /// Accept IP-literal hosts in loopback, private, link-local, unique-local, CGNAT
    /// and similar ranges. The workers check every resolved address again at delivery
    /// (`worker.callbacks.allow_private_targets`).
    pub allow_private_targets: bool,
}

/// The dev key's callbacks in dev mode: this machine's loopback names, signed with the
/// published [`drover::callback::DEV_CALLBACK_SECRET`].
pub(super) fn dev_grant() -> CallbackGrant {
    CallbackGrant {
        hosts: ["localhost", "127.0.0.1", "::1"]
            .into_iter()
            .map(|h| HostPattern::parse(h).expect("loopback names are host patterns"))
            .collect(),
        secret: drover::callback::DEV_CALLBACK_SECRET.into(),
    }
}

/// Shortest callback secret accepted: HMAC keys should be as strong as the hash.
const MIN_CALLBACK_SECRET: usize = 32;

/// A key's callback hosts and secret, both or neither (one message per problem).
pub(super) fn grant(k: &KeyEntry, at: &str, errs: &mut Vec<String>) -> Option<CallbackGrant> {
    let hosts = match &k.callback_hosts {
        None => None,
        Some(list) if list.is_empty() => {
            errs.push(format!(
                "{at}: callback_hosts is an empty list; leave it out if the key makes no callbacks"
            ));
            None
        }
        Some(list) => {
            let mut parsed = Vec::new();
            for h in list {
                match HostPattern::parse(h) {
                    Ok(p) => parsed.push(p),
                    Err(e) => errs.push(format!("{at}: callback_hosts: {e}")),
                }
            }
            Some(parsed)
        }
    };
    match (hosts, &k.callback_secret) {
        (None, None) => None,
        (Some(_), None) => {
            errs.push(format!(
                "{at}: callback_hosts needs callback_secret, which signs the callbacks (e.g. `openssl rand -base64 32`)"
            ));
            None
        }
        (None, Some(_)) => {
            errs.push(format!(
                "{at}: callback_secret needs callback_hosts, the hosts its callbacks may call"
            ));
            None
        }
        (Some(hosts), Some(secret)) => {
            // The message gives the length wanted, never the value.
            if secret.expose_secret().len() < MIN_CALLBACK_SECRET {
                errs.push(format!(
                    "{at}: callback_secret must be at least {MIN_CALLBACK_SECRET} characters (e.g. `openssl rand -base64 32`)"
                ));
                return None;
            }
            // Published in the docs for dev mode: anyone could sign with it.
            if secret.expose_secret() == drover::callback::DEV_CALLBACK_SECRET {
                errs.push(format!(
                    "{at}: callback_secret is the published dev-mode secret; make one of your own (e.g. `openssl rand -base64 32`)"
                ));
                return None;
            }
            Some(CallbackGrant {
                hosts,
                secret: secret.clone(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use super::super::{ApiConfig, KeyEntry};
    use crate::auth::Role;

    fn key(name: &str) -> KeyEntry {
        KeyEntry {
            name: name.into(),
            key_sha256: hex::encode(crate::auth::sha256(name.as_bytes())),
            role: Role::Submit,
            accounts: None,
            callback_hosts: None,
            callback_secret: None,
        }
    }

    #[test]
    fn callback_hosts_and_secret_come_together_and_are_checked_without_echoing_the_secret() {
        let mut lone_hosts = key("a");
        lone_hosts.callback_hosts = Some(vec!["hooks.acme.com".into()]);
        let mut short = key("b");
        short.callback_hosts = Some(vec!["https://bad".into()]);
        short.callback_secret = Some(SecretString::from("tooshort-secret"));
        let mut good = key("c");
        good.callback_hosts = Some(vec!["*.acme.io".into()]);
        good.callback_secret = Some(SecretString::from("x".repeat(32)));
        let c = ApiConfig {
            keys: vec![lone_hosts, short, good],
            ..Default::default()
        };
        let msg = c.validate().unwrap_err().to_string();
        assert!(msg.contains("api.keys[0] (\"a\"): callback_hosts needs callback_secret"), "{msg}");
        assert!(msg.contains("api.keys[1] (\"b\"): callback_hosts: \"https://bad\""), "{msg}");
        assert!(msg.contains("api.keys[1] (\"b\"): callback_secret must be at least 32"), "{msg}");
        assert!(!msg.contains("api.keys[2]"), "{msg}");
        assert!(!msg.contains("tooshort-secret"), "{msg}");
    }

    /// Found by the callbacks audit of 2026-12-06: the dev API key and encryption key
    /// were refused outside dev mode, but a key's callback_secret could be the one
    /// published for dev mode, with which anyone can sign a delivery.
    #[test]
    fn the_published_dev_callback_secret_is_refused_for_a_configured_key() {
        let mut k = key("a");
        k.callback_hosts = Some(vec!["hooks.acme.com".into()]);
        k.callback_secret = Some(SecretString::from(drover::callback::DEV_CALLBACK_SECRET));
        let c = ApiConfig {
            keys: vec![k],
            ..Default::default()
        };
        let msg = c.validate().unwrap_err().to_string();
        assert!(
            msg.contains("api.keys[0] (\"a\"): callback_secret is the published dev-mode secret"),
            "{msg}"
        );
        assert!(!msg.contains(drover::callback::DEV_CALLBACK_SECRET), "{msg}");
    }
}
