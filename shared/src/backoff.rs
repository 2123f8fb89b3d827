//! Retrying a dependency that does not answer: doubling delays up to a cap, and the
//! state to log an outage once when it starts and once when it ends.
use std::time::Duration;

/// Doubling delays from `first` up to `max`, reset by a success. `failed` says whether
/// this failure starts an outage (log it), `succeeded` whether one just ended (log that),
/// so a loop that retries every few hundred milliseconds logs two lines per outage.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
    failing: bool,
}

/// One failure as the caller should treat it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure {
    /// How long to wait before trying again.
    pub delay: Duration,
    /// The first failure since the last success: the one to log.
    pub first: bool,
}

impl Backoff {
    pub const fn new(first: Duration, max: Duration) -> Self {
        Self {
            first,
            max,
            next: first,
            failing: false,
        }
    }

    /// Record a failure; the delay doubles for the next one, up to `max`.
    pub fn failed(&mut self) -> Failure {
        let failure = Failure {
            delay: self.next,
            first: !self.failing,
        };
        self.failing = true;
        self.next = (self.next * 2).min(self.max);
        failure
    }

    /// Record a success; true when it ends an outage (the one to log).
    pub fn succeeded(&mut self) -> bool {
        self.next = self.first;
        std::mem::replace(&mut self.failing, false)
    }

    /// Record a failure and sleep its delay.
    pub async fn wait(&mut self) -> Failure {
        let f = self.failed();
        tokio::time::sleep(f.delay).await;
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_and_only_the_first_failure_and_the_recovery_are_reported() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let delays: Vec<(u64, bool)> = (0..4).map(|_| b.failed()).map(|f| (f.delay.as_millis() as u64, f.first)).collect();
        assert_eq!(delays, [(100, true), (200, false), (350, false), (350, false)]);
        assert!(b.succeeded(), "the success after failures ends an outage");
        assert!(!b.succeeded(), "a second success ends nothing");
        assert_eq!(
            b.failed(),
            Failure {
                delay: Duration::from_millis(100),
                first: true
            },
            "a success resets the delay"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn wait_sleeps_the_delay_of_the_failure() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(4));
        let start = tokio::time::Instant::now();
        b.wait().await;
        b.wait().await;
        assert_eq!(start.elapsed(), Duration::from_secs(3));
    }
}
