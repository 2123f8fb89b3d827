//! The operator audit log over real HTTP with a private Postgres database: every action
//! an operator takes is recorded once it has ended (who, what, target, filter, jobs
//! touched, outcome, request id) and listed newest first at `GET /v1/audit`, to keys for
//! every account only.
use crate::api_support;

use api_support::*;
use serde_json::{json, Value};

async fn audit(app: &TestApp, key: &str, query: &str) -> (u16, Value) {
    let res = app.get(key, &format!("/v1/audit{query}")).send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or_default())
}

/// `PUT /v1/schedules/{name}` by `key` (`name` as it goes in the path).
async fn put_schedule(app: &TestApp, key: &str, name: &str, body: Value) -> reqwest::Response {
    app.client
        .put(app.url(&format!("/v1/schedules/{name}")))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap()
}

fn entries(page: &Value) -> Vec<Value> {
    page["entries"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn operator_actions_are_recorded_newest_first_with_who_what_how_many_and_how_they_ended() {
    let app = spawn_app().await;
    let (status, page) = audit(&app, READER, "").await;
    assert_eq!((status, entries(&page).len()), (200, 0), "{page}");

    assert_eq!(app.post(ADMIN, "/v1/queues/cleanup/pause").send().await.unwrap().status(), 200);
    assert_eq!(app.post(ADMIN, "/v1/queues/cleanup/resume").send().await.unwrap().status(), 200);
    let id = app.submit_ok(&cleanup_body("acme")).await;
    let cancel = app
        .post(ADMIN, &format!("/v1/jobs/{id}/cancel"))
        .header("X-Request-Id", "audit-cancel-1")
        .send()
        .await
        .unwrap();
    assert_eq!(cancel.status(), 200);
    let again = app.post(ADMIN, &format!("/v1/jobs/{id}/cancel")).send().await.unwrap();
    assert_eq!(again.status(), 409);
    let replay = app
        .post(ADMIN, "/v1/dead-letter/replay")
        .json(&json!({"filter": {"kind": "cleanup", "account_id": "acme"}, "limit": 10}))
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 200);
    // Refused by the role guard before any action: not an operator action.
    assert_eq!(app.post(READER, "/v1/queues/cleanup/pause").send().await.unwrap().status(), 403);

    let (status, page) = audit(&app, READER, "").await;
    assert_eq!(status, 200, "{page}");
    let got: Vec<(String, String, String, i64)> = entries(&page)
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["target"].as_str().unwrap().to_owned(),
                e["outcome"].as_str().unwrap().to_owned(),
                e["touched"].as_i64().unwrap(),
            )
        })
        .collect();
    let want = [
        ("dlq.replay", "dead-letter", "ok", 0),
        ("job.cancel", id.as_str(), "409 Conflict", 0),
        ("job.cancel", id.as_str(), "ok", 1),
        ("queue.resume", "cleanup", "ok", 0),
        ("queue.pause", "cleanup", "ok", 0),
    ]
    .map(|(a, t, o, n)| (a.to_owned(), t.to_owned(), o.to_owned(), n));
    assert_eq!(got, want);
    let all = entries(&page);
    assert!(all.iter().all(|e| e["actor"] == "admin"), "{page}");
    assert_eq!(all[2]["request_id"], "audit-cancel-1");
    assert_eq!(
        all[0]["filter"]["filter"],
        json!({"kind": "cleanup", "account_id": "acme", "error_class": null, "group": null})
    );
    let ids: Vec<i64> = all.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");

    // Pages of two, by `next_before`, cover the five entries once each.
    let mut seen = Vec::new();
    let mut query = "?limit=2".to_owned();
    loop {
        let (status, page) = audit(&app, ADMIN, &query).await;
        assert_eq!(status, 200, "{page}");
        seen.extend(entries(&page).iter().map(|e| e["id"].as_i64().unwrap()));
        match page["next_before"].as_i64() {
            Some(before) => query = format!("?limit=2&before={before}"),
            None => break,
        }
    }
    assert_eq!(seen, ids);
}

#[tokio::test]
async fn only_keys_for_every_account_read_the_log_and_bad_parameters_are_named() {
    let app = spawn_app().await;
    for key in [MULTI, ACME, ACME_SUB] {
        let (status, body) = audit(&app, key, "").await;
        assert_eq!(status, 403, "{key}: {body}");
    }
    let res = app.get(READER, "/v1/audit?limit=0&before=x").send().await.unwrap();
    let problem = problem(res, 422).await;
    let mut named = fields(&problem);
    named.sort();
    assert_eq!(named, ["before", "limit"]);
}

