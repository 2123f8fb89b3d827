//! The opaque page cursor: base64url (no padding) of the queue's [`Cursor`] as JSON.
//! Clients pass it back unchanged; anything that does not decode is a 422 on `cursor`.
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use drover::queue::Cursor;

use crate::error::ApiError;

/// A cursor longer than this was not made by us.
const MAX_LEN: usize = 4096;

pub fn encode(cursor: &Cursor) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(cursor).expect("a cursor always serializes"))
}

pub fn decode(s: &str) -> Result<Cursor, ApiError> {
    let bad = || ApiError::field("cursor", "is not a cursor returned by this API");
    if s.len() > MAX_LEN {
        return Err(bad());
    }
    let bytes = URL_SAFE_NO_PAD.decode(s).map_err(|_| bad())?;
    serde_json::from_slice(&bytes).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use drover::job::JobKind;
    use proptest::prelude::*;

    use super::*;

    fn kind() -> impl Strategy<Value = JobKind> {
        prop::sample::select(JobKind::ALL.to_vec())
    }

    proptest! {
        #[test]
        fn every_cursor_survives_the_round_trip(
            positions in prop::collection::vec((kind(), "[0-9.+inf]{0,20}", "[a-z_0-9A-Z]{0,40}"), 0..4)
        ) {
            let c = Cursor { positions };
            let s = encode(&c);
            prop_assert!(s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "url-safe: {}", s);
            prop_assert_eq!(decode(&s).unwrap(), c);
        }

        #[test]
        fn garbage_is_a_422_on_cursor_never_a_panic(s in ".{0,64}") {
            if let Err(e) = decode(&s) {
                prop_assert!(matches!(e, ApiError::Validation(ref f) if f[0].field == "cursor"));
            }
        }
    }
}
