//! The overview's charts: once a minute (`api.ui.sample_secs`) one API replica (whoever
//! takes that minute's lock)
//! appends each kind's totals — jobs succeeded and jobs that died, both counters kept by
//! the scripts — to `<namespace>:ui:series:<kind>` (the newest 61), so an hour of
//! per-minute throughput is one `LRANGE`, whatever the queue holds.
use std::time::Duration;

use drover::job::JobKind;
use drover::queue::JobStore;
use serde::{Deserialize, Serialize};

use crate::state::AppState;

const KEPT: isize = 61;

/// A kind's totals at one moment.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Sample {
    /// Unix seconds.
    pub t: i64,
    /// Jobs succeeded since the queue was created.
    pub s: u64,
    /// Jobs that died since the queue was created.
    pub d: u64,
}

fn key(state: &AppState, kind: JobKind) -> String {
    format!("{}:ui:series:{kind}", state.store().namespace())
}

/// Samples until the server shuts down.
pub async fn run(state: AppState) {
    let every = Duration::from_secs(state.ui().sample_secs.max(1));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = state.shutdown().cancelled() => return,
            _ = tick.tick() => {
                if let Err(e) = sample(&state, every).await {
                    tracing::warn!(error = %e, "console series: sample not taken; the next minute tries again");
                }
            }
        }
    }
}

async fn sample(state: &AppState, every: Duration) -> Result<(), drover::queue::StoreError> {
    let mut conn = state.store().connection();
    let lock = format!("{}:ui:series:lock", state.store().namespace());
    let took: Option<String> = redis::cmd("SET")
        .arg(&lock)
        .arg(std::process::id())
        .arg("NX")
        .arg("PX")
        // held for most of the interval, so one replica samples each one
        .arg((every.as_millis() * 9 / 10).max(1) as u64)
        .query_async(&mut conn)
        .await?;
    if took.is_none() {
        return Ok(()); // another replica samples this minute
    }
    let t = chrono::Utc::now().timestamp();
    for kind in JobKind::ALL {
        let s = state.store().counts(kind).await?.succeeded_total;
        let mut d = 0;
        for k in state.store().all_keys(kind) {
            let died: Option<u64> = redis::cmd("HGET").arg(k.key("stats")).arg("died").query_async(&mut conn).await?;
            d += died.unwrap_or(0);
        }
        let json = serde_json::to_string(&Sample { t, s, d }).unwrap_or_default();
        let _: () = redis::pipe()
            .lpush(key(state, kind), json)
            .ignore()
            .ltrim(key(state, kind), 0, KEPT - 1)
            .ignore()
            .query_async(&mut conn)
            .await?;
    }
    Ok(())
}

/// The kind's samples, oldest first.
pub async fn read(state: &AppState, kind: JobKind) -> Result<Vec<Sample>, drover::queue::StoreError> {
    let mut conn = state.store().connection();
    let raw: Vec<String> = redis::cmd("LRANGE")
        .arg(key(state, kind))
        .arg(0)
        .arg(KEPT - 1)
        .query_async(&mut conn)
        .await?;
    let mut out: Vec<Sample> = raw.iter().filter_map(|r| serde_json::from_str(r).ok()).collect();
    out.reverse();
    Ok(out)
}

/// Per minute between samples: (end time, succeeded, died), for the chart.
pub fn rates(samples: &[Sample]) -> Vec<(i64, u64, u64)> {
    samples
        .windows(2)
        .map(|w| (w[1].t, w[1].s.saturating_sub(w[0].s), w[1].d.saturating_sub(w[0].d)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_the_differences_between_samples_and_never_negative() {
        let s = |t, s, d| Sample { t, s, d };
        let samples = [s(0, 10, 1), s(60, 25, 1), s(120, 25, 4), s(180, 5, 4)];
        // the last pair: a counter that went down (a reset) counts as nothing
        assert_eq!(rates(&samples), vec![(60, 15, 0), (120, 0, 3), (180, 0, 0)]);
        assert!(rates(&samples[..1]).is_empty(), "one sample is no rate yet");
    }
}
