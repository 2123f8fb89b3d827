//! How an LWA access token is kept in Redis: sealed (AES-256-GCM under a key derived for
//! this purpose from the configured encryption key, bound to the account and to the
//! credentials that got it), so an RDB/AOF
//! file or a Redis reader holds no usable SP-API token. The stored value is
//! `<fingerprint>.<sealed, base64url>`; the fingerprint (SHA-256 of the token) lets a
//! worker that got a 401 delete exactly that token without sending it to Redis.
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::crypto::{EncryptionKey, SecretBox};
use crate::job::AccountId;

/// The derivation label: the token key opens nothing else, and nothing else opens tokens.
const KEY_LABEL: &str = "lwa access tokens";

#[derive(Clone)]
pub(crate) struct TokenSealer(SecretBox);

impl TokenSealer {
    pub(crate) fn new(key: &EncryptionKey) -> Self {
        Self(SecretBox::new(&key.derive(KEY_LABEL)))
    }

    /// What to store for `token` of `account`, got with the credentials whose
    /// fingerprint is `credentials` (`LwaCredentials::fingerprint`).
    pub(crate) fn seal(&self, account: &AccountId, credentials: &str, token: &SecretString) -> String {
        let sealed = self.0.seal(token.expose_secret().as_bytes(), &context(account, credentials));
        format!("{}.{}", fingerprint(token), URL_SAFE_NO_PAD.encode(sealed))
    }

    /// The token in a stored value; none when it is not one this key sealed for this
    /// account and these credentials (a value from before sealing, another key, another
    /// account's, or got with credentials since replaced): the caller then refreshes and
    /// overwrites it.
    pub(crate) fn open(&self, account: &AccountId, credentials: &str, stored: &str) -> Option<SecretString> {
        let (_, sealed) = stored.split_once('.')?;
        let sealed = URL_SAFE_NO_PAD.decode(sealed).ok()?;
        let plain = self.0.open(&sealed, &context(account, credentials)).ok()?;
        String::from_utf8(plain).ok().map(SecretString::from)
    }
}

/// SHA-256 of the token, hex: identifies it without revealing it.
pub(crate) fn fingerprint(token: &SecretString) -> String {
    let digest: [u8; 32] = Sha256::digest(token.expose_secret().as_bytes()).into();
    hex::encode(digest)
}

fn context(account: &AccountId, credentials: &str) -> Vec<u8> {
    format!("lwa access token\0{account}\0{credentials}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer(b: u8) -> TokenSealer {
        TokenSealer::new(&EncryptionKey::parse(&base64::engine::general_purpose::STANDARD.encode([b; 32])).unwrap())
    }

    #[test]
    fn a_sealed_token_opens_only_for_its_account_credentials_and_key_and_does_not_show() {
        let (acme, globex) = (AccountId::parse("acme").unwrap(), AccountId::parse("globex").unwrap());
        let token = SecretString::from("Atza|token");
        let stored = sealer(1).seal(&acme, "c1", &token);
        assert!(!stored.contains("Atza"), "{stored}");
        assert_eq!(sealer(1).open(&acme, "c1", &stored).unwrap().expose_secret(), "Atza|token");
        assert!(sealer(1).open(&globex, "c1", &stored).is_none(), "another account's row");
        assert!(sealer(1).open(&acme, "c2", &stored).is_none(), "other credentials");
        assert!(sealer(2).open(&acme, "c1", &stored).is_none(), "another key");
        assert!(sealer(1).open(&acme, "c1", "Atza|plain-from-before").is_none(), "an unsealed value");
        assert!(stored.starts_with(&format!("{}.", fingerprint(&token))));
    }
}
