//! Circuit breaker per account and operation, shared by every worker through Redis.
//!
//! Closed: calls are counted in fixed windows; when a window holds at least
//! `min_calls` and failures/calls exceeds `failure_ratio`, it opens for `open_for`.
//! Open: nobody calls. Then exactly one caller across all processes wins the half-open
//! probe (a lease of `open_for`, so a probe that dies is replaced); its success closes
//! the breaker, its failure re-opens it. Failures are 5xx, timeouts and connection
//! errors only: a 4xx or a 429 says the service is up.
use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use redis::Script;
use serde::Serialize;

use super::config::BreakerConfig;
use super::{ms_to_time, Operation, Resilience, ResilienceError};
use crate::job::AccountId;

static PERMIT: LazyLock<Script> = lua!("lua/breaker_permit.lua");
static RECORD: LazyLock<Script> = lua!("lua/breaker_record.lua");
static UNPROBE: LazyLock<Script> = lua!("lua/breaker_unprobe.lua");

/// Leave to call. `probe` is true for the single half-open probe: one not sent is handed
/// back with [`Resilience::unprobe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerPermit {
    pub probe: bool,
    /// The probe's lease end (ms; 0 for no probe): which probe to hand back.
    lease_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    Success,
    /// 5xx, timeout, connection error. Not 4xx, not 429.
    Failure,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    Open { until: DateTime<Utc> },
    HalfOpen,
}

/// How soon a caller refused while a half-open probe is out looks again (ms).
#[cfg_attr(not(test), allow(dead_code))] // reference model of lua/breaker_permit.lua
const PROBE_WAIT_MS: i64 = 1000;

/// The breaker's state as kept in Redis, in milliseconds; the scripts do the same steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct BreakerCore {
    pub phase: Phase,
    pub window_start_ms: Option<i64>,
    pub calls: u32,
    pub failures: u32,
    pub open_until_ms: i64,
    pub probe_until_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    #[default]
    Closed,
    Open,
    HalfOpen,
}

impl BreakerCore {
    /// `Ok(probe)` to call, `Err(until_ms)` to stay away.
    #[cfg_attr(not(test), allow(dead_code))] // reference model of lua/breaker_permit.lua
    pub(crate) fn permit(&mut self, now_ms: i64, cfg: &BreakerConfig) -> Result<bool, i64> {
        let lease = match self.phase {
            Phase::Closed => return Ok(false),
            Phase::Open => self.open_until_ms,
            Phase::HalfOpen => self.probe_until_ms,
        };
        if now_ms < lease {
            // While a probe is out, look again soon: its answer usually comes long
            // before its lease (kept for a probe that never reports) runs out.
            if self.phase == Phase::HalfOpen {
                return Err(lease.min(now_ms + PROBE_WAIT_MS));
            }
            return Err(lease);
        }
        self.phase = Phase::HalfOpen;
        self.probe_until_ms = now_ms + cfg.open_for.as_millis() as i64;
        Ok(true)
    }

    #[cfg_attr(not(test), allow(dead_code))] // reference model of lua/breaker_record.lua
    pub(crate) fn record(&mut self, now_ms: i64, outcome: CallOutcome, cfg: &BreakerConfig) {
        let open_for = cfg.open_for.as_millis() as i64;
        match self.phase {
            Phase::Open => {}
            Phase::HalfOpen => match outcome {
                CallOutcome::Success => *self = Self::default(),
                CallOutcome::Failure => {
                    self.phase = Phase::Open;
                    self.open_until_ms = now_ms + open_for;
                }
            },
            Phase::Closed => {
                if self.window_start_ms.is_none_or(|ws| now_ms - ws >= cfg.window.as_millis() as i64) {
                    self.window_start_ms = Some(now_ms);
                    self.calls = 0;
                    self.failures = 0;
                }
                self.calls += 1;
                if outcome == CallOutcome::Failure {
                    self.failures += 1;
                }
                if self.calls >= cfg.min_calls && f64::from(self.failures) / f64::from(self.calls) > cfg.failure_ratio {
                    self.phase = Phase::Open;
                    self.open_until_ms = now_ms + open_for;
                }
            }
        }
    }

    /// What a snapshot shows at `now_ms`: a stale window counts as empty.
    pub(crate) fn counts_at(&self, now_ms: i64, cfg: &BreakerConfig) -> (u32, u32) {
        match self.window_start_ms {
            Some(ws) if self.phase != Phase::Closed || now_ms - ws < cfg.window.as_millis() as i64 => (self.calls, self.failures),
            _ => (0, 0),
        }
    }
}

fn key_ttl_ms(cfg: &BreakerConfig) -> u64 {
    // Outlives both the window and an open period, so an idle breaker just vanishes.
    (cfg.window.max(cfg.open_for).as_millis() as u64) * 2 + 60_000
}

