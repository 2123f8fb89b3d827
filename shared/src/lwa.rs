//! Login with Amazon (LWA): exchanging a seller's refresh token for a short-lived access
//! token, as `https://api.amazon.com/auth/o2/token` does it (OAuth 2 refresh-token grant).
//!
//! Used by the worker's marketplace client (through the shared token cache) and by the API
//! to check credentials before storing them. One call, one timeout, no retries: callers
//! decide whether an [`LwaError::Unavailable`] is worth another try.
//!
//! Secrets stay in [`SecretString`]; neither `Debug` nor any error text contains them.
use std::fmt;
use std::time::Duration;

/// Re-exported so callers build and read credentials without naming the `secrecy` crate.
pub use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// How long one [`exchange`] may take.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);
/// A token answer is a few hundred bytes: one past this is not one.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// What a seller authorises us with: the app's client id and secret plus the seller's
/// refresh token.
#[derive(Clone)]
pub struct LwaCredentials {
    pub client_id: String,
    pub client_secret: SecretString,
    pub refresh_token: SecretString,
}

impl LwaCredentials {
    /// SHA-256 over all three parts, hex: tells two sets of credentials apart (the
    /// token cache binds a token to the credentials that got it) without revealing them.
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for part in [
            self.client_id.as_str(),
            self.client_secret.expose_secret(),
            self.refresh_token.expose_secret(),
        ] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
        hex::encode(h.finalize())
    }
}

impl fmt::Debug for LwaCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LwaCredentials")
            .field("client_id", &self.client_id)
            .field("client_secret", &"[REDACTED]")
            .field("refresh_token", &"[REDACTED]")
            .finish()
    }
}

/// A fresh access token and how long the token service says it lives.
pub struct AccessToken {
    pub token: SecretString,
    pub expires_in: Duration,
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("token", &"[REDACTED]")
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// Why an exchange failed. The variant says whether trying again can help.
#[derive(Debug, thiserror::Error)]
pub enum LwaError {
    /// The token service refused these credentials (4xx other than 429): retrying will not
    /// help until someone fixes them. `code` is the OAuth error code (`invalid_grant`,
    /// `invalid_client`, ...), never a secret.
    #[error("credentials rejected by the token service ({status}): {code}")]
    Rejected { status: u16, code: String },
    /// 5xx, 429, timeout, connection failure or an unreadable answer: retryable.
    #[error("token service unavailable: {0}")]
    Unavailable(String),
}

impl LwaError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, LwaError::Unavailable(_))
    }
}

#[derive(Deserialize)]
struct TokenBody {
    access_token: String,
    expires_in: u64,
}

#[derive(Deserialize)]
struct OAuthErrorBody {
    error: String,
}

/// POST `token_url` (form: grant_type=refresh_token, refresh_token, client_id,
/// client_secret) and return the access token. One call with a 10 s timeout, no retries.
pub async fn exchange(http: &reqwest::Client, token_url: &str, creds: &LwaCredentials) -> Result<AccessToken, LwaError> {
    exchange_with_timeout(http, token_url, creds, EXCHANGE_TIMEOUT).await
}

/// [`exchange`] with the caller's timeout (this request's, overriding the client's).
pub async fn exchange_with_timeout(
    http: &reqwest::Client,
    token_url: &str,
    creds: &LwaCredentials,
    timeout: Duration,
) -> Result<AccessToken, LwaError> {
    let body = form_encode(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", creds.refresh_token.expose_secret()),
        ("client_id", &creds.client_id),
        ("client_secret", creds.client_secret.expose_secret()),
    ]);
    let response = http
        .post(token_url)
        .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded;charset=UTF-8")
        .header(reqwest::header::ACCEPT, "application/json")
        .timeout(timeout)
        .body(body)
        .send()
        .await
        .map_err(|e| LwaError::Unavailable(describe_transport_error(&e)))?;
    let status = response.status();
    // Never echo the body into an error: a misbehaving service could reflect the form.
    let bytes = crate::http_body::read_at_most(response, MAX_ANSWER_BYTES)
        .await
        .map_err(|e| match e {
            crate::http_body::BodyError::Read(e) => LwaError::Unavailable(format!("reading the answer: {}", describe_transport_error(&e))),
            too_large => LwaError::Unavailable(too_large.to_string()),
        })?;
    if status.is_success() {
        let body: TokenBody =
            serde_json::from_slice(&bytes).map_err(|_| LwaError::Unavailable(format!("unreadable token answer ({status})")))?;
        if body.access_token.is_empty() {
            return Err(LwaError::Unavailable("token answer without an access token".to_owned()));
        }
        return Ok(AccessToken {
            token: SecretString::from(body.access_token),
            expires_in: Duration::from_secs(body.expires_in),
        });
    }
    let code = serde_json::from_slice::<OAuthErrorBody>(&bytes)
        .ok()
        .map(|b| sanitize_code(&b.error))
        .unwrap_or_else(|| "unknown_error".to_owned());
    if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        return Err(LwaError::Unavailable(format!("{} {code}", status.as_u16())));
    }
    Err(LwaError::Rejected {
        status: status.as_u16(),
        code,
    })
}

