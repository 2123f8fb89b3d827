//! A submit for an account in quota cooldown: accepted (202) with `waiting.reason =
//! quota_cooldown` and the cooldown's end, and the same in `GET /v1/jobs/{id}` and the
//! job list while the cooldown lasts. The cooldown is entered the way a worker enters it
//! after a 429 on a report operation (the resilience layer, on the app's Redis).
use crate::api_support;

use std::time::Duration;

use api_support::*;
use chrono::{DateTime, Utc};
use drover::job::AccountId;
use drover::resilience::{Cooldown, Resilience, ResilienceConfig};
use serde_json::{json, Value};

fn backfill_body(account: &str) -> Value {
    let end = Utc::now();
    json!({"kind": "backfill", "payload": {"account_id": account, "marketplace_id": MARKETPLACE,
        "report_type": "GET_FLAT_FILE_ALL_ORDERS_DATA_BY_ORDER_DATE_GENERAL",
        "start": end - chrono::Duration::days(2), "end": end}})
}

/// Put `account` into a quota cooldown of `length`, as a worker does after a 429.
async fn cool_down(app: &TestApp, account: &str, length: Duration) -> Cooldown {
    let mut config = ResilienceConfig::default();
    config.cooldown.steps = vec![length];
    let resilience = Resilience::new(app.store.connection(), "drover", config, &drover::crypto::EncryptionKey::dev());
    resilience
        .enter_cooldown(&AccountId::parse(account).unwrap(), "429 on createReport", None)
        .await
        .unwrap()
}

fn until(w: &Value) -> DateTime<Utc> {
    w["until"].as_str().expect("an end").parse().unwrap()
}

#[tokio::test]
async fn a_backfill_submitted_during_a_quota_cooldown_is_accepted_and_waits_for_its_end() {
    let app = spawn_app().await;
    app.worker_beat().await;
    let cooldown = cool_down(&app, "acme", Duration::from_secs(3)).await;

    let res = app.submit(ACME_SUB, &backfill_body("acme")).await;
    assert_eq!(res.status(), 202, "still accepted");
    let accepted: Value = res.json().await.unwrap();
    let id = accepted["id"].as_str().unwrap().to_owned();
    let w = &accepted["waiting"];
    assert_eq!(w["reason"], "quota_cooldown", "{accepted}");
    assert_eq!(until(w), cooldown.until, "the cooldown's end");
    assert_eq!(w["detail"]["cause"], "429 on createReport");
    assert_eq!(w["detail"]["level"], 1);
    assert_eq!(w["detail"]["then"], "queued", "what it waits for after");

    let (_, job) = app.job(READER, &id).await;
    assert_eq!(job["state"], "queued");
    assert_eq!(job["waiting"], *w, "GET says the same");
    let page: Value = app
        .get(READER, "/v1/jobs?account_id=acme&kind=backfill")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["jobs"][0]["id"], id.as_str());
    assert_eq!(page["jobs"][0]["waiting"], *w, "and the job list");

    // The rule: a cooldown stops report operations, so a sync (getOrders) or a cleanup
    // (deleteListingsItem) of the same account does not wait for it; another account's
    // backfill neither.
    for body in [sync_body("acme"), cleanup_body("acme"), backfill_body("globex")] {
        let res = app.submit(ADMIN, &body).await;
        assert_eq!(res.status(), 202);
        let v: Value = res.json().await.unwrap();
        assert_eq!(v["waiting"]["reason"], "queued", "{body} → {v}");
    }

    // Once the cooldown is over, the job is only queued.
    tokio::time::sleep((cooldown.until - Utc::now()).to_std().unwrap_or_default() + Duration::from_millis(100)).await;
    let (_, job) = app.job(READER, &id).await;
    assert_eq!(job["waiting"]["reason"], "queued", "{job}");
}

#[tokio::test]
async fn a_backfill_scheduled_past_the_cooldown_keeps_its_own_reason() {
    let app = spawn_app().await;
    let cooldown = cool_down(&app, "acme", Duration::from_secs(60)).await;
    let mut late = backfill_body("acme");
    late["delay_ms"] = json!(120_000);
    let v: Value = app.submit(ADMIN, &late).await.json().await.unwrap();
    assert_eq!(v["waiting"]["reason"], "scheduled", "{v}");
    assert!(until(&v["waiting"]) > cooldown.until);

    let mut soon = backfill_body("acme");
    soon["delay_ms"] = json!(5_000);
    let v: Value = app.submit(ADMIN, &soon).await.json().await.unwrap();
    assert_eq!(v["waiting"]["reason"], "quota_cooldown", "due before the cooldown ends: {v}");
    assert_eq!(v["waiting"]["detail"]["then"], "scheduled");
}

