//! Encryption of secrets at rest (account credentials in Postgres): AES-256-GCM with a
//! 32-byte key from configuration and a fresh random 96-bit nonce per message.
//!
//! A sealed value is `key_id (1 byte) || nonce (12 bytes) || ciphertext || tag (16 bytes)`.
//! The key id is authenticated (it is the AEAD's associated data), so a value cannot be
//! re-labelled to another key; it exists so a later key rotation can decrypt old rows
//! with the old key while sealing new ones with the new key.
use std::fmt;

use aes_gcm::aead::{Aead, Generate, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use secrecy::{ExposeSecret, SecretString};

/// A published key for local development and tests only. Configuration validation
/// refuses it unless dev mode is on: anyone can read it here.
pub const DEV_ENCRYPTION_KEY: &str = "ZHJvdmVyLWRldi1lbmNyeXB0aW9uLWtleS0wMDAwMDA=";

/// The key id every value is sealed with until rotation is introduced.
pub const CURRENT_KEY_ID: u8 = 1;

const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const HEADER_LEN: usize = 1 + NONCE_LEN;

/// A 256-bit key. Debug never shows it.
#[derive(Clone)]
pub struct EncryptionKey([u8; 32]);

impl EncryptionKey {
    /// Standard base64 (with or without padding) of exactly 32 bytes, e.g. the output of
    /// `openssl rand -base64 32`.
    pub fn parse(base64: &str) -> Result<Self, String> {
        let trimmed = base64.trim();
        if trimmed.is_empty() {
            return Err("is empty: give 32 random bytes in base64, e.g. from `openssl rand -base64 32`".into());
        }
        let bytes = STANDARD
            .decode(trimmed)
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(trimmed))
            .map_err(|_| "is not valid base64: give 32 random bytes in base64, e.g. from `openssl rand -base64 32`".to_owned())?;
        let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
            format!(
                "decodes to {} bytes; AES-256 needs exactly 32 (e.g. from `openssl rand -base64 32`)",
                bytes.len()
            )
        })?;
        Ok(Self(key))
    }

    /// [`DEV_ENCRYPTION_KEY`], parsed: for dev mode and tests only.
    pub fn dev() -> Self {
        Self::parse(DEV_ENCRYPTION_KEY).expect("the published dev key is 32 bytes of base64")
    }

    /// A separate key for another purpose (`label`), so one configured key can serve
    /// several uses without a value of one ever opening as another. SHA-256 over a
    /// uniformly random key is a sound derivation for this.
    pub fn derive(&self, label: &str) -> EncryptionKey {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(b"drover key derivation v1\0");
        h.update(label.as_bytes());
        h.update(b"\0");
        h.update(self.0);
        EncryptionKey(h.finalize().into())
    }

    /// Whether this is [`DEV_ENCRYPTION_KEY`].
    pub fn is_dev_default(&self) -> bool {
        EncryptionKey::parse(DEV_ENCRYPTION_KEY).is_ok_and(|dev| dev.0 == self.0)
    }

    /// The key a process is configured with, by the one rule the API and the workers
    /// share: none given (or blank) is the published dev key in dev mode and an error
    /// otherwise; the published dev key is refused outside dev mode. `setting` names
    /// the setting in the error (`api.encryption_key`); `how_to_set` ends the
    /// message for a missing key. Errors describe the value's shape, never the value.
    pub fn configured(raw: Option<&str>, dev_mode: bool, setting: &str, how_to_set: &str) -> Result<Self, String> {
        let Some(raw) = raw.filter(|r| !r.trim().is_empty()) else {
            return if dev_mode {
                // Local development only: the published key, so nothing needs configuring.
                Ok(Self::dev())
            } else {
                Err(format!("{setting} is missing: {how_to_set}"))
            };
        };
        match Self::parse(raw) {
            Ok(k) if k.is_dev_default() && !dev_mode => Err(format!(
                "{setting} is the published development key (drover::crypto::DEV_ENCRYPTION_KEY); \
                 set your own (`openssl rand -base64 32`) or dev_mode = true"
            )),
            Ok(k) => Ok(k),
            Err(why) => Err(format!("{setting} {why}")),
        }
    }
}

impl fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EncryptionKey([redacted])")
    }
}

/// Why a sealed value could not be opened. Never holds plaintext or key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("sealed value is too short ({0} bytes) to hold a header and a tag")]
    Truncated(usize),
    #[error("sealed value names key id {0}, which this process does not have")]
    UnknownKey(u8),
    /// Wrong key, or the bytes were altered.
    #[error("sealed value failed authentication (wrong key or tampered data)")]
    Inauthentic,
    #[error("decrypted value is not UTF-8")]
    NotUtf8,
}

/// Seals and opens secrets with one key. Clone is cheap enough (the cipher's key schedule).
#[derive(Clone)]
pub struct SecretBox {
    key_id: u8,
    cipher: Aes256Gcm,
}

impl fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretBox").field("key_id", &self.key_id).finish_non_exhaustive()
    }
}

impl SecretBox {
    pub fn new(key: &EncryptionKey) -> Self {
        Self::with_key_id(CURRENT_KEY_ID, key)
    }

    /// For rotation: seal with a key under another id.
    pub fn with_key_id(key_id: u8, key: &EncryptionKey) -> Self {
        let cipher = Aes256Gcm::new_from_slice(&key.0).expect("a 32-byte key fits AES-256");
        Self { key_id, cipher }
    }

    pub fn encrypt(&self, secret: &SecretString) -> Vec<u8> {
        self.seal(secret.expose_secret().as_bytes(), &[])
    }

