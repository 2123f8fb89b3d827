//! Prometheus metrics. Each app owns its recorder (no global), so several apps can run
//! in one process (tests). Queue depth and lag are read from Redis at scrape time, so
//! they are never stale and cost nothing between scrapes.
use std::sync::Arc;
use std::time::Duration;

use drover::job::JobKind;
use drover::queue::{JobStore, RedisStore};
use metrics::{counter, gauge, histogram, with_local_recorder};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusRecorder};

const LATENCY_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

#[derive(Clone)]
pub struct Metrics {
    recorder: Arc<PrometheusRecorder>,
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
        }
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
    }

    /// Read queue depth, lag and pause state from the store, then render everything.
    pub async fn render(&self, store: &RedisStore) -> String {
        let mut counts = Vec::new();
        let mut up = true;
        for kind in JobKind::ALL {
            match store.counts(kind).await {
                Ok(c) => counts.push((kind, c)),
                Err(e) => {
                    tracing::warn!(error = %e, "queue counts unavailable for /metrics");
                    up = false;
                    break;
                }
            }
        }
        with_local_recorder(self.recorder.as_ref(), || {
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
                gauge!("drover_queue_paused", "kind" => k).set(if c.paused { 1.0 } else { 0.0 });
                counter!("drover_queue_succeeded_total", "kind" => k).absolute(c.succeeded_total);
            }
        });
        self.recorder.handle().render()
    }
}
