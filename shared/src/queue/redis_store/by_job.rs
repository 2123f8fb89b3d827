//! One job's own moves on Redis (cancel, replay) and why it waits, each call declaring
//! every key its script touches (issue 16): what the keys depend on — the job's account,
//! its dead-letter signature, the account's exclusive sync — is read first, and the
//! script answers `again` when that changed in between, so the call is made again.
use super::{parse_err, RedisStore};
use crate::job::JobId;
use crate::queue::keys::{GROUP_INDEXES, LANE_OFFER, PARKED};
use crate::queue::{scripts, CancelOutcome, QueueKeys, RetryOutcome, StoreError, Waiting};
use crate::redis_conn::Call;

/// How many times a call whose declared keys went stale is made again.
const ATTEMPTS: usize = 5;

/// What a job's keys depend on, read before the call that declares them.
#[derive(Debug, Default)]
struct Facts {
    account: String,
    /// its dead-letter signature (`sg`), while it is dead
    signature: String,
    /// the sync that holds the account's exclusive key (exclusive kinds)
    holder: String,
    /// the sync of the job's marketplace made beside the holder (`exclm:<account>`)
    beside: String,
}

impl RedisStore {
    async fn facts(&self, keys: &QueueKeys, id: &JobId, with_holder: bool) -> Result<Facts, StoreError> {
        let mut conn = self.conn.clone();
        let mut read = redis::cmd("HMGET");
        read.arg(keys.job(id)).arg("acct").arg("sg");
        if with_holder {
            read.arg("p");
        }
        let mut fields: std::vec::IntoIter<Option<String>> = read.query_async::<Vec<Option<String>>>(&mut conn).await?.into_iter();
        let (account, signature, payload) = (fields.next().flatten(), fields.next().flatten(), fields.next().flatten());
        let account = account.unwrap_or_default();
        let (holder, beside) = if with_holder && !account.is_empty() {
            // (the script reads the marketplace as it does: a payload that does not
            // name one is '')
            let marketplace = payload
                .and_then(|p| serde_json::from_str::<serde_json::Value>(&p).ok())
                .and_then(|p| p.get("marketplace_id").and_then(|m| m.as_str()).map(str::to_owned))
                .unwrap_or_default();
            let (h, b): (Option<String>, Option<String>) = redis::pipe()
                .cmd("GET")
                .arg(keys.of_account("excl", &account))
                .cmd("HGET")
                .arg(keys.of_account("exclm", &account))
                .arg(marketplace)
                .query_async(&mut conn)
                .await?;
            (h.unwrap_or_default(), b.unwrap_or_default())
        } else {
            (String::new(), String::new())
        };
        Ok(Facts {
            account,
            signature: signature.unwrap_or_default(),
            holder,
            beside,
        })
    }

    /// Makes the call `build` returns for freshly read facts until its script stops
    /// answering `again`.
    async fn with_facts(
        &self,
        keys: &QueueKeys,
        id: &JobId,
        with_holder: bool,
        build: impl Fn(&Facts) -> Call,
    ) -> Result<String, StoreError> {
        for _ in 0..ATTEMPTS {
            let facts = self.facts(keys, id, with_holder).await?;
            let mut conn = self.conn.clone();
            let r: String = build(&facts).invoke_async(&mut conn).await?;
            if r != "again" {
                return Ok(r);
            }
        }
        Err(StoreError::Protocol(format!("job {id} kept changing while it was being moved")))
    }

    pub(super) async fn cancel_job(&self, id: &JobId) -> Result<CancelOutcome, StoreError> {
        let keys = self.job_keys(id);
        let r = self
            .with_facts(&keys, id, false, |f| {
                let a = f.account.as_str();
                let mut call = scripts::CANCEL.key(keys.job(id));
                call.key(keys.attempts(id));
                for k in [
                    keys.of_account("rq", a),
                    keys.of_account("as", a),
                    keys.of_account("excl", a),
                    keys.of_account("exclm", a),
                ] {
                    call.key(k);
                }
                for k in ["queued", "passes", "idle", "scheduled", "retrying", "state:cancelled", "cbdue"]
                    .into_iter()
                    .chain(PARKED)
                {
                    call.key(keys.key(k));
                }
                call.arg(keys.prefix()).arg(id.as_str()).arg(a);
                call
            })
            .await?;
        Ok(match r.as_str() {
            "missing" => CancelOutcome::NotFound,
            "cancelled" => CancelOutcome::Cancelled,
            "requested" => CancelOutcome::Requested,
            other => CancelOutcome::AlreadyTerminal(other.trim_start_matches("terminal:").parse().map_err(parse_err)?),
        })
    }

    /// Requeues `id` if it is dead, or also cancelled or partial unless `dead_only`.
    pub(super) async fn retry_job(&self, id: &JobId, dead_only: bool) -> Result<RetryOutcome, StoreError> {
        let keys = self.job_keys(id);
        self.touched(id);
        let exclusive = id.kind().is_exclusive();
        let r = self
            .with_facts(&keys, id, exclusive, |f| {
                let (a, sig) = (f.account.as_str(), f.signature.as_str());
                let mut call = scripts::RETRY.key(keys.job(id));
                call.key(keys.attempts(id));
                for k in [
                    keys.of_account("rq", a),
                    keys.of_account("as", a),
                    keys.of_account("excl", a),
                    keys.of_account("exclm", a),
                ] {
                    call.key(k);
                }
                for other in [&f.holder, &f.beside] {
                    if !other.is_empty() {
                        call.key(keys.key(&format!("job:{other}")));
                    }
                }
                if !sig.is_empty() {
                    for k in [format!("dg:{sig}"), format!("dgj:{sig}:{a}"), format!("dga:{a}")] {
                        call.key(keys.key(&k));
                    }
                }
                keys.declare(
                    &mut call,
                    &[&["state:dead", "state:cancelled", "state:partial"], &GROUP_INDEXES, &LANE_OFFER],
                );
                call.arg(keys.prefix())
                    .arg(id.as_str())
                    .arg(if exclusive { "1" } else { "0" })
                    .arg(a)
                    .arg(&f.holder)
                    .arg(sig)
                    .arg(if dead_only { "1" } else { "0" })
                    .arg(&f.beside);
                call
            })
            .await?;
        Ok(match r.split_once(':') {
            None if r == "queued" => RetryOutcome::Queued,
            None => RetryOutcome::NotFound,
            Some(("busy", holder)) => RetryOutcome::AccountBusy(holder.parse().map_err(parse_err)?),
            Some((_, state)) => RetryOutcome::WrongState(state.parse().map_err(parse_err)?),
        })
    }

    pub(super) async fn waiting_of(&self, id: &JobId) -> Result<Option<Waiting>, StoreError> {
        let keys = self.job_keys(id);
        let facts = self.facts(&keys, id, false).await?;
        let mut conn = self.conn.clone();
        let reply: Vec<String> = waiting_call(&keys, id, &facts.account).invoke_async(&mut conn).await?;
        Waiting::from_reply(reply)
    }
}

/// The waiting script's call for `id` of `account` (its answer is empty when the job's
/// account is another).
pub(super) fn waiting_call(keys: &QueueKeys, id: &JobId, account: &str) -> Call {
    let mut call = scripts::WAITING.key(keys.job(id));
    for k in [keys.of_account("rq", account), keys.of_account("hold", account)] {
        call.key(k);
    }
    for k in ["unstarted", "active", "paused", "blocked", "passes", "seen", "restarted"] {
        call.key(keys.key(k));
    }
    call.arg(keys.prefix()).arg(id.as_str()).arg(account);
    call
}
