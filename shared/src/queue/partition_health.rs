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

    /// A fetch could not use `partitions` of `kind`. One WARN when the kind's first
    /// partitions start failing; partitions that join them while any still fails are
    /// the same outage as far as the log goes (at debug): a fetch tries only some
    /// partitions each round, so one Redis restart meets them a few at a time (before,
    /// found by the chaos audit of 2026-12-06, each partition logged its own line).
    pub fn all_failed(&self, kind: JobKind, partitions: &[usize], error: &impl Display) {
        let (new, first): (Vec<usize>, bool) = {
            let mut failing = self.failing.lock().unwrap_or_else(|e| e.into_inner());
            let first = !failing.iter().any(|(k, _)| *k == kind);
            (partitions.iter().copied().filter(|p| failing.insert((kind, *p))).collect(), first)
        };
        match new.as_slice() {
            [] => {}
            [p] if first => {
                tracing::warn!(kind = %kind, partition = p, error = %error, "cannot lease from this partition; any others go on")
            }
            _ if first => {
                tracing::warn!(kind = %kind, partitions = ?new, error = %error, "cannot lease from these partitions; any others go on")
            }
            _ => tracing::debug!(kind = %kind, partitions = ?new, error = %error, "cannot lease from these partitions either"),
        }
    }

    /// Partition `p` of `kind` served a fetch.
    pub fn served(&self, kind: JobKind, p: usize) {
        let mut failing = self.failing.lock().unwrap_or_else(|e| e.into_inner());
        if !failing.is_empty() && failing.remove(&(kind, p)) {
            if failing.iter().any(|(k, _)| *k == kind) {
                tracing::debug!(kind = %kind, partition = p, "leasing from this partition again");
            } else {
                tracing::info!(kind = %kind, "leasing from every partition again");
            }
        }
    }
}
