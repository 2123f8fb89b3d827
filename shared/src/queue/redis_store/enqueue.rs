//! Enqueueing on Redis: a job's script arguments, single enqueues made at the same moment
//! carried by one group-committed call, and bulk enqueues pipelined per queue.
use std::sync::Arc;

use redis::Value;
use sha2::{Digest, Sha256};

use super::{parse_err, RedisStore, MAX_BATCH};
use crate::group_commit::GroupCommit;
use crate::job::JobId;
use crate::queue::keys::LANE_OFFER;
use crate::queue::needs::{needed, NEED_ROUNDS};
use crate::queue::{durability, enqueue_reply, scripts, EnqueueError, Enqueued, NewJob, QueueKeys, StoreError};
use crate::redis_conn::query_grouped_each;

/// Arguments per job in the enqueue script: a plain job's, and one with any option set.
const ENQUEUE_ARGS_PLAIN: usize = 7;
const ENQUEUE_ARGS_FULL: usize = 17;

/// The queue's own keys an enqueue touches besides those of offering a lane (and its
/// jobs' and accounts').
const ENQUEUE_KEYS: [&str; 11] = [
    "all",
    "refused",
    "acdone",
    "dgdone",
    "dgjdone",
    "dgndone",
    "scheduled",
    "paused",
    "unstarted",
    "seen",
    "restarted",
];

/// Most single enqueues one group-committed call carries.
const MAX_GROUP: usize = 256;

/// A job ready for the enqueue script: its id and script arguments.
type Prepared = (JobId, Vec<String>);

/// One single enqueue's job, waiting for a group-committed call to carry it.
pub(super) struct Waiter {
    id: JobId,
    args: Vec<String>,
    reply: tokio::sync::oneshot::Sender<Result<Enqueued, EnqueueError>>,
}

impl RedisStore {
    pub(super) async fn enqueue_one(&self, job: NewJob) -> Result<Enqueued, EnqueueError> {
        let (id, args) = self.enqueue_args(&job)?;
        let group = self.group_of(&id);
        let (reply, answer) = tokio::sync::oneshot::channel();
        let waiter = Waiter { id, args, reply };
        if group.join(waiter) {
            // A task of its own, so a caller that gives up never strands the others.
            tokio::spawn(self.clone().commit_enqueues(group));
        }
        answer
            .await
            .unwrap_or_else(|_| Err(StoreError::Protocol("the enqueue call ended without an answer; its outcome is unknown".into()).into()))
    }

    pub(super) async fn enqueue_all(&self, jobs: Vec<NewJob>) -> Result<Vec<Result<Enqueued, EnqueueError>>, StoreError> {
        let prepared: Vec<Result<Prepared, EnqueueError>> = jobs.into_iter().map(|j| self.enqueue_args(&j)).collect();
        let mut results: Vec<Option<Result<Enqueued, EnqueueError>>> = Vec::with_capacity(prepared.len());
        let mut ready = Vec::new();
        for p in prepared {
            match p {
                Ok(job) => {
                    ready.push((results.len(), job));
                    results.push(None);
                }
                Err(e) => results.push(Some(Err(e))),
            }
        }
        let (slots, jobs): (Vec<usize>, Vec<Prepared>) = ready.into_iter().unzip();
        for (slot, r) in slots.into_iter().zip(self.enqueue_many(&jobs).await?) {
            results[slot] = Some(r);
        }
        results
            .into_iter()
            .map(|r| r.ok_or_else(|| StoreError::Protocol("short bulk enqueue reply".into())))
            .collect()
    }

