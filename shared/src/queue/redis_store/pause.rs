//! Pausing and resuming a kind on Redis: a change that a shard refused is undone on the
//! partitions that took it.
use std::time::Instant;

use redis::Value;

use super::RedisStore;
use crate::job::JobKind;
use crate::queue::{QueueKeys, StoreError};
use crate::redis_conn::query_grouped_each;

/// Deletes a pause flag only if it is still the one this call set (another caller's
/// pause since then stands).
const DELETE_IF_OURS: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

impl RedisStore {
    /// Sets every partition of `kind` paused or not. On a cluster a shard may refuse the
    /// change while the others take it: when every shard that failed it refused it (a
    /// server's error answer, a refused connection: the change did not happen there), the
    /// partitions that took it are put back as they were, so the failed call leaves the
    /// queue as it found it — before, found by the second round of audits of 2026-12-07,
    /// it left the other shards' partitions paused. A shard that did not answer may still
    /// apply the change when it does, so then nothing is undone: the caller's error says
    /// the change is unknown there, and trying again settles it.
    pub(super) async fn pause_all(&self, kind: JobKind, paused: bool) -> Result<(), StoreError> {
        let parts = self.all_keys(kind);
        let tags: Vec<String> = parts.iter().map(QueueKeys::slot_key).collect();
        // This call's own flag, so that its undo takes away nothing another caller set.
        let token = format!("{:016x}", rand::random::<u64>());
        // One command a partition, answering the flag as it was (for the undo).
        let groups = query_grouped_each(
            &self.conn,
            &tags,
            None,
            |pipe, i| {
                let k = &parts[i];
                if paused {
                    pipe.cmd("SET").arg(k.key("paused")).arg(&token).arg("GET");
                } else {
                    pipe.cmd("GETDEL").arg(k.key("paused"));
                }
            },
            None,
        )
        .await;
        let mut failure = None;
        let mut all_refused = true;
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
                    // a server's answer (also a pipeline's), or no connection made
                    all_refused &= e.code().is_some() || e.clone().into_server_errors().is_some() || e.is_connection_refusal();
                    failure.get_or_insert(e);
                }
            }
        }
        if !paused {
            self.wake_all(kind, &parts, &tags, changed.iter().map(|(i, _)| *i).collect()).await;
        }
        let Some(failure) = failure else { return Ok(()) };
        if !all_refused {
            tracing::warn!(kind = %kind, paused, partitions_changed = changed.len(), error = %failure, "a shard did not answer the queue's pause change, which it may still apply; the partitions that took it keep it until the change is tried again");
            return Err(failure.into());
        }
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
                    None => pipe.cmd("EVAL").arg(DELETE_IF_OURS).arg(1).arg(k.key("paused")).arg(&token),
                    // set again unless another caller paused it since
                    Some(v) => pipe.cmd("SET").arg(k.key("paused")).arg(v.as_slice()).arg("NX"),
                };
            },
            None,
        )
        .await;
        let left: usize = undone.iter().filter(|g| g.result.is_err()).map(|g| g.items.len()).sum();
        if left > 0 {
            tracing::error!(kind = %kind, partitions = left, error = %failure, paused, "a shard refused the queue's pause change and it could not be undone everywhere; try the change again");
        }
        Err(failure.into())
    }

    /// Wakes the fetchers of the partitions `resumed` (indexes into `parts`): this
    /// store's own at once, other processes' by each partition's marker. Apart from the
    /// change, so that a marker refused (at the memory limit) fails no resume; a fetcher
    /// not woken visits at its next sweep.
    async fn wake_all(&self, kind: JobKind, parts: &[QueueKeys], tags: &[String], resumed: Vec<usize>) {
        {
            let mut visits = self.visits[kind.index()].lock().unwrap_or_else(|e| e.into_inner());
            for p in &resumed {
                visits.woken(*p, Instant::now());
            }
        }
        let wake_tags: Vec<String> = resumed.iter().map(|i| tags[*i].clone()).collect();
        for group in query_grouped_each(
            &self.conn,
            &wake_tags,
            None,
            |pipe, j| {
                let k = &parts[resumed[j]];
                pipe.lpush(k.marker(), 1).ltrim(k.marker(), 0, 0);
            },
            None,
        )
        .await
        {
            if let Err(e) = group.result {
                tracing::debug!(kind = %kind, error = %e, "a resumed partition's fetchers were not woken; they visit at their next sweep");
            }
        }
    }
}
