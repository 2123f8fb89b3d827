//! Reading jobs on Redis: records (with their attempts and callback deliveries) and
//! why each waits, many at once in as few round trips as the deployment allows.
use redis::Value;

use super::by_job::waiting_call;
use super::{parse_err, RedisStore};
use crate::job::{Job, JobId};
use crate::queue::codec::{decode_job, Fields};
use crate::queue::{scripts, QueueKeys, StoreError, Waiting};

impl RedisStore {
    /// [`JobStore::waiting`] for many jobs, each with its account (as its record says:
    /// a job of another account is answered `None`), in one round trip (listings), in
    /// order.
    pub async fn waiting_many(&self, jobs: &[(&JobId, &str)]) -> Result<Vec<Option<Waiting>>, StoreError> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<QueueKeys> = jobs.iter().map(|(id, _)| self.job_keys(id)).collect();
        let tags: Vec<String> = keys.iter().map(QueueKeys::slot_key).collect();
        let replies = self
            .grouped(&tags, Some(&scripts::LIBRARY), |pipe, i| {
                let inv = waiting_call(&keys[i], jobs[i].0, jobs[i].1);
                inv.add_to(pipe);
            })
            .await?;
        replies
            .into_iter()
            .map(|r| {
                let reply: Vec<String> = redis::from_redis_value(r.into_iter().next().unwrap_or(Value::Nil)).map_err(parse_err)?;
                Waiting::from_reply(reply)
            })
            .collect()
    }

    pub(super) async fn load_jobs(&self, ids: &[JobId], with_attempts: bool) -> Result<Vec<Option<Job>>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<QueueKeys> = ids.iter().map(|id| self.job_keys(id)).collect();
        let tags: Vec<String> = keys.iter().map(QueueKeys::slot_key).collect();
        let replies = self
            .grouped(&tags, None, |pipe, i| {
                let (id, k) = (&ids[i], &keys[i]);
                pipe.hgetall(k.job(id));
                if with_attempts {
                    pipe.lrange(k.attempts(id), 0, -1);
                    pipe.lrange(k.key(&format!("callbacks:{id}")), 0, -1);
                }
            })
            .await?;
        let mut out = Vec::with_capacity(ids.len());
        for (id, values) in ids.iter().zip(replies) {
            let mut it = values.into_iter();
            let fields: Vec<String> = redis::from_redis_value(it.next().unwrap_or(Value::Nil)).map_err(parse_err)?;
            let (attempts, deliveries): (Vec<String>, Vec<String>) = if with_attempts {
                (
                    redis::from_redis_value(it.next().unwrap_or(Value::Nil)).map_err(parse_err)?,
                    redis::from_redis_value(it.next().unwrap_or(Value::Nil)).map_err(parse_err)?,
                )
            } else {
                (Vec::new(), Vec::new())
            };
            if fields.is_empty() {
                out.push(None);
            } else {
                out.push(Some(decode_job(id, &Fields::from_pairs(fields), attempts, deliveries)?));
            }
        }
        Ok(out)
    }
}
