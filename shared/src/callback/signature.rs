//! `Drover-Signature: v1=<hex>`: HMAC-SHA256 under the key's callback secret over
//! `<timestamp>.<delivery id>.<body>` (docs/callbacks.md gives receivers the recipe).
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The signature header's value for one try.
pub fn sign(secret: &[u8], timestamp: i64, delivery_id: &str, body: &[u8]) -> String {
    format!(
        "v1={}",
        hex::encode(mac(secret, timestamp, delivery_id, body).finalize().into_bytes())
    )
}

/// Whether `header` carries a valid `v1=` signature (constant-time comparison). What a
/// receiver does, here for tests and as the reference for the recipe.
pub fn verify(secret: &[u8], timestamp: i64, delivery_id: &str, body: &[u8], header: &str) -> bool {
    header
        .split(',')
        .filter_map(|p| p.trim().strip_prefix("v1="))
        .any(|hexsig| hex::decode(hexsig).is_ok_and(|sig| mac(secret, timestamp, delivery_id, body).verify_slice(&sig).is_ok()))
}

fn mac(secret: &[u8], timestamp: i64, delivery_id: &str, body: &[u8]) -> HmacSha256 {
    let mut m = HmacSha256::new_from_slice(secret).expect("HMAC takes a key of any length");
    m.update(timestamp.to_string().as_bytes());
    m.update(b".");
    m.update(delivery_id.as_bytes());
    m.update(b".");
    m.update(body);
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_matches_the_published_recipe() {
        // printf '%s' '1700000000.d1.{"a":1}' | openssl dgst -sha256 -hmac whsec
        let sig = sign(b"whsec", 1_700_000_000, "d1", br#"{"a":1}"#);
        assert_eq!(sig, "v1=4fe0401be1b877fb38ea2e16f2ea1106356f51d41dde8135d2c0ed3687da2689");
        assert!(verify(b"whsec", 1_700_000_000, "d1", br#"{"a":1}"#, &sig));
    }

    #[test]
    fn another_secret_timestamp_id_or_body_does_not_verify() {
        let sig = sign(b"whsec", 1, "d1", b"{}");
        assert!(!verify(b"other", 1, "d1", b"{}", &sig));
        assert!(!verify(b"whsec", 2, "d1", b"{}", &sig));
        assert!(!verify(b"whsec", 1, "d2", b"{}", &sig));
        assert!(!verify(b"whsec", 1, "d1", b"{ }", &sig));
        assert!(!verify(b"whsec", 1, "d1", b"{}", "v1=zz"));
    }
}
