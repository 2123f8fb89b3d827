//! Fetching on Redis: which partitions a fetch visits, and the rounds of fetch-script
//! calls that lease jobs from them (promoting due jobs and reclaiming expired leases).
use std::time::{Duration, Instant};

use redis::Value;

use super::{parse_err, RedisStore, CHUNK, MAX_BATCH};
use crate::job::JobKind;
use crate::queue::codec::decode_leased_bytes;
use crate::queue::keys::{GROUP_INDEXES, LANE_OFFER, PARKED, TERMINAL};
use crate::queue::needs::NEED_ROUNDS;
use crate::queue::{scripts, Fetched, Leased, QueueKeys, Settlement, StoreError};

/// The queue's own keys a fetch touches besides those of the shared sets it declares
/// with them (and jobs' and accounts': fetch.lua).
const FETCH_KEYS: [&str; 11] = [
    "scheduled",
    "retrying",
    "seen",
    "gaps",
    "active",
    "unstarted",
    "stats",
    "cbdue",
    "paused",
    "runid",
    "restarted",
];
use crate::redis_conn::{query_grouped_items_or_stragglers, Late, Straggle};

impl RedisStore {
    pub(super) async fn lease_jobs(&self, kind: JobKind, worker: &str, max: usize, lease: Duration) -> Result<Fetched, StoreError> {
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
        let mut asked: Vec<usize> = Vec::new();
        let mut failed = false;
        while !to_ask.is_empty() && (max == 0 || out.len() < max) {
            let wanted = max - out.len();
            let take = if max == 0 { to_ask.len() } else { to_ask.len().min(wanted) };
            let mut round: Vec<usize> = to_ask.drain(..take).collect();
            self.ask_failing_beside_healthy(kind, &mut round, &mut to_ask, &asked);
            asked.extend(&round);
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
        // The turn goes on past the first partition of the plan that leased (a sweep,
        // which leases nothing, moves it not: the fairness audit of 2026-12-07, second).
        let parts = self.defaults.partitions.all();
        if let Some(first) = plan
            .iter()
            .find(|p| out.iter().any(|l| self.defaults.partitions.of_job(&l.id) == parts[**p]))
        {
            self.visits[kind.index()].lock().unwrap_or_else(|e| e.into_inner()).served(*first);
        }
        let drained = self.defaults.partitions.count() == 1 && max > 0 && out.len() < max && !failed;
        Ok(Fetched {
            jobs: out,
            next_due,
            drained,
        })
    }

    /// On a cluster, a round whose every partition failed its last visit (their shard
    /// down or hung) takes the other failing partitions still to ask, and a healthy one
    /// first (with the round's first share): from `to_ask` when it holds one, else one
    /// not yet `asked` in this fetch. The healthy one's answer starts the cut-off of a
    /// shard that does not answer ([`query_grouped_items_or_stragglers`]), a quarter of
    /// the lease later, and the failing ones share that one wait: alone, such a round
    /// waited the connection's timeout out (5 s), found on the sixth stop of 2026-12-07,
    /// and now would wait five eighths of the lease.
    fn ask_failing_beside_healthy(&self, kind: JobKind, round: &mut Vec<usize>, to_ask: &mut Vec<usize>, asked: &[usize]) {
        if !self.conn.is_cluster() {
            return;
        }
        let visits = self.visits[kind.index()].lock().unwrap_or_else(|e| e.into_inner());
        let failing = |p: usize| visits.failing(p);
        if round.is_empty() || !round.iter().all(|p| failing(*p)) {
            return;
        }
        round.extend(to_ask.iter().copied().filter(|p| failing(*p)));
        to_ask.retain(|p| !failing(*p));
        let healthy = match to_ask.iter().position(|p| !failing(*p)) {
            Some(i) => Some(to_ask.remove(i)),
            None => {
                let n = usize::from(self.defaults.partitions.count());
                (1..n)
                    .map(|i| (round[0] + i) % n)
                    .find(|p| !round.contains(p) && !asked.contains(p) && !failing(*p))
            }
        };
        if let Some(p) = healthy {
            round.insert(0, p);
        }
    }

    /// One round of [`RedisStore::fetch_from`]: partition `round[i]` asked for `shares[i]`
    /// jobs. A partition that passed over work for want of a declared key (fetch.lua) is
    /// asked at once for the rest of its share, declaring what it named, a bounded number
    /// of times; its jobs keep their place in the round's order.
    async fn fetch_round(
        &self,
        kind: JobKind,
        round: &[usize],
        shares: &[usize],
        worker: &str,
        lease: Duration,
    ) -> Result<Round, StoreError> {
        let mut r = self.fetch_round_once(kind, round, shares, worker, lease).await?;
        let parts = self.defaults.partitions.all();
        let position = |l: &Leased| {
            let p = self.defaults.partitions.of_job(&l.id);
            round.iter().position(|q| parts[*q] == p).unwrap_or(round.len())
        };
        for _ in 0..NEED_ROUNDS {
            if r.needy.is_empty() {
                break;
            }
            let again: Vec<usize> = std::mem::take(&mut r.needy);
            let again_shares: Vec<usize> = again
                .iter()
                .map(|p| {
                    let i = round.iter().position(|q| q == p).unwrap_or(0);
                    let got = r.jobs.iter().filter(|l| position(l) == i).count();
                    shares[i].saturating_sub(got)
                })
                .collect();
            let more = match self.fetch_round_once(kind, &again, &again_shares, worker, lease).await {
                Ok(more) => more,
                Err(_) => break, // what was leased goes ahead; the rest waits for the next fetch
            };
            r.jobs.extend(more.jobs);
            r.jobs.sort_by_key(|l| position(l)); // stable: each partition's jobs in order
            r.full.retain(|p| !again.contains(p));
            r.full.extend(more.full);
            r.needy = more.needy;
            r.failed |= more.failed;
            if let Some(w) = more.next_due {
                r.next_due = Some(r.next_due.map_or(w, |n| n.min(w)));
            }
        }
        Ok(r)
    }

    /// One call of the fetch script on each of `round`, all in one pipeline (one per
    /// shard on a cluster).
    async fn fetch_round_once(
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
        let hints: Vec<Vec<String>> = {
            let stored = self.fetch_hints.lock().unwrap_or_else(|e| e.into_inner());
            keys.iter().map(|k| stored.get(k.prefix()).cloned().unwrap_or_default()).collect()
        };
        let add = |pipe: &mut redis::Pipeline, i: usize| {
            let mut inv = scripts::FETCH.key(keys[i].slot_key());
            if self.strict {
                keys[i].declare(&mut inv, &[&FETCH_KEYS, &PARKED, &TERMINAL, &GROUP_INDEXES, &LANE_OFFER]);
                for key in &hints[i] {
                    inv.key(key);
                }
            }
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
        // primary hand the job to a second worker while the first still runs it. The
        // wait ends within half the lease, on the kind's own connection (no other write's
        // wait holds it up): nothing renews these leases before the fetch answers, and one
        // that ran out meanwhile would be reclaimed from under a worker about to give it
        // back.
        let waited = self.durable.durability().wait_within(lease / 2);
        let wait = self.durable.durability().wait_command_within(lease / 2);
        let conn = if wait.is_some() {
            self.durable.fetch_conn(kind)
        } else {
            self.conn.clone()
        };
        // Each shard answers on its own, and each partition within it: one that is down,
        // cannot acknowledge or refuses its fetch (at the memory limit) does not cost the
        // leases the others made.
        // A shard that hangs, or whose replicas cannot acknowledge, holds the others'
        // leases a quarter of the lease at most: their age counts against the fence
        // (lease − heartbeat) from when this fetch was sent, and the keeper renews them
        // on its next beat (the review of e911f3b: a straggle of the wait's bound and a
        // quarter more, 1.35 s, had healthy runs fenced). One cut off has what it leased
        // given back when it answers, so cutting off a shard still waiting for its
        // replicas costs its jobs nothing.
        // And a round that reached only a hung shard (a one-partition round, say, before
        // that partition is known to fail) answers five eighths of the lease after it was
        // sent, not the connection's 5 s later: the wait for replicas ends within half of
        // it, and an answer any later would come older than the keeper's calls may take
        // (a cluster that slow everywhere could renew no lease anyway).
        let straggle = Straggle {
            after_first: lease / 4,
            within: lease * 5 / 8,
        };
        let groups = query_grouped_items_or_stragglers(&conn, &tags, Some(&scripts::LIBRARY), add, wait.as_ref(), straggle).await;
        let now = Instant::now();
        let mut out = Vec::new();
        let mut give_back = Vec::new();
        let mut next_due: Option<Duration> = None;
        let mut full = Vec::new();
        let mut needy = Vec::new();
        let mut failure: Option<StoreError> = None;
        for group in groups {
            let (replies, durable) = match group.result {
                Ok((replies, tail)) => {
                    let durable = tail.map_or(Ok(()), |w| self.durable.check_waited(w, waited));
                    (replies, durable)
                }
                Err(e) => {
                    // Whether it leased anything is unknown: such leases return when they
                    // expire — unless its answer was only late (cut off so as not to
                    // hold up the others), when what it leased is given back as it comes.
                    // The partitions wait for their marker or the next sweep.
                    if let Some(late) = group.late {
                        self.give_back_late(kind, late);
                    }
                    let partitions: Vec<usize> = group.items.iter().map(|i| round[*i]).collect();
                    for p in &partitions {
                        self.visits[kind.index()]
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .failed(*p, now, lease);
                    }
                    self.partition_health.all_failed(kind, &partitions, &e);
                    failure.get_or_insert(e.into());
                    continue;
                }
            };
            for (i, reply) in group.items.iter().zip(replies) {
                let (p, share) = (round[*i], shares[*i]);
                let reply = reply.into_iter().next().unwrap_or(Value::Nil);
                if let Value::ServerError(e) = reply {
                    // Refused for this partition alone: it waits for its marker or the
                    // next sweep like one whose shard is down (a script refused part-way
                    // may have leased: such leases return when they expire).
                    let e = redis::RedisError::from(e);
                    self.visits[kind.index()]
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .failed(p, now, lease);
                    self.partition_health.failed(kind, p, &e);
                    failure.get_or_insert(e.into());
                    continue;
                }
                let (jobs, wait, next_hints, needed): (Vec<Value>, i64, Vec<String>, i64) =
                    redis::from_redis_value(reply).map_err(parse_err)?;
                if self.strict {
                    self.fetch_hints
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(keys[*i].prefix().to_owned(), next_hints);
                }
                if needed == 1 {
                    needy.push(p);
                }
                let got = jobs.len() / 3;
                let leased = decode_jobs(kind, jobs);
                self.note_accounts(&leased);
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
                // A sweep's visit (no job asked for) cannot tell whether jobs are ready:
                // the partition's next visit stays as it was.
                if share == 0 {
                    self.visits[kind.index()].lock().unwrap_or_else(|e| e.into_inner()).answered(p);
                }
                if share > 0 {
                    self.visits[kind.index()].lock().unwrap_or_else(|e| e.into_inner()).visited(
                        p,
                        now,
                        got >= share && durable.is_ok(),
                        wait,
                        lease,
                    );
                }
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
            if let Err(re) = self.give_back(&release).await {
                tracing::warn!(error = %re, jobs = release.len(), "could not give back leases that were not durable; they return when the leases expire");
            }
        }
        // A shard's failure is the caller's only when nothing else was leased (so an idle
        // worker backs off); otherwise the runs that were leased go ahead. Partitions
        // that asked for keys are asked again first (a fetch's first visit to a partition
        // declares none: with a shard hung, the first fetch leased nothing from the
        // healthy ones before, found by the review of 2026-12-07).
        let failed = failure.is_some();
        if let Some(e) = failure {
            if out.is_empty() && needy.is_empty() {
                return Err(e);
            }
        }
        Ok(Round {
            jobs: out,
            next_due,
            full,
            needy,
            failed,
        })
    }
}

impl RedisStore {
    /// Gives back, when it comes, what a fetch's pipeline cut off as late leased (its
    /// shard was slow, or hung and resumed): those leases reach no run, and left to run
    /// out they would be reclaimed as hand-backs of a dead worker's, costing the job its
    /// free hand-backs (the review of 2026-12-07).
    fn give_back_late(&self, kind: JobKind, late: Late) {
        let store = self.clone();
        tokio::spawn(async move {
            let Ok(Ok((replies, _))) = late.await else { return };
            let leased: Vec<Leased> = replies
                .into_iter()
                .filter_map(|reply| reply.into_iter().next())
                .filter_map(|reply| redis::from_redis_value::<(Vec<Value>, i64, Vec<String>, i64)>(reply).ok())
                .flat_map(|(jobs, ..)| decode_jobs(kind, jobs))
                .collect();
            if leased.is_empty() {
                return;
            }
            let release: Vec<Settlement> = leased.iter().map(Settlement::release).collect();
            match store.give_back(&release).await {
                Ok(_) => tracing::info!(kind = %kind, jobs = release.len(), "gave back the leases of a fetch's late answer"),
                Err(e) => {
                    tracing::warn!(kind = %kind, jobs = release.len(), error = %e, "could not give back the leases of a fetch's late answer; they return when the leases expire")
                }
            }
        });
    }
}

/// The jobs of a fetch script's reply (three strings each). Each job on its own: one this
/// version cannot read must not cost the others leased by the same call their leases. It
/// goes out with the reason (the runtime puts it in dead, logging it once) unless its
/// very id is lost.
fn decode_jobs(kind: JobKind, jobs: Vec<Value>) -> Vec<Leased> {
    let mut leased = Vec::with_capacity(jobs.len() / 3);
    let mut it = jobs.into_iter();
    while let (Some(head), Some(traceparent), Some(payload)) = (it.next(), it.next(), it.next()) {
        match decode_leased_bytes(&raw(head), &raw(traceparent), &raw(payload)) {
            Ok(l) => leased.push(l),
            Err(head) => tracing::error!(
                kind = %kind,
                head = %head,
                "a leased job's id cannot be read; it returns when its lease runs out, the other jobs of the fetch go out"
            ),
        }
    }
    leased
}

/// What one round of a fetch leased, and what it says about the partitions asked.
struct Round {
    jobs: Vec<Leased>,
    /// The soonest a job falls due or a lease expires in the partitions asked.
    next_due: Option<Duration>,
    /// Partitions that filled their share (they may hold more).
    full: Vec<usize>,
    /// Partitions that passed over work for want of a declared key: asked again at once,
    /// declaring it.
    needy: Vec<usize>,
    /// A partition could not be served (its leases, if any, were given back).
    failed: bool,
}

/// A reply string's bytes as the script sent them (it sends strings; anything else is
/// read as its text, or as nothing).
fn raw(v: Value) -> Vec<u8> {
    match v {
        Value::BulkString(bytes) => bytes,
        Value::SimpleString(text) => text.into_bytes(),
        other => redis::from_redis_value::<String>(other).map(String::into_bytes).unwrap_or_default(),
    }
}
