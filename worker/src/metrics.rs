//! The worker's Prometheus metrics: the names recorded around marketplace calls, and
//! the small listener that serves everything this process records on `GET /metrics`.
//!
//! Recording goes through the `metrics` facade, so it costs nothing until
//! [`serve`] installs the recorder (only the real worker does). The runtime's own
//! metrics (runs finished, durations, running) are named in
//! [`drover::runtime::metrics`]. Labels stay bounded: operation, status, kind, outcome
//! — never a job or account id.
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use drover::resilience::Operation;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics::{counter, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;

/// SP-API requests that were sent, by operation and HTTP status (or `timeout` /
/// `transport` when no answer came).
pub const UPSTREAM_REQUESTS: &str = "drover_upstream_requests_total";
/// 429 answers, by operation.
pub const UPSTREAM_RATE_LIMITED: &str = "drover_upstream_rate_limited_total";
/// Time spent waiting for a slot from the shared rate limiter, by operation.
pub const LIMITER_WAIT: &str = "drover_limiter_wait_seconds";
/// Calls refused without being sent because the operation's breaker was open.
pub const BREAKER_OPEN: &str = "drover_breaker_open_total";
/// Quota cooldowns this worker put an account into (a report operation got a 429).
pub const COOLDOWNS_ENTERED: &str = "drover_cooldowns_entered_total";
/// Report calls refused without being sent because the account was cooling down.
pub const COOLDOWN_REFUSALS: &str = "drover_cooldown_refusals_total";

/// Callback delivery tries, by outcome: `delivered`, `failed` (tried again later) or
/// `gave_up`.
pub const CALLBACK_DELIVERIES: &str = "drover_callback_deliveries_total";
/// How long one callback try took, answer or not.
pub const CALLBACK_DURATION: &str = "drover_callback_delivery_seconds";

const LIMITER_BUCKETS: &[f64] = &[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
const RUN_BUCKETS: &[f64] = &[0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0];
/// Histograms are folded into their buckets at least this often between scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// The listener's bounds, as the API's (`api/src/serve.rs`): a client sends its request
/// headers within 10 s (which also closes a keep-alive connection idle that long), a
/// connection lasts at most a minute (one whose client stops reading ends), at most 32
/// are served at once (more wait in the kernel's backlog), and a failing `accept` (out
/// of file descriptors, usually) backs off instead of spinning.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
const MAX_CONNECTIONS: usize = 32;
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

pub(crate) fn upstream_answered(op: Operation, status: u16) {
    counter!(UPSTREAM_REQUESTS, "op" => op.name(), "status" => status.to_string()).increment(1);
    if status == 429 {
        counter!(UPSTREAM_RATE_LIMITED, "op" => op.name()).increment(1);
    }
}

/// A request that got no answer: `timed_out` tells a timeout from other transport failures.
pub(crate) fn upstream_unanswered(op: Operation, timed_out: bool) {
    let status = if timed_out { "timeout" } else { "transport" };
    counter!(UPSTREAM_REQUESTS, "op" => op.name(), "status" => status).increment(1);
}

pub(crate) fn limiter_waited(op: Operation, wait: Duration) {
    histogram!(LIMITER_WAIT, "op" => op.name()).record(wait.as_secs_f64());
}

pub(crate) fn callback_tried(result: drover::callback::DeliveryResult, took: Duration) {
    let result = match result {
        drover::callback::DeliveryResult::Delivered => "delivered",
        drover::callback::DeliveryResult::Failed => "failed",
        drover::callback::DeliveryResult::GaveUp => "gave_up",
        drover::callback::DeliveryResult::Lost => "lost",
    };
    counter!(CALLBACK_DELIVERIES, "outcome" => result).increment(1);
    histogram!(CALLBACK_DURATION).record(took.as_secs_f64());
}

pub(crate) fn breaker_refused(op: Operation) {
    counter!(BREAKER_OPEN, "op" => op.name()).increment(1);
}

pub(crate) fn cooldown_entered() {
    counter!(COOLDOWNS_ENTERED).increment(1);
}

pub(crate) fn cooldown_refused(op: Operation) {
    counter!(COOLDOWN_REFUSALS, "op" => op.name()).increment(1);
}

/// Bind `listen`, install the process-wide recorder and serve `GET /metrics` until
/// `stop` fires. Metrics are never worth a dead worker: a bad address or a port in use
/// is logged once and the worker runs on without them. Returns the bound address.
///
/// The exporter's own listener is not used because it cannot say which port it bound
/// when given port 0 (as every test worker is).
pub async fn serve(listen: &str, stop: CancellationToken) -> Option<SocketAddr> {
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(address = listen, error = %e, "metrics listener could not bind; running without metrics");
            return None;
        }
    };
    let addr = listener.local_addr().ok()?;
    let handle = match install() {
        Ok(h) => h,
        Err(why) => {
            tracing::warn!(address = %addr, error = %why, "metrics recorder not installed; running without metrics");
            return None;
        }
    };
    tracing::info!(address = %addr, "metrics listening");
    tokio::spawn(upkeep(handle.clone(), stop.clone()));
    tokio::spawn(accept(listener, handle, stop));
    Some(addr)
}

