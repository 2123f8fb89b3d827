//! W3C trace context end to end: the `traceparent` a client sends with
//! `POST /v1/jobs` is stored on the job, shown on the job and its attempts, and every
//! marketplace call the worker makes for that job continues the same trace under a
//! span of its own — without an exporter, with OTLP export to a collector that is not
//! there (nothing else changes), and with a collector that receives the spans.
use crate::jobs_support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use chrono::Utc;
use drover::job::{trace_id_of, AccountId, JobId, JobState};
use drover_tests::harness::ChildProcess;
use drover_tests::sim::{AccountSpec, Operation};
use jobs_support::{Stack, MARKETPLACE};
use nix::sys::signal::Signal;
use serde_json::{json, Value};

const CLIENT_TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN_ID: &str = "00f067aa0ba902b7";

async fn stack_with_account(name: &str) -> (Stack, AccountId) {
    let stack = Stack::start_empty().await;
    let acct = stack
        .account(AccountSpec {
            orders: Some(200),
            ..AccountSpec::new(name)
        })
        .await;
    (stack, acct)
}

/// A sync of the account's orders through `api`, with the client's `traceparent`;
/// waits until it succeeds.
async fn traced_sync(stack: &Stack, api: &str, acct: &AccountId) -> JobId {
    let since = Utc::now() - chrono::Duration::days(90);
    let res = reqwest::Client::new()
        .post(format!("{api}/v1/jobs"))
        .bearer_auth(drover_api::DEV_KEY)
        .header("traceparent", CLIENT_TRACEPARENT)
        .json(&json!({"kind": "sync", "payload": {
            "account_id": acct.as_str(), "marketplace_id": MARKETPLACE, "resources": ["orders"], "since": since,
        }}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let id: JobId = res.json::<Value>().await.unwrap()["id"].as_str().unwrap().parse().unwrap();
    let job = stack.finish(&id, Duration::from_secs(60)).await;
    assert_eq!(job.state, JobState::Succeeded, "{job:#?}\n{}", stack.logs());
    id
}

/// The `request` span of the API's JSON line saying `message` about `job_id`.
fn request_span(log: &str, message: &str, job_id: &str) -> Option<Value> {
    log.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).find_map(|v| {
        (v["message"] == message && v["job_id"] == job_id)
            .then(|| v["spans"].as_array()?.iter().find(|s| s["name"] == "request").cloned())
            .flatten()
    })
}

/// The request span of the API's "job accepted" line for `job_id`. The API writes its
/// lines in batches (api/src/log_writer.rs), so the line may land a few ms after the
/// answer: it is waited for, up to 5 s.
fn accepted_span(api_process: &ChildProcess, job_id: &str) -> Value {
    assert!(
        api_process.wait_for_log(&format!("\"job_id\":\"{job_id}\""), Duration::from_secs(5)),
        "no line about {job_id}:\n{}",
        api_process.log()
    );
    request_span(&api_process.log(), "job accepted", job_id)
        .unwrap_or_else(|| panic!("no 'job accepted' line for {job_id}:\n{}", api_process.log()))
}

/// Lines the API logs inside a request carry its trace: the client's when it sent one,
/// and otherwise a new trace that the job it submitted carries too.
async fn assert_request_lines_in_trace(api: &str, api_process: &ChildProcess, acct: &AccountId, traced: &JobId) {
    let span = accepted_span(api_process, traced.as_str());
    assert_eq!(span["trace_id"], TRACE_ID, "{span}");
    assert_eq!(span["span_id"].as_str().map(str::len), Some(16), "{span}");

    let res = reqwest::Client::new()
        .post(format!("{api}/v1/jobs"))
        .bearer_auth(drover_api::DEV_KEY)
        .json(&json!({"kind": "cleanup", "delay_ms": 3_600_000, "payload": {
            "account_id": acct.as_str(), "marketplace_id": MARKETPLACE, "skus": ["SKU-1"],
        }}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let view: Value = res.json().await.unwrap();
    let id = view["id"].as_str().unwrap();
    let job = job_view(api, id).await;
    let trace = job["trace_id"].as_str().expect("every job has a trace").to_owned();
    assert_ne!(trace, TRACE_ID);
    let span = accepted_span(api_process, id);
    assert_eq!(
        span["trace_id"],
        trace.as_str(),
        "the request's lines and its job share a trace: {span}"
    );
}

/// `GET /v1/jobs/{id}` with the dev key.
async fn job_view(api: &str, id: &str) -> Value {
    reqwest::Client::new()
        .get(format!("{api}/v1/jobs/{id}"))
        .bearer_auth(drover_api::DEV_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The job and each attempt show the client's trace.
async fn assert_job_in_trace(api: &str, id: &JobId) {
    let view = job_view(api, id.as_str()).await;
    assert_eq!(view["trace_id"], TRACE_ID, "{view:#}");
    assert_eq!(view["traceparent"], CLIENT_TRACEPARENT);
    let attempts = view["attempt_history"].as_array().expect("attempt history");
    assert!(!attempts.is_empty(), "{view:#}");
    for attempt in attempts {
        assert_eq!(attempt["trace_id"], TRACE_ID, "{attempt:#}");
    }
}

/// Every getOrders call carried a traceparent in the client's trace, under the
/// worker's own span id (not the client's). Returns the last one.
async fn assert_calls_in_trace(stack: &Stack, acct: &AccountId) -> String {
    let stats = stack.sim.admin().stats().await.expect("simulator stats");
    let orders = stats.op(acct.as_str(), Operation::GetOrders);
    assert!(orders.calls >= 2, "200 orders take pages: {orders:?}");
    assert_eq!(
        orders.traced, orders.calls,
        "every getOrders call carried a traceparent: {orders:?}"
    );
    let seen = orders.last_traceparent.expect("a traceparent reached the marketplace");
    assert_eq!(trace_id_of(&seen), Some(TRACE_ID), "{seen}");
    let span_id = seen.split('-').nth(2).expect("a span id");
    assert_ne!(span_id, CLIENT_SPAN_ID, "the call is the worker's own span, not the client's");
    seen
}

/// A local port nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_clients_traceparent_reaches_the_job_its_attempts_and_every_marketplace_call() {
    let (mut stack, acct) = stack_with_account("seller-traced").await;
    stack.spawn_worker("worker-1", &[]);
    let api = stack.start_api().await;
    let id = traced_sync(&stack, &api, &acct).await;
    assert_job_in_trace(&api, &id).await;
    assert_calls_in_trace(&stack, &acct).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_otlp_export_to_an_absent_collector_the_api_and_worker_binaries_work_and_stop_cleanly() {
    let (mut stack, acct) = stack_with_account("seller-otlp-down").await;
    let endpoint = format!("http://127.0.0.1:{}", closed_port());
    let otel = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        // Export attempts during the job, not only at exit.
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    let worker = stack.spawn_worker("worker-1", &otel);
    let (mut api_process, api) = stack.spawn_api_process(&otel);

    let id = traced_sync(&stack, &api, &acct).await;
    assert_job_in_trace(&api, &id).await;
    assert_calls_in_trace(&stack, &acct).await;
    assert_request_lines_in_trace(&api, &api_process, &acct, &id).await;

    // The final flush meets the closed port too: both still exit 0, promptly.
    api_process.signal(Signal::SIGTERM);
    stack.workers[worker].signal(Signal::SIGTERM);
    assert_eq!(api_process.wait_exit(Duration::from_secs(15)), Some(0), "{}", api_process.log());
    let w = &mut stack.workers[worker];
    assert_eq!(w.wait_exit(Duration::from_secs(15)), Some(0), "{}", w.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_a_collector_the_worker_exports_the_spans_its_calls_announce() {
    // A stand-in collector: keeps every OTLP/HTTP traces request body.
    let bodies: Arc<Mutex<Vec<Bytes>>> = Arc::default();
    let kept = bodies.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: Bytes| {
            let kept = kept.clone();
            async move {
                kept.lock().unwrap().push(body);
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let (mut stack, acct) = stack_with_account("seller-otlp-up").await;
    stack.spawn_worker(
        "worker-1",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    );
    let api = stack.start_api().await;
    traced_sync(&stack, &api, &acct).await;
    let seen = assert_calls_in_trace(&stack, &acct).await;

    // The span the last call announced is exported, in the client's trace, by the
    // worker's service (ids travel as raw bytes in OTLP protobuf).
    let span_id = hex_bytes(seen.split('-').nth(2).unwrap());
    let trace_id = hex_bytes(TRACE_ID);
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let exported: Vec<u8> = bodies.lock().unwrap().iter().flat_map(|b| b.iter().copied()).collect();
        if contains(&exported, &span_id) {
            assert!(contains(&exported, &trace_id), "the client's trace id is exported");
            assert!(contains(&exported, b"drover-worker"), "service.name is the binary's");
            assert!(contains(&exported, b"upstream"), "the call's span is exported");
            break;
        }
        assert!(
            Instant::now() < until,
            "the call's span {seen} never reached the collector ({} requests)\n{}",
            bodies.lock().unwrap().len(),
            stack.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
