//! Partitions of a queue (docs/architecture.md, "Partitions"). A kind's jobs are spread
//! over `queue.partitions` partitions, each a complete queue of its own under one hash tag
//! (`{cleanup:7}`), so a Redis Cluster can put them on different shards. An account's jobs
//! all live in one partition — the bucket of its id modulo the count — so its lane, cap
//! and exclusivity stay one partition's business. With one partition the keys are the
//! unpartitioned layout (`{cleanup}`); ids name their bucket all the same, so a later
//! change of the count (the migration) puts every job where its account goes.
use crate::job::{bucket_of, JobId, BUCKETS};

/// The partition count of every queue. A partition is `None` on an unpartitioned queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partitions(u16);

impl Default for Partitions {
    fn default() -> Self {
        Self(1)
    }
}

impl Partitions {
    /// The unpartitioned layout.
    pub const ONE: Self = Self(1);

    /// `n` partitions, 1 to [`BUCKETS`].
    pub fn new(n: u16) -> Result<Self, String> {
        if (1..=BUCKETS).contains(&n) {
            Ok(Self(n))
        } else {
            Err(format!("queue.partitions = {n} must be between 1 and {BUCKETS}"))
        }
    }

    pub fn count(self) -> u16 {
        self.0
    }

    /// Every partition, in order.
    pub fn all(self) -> Vec<Option<u16>> {
        if self.0 == 1 {
            vec![None]
        } else {
            (0..self.0).map(Some).collect()
        }
    }

    /// The partition a job lives in.
    pub fn of_job(self, id: &JobId) -> Option<u16> {
        (self.0 > 1).then(|| id.placement() % self.0)
    }

    /// The bucket a new job's id names: its account's (so the account's jobs share a
    /// partition under any count), or, for a job with no account, its idempotency key's
    /// (so a replay finds the first job) or a fresh one. Named even with one partition,
    /// so a later change of the count moves every job exactly where its account goes.
    pub fn bucket_for(self, account: &str, idempotency_key: Option<&str>) -> Option<u16> {
        Some(match (account, idempotency_key) {
            ("", Some(k)) => bucket_of(k),
            ("", None) => rand::random::<u16>() % BUCKETS,
            (a, _) => bucket_of(a),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::JobKind;

    #[test]
    fn one_partition_is_the_unpartitioned_layout() {
        let p = Partitions::default();
        assert_eq!(p.all(), vec![None]);
        assert_eq!(p.bucket_for("A1", None), Some(bucket_of("A1")), "ids name the bucket anyway");
        assert_eq!(p.of_job(&JobId::with_bucket(JobKind::Sync, Some(7))), None);
    }

    #[test]
    fn an_accounts_jobs_share_one_partition() {
        let p = Partitions::new(16).unwrap();
        let a = JobId::with_bucket(JobKind::Sync, p.bucket_for("A1", None));
        let b = JobId::with_bucket(JobKind::Cleanup, p.bucket_for("A1", Some("k")));
        assert_eq!(p.of_job(&a), p.of_job(&b));
        assert!(p.of_job(&a).unwrap() < 16);
    }

    #[test]
    fn the_count_is_bounded() {
        assert!(Partitions::new(0).is_err());
        assert!(Partitions::new(BUCKETS + 1).is_err());
        assert_eq!(Partitions::new(BUCKETS).unwrap().all().len(), usize::from(BUCKETS));
    }
}
