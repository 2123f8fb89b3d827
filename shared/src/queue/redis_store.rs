//! The queue on Redis: enqueue, fetch, settle and every other operation of [`JobStore`] as
//! calls of the Lua library, over one server, Sentinel or Redis Cluster.
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::Value;
use sha2::{Digest, Sha256};

use super::codec::{attempt_arg, decode_job, decode_leased, Fields, LEASED_FIELDS};
use super::durability::{self, DurableWrites};
use super::enqueue_reply;
use super::partition_health::PartitionHealth;
use super::visits::Visits;
use super::wake::Wakers;
use super::{
    scripts, CancelOutcome, EnqueueError, Enqueued, Fetched, JobDefaults, JobStore, LeaseReport, ListQuery, NewJob, Page, QueueCounts,
    QueueKeys, RetryOutcome, SettleAction, SettleResult, Settlement, StoreError, Trimmed,
};
use crate::group_commit::GroupCommit;
use crate::job::{Job, JobId, JobKind, Progress};
use crate::redis_conn::{query_grouped, query_grouped_each, RedisConn, RedisSource, Timeouts};

/// How many due jobs or expired leases one fetch handles; the rest wait for the next.
const CHUNK: usize = 500;
/// Most jobs one fetch leases or one enqueue call carries (keeps Lua's stack bounded).
const MAX_BATCH: usize = 1000;
/// How long one `trim` call may keep removing before it yields to the next tick.
const TRIM_BUDGET: Duration = Duration::from_millis(250);
/// Arguments per job in the enqueue script: a plain job's, and one with any option set.
const ENQUEUE_ARGS_PLAIN: usize = 7;
const ENQUEUE_ARGS_FULL: usize = 17;

/// Most single enqueues one group-committed call carries.
const MAX_GROUP: usize = 256;

/// A job ready for the enqueue script: its id and script arguments.
type Prepared = (JobId, Vec<String>);

/// One single enqueue's job, waiting for a group-committed call to carry it.
struct Waiter {
    id: JobId,
    args: Vec<String>,
    reply: tokio::sync::oneshot::Sender<Result<Enqueued, EnqueueError>>,
}

/// The Redis implementation of [`JobStore`], on a single server, a Sentinel-managed
/// primary or a Redis Cluster; each kind's queue in `defaults.partitions` partitions.
#[derive(Clone)]
pub struct RedisStore {
    pub(super) source: RedisSource,
    pub(super) conn: RedisConn,
    namespace: Arc<str>,
    defaults: Arc<JobDefaults>,
    /// Blocking waits for work, on connections of their own.
    pub(super) wakers: Arc<Wakers>,
    /// Per kind: which partitions the next fetch visits.
    pub(super) visits: Arc<[std::sync::Mutex<Visits>; 3]>,
    /// Single enqueues made at the same moment share one call.
    group: Arc<GroupCommit<Waiter>>,
    /// Enqueues and terminal settles, waited on as `queue.durability` asks.
    durable: DurableWrites,
    /// Partitions a fetch could not serve, for logging each outage once.
    partition_health: Arc<PartitionHealth>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Connect to `url` (see [`crate::redis_conn::RedisTarget`]). Fails when Redis cannot
    /// be reached now; once connected, the connection re-establishes itself after outages.
    pub async fn connect(url: &str, namespace: &str, defaults: JobDefaults) -> Result<Self, StoreError> {
        let store = Self::connect_lazy(url, namespace, defaults)?;
        // Reachable is all this asks: whether Redis can provide `queue.durability` is
        // the first durable write's (and readiness's) question.
        let _: String = redis::cmd("PING").query_async(&mut store.connection()).await?;
        Ok(store)
    }

