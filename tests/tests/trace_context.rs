//! W3C trace context end to end: the `traceparent` a client sends with
//! `POST /v1/jobs` is stored on the job, shown on the job and its attempts, and every
//! marketplace call the worker makes for that job continues the same trace under a
//! span of its own.
mod jobs_support;

use std::time::Duration;

use chrono::Utc;
use drover::job::{trace_id_of, JobId, JobState};
use drover_tests::sim::{AccountSpec, Operation, SimConfig};
use jobs_support::{Stack, MARKETPLACE};
use serde_json::{json, Value};

const CLIENT_TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN_ID: &str = "00f067aa0ba902b7";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_clients_traceparent_reaches_the_job_its_attempts_and_every_marketplace_call() {
    let mut stack = Stack::start(
        SimConfig {
            accounts: 0,
            ..SimConfig::fast()
        },
        "",
    )
    .await;
    let acct = stack
        .account(AccountSpec {
            orders: Some(200),
            ..AccountSpec::new("seller-traced")
        })
        .await;
    stack.spawn_worker("worker-1", &[]);
    let api = stack.start_api().await;
    let http = reqwest::Client::new();
    let since = Utc::now() - chrono::Duration::days(90);
    let res = http
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

    let view: Value = http
        .get(format!("{api}/v1/jobs/{id}"))
        .bearer_auth(drover_api::DEV_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(view["trace_id"], TRACE_ID, "{view:#}");
    assert_eq!(view["traceparent"], CLIENT_TRACEPARENT);
    let attempts = view["attempt_history"].as_array().expect("attempt history");
    assert!(!attempts.is_empty(), "{view:#}");
    for attempt in attempts {
        assert_eq!(attempt["trace_id"], TRACE_ID, "{attempt:#}");
    }

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
}
