//! The Redis key names of one queue (a kind, or one partition of it) under one hash tag.
use std::sync::Arc;

use crate::job::{JobId, JobKind};

/// What offering an account's lane touches besides the lane (common.lua: `add_ready`,
/// `offer_lane`, `wake`, and `note_ready_since` for a job put back at its front).
pub(crate) const LANE_OFFER: [&str; 7] = ["queued", "passes", "blocked", "vt", "idle", "marker", "readysince"];
/// The indexes of parked jobs, one per guard (common.lua: `PARK_REASONS`).
pub(crate) const PARKED: [&str; 3] = ["parked:rate_limit", "parked:quota_cooldown", "parked:breaker_open"];
/// The indexes of ended jobs, one per terminal state.
pub(crate) const TERMINAL: [&str; 4] = ["state:succeeded", "state:partial", "state:dead", "state:cancelled"];
/// The kind's indexes of its dead-letter groups, and its accounts ranked by their dead
/// jobs (`dgn`, for the dead cap) (common.lua: `dead_joined`, `dead_left`).
pub(crate) const GROUP_INDEXES: [&str; 5] = ["dg", "dgm", "dgf", "dgl", "dgn"];

/// Key names of one queue: a kind, or one partition of it. The hash tag (`{sync}`, or
/// `{sync:7}` for partition 7) puts them all in one Cluster slot. Cheap to clone (the
/// prefix is shared), and its keys are put together without `format!`: a run's settle
/// names several of them.
#[derive(Debug, Clone)]
pub struct QueueKeys {
    prefix: Arc<str>,
}

impl QueueKeys {
    pub fn new(namespace: &str, kind: JobKind, partition: Option<u16>) -> Self {
        let prefix = match partition {
            None => format!("{namespace}:{{{}}}:", kind.as_str()),
            Some(p) => format!("{namespace}:{{{}:{p}}}:", kind.as_str()),
        };
        Self { prefix: prefix.into() }
    }
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
    /// The prefix followed by `parts`.
    fn joined(&self, parts: &[&str]) -> String {
        let mut key = String::with_capacity(self.prefix.len() + parts.iter().map(|p| p.len()).sum::<usize>());
        key.push_str(&self.prefix);
        for part in parts {
            key.push_str(part);
        }
        key
    }
    pub fn key(&self, suffix: &str) -> String {
        self.joined(&[suffix])
    }
    pub fn job(&self, id: &JobId) -> String {
        self.joined(&["job:", id.as_str()])
    }
    pub fn attempts(&self, id: &JobId) -> String {
        self.joined(&["attempts:", id.as_str()])
    }
    /// One of an account's keys in this queue: `<what>:<account>` (its lane `rq`, counts
    /// `as`, running jobs `hold`, exclusive sync `excl`, ...).
    pub fn of_account(&self, what: &str, account: &str) -> String {
        self.joined(&[what, ":", account])
    }
    /// Declares in `call` this queue's keys named in each of `sets`.
    pub(crate) fn declare(&self, call: &mut crate::redis_conn::Call, sets: &[&[&str]]) {
        for suffix in sets.iter().flat_map(|set| set.iter()) {
            call.key(self.key(suffix));
        }
    }
    /// A key in this queue's slot, named as every script's `KEYS[1]` so a Cluster client
    /// routes the call there (nothing is stored under it).
    pub fn slot_key(&self) -> String {
        self.key("slot")
    }
    pub fn marker(&self) -> String {
        self.key("marker")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_keys_of_a_queue_share_one_hash_tag() {
        let k = QueueKeys::new("drover", JobKind::Sync, None);
        assert_eq!(k.slot_key(), "drover:{sync}:slot");
        assert!(k.marker().starts_with("drover:{sync}:"));
        let p = QueueKeys::new("drover", JobKind::Cleanup, Some(7));
        assert_eq!(p.slot_key(), "drover:{cleanup:7}:slot");
    }
}