    fn enqueue_args(&self, job: &NewJob) -> Result<Prepared, EnqueueError> {
        let kind = job.payload.kind();
        if job.priority > 9 {
            return Err(EnqueueError::Invalid("priority must be between 0 and 9".into()));
        }
        if job.max_attempts == Some(0) {
            return Err(EnqueueError::Invalid("max_attempts must be at least 1".into()));
        }
        let payload = serde_json::to_string(&job.payload).map_err(|e| EnqueueError::Invalid(e.to_string()))?;
        let max_attempts = job.max_attempts.unwrap_or(self.defaults.max_attempts);
        let timeout = job.timeout.unwrap_or(self.defaults.timeout);
        let run_at = job.run_at.map(|t| t.timestamp_millis().max(1)).unwrap_or(0);
        let delay = job.delay.map(|d| d.as_millis() as i64).unwrap_or(0);
        let idem = job.idempotency_key.clone().unwrap_or_default();
        // The fingerprint is over everything that shapes the job, so the same key with
        // another request is a conflict rather than a silent replay.
        let fingerprint = if idem.is_empty() {
            String::new()
        } else {
            let canonical = serde_json::json!([
                kind.as_str(),
                &job.payload,
                run_at,
                delay,
                job.priority,
                job.max_attempts,
                job.timeout.map(|t| t.as_millis() as u64),
                job.callback.as_ref().map(|c| c.url.as_str())
            ]);
            hex::encode(&Sha256::digest(canonical.to_string().as_bytes())[..16])
        };
        let account = job.payload.account_id().to_string();
        let idem_key = job.idempotency_key.as_deref();
        let id = match &job.callback {
            Some(c) if c.job_id.kind() != kind => {
                return Err(EnqueueError::Invalid("the callback's job id is of another kind".into()));
            }
            Some(c) => {
                // The id was made before the job (its callback secret is sealed to it): it
                // must place the job where a new id would, in the account's partition.
                let fresh = self.new_job_id(kind, &account, idem_key);
                if self.defaults.partitions.of_job(&c.job_id) != self.defaults.partitions.of_job(&fresh) {
                    return Err(EnqueueError::Invalid(
                        "the callback's job id is not in the account's partition".into(),
                    ));
                }
                c.job_id.clone()
            }
            None => self.new_job_id(kind, &account, idem_key),
        };
        let exclusive = kind.is_exclusive();
        let traceparent = job.traceparent.clone().unwrap_or_default();
        let trigger = job.trigger.clone().unwrap_or_default();
        let mut args = Vec::with_capacity(ENQUEUE_ARGS_FULL);
        args.extend([
            id.to_string(),
            payload,
            account,
            job.priority.to_string(),
            max_attempts.to_string(),
            (timeout.as_millis() as u64).to_string(),
        ]);
        // The rest only when one of it is set: a plain job is 7 arguments, not 17
        // (enqueue.lua; each argument costs Redis a parse and a Lua string).
        let plain = run_at == 0
            && delay == 0
            && idem.is_empty()
            && !exclusive
            && traceparent.is_empty()
            && trigger.is_empty()
            && job.callback.is_none()
            && !job.answer_waiting;
        if plain {
            args.push(String::new());
        } else {
            args.extend([
                "+".to_owned(),
                run_at.to_string(),
                delay.to_string(),
                idem,
                fingerprint,
                if exclusive { "1" } else { "0" }.to_owned(),
                traceparent,
                trigger,
                job.callback.as_ref().map(|c| c.url.clone()).unwrap_or_default(),
                job.callback
                    .as_ref()
                    .map(|c| base64::engine::Engine::encode(&base64::engine::general_purpose::STANDARD, &c.sealed_secret))
                    .unwrap_or_default(),
                if job.answer_waiting { "1" } else { "0" }.to_owned(),
            ]);
        }
        debug_assert!(args.len() == ENQUEUE_ARGS_PLAIN || args.len() == ENQUEUE_ARGS_FULL);
        Ok((id, args))
    }

