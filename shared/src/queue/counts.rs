//! A queue's counts (`JobStore::counts`): what one partition's reads are, how their
//! replies become [`QueueCounts`], and how partitions add up. Every number is a ZCARD,
//! a head read or a counter — never a walk of the keyspace.
use redis::Value;

use super::redis_store::parse_err;
use super::stats::QueueHold;
use super::{scripts, QueueCounts, QueueEvents, QueueKeys, StoreError, WaitingCounts};

/// The ZCARDs read per partition after the `queued` counter, in the order
/// [`from_reads`] expects.
const CARDS: [&str; 8] = [
    "scheduled",
    "retrying",
    "active",
    "state:succeeded",
    "state:partial",
    "state:dead",
    "state:cancelled",
    "unstarted",
];

/// How many accounts' lanes the stats read: a sample of those at their cap, and the
/// first in `passes` (queue_stats.lua's `LANES_READ`).
const LANES_READ: usize = 1000;

/// The accounts whose lanes one partition's stats read, read ahead of [`add_reads`] so
/// its script declares their keys.
#[derive(Debug, Default)]
pub(super) struct LanesAhead {
    blocked: Vec<String>,
    passes: Vec<String>,
}

/// Adds the reads of [`LanesAhead`] for one partition to `pipe`.
pub(super) fn add_lanes_ahead(pipe: &mut redis::Pipeline, k: &QueueKeys) {
    pipe.cmd("HRANDFIELD").arg(k.key("blocked")).arg(LANES_READ);
    pipe.zrange(k.key("passes"), 0, LANES_READ as isize - 1);
}

/// [`LanesAhead`] from the replies of [`add_lanes_ahead`].
pub(super) fn lanes_ahead(values: Vec<Value>) -> Result<LanesAhead, StoreError> {
    let (blocked, passes): (Vec<String>, Vec<String>) = redis::from_redis_value(Value::Array(values)).map_err(parse_err)?;
    Ok(LanesAhead { blocked, passes })
}

/// Adds one partition's reads to `pipe`: one snapshot (MULTI/EXEC) of the counts, then
/// the sums over lanes, which need a script. `at_limit`: Redis is at its memory limit,
/// where it refuses every command of a MULTI and every script that may write: the same
/// reads then go one by one, and a queue an older release wrote is not recounted (its
/// counter is read as it stands).
pub(super) fn add_reads(pipe: &mut redis::Pipeline, k: &QueueKeys, ahead: &LanesAhead, at_limit: bool) {
    if at_limit {
        // in the place of the recount's answer: 0 (nothing to recount) or 1
        pipe.exists(k.key("ready"));
    } else {
        pipe.atomic(); // `running` is `active` less `unstarted`: one snapshot

        // Recounts the queued jobs if a process of the release before the counter wrote
        // here (a rolling upgrade): a no-op read once none runs. It answers -1 when there
        // is something to recount (it needs every lane declared: the caller then recounts).
        let mut call = scripts::COUNT_QUEUED.key(k.slot_key());
        for suffix in ["ready", "passes", "lanes", "blocked", "queued"] {
            call.key(k.key(suffix));
        }
        call.arg(k.prefix()).add_to(pipe);
    }
    pipe.get(k.key("queued"));
    for suffix in CARDS {
        pipe.zcard(k.key(suffix));
    }
    pipe.exists(k.key("paused"));
    pipe.cmd("ZRANGE").arg(k.key("unstarted")).arg(0).arg(0).arg("WITHSCORES");
    pipe.hget(k.key("stats"), "succeeded");
    pipe.cmd("TIME");
    pipe.get(k.key("seen"));
    pipe.exists(k.key("restarted"));
    let mut call = scripts::QUEUE_STATS.key(k.slot_key());
    for suffix in [
        "parked:rate_limit",
        "parked:quota_cooldown",
        "parked:breaker_open",
        "blocked",
        "stats",
        "passes",
        "readysince",
    ] {
        call.key(k.key(suffix));
    }
    for account in ahead.blocked.iter().chain(&ahead.passes) {
        call.key(k.of_account("rq", account));
    }
    call.arg(k.prefix());
    for account in &ahead.blocked {
        call.arg(account);
    }
    call.add_to(pipe);
}