/// Finding N2 of this round's audit: a refused request still writes its audit row, and that
/// row kept the request's fields whole — 1 MiB of `cron` made a 1 MiB row, and a page of the
/// log 1 GB. What a row keeps is bounded, and says how much it left out.
#[tokio::test]
async fn an_audit_row_keeps_a_bounded_part_of_what_a_refused_request_sent() {
    let app = spawn_app().await;
    let cron = "x".repeat(200_000);
    let name = "n".repeat(3_000);
    let res = put_schedule(
        &app,
        ACME_SUB,
        &name,
        json!({"cron": cron, "kind": "sync", "payload": {"account_id": "globex", "marketplace_id": MARKETPLACE}}),
    )
    .await;
    // (refused as invalid: a schedule is validated before the key's accounts are checked)
    assert_eq!(res.status(), 422);

    let (status, page) = audit(&app, READER, "").await;
    assert_eq!(status, 200, "{page}");
    let all = entries(&page);
    assert_eq!(all.len(), 1, "{page}");
    let row = &all[0];
    assert_eq!(
        (row["action"].as_str(), row["outcome"].as_str()),
        (Some("schedule.put"), Some("422 Unprocessable Entity"))
    );
    let target = row["target"].as_str().unwrap();
    assert!(target.len() <= 300, "target kept {} bytes", target.len());
    assert!(target.starts_with("nnnn"), "{target}");
    let filter = row["filter"].to_string();
    assert!(filter.len() <= 4096, "filter kept {} bytes", filter.len());
    assert_eq!(row["filter"]["account_id"], "globex", "the small fields stay whole: {filter}");
    let kept = row["filter"]["cron"].as_str().unwrap();
    assert!(kept.starts_with("xxxx") && kept.contains("200000 bytes"), "{kept:.80}…");
}

/// Hostile-tenant audit of 2026-12-06: Postgres keeps no NUL in a text and refuses
/// `\u0000` in a jsonb, and the log kept what a request sent as it was: a discard whose
/// ids held one deleted the job it named and lost its entry (the insert failed after the
/// action), and so did any refused request with one in its target.
#[tokio::test]
async fn an_action_whose_request_holds_a_nul_is_still_recorded() {
    let app = spawn_app().await;
    let dead = app.submit_ok(&cleanup_body("acme")).await;
    app.kill_job(&dead).await;
    let body = json!({"ids": [dead.as_str(), "\u{0}"]});
    let res = app.post(ACME, "/v1/dead-letter/discard").json(&body).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["discarded"], json!([dead.as_str()]), "{v}");
    // A refused schedule write whose name holds one.
    let res = put_schedule(
        &app,
        ACME_SUB,
        "daily%00",
        json!({"cron": "0 0 * * * *", "kind": "sync", "payload": {"account_id": "acme", "marketplace_id": MARKETPLACE}}),
    )
    .await;
    assert_eq!(res.status(), 422);

    let (status, page) = audit(&app, READER, "").await;
    assert_eq!(status, 200, "{page}");
    let all = entries(&page);
    let discard = all
        .iter()
        .find(|e| e["action"] == "dlq.discard")
        .unwrap_or_else(|| panic!("no discard entry: {page}"));
    assert_eq!(discard["touched"], 1, "{discard}");
    assert!(discard["filter"].to_string().contains(dead.as_str()), "{discard}");
    let put = all
        .iter()
        .find(|e| e["action"] == "schedule.put")
        .unwrap_or_else(|| panic!("no schedule entry: {page}"));
    assert!(put["target"].as_str().unwrap().starts_with("daily"), "{put}");
}

/// `n` dead cleanup jobs of `account`, made through the store.
async fn dead_jobs(app: &TestApp, account: &str, n: usize) {
    use drover::job::{ErrorClass, ErrorInfo, JobKind, JobPayload};
    use drover::queue::{JobStore, NewJob, SettleAction, Settlement};
    let payload = || JobPayload::from_json(JobKind::Cleanup, cleanup_body(account)["payload"].clone()).unwrap();
    let made = app
        .store
        .enqueue_bulk((0..n).map(|_| NewJob::new(payload())).collect())
        .await
        .unwrap();
    assert!(made.iter().all(Result::is_ok));
    let mut left = n;
    while left > 0 {
        let leased = app
            .store
            .fetch(JobKind::Cleanup, "test-worker", 200, std::time::Duration::from_secs(30))
            .await
            .unwrap()
            .jobs;
        assert!(!leased.is_empty(), "{left} jobs were not leased");
        left -= leased.len();
        let ends: Vec<Settlement> = leased
            .into_iter()
            .map(|l| Settlement {
                id: l.id,
                token: l.token,
                action: SettleAction::Dead(ErrorInfo {
                    class: ErrorClass::Permanent,
                    message: "upstream said no".into(),
                }),
                attempt: None,
            })
            .collect();
        app.store.settle(JobKind::Cleanup, &ends).await.unwrap();
    }
}