    pub fn decrypt(&self, sealed: &[u8]) -> Result<SecretString, CryptoError> {
        let plain = self.open(sealed, &[])?;
        String::from_utf8(plain).map(SecretString::from).map_err(|_| CryptoError::NotUtf8)
    }

    /// Seal `msg`, binding it to `context` (authenticated, not stored): it opens only
    /// with the same context, so a value cannot be moved to where another is expected.
    pub fn seal(&self, msg: &[u8], context: &[u8]) -> Vec<u8> {
        let nonce = Nonce::generate();
        let aad = self.aad(self.key_id, context);
        let sealed = self
            .cipher
            .encrypt(&nonce, Payload { msg, aad: &aad })
            .expect("AES-GCM encrypts any message shorter than 64 GiB");
        let mut out = Vec::with_capacity(HEADER_LEN + sealed.len());
        out.push(self.key_id);
        out.extend_from_slice(nonce.as_slice());
        out.extend_from_slice(&sealed);
        out
    }

    /// Open what [`SecretBox::seal`] sealed with the same `context`.
    pub fn open(&self, sealed: &[u8], context: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if sealed.len() < HEADER_LEN + TAG_LEN {
            return Err(CryptoError::Truncated(sealed.len()));
        }
        let key_id = sealed[0];
        if key_id != self.key_id {
            return Err(CryptoError::UnknownKey(key_id));
        }
        let nonce = Nonce::try_from(&sealed[1..HEADER_LEN]).expect("12 bytes checked above");
        let aad = self.aad(key_id, context);
        self.cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: &sealed[HEADER_LEN..],
                    aad: &aad,
                },
            )
            .map_err(|_| CryptoError::Inauthentic)
    }

    /// The key id, then the context: with no context exactly what values sealed before
    /// contexts existed were bound to.
    fn aad(&self, key_id: u8, context: &[u8]) -> Vec<u8> {
        let mut aad = Vec::with_capacity(1 + context.len());
        aad.push(key_id);
        aad.extend_from_slice(context);
        aad
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn boxed() -> SecretBox {
        SecretBox::new(&EncryptionKey::parse("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").unwrap())
    }

    #[test]
    fn a_sealed_secret_opens_to_the_same_text_and_does_not_contain_it() {
        let b = boxed();
        let sealed = b.encrypt(&SecretString::from("rt-acct-1"));
        assert_eq!(sealed[0], CURRENT_KEY_ID);
        assert!(!sealed.windows(9).any(|w| w == b"rt-acct-1"));
        assert_eq!(b.decrypt(&sealed).unwrap().expose_secret(), "rt-acct-1");
    }

    #[test]
    fn each_encryption_uses_a_fresh_nonce() {
        let b = boxed();
        let s = SecretString::from("same");
        assert_ne!(b.encrypt(&s), b.encrypt(&s));
    }

    #[test]
    fn any_altered_byte_is_detected() {
        let b = boxed();
        let sealed = b.encrypt(&SecretString::from("sim-client-secret"));
        for i in 0..sealed.len() {
            let mut t = sealed.clone();
            t[i] ^= 0x01;
            let err = b.decrypt(&t).unwrap_err();
            assert!(
                matches!(err, CryptoError::Inauthentic | CryptoError::UnknownKey(_)),
                "byte {i}: {err:?}"
            );
        }
        assert_eq!(b.decrypt(&sealed[..20]).unwrap_err(), CryptoError::Truncated(20));
    }

    #[test]
    fn a_value_sealed_in_one_context_does_not_open_in_another() {
        let b = boxed();
        let sealed = b.seal(b"page 2", b"key-a");
        assert_eq!(b.open(&sealed, b"key-a").unwrap(), b"page 2");
        assert_eq!(b.open(&sealed, b"key-b").unwrap_err(), CryptoError::Inauthentic);
        let derived = SecretBox::new(
            &EncryptionKey::parse("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")
                .unwrap()
                .derive("x"),
        );
        assert_eq!(derived.open(&sealed, b"key-a").unwrap_err(), CryptoError::Inauthentic);
    }

    #[test]
    fn another_key_cannot_open_it() {
        let other = SecretBox::new(&EncryptionKey::parse(DEV_ENCRYPTION_KEY).unwrap());
        let sealed = boxed().encrypt(&SecretString::from("x"));
        assert_eq!(other.decrypt(&sealed).unwrap_err(), CryptoError::Inauthentic);
    }

    #[test]
    fn keys_must_be_32_bytes_of_base64_and_say_so() {
        assert!(EncryptionKey::parse(DEV_ENCRYPTION_KEY).unwrap().is_dev_default());
        assert!(!EncryptionKey::parse("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8")
            .unwrap()
            .is_dev_default());
        assert!(EncryptionKey::parse("").unwrap_err().contains("empty"));
        assert!(EncryptionKey::parse("not base64!").unwrap_err().contains("not valid base64"));
        assert!(EncryptionKey::parse("AAEC").unwrap_err().contains("decodes to 3 bytes"));
    }

    #[test]
    fn debug_shows_no_key_material() {
        let key = EncryptionKey::parse(DEV_ENCRYPTION_KEY).unwrap();
        let shown = format!("{key:?} {:?}", SecretBox::new(&key));
        assert!(
            !shown.contains("100") && !shown.contains("ZHJv") && !shown.contains("drover"),
            "{shown}"
        );
    }

    proptest! {
        #[test]
        fn any_text_roundtrips(text in ".{0,300}") {
            let b = boxed();
            let sealed = b.encrypt(&SecretString::from(text.clone()));
            prop_assert_eq!(sealed.len(), HEADER_LEN + text.len() + TAG_LEN);
            let opened = b.decrypt(&sealed).unwrap();
            prop_assert_eq!(opened.expose_secret(), text.as_str());
        }
    }
}
