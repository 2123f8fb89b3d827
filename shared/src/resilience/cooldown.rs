//! Quota cooldown: after a 429 on a report operation the whole account stops calling
//! report operations for a while, escalating 10 min → 30 min → 2 h on repeats.
//!
//! Several workers usually hit the same exhausted quota at once, so a 429 that arrives
//! while a cooldown is active joins it instead of climbing a level. The level decays
//! back to the first step after `decay_after` of quiet once a cooldown ends.
use std::sync::LazyLock;
use std::time::Duration;

use chrono::{DateTime, Utc};
use redis::Script;
use serde::{Deserialize, Serialize};

use super::config::CooldownConfig;
use super::{ms_to_time, Resilience, ResilienceError};
use crate::job::AccountId;

static ENTER: LazyLock<Script> = lua!("lua/cooldown_enter.lua");
static GET: LazyLock<Script> = lua!("lua/cooldown_get.lua");

/// An account's active quota cooldown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cooldown {
    pub until: DateTime<Utc>,
    pub reason: String,
    /// 1 for the first step; climbs on repeats, capped at the number of steps.
    pub level: u32,
    pub since: DateTime<Utc>,
}

/// Cooldown state in milliseconds, as the Lua script keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CooldownRecord {
    pub until_ms: i64,
    pub reason: String,
    pub level: u32,
    pub since_ms: i64,
}

/// The cooldown after a 429 at `now_ms` (`lua/cooldown_enter.lua` does the same), and
/// whether it escalated (started a new cooldown) rather than joined the active one.
// The reference model of the Lua script; production runs the script, tests run both.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) fn next_cooldown(
    prev: Option<&CooldownRecord>,
    now_ms: i64,
    reason: &str,
    hint_ms: i64,
    cfg: &CooldownConfig,
) -> (CooldownRecord, bool) {
    let decay_ms = cfg.decay_after.as_millis() as i64;
    if let Some(p) = prev.filter(|p| p.until_ms > now_ms) {
        return (
            CooldownRecord {
                until_ms: p.until_ms.max(now_ms + hint_ms),
                ..p.clone()
            },
            false,
        );
    }
    let level = match prev {
        Some(p) if now_ms - p.until_ms < decay_ms => (p.level + 1).min(cfg.steps.len() as u32),
        _ => 1,
    };
    let step_ms = cfg.steps[level as usize - 1].as_millis() as i64;
    let rec = CooldownRecord {
        until_ms: now_ms + step_ms.max(hint_ms),
        reason: reason.to_owned(),
        level,
        since_ms: now_ms,
    };
    (rec, true)
}

impl CooldownRecord {
    pub(crate) fn public(self) -> Cooldown {
        Cooldown {
            until: ms_to_time(self.until_ms),
            reason: self.reason,
            level: self.level,
            since: ms_to_time(self.since_ms),
        }
    }
}

type Row = (i64, String, u32, i64);

impl Resilience {
    /// The account's active quota cooldown, read from Redis on every call (no local
    /// cache), so one worker's 429 stops all of them at once.
    pub async fn cooldown(&self, account: &AccountId) -> Result<Option<Cooldown>, ResilienceError> {
        let row: Option<Row> = GET.key(self.key("cd", account, None)).invoke_async(&mut self.conn()).await?;
        Ok(row.map(|(until_ms, reason, level, since_ms)| {
            CooldownRecord {
                until_ms,
                reason,
                level,
                since_ms,
            }
            .public()
        }))
    }

    /// Put the account into quota cooldown for max(step of its level, `hint`). A call
    /// while a cooldown is active joins it (no new level; a longer hint stretches it).
    /// A hint counts up to the longest step: one 429 whose `Retry-After` asks a day does
    /// not stop the seller's reports for a day (found by the worker-resilience audit of
    /// 2026-12-07, fourth: any hint up to 86,400 s was taken).
    pub async fn enter_cooldown(&self, account: &AccountId, reason: &str, hint: Option<Duration>) -> Result<Cooldown, ResilienceError> {
        let cfg = &self.config().cooldown;
        let longest = cfg.steps.iter().max().copied().unwrap_or_default();
        let mut inv = ENTER.key(self.key("cd", account, None));
        inv.arg(reason)
            .arg(hint.map_or(0, |h| h.min(longest).as_millis() as u64))
            .arg(cfg.decay_after.as_millis() as u64);
        for step in &cfg.steps {
            inv.arg(step.as_millis() as u64);
        }
        let (escalated, until_ms, reason, level, since_ms): (i64, i64, String, u32, i64) = inv.invoke_async(&mut self.conn()).await?;
        let cd = CooldownRecord {
            until_ms,
            reason,
            level,
            since_ms,
        }
        .public();
        if escalated == 1 {
            tracing::warn!(account = %account, level, until = %cd.until, reason = %cd.reason, "quota cooldown entered");
        }
        Ok(cd)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn cfg() -> CooldownConfig {
        CooldownConfig {
            steps: vec![Duration::from_secs(600), Duration::from_secs(1800), Duration::from_secs(7200)],
            decay_after: Duration::from_secs(6 * 3600),
        }
    }

    #[test]
    fn repeats_escalate_10m_30m_2h_and_stay_at_2h() {
        let c = cfg();
        let mut now = 0;
        let mut prev: Option<CooldownRecord> = None;
        let mut lengths = vec![];
        for _ in 0..4 {
            let (rec, escalated) = next_cooldown(prev.as_ref(), now, "429", 0, &c);
            assert!(escalated);
            lengths.push((rec.until_ms - now) / 60_000);
            now = rec.until_ms + 1_000; // the next 429 comes right after it ends
            prev = Some(rec);
        }
        assert_eq!(lengths, vec![10, 30, 120, 120]);
    }

    #[test]
    fn a_429_during_an_active_cooldown_does_not_climb() {
        let c = cfg();
        let (first, _) = next_cooldown(None, 0, "429", 0, &c);
        let (again, escalated) = next_cooldown(Some(&first), 5_000, "429 again", 0, &c);
        assert!(!escalated);
        assert_eq!(again, first);
    }

    #[test]
    fn a_long_quiet_period_resets_the_level_and_a_hint_can_lengthen() {
        let c = cfg();
        let (first, _) = next_cooldown(None, 0, "429", 0, &c);
        let later = first.until_ms + 6 * 3600 * 1000;
        let (rec, _) = next_cooldown(Some(&first), later, "429", 3_600_000, &c);
        assert_eq!(rec.level, 1);
        assert_eq!(rec.until_ms - later, 3_600_000);
    }

    proptest! {
        /// Whatever the pattern of 429s, the level stays within 1..=steps and the
        /// cooldown is never shorter than the step of its level.
        #[test]
        fn level_is_bounded_and_cooldowns_are_at_least_their_step(gaps in proptest::collection::vec(0i64..50_000_000, 1..50)) {
            let c = cfg();
            let mut now = 0;
            let mut prev: Option<CooldownRecord> = None;
            for g in gaps {
                now += g;
                let (rec, escalated) = next_cooldown(prev.as_ref(), now, "429", 0, &c);
                prop_assert!((1..=3).contains(&rec.level));
                if escalated {
                    prop_assert!(rec.until_ms - now >= c.steps[rec.level as usize - 1].as_millis() as i64);
                    if let Some(p) = &prev {
                        prop_assert!(rec.level <= p.level + 1);
                    }
                }
                prev = Some(rec);
            }
        }
    }
}