/// Finding N3 of this stop's hostile-tenant audit: a queued job's `waiting.detail` counted
/// the other accounts with queued work (`accounts_waiting`) and put their lanes into
/// `position`, so a key limited to one account watched another tenant's activity come and
/// go. A key limited to accounts sees only its own account's part (`ahead_in_account`) —
/// in the submit's answer, `GET /v1/jobs/{id}` and the listing; an operator key still
/// sees the whole estimate.
#[tokio::test]
async fn a_scoped_key_sees_its_own_place_in_line_and_nothing_of_other_accounts() {
    let app = spawn_app().await;
    app.worker_beat().await;
    let first = app.submit(ACME_SUB, &cleanup_body("acme")).await;
    assert_eq!(first.status(), 202);
    let before: Value = first.json().await.unwrap();
    for _ in 0..3 {
        assert_eq!(app.submit(GLOBEX_SUB, &cleanup_body("globex")).await.status(), 202);
    }
    let res = app.submit(ACME_SUB, &cleanup_body("acme")).await;
    assert_eq!(res.status(), 202);
    let second: Value = res.json().await.unwrap();
    let id = second["id"].as_str().unwrap().to_owned();

    assert_eq!(before["waiting"]["detail"], json!({"ahead_in_account": 0}), "{before}");
    assert_eq!(second["waiting"]["detail"], json!({"ahead_in_account": 1}), "{second}");
    let job = app.get_json(ACME_SUB, &format!("/v1/jobs/{id}")).await;
    assert_eq!(job["waiting"]["detail"], json!({"ahead_in_account": 1}), "{job}");
    let page = app.get_json(ACME_SUB, "/v1/jobs?kind=cleanup&state=queued").await;
    let listed: Vec<&Value> = page["jobs"].as_array().unwrap().iter().map(|j| &j["waiting"]["detail"]).collect();
    assert_eq!(listed.len(), 2, "{page}");
    assert!(
        listed
            .iter()
            .all(|d| d.get("ahead_in_account").is_some() && d.as_object().unwrap().len() == 1),
        "{page}"
    );

    let operator = app.get_json(ADMIN, &format!("/v1/jobs/{id}")).await;
    assert_eq!(operator["waiting"]["detail"]["accounts_waiting"], 2, "{operator}");
    assert_eq!(operator["waiting"]["detail"]["ahead_in_account"], 1, "{operator}");
}

/// Found by an audit of job histories: the queue knows a job leased into a worker's
/// prefetch has not started (`prefetched`), but GET, the listing and the event stream
/// never asked it for a running job, so such a job read as a run under way for as long
/// as the run ahead of it took. The worker's name is shown to operators only.
#[tokio::test]
async fn a_job_waiting_in_a_workers_prefetch_says_so_until_its_run_starts() {
    use drover::job::JobKind;
    use drover::queue::{JobDefaults, JobStore, RedisStore};

    let app = spawn_app().await;
    let first = app.submit_ok(&cleanup_body("acme")).await;
    let second = app.submit_ok(&cleanup_body("acme")).await;
    // A worker's store: it reports the starts of the runs it leases.
    let worker = RedisStore::connect(&app.redis.url(), "drover", JobDefaults::for_runtime())
        .await
        .unwrap();
    let leased = worker
        .fetch(JobKind::Cleanup, "host-1:42", 2, Duration::from_secs(30))
        .await
        .unwrap()
        .jobs;
    assert_eq!(leased.len(), 2);
    let run = leased.iter().find(|l| l.id == first).unwrap();
    worker
        .mark_started(JobKind::Cleanup, &[(run.id.clone(), run.token.clone())], Duration::from_secs(5))
        .await
        .unwrap();

    let (_, started) = app.job(ADMIN, first.as_str()).await;
    assert_eq!(started["state"], "running");
    assert!(started["waiting"].is_null(), "a started run waits for nothing: {started}");
    let (_, held) = app.job(ADMIN, second.as_str()).await;
    assert_eq!(held["state"], "running", "leased: {held}");
    assert_eq!(held["waiting"]["reason"], "prefetched", "{held}");
    assert_eq!(held["waiting"]["detail"]["worker"], "host-1:42", "{held}");
    // Found by the visibility audit of 2026-12-05: the lease's time stood as the run's
    // start, and the history showed a run under way that had not started.
    assert!(held["started_at"].is_null(), "a prefetched job has not started: {held}");
    assert!(
        held["attempt_history"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["outcome"] != "running"),
        "no run is under way while the job waits in a prefetch: {held}"
    );
    assert!(!started["started_at"].is_null(), "a started run says when: {started}");
    assert_eq!(started["attempt_history"][0]["outcome"], "running", "{started}");
    let (_, seen_by_tenant) = app.job(ACME, second.as_str()).await;
    assert_eq!(seen_by_tenant["waiting"]["reason"], "prefetched", "{seen_by_tenant}");
    assert!(
        !seen_by_tenant.to_string().contains("host-1"),
        "no worker name for a tenant: {seen_by_tenant}"
    );
    let page = app.get_json(ADMIN, "/v1/jobs?account_id=acme&kind=cleanup").await;
    let listed = |id: &str| page["jobs"].as_array().unwrap().iter().find(|j| j["id"] == id).cloned().unwrap();
    assert_eq!(listed(second.as_str())["waiting"]["reason"], "prefetched", "{page}");
    assert!(listed(first.as_str())["waiting"].is_null(), "{page}");
}