impl Resilience {
    /// Before a call: `Ok` when closed, or when half-open and this caller won the single
    /// probe; `Err(BreakerOpen)` otherwise. Read from Redis every time (no local cache).
    pub async fn breaker_permit(&self, account: &AccountId, op: Operation) -> Result<BreakerPermit, ResilienceError> {
        let cfg = &self.config().breaker;
        let reply: Vec<i64> = PERMIT
            .key(self.key("cb", account, Some(op)))
            .arg(cfg.open_for.as_millis() as u64)
            .arg(key_ttl_ms(cfg))
            .invoke_async(&mut self.conn())
            .await?;
        match reply[..] {
            [1, probe, ..] => Ok(BreakerPermit {
                probe: probe == 1,
                lease_ms: reply.get(2).copied().unwrap_or(0),
            }),
            [_, until, ..] => Err(ResilienceError::BreakerOpen {
                op,
                until: ms_to_time(until),
                probing: reply.get(2) == Some(&1),
            }),
            _ => Err(ResilienceError::Store("breaker permit: a reply of fewer than two numbers".into())),
        }
    }

    /// Hands back a half-open probe its caller never sent (its token refused, no slot in
    /// time, a cooldown, a cancel): the next caller probes at once, not after the probe's
    /// lease (`open_for`), during which every other caller is refused. Best effort: a
    /// probe not handed back still runs out with its lease.
    pub async fn unprobe(&self, account: &AccountId, op: Operation, permit: BreakerPermit) {
        if !permit.probe {
            return;
        }
        let handed: Result<i64, _> = UNPROBE
            .key(self.key("cb", account, Some(op)))
            .arg(permit.lease_ms)
            .invoke_async(&mut self.conn())
            .await;
        if let Err(e) = handed {
            tracing::debug!(account = %account, op = %op, error = %e, "could not hand back an unsent breaker probe; it runs out with its lease");
        }
    }

    /// After a call: count its outcome; returns the breaker's state after counting.
    pub async fn record(&self, account: &AccountId, op: Operation, outcome: CallOutcome) -> Result<BreakerState, ResilienceError> {
        let cfg = &self.config().breaker;
        let (state, until): (String, i64) = RECORD
            .key(self.key("cb", account, Some(op)))
            .arg(if outcome == CallOutcome::Failure { "f" } else { "s" })
            .arg(cfg.window.as_millis() as u64)
            .arg(cfg.min_calls)
            .arg(cfg.failure_ratio)
            .arg(cfg.open_for.as_millis() as u64)
            .arg(key_ttl_ms(cfg))
            .invoke_async(&mut self.conn())
            .await?;
        Ok(match state.as_str() {
            "open" => {
                let until = ms_to_time(until);
                tracing::debug!(account = %account, op = %op, %until, "circuit open");
                BreakerState::Open { until }
            }
            "half" => BreakerState::HalfOpen,
            _ => BreakerState::Closed,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use proptest::prelude::*;

    use super::*;

    fn cfg() -> BreakerConfig {
        BreakerConfig {
            window: Duration::from_secs(60),
            min_calls: 10,
            failure_ratio: 0.5,
            open_for: Duration::from_secs(30),
        }
    }

    #[test]
    fn opens_only_past_half_failures_with_min_calls() {
        let c = cfg();
        let mut b = BreakerCore::default();
        for _ in 0..9 {
            b.record(0, CallOutcome::Failure, &c);
        }
        assert_eq!(b.phase, Phase::Closed, "9 calls are below min_calls");
        let mut b = BreakerCore::default();
        for i in 0..10 {
            b.record(0, if i % 2 == 0 { CallOutcome::Failure } else { CallOutcome::Success }, &c);
        }
        assert_eq!(b.phase, Phase::Closed, "exactly 50% does not open");
        b.record(0, CallOutcome::Failure, &c);
        assert_eq!(b.phase, Phase::Open);
        assert_eq!(b.permit(29_999, &c), Err(30_000));
    }

    #[test]
    fn one_probe_after_open_for_then_success_closes_and_failure_reopens() {
        let c = cfg();
        let mut b = BreakerCore::default();
        for _ in 0..10 {
            b.record(0, CallOutcome::Failure, &c);
        }
        assert_eq!(b.permit(30_000, &c), Ok(true));
        assert_eq!(
            b.permit(30_001, &c),
            Err(31_001),
            "only one probe; the others look again within a second"
        );
        b.record(30_100, CallOutcome::Failure, &c);
        assert_eq!(b.phase, Phase::Open);
        assert_eq!(b.permit(30_200, &c), Err(60_100));
        assert_eq!(b.permit(60_100, &c), Ok(true));
        b.record(60_200, CallOutcome::Success, &c);
        assert_eq!(b.phase, Phase::Closed);
        assert_eq!(b.permit(60_300, &c), Ok(false));
    }

    #[test]
    fn a_lost_probe_is_replaced_after_its_lease() {
        let c = cfg();
        let mut b = BreakerCore {
            phase: Phase::Open,
            open_until_ms: 0,
            ..Default::default()
        };
        assert_eq!(b.permit(0, &c), Ok(true));
        assert_eq!(b.permit(30_000, &c), Ok(true));
    }

    proptest! {
        /// It never opens on fewer than min_calls in a window nor at a ratio <= 50%.
        #[test]
        fn opening_requires_min_calls_and_a_failure_majority(outcomes in proptest::collection::vec(any::<bool>(), 1..60)) {
            let c = cfg();
            let mut b = BreakerCore::default();
            for fail in outcomes {
                b.record(0, if fail { CallOutcome::Failure } else { CallOutcome::Success }, &c);
                if b.phase == Phase::Open {
                    prop_assert!(b.calls >= c.min_calls);
                    prop_assert!(f64::from(b.failures) / f64::from(b.calls) > 0.5);
                    break;
                }
            }
        }
    }
}
