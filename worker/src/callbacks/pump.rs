//! The delivery loop: claims due deliveries (a lease keeps other workers off each try),
//! runs at most `concurrency` tries at once on tasks of its own — never in a job slot,
//! so a slow receiver delays no job — of which one account's hold at most
//! `per_account`, so one account's slow receivers hold only its share of the slots; and
//! records every try with what comes next.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use drover::backoff::Backoff;
use drover::callback::{DeliveryResult, RetrySchedule, Verdict};
use drover::job::JobKind;
use drover::queue::{AccountShare, CallbackStore, DueCallback, Recorded};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{CallbacksConfig, Deliverer};

/// Run deliveries until `stop`; tries in flight then get their timeout to finish.
pub async fn run<S: CallbackStore>(store: S, deliverer: Deliverer, config: CallbacksConfig, worker: String, stop: CancellationToken) {
    if config.concurrency == 0 {
        return;
    }
    let slots = Arc::new(Semaphore::new(config.concurrency));
    let deliverer = Arc::new(deliverer);
    let schedule = config.schedule();
    let mut tries = JoinSet::new();
    let mut outage = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    let mut first_kind = 0;
    // Tries in flight by account (`""`: jobs without one), kept by the tries themselves.
    let in_flight: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    tracing::info!(
        concurrency = config.concurrency,
        per_account = config.per_account,
        "callback deliveries started"
    );
    loop {
        let first = tokio::select! {
            _ = stop.cancelled() => break,
            p = slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
        };
        let mut permits = vec![first];
        while let Ok(p) = slots.clone().try_acquire_owned() {
            permits.push(p);
        }
        let mut claimed: Vec<DueCallback> = Vec::new();
        let mut wait = Duration::from_millis(config.poll_ms);
        let mut failed = None;
        // Kinds take turns at going first, so a backlog of one cannot starve the others.
        first_kind = (first_kind + 1) % JobKind::ALL.len();
        let mut share = AccountShare {
            per_account: config.per_account,
            in_flight: in_flight.lock().expect("in-flight counts").clone(),
        };
        for i in 0..JobKind::ALL.len() {
            let room = permits.len() - claimed.len();
            if room == 0 {
                break;
            }
            let kind = JobKind::ALL[(first_kind + i) % JobKind::ALL.len()];
            match store
                .claim_callbacks(kind, &worker, room, config.lease(), config.max_tries, &share)
                .await
            {
                Ok((due, next)) => {
                    for d in &due {
                        *share.in_flight.entry(account_of(d)).or_default() += 1;
                    }
                    claimed.extend(due);
                    if let Some(n) = next {
                        wait = wait.min(n);
                    }
                }
                Err(e) => failed = Some(e),
            }
        }
        match failed {
            Some(e) => {
                let f = outage.failed();
                if f.first {
                    tracing::warn!(error = %e, "callback deliveries: cannot claim from Redis; retrying");
                }
                wait = f.delay;
            }
            None => {
                if outage.succeeded() {
                    tracing::info!("callback deliveries: Redis answers again");
                }
            }
        }
        let idle = claimed.is_empty();
        for (due, permit) in claimed.into_iter().zip(permits) {
            let (store, deliverer) = (store.clone(), deliverer.clone());
            let lease = config.lease();
            let held = InFlight::start(&in_flight, account_of(&due));
            tries.spawn(async move {
                deliver(&store, &deliverer, &schedule, lease, due).await;
                drop(held);
                drop(permit);
            });
        }
        while tries.try_join_next().is_some() {}
        if idle {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(wait.max(Duration::from_millis(10))) => {}
            }
        }
    }
    // Tries in flight are bounded by the timeout; one not recorded by then is tried
    // again by whichever worker claims it after its lease.
    let drain = async { while tries.join_next().await.is_some() {} };
    if tokio::time::timeout(config.timeout() + Duration::from_secs(1), drain)
        .await
        .is_err()
    {
        tracing::warn!("callback deliveries: tries still in flight at shutdown are left to their lease");
    }
    tracing::info!("callback deliveries stopped");
}

fn account_of(due: &DueCallback) -> String {
    due.account.clone().unwrap_or_default()
}

/// One try counted in flight for its account until dropped (also when its task panics).
struct InFlight {
    counts: Arc<Mutex<HashMap<String, usize>>>,
    account: String,
}

impl InFlight {
    fn start(counts: &Arc<Mutex<HashMap<String, usize>>>, account: String) -> Self {
        *counts.lock().expect("in-flight counts").entry(account.clone()).or_default() += 1;
        Self {
            counts: counts.clone(),
            account,
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = counts.get_mut(&self.account) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&self.account);
            }
        }
    }
}

/// One try and its record. The record is retried (Redis may blip) within the lease:
/// past it another worker may have claimed the delivery, and the store would keep the
/// try as history only.
async fn deliver<S: CallbackStore>(store: &S, deliverer: &Deliverer, schedule: &RetrySchedule, lease: Duration, due: DueCallback) {
    let started = std::time::Instant::now();
    let mut tried = deliverer.attempt(&due).await;
    let next = schedule.next(due.try_number, tried.verdict, rand::random::<f64>());
    if tried.verdict == Verdict::Retry && next.is_none() {
        tried.record.result = DeliveryResult::GaveUp;
    }
    crate::metrics::callback_tried(tried.record.result, started.elapsed());
    if tried.verdict != Verdict::Delivered {
        // Once per try, with what identifies it; never the URL's path, the secret or the signature.
        tracing::warn!(
            job_id = %due.job_id,
            host = %tried.host,
            try_number = due.try_number,
            status = tried.record.status,
            error = tried.record.error.as_deref().unwrap_or(""),
            message = tried.record.message.as_deref().unwrap_or(""),
            next_try_in_ms = next.map(|d| d.as_millis() as u64),
            "callback delivery failed"
        );
    }
    let delivered = tried.verdict == Verdict::Delivered;
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
    loop {
        match store.record_callback(&due, &tried.record, next, delivered).await {
            Ok(Recorded::Applied | Recorded::Missing) => return,
            Ok(Recorded::Stale) => {
                tracing::info!(job_id = %due.job_id, "callback try recorded after its claim ran out; kept in the history only");
                return;
            }
            Err(e) if started.elapsed() + backoff.failed().delay < lease => {
                tracing::debug!(job_id = %due.job_id, error = %e, "callback try not recorded yet; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => {
                tracing::warn!(job_id = %due.job_id, error = %e, "callback try could not be recorded; its lease will hand it to another try");
                return;
            }
        }
    }
}
