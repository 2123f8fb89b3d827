//! API key entries: a TOML table, or in the environment one compact string.
//!
//! The compact form is `name:role:sha256[:accounts[:callback_hosts[:callback_secret]]]`,
//! lists separated by `;`; `*` as accounts means every account (only needed when
//! callback settings follow). The secret is the rest of the string, so it may hold `:`.
use std::fmt;

use secrecy::SecretString;
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::auth::Role;

/// One API key: only the SHA-256 of the key is configured, never the key itself.
/// Serialised for `config check` with the hash and the callback secret redacted.
#[derive(Clone, Serialize)]
pub struct KeyEntry {
    pub name: String,
    #[serde(serialize_with = "drover::config::redact::string")]
    pub key_sha256: String,
    pub role: Role,
    /// When set, the key may only touch jobs of these accounts.
    pub accounts: Option<Vec<String>>,
    /// Hosts its jobs' `callback_url` may name (`hooks.example.com`, `*.example.com`).
    pub callback_hosts: Option<Vec<String>>,
    /// Signs its jobs' callbacks (HMAC-SHA256); the receiver holds the same secret.
    #[serde(serialize_with = "drover::config::redact::optional_secret")]
    pub callback_secret: Option<SecretString>,
}

impl fmt::Debug for KeyEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The hash is not the key, but there is no reason to print it either.
        f.debug_struct("KeyEntry")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("accounts", &self.accounts)
            .field("callback_hosts", &self.callback_hosts)
            .field("callback_secret", &self.callback_secret.as_ref().map(|_| "[redacted]"))
            .finish_non_exhaustive()
    }
}

/// A key entry is a TOML table, or in the environment one `name:role:sha256[:acct;acct]` string.
impl<'de> Deserialize<'de> for KeyEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Table {
            name: String,
            key_sha256: String,
            role: Role,
            #[serde(default)]
            accounts: Option<Vec<String>>,
            #[serde(default)]
            callback_hosts: Option<Vec<String>>,
            #[serde(default)]
            callback_secret: Option<SecretString>,
        }

        struct EntryVisitor;
        impl<'de> Visitor<'de> for EntryVisitor {
            type Value = KeyEntry;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a table {name, key_sha256, role, accounts?, callback_hosts?, callback_secret?} or a string \
                     name:role:sha256[:accounts[:callback_hosts[:callback_secret]]]",
                )
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<KeyEntry, E> {
                let parts: Vec<&str> = s.splitn(6, ':').collect();
                if parts.len() < 3 {
                    return Err(E::custom(
                        "a key string must look like name:role:sha256[:accounts[:callback_hosts[:callback_secret]]]",
                    ));
                }
                let role = parts[1]
                    .parse::<Role>()
                    .map_err(|e| E::custom(format!("key {:?}: {e}", parts[0])))?;
                let list = |p: &str| p.split(';').filter(|s| !s.is_empty()).map(str::to_owned).collect::<Vec<_>>();
                Ok(KeyEntry {
                    name: parts[0].to_owned(),
                    key_sha256: parts[2].to_owned(),
                    role,
                    accounts: parts.get(3).filter(|a| **a != "*").map(|a| list(a)),
                    callback_hosts: parts.get(4).map(|h| list(h)),
                    callback_secret: parts.get(5).map(|s| SecretString::from(*s)),
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<KeyEntry, A::Error> {
                let t = Table::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(KeyEntry {
                    name: t.name,
                    key_sha256: t.key_sha256.to_ascii_lowercase(),
                    role: t.role,
                    accounts: t.accounts,
                    callback_hosts: t.callback_hosts,
                    callback_secret: t.callback_secret,
                })
            }
        }
        d.deserialize_any(EntryVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_compact_key_string_parses_with_its_accounts() {
        let hash = "a".repeat(64);
        let e: KeyEntry = serde_json::from_value(serde_json::json!(format!("portal:submit:{hash}:acme-eu;acme-us"))).unwrap();
        assert_eq!(e.name, "portal");
        assert_eq!(e.role, Role::Submit);
        assert_eq!(e.accounts, Some(vec!["acme-eu".to_owned(), "acme-us".to_owned()]));
        let bad = serde_json::from_value::<KeyEntry>(serde_json::json!("portal:boss:abc")).unwrap_err();
        assert!(bad.to_string().contains("role"), "{bad}");
    }

    #[test]
    fn a_compact_key_string_may_carry_callback_hosts_and_a_secret_that_holds_colons() {
        use secrecy::ExposeSecret;
        let hash = "a".repeat(64);
        let e: KeyEntry = serde_json::from_value(serde_json::json!(format!(
            "portal:submit:{hash}:*:hooks.acme.com;*.acme.io:whsec:a:b"
        )))
        .unwrap();
        assert_eq!(e.accounts, None, "* is every account");
        assert_eq!(e.callback_hosts, Some(vec!["hooks.acme.com".to_owned(), "*.acme.io".to_owned()]));
        assert_eq!(
            e.callback_secret.as_ref().map(|s| s.expose_secret().to_owned()).as_deref(),
            Some("whsec:a:b")
        );
        assert!(!format!("{e:?}").contains("whsec"), "Debug must not show the secret");
    }

    #[test]
    fn a_key_table_rejects_unknown_fields() {
        let err = serde_json::from_value::<KeyEntry>(serde_json::json!({
            "name": "ops", "key_sha256": "a", "role": "admin", "colour": "red"
        }))
        .unwrap_err();
        assert!(err.to_string().contains("colour"), "{err}");
    }
}