    /// Enqueues prepared jobs in one round trip: one script call per queue and batch, all
    /// pipelined (one pipeline per queue on a cluster). The outcomes come back in order
    /// (a short reply leaves the tail out).
    async fn enqueue_many(&self, jobs: &[(JobId, Vec<String>)]) -> Result<Vec<Result<Enqueued, EnqueueError>>, StoreError> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let mut groups: Vec<(String, QueueKeys, Vec<usize>)> = Vec::new();
        for (i, (id, _)) in jobs.iter().enumerate() {
            let keys = self.job_keys(id);
            match groups.iter_mut().find(|(p, _, idx)| *p == keys.prefix() && idx.len() < MAX_BATCH) {
                Some((_, _, idx)) => idx.push(i),
                None => groups.push((keys.prefix().to_owned(), keys, vec![i])),
            }
        }
        let tags: Vec<String> = groups.iter().map(|(_, k, _)| k.slot_key()).collect();
        // On the durable writes' connection, each pipeline followed by the wait
        // `queue.durability` asks for (on the shard it went to).
        self.durable.ensure_supported().await?;
        let wait = self.durable.durability().wait_command();
        // Each shard answers for its own jobs: one that is down or cannot acknowledge
        // fails only the jobs that went to it.
        let replies = query_grouped_each(
            &self.durable.conn(),
            &tags,
            Some(&scripts::LIBRARY),
            |pipe, g| {
                let (_, keys, idx) = &groups[g];
                let args: Vec<&[String]> = idx.iter().map(|i| jobs[*i].1.as_slice()).collect();
                self.enqueue_call(keys, &args, &[]).add_to(pipe);
            },
            wait.as_ref(),
        )
        .await;
        for (id, _) in jobs {
            self.touched(id);
        }
        let mut out: Vec<Option<Result<Enqueued, EnqueueError>>> = jobs.iter().map(|_| None).collect();
        for pipeline in replies {
            let outcome = pipeline
                .result
                .map_err(|e| self.durable.refused_wait(e.into()))
                .and_then(|(replies, tail)| {
                    tail.map_or(Ok(()), |w| self.durable.check(w))?;
                    Ok(replies)
                });
            match outcome {
                Ok(replies) => {
                    for (g, reply) in pipeline.items.iter().zip(replies) {
                        let reply = reply.into_iter().next().unwrap_or(Value::Nil);
                        let idx = &groups[*g].2;
                        let reply: Result<Vec<String>, StoreError> = match needed(&reply) {
                            // It met a job it had not declared (nothing was written): once
                            // more on its own, declaring what it named.
                            Some(extra) => self.enqueue_declaring(&groups[*g].1, idx, jobs, extra).await,
                            None => redis::from_redis_value(reply).map_err(parse_err),
                        };
                        // A call that failed answers for its own jobs only: the other
                        // queues' were written, and answering them failed would have
                        // their callers submit them again.
                        match reply {
                            Ok(reply) => {
                                for (i, r) in idx.iter().zip(enqueue_reply::parse(reply, idx.iter().map(|i| &jobs[*i].0))) {
                                    out[*i] = Some(r);
                                }
                            }
                            Err(e) => {
                                for i in idx {
                                    out[*i] = Some(Err(e.duplicate().into()));
                                }
                            }
                        }
                    }
                }
                Err(e) => {
                    // Redis weighs its memory limit command by command: a pipeline of
                    // several queues' calls refused for memory may have written those
                    // before the refusal, so its outcome is unknown, as for a lost reply.
                    let e = if e.is_out_of_memory() && pipeline.items.len() > 1 {
                        StoreError::Redis(std::io::Error::other(format!("a pipeline was partly refused for memory: {e}")).into())
                    } else {
                        e
                    };
                    for g in &pipeline.items {
                        for i in &groups[*g].2 {
                            out[*i] = Some(Err(e.duplicate().into()));
                        }
                    }
                }
            }
        }
        Ok(out
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(StoreError::Protocol("short enqueue reply".into()).into())))
            .collect())
    }

    /// The enqueue of `jobs[idx]` in queue `keys` made again, declaring `extra` and
    /// whatever each answer says it needs too, waiting as `queue.durability` asks.
    async fn enqueue_declaring(
        &self,
        keys: &QueueKeys,
        idx: &[usize],
        jobs: &[(JobId, Vec<String>)],
        mut extra: Vec<String>,
    ) -> Result<Vec<String>, StoreError> {
        let args: Vec<&[String]> = idx.iter().map(|i| jobs[*i].1.as_slice()).collect();
        let mut conn = self.durable.conn();
        for _ in 0..NEED_ROUNDS {
            let mut pipe = redis::pipe();
            self.enqueue_call(keys, &args, &extra).add_to(&mut pipe);
            let replies: Vec<Value> = durability::query(&mut conn, pipe, self.durable.durability())
                .await
                .map_err(|e| self.durable.refused_wait(e))?;
            let reply = replies.into_iter().next().unwrap_or(Value::Nil);
            match needed(&reply) {
                Some(more) => extra.extend(more.into_iter().filter(|k| !extra.contains(k)).collect::<Vec<_>>()),
                None => return redis::from_redis_value(reply).map_err(parse_err),
            }
        }
        Err(StoreError::Protocol("the enqueue kept meeting jobs it had not declared".into()))
    }

    /// The group commit `id`'s enqueue joins. On a cluster, one per queue, so a shard
    /// that hangs (every call to it waits out its timeout) holds up only its own queues'
    /// callers, never those of a healthy shard batched with them; on one server, one for
    /// all (one call, and with `queue.durability` one wait, for every queue at once).
    fn group_of(&self, id: &JobId) -> Arc<GroupCommit<Waiter>> {
        let keys = self.job_keys(id);
        let group = if self.strict { keys.prefix() } else { "" };
        let mut groups = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        match groups.get(group) {
            Some(g) => g.clone(),
            None => {
                let g = Arc::new(GroupCommit::new(MAX_GROUP));
                groups.insert(group.to_owned(), g.clone());
                g
            }
        }
    }

    /// Carries the single enqueues waiting in `group` until none is left.
    async fn commit_enqueues(self, group: Arc<GroupCommit<Waiter>>) {
        while let Some(batch) = group.next_batch() {
            let (replies, jobs): (Vec<_>, Vec<_>) = batch.into_iter().map(|w| (w.reply, (w.id, w.args))).unzip();
            match self.enqueue_many(&jobs).await {
                Ok(outcomes) => {
                    for (reply, outcome) in replies.into_iter().zip(outcomes) {
                        let _ = reply.send(outcome);
                    }
                }
                Err(e) => {
                    for reply in replies {
                        let _ = reply.send(Err(e.duplicate().into()));
                    }
                }
            }
        }
    }

    /// The enqueue script's call for `jobs` (their arguments) in queue `keys`, declaring
    /// every key it touches that the jobs name, and `extra` (what an earlier call
    /// answered it needs: enqueue.lua).
    fn enqueue_call(&self, keys: &QueueKeys, jobs: &[&[String]], extra: &[String]) -> crate::redis_conn::Call {
        let mut inv = scripts::ENQUEUE.key(keys.slot_key());
        let declared: &[&[String]] = if self.strict || !extra.is_empty() { jobs } else { &[] };
        if !declared.is_empty() {
            keys.declare(&mut inv, &[&ENQUEUE_KEYS, &LANE_OFFER]);
        }
        let mut accounts: Vec<&str> = Vec::new();
        for args in declared {
            inv.key(keys.key(&format!("job:{}", args[0])));
            if args.len() == ENQUEUE_ARGS_FULL && !args[9].is_empty() {
                inv.key(keys.key(&format!("idem:{}", args[9])));
            }
            if !accounts.contains(&args[2].as_str()) {
                accounts.push(&args[2]);
            }
        }
        for account in accounts {
            for what in ["acct", "rq", "as", "excl", "exclm", "hold"] {
                inv.key(keys.of_account(what, account));
            }
        }
        for key in extra {
            inv.key(key);
        }
        inv.arg(keys.prefix())
            .arg(jobs.len())
            .arg(self.defaults.idempotency_ttl.as_secs().max(1))
            .arg(self.defaults.max_unfinished_per_account);
        for args in jobs {
            for a in *args {
                inv.arg(a);
            }
        }
        inv
    }
}
