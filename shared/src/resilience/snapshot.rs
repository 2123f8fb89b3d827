//! Everything about one account's shared limits, read at one server instant, for
//! `GET /v1/accounts/{id}/limits`. Never includes the access token.
use std::collections::BTreeMap;
use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use redis::Script;
use serde::Serialize;

use super::breaker::{BreakerCore, Phase};
use super::cooldown::{Cooldown, CooldownRecord};
use super::gcra::{self, GcraParams};
use super::{ms_to_time, Operation, Resilience, ResilienceError};
use crate::job::AccountId;

static SNAPSHOT: LazyLock<Script> = lua!("lua/snapshot.lua");

#[derive(Debug, Clone, Serialize)]
pub struct AccountLimits {
    pub account: AccountId,
    /// The Redis server time the snapshot was taken at.
    pub at: DateTime<Utc>,
    pub operations: BTreeMap<Operation, OperationLimits>,
    /// The active quota cooldown, or null.
    pub cooldown: Option<Cooldown>,
}

#[derive(Debug, Clone, Serialize)]
pub struct OperationLimits {
    /// Requests per second in use: the configured rate, or the marketplace's when adapted.
    pub rate: f64,
    /// Configured burst.
    pub burst: u32,
    /// True when the rate came from the marketplace's `x-amzn-RateLimit-Limit`.
    pub adapted: bool,
    /// Tokens our (safety-margined) bucket holds now.
    pub tokens_available: f64,
    /// When the next call may go (now, if a token is available).
    pub next_slot_at: DateTime<Utc>,
    /// The bucket has state in Redis (a call or a 429's hold set it): `next_slot_at` is
    /// what the workers will meet, not the cold start's assumption about an unknown one.
    #[serde(skip)]
    pub seen: bool,
    pub breaker: BreakerSnapshot,
}

#[derive(Debug, Clone, Serialize)]
pub struct BreakerSnapshot {
    pub state: Phase,
    pub calls: u32,
    pub failures: u32,
    pub window_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub open_until: Option<DateTime<Utc>>,
}

fn num<T: std::str::FromStr>(v: &Option<String>) -> Option<T> {
    v.as_deref().and_then(|s| s.parse().ok())
}

impl Resilience {
    pub async fn snapshot(&self, account: &AccountId) -> Result<AccountLimits, ResilienceError> {
        let row: Vec<Option<String>> = self.snapshot_call(account, &Operation::ALL).invoke_async(&mut self.conn()).await?;
        self.read_snapshot(account, &Operation::ALL, row)
    }

    /// [`Resilience::snapshot`] of each account of `wanted`, limited to the operations
    /// named with it, in order, in one round trip (one script call an account: each
    /// reads its own account's keys).
    pub async fn snapshots(&self, wanted: &[(AccountId, &[Operation])]) -> Result<Vec<AccountLimits>, ResilienceError> {
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let build = || {
            let mut pipe = redis::pipe();
            for (account, ops) in wanted {
                pipe.invoke_script(&self.snapshot_call(account, ops));
            }
            pipe
        };
        let mut conn = self.conn();
        let rows: Vec<Vec<Option<String>>> = match build().query_async(&mut conn).await {
            Ok(r) => r,
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                SNAPSHOT.load_async(&mut conn).await?;
                build().query_async(&mut conn).await?
            }
            Err(e) => return Err(e.into()),
        };
        wanted
            .iter()
            .zip(rows)
            .map(|((account, ops), row)| self.read_snapshot(account, ops, row))
            .collect()
    }

    fn snapshot_call(&self, account: &AccountId, ops: &[Operation]) -> redis::ScriptInvocation<'static> {
        let mut inv = SNAPSHOT.prepare_invoke();
        for op in ops {
            inv.key(self.key("rl", account, Some(*op)));
        }
        for op in ops {
            inv.key(self.key("cb", account, Some(*op)));
        }
        inv.key(self.key("cd", account, None));
        inv.arg(ops.len());
        inv
    }

    fn read_snapshot(&self, account: &AccountId, ops: &[Operation], row: Vec<Option<String>>) -> Result<AccountLimits, ResilienceError> {
        let mut fields = row.into_iter();
        let mut next = move || fields.next().flatten();
        let now_us: f64 = num(&next()).ok_or_else(|| ResilienceError::Store("snapshot without server time".into()))?;
        let now_ms = (now_us / 1000.0) as i64;
        let cfg = self.config();

        let mut limiter = Vec::new();
        for &op in ops {
            let tat: Option<f64> = num(&next());
            let rate: Option<f64> = num(&next());
            limiter.push((op, tat, rate));
        }
        let mut operations = BTreeMap::new();
        for (op, tat, adapted_rate) in limiter {
            let (st, ws, calls, fails, ou, pu) = (next(), next(), next(), next(), next(), next());
            let mut core = BreakerCore {
                phase: match st.as_deref() {
                    Some("open") => Phase::Open,
                    Some("half") => Phase::HalfOpen,
                    _ => Phase::Closed,
                },
                window_start_ms: num(&ws),
                calls: num(&calls).unwrap_or(0),
                failures: num(&fails).unwrap_or(0),
                open_until_ms: num(&ou).unwrap_or(0),
                probe_until_ms: num(&pu).unwrap_or(0),
            };
            // An open breaker past its time is ready for a probe: show it as half-open.
            if core.phase == Phase::Open && now_ms >= core.open_until_ms {
                core.phase = Phase::HalfOpen;
            }
            let (calls, failures) = core.counts_at(now_ms, &cfg.breaker);
            let spec = cfg.limit(op);
            let rate = adapted_rate.unwrap_or(spec.rate);
            let p = GcraParams::new(rate, spec.burst, &cfg.limiter);
            let cold = cfg.limiter.cold_start;
            operations.insert(
                op,
                OperationLimits {
                    rate,
                    burst: spec.burst,
                    adapted: adapted_rate.is_some(),
                    tokens_available: gcra::tokens_available(tat, now_us, &p, cold),
                    next_slot_at: ms_to_time((gcra::next_slot(tat, now_us, &p, cold) / 1000.0).ceil() as i64),
                    seen: tat.is_some(),
                    breaker: BreakerSnapshot {
                        state: core.phase,
                        calls,
                        failures,
                        window_ms: cfg.breaker.window.as_millis() as u64,
                        open_until: (core.phase == Phase::Open).then(|| ms_to_time(core.open_until_ms)),
                    },
                },
            );
        }
        let (until, reason, level, since) = (next(), next(), next(), next());
        let cooldown = match (num::<i64>(&until), reason, num::<u32>(&level), num::<i64>(&since)) {
            (Some(until_ms), Some(reason), Some(level), Some(since_ms)) if until_ms > now_ms => Some(
                CooldownRecord {
                    until_ms,
                    reason,
                    level,
                    since_ms,
                }
                .public(),
            ),
            _ => None,
        };
        Ok(AccountLimits {
            account: account.clone(),
            at: ms_to_time(now_ms),
            operations,
            cooldown,
        })
    }
}
