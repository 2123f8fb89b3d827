//! Settling on Redis: runs' outcomes sent per queue (a terminal one waited on as
//! `queue.durability` asks), leases renewed and starts recorded, each shard on its own.
use std::time::Duration;

use super::RedisStore;
use crate::job::{JobId, JobKind, JobState};
use crate::queue::codec::attempt_arg;
use redis::Value;

use super::parse_err;
use crate::queue::keys::{GROUP_INDEXES, LANE_OFFER, PARKED, TERMINAL};
use crate::queue::needs::{needed, NEED_ROUNDS};
use crate::queue::{durability, scripts, Durability, LeaseReport, Leased, QueueKeys, SettleAction, SettleResult, Settlement, StoreError};

/// The queue's own keys a run's end may touch besides those of the shared sets it
/// declares with them (and its record's, history's, account's and dead-letter group's).
const SETTLE_KEYS: [&str; 6] = ["active", "unstarted", "scheduled", "retrying", "stats", "cbdue"];

/// Most accounts of leased jobs a store notes at once (see [`RedisStore::note_accounts`]).
const MAX_NOTED: usize = 1_000_000;

/// The settle script's outcome, delay (ms) and data arguments for one settlement.
fn action_args(s: &Settlement) -> (&'static str, u64, String) {
    let ms = |d: &Duration| d.as_millis() as u64;
    match &s.action {
        SettleAction::Succeeded(v) => ("succeeded", 0, json(v)),
        SettleAction::Partial(v) => ("partial", 0, json(v)),
        SettleAction::Retry { delay, error } => ("retry", ms(delay), json(error)),
        SettleAction::Snooze {
            delay,
            error,
            advanced: false,
        } => ("snooze", ms(delay), json(error)),
        SettleAction::Snooze {
            delay,
            error,
            advanced: true,
        } => ("snooze_advanced", ms(delay), json(error)),
        SettleAction::GaveWay { delay, error } => ("gave_way", ms(delay), json(error)),
        SettleAction::Held { delay, error } => ("snooze_held", ms(delay), json(error)),
        SettleAction::Dead(e) => ("dead", 0, json(e)),
        SettleAction::Cancelled(e) => ("cancelled", 0, json(e)),
        SettleAction::Release => ("release", 0, String::new()),
    }
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

/// Whether a settle waits for `queue.durability`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    AsConfigured,
    Nothing,
}

impl RedisStore {
    pub(super) async fn settle_runs(&self, settlements: &[Settlement]) -> Result<Vec<SettleResult>, StoreError> {
        self.settle_each(settlements, Wait::AsConfigured).await
    }

    /// Gives back leases that were never durable (their wait fell short or was refused):
    /// the hand-back waits for nothing, so it is written even when Redis can no longer
    /// give the configured durability. A failover that forgets it forgets a lease no
    /// run holds, which is handed back when it runs out, as unstarted.
    pub(super) async fn give_back(&self, settlements: &[Settlement]) -> Result<Vec<SettleResult>, StoreError> {
        self.settle_each(settlements, Wait::Nothing).await
    }

