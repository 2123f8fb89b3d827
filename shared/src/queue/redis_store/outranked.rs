//! Which of a worker's runs should give way to a more urgent job of their own account:
//! one whose account is at its cap of running jobs while its lane holds a job of a
//! higher priority than the run's. Such a job gets no turn of its own (the lane is set
//! aside in `blocked` until a run of the account ends), so without this it waited for
//! the end of the account's running job, or its slice, whatever its priority.
use std::collections::HashMap;

use redis::Value;

use super::{parse_err, RedisStore};
use crate::job::JobId;
use crate::queue::StoreError;
use crate::redis_conn::query_grouped;

/// The lane score's band: `(9 − priority) · BAND + ready ms` (`common.lua`'s `BAND`).
const BAND: f64 = 1e13;

/// What one run's reads found: its own priority, and the best priority queued in its
/// account's lane while the account is at its cap.
struct Reading {
    priority: u8,
    waiting: Option<u8>,
}

impl RedisStore {
    pub(super) async fn outranked_runs(&self, runs: &[(JobId, String)]) -> Result<Vec<JobId>, StoreError> {
        if runs.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<_> = runs.iter().map(|(id, _)| self.job_keys(id)).collect();
        let tags: Vec<String> = keys.iter().map(|k| k.slot_key()).collect();
        // Plain reads, one round trip (per shard on a cluster): each run's priority,
        // whether its account's lane is set aside at the cap, and that lane's head.
        let replies = query_grouped(&self.conn, &tags, None, |pipe, i| {
            let (id, account) = &runs[i];
            let k = &keys[i];
            pipe.hget(k.job(id), "pr")
                .hexists(k.key("blocked"), account)
                .zrange_withscores(k.of_account("rq", account), 0, 0);
        })
        .await?;
        let mut readings = Vec::with_capacity(runs.len());
        for values in replies {
            readings.push(reading(values)?);
        }
        Ok(pick(runs, &readings))
    }
}

fn reading(values: Vec<Value>) -> Result<Reading, StoreError> {
    let (priority, blocked, head): (Option<String>, bool, Vec<(String, f64)>) =
        redis::from_redis_value(Value::Array(values)).map_err(parse_err)?;
    let priority = priority.and_then(|p| p.parse().ok()).unwrap_or(0);
    let waiting = match head.first() {
        Some((_, score)) if blocked => Some(9 - ((score / BAND).floor() as i64).clamp(0, 9) as u8),
        _ => None,
    };
    Ok(Reading { priority, waiting })
}

/// For each account at its cap with a job queued more urgent than some of its runs, the
/// least urgent of those runs (the first given, among equals).
fn pick(runs: &[(JobId, String)], readings: &[Reading]) -> Vec<JobId> {
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
    picked.into_iter().map(|i| runs[i].0.clone()).collect()
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
        let runs = [run("a"), run("a"), run("b"), run("c"), run("d")];
        let at = |priority, waiting| Reading { priority, waiting };
        let readings = [
            at(3, Some(7)),
            at(1, Some(7)),
            at(5, Some(5)), // b: nothing more urgent waits
            at(0, None),    // c: not at its cap
            at(2, Some(9)),
        ];
        let picked = pick(&runs, &readings);
        assert_eq!(picked, vec![runs[1].0.clone(), runs[4].0.clone()]);
    }

    #[test]
    fn a_lane_head_is_read_as_its_priority_only_while_the_account_is_at_its_cap() {
        // (as RESP2 answers `ZRANGE … WITHSCORES`: member, score, flat)
        let head = |p: f64| {
            let score = ((9.0 - p) * BAND + 1.7e12).to_string();
            Value::Array(vec![Value::BulkString(b"j".to_vec()), Value::BulkString(score.into_bytes())])
        };
        let values = |pr: Option<&str>, blocked: i64, lane: Value| {
            vec![
                pr.map_or(Value::Nil, |p| Value::BulkString(p.as_bytes().to_vec())),
                Value::Int(blocked),
                lane,
            ]
        };
        let r = reading(values(Some("2"), 1, head(9.0))).unwrap();
        assert_eq!((r.priority, r.waiting), (2, Some(9)));
        let r = reading(values(None, 1, head(0.0))).unwrap();
        assert_eq!((r.priority, r.waiting), (0, Some(0)));
        let r = reading(values(Some("1"), 0, head(9.0))).unwrap();
        assert_eq!(r.waiting, None, "not at its cap: the lane has turns of its own");
        let r = reading(values(Some("1"), 1, Value::Array(vec![]))).unwrap();
        assert_eq!(r.waiting, None, "nothing queued");
    }
}
