//! How often a cron expression fires, checked when a schedule is saved: every tick is a
//! job made without a request to rate-limit, so a schedule may fire at most once per
//! minimum interval, and must fire at all, at least once in four years (a cron that
//! never matches, such as 31 February, sends `croner` searching thousands of years on
//! every read, and one that fires once in decades, such as the fifth Tuesday of
//! February, a day at a time back to its last tick on every poll of the scheduler).
use std::time::Duration;

use chrono::{DateTime, Utc};
use croner::Cron;

use super::spec::next_tick;

/// Ticks looked at after the first. Crons fire faster only in places their fields allow:
/// a six-field cron with two second values fires twice within its first matching
/// minute, so for intervals up to a minute the first three ticks already tell; the rest
/// cover hours or days where a five-field cron's lists bunch up (`0,1 * * * *`).
const TICKS_CHECKED: usize = 100;

/// How far ahead a cron must fire: four years and a day, so 29 February is allowed.
const HORIZON_DAYS: i64 = 4 * 365 + 2;

/// `Err` (a sentence for the `cron` field) when `cron` has no tick within four years of
/// `now`, its second tick is more than four years after its first, or two of its next
/// ticks are less than `min_interval` apart.
pub fn check_cadence(cron: &Cron, now: DateTime<Utc>, min_interval: Duration) -> Result<(), String> {
    let horizon = now + chrono::Duration::days(HORIZON_DAYS);
    let Some(mut prev) = next_tick(cron, now).filter(|t| *t <= horizon) else {
        return Err("never fires (no tick within the next four years)".into());
    };
    let gap = chrono::Duration::days(HORIZON_DAYS);
    if next_tick(cron, prev).is_none_or(|second| second - prev > gap) {
        return Err(format!("fires once at {prev}, then not again within four years"));
    }
    let min = chrono::Duration::from_std(min_interval).unwrap_or(chrono::Duration::MAX);
    for _ in 0..TICKS_CHECKED {
        let Some(next) = next_tick(cron, prev) else { break };
        if next - prev < min {
            return Err(format!(
                "fires {} s apart at times ({prev} and {next}); ticks must be at least {} s apart",
                (next - prev).num_seconds(),
                min_interval.as_secs()
            ));
        }
        if next > horizon {
            break;
        }
        prev = next;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::schedule::spec::parse_cron;

    fn check(expr: &str) -> Result<(), String> {
        let now = Utc.with_ymd_and_hms(2026, 11, 25, 10, 7, 30).single().expect("valid");
        check_cadence(&parse_cron(expr).expect("parses"), now, Duration::from_secs(60))
    }

    #[test]
    fn once_a_minute_or_less_often_is_allowed() {
        for ok in [
            "* * * * *",
            "30 * * * * *",
            "0,1 * * * *",
            "*/15 * * * *",
            "0 3 * * *",
            "0 4 * * 0",
            "0 0 29 2 *",
        ] {
            assert_eq!(check(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn more_often_than_the_minimum_or_never_is_refused() {
        for fast in ["* * * * * *", "*/2 * * * * *", "0,59 * * * * *", "0,30 * 3 * * *"] {
            let e = check(fast).expect_err(fast);
            assert!(e.contains("at least 60 s apart"), "{fast}: {e}");
        }
        assert_eq!(check("0 0 31 2 *"), Err("never fires (no tick within the next four years)".into()));
    }

    /// Found by this stop's audit of the API's surfaces: the fifth Tuesday of February
    /// (29 February on a Tuesday: 2028, then 2056) passed, and each poll of the scheduler
    /// searched back a day at a time to its last tick, in 2000.
    #[test]
    fn a_cron_that_fires_less_often_than_once_in_four_years_is_refused() {
        for sparse in ["0 0 * 2 2#5", "0 0 29 2 +2"] {
            let e = check(sparse).expect_err(sparse);
            assert!(e.contains("not again within four years"), "{sparse}: {e}");
        }
    }
}