    async fn settle_each(&self, settlements: &[Settlement], wait: Wait) -> Result<Vec<SettleResult>, StoreError> {
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
            self.settle_in(keys, &batch, wait).await
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

    pub(super) async fn renew_leases(
        &self,
        leases: &[(JobId, String)],
        lease: Duration,
        within: Duration,
    ) -> Result<LeaseReport, StoreError> {
        // Each queue (each shard) renews its own: one that cannot be reached, or does not
        // answer `within`, leaves only its leases unrenewed; the call fails when none could
        // be.
        let mut report = LeaseReport::default();
        let mut failure = None;
        let answers = self
            .call_per_queue::<(Vec<String>, Vec<String>)>(
                &scripts::EXTEND,
                &["active", "seen", "gaps", "marker", "runid", "restarted"],
                leases,
                Some(lease.as_millis() as u64),
                Some(within),
            )
            .await;
        for (items, answer) in answers {
            match answer {
                Ok((lost, cancel)) => {
                    report.lost.extend(lost.into_iter().filter_map(|s| s.parse().ok()));
                    report.cancel_requested.extend(cancel.into_iter().filter_map(|s| s.parse().ok()));
                }
                Err(e) => {
                    report.silent |= e.is_timeout();
                    // A silence says more than a refusal: the caller dials afresh on it.
                    if failure.is_none() || e.is_timeout() {
                        failure = Some(e);
                    }
                    report.unreached.extend(items.iter().map(|(_, (id, _))| id.clone()));
                }
            }
        }
        match failure {
            Some(e) if report.unreached.len() == leases.len() => Err(e.into()),
            _ => Ok(report),
        }
    }

    /// A live worker's beat on every queue of `kind`: each notes that Redis served it
    /// and wakes an idle fetcher when a lease there has run out (extend.lua, no leases).
    pub(super) async fn beat_queues(&self, kind: JobKind) -> Result<(), StoreError> {
        let answers = futures::future::join_all(self.all_keys(kind).iter().map(|keys| {
            let mut inv = scripts::EXTEND.key(keys.slot_key());
            for suffix in ["active", "seen", "gaps", "marker", "runid", "restarted"] {
                inv.key(keys.key(suffix));
            }
            inv.arg(keys.prefix()).arg(0);
            let mut conn = self.conn.clone();
            async move { inv.invoke_async::<(Vec<String>, Vec<String>)>(&mut conn).await }
        }))
        .await;
        match answers.into_iter().find_map(Result::err) {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    /// Records the runs' starts, each queue its own; returns the runs whose queue could
    /// not be reached or did not answer `within` (sent again later: a start is recorded
    /// once however often it is sent). Fails when no queue answered.
    pub(super) async fn record_starts(&self, runs: &[(JobId, String)], within: Duration) -> Result<Vec<JobId>, StoreError> {
        let answers = self
            .call_per_queue::<i64>(&scripts::START, &["unstarted"], runs, None, Some(within))
            .await;
        let mut unreached = Vec::new();
        let mut failure = None;
        for (items, answer) in answers {
            if let Err(e) = answer {
                failure.get_or_insert(e);
                unreached.extend(items.iter().map(|(_, (id, _))| id.clone()));
            }
        }
        match failure {
            Some(e) if unreached.len() == runs.len() => Err(e.into()),
            _ => Ok(unreached),
        }
    }

    /// Notes the accounts of jobs just leased, for their settle to declare.
    pub(super) fn note_accounts(&self, leased: &[Leased]) {
        if !self.strict {
            return;
        }
        let mut accounts = self.leased_accounts.lock().unwrap_or_else(|e| e.into_inner());
        // Bounded: a run never settled (its process stopped) leaves an entry behind.
        if accounts.len() > MAX_NOTED {
            accounts.clear();
        }
        for l in leased {
            if let Ok(payload) = &l.payload {
                accounts.insert(l.id.clone(), payload.account_id().to_string());
            }
        }
    }

    /// Settle one queue's runs: one pipeline of script calls (256 runs each). Only a
    /// job's end must not roll back (review F2): a batch holding one goes on the durable
    /// writes' connection, followed by the wait `queue.durability` asks for; a retry,
    /// snooze or hand-back lost in a failover is reclaimed like any lease.
    async fn settle_in(&self, keys: &QueueKeys, settlements: &[&Settlement], wait: Wait) -> Result<Vec<SettleResult>, StoreError> {
        // The keys each run's end touches: the queue's, its record and history, and
        // its account's (as leased here; one leased elsewhere is read by the script,
        // which then names them, and the call is made again).
        let accounts: Vec<Option<String>> = if self.strict {
            let noted = self.leased_accounts.lock().unwrap_or_else(|e| e.into_inner());
            settlements.iter().map(|s| noted.get(&s.id).cloned()).collect()
        } else {
            vec![None; settlements.len()]
        };
        let chunks: Vec<(usize, &[&Settlement])> = settlements.chunks(256).enumerate().map(|(c, s)| (c * 256, s)).collect();
        let call = |(first, chunk): (usize, &[&Settlement]), extra: &[String]| {
            let mut inv = scripts::SETTLE.key(keys.slot_key());
            let declared: &[&Settlement] = if self.strict || !extra.is_empty() { chunk } else { &[] };
            if !declared.is_empty() {
                keys.declare(&mut inv, &[&SETTLE_KEYS, &PARKED, &TERMINAL, &GROUP_INDEXES, &LANE_OFFER]);
            }
            let mut seen: Vec<&str> = Vec::new();
            for (s, account) in declared.iter().zip(&accounts[first..]) {
                inv.key(keys.job(&s.id)).key(keys.attempts(&s.id));
                if let Some(a) = account.as_deref().filter(|a| !seen.contains(a)) {
                    seen.push(a);
                    for what in ["hold", "as", "rq", "excl", "exclm"] {
                        inv.key(keys.of_account(what, a));
                    }
                }
            }
            for key in extra {
                inv.key(key);
            }
            inv.arg(keys.prefix()).arg(chunk.len()).arg(self.defaults.max_snoozes);
            for s in chunk {
                let (outcome, delay, data) = action_args(s);
                let attempt = s.attempt.as_ref().map(|a| attempt_arg(a, &s.token)).unwrap_or_default();
                inv.arg(s.id.as_str()).arg(&s.token).arg(outcome).arg(delay).arg(attempt).arg(data);
            }
            inv
        };
        let local = Durability::LOCAL;
        let (mut conn, wanted) = if wait == Wait::AsConfigured && settlements.iter().any(|s| s.action.must_be_durable()) {
            self.durable.ensure_supported().await?;
            (self.durable.conn(), self.durable.durability())
        } else {
            (self.conn.clone(), &local)
        };
        // Every chunk at once; a chunk that answered it needs more keys (it wrote
        // nothing) goes again with them, alone.
        let mut answers: Vec<Option<Vec<String>>> = vec![None; chunks.len()];
        let mut pending: Vec<(usize, Vec<String>)> = (0..chunks.len()).map(|c| (c, Vec::new())).collect();
        for _ in 0..NEED_ROUNDS {
            if pending.is_empty() {
                break;
            }
            let mut pipe = redis::pipe();
            for (c, extra) in &pending {
                call(chunks[*c], extra).add_to(&mut pipe);
            }
            let replies: Vec<Value> = match durability::query(&mut conn, pipe, wanted).await {
                Err(StoreError::Redis(e)) if crate::redis_conn::is_missing(&e) => {
                    scripts::LIBRARY.load(&mut conn).await?;
                    continue;
                }
                r => r.map_err(|e| self.durable.refused_wait(e))?,
            };
            let mut again = Vec::new();
            for ((c, mut extra), reply) in pending.into_iter().zip(replies) {
                match needed(&reply) {
                    Some(more) => {
                        extra.extend(more);
                        again.push((c, extra));
                    }
                    None => answers[c] = Some(redis::from_redis_value(reply).map_err(parse_err)?),
                }
            }
            pending = again;
        }
        if !pending.is_empty() {
            return Err(StoreError::Protocol("a settle kept meeting keys it had not declared".into()));
        }
        if self.strict {
            let mut noted = self.leased_accounts.lock().unwrap_or_else(|e| e.into_inner());
            for s in settlements {
                noted.remove(&s.id);
            }
        }
        let replies = answers.into_iter().map(Option::unwrap_or_default);
        Ok(replies
            .into_iter()
            .flatten()
            .map(|r| match (r.as_str(), r.strip_prefix("as:")) {
                ("ok", _) => SettleResult::Applied,
                ("gone", _) => SettleResult::RecordGone,
                // (a state a newer script names: it was applied all the same)
                (_, Some(ended)) => ended.parse::<JobState>().map_or(SettleResult::Applied, SettleResult::AppliedAs),
                _ => SettleResult::LeaseLost,
            })
            .collect())
    }
}