/// Found by a review of the API (2026-12-05): a dead-letter action still at work when the
/// request timed out was dropped part-way, so the jobs it had already deleted (or
/// replayed) were gone with neither an audit entry nor a log line saying so. The action
/// now runs to its end on a task of its own, and is recorded with what it did, also when
/// its client heard only the timeout. Here the API's Redis connection freezes part-way.
#[tokio::test]
async fn a_dead_letter_action_cut_off_by_the_request_timeout_is_still_recorded_with_what_it_did() {
    let (app, relay) = spawn_app_behind_relay(|c| c.request_timeout_ms = 1000).await;
    dead_jobs(&app, "acme", 1000).await;
    let discard = {
        let request = app
            .post(ADMIN, "/v1/dead-letter/discard")
            .header("X-Request-Id", "discard-cut-off")
            .json(&json!({"filter": {"kind": "cleanup"}, "limit": 1000}));
        tokio::spawn(async move { request.send().await.unwrap().status().as_u16() })
    };
    // Once it has deleted some, the API's connections to Redis stop answering.
    let dead_count = || async {
        use drover::queue::JobStore;
        app.store.counts(drover::job::JobKind::Cleanup).await.unwrap().dead
    };
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while dead_count().await == 1000 {
        assert!(std::time::Instant::now() < until, "the discard deleted nothing");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    relay.freeze_open_connections();
    assert_eq!(discard.await.unwrap(), 503, "the request timed out");
    let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let entry = loop {
        let (_, page) = audit(&app, READER, "").await;
        if let Some(e) = entries(&page).into_iter().find(|e| e["action"] == "dlq.discard") {
            break e;
        }
        assert!(std::time::Instant::now() < until, "no audit entry for the discard: {page}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(entry["request_id"], "discard-cut-off", "{entry}");
    // Every job it deleted is counted, but for the one whose answer the freeze cut off.
    let gone = 1000 - dead_count().await;
    let touched = entry["touched"].as_u64().expect("touched");
    assert!(touched > 0 && (gone - touched) <= 1, "{gone} deleted, {touched} recorded: {entry}");
}

/// A job submitted, then its cancel (sent with `request_id`) cut off by the app's 1 s
/// request timeout, each reply of its Redis held up 400 ms; the job's id.
async fn cancel_cut_off(app: &TestApp, relay: &drover_tests::harness::FrozenProxy, request_id: &str) -> String {
    let res = app.submit(ADMIN, &cleanup_body("acme")).await;
    assert_eq!(res.status(), 202);
    let id = res.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    relay.delay_replies(std::time::Duration::from_millis(400));
    let res = app
        .post(ADMIN, &format!("/v1/jobs/{id}/cancel"))
        .header("X-Request-Id", request_id)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503, "the request timed out");
    id
}

/// Found by an audit of what the API shows (2026-12-06): a cancel, retry, pause, resume or
/// schedule change recorded its entry inside the request, so one its timeout cut off (a
/// slow Redis under the action, a slow Postgres under the insert) left neither an entry
/// nor the line saying none could be written, though the action happened. They now run
/// to their end on a task of their own, as the dead-letter actions do. Here each reply
/// of the API's Redis is held up 400 ms: the key's rate check, the job's facts and the
/// cancel itself outlast the 1 s request timeout, which cuts the request off while the
/// cancel, already applied by Redis, awaits its reply.
#[tokio::test]
async fn a_cancel_cut_off_by_the_request_timeout_is_still_recorded() {
    let (app, relay) = spawn_app_behind_relay(|c| c.request_timeout_ms = 1000).await;
    let id = cancel_cut_off(&app, &relay, "cancel-cut-off").await;
    let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let entry = loop {
        let (_, page) = audit(&app, READER, "?action=job.cancel").await;
        if let Some(e) = entries(&page).into_iter().next() {
            break e;
        }
        assert!(std::time::Instant::now() < until, "no audit entry for the cancel: {page}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(entry["request_id"], "cancel-cut-off", "{entry}");
    assert_eq!(
        (entry["target"].as_str(), entry["outcome"].as_str()),
        (Some(id.as_str()), Some("ok")),
        "{entry}"
    );
    use drover::queue::JobStore;
    let job = app.store.get(&id.parse().unwrap()).await.unwrap().unwrap();
    assert_eq!(job.state, drover::job::JobState::Cancelled);
}

/// Found by the fifth audits of 2026-12-06: an action still at work on its own task when
/// the API shut down (here a cancel its request's timeout cut off, awaiting a slow
/// Redis) was dropped with the process, which ends once its connections have drained:
/// no audit entry and no line, though Redis had applied it. The shutdown waits for such
/// actions within its grace, so by the time the API has stopped the entry is written.
#[tokio::test]
async fn an_action_at_work_when_the_api_shuts_down_is_recorded_before_it_stops() {
    let db = drover_tests::harness::PgDatabase::create().await;
    let url = db.url();
    let (app, relay) = spawn_app_behind_relay(move |c| {
        c.request_timeout_ms = 1000;
        c.shutdown_grace_ms = 15_000;
        c.database.url = url.into();
    })
    .await;
    cancel_cut_off(&app, &relay, "cancel-at-shutdown").await;
    app.stop().await.expect("the API stopped cleanly");
    let written: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE request_id = $1")
        .bind("cancel-at-shutdown")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(written, 1, "the API stopped before the cancel's audit entry was written");
}

/// Found by the hostile-tenant audit of 2026-12-05: a submit key's refused requests are
/// recorded too (a `DELETE /v1/schedules/…` of a schedule that is not there: 404), and
/// the log could only be read newest first, all of it: a tenant's flood of them buried
/// the operators' own entries, and nothing ever removed an entry. The log now reads one
/// key's or one action's entries, and each replica removes those past
/// `api.audit_retention_days`.
#[tokio::test]
async fn the_log_reads_one_keys_or_one_actions_entries_past_a_flood_and_forgets_old_ones() {
    let app = spawn_app().await;
    assert_eq!(app.post(ADMIN, "/v1/queues/cleanup/pause").send().await.unwrap().status(), 200);
    for n in 0..30 {
        let res = app
            .client
            .delete(app.url(&format!("/v1/schedules/x-{n}")))
            .bearer_auth(ACME_SUB)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 404);
    }
    let (_, page) = audit(&app, READER, "?limit=10").await;
    assert!(
        entries(&page).iter().all(|e| e["actor"] == "acme-sub"),
        "the flood fills the newest page"
    );

    let (status, page) = audit(&app, READER, "?actor=admin&limit=10").await;
    assert_eq!(status, 200, "{page}");
    let mine: Vec<String> = entries(&page).iter().map(|e| e["action"].as_str().unwrap().to_owned()).collect();
    assert_eq!(mine, ["queue.pause"], "{page}");
    let (_, page) = audit(&app, READER, "?action=queue.pause").await;
    assert_eq!(entries(&page).len(), 1, "{page}");
    assert_eq!(entries(&page)[0]["actor"], "admin");
    let (_, page) = audit(&app, READER, "?actor=acme-sub&action=schedule.delete&limit=1000").await;
    assert_eq!(entries(&page).len(), 30, "{page}");
    let (status, page) = audit(&app, READER, &format!("?actor={}", "a".repeat(201))).await;
    assert_eq!(status, 422, "{page}");
    let (status, page) = audit(&app, READER, "?action=a%00b").await;
    assert_eq!(status, 422, "a NUL never reaches Postgres: {page}");

    // The tenant's entries are past the retention (90 days): the next replica to start
    // removes them, and keeps the operator's.
    let db = sqlx::PgPool::connect(&app.database_url).await.unwrap();
    sqlx::query("UPDATE audit_log SET at = now() - interval '91 days' WHERE actor = 'acme-sub'")
        .execute(&db)
        .await
        .unwrap();
    let mut config = test_config(&app.redis.url());
    config.database.url = app.database_url.clone().into();
    let second = start_app(config).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (_, page) = audit(&app, READER, "?limit=1000").await;
        let left: Vec<String> = entries(&page).iter().map(|e| e["actor"].as_str().unwrap().to_owned()).collect();
        if left == ["admin"] {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "entries past their retention are kept: {left:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let _ = second.stop.send(());
}
