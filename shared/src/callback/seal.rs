//! The key's callback secret travels in the job record, sealed: only the API knows
//! keys, but the worker signs. AES-256-GCM under a key derived from the shared
//! encryption key ("callback secrets"), bound to the job id and the URL, so a sealed
//! secret copied to another job or next to another URL does not open.
use secrecy::{ExposeSecret, SecretString};

use crate::crypto::{CryptoError, EncryptionKey, SecretBox};
use crate::job::JobId;

/// Seals and opens callback secrets; both the API and the worker build it from
/// `encryption_key`.
#[derive(Clone, Debug)]
pub struct CallbackSealer(SecretBox);

impl CallbackSealer {
    pub fn new(key: &EncryptionKey) -> Self {
        Self(SecretBox::new(&key.derive("callback secrets")))
    }

    pub fn seal(&self, job: &JobId, url: &str, secret: &SecretString) -> Vec<u8> {
        self.0.seal(secret.expose_secret().as_bytes(), &context(job, url))
    }

    pub fn open(&self, job: &JobId, url: &str, sealed: &[u8]) -> Result<SecretString, CryptoError> {
        let plain = self.0.open(sealed, &context(job, url))?;
        String::from_utf8(plain).map(SecretString::from).map_err(|_| CryptoError::NotUtf8)
    }
}

fn context(job: &JobId, url: &str) -> Vec<u8> {
    format!("callback\0{job}\0{url}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::JobKind;

    #[test]
    fn a_sealed_secret_opens_only_for_its_own_job_and_url() {
        let s = CallbackSealer::new(&EncryptionKey::dev());
        let (a, b) = (JobId::new(JobKind::Sync), JobId::new(JobKind::Sync));
        let sealed = s.seal(&a, "https://h.example/x", &SecretString::from("whsec"));
        assert_eq!(s.open(&a, "https://h.example/x", &sealed).unwrap().expose_secret(), "whsec");
        assert!(s.open(&b, "https://h.example/x", &sealed).is_err());
        assert!(s.open(&a, "https://evil.example/x", &sealed).is_err());
        let other = CallbackSealer::new(&EncryptionKey::dev().derive("another"));
        assert!(other.open(&a, "https://h.example/x", &sealed).is_err());
    }
}
