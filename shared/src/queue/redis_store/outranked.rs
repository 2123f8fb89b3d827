//! Which of a worker's runs should give way to a more urgent job of their own account:
//! one whose account is at its cap of running jobs while its lane holds a job of a
//! higher priority than the run's. Such a job gets no turn of its own (the lane is set
//! aside in `blocked` until a run of the account ends), so without this it waited for
//! the end of the account's running job, or its slice, whatever its priority.
//!
//! Plain reads, each partition's in one pipeline and each shard's on its own (one that
//! fails or hangs answers for its runs only): first whether the queue leases at all
//! and which of the runs' accounts are set aside — all a tick costs while none is —
//! then, for those accounts only, the runs' priorities and the lanes' heads.
use std::collections::HashMap;

use redis::Value;

use super::{parse_err, RedisStore};
use crate::job::JobId;
use crate::queue::{QueueKeys, StoreError};
use crate::redis_conn::query_grouped_each;

/// The lane score's band: `(9 − priority) · BAND + ready ms` (`common.lua`'s `BAND`).
const BAND: f64 = 1e13;

/// One partition's runs: their positions in the question, and their distinct accounts.
struct Queue<'a> {
    keys: QueueKeys,
    runs: Vec<(usize, &'a (JobId, String))>,
    accounts: Vec<&'a str>,
}

/// What one run's reads found: its own priority, and the best priority queued in its
/// account's lane while the account is at its cap.
struct Reading {
    priority: u8,
    waiting: Option<u8>,
}

impl RedisStore {
    pub(super) async fn outranked_runs(&self, runs: &[(JobId, String)]) -> Result<Vec<usize>, StoreError> {
        let Some((first, _)) = runs.first() else { return Ok(Vec::new()) };
        if self.defaults.per_account[first.kind().index()] == 0 {
            return Ok(Vec::new());
        }
        let queues: Vec<Queue<'_>> = self
            .by_queue(runs, |r| &r.0)
            .into_iter()
            .map(|(keys, runs)| {
                let mut accounts: Vec<&str> = runs.iter().map(|(_, (_, a))| a.as_str()).collect();
                accounts.sort_unstable();
                accounts.dedup();
                Queue { keys, runs, accounts }
            })
            .collect();
        let blocked = self.blocked_accounts(&queues).await?;
        let mut readings: Vec<Reading> = runs
            .iter()
            .map(|_| Reading {
                priority: 0,
                waiting: None,
            })
            .collect();
        self.read_blocked(&queues, &blocked, &mut readings).await?;
        Ok(pick(runs, &readings))
    }

