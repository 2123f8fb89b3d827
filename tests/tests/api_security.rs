//! Keys, roles, account scopes, the rate limit, request ids and start-up validation.
use crate::api_support;

use std::time::Duration;

use api_support::*;
use drover::queue::JobStore;
use drover_tests::harness::Durability;
use serde_json::{json, Value};

#[tokio::test]
async fn a_request_without_a_key_or_with_a_bad_key_returns_401() {
    let app = spawn_app().await;
    let res = app.client.get(app.url("/v1/jobs")).send().await.unwrap();
    assert_eq!(res.headers()["www-authenticate"], "Bearer realm=\"drover\"");
    problem(res, 401).await;
    problem(app.get("not-a-key", "/v1/jobs").send().await.unwrap(), 401).await;
    let res = app
        .client
        .get(app.url("/v1/jobs"))
        .header("authorization", format!("Basic {ADMIN}"))
        .send()
        .await
        .unwrap();
    problem(res, 401).await;
    let res = app
        .client
        .post(app.url("/v1/jobs"))
        .json(&cleanup_body("acme"))
        .send()
        .await
        .unwrap();
    problem(res, 401).await;
}

/// Found by the hostile-tenant audit of 2026-12-07: the runbook rotated a key by adding
/// an entry under a new name (an entry held one hash), and everything the API keeps under
/// a key's name started afresh — a submit retried with the same Idempotency-Key after the
/// switch made a second job. An entry holds the old hash and the new one while the key
/// is rotated: one key, by either secret.
#[tokio::test]
async fn a_key_rotated_under_its_name_keeps_its_idempotency_keys() {
    use drover_api::auth::Role;
    use drover_api::config::KeyEntry;
    let app = spawn_app_with(Durability::None, |c| {
        c.keys.push(KeyEntry {
            name: "portal".into(),
            key_sha256: format!(
                "{}+{}",
                drover_api::hash_key(&"portal-old".into()),
                drover_api::hash_key(&"portal-new".into())
            ),
            role: Role::Submit,
            accounts: None,
            callback_hosts: None,
            callback_secret: None,
        })
    })
    .await;
    let submit = |key: &'static str| {
        app.post(key, "/v1/jobs")
            .header("idempotency-key", "order-42")
            .json(&cleanup_body("acme"))
            .send()
    };
    let first = submit("portal-old").await.unwrap();
    assert_eq!(first.status(), 202);
    let first: Value = first.json().await.unwrap();
    let again = submit("portal-new").await.unwrap();
    assert_eq!(again.status(), 200, "the same request by the rotated key is the same job");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["id"], first["id"]);
}

#[tokio::test]
async fn each_role_may_only_do_what_it_is_for() {
    let app = spawn_app().await;
    let p = problem(app.submit(READER, &cleanup_body("acme")).await, 403).await;
    assert!(p["detail"].as_str().unwrap().contains("needs submit"), "{p}");
    let id = app.submit_ok(&cleanup_body("acme")).await;
    assert_eq!(app.submit(SUBMITTER, &cleanup_body("acme")).await.status(), 202);
    assert_eq!(app.get(SUBMITTER, &format!("/v1/jobs/{id}")).send().await.unwrap().status(), 200);
    for path in [
        format!("/v1/jobs/{id}/cancel"),
        format!("/v1/jobs/{id}/retry"),
        "/v1/queues/cleanup/pause".to_owned(),
    ] {
        let res = app.post(SUBMITTER, &path).send().await.unwrap();
        problem(res, 403).await;
    }
    let res = app
        .post(SUBMITTER, "/v1/dead-letter/replay")
        .json(&json!({"ids": []}))
        .send()
        .await
        .unwrap();
    problem(res, 403).await;
}

