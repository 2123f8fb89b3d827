//! [`CallbackStore`] on Redis: `callback_claim.lua` and `callback_record.lua`.
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use redis::Value;

use super::callbacks::{AccountShare, CallbackStore, DueCallback, Recorded};
use super::{scripts, RedisStore, StoreError};
use crate::callback::DeliveryRecord;
use crate::job::{JobId, JobKind};

/// Most deliveries one claim takes.
const MAX_CLAIM: usize = 100;
/// How many due deliveries a claim looks through when accounts have shares
/// (callback_claim.lua's `SCAN`).
const CLAIM_SCAN: usize = 1000;
/// How many accounts with held deliveries a claim looks at (callback_claim.lua's
/// `HELD_SCAN`).
const HELD_SCAN: usize = 100;
/// Longest one partition's read ahead of its claim may take (a tenth of the claim's
/// lease if that is shorter, but never under [`CLAIM_WITHIN_LEAST`]): answered in
/// milliseconds by a shard that answers at all.
const CLAIM_WITHIN: Duration = Duration::from_secs(1);
/// The read ahead writes nothing and the lease starts in the claim itself, so a short
/// lease does not make its wait short: a loaded host's Redis may take tens of
/// milliseconds (found by a flake: a 20 ms lease gave it 2 ms).
const CLAIM_WITHIN_LEAST: Duration = Duration::from_millis(250);

/// Partitions passed over by claims while others claimed (logged once an outage; a
/// claim that claimed nothing fails, and its caller logs that).
static PARTITION_DOWN: crate::outage::Outage = crate::outage::Outage::new();

fn protocol(e: impl std::fmt::Display) -> StoreError {
    StoreError::Protocol(e.to_string())
}

