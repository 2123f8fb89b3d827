//! Identifiers that cannot hold bad values: they are checked once, when parsed.
use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! checked_string {
    ($(#[$doc:meta])* $name:ident, $what:literal, $check:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn parse(s: impl Into<String>) -> Result<Self, String> {
                let s = s.into();
                let check: fn(&str) -> Result<(), &'static str> = $check;
                check(&s).map_err(|why| format!("{} {}", $what, why))?;
                Ok(Self(s))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(s: String) -> Result<Self, String> {
                Self::parse(s)
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

fn word(s: &str, max: usize) -> Result<(), &'static str> {
    if s.is_empty() {
        return Err("must not be empty");
    }
    if s.len() > max {
        return Err("is too long");
    }
    if !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.') {
        return Err("may only hold letters, digits, '-', '_' and '.'");
    }
    // A path segment (`/v1/accounts/{id}`): clients drop these, so it could not be addressed.
    if s == "." || s == ".." {
        return Err("must not be \".\" or \"..\"");
    }
    Ok(())
}

checked_string!(
    /// A seller account: 1–64 of `[A-Za-z0-9._-]`.
    AccountId, "account_id", |s| word(s, 64)
);
checked_string!(
    /// A marketplace id such as `ATVPDKIKX0DER`: 1–20 upper-case letters and digits.
    MarketplaceId, "marketplace_id", |s| {
        if s.is_empty() || s.len() > 20 {
            return Err("must be 1 to 20 characters");
        }
        if !s.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()) {
            return Err("may only hold upper-case letters and digits");
        }
        Ok(())
    }
);
checked_string!(
    /// A seller SKU: 1–40 printable characters without leading or trailing space
    /// (SP-API's limit), so it can go into a URL path once escaped.
    Sku, "sku", |s| {
        if s.is_empty() || s.chars().count() > 40 {
            return Err("must be 1 to 40 characters");
        }
        if s.chars().any(char::is_control) {
            return Err("must not contain control characters");
        }
        if s.trim() != s {
            return Err("must not start or end with white space");
        }
        // `url` drops these path segments, so the call would go to another path.
        if s == "." || s == ".." {
            return Err("must not be \".\" or \"..\"");
        }
        Ok(())
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    /// I6: `url` drops `.` and `..` path segments, so such a SKU would call another path.
    #[test]
    fn dot_segments_are_not_skus() {
        for s in [".", ".."] {
            assert!(Sku::parse(s).is_err(), "{s}");
        }
        assert!(Sku::parse("...").is_ok() && Sku::parse(".a").is_ok());
    }

    #[test]
    fn account_ids_reject_empty_long_and_odd_characters() {
        assert!(AccountId::parse("seller-1").is_ok());
        assert!(AccountId::parse("").is_err());
        assert!(AccountId::parse("a".repeat(65)).is_err());
        assert!(AccountId::parse("a b").is_err());
        assert!(AccountId::parse("a:b").is_err());
        assert!(AccountId::parse(".").is_err() && AccountId::parse("..").is_err());
        assert!(AccountId::parse("...").is_ok());
    }

    #[test]
    fn skus_follow_sp_api_limits() {
        assert!(Sku::parse("ABC-123 blue").is_ok());
        assert!(Sku::parse(" pad").is_err());
        assert!(Sku::parse("x".repeat(41)).is_err());
        assert!(Sku::parse("a\nb").is_err());
    }
}
