use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Value};
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

use super::codec::{decode_job, decode_leased, Fields, StoredAttempt, LEASED_FIELDS};
use super::durability::DurableWrites;
use super::group_commit::{GroupCommit, Waiter};
use super::{
    scripts, CancelOutcome, Cursor, EnqueueError, Enqueued, Fetched, JobDefaults, JobStore, LeaseReport, ListQuery, NewJob, Page,
    QueueCounts, QueueKeys, RetryOutcome, SettleAction, SettleResult, Settlement, StoreError, Trimmed,
};
use crate::job::{Job, JobId, JobKind, JobState, Progress};

/// How many due jobs or expired leases one fetch handles; the rest wait for the next.
const CHUNK: usize = 500;
/// Most jobs one fetch leases or one enqueue call carries (keeps Lua's stack bounded).
const MAX_BATCH: usize = 1000;
/// How long one `trim` call may keep removing before it yields to the next tick.
const TRIM_BUDGET: Duration = Duration::from_millis(250);
/// Arguments per job in the enqueue script.
const ENQUEUE_ARGS: usize = 15;

/// A job ready for the enqueue script: its queue, id and script arguments.
type Prepared = (QueueKeys, JobId, Vec<String>);
/// A (score, id) position in an index.
type Position = (String, String);

/// How one kind's index was read for a page.
struct Scan {
    kind: JobKind,
    after: Option<Position>,
    offered: usize,
    last_scanned: Option<Position>,
    more: bool,
}

/// The Redis implementation of [`JobStore`].
#[derive(Clone)]
pub struct RedisStore {
    client: redis::Client,
    conn: ConnectionManager,
    namespace: Arc<str>,
    defaults: Arc<JobDefaults>,
    /// One connection per kind for blocking waits, so they never stall other commands.
    waiters: Arc<[Mutex<Option<ConnectionManager>>; 3]>,
    /// Single enqueues made at the same moment share one call.
    group: Arc<GroupCommit>,
    /// Enqueues and terminal settles, waited on as `queue.durability` asks.
    durable: DurableWrites,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

fn kind_index(kind: JobKind) -> usize {
    match kind {
        JobKind::Sync => 0,
        JobKind::Backfill => 1,
        JobKind::Cleanup => 2,
    }
}

fn manager_config(response_timeout: Option<Duration>) -> redis::aio::ConnectionManagerConfig {
    redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(response_timeout)
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_secs(1))
}

impl RedisStore {
    /// Connect to `url`. Fails when Redis cannot be reached now; once connected, the
    /// connection re-establishes itself after outages.
    pub async fn connect(url: &str, namespace: &str, defaults: JobDefaults) -> Result<Self, StoreError> {
        let client = redis::Client::open(url)?;
        let conn = ConnectionManager::new_with_config(client.clone(), manager_config(Some(Duration::from_secs(5)))).await?;
        Ok(Self {
            durable: DurableWrites::new(&client, &conn, defaults.durability)?,
            client,
            conn,
            namespace: namespace.into(),
            defaults: Arc::new(defaults),
            waiters: Arc::new([Mutex::new(None), Mutex::new(None), Mutex::new(None)]),
            group: Arc::default(),
        })
    }

