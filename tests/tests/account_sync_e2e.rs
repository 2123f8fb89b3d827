//! A new account's first sync and the "last known data" of its account view, end to end:
//! the API (in process) and a real `drover-worker` process over one Redis and one
//! PostgreSQL database, the simulator as the marketplace (LWA and SP-API over HTTP).
use crate::jobs_support;

use std::time::Duration;

use drover::job::{JobId, JobState};
use drover::queue::JobStore;
use drover_tests::sim::{AccountSpec, Burst5xx, FaultSpec};
use jobs_support::{plans, Stack, MARKETPLACE};
use serde_json::{json, Value};

const KEY: &str = drover_api::DEV_KEY;

async fn account_view(http: &reqwest::Client, api: &str, id: &str) -> Value {
    let res = http.get(format!("{api}/v1/accounts/{id}")).bearer_auth(KEY).send().await.unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_accounts_first_sync_runs_and_its_last_sync_survives_a_later_failing_one() {
    let mut stack = Stack::start_empty().await;
    let api = stack.start_api().await;
    let http = reqwest::Client::new();
    let info = stack
        .sim
        .admin()
        .register_account(&AccountSpec {
            orders: Some(120),
            rate_limits: plans(),
            ..AccountSpec::new("seller-new")
        })
        .await
        .unwrap();
    stack.spawn_worker("worker-1", &[]);
    for _ in 0..200 {
        if http.get(format!("{api}/readyz")).send().await.unwrap().status() == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Registering the account queues its first sync.
    let res = http
        .post(format!("{api}/v1/accounts"))
        .bearer_auth(KEY)
        .json(&json!({
            "id": info.account_id, "seller_id": info.seller_id, "marketplace_ids": [MARKETPLACE],
            "client_id": info.client_id, "client_secret": stack.sim.config().client_secret,
            "refresh_token": info.refresh_token,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let created: Value = res.json().await.unwrap();
    let first: JobId = created["first_sync_job"]["id"].as_str().expect("a first sync").parse().unwrap();
    let job = stack.finish(&first, Duration::from_secs(60)).await;
    assert_eq!(job.state, JobState::Succeeded, "{job:#?}\n{}", stack.logs());
    assert_eq!(job.trigger.as_deref(), Some("account_created"));
    let stored = stack
        .count("SELECT count(*) FROM orders WHERE account_id = $1", &info.account_id)
        .await;
    assert!(stored > 0, "the first sync wrote the account's recent orders");

    let view = account_view(&http, &api, &info.account_id).await;
    let synced = view["last_synced"].clone();
    let orders_at: chrono::DateTime<chrono::Utc> = synced["orders"].as_str().expect("orders synced").parse().unwrap();
    assert!(synced["listings"].is_string(), "{view}");
    assert_eq!(synced["order_reports"], Value::Null, "no backfill ran: {view}");
    assert!(
        orders_at >= job.started_at.unwrap() && orders_at <= job.finished_at.unwrap(),
        "{view}"
    );

    // The next sync fails (every getOrders call answers 5xx, past the client's retries):
    // the account view still shows the last successful sync.
    stack
        .faults(
            &drover::job::AccountId::parse(info.account_id.clone()).unwrap(),
            FaultSpec {
                burst_5xx: Some(Burst5xx {
                    count: 3,
                    status: Some(503),
                }),
                ..FaultSpec::default()
            },
        )
        .await;
    let res = http
        .post(format!("{api}/v1/jobs"))
        .bearer_auth(KEY)
        .json(&json!({"kind": "sync", "max_attempts": 1,
            "payload": {"account_id": info.account_id, "marketplace_id": MARKETPLACE, "resources": ["orders", "listings"]}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let failing: JobId = res.json::<Value>().await.unwrap()["id"].as_str().unwrap().parse().unwrap();
    let job = stack.finish(&failing, Duration::from_secs(60)).await;
    assert_eq!(job.state, JobState::Dead, "{job:#?}\n{}", stack.logs());
    assert_eq!(job.trigger.as_deref(), Some("api"));
    let view = account_view(&http, &api, &info.account_id).await;
    assert_eq!(view["last_synced"], synced, "kept through the failing sync");

    // A sync that succeeds again moves it on.
    stack.sim.admin().clear_faults(&info.account_id).await.unwrap();
    let again = stack
        .store
        .enqueue(drover::queue::NewJob::new(
            drover::job::JobPayload::from_json(
                drover::job::JobKind::Sync,
                json!({"account_id": info.account_id, "marketplace_id": MARKETPLACE, "resources": ["orders"]}),
            )
            .unwrap(),
        ))
        .await
        .unwrap()
        .id;
    assert_eq!(stack.finish(&again, Duration::from_secs(60)).await.state, JobState::Succeeded);
    let view = account_view(&http, &api, &info.account_id).await;
    let later: chrono::DateTime<chrono::Utc> = view["last_synced"]["orders"].as_str().unwrap().parse().unwrap();
    assert!(later > orders_at, "{view}");
    assert_eq!(view["last_synced"]["listings"], synced["listings"], "listings were not part of it");
}