#[tokio::test]
async fn a_key_scoped_to_account_a_cannot_see_cancel_retry_or_list_account_b_jobs() {
    let app = spawn_app().await;
    let mine = app.submit_ok(&cleanup_body("acme")).await;
    let theirs = app.submit_ok(&cleanup_body("globex")).await;
    let dead_theirs = app.submit_ok(&cleanup_body("globex")).await;
    app.kill_job(&dead_theirs).await;

    assert_eq!(app.job(ACME, mine.as_str()).await.0, 200);
    // Another account's job does not exist for this key (404, as for a missing one).
    problem(app.get(ACME, &format!("/v1/jobs/{theirs}")).send().await.unwrap(), 404).await;
    problem(app.get(ACME, &format!("/v1/jobs/{theirs}/events")).send().await.unwrap(), 404).await;
    problem(app.post(ACME, &format!("/v1/jobs/{theirs}/cancel")).send().await.unwrap(), 404).await;
    problem(app.post(ACME, &format!("/v1/jobs/{dead_theirs}/retry")).send().await.unwrap(), 404).await;
    assert_eq!(app.store.get(&theirs).await.unwrap().unwrap().state, drover::job::JobState::Queued);

    // Listing shows only the key's account, whether or not it asks for it.
    let v: Value = app.get(ACME, "/v1/jobs").send().await.unwrap().json().await.unwrap();
    let ids: Vec<&str> = v["jobs"].as_array().unwrap().iter().map(|j| j["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [mine.as_str()]);
    problem(app.get(ACME, "/v1/jobs?account_id=globex").send().await.unwrap(), 403).await;
    let v: Value = app.get(ACME, "/v1/dead-letter").send().await.unwrap().json().await.unwrap();
    assert_eq!(v["jobs"], json!([]));

    // Replay skips what the key may not touch; submitting for another account is refused.
    let v: Value = app
        .post(ACME, "/v1/dead-letter/replay")
        .json(&json!({"ids": [dead_theirs.as_str()]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["skipped"][0]["reason"], "not found");
    problem(app.submit(ACME, &cleanup_body("globex")).await, 403).await;
    let res = app
        .post(ACME, "/v1/jobs/cleanup.csv?account_id=globex&marketplace_id=ATVPDKIKX0DER")
        .header("content-type", "text/csv")
        .body("A\n")
        .send()
        .await
        .unwrap();
    problem(res, 403).await;
    // Queue-wide views and controls span every account.
    problem(app.get(ACME, "/v1/queues").send().await.unwrap(), 403).await;
    problem(app.post(ACME, "/v1/queues/cleanup/pause").send().await.unwrap(), 403).await;
}

#[tokio::test]
async fn a_key_for_several_accounts_must_name_the_account_it_lists() {
    let app = spawn_app().await;
    let acme = app.submit_ok(&cleanup_body("acme")).await;
    app.submit_ok(&cleanup_body("globex")).await;
    app.submit_ok(&cleanup_body("initech")).await;
    let p = problem(app.get(MULTI, "/v1/jobs").send().await.unwrap(), 422).await;
    assert_eq!(fields(&p), ["account_id"]);
    let v: Value = app
        .get(MULTI, "/v1/jobs?account_id=acme")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["jobs"][0]["id"], acme.as_str());
    assert_eq!(v["jobs"].as_array().unwrap().len(), 1);
    problem(app.get(MULTI, "/v1/jobs?account_id=initech").send().await.unwrap(), 403).await;
}

#[tokio::test]
async fn concurrent_writes_over_the_burst_get_exactly_the_burst_and_a_429_each_for_the_rest() {
    let app = spawn_app_with(Durability::None, |c| {
        c.rate_limit.per_minute = 60;
        c.rate_limit.burst = 5;
    })
    .await;
    // Checks that arrive together share one call to Redis: it must still count each.
    let body = cleanup_body("acme");
    let answers = futures::future::join_all((0..40).map(|_| app.submit(SUBMITTER, &body))).await;
    let mut accepted = Vec::new();
    let mut limited = 0;
    for res in answers {
        match res.status().as_u16() {
            202 => accepted.push(res.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned()),
            429 => {
                let retry_after: u64 = res.headers()["retry-after"].to_str().unwrap().parse().unwrap();
                assert!((1..=2).contains(&retry_after), "one write per second comes back: {retry_after}");
                limited += 1;
            }
            other => panic!("a write is accepted or limited, not {other}"),
        }
    }
    assert_eq!((accepted.len(), limited), (5, 35), "the burst, and a 429 for every other");
    for id in &accepted {
        assert!(app.store.get(&id.parse().unwrap()).await.unwrap().is_some(), "{id} is stored");
    }
    assert_eq!(
        app.store.counts(drover::job::JobKind::Cleanup).await.unwrap().queued,
        5,
        "nothing else was"
    );
}

#[tokio::test]
async fn writes_over_the_rate_limit_get_429_with_retry_after_across_replicas() {
    let app = spawn_app_with(Durability::None, |c| {
        c.rate_limit.per_minute = 60;
        c.rate_limit.burst = 3;
    })
    .await;
    // A second replica on the same Redis shares the key's budget.
    let mut config = test_config(&app.redis.url());
    config.rate_limit.per_minute = 60;
    config.rate_limit.burst = 3;
    let (replica, _stop, _task) = start(config).await;
    let replica_url = format!("http://{replica}/v1/jobs");

    for _ in 0..2 {
        assert_eq!(app.submit(SUBMITTER, &cleanup_body("acme")).await.status(), 202);
    }
    let res = app
        .client
        .post(&replica_url)
        .bearer_auth(SUBMITTER)
        .json(&cleanup_body("acme"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202, "the third write is within the burst");
    let res = app
        .client
        .post(&replica_url)
        .bearer_auth(SUBMITTER)
        .json(&cleanup_body("acme"))
        .send()
        .await
        .unwrap();
    let retry_after: u64 = res.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry_after), "one write per second comes back: {retry_after}");
    problem(res, 429).await;
    problem(app.submit(SUBMITTER, &cleanup_body("acme")).await, 429).await;

    // Limits are per key, and reads are not limited.
    assert_eq!(app.submit(ADMIN, &cleanup_body("acme")).await.status(), 202);
    assert_eq!(app.get(SUBMITTER, "/v1/jobs").send().await.unwrap().status(), 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        app.submit(SUBMITTER, &cleanup_body("acme")).await.status(),
        202,
        "the budget refills"
    );
}

#[tokio::test]
async fn a_sane_request_id_is_echoed_and_anything_else_is_replaced() {
    let app = spawn_app().await;
    let res = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "client-abc.123")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "client-abc.123");
    let res = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "bad id <script>")
        .send()
        .await
        .unwrap();
    let generated = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(generated.len(), 26, "a ULID: {generated}");
    let res = app.get("nope", "/v1/jobs").header("x-request-id", "trace-me").send().await.unwrap();
    assert_eq!(problem(res, 401).await["request_id"], "trace-me");
}

