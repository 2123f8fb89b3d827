//! Reading jobs without their payload, result or attempt history: what listings and event
//! streams need, at a cost that does not grow with what a tenant put in the payload.
//!
//! [`RedisStore::list_summaries`] pages the same indexes with the same `list` script as
//! `JobStore::list` and differs only in what it reads per job. (Kept apart from
//! `redis_store.rs` while the listing there is being reworked: once `list` reads
//! summaries itself, this one can go.)
use redis::Value;

use super::codec::{decode_job, Fields};
use super::{scripts, Cursor, ListQuery, RedisStore, StoreError};
use crate::job::{Job, JobId, JobKind, JobState};

/// The job-hash fields a summary reads: all but the payload (`p`) and the result (`rs`).
const SUMMARY_FIELDS: [&str; 17] = [
    "st", "acct", "pr", "at", "ma", "to", "ca", "ua", "ra", "sa", "fa", "pg", "er", "tp", "w", "cx", "tg",
];

/// A job as listings show it: `job.payload` is null, `job.result` none and the attempt
/// history empty; `payload_bytes` says how large the stored payload is.
#[derive(Debug, Clone)]
pub struct JobSummary {
    pub job: Job,
    pub payload_bytes: u64,
}

impl RedisStore {
    /// Summaries of `ids`, in order; `None` for a job that does not exist. One `HMGET`
    /// and one `HSTRLEN` per job, in one round trip.
    pub async fn summaries(&self, ids: &[JobId]) -> Result<Vec<Option<JobSummary>>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in ids {
            let key = self.keys(id.kind()).job(id);
            pipe.cmd("HMGET").arg(&key).arg(&SUMMARY_FIELDS[..]);
            pipe.cmd("HSTRLEN").arg(&key).arg("p");
        }
        let values: Vec<Value> = pipe.query_async(&mut self.connection()).await?;
        let mut it = values.into_iter();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let fields: Vec<Option<String>> = redis::from_redis_value(it.next().unwrap_or(Value::Nil)).map_err(protocol)?;
            let payload_bytes: u64 = redis::from_redis_value(it.next().unwrap_or(Value::Nil)).map_err(protocol)?;
            if fields.first().is_none_or(Option::is_none) {
                out.push(None);
                continue;
            }
            let job = decode_job(id, &Fields::from_values(&SUMMARY_FIELDS, fields), Vec::new())?;
            out.push(Some(JobSummary { job, payload_bytes }));
        }
        Ok(out)
    }

    /// One job's summary.
    pub async fn summary(&self, id: &JobId) -> Result<Option<JobSummary>, StoreError> {
        Ok(self.summaries(std::slice::from_ref(id)).await?.pop().flatten())
    }
}

/// One page of summaries, newest first.
#[derive(Debug, Clone, Default)]
pub struct SummaryPage {
    pub jobs: Vec<JobSummary>,
    pub next: Option<Cursor>,
}

/// (score, id) where a kind's scan stands.
type Position = (String, String);

struct Scan {
    kind: JobKind,
    after: Option<Position>,
    offered: usize,
    last_scanned: Option<Position>,
    more: bool,
}

impl RedisStore {
    /// [`JobStore::list`](super::JobStore::list), reading summaries: the payload and the
    /// result are never loaded, however large.
    pub async fn list_summaries(&self, query: &ListQuery) -> Result<SummaryPage, StoreError> {
        let kinds: Vec<JobKind> = if query.kinds.is_empty() {
            JobKind::ALL.to_vec()
        } else {
            query.kinds.clone()
        };
        let mut candidates: Vec<(JobKind, String, String)> = Vec::new();
        let mut scans = Vec::new();
        for kind in kinds {
            let after = match &query.cursor {
                None => None,
                Some(c) => match c.positions.iter().find(|(k, _, _)| *k == kind) {
                    Some((_, score, id)) => Some((score.clone(), id.clone())),
                    None => continue, // this kind was exhausted on an earlier page
                },
            };
            let (pairs, last, more) = self.page_of_index(kind, query, after.as_ref()).await?;
            scans.push(Scan {
                kind,
                after,
                offered: pairs.len(),
                last_scanned: last,
                more,
            });
            candidates.extend(pairs.into_iter().map(|(id, score)| (kind, score, id)));
        }
        let num = |s: &str| s.parse::<f64>().unwrap_or(f64::INFINITY);
        candidates.sort_by(|a, b| num(&b.1).total_cmp(&num(&a.1)).then_with(|| b.2.cmp(&a.2)));
        candidates.truncate(query.limit);
        let mut positions = Vec::new();
        for scan in scans {
            let taken: Vec<&(JobKind, String, String)> = candidates.iter().filter(|c| c.0 == scan.kind).collect();
            if taken.len() < scan.offered {
                // Some of this kind's entries did not fit: resume right after the last one shown.
                let pos = match taken.last() {
                    Some(t) => (t.1.clone(), t.2.clone()),
                    None => scan.after.unwrap_or_else(|| ("+inf".to_owned(), String::new())),
                };
                positions.push((scan.kind, pos.0, pos.1));
            } else if scan.more {
                if let Some((s, i)) = scan.last_scanned {
                    positions.push((scan.kind, s, i));
                }
            }
        }
        let ids: Vec<JobId> = candidates.iter().filter_map(|c| c.2.parse().ok()).collect();
        Ok(SummaryPage {
            jobs: self.summaries(&ids).await?.into_iter().flatten().collect(),
            next: (!positions.is_empty()).then_some(Cursor { positions }),
        })
    }

    /// One page of one kind's index: (id, score) pairs, the last position scanned and
    /// whether the index goes on.
    async fn page_of_index(
        &self,
        kind: JobKind,
        query: &ListQuery,
        after: Option<&Position>,
    ) -> Result<(Vec<(String, String)>, Option<Position>, bool), StoreError> {
        let keys = self.keys(kind);
        let (index, state_filter) = match (query.state, &query.account_id) {
            (Some(JobState::Queued), _) => (keys.ready(), ""),
            (Some(JobState::Running), _) => (keys.key("active"), ""),
            (Some(JobState::Scheduled), _) => (keys.key("scheduled"), "scheduled"),
            (Some(JobState::Retrying), _) => (keys.key("retrying"), ""),
            (Some(s), _) => (keys.key(&format!("state:{s}")), ""),
            (None, Some(acct)) => (keys.key(&format!("acct:{acct}")), ""),
            (None, None) => (keys.key("all"), ""),
        };
        let acct_filter = match (query.state, &query.account_id) {
            (Some(_), Some(a)) => a.as_str(),
            _ => "",
        };
        let (max_score, cursor_id) = after.map_or(("+inf", ""), |(s, i)| (s.as_str(), i.as_str()));
        let reply: (Vec<String>, String, String, i64) = scripts::LIST
            .key(&index)
            .arg(keys.prefix())
            .arg(max_score)
            .arg(cursor_id)
            .arg(query.limit)
            .arg(state_filter)
            .arg(acct_filter)
            .arg(query.limit.saturating_mul(20).max(2000))
            .invoke_async(&mut self.connection())
            .await?;
        let (flat, last_score, last_id, more) = reply;
        let pairs = flat
            .chunks(2)
            .filter(|c| c.len() == 2)
            .map(|c| (c[0].clone(), c[1].clone()))
            .collect();
        let last = (!last_id.is_empty()).then_some((last_score, last_id));
        Ok((pairs, last, more == 1))
    }
}

fn protocol(e: impl std::fmt::Display) -> StoreError {
    StoreError::Protocol(e.to_string())
}
