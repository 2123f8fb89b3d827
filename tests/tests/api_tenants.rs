//! The API under hostile tenants (issue 15): two scoped tenants, `acme-sub` and
//! `globex-sub`, and clients without a key try to learn about each other or exhaust the
//! process. Cross-tenant requests answer exactly as for things that do not exist; every
//! resource a request can hold is bounded.
use crate::api_support;

use std::time::Duration;

use api_support::*;
use futures::StreamExt;
use reqwest::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn scrape(app: &TestApp) -> String {
    let res = app.client.get(app.metrics_url()).send().await.unwrap();
    assert_eq!(res.status(), 200);
    res.text().await.unwrap()
}

/// The series lines of a Prometheus text page (no comments).
fn series(page: &str) -> Vec<&str> {
    page.lines().filter(|l| !l.is_empty() && !l.starts_with('#')).collect()
}

#[tokio::test]
async fn two_thousand_made_up_http_methods_add_no_metrics_series() {
    let app = spawn_app().await;
    let send = |method: String| {
        let req = app
            .client
            .request(Method::from_bytes(method.as_bytes()).unwrap(), app.url("/healthz"));
        async move { req.send().await.unwrap().status() }
    };
    // One made-up method and two scrapes first, so every series the rest can touch exists.
    send("XWARMUP".into()).await;
    scrape(&app).await;
    let before = scrape(&app).await;
    let statuses: Vec<_> = futures::stream::iter(0..2000)
        .map(|i| send(format!("X{i:04}{}", "Q".repeat(100))))
        .buffer_unordered(16)
        .collect()
        .await;
    assert!(statuses.iter().all(|s| s.as_u16() == 405), "a made-up method is not allowed");
    let after = scrape(&app).await;
    assert_eq!(
        series(&before).len(),
        series(&after).len(),
        "the number of series must not grow with made-up methods"
    );
    assert!(!after.contains("X0001"), "no made-up method is a label");
    assert!(after.contains("method=\"other\""), "made-up methods are counted as other");
}

/// Read until the server closes the connection (EOF or reset); how long that took.
async fn wait_closed(mut conn: TcpStream, within: Duration) -> Result<Duration, &'static str> {
    let started = std::time::Instant::now();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(within, async {
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return started.elapsed(),
                Ok(_) => {} // a response, or a 408; the close follows
            }
        }
    })
    .await
    .map_err(|_| "the server kept the connection open")
}

