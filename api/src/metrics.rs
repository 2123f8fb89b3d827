//! Prometheus metrics. Each app owns its recorder (no global), so several apps can run
//! in one process (tests). Queue depth and lag are read from Redis at scrape time into
//! a recorder of that scrape's own, so they are never stale: what could not be read is
//! left out, not served from an earlier scrape. They cost nothing between scrapes.
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use drover::job::JobKind;
use drover::queue::{JobStore, RedisStore};
use drover::schedule::counters::{MISFIRES, TICKS};
use drover::schedule::ScheduleCounters;
use metrics::{counter, gauge, histogram, with_local_recorder};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusRecorder};

/// `/metrics` could not read the queue counts last time (an outage logged once).
static COUNTS_DOWN: drover::outage::Outage = drover::outage::Outage::new();

/// Requests between two foldings of the latency histogram's samples into its buckets: a
/// sample is kept (8 bytes) until then, so an API whose `/metrics` is off or never
/// scraped held every request's for as long as it ran (found by the second round of
/// audits of 2026-12-07). A power of two, so the count's wrap keeps the rhythm.
const UPKEEP_EVERY: u32 = 1024;

const LATENCY_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Jobs not running, by the reason `waiting` gives (docs/operations.md, "Scraping").
pub const QUEUE_WAITING: &str = "drover_queue_waiting_jobs";
/// Leases reclaimed from workers that stopped renewing them, by `how`: `lost` (the run
/// had started: an attempt used) or `released` (never started: handed back).
pub const LEASE_RECLAIMS: &str = "drover_queue_lease_reclaims_total";
/// Results that arrived after their lease was reclaimed (kept on the attempt as `late`).
pub const LATE_RESULTS: &str = "drover_queue_late_results_total";
/// Runs parked by a guard (snoozed until it lets them through), by `reason`.
pub const PARKED_RUNS: &str = "drover_queue_parked_runs_total";
/// `drover_queue_lag_seconds` of each partition, served only when `queue.partitions > 1`.
pub const PARTITION_LAG: &str = "drover_queue_partition_lag_seconds";

#[derive(Clone)]
pub struct Metrics {
    recorder: Arc<PrometheusRecorder>,
    schedule: Arc<ScheduleCounters>,
    /// Requests recorded, for [`UPKEEP_EVERY`].
    recorded: Arc<AtomicU32>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full("http_request_duration_seconds".into()), LATENCY_BUCKETS)
            .expect("the bucket list is not empty")
            .build_recorder();
        Self {
            recorder: Arc::new(recorder),
            schedule: Arc::default(),
            recorded: Arc::default(),
        }
    }

    /// What this replica's scheduler counts into (rendered with the rest).
    pub fn schedule_counters(&self) -> Arc<ScheduleCounters> {
        self.schedule.clone()
    }

    pub fn record_request(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        with_local_recorder(self.recorder.as_ref(), || {
            let labels = [
                ("method", method.to_owned()),
                ("route", route.to_owned()),
                ("status", status.to_string()),
            ];
            counter!("http_requests_total", &labels).increment(1);
            histogram!("http_request_duration_seconds", &labels).record(elapsed.as_secs_f64());
        });
        if self.recorded.fetch_add(1, Ordering::Relaxed) % UPKEEP_EVERY == UPKEEP_EVERY - 1 {
            self.recorder.handle().run_upkeep();
        }
    }

    /// Read queue depth, lag and pause state from the store, then render everything.
    pub async fn render(&self, store: &RedisStore) -> String {
        let mut counts = Vec::new();
        let mut up = true;
        for kind in JobKind::ALL {
            match store.counts(kind).await {
                Ok(c) => counts.push((kind, c)),
                Err(e) => {
                    // Once an outage, not once a scrape (`drover_redis_up` says it meanwhile).
                    if COUNTS_DOWN.failed() {
                        tracing::warn!(error = %e, "queue counts unavailable for /metrics (logged again when they are back)");
                    } else {
                        tracing::debug!(error = %e, "queue counts still unavailable for /metrics");
                    }
                    up = false;
                    break;
                }
            }
        }
        if up && COUNTS_DOWN.answered() {
            tracing::info!("queue counts available for /metrics again");
        }
        let scrape = PrometheusBuilder::new().build_recorder();
        with_local_recorder(&scrape, || {
            gauge!("drover_redis_up").set(if up { 1.0 } else { 0.0 });
            for (kind, c) in &counts {
                let k = kind.as_str();
                for (state, n) in [
                    ("scheduled", c.scheduled),
                    ("queued", c.queued),
                    ("running", c.running),
                    ("prefetched", c.prefetched),
                    ("retrying", c.retrying),
                    ("succeeded", c.succeeded),
                    ("partial", c.partial),
                    ("dead", c.dead),
                    ("cancelled", c.cancelled),
                ] {
                    gauge!("drover_queue_jobs", "kind" => k, "state" => state).set(n as f64);
                }
                gauge!("drover_queue_lag_seconds", "kind" => k).set(c.lag_ms as f64 / 1000.0);
                // Per partition only when there are several (bounded by queue.partitions):
                // one slow partition (a hot account, a slow shard) shows up by itself.
                if c.lag_ms_by_partition.len() > 1 {
                    for (p, lag) in c.lag_ms_by_partition.iter().enumerate() {
                        gauge!(PARTITION_LAG, "kind" => k, "partition" => p.to_string()).set(*lag as f64 / 1000.0);
                    }
                }
                gauge!("drover_queue_paused", "kind" => k).set(if c.paused { 1.0 } else { 0.0 });
                counter!("drover_queue_succeeded_total", "kind" => k).absolute(c.succeeded_total);
                for (reason, n) in c.waiting.by_reason() {
                    gauge!(QUEUE_WAITING, "kind" => k, "reason" => reason.as_str()).set(n as f64);
                }
                let e = &c.events;
                counter!(LEASE_RECLAIMS, "kind" => k, "how" => "lost").absolute(e.reclaimed_lost);
                counter!(LEASE_RECLAIMS, "kind" => k, "how" => "released").absolute(e.reclaimed_released);
                counter!(LATE_RESULTS, "kind" => k).absolute(e.late);
                for (reason, n) in [
                    ("rate_limit", e.parked_rate_limit),
                    ("quota_cooldown", e.parked_quota_cooldown),
                    ("breaker_open", e.parked_breaker_open),
                ] {
                    counter!(PARKED_RUNS, "kind" => k, "reason" => reason).absolute(n);
                }
            }
            counter!(TICKS).absolute(self.schedule.ticks());
            counter!(MISFIRES).absolute(self.schedule.misfires());
        });
        let mut text = self.recorder.handle().render();
        text.push_str(&scrape.handle().render());
        text
    }
}
