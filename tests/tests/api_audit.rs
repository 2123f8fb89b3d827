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
    let res = app
        .client
        .put(app.url(&format!("/v1/schedules/{name}")))
        .bearer_auth(ACME_SUB)
        .json(&json!({"cron": cron, "kind": "sync", "payload": {"account_id": "globex", "marketplace_id": MARKETPLACE}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);

    let (status, page) = audit(&app, READER, "").await;
    assert_eq!(status, 200, "{page}");
    let all = entries(&page);
    assert_eq!(all.len(), 1, "{page}");
    let row = &all[0];
    assert_eq!(
        (row["action"].as_str(), row["outcome"].as_str()),
        (Some("schedule.put"), Some("403 Forbidden"))
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
