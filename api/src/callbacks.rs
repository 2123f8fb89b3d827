//! A job's `callback_url` on submit (docs/callbacks.md): checked against the API's
//! policy and the key's own `callback_hosts`, then the key's secret is sealed into the
//! job for the worker that signs the delivery.
use drover::callback::seal::CallbackSealer;
use drover::callback::target::refused_range;
use drover::callback::CallbackUrl;
use drover::job::{FieldError, JobId};
use drover::queue::NewCallback;

use crate::auth::Principal;

/// What the API allows beyond each key's grant, and the sealer for the secrets.
#[derive(Debug, Clone)]
pub struct CallbackPolicy {
    pub allow_http: bool,
    pub allow_private_targets: bool,
    pub sealer: CallbackSealer,
}

impl CallbackPolicy {
    /// The callback of the new job `job_id` for `raw`, or the 422 field error saying why
    /// not. Names nothing but the caller's own settings (never another key's hosts).
    pub fn callback(&self, raw: &str, caller: &Principal, job_id: JobId) -> Result<NewCallback, FieldError> {
        let bad = |why: String| FieldError::new("callback_url", why);
        let Some(grant) = &caller.callbacks else {
            return Err(bad(
                "this API key makes no callbacks: its configuration needs callback_hosts and callback_secret".into(),
            ));
        };
        let url = CallbackUrl::parse(raw, self.allow_http).map_err(bad)?;
        let host = url.host();
        if !grant.hosts.iter().any(|p| p.matches(&host)) {
            return Err(bad("its host is not in this API key's callback_hosts".into()));
        }
        if let Some(range) = url.ip().and_then(refused_range) {
            if !self.allow_private_targets {
                return Err(bad(format!(
                    "its host is {range}: callbacks go to public addresses only (api.callbacks.allow_private_targets)"
                )));
            }
        }
        let sealed_secret = self.sealer.seal(&job_id, url.as_str(), &grant.secret);
        Ok(NewCallback {
            job_id,
            url: url.as_str().to_owned(),
            sealed_secret,
        })
    }
}

#[cfg(test)]
mod tests {
    use drover::callback::HostPattern;
    use drover::crypto::EncryptionKey;
    use drover::job::JobKind;
    use secrecy::SecretString;

    use super::*;
    use crate::auth::{CallbackGrant, Role};

    fn policy(allow_private_targets: bool) -> CallbackPolicy {
        CallbackPolicy {
            allow_http: false,
            allow_private_targets,
            sealer: CallbackSealer::new(&EncryptionKey::dev()),
        }
    }

    fn tenant(hosts: &[&str]) -> Principal {
        Principal::new("acme", Role::Submit, None).with_callbacks(Some(CallbackGrant {
            hosts: hosts.iter().map(|h| HostPattern::parse(h).unwrap()).collect(),
            secret: SecretString::from("s".repeat(32)),
        }))
    }

    #[test]
    fn a_url_on_an_allowed_host_gets_the_keys_secret_sealed_for_the_job() {
        let p = policy(false);
        let cb = p
            .callback("https://hooks.acme.com/x", &tenant(&["hooks.acme.com"]), JobId::new(JobKind::Sync))
            .unwrap();
        assert_eq!(cb.job_id.kind(), JobKind::Sync);
        let opened = p.sealer.open(&cb.job_id, &cb.url, &cb.sealed_secret).unwrap();
        assert_eq!(secrecy::ExposeSecret::expose_secret(&opened), "s".repeat(32));
    }

    #[test]
    fn a_key_without_callbacks_a_foreign_host_http_and_private_literals_are_refused() {
        let p = policy(false);
        let none = Principal::new("plain", Role::Submit, None);
        let why = |r: Result<NewCallback, FieldError>| r.unwrap_err().message;
        assert!(why(p.callback("https://h.acme.com/", &none, JobId::new(JobKind::Sync))).contains("makes no callbacks"));
        let t = tenant(&["*.acme.com", "10.0.0.5"]);
        assert!(why(p.callback("https://globex.com/", &t, JobId::new(JobKind::Sync))).contains("not in this API key's callback_hosts"));
        assert!(why(p.callback("http://h.acme.com/", &t, JobId::new(JobKind::Sync))).contains("https"));
        assert!(why(p.callback("https://10.0.0.5/", &t, JobId::new(JobKind::Sync))).contains("private address"));
        assert!(policy(true).callback("https://10.0.0.5/", &t, JobId::new(JobKind::Sync)).is_ok());
    }
}