/// Found by the visibility audit of 2026-12-05: a job scheduled for later in a paused
/// queue answered `scheduled` with its `until`, and nothing said that at that time it
/// would only wait on, paused. Its detail says what comes then.
#[tokio::test]
async fn a_scheduled_job_in_a_paused_queue_says_the_pause_comes_after_its_wait() {
    let app = spawn_app().await;
    assert_eq!(app.post(ADMIN, "/v1/queues/cleanup/pause").send().await.unwrap().status(), 200);
    let mut later = cleanup_body("acme");
    later["delay_ms"] = json!(60_000);
    let id = app.submit_ok(&later).await;
    let (_, job) = app.job(ADMIN, id.as_str()).await;
    assert_eq!(job["waiting"]["reason"], "scheduled", "{job}");
    assert_eq!(job["waiting"]["detail"]["then"], "queue_paused", "{job}");
    assert_eq!(app.post(ADMIN, "/v1/queues/cleanup/resume").send().await.unwrap().status(), 200);
    let (_, job) = app.job(ADMIN, id.as_str()).await;
    assert!(job["waiting"]["detail"]["then"].is_null(), "{job}");
}

/// Found by the visibility audit of 2026-12-06: with no worker running (or none serving
/// the kind), a queued job answered `queued` with its place in line, as if a slot were
/// all it waited for, and a delayed job whose time had come its passed `until`. Both
/// now say that no worker serves the queue, and `/metrics` counts them so.
#[tokio::test]
async fn a_job_in_a_queue_no_worker_serves_says_it_waits_for_one() {
    let app = spawn_app().await;
    let res = app.submit(ADMIN, &cleanup_body("acme")).await;
    assert_eq!(res.status(), 202);
    let accepted: Value = res.json().await.unwrap();
    assert_eq!(accepted["waiting"]["reason"], "no_worker", "{accepted}");
    assert!(
        accepted["waiting"]["detail"]["last_served_ms"].is_null(),
        "never served: {accepted}"
    );
    let id = accepted["id"].as_str().unwrap().to_owned();
    let mut due = cleanup_body("acme");
    due["delay_ms"] = json!(1);
    let delayed = app.submit_ok(&due).await;
    tokio::time::sleep(Duration::from_millis(20)).await;

    let (_, job) = app.job(ADMIN, &id).await;
    assert_eq!(job["waiting"], accepted["waiting"], "GET says the same: {job}");
    // A key limited to accounts learns the reason, not the queue's history.
    let (_, seen) = app.job(ACME, &id).await;
    assert_eq!(
        seen["waiting"],
        json!({"reason": "no_worker", "until": null, "detail": {}}),
        "{seen}"
    );
    let (_, late) = app.job(ADMIN, delayed.as_str()).await;
    assert_eq!(late["waiting"]["reason"], "scheduled", "{late}");
    assert_eq!(late["waiting"]["detail"]["then"], "no_worker", "its time has come: {late}");
    let (_, seen) = app.job(ACME, delayed.as_str()).await;
    assert_eq!(seen["waiting"]["detail"], json!({"then": "no_worker"}), "{seen}");
    let metrics = app.client.get(app.metrics_url()).send().await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains(r#"drover_queue_waiting_jobs{kind="cleanup",reason="no_worker"} 1"#),
        "{metrics}"
    );

    // A worker comes: the job waits for a slot.
    app.worker_beat().await;
    let (_, job) = app.job(ADMIN, &id).await;
    assert_eq!(job["waiting"]["reason"], "queued", "{job}");
    assert!(job["waiting"]["detail"]["position"].is_number(), "{job}");
    let metrics = app.client.get(app.metrics_url()).send().await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains(r#"drover_queue_waiting_jobs{kind="cleanup",reason="no_worker"} 0"#),
        "{metrics}"
    );
}