    /// Like [`RedisStore::connect`], but nothing is dialled until the first command, so
    /// a service can start (and report itself not ready) while Redis is down.
    pub fn connect_lazy(url: &str, namespace: &str, defaults: JobDefaults) -> Result<Self, StoreError> {
        let source = RedisSource::new(url).map_err(|e| StoreError::Setup(e.to_string()))?;
        let conn = source.lazy(Timeouts::default())?;
        let n = usize::from(defaults.partitions.count());
        let now = Instant::now();
        Ok(Self {
            durable: DurableWrites::new(&source, &conn, defaults.durability)?,
            source,
            conn,
            namespace: namespace.into(),
            defaults: Arc::new(defaults),
            wakers: Arc::default(),
            visits: Arc::new(std::array::from_fn(|_| std::sync::Mutex::new(Visits::new(n, now)))),
            group: Arc::new(GroupCommit::new(MAX_GROUP)),
            partition_health: Arc::default(),
        })
    }

    /// The keys of one partition of `kind`'s queue (`None`: the unpartitioned queue).
    pub fn partition_keys(&self, kind: JobKind, partition: Option<u16>) -> QueueKeys {
        QueueKeys::new(&self.namespace, kind, partition)
    }

    /// The keys of the queue `id` lives in.
    pub fn job_keys(&self, id: &JobId) -> QueueKeys {
        self.partition_keys(id.kind(), self.defaults.partitions.of_job(id))
    }

    /// The keys of the queue `account`'s jobs of `kind` live in.
    pub fn account_keys(&self, kind: JobKind, account: &str) -> QueueKeys {
        self.job_keys(&self.new_job_id(kind, account, None))
    }

    /// The keys of every partition of `kind`, in order.
    pub fn all_keys(&self, kind: JobKind) -> Vec<QueueKeys> {
        self.defaults
            .partitions
            .all()
            .into_iter()
            .map(|p| self.partition_keys(kind, p))
            .collect()
    }

    /// A new id for a job of `kind` for `account`: on a partitioned queue it names the
    /// account's bucket, so the job lands in the account's partition.
    pub fn new_job_id(&self, kind: JobKind, account: &str, idempotency_key: Option<&str>) -> JobId {
        JobId::with_bucket(kind, self.defaults.partitions.bucket_for(account, idempotency_key))
    }

    pub fn defaults(&self) -> &JobDefaults {
        &self.defaults
    }

    /// Replaces the defaults (the partition migration's view of the new layout).
    pub(super) fn set_defaults(&mut self, defaults: JobDefaults) {
        let n = usize::from(defaults.partitions.count());
        let now = Instant::now();
        self.defaults = Arc::new(defaults);
        self.visits = Arc::new(std::array::from_fn(|_| std::sync::Mutex::new(Visits::new(n, now))));
        self.wakers = Arc::default();
    }

    /// The store's multiplexed connection, for the caller's own use (e.g. heartbeats).
    pub fn connection(&self) -> RedisConn {
        self.conn.clone()
    }

    /// Where the store's Redis is; opens more connections (e.g. blocking ones).
    pub fn source(&self) -> &RedisSource {
        &self.source
    }