impl CallbackStore for RedisStore {
    async fn claim_callbacks(
        &self,
        kind: JobKind,
        worker: &str,
        max: usize,
        lease: Duration,
        max_tries: u32,
        share: &AccountShare,
    ) -> Result<(Vec<DueCallback>, Option<Duration>), StoreError> {
        // Each partition in turn until `max` are claimed, from the one after where the
        // last claim started (found by the callbacks audit of 2026-12-07: every claim
        // began at the first partition, so its backlog held back every other's
        // deliveries); the wait is the shortest. An account's tries claimed in one
        // partition count against its share in the next.
        // A partition that fails (its shard is down) is passed over: what the others
        // claimed is handed out, never dropped (their claims are written: dropped, they
        // would run out as `lost` tries); it fails the call only when nothing was claimed.
        let mut share = share.clone();
        let mut out = Vec::new();
        let mut next: Option<Duration> = None;
        let mut failed = None;
        let queues = self.all_keys(kind);
        let first = self.claim_turns[kind.index()].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        for i in 0..queues.len() {
            let keys = &queues[(first + i) % queues.len()];
            if out.len() >= max.max(1) {
                break;
            }
            let count = (max.max(1) - out.len()).clamp(1, MAX_CLAIM);
            match self.claim_in(keys, count, lease, worker, max_tries, &share).await {
                Ok((claimed, wait)) => {
                    for due in claimed {
                        *share.in_flight.entry(due.account.clone().unwrap_or_default()).or_default() += 1;
                        out.push(due);
                    }
                    if let Some(w) = wait {
                        next = Some(next.map_or(w, |n| n.min(w)));
                    }
                }
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
        }
        match failed {
            Some(e) if out.is_empty() => Err(e),
            Some(e) => {
                if PARTITION_DOWN.failed() {
                    tracing::warn!(kind = %kind, error = %e, "callback claims: partitions whose shard does not answer are passed over");
                }
                Ok((out, next))
            }
            None => {
                if PARTITION_DOWN.answered() {
                    tracing::info!(kind = %kind, "callback claims: every partition answers again");
                }
                Ok((out, next))
            }
        }
    }

    async fn record_callback(
        &self,
        due: &DueCallback,
        record: &DeliveryRecord,
        next: Option<Duration>,
        delivered: bool,
    ) -> Result<Recorded, StoreError> {
        let keys = self.job_keys(&due.job_id);
        let mut conn = self.connection();
        let json = serde_json::to_string(record).map_err(protocol)?;
        let next_ms = next.map_or(-1, |d| d.as_millis() as i64);
        let r: String = scripts::CALLBACK_RECORD
            .key(keys.slot_key())
            .key(keys.job(&due.job_id))
            .key(keys.key(&format!("callbacks:{}", due.job_id)))
            .key(keys.key("cbdue"))
            .arg(keys.prefix())
            .arg(due.job_id.as_str())
            .arg(&due.token)
            .arg(json)
            .arg(next_ms)
            .arg(if delivered { "delivered" } else { "failed" })
            .invoke_async(&mut conn)
            .await?;
        Ok(match r.as_str() {
            "ok" => Recorded::Applied,
            "stale" => Recorded::Stale,
            _ => Recorded::Missing,
        })
    }
}

impl RedisStore {
    /// One partition's claim: the due deliveries it claimed, and how long until the next
    /// falls due when it claimed none (`None`: none pending, or only accounts at their
    /// share are due).
    async fn claim_in(
        &self,
        keys: &super::QueueKeys,
        count: usize,
        lease: Duration,
        worker: &str,
        max_tries: u32,
        share: &AccountShare,
    ) -> Result<(Vec<DueCallback>, Option<Duration>), StoreError> {
        // The entries the script may claim, read ahead so it declares their keys: the
        // first due, and the first held ones of each held account with room here; none
        // at all: nothing to claim or wait for here.
        let scan = if share.per_account > 0 { CLAIM_SCAN } else { count };
        let mut conn = self.connection();
        // The read ahead is bounded (it writes nothing): a shard that hangs costs the
        // round this, not its timeout for each of its partitions (what the others
        // claimed waited for it, and went out after the claims had run out: another
        // worker claimed and sent them too). The claim itself, once sent, is waited for:
        // what it claimed is written, and dropped it would only run out as `lost` tries.
        let within = (lease / 10).clamp(CLAIM_WITHIN_LEAST, CLAIM_WITHIN);
        let mut pipe = redis::pipe();
        pipe.zrange(keys.key("cbdue"), 0, scan as isize - 1)
            .zrange(keys.key("cbheld"), 0, HELD_SCAN as isize - 1);
        let read_ahead = pipe.query_async(&mut conn);
        let (ahead, held): (Vec<String>, Vec<String>) = tokio::time::timeout(within, read_ahead).await.map_err(|_| {
            StoreError::Redis(std::io::Error::new(std::io::ErrorKind::TimedOut, format!("no answer within {within:?}")).into())
        })??;
        if ahead.is_empty() && held.is_empty() {
            return Ok((Vec::new(), None));
        }
        let in_flight = |a: &str| share.in_flight.get(a).copied().unwrap_or(0);
        let open: Vec<(&String, usize)> = held
            .iter()
            .map(|a| {
                let room = if share.per_account > 0 {
                    share.per_account.saturating_sub(in_flight(a))
                } else {
                    count
                };
                (a, room.min(count))
            })
            .filter(|(_, room)| *room > 0)
            .collect();
        let heads: Vec<Vec<String>> = if open.is_empty() {
            Vec::new()
        } else {
            let mut pipe = redis::pipe();
            for (a, room) in &open {
                pipe.zrange(keys.of_account("cbheld", a), 0, *room as isize - 1);
            }
            pipe.query_async(&mut conn).await?
        };
        let mut call = scripts::CALLBACK_CLAIM.key(keys.key("cbdue"));
        call.key(keys.key("cbheld"));
        for id in ahead.iter().chain(heads.iter().flatten()) {
            call.key(keys.key(&format!("job:{id}"))).key(keys.key(&format!("callbacks:{id}")));
        }
        // Where the held ones are, and where those of an account at its share go.
        let full = share
            .in_flight
            .iter()
            .filter(|(_, n)| share.per_account > 0 && **n >= share.per_account);
        for a in open.iter().map(|(a, _)| a.as_str()).chain(full.map(|(a, _)| a.as_str())) {
            call.key(keys.of_account("cbheld", a));
        }
        call.arg(keys.prefix())
            .arg(count)
            .arg(lease.as_millis().max(1) as u64)
            .arg(worker)
            .arg(max_tries.max(1))
            .arg(share.per_account);
        for (account, n) in share.in_flight.iter().filter(|(_, n)| **n > 0) {
            call.arg(account).arg(*n);
        }
        let (claimed, wait): (Vec<Value>, i64) = call.invoke_async(&mut conn).await?;
        let claimed = claimed.into_iter().map(decode_claimed).collect::<Result<Vec<_>, _>>()?;
        Ok((claimed, (wait >= 0).then(|| Duration::from_millis(wait as u64))))
    }
}

/// One claimed delivery from `callback_claim.lua`'s reply.
fn decode_claimed(entry: Value) -> Result<DueCallback, StoreError> {
    let f: Vec<String> = redis::from_redis_value(entry).map_err(protocol)?;
    let [id, token, try_number, delivery_id, url, sealed, ended, account] =
        <[String; 8]>::try_from(f).map_err(|f| protocol(format!("a claimed delivery had {} fields", f.len())))?;
    let job_id: JobId = id.parse().map_err(protocol)?;
    Ok(DueCallback {
        job_id,
        token,
        try_number: try_number.parse().map_err(protocol)?,
        delivery_id,
        url,
        // An undecodable value is carried as empty: it does not open, and the try says so.
        sealed_secret: STANDARD.decode(sealed).unwrap_or_default(),
        ended: serde_json::from_str(&ended).map_err(|e| format!("the job's ending is unreadable: {e}")),
        account: (!account.is_empty()).then_some(account),
    })
}