#[tokio::test]
async fn the_app_refuses_to_start_without_keys_unless_in_dev_mode() {
    let redis = drover_tests::harness::RedisServer::start(Durability::None);
    let mut config = test_config(&redis.url());
    config.keys.clear();
    let err = drover_api::build(config.clone()).await.err().expect("no keys, no start");
    assert!(err.to_string().contains("api.keys is empty"), "{err}");

    config.dev_mode = true;
    let (addr, _stop, _task) = start(config).await;
    let res = reqwest::Client::new()
        .post(format!("http://{addr}/v1/queues/sync/pause"))
        .bearer_auth(drover_api::DEV_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "the documented dev key is an admin key in dev mode");
}

#[tokio::test]
async fn a_bad_configuration_is_refused_with_every_problem_named() {
    let mut config = test_config("redis://127.0.0.1:1");
    config.listen = "localhost".into();
    config.body_limit_bytes = 10;
    config.keys[0].key_sha256 = "zz".into();
    let err = drover_api::build(config).await.err().expect("invalid config").to_string();
    for needle in ["api.listen", "api.body_limit_bytes = 10", "api.keys[0] (\"admin\"): key_sha256"] {
        assert!(err.contains(needle), "{needle} not in {err}");
    }
}

/// A server whose every answer is a 307 to `to`, counting the requests it gets.
async fn redirector(to: String) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let hits = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let app = axum::Router::new().fallback(move || {
        let (to, hits) = (to.clone(), counted.clone());
        async move {
            hits.fetch_add(1, Ordering::SeqCst);
            (axum::http::StatusCode::TEMPORARY_REDIRECT, [("location", to)])
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/auth/o2/token"), hits)
}

/// L3: a 307 from the token endpoint would make a redirect-following client POST the
/// client secret and refresh token again, to wherever it points.
#[tokio::test]
async fn the_token_exchange_follows_no_redirect_with_the_credentials() {
    let sim = drover_tests::sim::spawn(drover_tests::sim::SimConfig::fast()).await.unwrap();
    let (url, hits) = redirector(sim.lwa_url()).await;
    let app = spawn_app_with(Durability::None, move |c| c.marketplace_token_url = url).await;
    let body = json!({
        "id": "acme", "seller_id": "acct-1", "marketplace_ids": [MARKETPLACE],
        "client_id": "amzn1.application-oa2-client.sim", "client_secret": "sim-client-secret",
        "refresh_token": "rt-acct-1",
    });
    let res = app.post(ADMIN, "/v1/accounts").json(&body).send().await.unwrap();
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    assert_eq!(
        hits.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the token endpoint was asked once"
    );
    assert_ne!(status, 201, "the redirect was followed to the real token endpoint: {text}");
    assert!(!text.contains("sim-client-secret") && !text.contains("127.0.0.1"), "{text}");
}

/// Sends a CSV upload's headers announcing `bytes` and `sent` bytes of its body, then
/// stalls; returns the connection.
async fn stalled_upload(app: &TestApp, key: &str, bytes: usize, sent: usize) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut raw = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST /v1/jobs/cleanup.csv?account_id=acme&marketplace_id={MARKETPLACE} HTTP/1.1\r\nHost: x\r\n\
         Authorization: Bearer {key}\r\nContent-Type: text/csv\r\nContent-Length: {bytes}\r\n\r\nsku\n"
    );
    raw.write_all(head.as_bytes()).await.unwrap();
    raw.write_all(&vec![b'a'; sent]).await.unwrap();
    raw
}

