use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::JobKind;

/// A job id: the kind as a prefix, then a ULID (`sync_01J…`), so the queue a job lives
/// in is known from the id alone and a lookup never scans.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct JobId(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid job id {0:?}: expected <kind>_<ULID>, e.g. sync_01J9Z3K4M5N6P7Q8R9S0T1V2W3")]
pub struct InvalidJobId(String);

impl JobId {
    /// A new id. Ids made by one process are strictly increasing, so jobs enqueued in
    /// the same millisecond keep their order in the queue (ties sort by id).
    pub fn new(kind: JobKind) -> Self {
        static GENERATOR: std::sync::Mutex<Option<ulid::Generator>> = std::sync::Mutex::new(None);
        let mut g = GENERATOR.lock().unwrap_or_else(|p| p.into_inner());
        let ulid = match g.get_or_insert_with(ulid::Generator::new).generate() {
            Ok(u) => u,
            // 2^80 ids in one millisecond: start a fresh random sequence.
            Err(overflow) => overflow.commit_overflow_random(),
        };
        Self(format!("{}_{}", kind.as_str(), ulid))
    }

    pub fn kind(&self) -> JobKind {
        let prefix = self.0.split('_').next().unwrap_or_default();
        JobKind::from_str(prefix).expect("JobId is validated on construction")
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for JobId {
    type Err = InvalidJobId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || InvalidJobId(s.chars().take(64).collect());
        let (prefix, ulid) = s.split_once('_').ok_or_else(bad)?;
        JobKind::from_str(prefix).map_err(|_| bad())?;
        ulid::Ulid::from_string(ulid).map_err(|_| bad())?;
        // Keep one canonical spelling so the same job never has two keys.
        if ulid.chars().any(|c| c.is_ascii_lowercase()) {
            return Err(bad());
        }
        Ok(Self(s.to_owned()))
    }
}

impl TryFrom<String> for JobId {
    type Error = InvalidJobId;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<JobId> for String {
    fn from(id: JobId) -> Self {
        id.0
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_id_carries_its_kind_and_parses_back() {
        for kind in JobKind::ALL {
            let id = JobId::new(kind);
            assert!(id.as_str().starts_with(&format!("{}_", kind.as_str())));
            assert_eq!(id.kind(), kind);
            assert_eq!(id.as_str().parse::<JobId>().unwrap(), id);
        }
    }

    #[test]
    fn ids_with_an_unknown_kind_or_a_bad_ulid_are_rejected() {
        for bad in [
            "",
            "sync",
            "sync_",
            "mail_01J9Z3K4M5N6P7Q8R9S0T1V2W3",
            "sync_nope",
            "sync_01j9z3k4m5n6p7q8r9s0t1v2w3",
        ] {
            assert!(bad.parse::<JobId>().is_err(), "{bad} should be rejected");
        }
    }
}