    /// Workers whose heartbeat has not lapsed (one `ZCOUNT` of `live-workers`).
    pub async fn live_workers(&self) -> Result<u64, StoreError> {
        let mut conn = self.conn.clone();
        let now = chrono::Utc::now().timestamp_millis();
        let n: u64 = redis::cmd("ZCOUNT")
            .arg(format!("{}:live-workers", self.namespace))
            .arg(now)
            .arg("+inf")
            .query_async(&mut conn)
            .await?;
        Ok(n)
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Runs `add(pipe, i)` for each of `keys` (one queue's key per item) in as few round
    /// trips as the deployment allows, and returns each item's replies in order.
    pub(super) async fn grouped(
        &self,
        keys: &[String],
        library: Option<&crate::redis_conn::Library>,
        add: impl Fn(&mut redis::Pipeline, usize),
    ) -> Result<Vec<Vec<Value>>, StoreError> {
        Ok(query_grouped(&self.conn, keys, library, add).await?)
    }

    /// [`JobStore::waiting`] for many jobs in one round trip (listings), in order.
    pub async fn waiting_many(&self, ids: &[JobId]) -> Result<Vec<Option<super::Waiting>>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<QueueKeys> = ids.iter().map(|id| self.job_keys(id)).collect();
        let tags: Vec<String> = keys.iter().map(QueueKeys::slot_key).collect();
        let replies = self
            .grouped(&tags, Some(&scripts::LIBRARY), |pipe, i| {
                let mut inv = scripts::WAITING.key(keys[i].slot_key());
                inv.arg(keys[i].prefix()).arg(ids[i].as_str());
                inv.add_to(pipe);
            })
            .await?;
        replies
            .into_iter()
            .map(|r| {
                let reply: Vec<String> = redis::from_redis_value(r.into_iter().next().unwrap_or(Value::Nil)).map_err(parse_err)?;
                super::Waiting::from_reply(reply)
            })
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
        let exclusive = matches!(kind, JobKind::Sync);
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
                self.enqueue_call(keys, &args).add_to(pipe);
            },
            wait.as_ref(),
        )
        .await;
        for (id, _) in jobs {
            self.touched(id);
        }
        let mut out: Vec<Option<Result<Enqueued, EnqueueError>>> = jobs.iter().map(|_| None).collect();
        for pipeline in replies {
            let outcome = pipeline.result.map_err(StoreError::from).and_then(|(replies, tail)| {
                tail.map_or(Ok(()), |w| self.durable.durability().check(w))?;
                Ok(replies)
            });
            match outcome {
                Ok(replies) => {
                    for (g, reply) in pipeline.items.iter().zip(replies) {
                        let reply: Vec<String> =
                            redis::from_redis_value(reply.into_iter().next().unwrap_or(Value::Nil)).map_err(parse_err)?;
                        let idx = &groups[*g].2;
                        for (i, r) in idx.iter().zip(enqueue_reply::parse(reply, idx.iter().map(|i| &jobs[*i].0))) {
                            out[*i] = Some(r);
                        }
                    }
                }
                Err(e) => {
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

    /// Carries the single enqueues waiting in the group commit until none is left.
    async fn commit_enqueues(self) {
        while let Some(batch) = self.group.next_batch() {
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

    fn enqueue_call(&self, keys: &QueueKeys, jobs: &[&[String]]) -> crate::redis_conn::Call {
        let mut inv = scripts::ENQUEUE.key(keys.slot_key());
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

    async fn load_jobs(&self, ids: &[JobId], with_attempts: bool) -> Result<Vec<Option<Job>>, StoreError> {
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

pub(super) fn parse_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Protocol(e.to_string())
}

fn bulk(v: Value) -> Result<String, StoreError> {
    redis::from_redis_value::<String>(v).map_err(parse_err)
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

impl RedisStore {
    /// Settle one queue's runs: one pipeline of script calls (256 runs each). Only a
    /// job's end must not roll back (review F2): a batch holding one goes on the durable
    /// writes' connection, followed by the wait `queue.durability` asks for; a retry,
    /// snooze or hand-back lost in a failover is reclaimed like any lease.
    async fn settle_in(&self, keys: &QueueKeys, settlements: &[&Settlement]) -> Result<Vec<SettleResult>, StoreError> {
        let build = || {
            let mut pipe = redis::pipe();
            for chunk in settlements.chunks(256) {
                let mut inv = scripts::SETTLE.key(keys.slot_key());
                inv.arg(keys.prefix()).arg(chunk.len()).arg(self.defaults.max_snoozes);
                for s in chunk {
                    let (outcome, delay, data) = action_args(s);
                    let attempt = s.attempt.as_ref().map(|a| attempt_arg(a, &s.token)).unwrap_or_default();
                    inv.arg(s.id.as_str()).arg(&s.token).arg(outcome).arg(delay).arg(attempt).arg(data);
                }
                inv.add_to(&mut pipe);
            }
            pipe
        };
        let local = super::Durability::LOCAL;
        let (mut conn, wanted) = if settlements.iter().any(|s| s.action.is_terminal()) {
            self.durable.ensure_supported().await?;
            (self.durable.conn(), self.durable.durability())
        } else {
            (self.conn.clone(), &local)
        };
        let replies: Vec<Vec<String>> = match durability::query(&mut conn, build(), wanted).await {
            Err(StoreError::Redis(e)) if crate::redis_conn::is_missing(&e) => {
                scripts::LIBRARY.load(&mut conn).await?;
                durability::query(&mut conn, build(), wanted).await?
            }
            r => r?,
        };
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

    /// This store just made work ready in `id`'s partition (an enqueue, a retry, a
    /// settle that requeues or frees a lane): its own next fetch visits that partition
    /// without waiting for a wake-up (other stores learn of it from the marker).
    fn touched(&self, id: &JobId) {
        if let Some(p) = self.defaults.partitions.of_job(id) {
            self.visits[id.kind().index()]
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .woken(usize::from(p), Instant::now());
        }
    }

    /// `items` grouped by the queue each lives in (order kept within a queue), with the
    /// position of each in `items`.
    fn by_queue<'a, T>(&self, items: &'a [T], id: impl Fn(&T) -> &JobId) -> Vec<(QueueKeys, Vec<(usize, &'a T)>)> {
        let mut groups: Vec<(QueueKeys, Vec<(usize, &'a T)>)> = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let keys = self.job_keys(id(item));
            match groups.iter_mut().find(|(k, _)| k.prefix() == keys.prefix()) {
                Some((_, v)) => v.push((i, item)),
                None => groups.push((keys, vec![(i, item)])),
            }
        }
        groups
    }

    /// Calls `script` once for each queue `runs` live in — its prefix, `arg` when given,
    /// then each run's id and token — every queue at once, so a slow or unreachable shard
    /// delays or fails only its own runs. Each answer comes with its queue's runs.
    async fn call_per_queue<'a, R: redis::FromRedisValue>(
        &self,
        script: &'static crate::redis_conn::LuaScript,
        runs: &'a [(JobId, String)],
        arg: Option<u64>,
    ) -> Vec<(Vec<(usize, &'a (JobId, String))>, redis::RedisResult<R>)> {
        let queues = self.by_queue(runs, |r| &r.0);
        let answers = futures::future::join_all(queues.iter().map(|(keys, items)| {
            let mut inv = script.key(keys.slot_key());
            inv.arg(keys.prefix());
            if let Some(a) = arg {
                inv.arg(a);
            }
            for (_, (id, token)) in items {
                inv.arg(id.as_str()).arg(token);
            }
            let mut conn = self.conn.clone();
            async move { inv.invoke_async::<R>(&mut conn).await }
        }))
        .await;
        queues.into_iter().map(|(_, items)| items).zip(answers).collect()
    }

    /// Leases from the partitions `plan` names, at most `max` jobs in all (`max` 0 only
    /// promotes and reclaims), and notes each visit in the kind's [`Visits`]. The
    /// partitions are asked in rounds of at most `max` (each for its share of what is
    /// still wanted) until `max` are leased or no partition may hold more: one round
    /// trip when `max` covers them all and the work is spread, and a job in the last
    /// partition is still found by a fetch of one.
    async fn fetch_from(&self, kind: JobKind, plan: &[usize], worker: &str, max: usize, lease: Duration) -> Result<Fetched, StoreError> {
        let max = max.min(MAX_BATCH);
        let mut out = Vec::new();
        let mut next_due: Option<Duration> = None;
        let mut to_ask: Vec<usize> = plan.to_vec();
        let mut failed = false;
        while !to_ask.is_empty() && (max == 0 || out.len() < max) {
            let wanted = max - out.len();
            let take = if max == 0 { to_ask.len() } else { to_ask.len().min(wanted) };
            let round: Vec<usize> = to_ask.drain(..take).collect();
            let shares: Vec<usize> = if max == 0 {
                vec![0; round.len()]
            } else {
                (0..round.len())
                    .map(|i| wanted / round.len() + usize::from(i < wanted % round.len()))
                    .collect()
            };
            let r = match self.fetch_round(kind, &round, &shares, worker, lease).await {
                Ok(r) => r,
                // The runs leased in earlier rounds go ahead (dropping them would leave
                // their leases to expire unrun); the failure is the caller's only when
                // nothing was leased.
                Err(e) if out.is_empty() => return Err(e),
                Err(_) => {
                    failed = true;
                    break;
                }
            };
            out.extend(r.jobs);
            failed |= r.failed;
            if let Some(w) = r.next_due {
                next_due = Some(next_due.map_or(w, |n| n.min(w)));
            }
            if max == 0 {
                break;
            }
            // A partition that filled its share may hold more: it is asked again after the
            // others (each such round leases at least one job, so this ends).
            to_ask.extend(r.full);
        }
        // Short of `max` means each partition's last answer was short of its share: their
        // lanes held no more that could run now. Partitioned, the partitions not asked have
        // visit times of their own, which the fetcher's next call turns into its wait
        // (without a call to Redis when none is due): it asks again rather than wait on
        // what this fetch saw.
        let drained = self.defaults.partitions.count() == 1 && max > 0 && out.len() < max && !failed;
        Ok(Fetched {
            jobs: out,
            next_due,
            drained,
        })
    }

    /// One round of [`RedisStore::fetch_from`]: partition `round[i]` asked for `shares[i]`
    /// jobs, all in one pipeline (one per shard on a cluster).
    async fn fetch_round(
        &self,
        kind: JobKind,
        round: &[usize],
        shares: &[usize],
        worker: &str,
        lease: Duration,
    ) -> Result<Round, StoreError> {
        let parts = self.defaults.partitions.all();
        let keys: Vec<QueueKeys> = round.iter().map(|p| self.partition_keys(kind, parts[*p])).collect();
        let tags: Vec<String> = keys.iter().map(QueueKeys::slot_key).collect();
        let add = |pipe: &mut redis::Pipeline, i: usize| {
            let mut inv = scripts::FETCH.key(keys[i].slot_key());
            inv.arg(keys[i].prefix())
                .arg(shares[i])
                .arg(worker)
                .arg(lease.as_millis() as u64)
                .arg(CHUNK)
                .arg(self.defaults.per_account[kind.index()])
                .arg(u8::from(self.defaults.reports_starts));
            inv.add_to(pipe);
        };
        // With `queue.durability` above local the leases are waited for like any other
        // write: a lease that a failover or restart could forget would let the new
        // primary hand the job to a second worker while the first still runs it.
        let wait = self.durable.durability().wait_command();
        let conn = if wait.is_some() { self.durable.conn() } else { self.conn.clone() };
        // Each shard answers on its own: one that is down or cannot acknowledge does not
        // cost the leases the others made.
        let groups = query_grouped_each(&conn, &tags, Some(&scripts::LIBRARY), add, wait.as_ref()).await;
        let now = Instant::now();
        let mut out = Vec::new();
        let mut give_back = Vec::new();
        let mut next_due: Option<Duration> = None;
        let mut full = Vec::new();
        let mut failure: Option<StoreError> = None;
        for group in groups {
            let (replies, durable) = match group.result {
                Ok((replies, tail)) => {
                    let durable = tail.map_or(Ok(()), |w| self.durable.durability().check(w));
                    (replies, durable)
                }
                Err(e) => {
                    // Whether it leased anything is unknown: such leases return when they
                    // expire. The partitions wait for their marker or the next sweep.
                    for i in &group.items {
                        self.visits[kind.index()]
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .visited(round[*i], now, false, None, lease);
                        self.partition_health.failed(kind, round[*i], &e);
                    }
                    failure.get_or_insert(e.into());
                    continue;
                }
            };
            for (i, reply) in group.items.iter().zip(replies) {
                let (p, share) = (round[*i], shares[*i]);
                let (jobs, wait): (Vec<Value>, i64) =
                    redis::from_redis_value(reply.into_iter().next().unwrap_or(Value::Nil)).map_err(parse_err)?;
                let got = jobs.len() / 3;
                let mut leased = Vec::with_capacity(got);
                let mut it = jobs.into_iter();
                while let (Some(id), Some(token), Some(fields)) = (it.next(), it.next(), it.next()) {
                    let id: JobId = bulk(id)?.parse().map_err(parse_err)?;
                    let values: Vec<Option<String>> = redis::from_redis_value(fields).map_err(parse_err)?;
                    leased.push(decode_leased(id, bulk(token)?, &Fields::from_values(&LEASED_FIELDS, values)));
                }
                match &durable {
                    Ok(()) => {
                        out.extend(leased);
                        self.partition_health.served(kind, p);
                    }
                    Err(e) => {
                        // Not one of these runs starts: give the jobs back (attempts
                        // unused) so they wait in the queue, not behind a lease nobody
                        // will renew.
                        give_back.extend(leased);
                        self.partition_health.failed(kind, p, e);
                    }
                }
                let wait = (wait >= 0).then(|| Duration::from_millis(wait as u64));
                if let Some(w) = wait {
                    next_due = Some(next_due.map_or(w, |n| n.min(w)));
                }
                self.visits[kind.index()].lock().unwrap_or_else(|e| e.into_inner()).visited(
                    p,
                    now,
                    got >= share && durable.is_ok(),
                    wait,
                    lease,
                );
                if share > 0 && got >= share && durable.is_ok() {
                    full.push(p);
                }
            }
            if let Err(e) = durable {
                failure.get_or_insert(e);
            }
        }
        if !give_back.is_empty() {
            let release: Vec<Settlement> = give_back.iter().map(Settlement::release).collect();
            if let Err(re) = self.settle(kind, &release).await {
                tracing::warn!(error = %re, jobs = release.len(), "could not give back leases that were not durable; they return when the leases expire");
            }
        }
        // A shard's failure is the caller's only when nothing else was leased (so an idle
        // worker backs off); otherwise the runs that were leased go ahead.
        let failed = failure.is_some();
        if let Some(e) = failure {
            if out.is_empty() {
                return Err(e);
            }
        }
        Ok(Round {
            jobs: out,
            next_due,
            full,
            failed,
        })
    }
}

/// What one round of a fetch leased, and what it says about the partitions asked.
struct Round {
    jobs: Vec<super::Leased>,
    /// The soonest a job falls due or a lease expires in the partitions asked.
    next_due: Option<Duration>,
    /// Partitions that filled their share (they may hold more).
    full: Vec<usize>,
    /// A partition could not be served (its leases, if any, were given back).
    failed: bool,
}

impl JobStore for RedisStore {
    async fn enqueue(&self, job: NewJob) -> Result<Enqueued, EnqueueError> {
        let (id, args) = self.enqueue_args(&job)?;
        let (reply, answer) = tokio::sync::oneshot::channel();
        let waiter = Waiter { id, args, reply };
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

    async fn fetch(&self, kind: JobKind, worker: &str, max: usize, lease: Duration) -> Result<Fetched, StoreError> {
        // A worker whose outcomes could not be stored as durably as configured leases nothing.
        self.durable.ensure_supported().await?;
        let n = self.defaults.partitions.count();
        let plan = if n == 1 {
            vec![0]
        } else {
            self.visits[kind.index()]
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .plan(Instant::now())
        };
        if plan.is_empty() {
            let wait = self.visits[kind.index()]
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .next_due(Instant::now());
            return Ok(Fetched {
                jobs: Vec::new(),
                next_due: Some(wait),
                drained: false,
            });
        }
        self.fetch_from(kind, &plan, worker, max, lease).await
    }

    async fn settle(&self, _kind: JobKind, settlements: &[Settlement]) -> Result<Vec<SettleResult>, StoreError> {
        if settlements.is_empty() {
            return Ok(Vec::new());
        }
        // Every queue's outcomes are sent at once, whatever another queue (another shard)
        // answers: one that cannot acknowledge or be reached marks only its own.
        let mut results = vec![SettleResult::LeaseLost; settlements.len()];
        let mut not_durable = None;
        let mut unreached = None;
        let queues = self.by_queue(settlements, |s| &s.id);
        let answers = futures::future::join_all(queues.iter().map(|(keys, items)| async move {
            let batch: Vec<&Settlement> = items.iter().map(|(_, s)| *s).collect();
            self.settle_in(keys, &batch).await
        }))
        .await;
        for ((_, items), answer) in queues.iter().zip(answers) {
            self.touched(&items[0].1.id);
            match answer {
                Ok(rs) => {
                    for ((i, _), r) in items.iter().zip(rs) {
                        results[*i] = r;
                    }
                }
                Err(e) => {
                    let (mark, slot) = match e {
                        StoreError::NotDurable(_) => (SettleResult::NotDurable, &mut not_durable),
                        _ => (SettleResult::Unreached, &mut unreached),
                    };
                    slot.get_or_insert(e);
                    for (i, _) in items {
                        results[*i] = mark;
                    }
                }
            }
        }
        // Nothing else happened: the call's one answer says what (as for a single queue).
        if results.iter().all(|r| *r == SettleResult::Unreached) {
            if let Some(e) = unreached {
                return Err(e);
            }
        }
        if results.iter().all(|r| *r == SettleResult::NotDurable) {
            if let Some(e) = not_durable {
                return Err(e);
            }
        }
        Ok(results)
    }

    async fn extend_leases(&self, _kind: JobKind, leases: &[(JobId, String)], lease: Duration) -> Result<LeaseReport, StoreError> {
        // Each queue (each shard) renews its own: one that cannot be reached leaves only
        // its leases unrenewed; the call fails when none could be.
        let mut report = LeaseReport::default();
        let mut failure = None;
        let answers = self
            .call_per_queue::<(Vec<String>, Vec<String>)>(&scripts::EXTEND, leases, Some(lease.as_millis() as u64))
            .await;
        for (items, answer) in answers {
            match answer {
                Ok((lost, cancel)) => {
                    report.lost.extend(lost.into_iter().filter_map(|s| s.parse().ok()));
                    report.cancel_requested.extend(cancel.into_iter().filter_map(|s| s.parse().ok()));
                }
                Err(e) => {
                    failure.get_or_insert(e);
                    report.unreached.extend(items.iter().map(|(_, (id, _))| id.clone()));
                }
            }
        }
        match failure {
            Some(e) if report.unreached.len() == leases.len() => Err(e.into()),
            _ => Ok(report),
        }
    }

    async fn mark_started(&self, _kind: JobKind, runs: &[(JobId, String)]) -> Result<(), StoreError> {
        // Every queue is told even when another cannot be reached (the call then fails
        // and is sent again: a start is recorded once however often it is sent).
        let answers = self.call_per_queue::<i64>(&scripts::START, runs, None).await;
        match answers.into_iter().find_map(|(_, answer)| answer.err()) {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    async fn set_progress(&self, id: &JobId, token: &str, progress: &Progress) -> Result<bool, StoreError> {
        let keys = self.job_keys(id);
        let mut conn = self.conn.clone();
        let json = serde_json::to_string(progress).map_err(parse_err)?;
        let n: i64 = scripts::PROGRESS
            .key(keys.slot_key())
            .arg(keys.prefix())
            .arg(id.as_str())
            .arg(token)
            .arg(json)
            .invoke_async(&mut conn)
            .await?;
        Ok(n == 1)
    }

    async fn cancel(&self, id: &JobId) -> Result<CancelOutcome, StoreError> {
        let keys = self.job_keys(id);
        let mut conn = self.conn.clone();
        let r: String = scripts::CANCEL
            .key(keys.slot_key())
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
        let keys = self.job_keys(id);
        let mut conn = self.conn.clone();
        self.touched(id);
        let exclusive = if id.kind() == JobKind::Sync { "1" } else { "0" };
        let r: String = scripts::RETRY
            .key(keys.slot_key())
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
        let parts = self.all_keys(kind);
        let tags: Vec<String> = parts.iter().map(QueueKeys::slot_key).collect();
        let replies = self
            .grouped(&tags, Some(&scripts::LIBRARY), |pipe, i| super::counts::add_reads(pipe, &parts[i]))
            .await?;
        let mut total = QueueCounts::default();
        for values in replies {
            let part = super::counts::from_reads(values)?;
            total.lag_ms_by_partition.push(part.lag_ms);
            total.add(&part);
        }
        Ok(total)
    }

    async fn set_paused(&self, kind: JobKind, paused: bool) -> Result<(), StoreError> {
        let parts = self.all_keys(kind);
        if !paused {
            let mut visits = self.visits[kind.index()].lock().unwrap_or_else(|e| e.into_inner());
            for p in 0..parts.len() {
                visits.woken(p, Instant::now());
            }
        }
        let tags: Vec<String> = parts.iter().map(QueueKeys::slot_key).collect();
        self.grouped(&tags, None, |pipe, i| {
            let k = &parts[i];
            if paused {
                pipe.set(k.key("paused"), 1);
            } else {
                pipe.del(k.key("paused")).lpush(k.marker(), 1).ltrim(k.marker(), 0, 0);
            }
        })
        .await?;
        Ok(())
    }

    async fn purge_dead(&self, _kind: JobKind, ids: &[JobId]) -> Result<u64, StoreError> {
        let mut removed = 0;
        let mut conn = self.conn.clone();
        for (k, items) in self.by_queue(ids, |id| id) {
            for chunk in items.chunks(CHUNK) {
                let mut inv = scripts::REMOVE.key(k.slot_key());
                inv.arg(k.prefix()).arg("dead").arg(0).arg(0).arg(0);
                for (_, id) in chunk {
                    inv.arg(id.as_str());
                }
                let (n, _left): (u64, i64) = inv.invoke_async(&mut conn).await?;
                removed += n;
            }
        }
        Ok(removed)
    }

    async fn trim(&self, kind: JobKind, retention: Duration, limit: usize) -> Result<Option<Trimmed>, StoreError> {
        let mut conn = self.conn.clone();
        // One trimmer per kind at a time; the lock outlives the budget so a crashed
        // trimmer frees it on its own.
        let lock = self.partition_keys(kind, None).key("trim:lock");
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
        // `dead_max` is per kind: each partition keeps its share.
        let parts = self.all_keys(kind);
        let n = parts.len() as u64;
        for k in &parts {
            // Dead jobs from before dead-letter groups were kept join their groups, a
            // batch per pass, oldest first (one EXISTS per pass once done).
            while !self.backfill_dead_groups(k, limit).await? && started.elapsed() < TRIM_BUDGET {}
            // Likewise jobs made before per-account counts were kept are counted.
            while !self.backfill_account_counts(k).await? && started.elapsed() < TRIM_BUDGET {}
            for (state, keep_for, keep_max) in policies {
                loop {
                    let (removed, left): (u64, u64) = scripts::REMOVE
                        .key(k.slot_key())
                        .arg(k.prefix())
                        .arg(state)
                        .arg(keep_for.as_millis() as u64)
                        .arg(limit.max(1))
                        .arg(if keep_max == 0 { 0 } else { keep_max.div_ceil(n) })
                        .invoke_async(&mut conn)
                        .await?;
                    trimmed.removed += removed;
                    if left == 0 || started.elapsed() >= TRIM_BUDGET {
                        trimmed.backlog += left;
                        break;
                    }
                }
            }
        }
        let _: i64 = redis::cmd("DEL").arg(&lock).query_async(&mut conn).await?;
        Ok(Some(trimmed))
    }

    async fn waiting(&self, id: &JobId) -> Result<Option<super::Waiting>, StoreError> {
        let keys = self.job_keys(id);
        let mut conn = self.conn.clone();
        let reply: Vec<String> = scripts::WAITING
            .key(keys.slot_key())
            .arg(keys.prefix())
            .arg(id.as_str())
            .invoke_async(&mut conn)
            .await?;
        super::Waiting::from_reply(reply)
    }

    async fn wait_for_work(&self, kind: JobKind, timeout: Duration) -> Result<(), StoreError> {
        self.wait_for(kind, timeout).await
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
        // `live-workers` (worker -> when its heartbeat lapses, ms) lets the console count
        // live workers with one ZCOUNT instead of a walk over the heartbeat keys; entries
        // lapsed for an hour go.
        let now = chrono::Utc::now().timestamp_millis();
        let live = format!("{}:live-workers", self.namespace);
        let _: () = redis::pipe()
            .zadd(&live, worker, now + ttl.as_millis() as i64)
            .ignore()
            .zrembyscore(&live, "-inf", now - 3_600_000)
            .ignore()
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