/// The status line the API answers on `raw` within 2 s (None: no answer yet).
async fn answer_within_2s(raw: &mut tokio::net::TcpStream) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; 256];
    match tokio::time::timeout(Duration::from_secs(2), raw.read(&mut buf)).await {
        Ok(Ok(n)) if n > 0 => Some(String::from_utf8_lossy(&buf[..n]).lines().next().unwrap_or_default().to_owned()),
        _ => None,
    }
}

/// Found by the hostile-tenant audit of 2026-12-05: request bodies were bounded per
/// request only, so uploads sent slowly held their size each (CSV: 10 MiB) until the
/// request timeout, and enough of them took the API past its memory. A request reserves
/// its body's bytes before it is read, from a budget for the process (one key a
/// quarter of it); one that finds no room is a 503 at once.
#[tokio::test]
async fn request_bodies_in_flight_are_bounded_for_the_process_and_for_each_key() {
    let app = spawn_app_with(Durability::None, |c| {
        c.server.max_body_bytes_in_flight = 1 << 20;
        // (no more than one body may reserve of it: seven eighths)
        (c.body_limit_bytes, c.csv_limit_bytes) = (900_000, 900_000);
    })
    .await;
    // acme's first upload holds 600 KB of the 1 MiB, stalled.
    let mut first = stalled_upload(&app, ACME_SUB, 600_000, 1000).await;
    assert_eq!(answer_within_2s(&mut first).await, None, "it waits for its body");
    // acme's second is past its quarter; globex's would take the process past its budget.
    let mut again = stalled_upload(&app, ACME_SUB, 100_000, 0).await;
    let mut other = stalled_upload(&app, GLOBEX_SUB, 600_000, 0).await;
    for raw in [&mut again, &mut other] {
        let status = answer_within_2s(raw).await;
        assert_eq!(status.as_deref(), Some("HTTP/1.1 503 Service Unavailable"), "refused at once");
    }
    // Once the stalled upload has gone, there is room again.
    drop(first);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let res = app
        .post(GLOBEX_SUB, "/v1/jobs/cleanup.csv?account_id=globex&marketplace_id=ATVPDKIKX0DER")
        .header("content-type", "text/csv")
        .body("sku\nSKU-1\n")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
}
