//! The shared rate limiter: GCRA slots reserved atomically in Redis (server clock), so
//! every worker process draws from one schedule per account and operation.
use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;
use tokio_util::sync::CancellationToken;

use super::config::ColdStart;
use super::{Operation, Resilience, ResilienceError};
use crate::job::AccountId;

static ACQUIRE: LazyLock<Script> = lua!("lua/limiter_common.lua", "lua/acquire.lua");
static OBSERVE: LazyLock<Script> = lua!("lua/limiter_common.lua", "lua/observe.lua");
static HOLD: LazyLock<Script> = lua!("lua/limiter_common.lua", "lua/hold.lua");

impl Resilience {
    /// Wait (sleeping, cancellable) until this account+operation may make one call,
    /// shared across all processes. Returns how long it waited. The slot is reserved
    /// before sleeping, so concurrent callers are spaced evenly without retries; a slot
    /// further away than `max_wait` is not reserved and yields `WaitTooLong`.
    pub async fn acquire(&self, account: &AccountId, op: Operation, cancel: &CancellationToken) -> Result<Duration, ResilienceError> {
        if cancel.is_cancelled() {
            return Err(ResilienceError::Cancelled);
        }
        let cfg = self.config();
        let (granted, wait_us): (i64, String) = self
            .bucket_call(&ACQUIRE, account, op, cfg.max_wait)
            .invoke_async(&mut self.conn())
            .await?;
        let wait = Duration::from_micros(wait_us.parse::<f64>().unwrap_or(0.0).max(0.0) as u64);
        if granted != 1 {
            // The slot the script found (not reserved): the caller parks until then.
            return Err(ResilienceError::WaitTooLong(wait.max(cfg.max_wait)));
        }
        if !wait.is_zero() {
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = cancel.cancelled() => return Err(ResilienceError::Cancelled),
            }
        }
        Ok(wait)
    }

    /// The marketplace announced its rate (`x-amzn-RateLimit-Limit`): adopt it for this
    /// account+operation when it differs from the rate in use (lower or higher), for all
    /// workers. The burst stays as configured; the bucket keeps its current token deficit.
    /// Nonsense values (zero, negative, not finite) are ignored.
    pub async fn observe_rate_limit(&self, account: &AccountId, op: Operation, rate: f64) -> Result<(), ResilienceError> {
        if !(rate.is_finite() && rate > 0.0) {
            return Ok(());
        }
        let cfg = self.config();
        let spec = cfg.limit(op);
        let changed: i64 = OBSERVE
            .key(self.key("rl", account, Some(op)))
            .arg(rate)
            .arg(spec.rate)
            .arg(spec.burst)
            .arg(cfg.limiter.rate_margin)
            .arg(cfg.limiter.burst_reserve)
            .arg(cfg.limiter.idle_ttl.as_millis() as u64)
            .invoke_async(&mut self.conn())
            .await?;
        if changed == 1 {
            tracing::info!(account = %account, op = %op, rate, configured = spec.rate, "adopted the marketplace's rate limit");
        }
        Ok(())
    }

    /// The marketplace refused a call of this account+operation (429) and asked for
    /// `wait`: no caller in any process gets a slot before then (a caller that may not
    /// wait that long is told `WaitTooLong` and parks), and the bucket refills from
    /// empty after it. A slot already further away stays where it is.
    pub async fn hold_off(&self, account: &AccountId, op: Operation, wait: Duration) -> Result<(), ResilienceError> {
        let _: i64 = self.bucket_call(&HOLD, account, op, wait).invoke_async(&mut self.conn()).await?;
        Ok(())
    }

    /// A call of acquire.lua or hold.lua on this account+operation's bucket: its
    /// configured rate and burst, the margins, the cold start, `wait` and the idle TTL.
    fn bucket_call<'a>(&self, script: &'a Script, account: &AccountId, op: Operation, wait: Duration) -> redis::ScriptInvocation<'a> {
        let cfg = self.config();
        let spec = cfg.limit(op);
        let l = &cfg.limiter;
        let mut call = script.key(self.key("rl", account, Some(op)));
        call.arg(spec.rate)
            .arg(spec.burst)
            .arg(l.rate_margin)
            .arg(l.burst_reserve)
            .arg(u8::from(l.cold_start == ColdStart::Empty))
            .arg(wait.as_micros() as u64)
            .arg(l.idle_ttl.as_millis() as u64);
        call
    }
}
