//! Operations: probes, Prometheus metrics, the generated OpenAPI document, and a Redis
//! outage (SIGKILL, restart on the same port) that the API rides out by itself.
use crate::api_support;

use std::time::{Duration, Instant};

use api_support::*;
use drover::queue::{JobStore, ListQuery};
use drover_tests::harness::{Durability, RedisServer};
use serde_json::Value;

#[tokio::test]
async fn healthz_and_readyz_answer_200_without_a_key() {
    let app = spawn_app().await;
    let res = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["status"], "ok");
    let res = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["status"], "ready");
}

#[tokio::test]
async fn metrics_count_requests_by_route_template_and_show_queue_depth_and_lag() {
    let app = spawn_app().await;
    let id = app.submit_ok(&cleanup_body("acme")).await;
    app.submit_ok(&cleanup_body("acme")).await;
    app.kill_job(&id).await;
    assert_eq!(app.job(ADMIN, id.as_str()).await.0, 200);
    assert_eq!(app.job(ADMIN, "cleanup_01J9Z3K4M5N6P7Q8R9S0T1V2W3").await.0, 404);
    let res = app.client.get(app.metrics_url()).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    let text = res.text().await.unwrap();
    let has = |needle: &str| text.lines().any(|l| l.contains(needle));
    assert!(
        has(r#"http_requests_total{method="POST",route="/v1/jobs",status="202"} 2"#),
        "{text}"
    );
    assert!(
        has(r#"http_requests_total{method="GET",route="/v1/jobs/{id}",status="404"} 1"#),
        "{text}"
    );
    assert!(has(
        r#"http_request_duration_seconds_bucket{method="GET",route="/v1/jobs/{id}",status="200",le="0.005"}"#
    ));
    assert!(!text.contains(id.as_str()), "ids never become labels");
    assert!(has(r#"drover_queue_jobs{kind="cleanup",state="queued"} 1"#), "{text}");
    assert!(has(r#"drover_queue_jobs{kind="cleanup",state="dead"} 1"#), "{text}");
    assert!(has(r#"drover_queue_lag_seconds{kind="cleanup"}"#));
    assert!(has(r#"drover_queue_paused{kind="sync"} 0"#));
    assert!(has("drover_redis_up 1"));
}

/// Found by the job-story audit of 2026-12-06: once Redis stopped answering, `/metrics`
/// said `drover_redis_up 0` but served every queue series at its last value, so a lag
/// alert could neither fire nor clear while the queue stood still. Figures that could
/// not be read this scrape are left out.
#[tokio::test]
async fn metrics_leave_out_the_queue_figures_they_cannot_read() {
    let mut app = spawn_app().await;
    app.submit_ok(&cleanup_body("acme")).await;
    let scrape = async |app: &TestApp| app.client.get(app.metrics_url()).send().await.unwrap().text().await.unwrap();
    let text = scrape(&app).await;
    assert!(text.contains(r#"drover_queue_jobs{kind="cleanup",state="queued"} 1"#), "{text}");
    app.redis.kill();
    let text = scrape(&app).await;
    assert!(text.lines().any(|l| l == "drover_redis_up 0"), "{text}");
    for series in [
        "drover_queue_jobs{",
        "drover_queue_lag_seconds{",
        "drover_queue_waiting_jobs{",
        "drover_queue_paused{",
    ] {
        assert!(!text.contains(series), "{series} served from an earlier scrape:\n{text}");
    }
    assert!(text.contains("http_requests_total"), "the API's own figures stay: {text}");
}

/// How many PINGs this Redis has answered.
async fn pings(app: &TestApp) -> u64 {
    command_calls(&mut app.store.connection(), "ping").await
}

/// I8: `/readyz` needs no key, so a flood of it must not become a flood of Redis and
/// Postgres round trips (nor of log lines while a dependency is down).
#[tokio::test]
async fn a_flood_of_readiness_probes_checks_the_dependencies_about_once_a_second() {
    let app = spawn_app().await;
    assert_eq!(app.client.get(app.url("/readyz")).send().await.unwrap().status(), 200);
    let before = pings(&app).await;
    let started = Instant::now();
    for _ in 0..200 {
        assert_eq!(app.client.get(app.url("/readyz")).send().await.unwrap().status(), 200);
    }
    let seconds = started.elapsed().as_secs() + 1;
    let checks = pings(&app).await - before;
    assert!(checks <= seconds + 1, "{checks} PINGs for 200 probes in under {seconds} s");
}

/// M1: `GET /v1/queues` refuses scoped keys, so the public listener must not serve the
/// same queue-wide numbers (and every tenant's traffic) to anyone without a key.
#[tokio::test]
async fn the_public_listener_serves_no_metrics() {
    let app = spawn_app().await;
    app.submit_ok(&cleanup_body("globex")).await;
    assert_eq!(app.get(ACME, "/v1/queues").send().await.unwrap().status(), 403);
    let res = app.client.get(app.url("/metrics")).send().await.unwrap();
    let p = problem(res, 404).await;
    assert!(!p.to_string().contains("drover_queue_jobs"), "{p}");
    let res = app.get(ACME, "/metrics").send().await.unwrap();
    problem(res, 404).await;
    // Prometheus scrapes the internal listener, which serves nothing else.
    let page = app.client.get(app.metrics_url()).send().await.unwrap().text().await.unwrap();
    assert!(page.contains(r#"drover_queue_jobs{kind="cleanup",state="queued"} 1"#), "{page}");
    let other = app
        .client
        .get(app.metrics_url().replace("/metrics", "/v1/jobs"))
        .send()
        .await
        .unwrap();
    problem(other, 404).await;
    let doc: Value = app.client.get(app.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    assert!(
        doc["paths"].get("/metrics").is_none(),
        "the public document does not offer /metrics"
    );
}

#[tokio::test]
async fn the_openapi_document_is_generated_with_every_endpoint_and_bearer_auth() {
    let app = spawn_app().await;
    let doc: Value = app.client.get(app.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/v1/jobs", "post"),
        ("/v1/jobs", "get"),
        ("/v1/jobs/cleanup.csv", "post"),
        ("/v1/jobs/{id}", "get"),
        ("/v1/jobs/{id}/events", "get"),
        ("/v1/jobs/{id}/cancel", "post"),
        ("/v1/jobs/{id}/retry", "post"),
        ("/v1/dead-letter", "get"),
        ("/v1/dead-letter/replay", "post"),
        ("/v1/queues", "get"),
        ("/v1/queues/{kind}/pause", "post"),
        ("/v1/queues/{kind}/resume", "post"),
        ("/healthz", "get"),
        ("/readyz", "get"),
    ] {
        let op = &paths[path][method];
        assert!(op.is_object(), "{method} {path} is documented");
        for (code, r) in op["responses"].as_object().unwrap() {
            assert!(r["description"].is_string(), "{method} {path} {code} has a description");
        }
    }
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    let kinds = &doc["components"]["schemas"]["SubmitJob"]["properties"]["kind"]["enum"];
    assert_eq!(kinds, &serde_json::json!(["sync", "backfill", "cleanup"]));
    assert_eq!(
        paths["/v1/jobs"]["post"]["responses"]["422"]["content"]["application/problem+json"]["schema"]["$ref"],
        "#/components/schemas/Problem"
    );
}

/// Found by the audit of what the API shows (2026-12-07): the document left out answers
/// these operations send — the write budget's 429 on a guarded write (deleting a
/// schedule), and the body limit's 413 on JSON bodies (dead-letter actions, accounts,
/// credentials) — so a client generated from it had no type for them.
#[tokio::test]
async fn every_guarded_write_documents_429_and_every_body_413() {
    let app = spawn_app().await;
    let doc: Value = app.client.get(app.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    let mut missing = Vec::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            let responses = op["responses"].as_object().unwrap();
            let open = op["security"]
                .as_array()
                .is_some_and(|s| s.iter().all(|r| r.as_object().is_some_and(|o| o.is_empty())));
            if method != "get" && !open && !responses.contains_key("429") {
                missing.push(format!("{method} {path}: 429"));
            }
            if op.get("requestBody").is_some() && !responses.contains_key("413") {
                missing.push(format!("{method} {path}: 413"));
            }
            // a JSON body of another content type is refused (found by the audit of the
            // less-visited routes, 2026-12-07: the schedule's PUT did not say so)
            if op["requestBody"]["content"].get("application/json").is_some() && !responses.contains_key("415") {
                missing.push(format!("{method} {path}: 415"));
            }
        }
    }
    assert!(missing.is_empty(), "answers sent but not documented: {missing:#?}");
    // The CSV upload answers 422 without either of its query parameters: both required.
    let params = doc["paths"]["/v1/jobs/cleanup.csv"]["post"]["parameters"].as_array().unwrap();
    for name in ["account_id", "marketplace_id"] {
        let p = params.iter().find(|p| p["name"] == name).unwrap();
        assert_eq!(p["required"], true, "{p}");
    }
}

#[tokio::test]
async fn a_request_that_outlasts_the_timeout_returns_503() {
    let app = spawn_app_with(Durability::None, |c| c.request_timeout_ms = 200).await;
    // A script that keeps Redis busy for 1.5 s stalls every request behind it.
    let mut conn = app.redis.conn();
    let busy = std::thread::spawn(move || {
        let script = "local function us() local t = redis.call('TIME') return t[1] * 1000000 + t[2] end \
                      local s = us() while us() - s < 1500000 do end return 1";
        let _: i64 = redis::cmd("EVAL").arg(script).arg(0).query(&mut conn).unwrap();
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let res = app.get(READER, "/v1/jobs/cleanup_01J9Z3K4M5N6P7Q8R9S0T1V2W3").send().await.unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "answered at the timeout, not when Redis was free"
    );
    assert_eq!(res.headers()["retry-after"], "1");
    let p = problem(res, 503).await;
    assert!(p["detail"].as_str().unwrap().contains("200 ms"), "{p}");
    busy.join().unwrap();
    assert_eq!(
        app.job(READER, "cleanup_01J9Z3K4M5N6P7Q8R9S0T1V2W3").await.0,
        404,
        "fine again afterwards"
    );
}

async fn until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !check().await {
        assert!(Instant::now() < deadline, "{what} did not happen within 15 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn when_redis_dies_readyz_and_writes_answer_503_and_both_recover_when_it_is_back() {
    let mut app = spawn_app_with(Durability::AofEverySec, |_| {}).await;
    // Every write on disk before it is acknowledged, so a SIGKILL loses nothing that got a 202.
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("appendfsync")
        .arg("always")
        .query(&mut app.redis.conn())
        .unwrap();
    let mut accepted = Vec::new();
    for _ in 0..5 {
        accepted.push(app.submit_ok(&cleanup_body("acme")).await);
    }

    app.redis.kill();
    let res = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(res.headers()["retry-after"], "1");
    let p = problem(res, 503).await;
    assert!(
        p["detail"].as_str().unwrap().contains("redis"),
        "the failed dependency is named: {p}"
    );
    for i in 0..5 {
        let res = app
            .post(SUBMITTER, "/v1/jobs")
            .header("Idempotency-Key", format!("outage-{i}"))
            .json(&cleanup_body("acme"))
            .send()
            .await
            .unwrap();
        assert!(res.headers().contains_key("retry-after"));
        let p = problem(res, 503).await;
        let detail = p["detail"].as_str().unwrap();
        assert!(
            !detail.contains("refused") && !detail.contains("os error"),
            "no internals: {detail}"
        );
        // A reply lost after the script ran looks like one never sent: the answer must
        // not claim nothing was written (review F8).
        assert!(
            detail.contains("the outcome is unknown") && detail.contains("retry with the same Idempotency-Key"),
            "a failed write says its outcome is unknown and how to retry safely: {detail}"
        );
    }
    // Found by an audit of error texts: a read was told the same, though it changed
    // nothing and no read takes an Idempotency-Key.
    let p = problem(app.get(READER, "/v1/jobs").send().await.unwrap(), 503).await;
    let detail = p["detail"].as_str().unwrap();
    assert!(
        detail.contains("retry the request") && !detail.contains("Idempotency-Key"),
        "a read says plainly to retry: {detail}"
    );
    // Nor is a write sent without an Idempotency-Key: pausing a queue takes none, and a
    // submit without one would make a second job if retried blindly.
    let p = problem(app.post(ADMIN, "/v1/queues/cleanup/pause").send().await.unwrap(), 503).await;
    let detail = p["detail"].as_str().unwrap();
    assert!(
        detail.contains("the outcome is unknown") && detail.contains("check") && !detail.contains("Idempotency-Key"),
        "a write that takes no key says its outcome is unknown and to look before retrying: {detail}"
    );
    let p = problem(app.submit(SUBMITTER, &cleanup_body("acme")).await, 503).await;
    let detail = p["detail"].as_str().unwrap();
    assert!(
        detail.contains("the outcome is unknown") && detail.contains("check") && !detail.contains("the same Idempotency-Key"),
        "a submit without a key is not told to retry with one it never sent: {detail}"
    );

    app.redis.restart();
    until("readiness to recover", async || {
        app.client.get(app.url("/readyz")).send().await.unwrap().status() == 200
    })
    .await;
    until("writes to recover", async || {
        let res = app.submit(SUBMITTER, &cleanup_body("acme")).await;
        if res.status() == 202 {
            let v: Value = res.json().await.unwrap();
            accepted.push(v["id"].as_str().unwrap().parse().unwrap());
            true
        } else {
            false
        }
    })
    .await;

    let store = drover::queue::RedisStore::connect(&app.redis.url(), "drover", Default::default())
        .await
        .unwrap();
    let all = store
        .list(&ListQuery {
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut stored: Vec<String> = all.jobs.iter().map(|j| j.id.to_string()).collect();
    let mut expected: Vec<String> = accepted.iter().map(ToString::to_string).collect();
    stored.sort();
    expected.sort();
    assert_eq!(stored, expected, "exactly the jobs that got a 202, nothing half-written");
    let v: Value = app.get(READER, "/v1/jobs?limit=1000").send().await.unwrap().json().await.unwrap();
    assert_eq!(v["jobs"].as_array().unwrap().len(), expected.len());
}

#[tokio::test]
async fn the_api_starts_while_redis_is_down_and_becomes_ready_when_it_comes_back() {
    let mut redis = RedisServer::start(Durability::None);
    redis.kill();
    let (addr, stop, server) = start(test_config(&redis.url())).await;
    let client = reqwest::Client::new();
    let url = |p: &str| format!("http://{addr}{p}");
    assert_eq!(
        client.get(url("/healthz")).send().await.unwrap().status(),
        200,
        "alive while Redis is down"
    );
    let p = problem(client.get(url("/readyz")).send().await.unwrap(), 503).await;
    assert!(p["detail"].as_str().unwrap().contains("redis"), "{p}");

    redis.restart();
    until("readiness once Redis is up", async || {
        client.get(url("/readyz")).send().await.unwrap().status() == 200
    })
    .await;
    let res = client
        .post(url("/v1/jobs"))
        .bearer_auth(SUBMITTER)
        .json(&cleanup_body("acme"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let _ = stop.send(());
    let _ = server.await;
}