    /// Like [`RedisStore::connect`], but nothing is dialled until the first command, so
    /// a service can start (and report itself not ready) while Redis is down.
    pub fn connect_lazy(url: &str, namespace: &str, defaults: JobDefaults) -> Result<Self, StoreError> {
        let client = redis::Client::open(url)?;
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), manager_config(Some(Duration::from_secs(5))))?;
        Ok(Self {
            durable: DurableWrites::new(&client, &conn, defaults.durability)?,
            client,
            conn,
            namespace: namespace.into(),
            defaults: Arc::new(defaults),
            waiters: Arc::new([Mutex::new(None), Mutex::new(None), Mutex::new(None)]),
            group: Arc::default(),
        })
    }

    pub fn keys(&self, kind: JobKind) -> QueueKeys {
        QueueKeys::new(&self.namespace, kind)
    }

    pub fn defaults(&self) -> &JobDefaults {
        &self.defaults
    }

    /// A fresh multiplexed connection for the caller's own use (e.g. heartbeats).
    pub fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Runs a pipeline of `script`'s invocations in one round trip, loading the script
    /// once when Redis does not know it (after a restart or a `SCRIPT FLUSH`). `durable`
    /// writes go on their own connection, followed by `queue.durability`'s wait.
    async fn pipelined<T: redis::FromRedisValue>(
        &self,
        script: &redis::Script,
        durable: bool,
        build: impl Fn() -> redis::Pipeline,
    ) -> Result<T, StoreError> {
        let local = super::Durability::default();
        let (mut conn, durability) = if durable {
            self.durable.ensure_supported().await?;
            (self.durable.conn(), self.durable.durability())
        } else {
            (self.conn.clone(), &local)
        };
        match super::durability::query(&mut conn, build(), durability).await {
            Err(StoreError::Redis(e)) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                script.load_async(&mut conn).await?;
                super::durability::query(&mut conn, build(), durability).await
            }
            r => r,
        }
    }

    /// [`JobStore::waiting`] for many jobs in one round trip (listings), in order.
    pub async fn waiting_many(&self, ids: &[JobId]) -> Result<Vec<Option<super::Waiting>>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let build = || {
            let mut pipe = redis::pipe();
            for id in ids {
                let keys = self.keys(id.kind());
                let mut inv = scripts::WAITING.key(keys.ready());
                inv.arg(keys.prefix()).arg(id.as_str());
                pipe.invoke_script(&inv);
            }
            pipe
        };
        let replies: Vec<Vec<String>> = self.pipelined(&scripts::WAITING, false, build).await?;
        replies.into_iter().map(super::Waiting::from_reply).collect()
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
        let id = match &job.callback {
            Some(c) if c.job_id.kind() != kind => {
                return Err(EnqueueError::Invalid("the callback's job id is of another kind".into()));
            }
            Some(c) => c.job_id.clone(),
            None => JobId::new(kind),
        };
        let exclusive = matches!(kind, JobKind::Sync);
        let args = vec![
            id.to_string(),
            payload,
            job.payload.account_id().to_string(),
            job.priority.to_string(),
            max_attempts.to_string(),
            (timeout.as_millis() as u64).to_string(),
            run_at.to_string(),
            delay.to_string(),
            idem,
            fingerprint,
            if exclusive { "1" } else { "0" }.to_owned(),
            job.traceparent.clone().unwrap_or_default(),
            job.trigger.clone().unwrap_or_default(),
            job.callback.as_ref().map(|c| c.url.clone()).unwrap_or_default(),
            job.callback
                .as_ref()
                .map(|c| base64::engine::Engine::encode(&base64::engine::general_purpose::STANDARD, &c.sealed_secret))
                .unwrap_or_default(),
        ];
        debug_assert_eq!(args.len(), ENQUEUE_ARGS);
        Ok((self.keys(kind), id, args))
    }

    /// Enqueues prepared jobs in one round trip: one script call per kind and batch, all
    /// pipelined. The outcomes come back in order (a short reply leaves the tail out).
    async fn enqueue_many(&self, jobs: &[(JobKind, Vec<String>)]) -> Result<Vec<Result<Enqueued, EnqueueError>>, StoreError> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let mut groups: Vec<(JobKind, Vec<usize>)> = Vec::new();
        for (i, (kind, _)) in jobs.iter().enumerate() {
            match groups.iter_mut().find(|(k, idx)| k == kind && idx.len() < MAX_BATCH) {
                Some((_, idx)) => idx.push(i),
                None => groups.push((*kind, vec![i])),
            }
        }
        let build = || {
            let mut pipe = redis::pipe();
            for (kind, idx) in &groups {
                let args: Vec<&[String]> = idx.iter().map(|i| jobs[*i].1.as_slice()).collect();
                pipe.invoke_script(&self.enqueue_call(&self.keys(*kind), &args));
            }
            pipe
        };
        let replies: Vec<Vec<String>> = self.pipelined(&scripts::ENQUEUE, true, build).await?;
        let mut out: Vec<Option<Result<Enqueued, EnqueueError>>> = jobs.iter().map(|_| None).collect();
        for ((_, idx), reply) in groups.iter().zip(replies) {
            for (i, r) in idx.iter().zip(parse_enqueue_replies(reply)) {
                out[*i] = Some(r);
            }
        }
        Ok(out
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(StoreError::Protocol("short enqueue reply".into()).into())))
            .collect())
    }

    /// Carries the single enqueues waiting in the group commit until none is left.
    async fn commit_enqueues(self) {
        while let Some(batch) = self.group.next_batch() {
            let (replies, jobs): (Vec<_>, Vec<_>) = batch.into_iter().map(|w| (w.reply, (w.kind, w.args))).unzip();
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

    fn enqueue_call(&self, keys: &QueueKeys, jobs: &[&[String]]) -> redis::ScriptInvocation<'static> {
        let mut inv = scripts::ENQUEUE.key(keys.ready());
        inv.arg(keys.prefix())
            .arg(jobs.len())
            .arg(self.defaults.idempotency_ttl.as_secs().max(1));
        for args in jobs {
            for a in *args {
                inv.arg(a);
            }
        }
        inv
    }

    async fn waiter(&self, kind: JobKind) -> Result<tokio::sync::MutexGuard<'_, Option<ConnectionManager>>, StoreError> {
        let mut guard = self.waiters[kind_index(kind)].lock().await;
        if guard.is_none() {
            *guard = Some(ConnectionManager::new_with_config(self.client.clone(), manager_config(None)).await?);
        }
        Ok(guard)
    }

    /// Read one page of one kind's index: (id, score) pairs, the last position scanned
    /// and whether the index goes on.
    async fn list_one(
        &self,
        kind: JobKind,
        query: &ListQuery,
        after: Option<(&str, &str)>,
    ) -> Result<(Vec<(String, String)>, Option<(String, String)>, bool), StoreError> {
        let keys = self.keys(kind);
        // With an account, walk that account's own index and filter by state: a scoped
        // listing never walks (or is slowed by) another tenant's entries (finding M9).
        let (index, state_filter) = match (query.state, &query.account_id) {
            (_, Some(acct)) => (keys.key(&format!("acct:{acct}")), query.state.map_or("", JobState::as_str)),
            (Some(JobState::Queued), None) => (keys.ready(), ""),
            (Some(JobState::Running), None) => (keys.key("active"), ""),
            (Some(JobState::Scheduled), None) => (keys.key("scheduled"), "scheduled"),
            (Some(JobState::Retrying), None) => (keys.key("retrying"), ""),
            (Some(st), None) => (keys.key(&format!("state:{st}")), ""),
            (None, None) => (keys.key("all"), ""),
        };
        let (max_score, cursor_id) = after.unwrap_or(("+inf", ""));
        let mut conn = self.conn.clone();
        let reply: (Vec<String>, String, String, i64) = scripts::LIST
            .key(&index)
            .arg(keys.prefix())
            .arg(max_score)
            .arg(cursor_id)
            .arg(query.limit)
            .arg(state_filter)
            .arg("") // no account filter: the account's own index is walked
            .arg(query.limit.saturating_mul(20).max(2000))
            .invoke_async(&mut conn)
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

    /// One page of `query` across its kinds, newest first: the ids to show and the cursor
    /// of the next page. Both listings (full jobs and summaries) read their jobs after it.
    pub(super) async fn page_ids(&self, query: &ListQuery) -> Result<(Vec<JobId>, Option<Cursor>), StoreError> {
        let kinds: Vec<JobKind> = if query.kinds.is_empty() {
            JobKind::ALL.to_vec()
        } else {
            query.kinds.clone()
        };
        let mut candidates: Vec<(JobKind, String, String)> = Vec::new();
        // Per kind: where it started, how many entries it offered, where its scan ended,
        // and whether its index goes on past that.
        let mut scans: Vec<Scan> = Vec::new();
        for kind in kinds {
            let after = match &query.cursor {
                None => None,
                Some(c) => match c.positions.iter().find(|(k, _, _)| *k == kind) {
                    Some((_, score, id)) => Some((score.clone(), id.clone())),
                    None => continue, // this kind was exhausted on an earlier page
                },
            };
            let (pairs, last, more) = self
                .list_one(kind, query, after.as_ref().map(|(s, i)| (s.as_str(), i.as_str())))
                .await?;
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
        for Scan {
            kind,
            after,
            offered,
            last_scanned,
            more,
        } in scans
        {
            let taken: Vec<&(JobKind, String, String)> = candidates.iter().filter(|c| c.0 == kind).collect();
            if taken.len() < offered {
                // Some of this kind's entries did not fit: resume right after the last one shown.
                let pos = match taken.last() {
                    Some(t) => (t.1.clone(), t.2.clone()),
                    None => after.unwrap_or_else(|| ("+inf".to_owned(), String::new())),
                };
                positions.push((kind, pos.0, pos.1));
            } else if more {
                if let Some((s, i)) = last_scanned {
                    positions.push((kind, s, i));
                }
            }
        }
        let ids: Vec<JobId> = candidates.iter().filter_map(|c| c.2.parse().ok()).collect();
        Ok((ids, (!positions.is_empty()).then_some(Cursor { positions })))
    }

    async fn load_jobs(&self, ids: &[JobId], with_attempts: bool) -> Result<Vec<Option<Job>>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in ids {
            let keys = self.keys(id.kind());
            pipe.hgetall(keys.job(id));
            if with_attempts {
                pipe.lrange(keys.attempts(id), 0, -1);
                pipe.lrange(keys.key(&format!("callbacks:{id}")), 0, -1);
            }
        }
        let mut conn = self.conn.clone();
        let values: Vec<Value> = pipe.query_async(&mut conn).await?;
        let mut out = Vec::with_capacity(ids.len());
        let mut it = values.into_iter();
        for id in ids {
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

fn parse_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Protocol(e.to_string())
}

fn bulk(v: Value) -> Result<String, StoreError> {
    redis::from_redis_value::<String>(v).map_err(parse_err)
}

fn parse_enqueue_replies(reply: Vec<String>) -> Vec<Result<Enqueued, EnqueueError>> {
    reply
        .chunks(3)
        .map(|c| {
            let [status, id, state] = c else {
                return Err(StoreError::Protocol(format!("enqueue reply had {} parts", c.len())).into());
            };
            let id: JobId = id.parse().map_err(parse_err)?;
            match status.as_str() {
                "conflict" => Err(EnqueueError::IdempotencyConflict { existing: id }),
                "created" | "existing" => Ok(Enqueued {
                    id,
                    state: state.parse().map_err(parse_err)?,
                    created: status == "created",
                }),
                other => Err(StoreError::Protocol(format!("enqueue answered {other}")).into()),
            }
        })
        .collect()
}

fn action_args(s: &Settlement) -> (&'static str, u64, String) {
    let ms = |d: &Duration| d.as_millis() as u64;
    let json = |v: &dyn erased::Json| v.to_json();
    match &s.action {
        SettleAction::Succeeded(v) => ("succeeded", 0, v.to_string()),
        SettleAction::Partial(v) => ("partial", 0, v.to_string()),
        SettleAction::Retry { delay, error } => ("retry", ms(delay), json(error)),
        SettleAction::Snooze { delay, error } => ("snooze", ms(delay), json(error)),
        SettleAction::Dead(e) => ("dead", 0, json(e)),
        SettleAction::Cancelled(e) => ("cancelled", 0, json(e)),
        SettleAction::Release => ("release", 0, String::new()),
    }
}

mod erased {
    pub trait Json {
        fn to_json(&self) -> String;
    }
    impl<T: serde::Serialize> Json for T {
        fn to_json(&self) -> String {
            serde_json::to_string(self).unwrap_or_else(|_| "null".into())
        }
    }
}

impl JobStore for RedisStore {
    async fn enqueue(&self, job: NewJob) -> Result<Enqueued, EnqueueError> {
        let (_, id, args) = self.enqueue_args(&job)?;
        let (reply, answer) = tokio::sync::oneshot::channel();
        let waiter = Waiter {
            kind: id.kind(),
            args,
            reply,
        };
        if self.group.join(waiter) {
            // A task of its own, so a caller that gives up never strands the others.
            tokio::spawn(self.clone().commit_enqueues());
        }
        answer
            .await
            .unwrap_or_else(|_| Err(StoreError::Protocol("the enqueue call ended without an answer; its outcome is unknown".into()).into()))
    }

    async fn enqueue_bulk(&self, jobs: Vec<NewJob>) -> Result<Vec<Result<Enqueued, EnqueueError>>, StoreError> {
        let prepared: Vec<Result<Prepared, EnqueueError>> = jobs.into_iter().map(|j| self.enqueue_args(&j)).collect();
        let mut results: Vec<Option<Result<Enqueued, EnqueueError>>> = Vec::with_capacity(prepared.len());
        let mut ready = Vec::new();
        for p in prepared {
            match p {
                Ok((_, id, args)) => {
                    ready.push((results.len(), id.kind(), args));
                    results.push(None);
                }
                Err(e) => results.push(Some(Err(e))),
            }
        }
        let (slots, jobs): (Vec<usize>, Vec<(JobKind, Vec<String>)>) = ready.into_iter().map(|(i, k, a)| (i, (k, a))).unzip();
        for (slot, r) in slots.into_iter().zip(self.enqueue_many(&jobs).await?) {
            results[slot] = Some(r);
        }
        results
            .into_iter()
            .map(|r| r.ok_or_else(|| StoreError::Protocol("short bulk enqueue reply".into())))
            .collect()
    }

    async fn fetch(&self, kind: JobKind, worker: &str, max: usize, lease: Duration) -> Result<Fetched, StoreError> {
        // A worker whose outcomes could not be stored as durably as configured leases nothing.
        self.durable.ensure_supported().await?;
        let keys = self.keys(kind);
        let mut conn = self.conn.clone();
        let (jobs, wait): (Vec<Value>, i64) = scripts::FETCH
            .key(keys.ready())
            .arg(keys.prefix())
            .arg(max.min(MAX_BATCH))
            .arg(worker)
            .arg(lease.as_millis() as u64)
            .arg(CHUNK)
            .arg(self.defaults.per_account[kind.index()])
            .arg(u8::from(self.defaults.reports_starts))
            .invoke_async(&mut conn)
            .await?;
        let mut out = Vec::with_capacity(jobs.len() / 3);
        let mut it = jobs.into_iter();
        while let (Some(id), Some(token), Some(fields)) = (it.next(), it.next(), it.next()) {
            let id: JobId = bulk(id)?.parse().map_err(parse_err)?;
            let values: Vec<Option<String>> = redis::from_redis_value(fields).map_err(parse_err)?;
            out.push(decode_leased(id, bulk(token)?, &Fields::from_values(&LEASED_FIELDS, values)));
        }
        Ok(Fetched {
            jobs: out,
            next_due: (wait >= 0).then(|| Duration::from_millis(wait as u64)),
        })
    }

    async fn settle(&self, kind: JobKind, settlements: &[Settlement]) -> Result<Vec<SettleResult>, StoreError> {
        if settlements.is_empty() {
            return Ok(Vec::new());
        }
        let keys = self.keys(kind);
        let build = || {
            let mut pipe = redis::pipe();
            for chunk in settlements.chunks(256) {
                let mut inv = scripts::SETTLE.key(keys.ready());
                inv.arg(keys.prefix()).arg(chunk.len()).arg(self.defaults.max_snoozes);
                for s in chunk {
                    let (outcome, delay, data) = action_args(s);
                    let attempt = s
                        .attempt
                        .as_ref()
                        .map(|a| serde_json::to_string(&StoredAttempt::from(a)).unwrap_or_default())
                        .unwrap_or_default();
                    inv.arg(s.id.as_str()).arg(&s.token).arg(outcome).arg(delay).arg(attempt).arg(data);
                }
                pipe.invoke_script(&inv);
            }
            pipe
        };
        // Only a job's end must not roll back (review F2); a retry, snooze or hand-back
        // lost in a failover is reclaimed like any lease.
        let durable = settlements.iter().any(|s| s.action.is_terminal());
        let replies: Vec<Vec<String>> = self.pipelined(&scripts::SETTLE, durable, build).await?;
        Ok(replies
            .into_iter()
            .flatten()
            .map(|r| {
                if r == "ok" {
                    SettleResult::Applied
                } else {
                    SettleResult::LeaseLost
                }
            })
            .collect())
    }

    async fn extend_leases(&self, kind: JobKind, leases: &[(JobId, String)], lease: Duration) -> Result<LeaseReport, StoreError> {
        if leases.is_empty() {
            return Ok(LeaseReport::default());
        }
        let keys = self.keys(kind);
        let mut inv = scripts::EXTEND.key(keys.ready());
        inv.arg(keys.prefix()).arg(lease.as_millis() as u64);
        for (id, token) in leases {
            inv.arg(id.as_str()).arg(token);
        }
        let mut conn = self.conn.clone();
        let (lost, cancel): (Vec<String>, Vec<String>) = inv.invoke_async(&mut conn).await?;
        let ids = |v: Vec<String>| v.into_iter().filter_map(|s| s.parse().ok()).collect();
        Ok(LeaseReport {
            lost: ids(lost),
            cancel_requested: ids(cancel),
        })
    }

    async fn mark_started(&self, kind: JobKind, runs: &[(JobId, String)]) -> Result<(), StoreError> {
        if runs.is_empty() {
            return Ok(());
        }
        let keys = self.keys(kind);
        let mut inv = scripts::START.key(keys.ready());
        inv.arg(keys.prefix());
        for (id, token) in runs {
            inv.arg(id.as_str()).arg(token);
        }
        let mut conn = self.conn.clone();
        let _: i64 = inv.invoke_async(&mut conn).await?;
        Ok(())
    }

    async fn set_progress(&self, id: &JobId, token: &str, progress: &Progress) -> Result<bool, StoreError> {
        let keys = self.keys(id.kind());
        let mut conn = self.conn.clone();
        let json = serde_json::to_string(progress).map_err(parse_err)?;
        let n: i64 = scripts::PROGRESS
            .key(keys.ready())
            .arg(keys.prefix())
            .arg(id.as_str())
            .arg(token)
            .arg(json)
            .invoke_async(&mut conn)
            .await?;
        Ok(n == 1)
    }

    async fn cancel(&self, id: &JobId) -> Result<CancelOutcome, StoreError> {
        let keys = self.keys(id.kind());
        let mut conn = self.conn.clone();
        let r: String = scripts::CANCEL
            .key(keys.ready())
            .arg(keys.prefix())
            .arg(id.as_str())
            .invoke_async(&mut conn)
            .await?;
        Ok(match r.as_str() {
            "missing" => CancelOutcome::NotFound,
            "cancelled" => CancelOutcome::Cancelled,
            "requested" => CancelOutcome::Requested,
            other => CancelOutcome::AlreadyTerminal(other.trim_start_matches("terminal:").parse().map_err(parse_err)?),
        })
    }

    async fn retry(&self, id: &JobId) -> Result<RetryOutcome, StoreError> {
        let keys = self.keys(id.kind());
        let mut conn = self.conn.clone();
        let exclusive = if id.kind() == JobKind::Sync { "1" } else { "0" };
        let r: String = scripts::RETRY
            .key(keys.ready())
            .arg(keys.prefix())
            .arg(id.as_str())
            .arg(exclusive)
            .invoke_async(&mut conn)
            .await?;
        Ok(match r.split_once(':') {
            None if r == "queued" => RetryOutcome::Queued,
            None => RetryOutcome::NotFound,
            Some(("busy", holder)) => RetryOutcome::AccountBusy(holder.parse().map_err(parse_err)?),
            Some((_, state)) => RetryOutcome::WrongState(state.parse().map_err(parse_err)?),
        })
    }

    async fn get(&self, id: &JobId) -> Result<Option<Job>, StoreError> {
        Ok(self.load_jobs(std::slice::from_ref(id), true).await?.pop().flatten())
    }

    async fn list(&self, query: &ListQuery) -> Result<Page, StoreError> {
        let (ids, next) = self.page_ids(query).await?;
        let jobs = self.load_jobs(&ids, false).await?.into_iter().flatten().collect();
        Ok(Page { jobs, next })
    }

    async fn counts(&self, kind: JobKind) -> Result<QueueCounts, StoreError> {
        let k = self.keys(kind);
        let mut pipe = redis::pipe();
        pipe.atomic(); // `running` is `active` less `unstarted`: one snapshot
        for suffix in [
            "ready",
            "scheduled",
            "retrying",
            "active",
            "state:succeeded",
            "state:partial",
            "state:dead",
            "state:cancelled",
            "unstarted",
        ] {
            pipe.zcard(k.key(suffix));
        }
        pipe.exists(k.key("paused"));
        pipe.cmd("ZRANGE").arg(k.ready()).arg(0).arg(0).arg("WITHSCORES");
        pipe.cmd("ZRANGE").arg(k.key("unstarted")).arg(0).arg(0).arg("WITHSCORES");
        pipe.hget(k.key("stats"), "succeeded");
        pipe.cmd("TIME");
        let mut conn = self.conn.clone();
        let v: Vec<Value> = pipe.query_async(&mut conn).await?;
        let mut it = v.into_iter();
        let mut next = || it.next().unwrap_or(Value::Nil);
        let mut c = [0u64; 9];
        for slot in c.iter_mut() {
            *slot = redis::from_redis_value(next()).map_err(parse_err)?;
        }
        let paused: bool = redis::from_redis_value(next()).map_err(parse_err)?;
        let head: Vec<String> = redis::from_redis_value(next()).map_err(parse_err)?;
        let unstarted_head: Vec<String> = redis::from_redis_value(next()).map_err(parse_err)?;
        let total: Option<u64> = redis::from_redis_value(next()).map_err(parse_err)?;
        let time: (u64, u64) = redis::from_redis_value(next()).map_err(parse_err)?;
        let now_ms = time.0 * 1000 + time.1 / 1000;
        let waited = |head: &[String]| {
            head.get(1)
                .and_then(|s| s.parse::<f64>().ok())
                .map(|score| now_ms.saturating_sub((score as u64) % 10_000_000_000_000))
                .unwrap_or(0)
        };
        let lag_ms = waited(&head).max(waited(&unstarted_head));
        // A second call: the sums over lanes need a script. Not one snapshot with the
        // counts above, so `split_waiting` clamps what moved in between.
        let raw: Vec<u64> = scripts::QUEUE_STATS.key(k.ready()).arg(k.prefix()).invoke_async(&mut conn).await?;
        let stats = super::stats::StatsReply::from_reply(&raw)
            .ok_or_else(|| StoreError::Protocol(format!("queue stats reply had {} parts", raw.len())))?;
        let waiting = super::stats::split_waiting(c[0], c[1], c[2], c[8], paused, &stats);
        Ok(QueueCounts {
            queued: c[0],
            scheduled: c[1].saturating_sub(c[2]),
            retrying: c[2],
            running: c[3].saturating_sub(c[8]),
            prefetched: c[8],
            succeeded: c[4],
            partial: c[5],
            dead: c[6],
            cancelled: c[7],
            paused,
            lag_ms,
            succeeded_total: total.unwrap_or(0),
            waiting,
            events: stats.events,
        })
    }

    async fn set_paused(&self, kind: JobKind, paused: bool) -> Result<(), StoreError> {
        let k = self.keys(kind);
        let mut conn = self.conn.clone();
        if paused {
            let _: () = conn.set(k.key("paused"), 1).await?;
        } else {
            let _: () = redis::pipe()
                .del(k.key("paused"))
                .lpush(k.marker(), 1)
                .ltrim(k.marker(), 0, 0)
                .query_async(&mut conn)
                .await?;
        }
        Ok(())
    }

    async fn purge_dead(&self, kind: JobKind, ids: &[JobId]) -> Result<u64, StoreError> {
        let k = self.keys(kind);
        let mut removed = 0;
        let mut conn = self.conn.clone();
        for chunk in ids.chunks(CHUNK) {
            let mut inv = scripts::REMOVE.key(k.ready());
            inv.arg(k.prefix()).arg("dead").arg(0).arg(0).arg(0);
            for id in chunk {
                inv.arg(id.as_str());
            }
            let (n, _left): (u64, i64) = inv.invoke_async(&mut conn).await?;
            removed += n;
        }
        Ok(removed)
    }

    async fn trim(&self, kind: JobKind, retention: Duration, limit: usize) -> Result<Option<Trimmed>, StoreError> {
        let k = self.keys(kind);
        let mut conn = self.conn.clone();
        // One trimmer per kind at a time; the lock outlives the budget so a crashed
        // trimmer frees it on its own.
        let lock = k.key("trim:lock");
        let owner = format!("{}", std::process::id());
        let got: Option<String> = redis::cmd("SET")
            .arg(&lock)
            .arg(&owner)
            .arg("NX")
            .arg("PX")
            .arg((TRIM_BUDGET * 4).as_millis() as u64)
            .query_async(&mut conn)
            .await?;
        if got.is_none() {
            return Ok(None);
        }
        let started = std::time::Instant::now();
        let mut trimmed = Trimmed::default();
        let policies = [
            ("succeeded", retention, 0),
            ("partial", retention, 0),
            ("cancelled", retention, 0),
            ("dead", self.defaults.dead_retention, self.defaults.dead_max),
        ];
        for (state, keep_for, keep_max) in policies {
            loop {
                let (n, left): (u64, u64) = scripts::REMOVE
                    .key(k.ready())
                    .arg(k.prefix())
                    .arg(state)
                    .arg(keep_for.as_millis() as u64)
                    .arg(limit.max(1))
                    .arg(keep_max)
                    .invoke_async(&mut conn)
                    .await?;
                trimmed.removed += n;
                if left == 0 || started.elapsed() >= TRIM_BUDGET {
                    trimmed.backlog += left;
                    break;
                }
            }
        }
        let _: i64 = redis::cmd("DEL").arg(&lock).query_async(&mut conn).await?;
        Ok(Some(trimmed))
    }

    async fn waiting(&self, id: &JobId) -> Result<Option<super::Waiting>, StoreError> {
        let keys = self.keys(id.kind());
        let mut conn = self.conn.clone();
        let reply: Vec<String> = scripts::WAITING
            .key(keys.ready())
            .arg(keys.prefix())
            .arg(id.as_str())
            .invoke_async(&mut conn)
            .await?;
        super::Waiting::from_reply(reply)
    }

    async fn wait_for_work(&self, kind: JobKind, timeout: Duration) -> Result<(), StoreError> {
        let marker = self.keys(kind).marker();
        let mut guard = self.waiter(kind).await?;
        let conn = guard.as_mut().expect("waiter connection is set above");
        let secs = timeout.as_secs_f64().max(0.01);
        // The client-side bound is a little longer than the server's, so a dead
        // connection cannot hang the fetcher.
        let mut cmd = redis::cmd("BLPOP");
        cmd.arg(&marker).arg(secs);
        let wait = cmd.query_async::<Option<(String, String)>>(conn);
        match tokio::time::timeout(timeout + Duration::from_secs(2), wait).await {
            Ok(r) => r.map(|_| ()).map_err(StoreError::from),
            Err(_) => {
                *guard = None; // drop the stuck connection; the next wait opens another
                Ok(())
            }
        }
    }

    async fn worker_heartbeat(&self, worker: &str, info: &str, ttl: Duration) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let key = format!("{}:workers:{worker}", self.namespace);
        let _: () = redis::cmd("SET")
            .arg(key)
            .arg(info)
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64)
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        self.durable.ensure_supported().await
    }

    async fn await_durable(&self) -> Result<(), StoreError> {
        self.durable.await_durable().await
    }
}
