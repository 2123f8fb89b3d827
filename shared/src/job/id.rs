//! Job ids: the kind, the partition bucket and a ULID in one string, parsed and checked.
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::JobKind;

/// A job id: the kind as a prefix, then a ULID (`sync_01J…`), so the queue a job lives
/// in is known from the id alone and a lookup never scans. On a partitioned queue the
/// prefix also carries the job's bucket (`sync.517_01J…`, 0 ≤ bucket < [`BUCKETS`]): the
/// partition is the bucket modulo the partition count (docs/architecture.md, "Partitions").
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct JobId(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid job id {0:?}: expected <kind>_<ULID> or <kind>.<bucket>_<ULID>, e.g. sync_01J9Z3K4M5N6P7Q8R9S0T1V2W3")]
pub struct InvalidJobId(String);

/// How many buckets a job id can name; a queue has at most this many partitions.
pub const BUCKETS: u16 = 1024;

impl JobId {
    /// A new id with no bucket (an unpartitioned queue). Ids made by one process are
    /// strictly increasing, so jobs enqueued in the same millisecond keep their order in
    /// the queue (ties sort by id).
    pub fn new(kind: JobKind) -> Self {
        Self::with_bucket(kind, None)
    }

    /// A new id naming `bucket` (taken modulo [`BUCKETS`]), or none.
    pub fn with_bucket(kind: JobKind, bucket: Option<u16>) -> Self {
        static GENERATOR: std::sync::Mutex<Option<ulid::Generator>> = std::sync::Mutex::new(None);
        let mut g = GENERATOR.lock().unwrap_or_else(|p| p.into_inner());
        let ulid = match g.get_or_insert_with(ulid::Generator::new).generate() {
            Ok(u) => u,
            // 2^80 ids in one millisecond: start a fresh random sequence.
            Err(overflow) => overflow.commit_overflow_random(),
        };
        match bucket {
            None => Self(format!("{}_{}", kind.as_str(), ulid)),
            Some(b) => Self(format!("{}.{}_{}", kind.as_str(), b % BUCKETS, ulid)),
        }
    }

    pub fn kind(&self) -> JobKind {
        let prefix = self.0.split(['_', '.']).next().unwrap_or_default();
        JobKind::from_str(prefix).expect("JobId is validated on construction")
    }

    /// The bucket the id names, if any.
    pub fn bucket(&self) -> Option<u16> {
        let prefix = self.0.split('_').next().unwrap_or_default();
        prefix.split_once('.').and_then(|(_, b)| b.parse().ok())
    }

    /// The bucket that places this job: the one it names, or for an id without one a
    /// hash of its ULID (ids made before the queue was partitioned).
    pub fn placement(&self) -> u16 {
        self.bucket()
            .unwrap_or_else(|| bucket_of(self.0.rsplit('_').next().unwrap_or_default()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// When the id was made (its ULID's milliseconds since the Unix epoch).
    pub fn made_ms(&self) -> u64 {
        let ulid = self.0.rsplit('_').next().unwrap_or_default();
        ulid::Ulid::from_string(ulid).map_or(0, |u| u.timestamp_ms())
    }
}

impl FromStr for JobId {
    type Err = InvalidJobId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || InvalidJobId(s.chars().take(64).collect());
        let (prefix, ulid) = s.split_once('_').ok_or_else(bad)?;
        let kind = match prefix.split_once('.') {
            None => prefix,
            Some((kind, bucket)) => {
                // Digits only, no leading zero: one spelling per bucket.
                let canonical =
                    !bucket.is_empty() && bucket.bytes().all(|b| b.is_ascii_digit()) && (bucket == "0" || !bucket.starts_with('0'));
                if !canonical || bucket.parse::<u16>().map_or(true, |b| b >= BUCKETS) {
                    return Err(bad());
                }
                kind
            }
        };
        JobKind::from_str(kind).map_err(|_| bad())?;
        ulid::Ulid::from_string(ulid).map_err(|_| bad())?;
        // Keep one canonical spelling so the same job never has two keys.
        if ulid.chars().any(|c| c.is_ascii_lowercase()) {
            return Err(bad());
        }
        Ok(Self(s.to_owned()))
    }
}

/// The bucket of a string (an account id, an idempotency key): 32-bit FNV-1a modulo
/// [`BUCKETS`]. Stable across processes, versions and platforms — ids and partitions
/// depend on it.
pub fn bucket_of(s: &str) -> u16 {
    let mut h: u32 = 0x811c_9dc5;
    for b in s.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    (h % u32::from(BUCKETS)) as u16
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
    fn an_id_with_a_bucket_names_it_and_parses_back() {
        let id = JobId::with_bucket(JobKind::Cleanup, Some(517));
        assert!(id.as_str().starts_with("cleanup.517_"), "{id}");
        assert_eq!(id.kind(), JobKind::Cleanup);
        assert_eq!(id.bucket(), Some(517));
        assert_eq!(id.placement(), 517);
        assert_eq!(id.as_str().parse::<JobId>().unwrap(), id);
        let plain = JobId::new(JobKind::Sync);
        assert_eq!(plain.bucket(), None);
        assert!(plain.placement() < BUCKETS);
    }

    #[test]
    fn buckets_are_stable_fnv1a() {
        // Fixed values: changing the hash would move every account to another partition.
        assert_eq!(bucket_of(""), (0x811c_9dc5u32 % 1024) as u16);
        assert_eq!(bucket_of("A1"), bucket_of("A1"));
        assert_ne!(bucket_of("A1"), bucket_of("A2"));
    }

    #[test]
    fn ids_with_an_unknown_kind_or_a_bad_ulid_are_rejected() {
        for bad in [
            "sync._01J9Z3K4M5N6P7Q8R9S0T1V2W3",
            "sync.1024_01J9Z3K4M5N6P7Q8R9S0T1V2W3",
            "sync.07_01J9Z3K4M5N6P7Q8R9S0T1V2W3",
            "sync.x_01J9Z3K4M5N6P7Q8R9S0T1V2W3",
            "sync.1.2_01J9Z3K4M5N6P7Q8R9S0T1V2W3",
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