/// One partition's counts from the replies of [`add_reads`]; `None` when its queued
/// jobs must first be recounted (a process of an older layout wrote there).
pub(super) fn from_reads(values: Vec<Value>) -> Result<Option<QueueCounts>, StoreError> {
    let mut it = values.into_iter();
    let mut next = || it.next().unwrap_or(Value::Nil);
    let upgraded: i64 = redis::from_redis_value(next()).map_err(parse_err)?;
    if upgraded < 0 {
        return Ok(None);
    }
    let mut c = [0u64; 9];
    // The counter is absent before the first enqueue (and would read below zero only
    // if a process of an older layout took from the lanes: counted as none).
    let queued: Option<i64> = redis::from_redis_value(next()).map_err(parse_err)?;
    c[0] = queued.unwrap_or(0).max(0) as u64;
    for slot in c[1..].iter_mut() {
        *slot = redis::from_redis_value(next()).map_err(parse_err)?;
    }
    let paused: bool = redis::from_redis_value(next()).map_err(parse_err)?;
    let unstarted_head: Vec<String> = redis::from_redis_value(next()).map_err(parse_err)?;
    let total: Option<u64> = redis::from_redis_value(next()).map_err(parse_err)?;
    let time: (u64, u64) = redis::from_redis_value(next()).map_err(parse_err)?;
    let seen: Option<String> = redis::from_redis_value(next()).map_err(parse_err)?;
    let restarted: bool = redis::from_redis_value(next()).map_err(parse_err)?;
    let raw: Vec<u64> = redis::from_redis_value(next()).map_err(parse_err)?;
    let now_ms = time.0 * 1000 + time.1 / 1000;
    let waited = |score: u64| now_ms.saturating_sub(score % 10_000_000_000_000);
    let stats = super::stats::StatsReply::from_reply(&raw)
        .ok_or_else(|| StoreError::Protocol(format!("queue stats reply had {} parts", raw.len())))?;
    let unstarted_head = unstarted_head.get(1).and_then(|s| s.parse::<f64>().ok()).map(|s| s as u64);
    let lag_ms = [(stats.head > 0).then_some(stats.head), unstarted_head]
        .into_iter()
        .flatten()
        .map(waited)
        .max()
        .unwrap_or(0);
    let served = seen
        .and_then(|s| s.parse::<f64>().ok())
        .is_some_and(|seen| (now_ms as f64 - seen) < super::waiting::NO_WORKER.as_millis() as f64);
    let hold = if paused {
        QueueHold::Paused
    } else if !served {
        QueueHold::NoWorker
    } else if restarted {
        QueueHold::RestartHold
    } else {
        QueueHold::None
    };
    let waiting = super::stats::split_waiting(c[0], c[1], c[2], c[8], hold, &stats);
    Ok(Some(QueueCounts {
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
        lag_ms_by_partition: Vec::new(),
        succeeded_total: total.unwrap_or(0),
        waiting,
        events: stats.events,
    }))
}

impl QueueCounts {
    /// Adds another partition's counts: sums, the longest lag, paused if any is.
    pub fn add(&mut self, o: &QueueCounts) {
        self.scheduled += o.scheduled;
        self.queued += o.queued;
        self.running += o.running;
        self.retrying += o.retrying;
        self.succeeded += o.succeeded;
        self.partial += o.partial;
        self.dead += o.dead;
        self.cancelled += o.cancelled;
        self.paused |= o.paused;
        self.prefetched += o.prefetched;
        self.lag_ms = self.lag_ms.max(o.lag_ms);
        self.succeeded_total += o.succeeded_total;
        self.waiting.add(&o.waiting);
        self.events.add(&o.events);
    }
}

impl WaitingCounts {
    pub fn add(&mut self, o: &WaitingCounts) {
        self.scheduled += o.scheduled;
        self.retry_backoff += o.retry_backoff;
        self.rate_limit += o.rate_limit;
        self.quota_cooldown += o.quota_cooldown;
        self.breaker_open += o.breaker_open;
        self.account_busy += o.account_busy;
        self.queue_paused += o.queue_paused;
        self.no_worker += o.no_worker;
        self.restart_hold += o.restart_hold;
        self.queued += o.queued;
        self.prefetched += o.prefetched;
    }
}

impl QueueEvents {
    pub fn add(&mut self, o: &QueueEvents) {
        self.reclaimed_lost += o.reclaimed_lost;
        self.reclaimed_released += o.reclaimed_released;
        self.late += o.late;
        self.parked_rate_limit += o.parked_rate_limit;
        self.parked_quota_cooldown += o.parked_quota_cooldown;
        self.parked_breaker_open += o.parked_breaker_open;
    }
}
