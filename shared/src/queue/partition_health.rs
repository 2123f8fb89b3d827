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
        self.all_failed(kind, &[p], error);
    }

    /// A fetch could not use `partitions` of `kind` for one reason (one pipeline, one
    /// shard): one line for those newly failing, not one each (before, found by the chaos
    /// audit of 2026-12-06, a restart of the one Redis logged a line per partition).
    pub fn all_failed(&self, kind: JobKind, partitions: &[usize], error: &impl Display) {
        let new: Vec<usize> = {
            let mut failing = self.failing.lock().unwrap_or_else(|e| e.into_inner());
            partitions.iter().copied().filter(|p| failing.insert((kind, *p))).collect()
        };
        match new.as_slice() {
            [] => {}
            [p] => tracing::warn!(kind = %kind, partition = p, error = %error, "cannot lease from this partition; any others go on"),
            _ => tracing::warn!(kind = %kind, partitions = ?new, error = %error, "cannot lease from these partitions; any others go on"),
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
