//! `/readyz` answers without a key, so its checks are shared: the dependencies (Redis
//! PING, Postgres taking writes) are asked at most once per [`MAX_AGE`] per replica and every
//! probe in between gets that answer. A flood of probes costs no Redis or pool
//! round trips, and a dependency going down or coming back is logged once, not per probe.
use std::future::Future;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

/// How long one check answers for. Under the kubelet's probe period (5 s), so a replica
/// still leaves the Service within one period of losing a dependency.
pub const MAX_AGE: Duration = Duration::from_secs(1);

/// What a check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ready,
    /// Which dependencies did not answer, and why (for the log, never the client).
    Down {
        dependency: &'static str,
        cause: String,
    },
}

#[derive(Default)]
pub struct Readiness {
    last: Mutex<Option<(Instant, Outcome)>>,
}

impl Readiness {
    /// The last outcome if it is younger than [`MAX_AGE`], else `check`'s (one caller
    /// checks; concurrent probes wait for it and share its answer).
    pub async fn get<F, Fut>(&self, check: F) -> Outcome
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Outcome>,
    {
        let mut last = self.last.lock().await;
        if let Some((_, outcome)) = last.as_ref().filter(|(at, _)| at.elapsed() < MAX_AGE) {
            return outcome.clone();
        }
        let outcome = check().await;
        let before = last.as_ref().map(|(_, o)| o);
        match (&outcome, before) {
            (Outcome::Down { dependency, cause }, prev) if prev != Some(&outcome) => {
                tracing::warn!(dependency, cause = %cause, "not ready: a dependency did not answer")
            }
            (Outcome::Ready, Some(Outcome::Down { .. })) => tracing::info!("ready again"),
            _ => {}
        }
        *last = Some((Instant::now(), outcome.clone()));
        outcome
    }
}
