//! Which partitions a fetch could not serve (their shard down, or unable to acknowledge
//! leases as `queue.durability` asks), so that each outage is logged once when it starts
//! and once when it ends, however many fetches meet it meanwhile. The other partitions'
//! leases go ahead regardless (`RedisStore::fetch`).
use std::collections::HashSet;
use std::fmt::Display;
use std::sync::Mutex;

use crate::job::JobKind;

#[derive(Debug, Default)]
pub struct PartitionHealth {
    failing: Mutex<HashSet<(JobKind, usize)>>,
}

impl PartitionHealth {
    /// A fetch could not use partition `p` of `kind`.
    pub fn failed(&self, kind: JobKind, p: usize, error: &impl Display) {
        if self.failing.lock().unwrap_or_else(|e| e.into_inner()).insert((kind, p)) {
            tracing::warn!(kind = %kind, partition = p, error = %error, "cannot lease from this partition; the others go on");
        }
    }

    /// Partition `p` of `kind` served a fetch.
    pub fn served(&self, kind: JobKind, p: usize) {
        let mut failing = self.failing.lock().unwrap_or_else(|e| e.into_inner());
        if !failing.is_empty() && failing.remove(&(kind, p)) {
            tracing::info!(kind = %kind, partition = p, "leasing from this partition again");
        }
    }
}