#[tokio::test]
async fn two_thousand_silent_slow_and_idle_connections_are_closed_and_a_new_request_is_still_served() {
    let app = spawn_app_with(drover_tests::harness::Durability::None, |c| {
        c.server.header_read_timeout_ms = 500;
        c.server.max_connections = 4096;
        // every connection comes from 127.0.0.1: this test is about timeouts, not the cap
        c.server.max_connections_per_client = 0;
    })
    .await;
    let mut conns = Vec::new();
    for i in 0..2000 {
        let mut conn = TcpStream::connect(app.addr).await.unwrap();
        match i % 3 {
            0 => {}                                                             // says nothing at all
            1 => conn.write_all(b"GET /healthz HTTP/1.1\r\nHo").await.unwrap(), // slowloris
            _ => {
                // a served request, then an idle keep-alive connection
                conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
                let mut buf = [0u8; 1024];
                let n = conn.read(&mut buf).await.unwrap();
                assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
            }
        }
        conns.push(conn);
    }
    let closed = futures::future::join_all(conns.into_iter().map(|c| wait_closed(c, Duration::from_secs(5)))).await;
    let kept = closed.iter().filter(|c| c.is_err()).count();
    assert_eq!(kept, 0, "{kept} of 2000 connections were kept open");
    let res = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn connections_over_the_cap_wait_until_idle_ones_are_closed() {
    let app = spawn_app_with(drover_tests::harness::Durability::None, |c| {
        c.server.header_read_timeout_ms = 1500;
        c.server.max_connections = 4;
    })
    .await;
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(TcpStream::connect(app.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let fresh = reqwest::Client::new();
    let over_cap = fresh.get(app.url("/healthz")).timeout(Duration::from_millis(300)).send().await;
    assert!(over_cap.is_err(), "a fifth connection is not served while four are held");
    for conn in idle {
        wait_closed(conn, Duration::from_secs(5)).await.unwrap();
    }
    let res = fresh.get(app.url("/healthz")).timeout(Duration::from_secs(5)).send().await.unwrap();
    assert_eq!(res.status(), 200);
}

/// A connection to the app from `source` (another loopback address than the tests' own
/// client, so the two count as different clients).
async fn connect_from(source: &str, app: &TestApp) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    socket.connect(app.addr).await.unwrap()
}

/// How long a `GET /healthz` from the tests' own client (127.0.0.1) took to be answered
/// 200, if it was within `limit`.
async fn served_within(app: &TestApp, limit: Duration) -> Result<Duration, String> {
    let started = std::time::Instant::now();
    match reqwest::Client::new().get(app.url("/healthz")).timeout(limit).send().await {
        Ok(r) if r.status() == 200 => Ok(started.elapsed()),
        other => Err(format!("{other:?}")),
    }
}

/// Found by this stop's regression audit (N1): one client could hold every connection
/// slot (here 512 silent connections), so nobody else was served until the header
/// timeout closed them. One client address now holds at most its share of the slots.
#[tokio::test]
async fn one_client_address_cannot_hold_every_connection_slot() {
    let app = spawn_app_with(drover_tests::harness::Durability::None, |c| {
        c.server.max_connections = 512;
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..600 {
        held.push(connect_from("127.0.0.2", &app).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let took = served_within(&app, Duration::from_secs(5))
        .await
        .unwrap_or_else(|e| panic!("another client was not served while one address held 600 connections: {e}"));
    assert!(took < Duration::from_secs(2), "served after {took:?}");
    drop(held);
}

/// Found by this stop's regression audit (N1): a client that sends requests and never
/// reads the answers kept its connection for good (the header timeout never starts while
/// a response is being written). A response that makes no progress for
/// `api.server.write_timeout_ms` (30 s) ends the connection.
#[tokio::test]
async fn a_client_that_never_reads_its_answers_loses_its_connection() {
    let app = spawn_app_with(drover_tests::harness::Durability::None, |c| {
        c.server.max_connections = 2;
    })
    .await;
    let requests = "GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n".repeat(200);
    let mut stuck = Vec::new();
    for _ in 0..2 {
        let mut conn = connect_from("127.0.0.2", &app).await;
        conn.write_all(requests.as_bytes()).await.unwrap();
        stuck.push(conn);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let took = served_within(&app, Duration::from_secs(45))
        .await
        .unwrap_or_else(|e| panic!("the slots held by connections that never read were never freed: {e}"));
    eprintln!("served {} ms after two stuck connections held every slot", took.as_millis());
    drop(stuck);
}

/// Found by the hostile-tenant audit of 2026-12-02 (N6): too many or too large request
/// headers were refused by hyper itself with a bare 431, no problem body and no request
/// id, the one error a client could get in another shape.
#[tokio::test]
async fn too_many_or_too_large_request_headers_get_a_431_problem_with_a_request_id() {
    let app = spawn_app().await;
    let many = (0..150).fold(app.get(ADMIN, "/v1/jobs"), |req, i| req.header(format!("x-pad-{i}"), "1"));
    let large = app.get(ADMIN, "/v1/jobs").header("x-pad", "a".repeat(100 * 1024));
    for (what, req) in [("150 headers", many), ("a 100 KiB header", large)] {
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 431, "{what}");
        assert_eq!(res.headers()["content-type"], "application/problem+json", "{what}");
        let rid = res.headers()["x-request-id"].to_str().unwrap().to_owned();
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["status"], 431, "{what}: {body}");
        assert_eq!(body["request_id"], rid.as_str(), "{what}: {body}");
        assert!(!body.to_string().contains("aaaa"), "{what}: the headers are not echoed: {body}");
    }
    let res = app.get(ADMIN, "/v1/jobs").send().await.unwrap();
    assert_eq!(res.status(), 200, "an ordinary request on a new connection is still served");
    // Found by the audits of 2026-12-06: the request metrics sat inside the header check
    // (and the panic catcher), so these refusals were in neither the access log nor
    // `http_requests_total`, and the 5xx alert never saw a handler that panics.
    let metrics = app.client.get(app.metrics_url()).send().await.unwrap().text().await.unwrap();
    let refused = metrics
        .lines()
        .find(|l| l.starts_with("http_requests_total{") && l.contains("status=\"431\""))
        .unwrap_or_else(|| panic!("the 431s are counted: {metrics}"));
    assert!(refused.ends_with(" 2"), "{refused}");
}

/// A made-up id of the same kind, for a job that does not exist.
fn missing_id(kind: &str) -> String {
    format!("{kind}_{}", ulid::Ulid::generate())
}

/// Status, headers and body of a response, as text, for leak checks.
async fn everything(res: reqwest::Response) -> (u16, String, Value) {
    let status = res.status().as_u16();
    let headers = format!("{:?}", res.headers());
    let body: Value = res.json().await.unwrap_or(Value::Null);
    (status, headers, body)
}

/// A 404 for another tenant's thing must read exactly as one for a thing that does not
/// exist: same status, type, title, and detail once the asked-for id is swapped.
async fn assert_same_404(theirs: reqwest::Response, their_id: &str, missing: reqwest::Response, missing_id: &str) {
    let (s1, h1, b1) = everything(theirs).await;
    let (s2, _, b2) = everything(missing).await;
    assert_eq!((s1, s2), (404, 404), "{b1} / {b2}");
    for field in ["type", "title", "status"] {
        assert_eq!(b1[field], b2[field], "{field}: {b1} / {b2}");
    }
    let d1 = b1["detail"].as_str().unwrap().replace(their_id, "<id>");
    let d2 = b2["detail"].as_str().unwrap().replace(missing_id, "<id>");
    assert_eq!(d1, d2);
    // Beyond repeating what was asked, nothing names the other tenant.
    assert_no_foreign(&format!("{h1}{b1}").replace(their_id, "<id>"));
}

/// Nothing of globex's may show in what an acme key is told.
fn assert_no_foreign(text: &str) {
    assert!(!text.contains("globex"), "another tenant's account leaked: {text}");
}

#[tokio::test]
async fn another_tenants_job_answers_every_by_id_request_exactly_like_a_missing_one() {
    let app = spawn_app().await;
    let theirs = app.submit(GLOBEX_SUB, &cleanup_body("globex")).await;
    assert_eq!(theirs.status(), 202);
    let theirs = theirs.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let missing = missing_id("cleanup");
    for key in [ACME_SUB, ACME] {
        for suffix in ["", "/events", "/items"] {
            let a = app.get(key, &format!("/v1/jobs/{theirs}{suffix}")).send().await.unwrap();
            let b = app.get(key, &format!("/v1/jobs/{missing}{suffix}")).send().await.unwrap();
            assert_same_404(a, &theirs, b, &missing).await;
        }
    }
    for action in ["cancel", "retry"] {
        let a = app.post(ACME, &format!("/v1/jobs/{theirs}/{action}")).send().await.unwrap();
        let b = app.post(ACME, &format!("/v1/jobs/{missing}/{action}")).send().await.unwrap();
        assert_same_404(a, &theirs, b, &missing).await;
    }
    let res = app
        .post(ACME, "/v1/dead-letter/replay")
        .json(&json!({"ids": [theirs, missing]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    let reasons: Vec<&str> = v["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons, ["not found", "not found"], "{v}");
    assert_eq!(
        app.job(ADMIN, &theirs).await.1["state"],
        "queued",
        "the other tenant's job is untouched"
    );
}

#[tokio::test]
async fn another_tenants_account_answers_like_a_missing_one() {
    let app = spawn_app().await;
    for path in ["/v1/accounts/{}", "/v1/accounts/{}/limits"] {
        let a = app.get(ACME, &path.replace("{}", "globex")).send().await.unwrap();
        let b = app.get(ACME, &path.replace("{}", "nosuch")).send().await.unwrap();
        // A fresh database: neither exists, so what matters is that scope adds no other answer.
        assert_same_404(a, "globex", b, "nosuch").await;
    }
}

fn schedule(account: &str, cron: &str) -> Value {
    json!({"cron": cron, "kind": "cleanup", "payload": {"account_id": account, "marketplace_id": MARKETPLACE, "skus": ["SKU-1"]}})
}

#[tokio::test]
async fn two_tenants_each_have_a_schedule_named_daily_without_learning_of_each_other() {
    let app = spawn_app().await;
    let put = |key: &'static str, account: &'static str, cron: &'static str| {
        app.client
            .put(app.url("/v1/schedules/daily"))
            .bearer_auth(key)
            .json(&schedule(account, cron))
            .send()
    };
    assert_eq!(put(GLOBEX_SUB, "globex", "0 3 * * *").await.unwrap().status(), 201);

    let a = app.get(ACME_SUB, "/v1/schedules/daily").send().await.unwrap();
    let b = app.get(ACME_SUB, "/v1/schedules/nightly").send().await.unwrap();
    assert_same_404(a, "daily", b, "nightly").await;
    let del = app
        .client
        .delete(app.url("/v1/schedules/daily"))
        .bearer_auth(ACME_SUB)
        .send()
        .await
        .unwrap();
    let (status, h, body) = everything(del).await;
    assert_eq!(status, 404);
    assert_no_foreign(&format!("{h}{body}"));

    // acme takes the same name: a new schedule of its own, not a replacement of globex's.
    assert_eq!(put(ACME_SUB, "acme", "0 4 * * *").await.unwrap().status(), 201);
    assert_eq!(put(ACME_SUB, "acme", "0 5 * * *").await.unwrap().status(), 200);
    let mine: Value = app.get(ACME_SUB, "/v1/schedules/daily").send().await.unwrap().json().await.unwrap();
    assert_eq!(
        (mine["cron"].as_str(), mine["account_id"].as_str()),
        (Some("0 5 * * *"), Some("acme"))
    );
    let theirs: Value = app
        .get(GLOBEX_SUB, "/v1/schedules/daily")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (theirs["cron"].as_str(), theirs["account_id"].as_str()),
        (Some("0 3 * * *"), Some("globex"))
    );
    let list = app.get(ACME_SUB, "/v1/schedules").send().await.unwrap().text().await.unwrap();
    assert_no_foreign(&list);

    // A key that sees both must say which one it means.
    let p = problem(app.get(ADMIN, "/v1/schedules/daily").send().await.unwrap(), 422).await;
    assert_eq!(fields(&p), ["account_id"]);
    let res = app.get(ADMIN, "/v1/schedules/daily?account_id=globex").send().await.unwrap();
    assert_eq!(res.json::<Value>().await.unwrap()["cron"], "0 3 * * *");

    let del = app
        .client
        .delete(app.url("/v1/schedules/daily"))
        .bearer_auth(ACME_SUB)
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 204);
    let theirs = app.get(GLOBEX_SUB, "/v1/schedules/daily").send().await.unwrap();
    assert_eq!(theirs.status(), 200, "deleting acme's daily leaves globex's");
}

#[tokio::test]
async fn acting_for_another_tenants_account_is_refused_without_naming_it_back() {
    let app = spawn_app().await;
    let p = problem(app.submit(ACME_SUB, &cleanup_body("globex")).await, 403).await;
    assert_no_foreign(&p.to_string());
    let res = app
        .client
        .put(app.url("/v1/schedules/daily"))
        .bearer_auth(ACME_SUB)
        .json(&schedule("globex", "0 3 * * *"))
        .send()
        .await
        .unwrap();
    assert_no_foreign(&problem(res, 403).await.to_string());
    let p = problem(app.get(ACME_SUB, "/v1/jobs?account_id=globex").send().await.unwrap(), 403).await;
    assert_no_foreign(&p.to_string());
}

/// A sync job that stays `scheduled` for a year: its event stream never ends by itself.
async fn job_that_never_ends(app: &TestApp, key: &str, account: &str) -> String {
    let run_at = (chrono::Utc::now() + chrono::Duration::days(360)).to_rfc3339();
    let mut body = sync_body(account);
    body["run_at"] = json!(run_at);
    let res = app.submit(key, &body).await;
    assert_eq!(res.status(), 202);
    res.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned()
}

async fn redis_commands(app: &TestApp) -> u64 {
    let mut conn = app.store.connection();
    let info: String = redis::cmd("INFO").arg("stats").query_async(&mut conn).await.unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("total_commands_processed:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Found by the hostile-tenant audit of 2026-12-06: the stream slot was taken (ending
/// the oldest stream of the key holding the most, at the process cap) before the job was
/// looked up, so a key that never held a stream could end another key's streams one by
/// one with made-up ids, each answered 404. A request answered 404 ends no stream.
#[tokio::test]
async fn a_stream_request_answered_404_ends_nobody_elses_stream() {
    let app = spawn_app_with(drover_tests::harness::Durability::None, |c| {
        c.streams.max_open_per_key = 4;
        c.streams.max_open = 4;
    })
    .await;
    let id = job_that_never_ends(&app, ACME_SUB, "acme").await;
    let mut open = Vec::new();
    for _ in 0..4 {
        let res = app.get(ACME_SUB, &format!("/v1/jobs/{id}/events")).send().await.unwrap();
        assert_eq!(res.status(), 200);
        open.push(res);
    }
    for _ in 0..5 {
        let path = format!("/v1/jobs/{}/events", missing_id("cleanup"));
        problem(app.get(GLOBEX_SUB, &path).send().await.unwrap(), 404).await;
    }
    for (i, mut stream) in open.into_iter().enumerate() {
        let ended = tokio::time::timeout(Duration::from_millis(1500), async {
            while let Some(chunk) = stream.chunk().await.unwrap() {
                drop(chunk);
            }
        })
        .await;
        assert!(ended.is_err(), "stream {i} of acme ended for another key's 404s");
    }
}

#[tokio::test]
async fn two_hundred_event_streams_on_one_job_stop_at_the_per_key_cap_and_the_process_cap_is_shared_fairly() {
    let app = spawn_app_with(drover_tests::harness::Durability::None, |c| {
        c.streams.max_open_per_key = 50;
        c.streams.max_open = 60;
    })
    .await;
    let id = job_that_never_ends(&app, ACME_SUB, "acme").await;
    let path = format!("/v1/jobs/{id}/events");
    let mut open = Vec::new();
    let mut refused = Vec::new();
    for _ in 0..200 {
        let res = app.get(ACME_SUB, &path).send().await.unwrap();
        if res.status() == 200 {
            open.push(res);
        } else {
            refused.push(res);
        }
    }
    assert_eq!(open.len(), 50, "the per-key cap holds");
    let first = refused.remove(0);
    assert!(first.headers().get("retry-after").is_some());
    let p = problem(first, 429).await;
    assert_eq!(p["type"], "urn:drover:problem:too-many-streams");
    assert!(refused.iter().all(|r| r.status() == 429));

    let before = redis_commands(&app).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let per_second = (redis_commands(&app).await - before) / 2;
    println!("50 open streams polling every 50 ms: {per_second} Redis commands/s");
    // One poll shared by the 50 streams: 20 summary reads a second and one read of why
    // the job waits, not 50 of each (which would be over 1,000 commands a second).
    assert!(per_second < 100, "{per_second} Redis commands/s for 50 streams on one job");

    // Another key has its own cap, under the process cap.
    let mut others = Vec::new();
    for _ in 0..10 {
        let res = app.get(ACME, &path).send().await.unwrap();
        assert_eq!(res.status(), 200);
        others.push(res);
    }
    // The process is full (60). A key with no stream is not refused for what other keys
    // hold: the key holding the most gives up its oldest stream, which ends.
    let res = app.get(MULTI, &path).send().await.unwrap();
    assert_eq!(res.status(), 200, "a key with none gets one at the process cap");
    others.push(res);
    let mut oldest = open.remove(0);
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(chunk) = oldest.chunk().await.unwrap() {
            drop(chunk);
        }
    })
    .await;
    assert!(ended.is_ok(), "the oldest stream of the key holding the most ends");
    // The key holding the most, under its own cap, is refused about itself alone.
    let p = problem(app.get(ACME_SUB, &path).send().await.unwrap(), 429).await;
    let detail = p["detail"].as_str().unwrap();
    assert!(detail.contains("this key has 49") && !detail.contains("server"), "{p}");

    // A stream the client closes frees its slot.
    drop(open.pop());
    let reopened = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let res = app.get(ACME_SUB, &path).send().await.unwrap();
            if res.status() == 200 {
                return res;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("a closed stream frees its slot");
    drop(reopened);
}

#[tokio::test]
async fn an_event_stream_poll_never_reads_the_payload() {
    let app = spawn_app().await;
    let id = job_that_never_ends(&app, ACME_SUB, "acme").await;
    let mut conn = app.store.connection();
    // Watch every command Redis runs while one stream is open.
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("slowlog-log-slower-than")
        .arg(0)
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("slowlog-max-len")
        .arg(10000)
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = redis::cmd("SLOWLOG").arg("RESET").query_async(&mut conn).await.unwrap();
    let res = app.get(ACME_SUB, &format!("/v1/jobs/{id}/events")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(res);
    let log: Vec<redis::Value> = redis::cmd("SLOWLOG").arg("GET").arg(10000).query_async(&mut conn).await.unwrap();
    let commands: Vec<Vec<String>> = log
        .iter()
        .filter_map(|entry| match entry {
            redis::Value::Array(parts) => parts.get(3).map(strings),
            _ => None,
        })
        .collect();
    let job_key = format!("job:{id}");
    let on_job: Vec<&Vec<String>> = commands.iter().filter(|c| c.iter().any(|a| a.ends_with(&job_key))).collect();
    assert!(
        on_job.iter().any(|c| c[0].eq_ignore_ascii_case("HMGET")),
        "the stream polls the job: {on_job:?}"
    );
    for c in on_job {
        assert!(
            !c[0].eq_ignore_ascii_case("HGETALL"),
            "a poll read the whole job, payload included: {c:?}"
        );
    }
}

/// The strings in a Redis reply, flattened.
fn strings(v: &redis::Value) -> Vec<String> {
    match v {
        redis::Value::BulkString(b) => vec![String::from_utf8_lossy(b).into_owned()],
        redis::Value::SimpleString(s) => vec![s.clone()],
        redis::Value::Array(a) => a.iter().flat_map(strings).collect(),
        _ => Vec::new(),
    }
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// `n` distinct 40-character SKUs.
fn skus(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("SKU-{i:036}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_sixty_cleanup_jobs_of_100_000_skus_reads_and_returns_no_payload() {
    use drover::queue::{JobStore, NewJob};
    let app = spawn_app().await;
    // Stored directly, as jobs from before the payload cap would be.
    let payload = drover::job::JobPayload::from_json(
        drover::job::JobKind::Cleanup,
        json!({"account_id": "acme", "marketplace_id": MARKETPLACE, "skus": skus(100_000)}),
    )
    .unwrap();
    for _ in 0..6 {
        let batch: Vec<NewJob> = (0..10).map(|_| NewJob::new(payload.clone())).collect();
        for r in app.store.enqueue_bulk(batch).await.unwrap() {
            r.unwrap();
        }
    }
    drop(payload);
    let before = rss_kib();
    let res = app.get(ACME, "/v1/jobs?kind=cleanup&limit=1000").send().await.unwrap();
    assert_eq!(res.status(), 200);
    let body = res.bytes().await.unwrap();
    let after = rss_kib();
    println!(
        "listing 60 jobs of 100,000 SKUs: {} bytes answered; API process RSS {} MiB before, {} MiB after",
        body.len(),
        before / 1024,
        after / 1024
    );
    let page: Value = serde_json::from_slice(&body).unwrap();
    let jobs = page["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 60);
    assert!(body.len() < 60 * 2048, "a listing carries no payload: {} bytes", body.len());
    for j in jobs {
        assert!(j.get("payload").is_none() && j.get("result").is_none(), "{j}");
        assert!(j["payload_bytes"].as_u64().unwrap() > 4_000_000, "{j}");
    }
    // The whole job, payload included, is one request away.
    let id = jobs[0]["id"].as_str().unwrap();
    let (status, job) = app.job(ACME, id).await;
    assert_eq!(status, 200);
    assert_eq!(job["payload"]["skus"].as_array().unwrap().len(), 100_000);
}

#[tokio::test]
async fn a_payload_over_the_stored_cap_is_a_413_saying_so() {
    let app = spawn_app().await;
    // 30,000 SKUs: within the CSV row cap, about 1.3 MB once stored.
    let csv = skus(30_000).join("\n");
    let res = app
        .post(
            ACME_SUB,
            &format!("/v1/jobs/cleanup.csv?account_id=acme&marketplace_id={MARKETPLACE}"),
        )
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .unwrap();
    let p = problem(res, 413).await;
    assert!(p["detail"].as_str().unwrap().contains("payload"), "{p}");
    let v: Value = app.get(ACME_SUB, "/v1/jobs").send().await.unwrap().json().await.unwrap();
    assert_eq!(v["jobs"], json!([]), "nothing was stored");
}

/// What a cursor says to whoever base64-decodes it.
fn decoded(cursor: &str) -> String {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(cursor).unwrap();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// `n` dead cleanup jobs of `account`, made through the store as workers would.
async fn dead_jobs(app: &TestApp, account: &str, n: usize) -> Vec<drover::job::JobId> {
    use drover::queue::{JobStore, NewJob, SettleAction, Settlement};
    let jobs: Vec<NewJob> = (0..n).map(|_| NewJob::new(cleanup_payload(account))).collect();
    let mut ids = Vec::new();
    for chunk in jobs.chunks(500) {
        for r in app.store.enqueue_bulk(chunk.to_vec()).await.unwrap() {
            ids.push(r.unwrap().id);
        }
    }
    let mut left = n;
    while left > 0 {
        let fetched = app
            .store
            .fetch(drover::job::JobKind::Cleanup, "test-worker", 200, Duration::from_secs(60))
            .await
            .unwrap();
        let settlements: Vec<Settlement> = fetched
            .jobs
            .into_iter()
            .map(|j| Settlement {
                id: j.id,
                token: j.token,
                action: SettleAction::Dead(drover::job::ErrorInfo {
                    class: drover::job::ErrorClass::Permanent,
                    message: "no".into(),
                }),
                attempt: None,
            })
            .collect();
        assert!(!settlements.is_empty(), "every job was ready");
        left -= settlements.len();
        app.store.settle(drover::job::JobKind::Cleanup, &settlements).await.unwrap();
    }
    ids
}

#[tokio::test]
async fn a_cursor_shows_no_job_id_and_works_only_for_the_key_and_filter_it_was_made_for() {
    let app = spawn_app().await;
    let mine = dead_jobs(&app, "acme", 1).await;
    // Newer than acme's, and more than one page's scan cap of them.
    let theirs = dead_jobs(&app, "globex", 2100).await;
    let mut cursor = None;
    let mut seen = Vec::new();
    for _ in 0..10 {
        let path = match &cursor {
            None => "/v1/dead-letter?kind=cleanup&limit=1".to_owned(),
            Some(c) => format!("/v1/dead-letter?kind=cleanup&limit=1&cursor={c}"),
        };
        let res = app.get(ACME, &path).send().await.unwrap();
        assert_eq!(res.status(), 200);
        let page: Value = res.json().await.unwrap();
        assert_no_foreign(&page.to_string());
        seen.extend(
            page["jobs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|j| j["id"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            None => break,
            Some(c) => {
                let text = decoded(c);
                for id in theirs.iter().chain(&mine) {
                    assert!(!text.contains(id.as_str()), "a cursor shows a job id: {text}");
                }
                cursor = Some(c.to_owned());
            }
        }
    }
    assert_eq!(seen, [mine[0].as_str()], "following the cursors still finds acme's job");

    // Replayed with another key, or with another filter: refused, not followed. (A second
    // acme job makes a next page: acme's listing walks only acme's own index.)
    dead_jobs(&app, "acme", 1).await;
    let first: Value = app
        .get(ACME, "/v1/dead-letter?kind=cleanup&limit=1")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let c = first["next_cursor"].as_str().expect("a next page").to_owned();
    for (key, path) in [
        (MULTI, format!("/v1/dead-letter?kind=cleanup&limit=1&account_id=acme&cursor={c}")),
        (ACME, format!("/v1/dead-letter?kind=sync&limit=1&cursor={c}")),
        (ACME, format!("/v1/jobs?kind=cleanup&limit=1&cursor={c}")),
    ] {
        let p = problem(app.get(key, &path).send().await.unwrap(), 422).await;
        assert_eq!(fields(&p), ["cursor"], "{path}");
    }
}

#[tokio::test]
async fn a_crafted_cursor_is_a_422_on_cursor_not_a_store_outage() {
    let app = spawn_app().await;
    // {"positions":[["sync","abc",""]]}: a score Redis refuses.
    let res = app
        .get(ACME, "/v1/jobs?cursor=eyJwb3NpdGlvbnMiOltbInN5bmMiLCJhYmMiLCIiXV19")
        .send()
        .await
        .unwrap();
    let p = problem(res, 422).await;
    assert_eq!(fields(&p), ["cursor"]);
}

fn base36(mut n: usize, width: usize) -> String {
    let digits = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut out = vec![b'0'; width];
    for slot in out.iter_mut().rev() {
        *slot = digits[n % 36];
        n /= 36;
    }
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn a_huge_marketplace_list_is_refused_before_any_per_element_work() {
    let app = spawn_app().await;
    let ids: Vec<String> = (0..145_000).map(|i| base36(i, 4)).collect();
    let body = |id: &str| {
        json!({"id": id, "seller_id": "S1", "marketplace_ids": ids, "client_id": "c",
               "client_secret": "s", "refresh_token": "r", "skip_validation": true})
    };
    // Another tenant's account: refused for the key's scope before any field is looked
    // at (the review's M5: "check scope first"), saying nothing of that tenant.
    let res = app
        .post(ACME_SUB, "/v1/accounts")
        .json(&body("globex"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .unwrap();
    let p = problem(res, 403).await;
    assert_no_foreign(&p.to_string());
    // In scope: refused on the count, naming the field.
    let res = app
        .post(ADMIN, "/v1/accounts")
        .json(&body("acme"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .unwrap();
    let p = problem(res, 422).await;
    assert_eq!(fields(&p), ["marketplace_ids"], "{p}");
    assert!(p["detail"].as_str().unwrap().contains("at most 20"), "{p}");
}

#[tokio::test]
async fn a_key_over_its_read_rate_gets_429_with_retry_after_and_other_keys_are_unaffected() {
    let app = spawn_app_with(drover_tests::harness::Durability::None, |c| {
        c.read_rate_limit.per_minute = 60;
        c.read_rate_limit.burst = 5;
    })
    .await;
    let mut statuses = Vec::new();
    for _ in 0..20 {
        let res = app.get(ACME, "/v1/jobs?state=queued").send().await.unwrap();
        statuses.push(res.status().as_u16());
        if res.status() == 429 {
            assert!(res.headers().get("retry-after").is_some());
            let p = problem(res, 429).await;
            assert!(!p.to_string().contains("globex"), "{p}");
            let detail = p["detail"].as_str().unwrap_or_default();
            assert!(
                detail.contains("requests") && !detail.contains("write"),
                "a read is not a write: {p}"
            );
            break;
        }
    }
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    let other = app.get(GLOBEX_SUB, "/v1/jobs?state=queued").send().await.unwrap();
    assert_eq!(other.status(), 200, "another key has its own budget");
}

/// `op` (replay or discard) of one of acme's dead cleanups that timed out, by filter.
async fn timeouts_of_acme(app: &TestApp, op: &str) -> reqwest::Response {
    app.post(ACME, &format!("/v1/dead-letter/{op}"))
        .json(&json!({"filter": {"kind": "cleanup", "error_class": "timeout"}, "limit": 1}))
        .send()
        .await
        .unwrap()
}

/// An app whose keys have a budget of 30 reads (60 a minute) and whose account `acme`
/// holds 3,000 queued cleanups, none of them dead: a filter on dead jobs walks them all.
async fn app_with_3000_queued_acme_jobs_and_30_reads() -> TestApp {
    use drover::queue::{JobStore, NewJob};
    let app = spawn_app_with(drover_tests::harness::Durability::None, |c| {
        c.read_rate_limit.per_minute = 60;
        c.read_rate_limit.burst = 30;
        c.jobs.max_unfinished_per_account = 1_000_000;
    })
    .await;
    for _ in 0..3 {
        let batch: Vec<NewJob> = (0..1000).map(|_| NewJob::new(cleanup_payload("acme"))).collect();
        for r in app.store.enqueue_bulk(batch).await.unwrap() {
            r.unwrap();
        }
    }
    app
}

/// Finding of the second hostile-tenant audit of 2026-12-06: a filtered listing that
/// matches little walks up to 2,000 entries a kind (reading each one's record) and was
/// charged one read, so a key's read budget bought seconds of Redis a second. A page is
/// charged a read for every `ENTRIES_PER_READ` entries it walked past the first ones.
#[tokio::test]
async fn a_filtered_listing_that_walks_thousands_of_entries_is_charged_for_them() {
    let app = app_with_3000_queued_acme_jobs_and_30_reads().await;
    // None of acme's 3,000 jobs is dead: each page walks 2,000 of them and shows none.
    let mut served = 0;
    for _ in 0..30 {
        let res = app.get(ACME, "/v1/jobs?state=dead&limit=100").send().await.unwrap();
        if res.status() == 429 {
            assert!(res.headers().get("retry-after").is_some());
            problem(res, 429).await;
            break;
        }
        assert_eq!(res.status(), 200);
        let page: Value = res.json().await.unwrap();
        assert!(page["jobs"].as_array().unwrap().is_empty(), "{page}");
        assert!(page["next_cursor"].is_string(), "the walk goes on: {page}");
        served += 1;
    }
    assert!(
        (1..=5).contains(&served),
        "a budget of 30 reads pays for a few pages walking 2,000 entries each, not 30: {served} served"
    );
    // A listing that walks little costs one read: another key's 25 are all served.
    for i in 0..25 {
        let res = app.get(MULTI, "/v1/jobs?account_id=globex&state=dead").send().await.unwrap();
        assert_eq!(res.status(), 200, "cheap listing {i}");
    }
}

/// Hostile-tenant audit of 2026-12-06 (third): a listing's walk is charged once it is
/// done, and checks that arrive together are let through at once, so a burst of such
/// listings sent together all walked on one read each before any charge landed (30 of
/// 30 here; 256 at once could walk 15 million records). A key's walks take turns, and one
/// that finds its key owing for the walks before it is refused before it walks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filtered_listings_sent_all_at_once_are_charged_before_most_of_them_walk() {
    let app = app_with_3000_queued_acme_jobs_and_30_reads().await;
    let listings = (0..30).map(|_| async {
        let res = app.get(ACME, "/v1/jobs?state=dead&limit=100").send().await.unwrap();
        let status = res.status().as_u16();
        if status == 429 {
            assert!(res.headers().get("retry-after").is_some());
            problem(res, 429).await;
        }
        status
    });
    let statuses = futures::future::join_all(listings).await;
    let served = statuses.iter().filter(|s| **s == 200).count();
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 429),
        "each walked or was refused: {statuses:?}"
    );
    assert!(
        (1..=5).contains(&served),
        "30 listings walking 2,000 entries each, sent at once on a budget of 30 reads: {served} walked"
    );
}

/// Hostile-tenant audit of 2026-12-06 (third): a dead-letter replay or discard by filter
/// walks up to 3 pages of 4,000 entries a kind and was charged nothing for it (one write
/// of the key's budget for the request), so a key walked hundreds of thousands of records a
/// second. It is charged like a listing, and refused while its key owes for walks.
#[tokio::test]
async fn a_dead_letter_action_by_filter_is_charged_for_the_entries_it_walks() {
    let app = app_with_3000_queued_acme_jobs_and_30_reads().await;
    let mut served = 0;
    for i in 0..30 {
        let op = if i % 2 == 0 { "replay" } else { "discard" };
        let res = timeouts_of_acme(&app, op).await;
        if res.status() == 429 {
            assert!(res.headers().get("retry-after").is_some());
            problem(res, 429).await;
            break;
        }
        assert_eq!(res.status(), 200, "{op}");
        served += 1;
    }
    assert!(
        (1..=5).contains(&served),
        "a budget of 30 reads pays for a few selections walking 3,000 entries each, not 30: {served} served"
    );
    // Another tenant's key is not held back by acme's walks.
    let res = app.get(MULTI, "/v1/jobs?account_id=globex&state=dead").send().await.unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_scoped_key_hammering_filtered_listings_beside_100_000_foreign_jobs_never_sees_them_or_stops_another_tenants_enqueues() {
    use drover::queue::{JobStore, NewJob};
    use std::sync::atomic::{AtomicBool, Ordering};
    let app = spawn_app_with(drover_tests::harness::Durability::None, |c| {
        // The enqueuing tenant's 300 requests stay inside its write budget, and its
        // account, given 100,000 jobs straight into the store, under its cap.
        c.rate_limit.per_minute = 60_000;
        c.rate_limit.burst = 1_000;
        c.jobs.max_unfinished_per_account = 1_000_000;
    })
    .await;
    for _ in 0..100 {
        let batch: Vec<NewJob> = (0..1000).map(|_| NewJob::new(cleanup_payload("globex"))).collect();
        for r in app.store.enqueue_bulk(batch).await.unwrap() {
            r.unwrap();
        }
    }
    for _ in 0..3 {
        assert_eq!(app.submit(ACME_SUB, &cleanup_body("acme")).await.status(), 202);
    }
    let app = std::sync::Arc::new(app);
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let hammers: Vec<_> = (0..8)
        .map(|i| {
            let (app, stop) = (app.clone(), stop.clone());
            tokio::spawn(async move {
                let filters = [
                    "state=queued",
                    "state=dead",
                    "state=succeeded",
                    "kind=cleanup&state=running",
                    "kind=cleanup",
                ];
                let (mut served, mut refused) = (0u64, 0u64);
                let mut n = i;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let res = app
                        .get(ACME, &format!("/v1/jobs?{}&limit=100", filters[n % filters.len()]))
                        .send()
                        .await
                        .unwrap();
                    match res.status().as_u16() {
                        200 => {
                            served += 1;
                            let page: Value = res.json().await.unwrap();
                            for j in page["jobs"].as_array().unwrap() {
                                assert_eq!(j["account_id"], "acme", "a scoped listing shows only its account: {j}");
                            }
                        }
                        429 => {
                            refused += 1;
                            let wait = res.headers()["retry-after"].to_str().unwrap().parse::<u64>().unwrap();
                            tokio::time::sleep(Duration::from_millis(100).min(Duration::from_secs(wait))).await;
                        }
                        other => panic!("listing answered {other}"),
                    }
                }
                (served, refused)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for _ in 0..300 {
        let t = std::time::Instant::now();
        let res = app.submit(GLOBEX_SUB, &cleanup_body("globex")).await;
        latencies.push(t.elapsed());
        assert_eq!(res.status(), 202, "the other tenant's enqueue is accepted");
    }
    stop.store(true, Ordering::Relaxed);
    let (mut served, mut refused) = (0, 0);
    for h in hammers {
        let (s, r) = h.await.unwrap();
        served += s;
        refused += r;
    }
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)].as_secs_f64() * 1000.0;
    println!(
        "beside 100,000 foreign jobs and 8 listing loops of a scoped key ({served} listings served, {refused} refused 429): \
         another tenant's POST /v1/jobs p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (target p99 < 50 ms; debug build)",
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
    assert!(served > 0, "the scoped key is served within its budget");
}

/// How many times this app's Redis has answered `cmd`.
async fn calls(app: &TestApp, cmd: &str) -> u64 {
    command_calls(&mut app.store.connection(), cmd).await
}

/// Finding N5 of this stop's hostile-tenant audit: `GET /v1/jobs/{id}` read another
/// tenant's whole job — payload, result, attempts — before finding it was not the key's,
/// so its 404 took longer the more the job held (7.8 ms for a 900 KB job against 3.2 ms
/// for a missing one). For a key limited to accounts the job's account is read first; a
/// job not its own costs what a missing one costs.
#[tokio::test]
async fn another_tenants_job_is_refused_before_its_payload_and_attempts_are_read() {
    let app = spawn_app().await;
    let theirs = app.submit_ok(&cleanup_body("globex")).await;
    let (lists, hashes) = (calls(&app, "lrange").await, calls(&app, "hgetall").await);
    let res = app.get(ACME_SUB, &format!("/v1/jobs/{theirs}")).send().await.unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(
        (calls(&app, "lrange").await, calls(&app, "hgetall").await),
        (lists, hashes),
        "the job's record and attempts were read for a key that may not see it"
    );
    // Its own job is read whole, as before.
    let mine = app.submit_ok(&cleanup_body("acme")).await;
    let job = app.get_json(ACME_SUB, &format!("/v1/jobs/{mine}")).await;
    assert_eq!(job["payload"]["account_id"], "acme", "{job}");
}

/// Found by this stop's hostile-tenant audit (as N5, for the dead letter): replay and
/// discard by ids read another tenant's whole job (payload, attempts) before finding it
/// was not the key's, so the answer took longer the more the job held. The job's summary
/// is read first; another tenant's job costs what a missing one does.
#[tokio::test]
async fn dead_letter_actions_by_id_refuse_another_tenants_job_before_its_record_is_read() {
    let app = spawn_app().await;
    let theirs = app.submit_ok(&cleanup_body("globex")).await;
    app.kill_job(&theirs).await;
    for op in ["replay", "discard"] {
        let before = (calls(&app, "lrange").await, calls(&app, "hgetall").await);
        let res = app
            .post(ACME, &format!("/v1/dead-letter/{op}"))
            .json(&json!({"ids": [theirs.as_str()]}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{op}");
        let v: Value = res.json().await.unwrap();
        assert_eq!(v["skipped"], json!([{"id": theirs.as_str(), "reason": "not found"}]), "{op}: {v}");
        assert_eq!(
            (calls(&app, "lrange").await, calls(&app, "hgetall").await),
            before,
            "{op}: the job's record and attempts were read for a key that may not see it"
        );
    }
    // The key's own dead job is replayed as before.
    let mine = app.submit_ok(&cleanup_body("acme")).await;
    app.kill_job(&mine).await;
    let v: Value = app
        .post(ACME, "/v1/dead-letter/replay")
        .json(&json!({"ids": [mine.as_str()]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["replayed"], json!([mine.as_str()]), "{v}");
}

/// Found by this stop's audit of the API's surfaces: a filtered dead-letter action
/// bounded the dead jobs it had looked at, not the index entries it walked, so a key
/// scoped to one account walked that account's whole index — every job it retains — a
/// page of 4,000 entries at a time, on a task that outlived the request. Here acme has
/// one dead job under 40,000 queued ones: the walk now stops after 3 pages and says so.
#[tokio::test]
async fn a_filtered_dead_letter_action_walks_a_bounded_number_of_index_entries() {
    use drover::queue::{JobStore, NewJob};
    let app = spawn_app().await;
    let deep = dead_jobs(&app, "acme", 1).await;
    for _ in 0..40 {
        let batch: Vec<NewJob> = (0..1000).map(|_| NewJob::new(cleanup_payload("acme"))).collect();
        for r in app.store.enqueue_bulk(batch).await.unwrap() {
            r.unwrap();
        }
    }
    for op in ["replay", "discard"] {
        let before = calls(&app, "fcall").await;
        let res = timeouts_of_acme(&app, op).await;
        assert_eq!(res.status(), 200, "{op}");
        let v: Value = res.json().await.unwrap();
        // Two calls a page, its read-ahead (`list_ahead`) and the page (`list`), and none
        // else in the request.
        let pages = (calls(&app, "fcall").await - before) / 2;
        assert!(pages <= 3, "{op}: {pages} pages of 4,000 entries walked for one request: {v}");
        assert_eq!(v["stopped_at_scan_limit"], true, "{op}: {v}");
    }
    let still = app.store.get(&deep[0]).await.unwrap().unwrap();
    assert_eq!(still.state, drover::job::JobState::Dead, "the dead job lies deeper than the bound");
}

/// Found by this stop's audit of the API's surfaces: `GET /v1/jobs/{id}/items`, and a
/// cancel or retry by a key limited to accounts, read the whole job — its payload (up to
/// 1 MiB), result, attempts and callbacks — to learn only its id and account, outside
/// the turns that bound whole reads (`GET /v1/jobs/{id}`, `record_reads`). They read
/// the job's summary now.
#[tokio::test]
async fn the_items_page_and_a_scoped_cancel_read_the_jobs_summary_not_its_record() {
    let app = spawn_app().await;
    let mine = app.submit_ok(&cleanup_body("acme")).await;
    let before = (calls(&app, "lrange").await, calls(&app, "hgetall").await);
    let res = app.get(ACME_SUB, &format!("/v1/jobs/{mine}/items")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let res = app.post(ACME, &format!("/v1/jobs/{mine}/cancel")).send().await.unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    assert_eq!(
        (calls(&app, "lrange").await, calls(&app, "hgetall").await),
        before,
        "the job's whole record was read for its id and account"
    );
}

/// Found by the hostile-tenant audit of 2026-12-06: nothing capped how many jobs an
/// account kept unfinished, so a tenant submitting cleanups delayed a year (within its
/// write rate) could fill Redis to its memory limit, after which every tenant's submits
/// were refused. Past `api.jobs.max_unfinished_per_account` a submit is a 429
/// `account-full` naming the setting, nothing is written and its Idempotency-Key stays
/// free; other tenants and the account's other kinds are not held, and a job that ends
/// gives its place back.
#[tokio::test]
async fn a_tenant_at_its_cap_of_unfinished_jobs_is_refused_and_no_other_tenant_is() {
    let app = spawn_app_with(drover_tests::harness::Durability::None, |c| c.jobs.max_unfinished_per_account = 3).await;
    let run_at = (chrono::Utc::now() + chrono::Duration::days(360)).to_rfc3339();
    let later = |account: &str| {
        let mut body = cleanup_body(account);
        body["run_at"] = json!(run_at);
        body
    };
    let mut ids = Vec::new();
    for _ in 0..3 {
        let res = app.submit(ACME_SUB, &later("acme")).await;
        assert_eq!(res.status(), 202);
        ids.push(res.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned());
    }
    let fourth = || async {
        app.post(ACME_SUB, "/v1/jobs")
            .header("Idempotency-Key", "fourth")
            .json(&later("acme"))
            .send()
            .await
            .unwrap()
    };
    let res = fourth().await;
    let retry_after = res.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
    let p = problem(res, 429).await;
    assert_eq!(p["type"], "urn:drover:problem:account-full", "{p}");
    let detail = p["detail"].as_str().unwrap();
    assert!(detail.contains("max_unfinished_per_account") && detail.contains('3'), "{detail}");
    assert!(retry_after.is_some(), "a 429 says when to try again");
    let counts = app.store.account_counts("acme").await.unwrap();
    let cleanup = counts.kinds.iter().find(|(k, _)| *k == drover::job::JobKind::Cleanup).unwrap().1;
    assert_eq!(cleanup.scheduled, 3, "nothing written for the refused job: {counts:?}");

    let res = app.submit(GLOBEX_SUB, &later("globex")).await;
    assert_eq!(res.status(), 202, "another tenant is not held");
    let res = app.submit(ACME_SUB, &sync_body("acme")).await;
    assert_eq!(res.status(), 202, "the cap is per kind");

    let res = app.post(ACME, &format!("/v1/jobs/{}/cancel", ids[0])).send().await.unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let res = fourth().await;
    assert_eq!(
        res.status(),
        202,
        "a cancelled job gives its place back, and the refused key is free"
    );
}