/// The kind of transport failure and its cause, without the URL (it could carry secrets
/// in a query: a pre-signed report URL's query is a credential). Shared with the
/// worker's marketplace client.
pub fn describe_transport_error(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "broken response body"
    } else if e.is_request() {
        "request failed"
    } else {
        "transport error"
    };
    // The chain below reqwest's own error (hyper, io) names the cause without the URL.
    let mut text = kind.to_owned();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// OAuth error codes are short ASCII words; keep only that shape so a hostile or broken
/// service cannot smuggle arbitrary text (or our own form) into logs through them.
fn sanitize_code(code: &str) -> String {
    let clean: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-' || *c == '.')
        .take(64)
        .collect();
    if clean.is_empty() {
        "unknown_error".to_owned()
    } else {
        clean
    }
}

/// `application/x-www-form-urlencoded`, as browsers and LWA expect it (reqwest's `form`
/// feature would pull serde_urlencoded in for this one body).
fn form_encode(pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        encode_component(k, &mut out);
        out.push('=');
        encode_component(v, &mut out);
    }
    out
}

fn encode_component(s: &str, out: &mut String) {
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => out.push(b as char),
            b' ' => out.push('+'),
            _ => {
                out.push('%');
                out.push_str(&format!("{b:02X}"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> LwaCredentials {
        LwaCredentials {
            client_id: "amzn1.application-oa2-client.x".to_owned(),
            client_secret: SecretString::from("very-secret-value"),
            refresh_token: SecretString::from("Atzr|refresh-token-value"),
        }
    }

    #[test]
    fn debug_of_credentials_and_token_redacts_the_secrets() {
        let text = format!("{:?}", creds());
        assert!(!text.contains("very-secret-value"), "{text}");
        assert!(!text.contains("refresh-token-value"), "{text}");
        assert!(text.contains("amzn1.application-oa2-client.x"));
        let token = AccessToken {
            token: SecretString::from("Atza|access"),
            expires_in: Duration::from_secs(3600),
        };
        assert!(!format!("{token:?}").contains("Atza|access"));
    }

    #[test]
    fn form_encoding_escapes_reserved_characters() {
        assert_eq!(form_encode(&[("a b", "x|y&z=1/+")]), "a+b=x%7Cy%26z%3D1%2F%2B");
        assert_eq!(form_encode(&[("k", "v"), ("k2", "é")]), "k=v&k2=%C3%A9");
    }

    #[test]
    fn oauth_codes_are_reduced_to_a_safe_word() {
        assert_eq!(sanitize_code("invalid_grant"), "invalid_grant");
        assert_eq!(sanitize_code("bad code\nwith=secret"), "badcodewithsecret");
        assert_eq!(sanitize_code("\n\n"), "unknown_error");
    }

    #[test]
    fn only_unavailable_is_retryable() {
        assert!(LwaError::Unavailable("x".into()).is_retryable());
        assert!(!LwaError::Rejected {
            status: 400,
            code: "invalid_grant".into()
        }
        .is_retryable());
    }

    proptest::proptest! {
        #[test]
        fn form_encoding_roundtrips_through_a_url_decoder(v in ".*") {
            let encoded = form_encode(&[("k", &v)]);
            let decoded = decode_component(encoded.strip_prefix("k=").unwrap());
            proptest::prop_assert_eq!(decoded, v);
        }
    }

    fn decode_component(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' => {
                    out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                    i += 2;
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8(out).unwrap()
    }
}
