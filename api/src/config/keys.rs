//! API key entries: a TOML table, or in the environment one compact string.
use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use crate::auth::Role;

/// One API key: only the SHA-256 of the key is configured, never the key itself.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyEntry {
    pub name: String,
    pub key_sha256: String,
    pub role: Role,
    /// When set, the key may only touch jobs of these accounts.
    pub accounts: Option<Vec<String>>,
}

impl fmt::Debug for KeyEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The hash is not the key, but there is no reason to print it either.
        f.debug_struct("KeyEntry")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("accounts", &self.accounts)
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
        }

        struct EntryVisitor;
        impl<'de> Visitor<'de> for EntryVisitor {
            type Value = KeyEntry;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table {name, key_sha256, role, accounts?} or a string name:role:sha256[:acct;acct]")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<KeyEntry, E> {
                let parts: Vec<&str> = s.split(':').collect();
                if !(3..=4).contains(&parts.len()) {
                    return Err(E::custom("a key string must look like name:role:sha256[:acct;acct]"));
                }
                let role = parts[1]
                    .parse::<Role>()
                    .map_err(|e| E::custom(format!("key {:?}: {e}", parts[0])))?;
                Ok(KeyEntry {
                    name: parts[0].to_owned(),
                    key_sha256: parts[2].to_owned(),
                    role,
                    accounts: parts
                        .get(3)
                        .map(|a| a.split(';').filter(|s| !s.is_empty()).map(str::to_owned).collect()),
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<KeyEntry, A::Error> {
                let t = Table::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(KeyEntry {
                    name: t.name,
                    key_sha256: t.key_sha256.to_ascii_lowercase(),
                    role: t.role,
                    accounts: t.accounts,
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
    fn a_key_table_rejects_unknown_fields() {
        let err = serde_json::from_value::<KeyEntry>(serde_json::json!({
            "name": "ops", "key_sha256": "a", "role": "admin", "colour": "red"
        }))
        .unwrap_err();
        assert!(err.to_string().contains("colour"), "{err}");
    }
}
