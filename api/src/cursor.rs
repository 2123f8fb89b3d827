//! The opaque page cursor: the queue's [`Cursor`] as JSON, sealed with AES-256-GCM under a
//! key derived from `api.encryption_key` and bound to the API key and the filter it was
//! made for, then base64url (no padding). A client can neither read it (no job ids or
//! times, its own or anyone else's), nor alter it, nor use it with another key or another
//! filter: anything that does not open is a 422 on `cursor`, never a store error.
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use drover::crypto::SecretBox;
use drover::job::JobId;
use drover::queue::{Cursor, ListQuery};

use crate::error::ApiError;

/// A cursor longer than this was not made by us. A job listing's cursor holds a
/// position for each kind and partition with more to show (up to about 100 characters
/// each, sealed and encoded): 64 KiB is room for every kind of about 200 partitions
/// (4 KiB, before 2026-12-06, refused a listing's second page over 64 partitions).
const MAX_LEN: usize = 64 * 1024;

/// Seals and opens cursors; one per app, from the configured key.
#[derive(Clone, Debug)]
pub struct Cursors {
    sealer: SecretBox,
}

impl Cursors {
    pub fn new(sealer: SecretBox) -> Self {
        Self { sealer }
    }

    /// The cursor for the page after this one of `query`, as asked by key `key`.
    pub fn encode(&self, cursor: &Cursor, key: &str, query: &ListQuery) -> String {
        let json = serde_json::to_vec(cursor).expect("a cursor always serializes");
        URL_SAFE_NO_PAD.encode(self.sealer.seal(&json, &binding(key, query)))
    }

    /// What a cursor that does not open is told.
    pub const INVALID: &'static str = "is not a cursor this API returned for this key and these filters";

    /// Whether `s` could be a cursor at all (length and alphabet), without opening it.
    pub fn well_formed(s: &str) -> bool {
        s.len() <= MAX_LEN && URL_SAFE_NO_PAD.decode(s).is_ok()
    }

    /// The cursor `s`, if this app made it for the same key and filter as `query`'s.
    pub fn decode(&self, s: &str, key: &str, query: &ListQuery) -> Result<Cursor, ApiError> {
        let bad = || ApiError::field("cursor", Self::INVALID);
        let json = self.open(s, &binding(key, query))?;
        let cursor: Cursor = serde_json::from_slice(&json).map_err(|_| bad())?;
        // Only we seal cursors, so this holds; checked anyway, as the store would pass a
        // bad score to Redis and report its refusal as an outage.
        let sane = cursor.positions.iter().all(|(_, _, score, id)| {
            (score == "+inf" || score.parse::<f64>().is_ok_and(f64::is_finite)) && (id.is_empty() || id.parse::<JobId>().is_ok())
        });
        sane.then_some(cursor).ok_or_else(bad)
    }

    /// The cursor of a listing other than jobs' (`listing` names it and its filters) for
    /// the page after the one that ended at `after`, as asked by key `key`.
    pub fn encode_after(&self, after: &str, key: &str, listing: &str) -> String {
        URL_SAFE_NO_PAD.encode(self.sealer.seal(after.as_bytes(), &after_binding(key, listing)))
    }

    /// Where the listing goes on, if this app made `s` for the same key and listing.
    pub fn decode_after(&self, s: &str, key: &str, listing: &str) -> Result<String, ApiError> {
        let after = self.open(s, &after_binding(key, listing))?;
        String::from_utf8(after).map_err(|_| ApiError::field("cursor", Self::INVALID))
    }

    /// What `s` seals under `binding`; a 422 on `cursor` when it was not made so.
    fn open(&self, s: &str, binding: &[u8]) -> Result<Vec<u8>, ApiError> {
        let bad = || ApiError::field("cursor", Self::INVALID);
        if !Self::well_formed(s) {
            return Err(bad());
        }
        let sealed = URL_SAFE_NO_PAD.decode(s).map_err(|_| bad())?;
        self.sealer.open(&sealed, binding).map_err(|_| bad())
    }
}

fn after_binding(key: &str, listing: &str) -> Vec<u8> {
    format!("drover after cursor v1\0{key}\0{listing}").into_bytes()
}

/// What a cursor is bound to: the key that asked and every filter of the listing.
fn binding(key: &str, q: &ListQuery) -> Vec<u8> {
    let kinds: Vec<&str> = q.kinds.iter().map(|k| k.as_str()).collect();
    format!(
        "drover page cursor v1\0{key}\0{}\0{}\0{}\0{}\0{}",
        kinds.join(","),
        q.state.map(|s| s.as_str()).unwrap_or(""),
        q.account_id.as_deref().unwrap_or(""),
        q.group.as_deref().unwrap_or(""),
        q.error_class.as_deref().unwrap_or("")
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use drover::crypto::EncryptionKey;
    use drover::job::{JobKind, JobState};
    use proptest::prelude::*;

    use super::*;

    fn cursors() -> Cursors {
        let key = EncryptionKey::parse("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").unwrap();
        Cursors::new(SecretBox::new(&key.derive("page cursors")))
    }

    fn kind() -> impl Strategy<Value = JobKind> {
        prop::sample::select(JobKind::ALL.to_vec())
    }

    fn query(account: Option<&str>) -> ListQuery {
        ListQuery {
            kinds: vec![JobKind::Cleanup],
            state: Some(JobState::Dead),
            account_id: account.map(str::to_owned),
            ..Default::default()
        }
    }

    proptest! {
        #[test]
        fn every_cursor_survives_the_round_trip_and_shows_nothing_of_its_positions(
            positions in prop::collection::vec((kind(), "[1-9][0-9]{9,12}", "[0-7][0-9A-HJKMNP-TV-Z]{25}"), 0..4)
        ) {
            let c = Cursor { positions: positions.into_iter().map(|(k, s, u)| (k, None, s, format!("{}_{u}", k.as_str()))).collect(), by_account: Vec::new() };
            let q = query(Some("acme"));
            let s = cursors().encode(&c, "acme-sub", &q);
            prop_assert!(s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "url-safe: {}", s);
            let raw = String::from_utf8_lossy(&URL_SAFE_NO_PAD.decode(&s).unwrap()).into_owned();
            for (_, _, score, id) in &c.positions {
                prop_assert!(!raw.contains(id.as_str()) && !raw.contains(score.as_str()));
            }
            prop_assert_eq!(cursors().decode(&s, "acme-sub", &q).unwrap(), c);
        }

        #[test]
        fn garbage_is_a_422_on_cursor_never_a_panic(s in ".{0,64}") {
            if let Err(e) = cursors().decode(&s, "k", &query(None)) {
                prop_assert!(matches!(e, ApiError::Validation(ref f) if f[0].field == "cursor"));
            }
        }
    }

    #[test]
    fn a_cursor_does_not_open_for_another_key_or_another_filter() {
        let c = Cursor {
            positions: vec![(JobKind::Cleanup, None, "1700000000000".into(), String::new())],
            by_account: Vec::new(),
        };
        let s = cursors().encode(&c, "acme-sub", &query(Some("acme")));
        assert!(cursors().decode(&s, "acme-sub", &query(Some("acme"))).is_ok());
        assert!(cursors().decode(&s, "globex-sub", &query(Some("acme"))).is_err());
        assert!(cursors().decode(&s, "acme-sub", &query(Some("globex"))).is_err());
        assert!(cursors().decode(&s, "acme-sub", &query(None)).is_err());
    }
}
