//! Pausing and resuming a kind on Redis: every partition's flag changes, or none does.
use std::time::Instant;

use redis::Value;

use super::RedisStore;
use crate::job::JobKind;
use crate::queue::{QueueKeys, StoreError};
use crate::redis_conn::query_grouped_each;

impl RedisStore {
    /// Sets every partition of `kind` paused or not. On a cluster a shard may refuse or
    /// not answer while the others change: the partitions that changed are put back as
    /// they were, so a failed call (an error for the caller, who may try again) leaves
    /// the queue as it found it — before, found by the second round of audits of
    /// 2026-12-07, it left the other shards' partitions paused.
    pub(super) async fn pause_all(&self, kind: JobKind, paused: bool) -> Result<(), StoreError> {
        let parts = self.all_keys(kind);
        if !paused {
            let mut visits = self.visits[kind.index()].lock().unwrap_or_else(|e| e.into_inner());
            for p in 0..parts.len() {
                visits.woken(p, Instant::now());
            }
        }
        let tags: Vec<String> = parts.iter().map(QueueKeys::slot_key).collect();
        // Each partition's flag as it was comes back first, for the undo.
        let groups = query_grouped_each(
            &self.conn,
            &tags,
            None,
            |pipe, i| {
                let k = &parts[i];
                if paused {
                    pipe.cmd("SET").arg(k.key("paused")).arg(1).arg("GET");
                } else {
                    pipe.cmd("GETDEL").arg(k.key("paused")).lpush(k.marker(), 1).ltrim(k.marker(), 0, 0);
                }
            },
            None,
        )
        .await;
        let mut failure = None;
        let mut changed: Vec<(usize, Option<Vec<u8>>)> = Vec::new();
        for group in groups {
            match group.result {
                Ok((per_item, _)) => {
                    for (i, replies) in group.items.iter().zip(per_item) {
                        let was = replies.into_iter().next().unwrap_or(Value::Nil);
                        changed.push((*i, redis::from_redis_value(was).unwrap_or(None)));
                    }
                }
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        let Some(failure) = failure else { return Ok(()) };
        // What a pause set where nothing was, or a resume took away, is put back.
        let undo: Vec<(usize, Option<Vec<u8>>)> = changed.into_iter().filter(|(_, was)| paused == was.is_none()).collect();
        if undo.is_empty() {
            return Err(failure.into());
        }
        let undo_tags: Vec<String> = undo.iter().map(|(i, _)| tags[*i].clone()).collect();
        let undone = query_grouped_each(
            &self.conn,
            &undo_tags,
            None,
            |pipe, j| {
                let (i, was) = &undo[j];
                let k = &parts[*i];
                match was {
                    // a partition a failed pause stopped runs again: its fetchers are woken
                    None => pipe.del(k.key("paused")).lpush(k.marker(), 1).ltrim(k.marker(), 0, 0),
                    Some(v) => pipe.set(k.key("paused"), v),
                };
            },
            None,
        )
        .await;
        let left: usize = undone.iter().filter(|g| g.result.is_err()).map(|g| g.items.len()).sum();
        let what = if paused { "paused" } else { "resumed" };
        if left > 0 {
            tracing::error!(kind = %kind, partitions = left, error = %failure, "a {what} queue's partitions could not all be put back after a shard failed the change; try the change again");
        } else {
            tracing::debug!(kind = %kind, error = %failure, "a shard failed the queue's change; the other partitions were put back as they were");
        }
        Err(failure.into())
    }
}