/// Found by the fairness audit of 2026-12-06: a cooldown that cannot be read (its key
/// on a shard that is down; here a value of the wrong type) failed `GET /v1/jobs/{id}`
/// and every listing page holding a waiting backfill with 503, though the jobs and the
/// queue's reasons were read; a submit left the cooldown out instead. They now answer
/// with the queue's own reason.
#[tokio::test]
async fn a_cooldown_that_cannot_be_read_leaves_the_queues_reason_not_a_503() {
    let app = spawn_app().await;
    app.worker_beat().await;
    let res = app.submit(ADMIN, &backfill_body("acme")).await;
    assert_eq!(res.status(), 202);
    let id = res.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let _: () = redis::cmd("SET")
        .arg("drover:cd:{acme}")
        .arg("not a hash")
        .query(&mut app.redis.conn())
        .unwrap();

    let (status, job) = app.job(READER, &id).await;
    assert_eq!(status, 200, "{job}");
    assert_eq!(job["waiting"]["reason"], "queued", "{job}");
    // Found by the fairness audit of 2026-12-07: a submit then answered without any
    // `waiting`, the queue's reason dropped with the cooldown.
    let res = app.submit(ADMIN, &backfill_body("acme")).await;
    assert_eq!(res.status(), 202);
    let submitted: Value = res.json().await.unwrap();
    assert_eq!(submitted["waiting"]["reason"], "queued", "{submitted}");
    let res = app.get(READER, "/v1/jobs?account_id=acme&kind=backfill").send().await.unwrap();
    assert_eq!(res.status(), 200);
    let page: Value = res.json().await.unwrap();
    assert_eq!(page["jobs"][0]["waiting"]["reason"], "queued", "{page}");
}

/// Found by the fairness audit of 2026-12-06 (fifth): "why is this job waiting" said
/// `queued` for a job whose seller's circuit breaker was open, or whose limiter a 429
/// held, though it would park for them once leased: only a quota cooldown was read. The
/// account's guards for the operations the job's kind calls are read beside the queue's
/// reason, on `GET`, the listings and event streams (a backfill's submit too).
#[tokio::test]
async fn a_job_whose_sellers_breaker_is_open_or_rate_held_says_so_and_until_when() {
    use drover::resilience::{CallOutcome, Operation};
    let app = spawn_app().await;
    app.worker_beat().await;
    let resilience = Resilience::new(
        app.store.connection(),
        "drover",
        ResilienceConfig::default(),
        &drover::crypto::EncryptionKey::dev(),
    );
    let acme = AccountId::parse("acme").unwrap();
    for _ in 0..10 {
        resilience.record(&acme, Operation::GetOrders, CallOutcome::Failure).await.unwrap();
    }
    let open_until = resilience.snapshot(&acme).await.unwrap().operations[&Operation::GetOrders]
        .breaker
        .open_until
        .expect("the breaker opened");

    // (a sync or cleanup submit answers the queue's reason: the guards are read by GET)
    let res = app.submit(ADMIN, &sync_body("acme")).await;
    assert_eq!(res.status(), 202);
    let accepted: Value = res.json().await.unwrap();
    let id = accepted["id"].as_str().unwrap().to_owned();
    let (_, job) = app.job(READER, &id).await;
    let w = &job["waiting"];
    assert_eq!(w["reason"], "breaker_open", "{job}");
    assert_eq!(w["detail"]["operation"], "getOrders", "{job}");
    assert_eq!(w["detail"]["then"], "queued", "{job}");
    assert_eq!(until(w), open_until);

    // A cleanup does not call getOrders; another seller's sync has its own breaker.
    let res = app.submit(ADMIN, &cleanup_body("acme")).await;
    let cleanup: Value = res.json().await.unwrap();
    let (_, job) = app.job(READER, cleanup["id"].as_str().unwrap()).await;
    assert_eq!(job["waiting"]["reason"], "queued", "{job}");
    let res = app.submit(ADMIN, &sync_body("globex")).await;
    let other: Value = res.json().await.unwrap();
    let (_, job) = app.job(READER, other["id"].as_str().unwrap()).await;
    assert_eq!(job["waiting"]["reason"], "queued", "{job}");

    // A 429 asking 30 s holds every slot of the seller's deletes: the queued cleanup
    // waits for the seller's rate.
    resilience
        .hold_off(&acme, Operation::DeleteListingsItem, Duration::from_secs(30))
        .await
        .unwrap();
    let (_, job) = app.job(READER, cleanup["id"].as_str().unwrap()).await;
    let w = &job["waiting"];
    assert_eq!(w["reason"], "rate_limit", "{job}");
    assert_eq!(w["detail"]["operation"], "deleteListingsItem", "{job}");
    let left = until(w) - Utc::now();
    assert!(
        left > chrono::Duration::seconds(20) && left <= chrono::Duration::seconds(31),
        "until the hold ends: {left}"
    );
    let page = app.get_json(READER, "/v1/jobs?account_id=acme&kind=cleanup").await;
    assert_eq!(page["jobs"][0]["waiting"], *w, "and the job list");
}