    /// Per queue, its runs' accounts set aside at their caps (none for a queue that is
    /// paused or held after a restart — it leases nothing, so a run giving way would
    /// leave its slot idle — or that did not answer).
    async fn blocked_accounts<'a>(&self, queues: &[Queue<'a>]) -> Result<Vec<Vec<&'a str>>, StoreError> {
        let tags: Vec<String> = queues.iter().map(|q| q.keys.slot_key()).collect();
        let replies = query_grouped_each(
            &self.conn,
            &tags,
            None,
            |pipe, i| {
                let q = &queues[i];
                pipe.cmd("HMGET").arg(q.keys.key("blocked")).arg(&q.accounts);
                pipe.exists(&[q.keys.key("paused"), q.keys.key("restarted")]);
            },
            None,
        )
        .await;
        let mut blocked = vec![Vec::new(); queues.len()];
        let (mut answered, mut failed) = (false, None);
        for group in replies {
            let per_item = match group.result {
                Ok((per_item, _)) => per_item,
                Err(e) => {
                    failed.get_or_insert(e);
                    continue;
                }
            };
            answered = true;
            for (i, values) in group.items.into_iter().zip(per_item) {
                let (caps, held): (Vec<Option<String>>, u64) = redis::from_redis_value(Value::Array(values)).map_err(parse_err)?;
                if held == 0 {
                    let q = &queues[i];
                    blocked[i] = q
                        .accounts
                        .iter()
                        .zip(caps)
                        .filter(|(_, cap)| cap.is_some())
                        .map(|(a, _)| *a)
                        .collect();
                }
            }
        }
        match failed {
            Some(e) if !answered => Err(e.into()),
            _ => Ok(blocked),
        }
    }

    /// For the runs of the accounts set aside: each one's priority and its lane's best.
    async fn read_blocked(&self, queues: &[Queue<'_>], blocked: &[Vec<&str>], readings: &mut [Reading]) -> Result<(), StoreError> {
        let asked: Vec<usize> = (0..queues.len()).filter(|&i| !blocked[i].is_empty()).collect();
        if asked.is_empty() {
            return Ok(());
        }
        let runs_of = |i: usize| queues[i].runs.iter().filter(move |(_, (_, a))| blocked[i].contains(&a.as_str()));
        let tags: Vec<String> = asked.iter().map(|&i| queues[i].keys.slot_key()).collect();
        let replies = query_grouped_each(
            &self.conn,
            &tags,
            None,
            |pipe, n| {
                let i = asked[n];
                let k = &queues[i].keys;
                for account in &blocked[i] {
                    pipe.zrange_withscores(k.of_account("rq", account), 0, 0);
                }
                for (_, (id, _)) in runs_of(i) {
                    pipe.hget(k.job(id), "pr");
                }
            },
            None,
        )
        .await;
        for group in replies {
            // a partition that did not answer outranks none of its runs
            let Ok((per_item, _)) = group.result else { continue };
            for (n, values) in group.items.into_iter().zip(per_item) {
                let i = asked[n];
                let mut values = values.into_iter();
                let mut best = HashMap::new();
                for account in &blocked[i] {
                    let head: Vec<(String, f64)> = redis::from_redis_value(values.next().unwrap_or(Value::Nil)).map_err(parse_err)?;
                    if let Some((_, score)) = head.first() {
                        best.insert(*account, priority_of(*score));
                    }
                }
                for (at, (_, account)) in runs_of(i) {
                    let pr: Option<String> = redis::from_redis_value(values.next().unwrap_or(Value::Nil)).map_err(parse_err)?;
                    readings[*at] = Reading {
                        priority: pr.and_then(|p| p.parse().ok()).unwrap_or(0),
                        waiting: best.get(account.as_str()).copied(),
                    };
                }
            }
        }
        Ok(())
    }
}

/// The priority of a lane entry's score.
fn priority_of(score: f64) -> u8 {
    9 - ((score / BAND).floor() as i64).clamp(0, 9) as u8
}

/// For each account at its cap with a job queued more urgent than some of its runs, the
/// position of the least urgent of those runs (the first given, among equals).
fn pick(runs: &[(JobId, String)], readings: &[Reading]) -> Vec<usize> {
    let mut least: HashMap<&str, (u8, usize)> = HashMap::new();
    for (i, ((_, account), r)) in runs.iter().zip(readings).enumerate() {
        let Some(waiting) = r.waiting else { continue };
        if r.priority >= waiting {
            continue;
        }
        least
            .entry(account.as_str())
            .and_modify(|(p, at)| {
                if r.priority < *p {
                    (*p, *at) = (r.priority, i);
                }
            })
            .or_insert((r.priority, i));
    }
    let mut picked: Vec<usize> = least.into_values().map(|(_, i)| i).collect();
    picked.sort_unstable();
    picked
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::JobKind;

    fn run(account: &str) -> (JobId, String) {
        (JobId::new(JobKind::Cleanup), account.to_owned())
    }

    #[test]
    fn the_least_urgent_run_of_each_account_with_a_more_urgent_job_waiting_is_picked() {
        let runs = [run("a"), run("a"), run("b"), run("c"), run("d"), run("d")];
        let at = |priority, waiting| Reading { priority, waiting };
        let readings = [
            at(3, Some(7)),
            at(1, Some(7)),
            at(5, Some(5)), // b: nothing more urgent waits
            at(0, None),    // c: not at its cap
            at(2, Some(9)),
            at(2, Some(9)), // d: equals, the first given goes
        ];
        assert_eq!(pick(&runs, &readings), vec![1, 4]);
    }

    #[test]
    fn a_lane_score_reads_as_its_priority() {
        assert_eq!(priority_of(1.7e12), 9);
        assert_eq!(priority_of(9.0 * BAND + 1.7e12), 0);
        assert_eq!(priority_of(4.0 * BAND + 1.7e12), 5);
        assert_eq!(priority_of(-1.0), 9, "a score below the bands is the highest");
    }
}
