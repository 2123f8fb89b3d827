//! API keys (docs/architecture.md, "HTTP API"): clients send `Authorization: Bearer <key>`; only the SHA-256 of
//! each key is configured and the hashes are compared in constant time. Each key has a
//! role — `read` (GET), `submit` (also POST jobs), `admin` (also cancel, retry, replay,
//! pause/resume) — and optionally the accounts it may touch.
mod guard;
mod principal;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use drover::job::AccountId;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub use guard::{require_admin, require_read, require_submit};
pub use principal::{CallbackGrant, Caller, Principal};

/// What a key may do; each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Read,
    Submit,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Submit => "submit",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "read" => Ok(Role::Read),
            "submit" => Ok(Role::Submit),
            "admin" => Ok(Role::Admin),
            other => Err(format!("unknown role {other:?}: expected read, submit or admin")),
        }
    }
}

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// The hex SHA-256 of a key, as `api.keys[].key_sha256` wants it.
pub fn hash_key(key: &SecretString) -> String {
    hex::encode(sha256(key.expose_secret().as_bytes()))
}

/// Hex characters of a key's console-session tag (64 bits: keys are few, so tags never
/// collide).
pub const SESSION_TAG_CHARS: usize = 16;

/// The tag of a key's console sessions (ui/session.rs): derived from the key's hash, not
/// the hash itself, so a cookie shows nothing about the key. Made once per key, when the
/// ring is built: a cookie is checked against the tags made (before the audit of
/// 2026-12-07, fourth, a made-up cookie cost one SHA-256 per configured key).
pub fn session_tag(key_hash: &[u8; 32]) -> String {
    #[cfg(test)]
    SESSION_TAGS_MADE.with(|n| n.set(n.get() + 1));
    let mut input = b"drover-ui-sessions:".to_vec();
    input.extend_from_slice(key_hash);
    hex::encode(sha256(&input))[..SESSION_TAG_CHARS].to_owned()
}

#[cfg(test)]
thread_local! {
    /// How many session tags this thread has made (what a cookie's check must not cost).
    pub static SESSION_TAGS_MADE: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

struct StoredKey {
    hash: [u8; 32],
    /// [`session_tag`] of `hash`.
    session_tag: String,
    principal: Arc<Principal>,
}

/// The configured keys.
#[derive(Default)]
pub struct KeyRing {
    keys: Vec<StoredKey>,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.keys.iter().map(|k| &k.principal.name)).finish()
    }
}

impl KeyRing {
    pub fn add(&mut self, name: &str, hash: [u8; 32], role: Role, accounts: Option<Vec<AccountId>>) -> Result<(), String> {
        self.add_with_callbacks(name, &[hash], role, accounts, None)
    }

    /// [`KeyRing::add`] for a key whose jobs may name a `callback_url`. A key has one
    /// hash or several: while a key is rotated, the old one and the new are the same
    /// key, so what is kept under its name (idempotency keys, cursors, quotas, budgets)
    /// carries over (found by the hostile-tenant audit of 2026-12-07: rotating under a
    /// new name made a retried submit with the same Idempotency-Key a second job).
    pub fn add_with_callbacks(
        &mut self,
        name: &str,
        hashes: &[[u8; 32]],
        role: Role,
        accounts: Option<Vec<AccountId>>,
        callbacks: Option<CallbackGrant>,
    ) -> Result<(), String> {
        if self.keys.iter().any(|k| k.principal.name == name) {
            return Err(format!("a key named {name:?} is already configured"));
        }
        for (i, hash) in hashes.iter().enumerate() {
            if self.keys.iter().any(|k| bool::from(k.hash.ct_eq(hash))) || hashes[..i].contains(hash) {
                return Err("the same key_sha256 is already configured".into());
            }
        }
        let principal = Arc::new(Principal::new(name, role, accounts).with_callbacks(callbacks));
        for hash in hashes {
            self.keys.push(StoredKey {
                hash: *hash,
                session_tag: session_tag(hash),
                principal: principal.clone(),
            });
        }
        Ok(())
    }

    /// Whether `tag` is the [`session_tag`] of a configured key: only then is there a
    /// console session to look up.
    pub fn has_session_tag(&self, tag: &str) -> bool {
        self.keys.iter().any(|k| k.session_tag == tag)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The principal of a presented key. Every stored hash is compared, in constant time,
    /// so the time taken says nothing about which key (if any) came close.
    pub fn authenticate(&self, presented: &SecretString) -> Option<Arc<Principal>> {
        self.by_hash(&sha256(presented.expose_secret().as_bytes()))
    }

    /// The principal whose key hashes to `hash` (a console session keeps the hash, never
    /// the key), compared like [`KeyRing::authenticate`].
    pub fn by_hash(&self, hash: &[u8; 32]) -> Option<Arc<Principal>> {
        let mut found = None;
        for k in &self.keys {
            if bool::from(k.hash.ct_eq(hash)) {
                found = Some(k.principal.clone());
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_found_by_its_hash_and_nothing_else() {
        let mut ring = KeyRing::default();
        ring.add("ops", sha256(b"s3cret"), Role::Admin, None).unwrap();
        ring.add("viewer", sha256(b"look"), Role::Read, None).unwrap();
        assert_eq!(ring.authenticate(&SecretString::from("s3cret")).unwrap().name, "ops");
        assert_eq!(ring.authenticate(&SecretString::from("look")).unwrap().role, Role::Read);
        assert!(ring.authenticate(&SecretString::from("s3cre")).is_none());
        assert!(ring.authenticate(&SecretString::from("")).is_none());
    }

    #[test]
    fn hash_key_is_the_hex_sha256() {
        // echo -n password | sha256sum
        assert_eq!(
            hash_key(&SecretString::from("password")),
            "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8"
        );
    }

    #[test]
    fn roles_are_ordered_read_submit_admin() {
        assert!(Role::Read < Role::Submit && Role::Submit < Role::Admin);
        assert_eq!("admin".parse::<Role>().unwrap(), Role::Admin);
        assert!("root".parse::<Role>().is_err());
    }
}
