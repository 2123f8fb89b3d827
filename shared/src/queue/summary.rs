//! Reading jobs without their payload, result or attempt history: what listings and event
//! streams need, at a cost that does not grow with what a tenant put in the payload.
//!
//! [`RedisStore::list_summaries`] pages exactly as `JobStore::list` does (the store's
//! `page_ids`) and differs only in what it reads per job.
use redis::Value;

use super::codec::{decode_job, Fields};
use super::{Cursor, ListQuery, RedisStore, StoreError};
use crate::job::{Job, JobId};

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
    /// and one `HSTRLEN` per job, in one round trip (one per shard on a cluster).
    pub async fn summaries(&self, ids: &[JobId]) -> Result<Vec<Option<JobSummary>>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = ids.iter().map(|id| self.job_keys(id).job(id)).collect();
        let replies = self
            .grouped(&keys, None, |pipe, i| {
                pipe.cmd("HMGET").arg(&keys[i]).arg(&SUMMARY_FIELDS[..]);
                pipe.cmd("HSTRLEN").arg(&keys[i]).arg("p");
            })
            .await?;
        let mut out = Vec::with_capacity(ids.len());
        for (id, values) in ids.iter().zip(replies) {
            let mut it = values.into_iter();
            let fields: Vec<Option<String>> = redis::from_redis_value(it.next().unwrap_or(Value::Nil)).map_err(protocol)?;
            let payload_bytes: u64 = redis::from_redis_value(it.next().unwrap_or(Value::Nil)).map_err(protocol)?;
            if fields.first().is_none_or(Option::is_none) {
                out.push(None);
                continue;
            }
            let job = decode_job(id, &Fields::from_values(&SUMMARY_FIELDS, fields), Vec::new(), Vec::new())?;
            out.push(Some(JobSummary { job, payload_bytes }));
        }
        Ok(out)
    }

    /// One job's summary.
    pub async fn summary(&self, id: &JobId) -> Result<Option<JobSummary>, StoreError> {
        Ok(self.summaries(std::slice::from_ref(id)).await?.pop().flatten())
    }
}

/// One page of summaries, newest first, and how many job records its filter read to
/// choose them (none when unfiltered: the API charges a key's read budget for them).
#[derive(Debug, Clone, Default)]
pub struct SummaryPage {
    pub jobs: Vec<JobSummary>,
    pub next: Option<Cursor>,
    pub records_read: u64,
}

impl RedisStore {
    /// [`JobStore::list`](super::JobStore::list), reading summaries: the payload and the
    /// result are never loaded, however large.
    pub async fn list_summaries(&self, query: &ListQuery) -> Result<SummaryPage, StoreError> {
        let page = self.page_ids(query).await?;
        Ok(SummaryPage {
            jobs: self.summaries(&page.ids).await?.into_iter().flatten().collect(),
            next: page.next,
            records_read: page.records_read,
        })
    }
}

fn protocol(e: impl std::fmt::Display) -> StoreError {
    StoreError::Protocol(e.to_string())
}