fn install() -> Result<PrometheusHandle, String> {
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(LIMITER_WAIT.into()), LIMITER_BUCKETS)
        .and_then(|b| b.set_buckets_for_metric(Matcher::Full(drover::runtime::metrics::RUN_DURATION.into()), RUN_BUCKETS))
        .and_then(|b| b.set_buckets_for_metric(Matcher::Full(CALLBACK_DURATION.into()), LIMITER_BUCKETS))
        .map_err(|e| e.to_string())?
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(|e| e.to_string())?;
    declare();
    Ok(handle)
}

/// The counters the alerts read (`deploy/prometheus/alerts.yml`), served at 0 from the
/// start: `increase()` counts from a series' first sample, so one that appeared at its
/// first count (1) lost that count to the alerts.
fn declare() {
    drover::runtime::metrics::declare();
    for op in Operation::ALL {
        counter!(BREAKER_OPEN, "op" => op.name()).increment(0);
    }
    counter!(COOLDOWNS_ENTERED).increment(0);
    // a worker may run the scheduler (`worker.scheduler`)
    counter!(drover::schedule::counters::MISFIRES).increment(0);
}

async fn upkeep(handle: PrometheusHandle, stop: CancellationToken) {
    let mut tick = tokio::time::interval(UPKEEP_EVERY);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => handle.run_upkeep(),
        }
    }
}

async fn accept(listener: tokio::net::TcpListener, handle: PrometheusHandle, stop: CancellationToken) {
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
    loop {
        let slot = tokio::select! {
            _ = stop.cancelled() => return,
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
        };
        let stream = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::debug!(error = %e, "metrics connection not accepted; backing off");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let handle = handle.clone();
        let conn = builder.serve_connection(
            TokioIo::new(stream),
            hyper::service::service_fn(move |req| {
                let handle = handle.clone();
                async move { Ok::<_, Infallible>(respond(&handle, &req)) }
            }),
        );
        tokio::spawn(async move {
            match tokio::time::timeout(CONNECTION_LIFETIME, conn).await {
                Ok(Err(e)) => tracing::debug!(error = %e, "metrics connection ended with an error"),
                Err(_) => tracing::debug!("metrics connection closed at its lifetime"),
                Ok(Ok(())) => {}
            }
            drop(slot);
        });
    }
}

fn respond(handle: &PrometheusHandle, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let (status, body) = match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => (StatusCode::OK, handle.render()),
        (&Method::GET, _) => (StatusCode::NOT_FOUND, "not found: metrics are at /metrics\n".to_owned()),
        _ => (StatusCode::METHOD_NOT_ALLOWED, "only GET\n".to_owned()),
    };
    let mut res = Response::new(Full::new(Bytes::from(body)));
    *res.status_mut() = status;
    res.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    res
}
