//! `PUT/GET/DELETE /v1/schedules/{name}`, and the scheduler: one job per tick however
//! many API replicas run it.
use crate::api_support;

use std::time::Duration;

use api_support::*;
use drover::job::{JobKind, JobState};
use drover::queue::{JobStore, ListQuery};
use serde_json::{json, Value};

fn cleanup_schedule(cron: &str, account: &str) -> Value {
    json!({"cron": cron, "kind": "cleanup", "payload": {"account_id": account, "marketplace_id": MARKETPLACE, "skus": ["SKU-1"]}})
}

#[tokio::test]
async fn put_creates_then_replaces_a_schedule_and_get_shows_its_next_run() {
    let app = spawn_app().await;
    let res = app
        .client
        .put(app.url("/v1/schedules/nightly-cleanup"))
        .bearer_auth(ADMIN)
        .json(&cleanup_schedule("0 2 * * *", "acme"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let res = app
        .client
        .put(app.url("/v1/schedules/nightly-cleanup"))
        .bearer_auth(ADMIN)
        .json(&cleanup_schedule("30 2 * * *", "acme"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let (status, body) = {
        let r = app.get(READER, "/v1/schedules/nightly-cleanup").send().await.unwrap();
        (r.status(), r.json::<Value>().await.unwrap())
    };
    assert_eq!(status, 200);
    assert_eq!(body["cron"], "30 2 * * *");
    assert_eq!(body["kind"], "cleanup");
    let next = chrono::DateTime::parse_from_rfc3339(body["next_run_at"].as_str().unwrap()).unwrap();
    assert_eq!(next.format("%H:%M:%S").to_string(), "02:30:00");
    let list: Value = app.get(READER, "/v1/schedules").send().await.unwrap().json().await.unwrap();
    assert_eq!(list["schedules"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_schedule_with_a_bad_cron_or_payload_is_a_422_naming_each_field() {
    let app = spawn_app().await;
    let body = json!({"cron": "every night", "kind": "cleanup", "payload": {"account_id": "acme", "skus": []}, "priority": 11});
    let res = app
        .client
        .put(app.url("/v1/schedules/bad"))
        .bearer_auth(ADMIN)
        .json(&body)
        .send()
        .await
        .unwrap();
    let problem = problem(res, 422).await;
    let f = fields(&problem);
    assert!(f.contains(&"cron".to_owned()), "{f:?}");
    assert!(f.contains(&"priority".to_owned()), "{f:?}");
    // Found by the submit-path audit of 2026-12-05: named `payload.payload.marketplace_id`.
    assert!(
        f.contains(&"payload.marketplace_id".to_owned()),
        "named as POST /v1/jobs names it: {f:?}"
    );
    assert!(f.iter().all(|f| !f.starts_with("payload.payload")), "{f:?}");
    assert_eq!(
        app.get(ADMIN, "/v1/schedules/bad").send().await.unwrap().status(),
        404,
        "nothing stored"
    );
}

#[tokio::test]
async fn delete_removes_a_schedule_and_a_scoped_key_cannot_see_or_touch_another_accounts_schedule() {
    let app = spawn_app().await;
    let put = |key: &'static str, name: &'static str, account: &'static str| {
        app.client
            .put(app.url(&format!("/v1/schedules/{name}")))
            .bearer_auth(key)
            .json(&cleanup_schedule("0 * * * *", account))
            .send()
    };
    assert_eq!(put(ACME, "acme-hourly", "acme").await.unwrap().status(), 201);
    assert_eq!(put(ACME, "globex-hourly", "globex").await.unwrap().status(), 403);
    assert_eq!(put(ADMIN, "globex-hourly", "globex").await.unwrap().status(), 201);
    assert_eq!(app.get(ACME, "/v1/schedules/globex-hourly").send().await.unwrap().status(), 404);
    assert_eq!(delete(&app, ACME, "globex-hourly").await, 404);
    assert_eq!(delete(&app, ACME, "acme-hourly").await, 204);
    assert_eq!(app.get(ACME, "/v1/schedules/acme-hourly").send().await.unwrap().status(), 404);
    assert_eq!(delete(&app, ADMIN, "acme-hourly").await, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_running_the_scheduler_make_exactly_one_job_per_tick() {
    let app = spawn_app_with(drover_tests::harness::Durability::None, |c| {
        c.scheduler.enabled = true;
        c.scheduler.poll_ms = 50;
        c.scheduler.misfire_grace_ms = 1000;
        c.schedules.min_interval_secs = 1;
    })
    .await;
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let mut c = test_config(&app.redis.url());
        c.database.url = app.database_url.clone().into();
        c.scheduler.enabled = true;
        c.scheduler.poll_ms = 50;
        c.scheduler.misfire_grace_ms = 1000;
        replicas.push(start(c).await);
    }
    // A tick every 2 seconds, for about 7 seconds.
    let res = app
        .client
        .put(app.url("/v1/schedules/every-2s"))
        .bearer_auth(ADMIN)
        .json(&cleanup_schedule("*/2 * * * * *", "acme"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let from = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(7000)).await;
    assert_eq!(delete(&app, ADMIN, "every-2s").await, 204);
    let to = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let page = app
        .store
        .list(&ListQuery {
            kinds: vec![JobKind::Cleanup],
            state: None,
            account_id: None,
            limit: 100,
            cursor: None,
            group: None,
            error_class: None,
        })
        .await
        .unwrap();
    let jobs = page.jobs;
    assert!(jobs.iter().all(|j| j.state == JobState::Queued));
    // Ticks in [from - 1 s (the grace lets the tick just before creation run), to].
    let ticks = (from.timestamp() - 1..=to.timestamp()).filter(|s| s % 2 == 0).count();
    assert!(jobs.len() >= 3 && jobs.len() + 2 >= ticks, "{} jobs for {ticks} ticks", jobs.len());
    assert!(
        jobs.len() <= ticks,
        "{} jobs for at most {ticks} ticks: replicas made duplicates",
        jobs.len()
    );
    for (_, stop, server) in replicas {
        let _ = stop.send(());
        let _ = server.await;
    }
}

/// `DELETE /v1/schedules/{name}` with `key`: the status.
async fn delete(app: &TestApp, key: &str, name: &str) -> u16 {
    let res = app
        .client
        .delete(app.url(&format!("/v1/schedules/{name}")))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    res.status().as_u16()
}

async fn put(app: &TestApp, key: &str, name: &str, body: &Value) -> reqwest::Response {
    app.client
        .put(app.url(&format!("/v1/schedules/{name}")))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_cron_firing_more_often_than_once_a_minute_or_never_is_a_422_on_cron() {
    let app = spawn_app().await;
    // Every second; twice a minute; 31 February (never).
    for cron in ["* * * * * *", "0,30 * * * * *", "0 0 31 2 *"] {
        let p = problem(put(&app, ACME_SUB, "s", &cleanup_schedule(cron, "acme")).await, 422).await;
        assert_eq!(fields(&p), vec!["cron".to_owned()], "{cron}: {p}");
    }
    assert_eq!(
        app.get(ACME, "/v1/schedules/s").send().await.unwrap().status(),
        404,
        "nothing stored"
    );
    // Once a minute, and once a minute at second 30, are fine.
    assert_eq!(put(&app, ACME_SUB, "s", &cleanup_schedule("* * * * *", "acme")).await.status(), 201);
    assert_eq!(
        put(&app, ACME_SUB, "s", &cleanup_schedule("30 * * * * *", "acme")).await.status(),
        200
    );
}

/// Found by the audits of 2026-12-05: a key limited to accounts met the account check
/// before the schedule was validated, so a malformed account id was a 403 ("may not act
/// for this account") rather than a 422 naming the field, as `POST /v1/jobs` answers it.
/// Validation comes first; it says nothing of any tenant.
#[tokio::test]
async fn a_scoped_keys_malformed_account_id_is_a_422_naming_it() {
    let app = spawn_app().await;
    let p = problem(put(&app, ACME_SUB, "s", &cleanup_schedule("0 * * * *", "not an id!")).await, 422).await;
    assert_eq!(fields(&p), vec!["payload.account_id".to_owned()], "{p}");
    // A well-formed account that is not the key's is still refused, whatever it is.
    assert_eq!(
        put(&app, ACME_SUB, "s", &cleanup_schedule("0 * * * *", "globex")).await.status(),
        403
    );
}

/// Found by the hostile-tenant audit of 2026-12-05: only the payload was bounded, and a
/// cron of five fields with a megabyte of spaces between them was stored and listed as
/// sent (50 schedules: 50 MiB in Redis for one account, re-read by every scheduler).
#[tokio::test]
async fn a_cron_padded_past_its_bound_is_a_422_on_cron_and_nothing_is_stored() {
    let app = spawn_app().await;
    let cron = format!("0{}4 * * *", " ".repeat(100_000));
    let p = problem(put(&app, ACME_SUB, "wide", &cleanup_schedule(&cron, "acme")).await, 422).await;
    assert_eq!(fields(&p), vec!["cron".to_owned()], "{p}");
    assert!(!p.to_string().contains("          "), "the padding is not echoed: {p}");
    let res = app.get(ACME_SUB, "/v1/schedules/wide").send().await.unwrap();
    assert_eq!(res.status(), 404, "nothing was stored");
    // The longest cron a real schedule needs (every minute listed) is still taken.
    let every_minute = (0..60).map(|m| m.to_string()).collect::<Vec<_>>().join(",");
    let listed = format!("0 {every_minute} 4 * * *");
    let res = put(&app, ACME_SUB, "listed", &cleanup_schedule(&listed, "acme")).await;
    assert!(res.status().is_success(), "{}", res.text().await.unwrap());
}

#[tokio::test]
async fn a_schedules_job_template_is_bounded_like_post_jobs() {
    let app = spawn_app_with(drover_tests::harness::Durability::None, |c| c.jobs.max_payload_bytes = 2048).await;
    for attempts in [0u64, 101, 4_294_967_295] {
        let mut body = cleanup_schedule("0 * * * *", "acme");
        body["max_attempts"] = json!(attempts);
        let p = problem(put(&app, ACME_SUB, "s", &body).await, 422).await;
        assert_eq!(fields(&p), vec!["max_attempts".to_owned()], "{attempts}: {p}");
    }
    let mut body = cleanup_schedule("0 * * * *", "acme");
    body["payload"]["skus"] = json!((0..200).map(|i| format!("SKU-{i:020}")).collect::<Vec<_>>());
    let p = problem(put(&app, ACME_SUB, "s", &body).await, 413).await;
    assert!(p["detail"].as_str().unwrap().contains("2048"), "{p}");
    let mut body = cleanup_schedule("0 * * * *", "acme");
    body["max_attempts"] = json!(100);
    body["priority"] = json!(9);
    assert_eq!(put(&app, ACME_SUB, "s", &body).await.status(), 201);
}

#[tokio::test]
async fn an_account_at_its_schedule_quota_cannot_create_more_even_all_at_once() {
    let app = spawn_app_with(drover_tests::harness::Durability::None, |c| c.schedules.max_per_account = 3).await;
    let body = cleanup_schedule("0 * * * *", "acme");
    let names: Vec<String> = (0..12).map(|i| format!("s{i}")).collect();
    let statuses: Vec<u16> = futures::future::join_all(names.iter().map(|n| put(&app, ACME_SUB, n, &body)))
        .await
        .into_iter()
        .map(|r| r.status().as_u16())
        .collect();
    assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 3, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 409).count(), 9, "{statuses:?}");
    let p = problem(put(&app, ACME_SUB, "more", &cleanup_schedule("0 * * * *", "acme")).await, 409).await;
    let detail = p["detail"].as_str().unwrap();
    assert!(detail.contains("3 schedules") && detail.contains("delete one"), "{detail}");
    assert!(!detail.contains("globex"), "{detail}");
    // Replacing one is not a new one; another account has its own quota.
    let created: Vec<usize> = (0..12).filter(|i| statuses[*i] == 201).collect();
    let name = format!("s{}", created[0]);
    assert_eq!(
        put(&app, ACME_SUB, &name, &cleanup_schedule("5 * * * *", "acme")).await.status(),
        200
    );
    assert_eq!(
        put(&app, GLOBEX_SUB, "g", &cleanup_schedule("0 * * * *", "globex")).await.status(),
        201
    );
    // Deleting one frees its place.
    assert_eq!(delete(&app, ACME_SUB, &name).await, 204);
    assert_eq!(
        put(&app, ACME_SUB, "more", &cleanup_schedule("0 * * * *", "acme")).await.status(),
        201
    );
}

/// Found by the second set of audits of 2026-12-05: the quota was per account id, and a
/// key for every account may name accounts nobody registered (as `POST /v1/jobs` accepts
/// them), so one key could hold `max_per_account` schedules for each account id it made
/// up, and every scheduler reads the whole hash again after each write. A key's
/// creations are bounded across all its accounts (`api.schedules.max_per_key`), even all
/// at once; another key has its own bound, and the refusal speaks only of the caller's.
#[tokio::test]
async fn a_key_making_up_accounts_is_refused_past_its_own_schedule_quota_and_other_keys_are_not() {
    let app = spawn_app_with(drover_tests::harness::Durability::None, |c| c.schedules.max_per_key = 3).await;
    // One schedule each for 8 made-up accounts: each far below its account's quota (50).
    let names: Vec<String> = (0..8).map(|i| format!("s{i}")).collect();
    let bodies: Vec<Value> = (0..8).map(|i| cleanup_schedule("0 * * * *", &format!("made-up-{i}"))).collect();
    let statuses: Vec<u16> = futures::future::join_all(names.iter().zip(&bodies).map(|(n, b)| put(&app, SUBMITTER, n, b)))
        .await
        .into_iter()
        .map(|r| r.status().as_u16())
        .collect();
    assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 3, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 409).count(), 5, "{statuses:?}");
    let p = problem(put(&app, SUBMITTER, "more", &cleanup_schedule("0 * * * *", "made-up-9")).await, 409).await;
    let detail = p["detail"].as_str().unwrap();
    assert!(
        detail.contains("3 schedules") && detail.contains("api.schedules.max_per_key") && detail.contains("delete one"),
        "{detail}"
    );
    assert!(!detail.contains("made-up"), "{detail}");
    let listed = app.get_json(ADMIN, "/v1/schedules").await;
    assert_eq!(
        listed["schedules"].as_array().unwrap().len(),
        3,
        "nothing stored past the bound: {listed}"
    );

    // Other keys are unaffected: a key for every account, and a tenant's key for its own.
    assert_eq!(
        put(&app, ADMIN, "more", &cleanup_schedule("0 * * * *", "made-up-9")).await.status(),
        201
    );
    for i in 0..3 {
        let res = put(&app, ACME_SUB, &format!("a{i}"), &cleanup_schedule("0 * * * *", "acme")).await;
        assert_eq!(res.status(), 201);
    }
    // A tenant's key at its own bound is told of its own count only.
    let p = problem(put(&app, ACME_SUB, "a3", &cleanup_schedule("0 * * * *", "acme")).await, 409).await;
    let detail = p["detail"].as_str().unwrap();
    assert!(detail.contains("this API key already holds 3 schedules"), "{detail}");
    assert!(!detail.contains("made-up") && !detail.contains("max_per_account"), "{detail}");

    // Replacing one is not a new one; deleting one, even with another key, frees its place.
    let created: Vec<usize> = (0..8).filter(|i| statuses[*i] == 201).collect();
    let (kept, freed) = (format!("s{}", created[0]), format!("s{}", created[1]));
    let account = format!("made-up-{}", created[0]);
    assert_eq!(
        put(&app, SUBMITTER, &kept, &cleanup_schedule("5 * * * *", &account)).await.status(),
        200
    );
    assert_eq!(delete(&app, ADMIN, &freed).await, 204);
    assert_eq!(
        put(&app, SUBMITTER, "again", &cleanup_schedule("0 * * * *", "made-up-10"))
            .await
            .status(),
        201
    );
    problem(
        put(&app, SUBMITTER, "past", &cleanup_schedule("0 * * * *", "made-up-11")).await,
        409,
    )
    .await;
}

/// A private Redis whose store holds the schedule `each-minute` (a cleanup at second 10
/// of every minute), and a scheduler configuration with a grace of one second.
async fn each_minute_schedule() -> (
    drover_tests::harness::RedisServer,
    drover::queue::RedisStore,
    drover::schedule::SchedulerConfig,
) {
    use drover::schedule::{ScheduleSpec, ScheduleStore, SchedulerConfig};
    let redis = drover_tests::harness::RedisServer::start(drover_tests::harness::Durability::None);
    let store = drover::queue::RedisStore::connect(&redis.url(), "drover", Default::default())
        .await
        .unwrap();
    let spec = ScheduleSpec {
        cron: "10 * * * * *".into(),
        kind: JobKind::Cleanup,
        payload: cleanup_schedule("10 * * * * *", "acme")["payload"].clone(),
        enabled: true,
        priority: 0,
        max_attempts: None,
    };
    ScheduleStore::new(store.connection(), "drover")
        .put("each-minute", spec)
        .await
        .unwrap();
    let config = SchedulerConfig {
        misfire_grace_ms: 1000,
        ..SchedulerConfig::default()
    };
    (redis, store, config)
}

/// Found by the sixth audits of 2026-12-06: on a cluster the scheduler read Redis's
/// clock with a bare `TIME`, a command without a key that the client sends to any node,
/// so replicas ticking the same schedules each read some node's clock. Every read goes
/// to the node holding the schedules.
#[tokio::test]
async fn on_a_cluster_the_schedulers_clock_is_the_schedules_nodes() {
    use drover::schedule::ScheduleStore;
    use drover_tests::harness::KeyMonitor;
    let cluster = drover_tests::harness::RedisCluster::start(3, 0);
    let store = drover::queue::RedisStore::connect(&cluster.url(), "drover", Default::default())
        .await
        .unwrap();
    let schedules = ScheduleStore::new(store.connection(), "drover");
    let home = cluster.primary_serving("drover:schedules");
    let monitors: Vec<(u16, KeyMonitor)> = cluster.primaries().into_iter().map(|p| (p, KeyMonitor::start(p))).collect();
    const READS: usize = 12;
    for _ in 0..READS {
        schedules.server_time().await.unwrap();
    }
    for (port, monitor) in monitors {
        let times = monitor.finish_lines().iter().filter(|l| l.contains("\"TIME\"")).count();
        let want = if port == home { READS } else { 0 };
        assert_eq!(times, want, "clock reads on node {port} (the schedules' node is {home})");
    }
}

/// The key's index and the hash of creators share the schedules' slot: on a cluster a
/// creation counted against a key, and a delete by another, are one script each.
#[tokio::test]
async fn on_a_cluster_a_keys_schedules_are_counted_and_freed() {
    use drover::schedule::{ScheduleError, ScheduleSpec, ScheduleStore};
    let cluster = drover_tests::harness::RedisCluster::start(3, 0);
    let store = drover::queue::RedisStore::connect(&cluster.url(), "drover", Default::default())
        .await
        .unwrap();
    let spec = |account: &str| ScheduleSpec {
        cron: "0 3 * * *".into(),
        kind: JobKind::Cleanup,
        payload: cleanup_schedule("0 3 * * *", account)["payload"].clone(),
        enabled: true,
        priority: 0,
        max_attempts: None,
    };
    let producer = ScheduleStore::new(store.connection(), "drover").with_max_per_key("producer", 2);
    producer.put("daily", spec("made-up-1")).await.unwrap();
    producer.put("daily", spec("made-up-2")).await.unwrap();
    let refused = producer.put("daily", spec("made-up-3")).await;
    assert!(matches!(refused, Err(ScheduleError::KeyQuota { max: 2 })), "{refused:?}");
    let other = ScheduleStore::new(store.connection(), "drover").with_max_per_key("other", 2);
    other.put("daily", spec("made-up-3")).await.unwrap();
    assert!(other.delete(Some("made-up-1"), "daily").await.unwrap());
    producer.put("daily", spec("made-up-4")).await.unwrap();
}

#[tokio::test]
async fn schedule_writes_count_against_the_keys_write_rate_limit() {
    let app = spawn_app_with(drover_tests::harness::Durability::None, |c| {
        c.rate_limit.per_minute = 60;
        c.rate_limit.burst = 3;
    })
    .await;
    let mut statuses = Vec::new();
    for i in 0..6 {
        statuses.push(
            put(&app, ACME_SUB, &format!("s{i}"), &cleanup_schedule("0 * * * *", "acme"))
                .await
                .status()
                .as_u16(),
        );
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    // The limit is the key's: its job submissions are limited too.
    problem(app.submit(ACME_SUB, &cleanup_body("acme")).await, 429).await;
}

#[tokio::test]
async fn the_scheduler_counts_each_tick_it_made_and_each_tick_it_missed_once() {
    use chrono::{TimeZone, Utc};
    use drover::schedule::{ScheduleStore, Scheduler};
    let (_redis, store, config) = each_minute_schedule().await;
    let schedules = ScheduleStore::new(store.connection(), "drover");
    let mut scheduler = Scheduler::new(store.clone(), schedules, None, config.clone());
    let counters = scheduler.counters();
    let at = |m: u32, s: u32| Utc.with_ymd_and_hms(2030, 1, 1, 12, m, s).unwrap();

    // Started at :05; the :10 tick is first looked at 20 s late (the loop stalled).
    assert_eq!(scheduler.tick_once(at(0, 5)).await, 0);
    assert_eq!(scheduler.tick_once(at(0, 30)).await, 0);
    assert_eq!(scheduler.tick_once(at(0, 31)).await, 0);
    assert_eq!((counters.ticks(), counters.misfires()), (0, 1), "one missed tick, counted once");
    // The next tick is on time.
    assert_eq!(scheduler.tick_once(at(1, 10)).await, 1);
    assert_eq!((counters.ticks(), counters.misfires()), (1, 1));
    // Its job starts a trace of its own (found by an audit of 2026-12-06: a schedule's
    // running job showed no trace id, though its runs' lines carried one).
    use drover::queue::JobStore;
    let made = store
        .list(&drover::queue::ListQuery {
            kinds: vec![JobKind::Cleanup],
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .jobs;
    assert_eq!(made.len(), 1);
    let trace = made[0].trace_id.as_deref().expect("the job has a trace id");
    assert_eq!(trace.len(), 32, "{trace}");

    // A replica started long after a tick does not call it missed: it was another's.
    let schedules = ScheduleStore::new(store.connection(), "drover");
    let mut late_starter = Scheduler::new(store.clone(), schedules, None, config);
    late_starter.tick_once(at(1, 40)).await;
    let seen = late_starter.counters();
    assert_eq!((seen.ticks(), seen.misfires()), (0, 0));
}

/// M3: every replica's scheduler polls once a second; with no schedule changed it must not
/// read every schedule's JSON again (one `HGETALL` of up to accounts × quota entries) on
/// each poll, yet a schedule created, replaced or deleted is seen by the next poll.
#[tokio::test]
async fn the_scheduler_reads_the_schedules_again_only_after_one_changed() {
    let redis = drover_tests::harness::RedisServer::start(drover_tests::harness::Durability::None);
    scheduler_sees_each_change(&redis.url(), true).await;
}

/// The same on a Redis Cluster: the schedules and their version share a slot.
#[tokio::test]
async fn on_a_cluster_the_scheduler_sees_each_schedule_created_replaced_or_deleted() {
    let cluster = drover_tests::harness::RedisCluster::start(3, 0);
    scheduler_sees_each_change(&cluster.url(), false).await;
}

/// Ten polls with nothing changed (at most one `HGETALL` when `count_reads`), then a
/// schedule created, one replaced and one deleted, each seen by the next poll.
async fn scheduler_sees_each_change(url: &str, count_reads: bool) {
    use chrono::{TimeZone, Utc};
    use drover::schedule::{ScheduleSpec, ScheduleStore, Scheduler, SchedulerConfig};
    let store = drover::queue::RedisStore::connect(url, "drover", Default::default()).await.unwrap();
    let schedules = ScheduleStore::new(store.connection(), "drover");
    let spec = |cron: &str, account: &str| ScheduleSpec {
        cron: cron.into(),
        kind: JobKind::Cleanup,
        payload: cleanup_schedule(cron, account)["payload"].clone(),
        enabled: true,
        priority: 0,
        max_attempts: None,
    };
    for (name, account) in [("nightly-a", "acme"), ("nightly-b", "acme"), ("nightly-c", "globex")] {
        schedules.put(name, spec("0 3 * * *", account)).await.unwrap();
    }
    let config = SchedulerConfig {
        misfire_grace_ms: 5_000,
        ..SchedulerConfig::default()
    };
    let mut scheduler = Scheduler::new(store.clone(), schedules.clone(), None, config);
    let at = |h: u32, m: u32, s: u32| Utc.with_ymd_and_hms(2030, 1, 1, h, m, s).unwrap();
    let mut conn = store.connection();

    let before = if count_reads {
        command_calls(&mut conn, "hgetall").await
    } else {
        0
    };
    for s in 0..10 {
        assert_eq!(scheduler.tick_once(at(12, 0, s)).await, 0);
    }
    if count_reads {
        let reads = command_calls(&mut conn, "hgetall").await - before;
        assert!(reads <= 1, "{reads} HGETALLs of the schedules in 10 polls with nothing changed");
    }

    // Created: its first tick is enqueued.
    schedules.put("hourly", spec("6 * * * *", "acme")).await.unwrap();
    assert_eq!(scheduler.tick_once(at(12, 6, 1)).await, 1, "a created schedule is seen");
    // Replaced: its new cron is used.
    schedules.put("nightly-a", spec("7 12 * * *", "acme")).await.unwrap();
    assert_eq!(scheduler.tick_once(at(12, 7, 1)).await, 1, "a replaced schedule is seen");
    // Deleted: it makes no more jobs, and its ticks are forgotten (found by the audit of
    // 2026-12-06: every schedule name ever ticked stayed in memory for the process's
    // life, so short-lived schedules grew it without bound).
    assert!(schedules.delete(Some("acme"), "hourly").await.unwrap());
    assert_eq!(scheduler.tick_once(at(13, 6, 1)).await, 0, "a deleted schedule is seen");
    assert_eq!(scheduler.schedules_remembered(), 1, "only nightly-a's tick is remembered");
}

/// Found following the README: a schedule created at 19:46:45 with `*/2 * * * *` made a
/// job at once, for its 19:46:00 tick — a tick from before it existed, still within
/// `misfire_grace_ms`. A schedule's first tick is the first one at or after its creation.
#[tokio::test]
async fn a_new_schedule_makes_no_job_for_a_tick_before_it_was_created() {
    use chrono::{DurationRound, Utc};
    use drover::schedule::{ScheduleSpec, ScheduleStore, Scheduler, SchedulerConfig};
    let redis = drover_tests::harness::RedisServer::start(drover_tests::harness::Durability::None);
    let store = drover::queue::RedisStore::connect(&redis.url(), "drover", Default::default())
        .await
        .unwrap();
    let schedules = ScheduleStore::new(store.connection(), "drover");
    // Created after this minute's first second, so its latest tick is before it.
    let minute = chrono::Duration::minutes(1);
    while Utc::now() - Utc::now().duration_trunc(minute).unwrap() < chrono::Duration::seconds(1) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let spec = ScheduleSpec {
        cron: "0 * * * * *".into(),
        kind: JobKind::Cleanup,
        payload: cleanup_schedule("0 * * * * *", "acme")["payload"].clone(),
        enabled: true,
        priority: 0,
        max_attempts: None,
    };
    let (created, _) = schedules.put("each-minute", spec).await.unwrap();
    let config = SchedulerConfig {
        misfire_grace_ms: 600_000,
        ..SchedulerConfig::default()
    };
    let mut scheduler = Scheduler::new(store.clone(), schedules, None, config);
    assert_eq!(scheduler.tick_once(Utc::now()).await, 0, "no job for the tick before its creation");
    let next = created.created_at.duration_trunc(minute).unwrap() + minute;
    assert_eq!(
        scheduler.tick_once(next + chrono::Duration::seconds(1)).await,
        1,
        "its first tick after creation"
    );
}

/// A schedule of acme's ticking every second, `kind` (cleanup or sync), enabled or not.
fn each_second(kind: JobKind, enabled: bool) -> drover::schedule::ScheduleSpec {
    let payload = match kind {
        JobKind::Sync => json!({"account_id": "acme", "marketplace_id": MARKETPLACE, "resources": ["orders"]}),
        _ => cleanup_schedule("* * * * * *", "acme")["payload"].clone(),
    };
    drover::schedule::ScheduleSpec {
        cron: "* * * * * *".into(),
        kind,
        payload,
        enabled,
        priority: 0,
        max_attempts: None,
    }
}

/// A queue whose account acme has the schedule `each-second` (a cleanup every second),
/// created over a second ago: its latest tick is its own.
async fn with_a_cleanup_each_second() -> (drover_tests::harness::RedisServer, drover::queue::RedisStore) {
    let redis = drover_tests::harness::RedisServer::start(drover_tests::harness::Durability::None);
    let store = drover::queue::RedisStore::connect(&redis.url(), "drover", Default::default())
        .await
        .unwrap();
    drover::schedule::ScheduleStore::new(store.connection(), "drover")
        .put("each-second", each_second(JobKind::Cleanup, true))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    (redis, store)
}

/// Console audit of 2026-12-06: the scheduler makes a tick's job once by its idempotency
/// key, which the queue keeps per kind, so a schedule whose kind was changed right after a
/// tick had its job made the tick's job again, of the new kind, on any replica that had
/// not made it (or restarted within the grace). A put that changes a schedule's kind (or
/// cron) takes effect from then: no tick before it is made again.
#[tokio::test]
async fn a_schedule_whose_kind_changed_after_a_tick_makes_no_second_job_for_it() {
    use chrono::Utc;
    use drover::schedule::{ScheduleStore, Scheduler, SchedulerConfig};
    let (_redis, store) = with_a_cleanup_each_second().await;
    let schedules = || ScheduleStore::new(store.connection(), "drover");
    let now = Utc::now();
    let mut a = Scheduler::new(store.clone(), schedules(), None, SchedulerConfig::default());
    assert_eq!(a.tick_once(now).await, 1, "replica A makes the tick's cleanup");
    schedules().put("each-second", each_second(JobKind::Sync, true)).await.unwrap();
    let mut b = Scheduler::new(store.clone(), schedules(), None, SchedulerConfig::default());
    assert_eq!(b.tick_once(now).await, 0, "replica B makes no sync for a tick that has its job");
    assert_eq!(store.counts(JobKind::Sync).await.unwrap().queued, 0);
}

/// Found by the scheduler audit of 2026-12-07: each poll read the active accounts (for
/// the built-ins) before it enqueued anything, bounded only by a database call's deadline:
/// a database that hangs held every saved schedule's ticks back (they need only Redis)
/// for as long. A poll waits a moment for the accounts. And (the review of the same day)
/// a first read that failed is tried again at the next poll, not a refresh period later:
/// until then the inactive accounts are not known. Since the second audit of that day a
/// read that outlasts a poll goes on and the next polls wait for it again; one that
/// hangs (a connection gone half-open) has another beside it after 5 s, and the first
/// to answer stands (the review of the same day).
#[tokio::test]
async fn a_database_that_hangs_holds_up_no_saved_schedule() {
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use chrono::Utc;
    use drover::schedule::{AccountSource, RegisteredAccount, ScheduleStore, Scheduler, SchedulerConfig};

    /// Accounts from a database whose first read never answers (within 30 s); later
    /// ones say acme is registered and not active.
    struct HungAtFirst(AtomicUsize);
    impl AccountSource for HungAtFirst {
        fn accounts(&self) -> Pin<Box<dyn Future<Output = Result<Vec<RegisteredAccount>, String>> + Send + '_>> {
            let first = self.0.fetch_add(1, Ordering::SeqCst) == 0;
            Box::pin(async move {
                if first {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                }
                Ok(vec![RegisteredAccount {
                    account_id: "acme".into(),
                    marketplace_ids: vec![MARKETPLACE.into()],
                    active: false,
                }])
            })
        }
    }
    let (_redis, store) = with_a_cleanup_each_second().await;
    let source = Arc::new(HungAtFirst(AtomicUsize::new(0)));
    let mut scheduler = Scheduler::new(
        store.clone(),
        ScheduleStore::new(store.connection(), "drover"),
        Some(source.clone() as Arc<dyn AccountSource>),
        SchedulerConfig::default(),
    );
    let began = std::time::Instant::now();
    assert_eq!(scheduler.tick_once(Utc::now()).await, 1, "the saved schedule's tick");
    assert!(began.elapsed() < Duration::from_secs(3), "the tick waited {:?}", began.elapsed());
    // The hung read is waited for a second a poll (a poll that waited for it, 30 s, is
    // the defect; a loaded machine's poll may take twice a second); after 5 s another is
    // made beside it.
    let mut ticks = 1;
    while ticks > 0 {
        assert!(began.elapsed() < Duration::from_secs(15), "acme never read as inactive");
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let polled = std::time::Instant::now();
        ticks = scheduler.tick_once(Utc::now()).await;
        assert!(
            polled.elapsed() < Duration::from_millis(2500),
            "a poll waited {:?}",
            polled.elapsed()
        );
    }
    assert_eq!(source.0.load(Ordering::SeqCst), 2);
}

/// A first read of the accounts that failed (after outlasting a poll) is made again at
/// the next poll at once, not a refresh period later: until one has succeeded the
/// inactive accounts are not known (the review of 2026-12-07).
#[tokio::test]
async fn a_first_read_of_the_accounts_that_failed_is_made_again_at_the_next_poll() {
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use chrono::Utc;
    use drover::schedule::{AccountSource, RegisteredAccount, ScheduleStore, Scheduler, SchedulerConfig};

    /// The first read hangs 1.5 s and fails; later ones say acme is not active.
    struct FailsAtFirst(AtomicUsize);
    impl AccountSource for FailsAtFirst {
        fn accounts(&self) -> Pin<Box<dyn Future<Output = Result<Vec<RegisteredAccount>, String>> + Send + '_>> {
            let first = self.0.fetch_add(1, Ordering::SeqCst) == 0;
            Box::pin(async move {
                if first {
                    tokio::time::sleep(Duration::from_millis(1500)).await;
                    return Err("the connection was reset".into());
                }
                Ok(vec![RegisteredAccount {
                    account_id: "acme".into(),
                    marketplace_ids: vec![MARKETPLACE.into()],
                    active: false,
                }])
            })
        }
    }
    let (_redis, store) = with_a_cleanup_each_second().await;
    let source = Arc::new(FailsAtFirst(AtomicUsize::new(0)));
    let mut scheduler = Scheduler::new(
        store.clone(),
        ScheduleStore::new(store.connection(), "drover"),
        Some(source.clone() as Arc<dyn AccountSource>),
        SchedulerConfig::default(),
    );
    assert_eq!(scheduler.tick_once(Utc::now()).await, 1, "the saved schedule's tick");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        scheduler.tick_once(Utc::now()).await,
        0,
        "read again at the next poll: acme is not active"
    );
    assert_eq!(source.0.load(Ordering::SeqCst), 2);
}

/// Found by the scheduler audit of 2026-12-07 (second): a poll waited 1 s for the
/// accounts and then dropped the read, and the next poll began another: with a table (or
/// a database) that always takes longer than that, no read ever finished and no
/// built-in schedule of any account ran. A read outlasting a poll goes on.
#[tokio::test]
async fn the_built_ins_run_when_every_read_of_the_accounts_outlasts_a_poll() {
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::Arc;

    use chrono::Utc;
    use drover::schedule::{AccountSource, BuiltIn, DefaultSchedules, RegisteredAccount, ScheduleStore, Scheduler, SchedulerConfig};

    /// acme, active, from a database that takes 1.5 s for each read.
    struct Slow;
    impl AccountSource for Slow {
        fn accounts(&self) -> Pin<Box<dyn Future<Output = Result<Vec<RegisteredAccount>, String>> + Send + '_>> {
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(1500)).await;
                Ok(vec![RegisteredAccount {
                    account_id: "acme".into(),
                    marketplace_ids: vec![MARKETPLACE.into()],
                    active: true,
                }])
            })
        }
    }
    let redis = drover_tests::harness::RedisServer::start(drover_tests::harness::Durability::None);
    let store = drover::queue::RedisStore::connect(&redis.url(), "drover", Default::default())
        .await
        .unwrap();
    let config = SchedulerConfig {
        defaults: DefaultSchedules {
            sync: BuiltIn {
                enabled: true,
                cron: "* * * * * *".into(),
            },
            ..DefaultSchedules::default()
        },
        ..SchedulerConfig::default()
    };
    let mut scheduler = Scheduler::new(
        store.clone(),
        ScheduleStore::new(store.connection(), "drover"),
        Some(Arc::new(Slow) as Arc<dyn AccountSource>),
        config,
    );
    let until = std::time::Instant::now() + Duration::from_secs(8);
    let mut made = 0;
    while made == 0 && std::time::Instant::now() < until {
        made += scheduler.tick_once(Utc::now()).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let syncs = store
        .list(&ListQuery {
            kinds: vec![JobKind::Sync],
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(made > 0 && !syncs.jobs.is_empty(), "no built-in sync in 8 s of polls");
    assert_eq!(syncs.jobs[0].payload["account_id"], "acme");
}

/// Found by the review of 2026-12-07: an account's other marketplaces were named
/// `builtin.<what>.<account>.<marketplace>`, the name of another account's home built-in
/// when that account is called `<account>.<marketplace>` (account ids may hold `.`): one
/// of the two made its jobs and the other's were taken for them. No name is shared.
#[tokio::test]
async fn built_in_names_of_two_accounts_never_meet() {
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::Arc;

    use chrono::Utc;
    use drover::schedule::{AccountSource, BuiltIn, DefaultSchedules, RegisteredAccount, ScheduleStore, Scheduler, SchedulerConfig};

    struct Two;
    impl AccountSource for Two {
        fn accounts(&self) -> Pin<Box<dyn Future<Output = Result<Vec<RegisteredAccount>, String>> + Send + '_>> {
            let account = |id: &str, marketplaces: &[&str]| RegisteredAccount {
                account_id: id.into(),
                marketplace_ids: marketplaces.iter().map(|m| m.to_string()).collect(),
                active: true,
            };
            Box::pin(async move {
                Ok(vec![
                    account("acme", &["ATVPDKIKX0DER", "A1PA6795UKMFR9"]),
                    account("acme.A1PA6795UKMFR9", &["A1PA6795UKMFR9"]),
                ])
            })
        }
    }
    let redis = drover_tests::harness::RedisServer::start(drover_tests::harness::Durability::None);
    let store = drover::queue::RedisStore::connect(&redis.url(), "drover", Default::default())
        .await
        .unwrap();
    let off = BuiltIn {
        enabled: false,
        cron: "0 3 * * *".into(),
    };
    let config = SchedulerConfig {
        defaults: DefaultSchedules {
            sync: BuiltIn {
                enabled: true,
                cron: "* * * * * *".into(),
            },
            daily_audit: off.clone(),
            weekly_audit: off,
            ..DefaultSchedules::default()
        },
        ..SchedulerConfig::default()
    };
    let schedules = ScheduleStore::new(store.connection(), "drover");
    // And a saved schedule whose `<account>/<name>` reads as one of them would with '/'
    // (the last review of 2026-12-07).
    let saved = drover::schedule::ScheduleSpec {
        cron: "* * * * * *".into(),
        kind: JobKind::Sync,
        payload: json!({"account_id": "builtin.sync.acme", "marketplace_id": "A1PA6795UKMFR9", "resources": ["orders"]}),
        enabled: true,
        priority: 0,
        max_attempts: None,
    };
    schedules.put("A1PA6795UKMFR9", saved).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut scheduler = Scheduler::new(store.clone(), schedules, Some(Arc::new(Two) as Arc<dyn AccountSource>), config);
    assert_eq!(
        scheduler.tick_once(Utc::now()).await,
        4,
        "a sync for each account's each marketplace, and the saved schedule's job"
    );
}

/// Found by the scheduler audit of 2026-12-07: the API says an inactive account is
/// skipped by schedules, but only the built-ins skipped it: a saved schedule of an
/// account set inactive went on making jobs (and calling its seller's marketplace).
#[tokio::test]
async fn an_inactive_accounts_saved_schedules_make_no_jobs() {
    use std::sync::Arc;

    use chrono::Utc;
    use drover::job::{AccountId, MarketplaceId};
    use drover::schedule::{ScheduleStore, Scheduler, SchedulerConfig};

    let (_redis, store) = with_a_cleanup_each_second().await;
    let acme = AccountId::parse("acme").unwrap();
    let (_db, repo) = registered(acme.clone(), vec![MarketplaceId::parse(MARKETPLACE).unwrap()]).await;
    repo.set_active(&acme, false).await.unwrap();
    let config = SchedulerConfig {
        accounts_refresh_ms: 1,
        ..SchedulerConfig::default()
    };
    let schedules = ScheduleStore::new(store.connection(), "drover");
    let mut scheduler = Scheduler::new(store.clone(), schedules, Some(Arc::new(repo.clone())), config);
    assert_eq!(scheduler.tick_once(Utc::now()).await, 0, "no job for an inactive account");
    repo.set_active(&acme, true).await.unwrap();
    // The poll that sees it active again makes no tick from before; the ones after make
    // its ticks (a loaded machine's read of the accounts may outlast a poll: a few more).
    scheduler.tick_once(Utc::now()).await;
    let mut made = 0;
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(1100)).await;
        made = scheduler.tick_once(Utc::now()).await;
        if made > 0 {
            break;
        }
    }
    assert_eq!(made, 1, "active again: its ticks from then on");
}

/// Console audit of 2026-12-06: a schedule enabled again made a job for a tick that fell
/// while it was disabled (within the grace), and every replica counted the ticks of the
/// disabled time as misfires ("their jobs never ran"). Enabling a schedule again takes
/// effect from then: no tick before it is made or counted.
#[tokio::test]
async fn a_schedule_enabled_again_makes_no_job_for_a_tick_while_it_was_disabled_nor_counts_one_missed() {
    use chrono::Utc;
    use drover::schedule::{ScheduleStore, Scheduler, SchedulerConfig};
    let (_redis, store) = with_a_cleanup_each_second().await;
    let schedules = || ScheduleStore::new(store.connection(), "drover");
    let mut scheduler = Scheduler::new(store.clone(), schedules(), None, SchedulerConfig::default());
    let counters = scheduler.counters();
    assert_eq!(scheduler.tick_once(Utc::now()).await, 1);
    schedules().put("each-second", each_second(JobKind::Cleanup, false)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (enabled, _) = schedules().put("each-second", each_second(JobKind::Cleanup, true)).await.unwrap();
    let at = enabled.updated_at;
    // Its latest tick at `at` fell while it was disabled (unless `at` is a whole second).
    let on_a_tick = at.timestamp_subsec_millis() == 0;
    assert_eq!(scheduler.tick_once(at).await, usize::from(on_a_tick), "a tick of the disabled time");
    assert_eq!(counters.misfires(), 0, "the disabled time's ticks are no misfires");
}

/// Bytes this Redis has sent its clients (`INFO stats`), replies of every command alike.
async fn bytes_sent(conn: &mut drover::redis_conn::RedisConn) -> u64 {
    let info: String = redis::cmd("INFO").arg("stats").query_async(conn).await.unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("total_net_output_bytes:"))
        .map_or(0, |n| n.trim().parse().unwrap())
}

/// A disabled schedule of `account` whose payload is `skus` SKUs of 36 characters
/// (about 39 bytes of JSON each).
fn big_schedule(account: &str, skus: usize) -> Value {
    let mut body = cleanup_schedule("0 * * * *", account);
    body["enabled"] = json!(false);
    body["payload"]["skus"] = json!((0..skus).map(|i| format!("SKU-{i:032}")).collect::<Vec<_>>());
    body
}

/// The `(account_id, name)` of each schedule a listing shows, sorted.
async fn listed(app: &TestApp, key: &str) -> Vec<(String, String)> {
    let list = app.get_json(key, "/v1/schedules").await;
    let mut seen = list["schedules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["account_id"].as_str().unwrap_or("").to_owned(),
                s["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect::<Vec<_>>();
    seen.sort();
    seen
}

/// N1: `GET /v1/schedules` with a key for one account read every tenant's schedules from
/// Redis (one `HGETALL` of the whole hash) and dropped the others after parsing them, so
/// one tenant's large schedules slowed every other tenant's listing and filled the API's
/// memory. A scoped listing now reads its accounts' index and those schedules only: Redis
/// sends it less than one of the other tenant's schedules.
#[tokio::test]
async fn a_scoped_keys_listing_reads_no_other_accounts_schedules_from_redis() {
    let app = spawn_app().await;
    let acme = big_schedule("acme", 1000);
    let one = serde_json::to_vec(&acme["payload"]).unwrap().len() as u64;
    for i in 0..10 {
        assert_eq!(put(&app, ACME_SUB, &format!("big-{i}"), &acme).await.status(), 201);
    }
    assert_eq!(
        put(&app, GLOBEX_SUB, "nightly", &cleanup_schedule("0 3 * * *", "globex"))
            .await
            .status(),
        201
    );
    let mut conn = app.store.connection();
    // The first listing may build the index once; the second is any listing's cost.
    for _ in 0..2 {
        let before = bytes_sent(&mut conn).await;
        let seen = listed(&app, GLOBEX_SUB).await;
        let sent = bytes_sent(&mut conn).await - before;
        assert_eq!(seen, vec![("globex".to_owned(), "nightly".to_owned())]);
        assert!(
            sent < one,
            "globex's listing made Redis send {sent} bytes; one of acme's 10 schedules is {one} bytes"
        );
    }
    // Keys for several accounts, or for all, still see each of theirs.
    assert_eq!(listed(&app, MULTI).await.len(), 11);
    assert_eq!(listed(&app, READER).await.len(), 11);
    assert_eq!(listed(&app, ACME).await.len(), 10);
}

/// Found by the hostile-tenant audit of 2026-12-05: a schedule asked for by name read
/// more than that name's schedules. A scoped key's `GET /v1/schedules/globex%2Fnightly`
/// (a name that can never be saved) made the API read and parse globex's schedule
/// through the older release's field before answering 404, so the cost told whether it
/// existed; and a key for every account read every tenant's schedule, whole, for any
/// name, even one nobody uses.
#[tokio::test]
async fn a_schedule_asked_for_by_name_reads_only_that_names_schedules() {
    let app = spawn_app().await;
    let big = big_schedule("globex", 1000);
    let one = serde_json::to_vec(&big["payload"]).unwrap().len() as u64;
    assert_eq!(put(&app, GLOBEX_SUB, "nightly", &big).await.status(), 201);
    for i in 0..5 {
        assert_eq!(
            put(&app, ACME_SUB, &format!("big-{i}"), &big_schedule("acme", 1000)).await.status(),
            201
        );
    }
    let mut conn = app.store.connection();
    // A 404 reads no schedule; the one found is read once.
    for (key, path, status, schedules_read) in [
        (ACME_SUB, "/v1/schedules/globex%2Fnightly", 404, 0),
        (ACME_SUB, "/v1/schedules/globex%2Fnope", 404, 0),
        (READER, "/v1/schedules/nope", 404, 0),
        (READER, "/v1/schedules/big-3", 200, 1),
    ] {
        let before = bytes_sent(&mut conn).await;
        let r = app.get(key, path).send().await.unwrap();
        let sent = bytes_sent(&mut conn).await - before;
        assert_eq!(r.status(), status, "{path}");
        assert!(
            sent < schedules_read * one + one / 2,
            "{path}: Redis sent {sent} bytes; one schedule is {one} bytes, six are stored"
        );
    }
    let r = app
        .client
        .delete(app.url("/v1/schedules/globex%2Fnightly"))
        .bearer_auth(ACME_SUB)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(app.get(GLOBEX_SUB, "/v1/schedules/nightly").send().await.unwrap().status(), 200);
}

/// Schedules an older release saved (before the per-account index, and before names were
/// per account: a field without `/`) are listed for their account, also by listings
/// that all start at once; replacing and deleting them keeps the listings right.
#[tokio::test]
async fn schedules_saved_by_an_older_release_are_listed_for_their_account() {
    use drover::schedule::{Schedule, ScheduleSpec};
    let app = spawn_app().await;
    let old = |name: &str, account: &str| {
        let spec: ScheduleSpec = serde_json::from_value(cleanup_schedule("0 4 * * *", account)).unwrap();
        let now = chrono::Utc::now();
        let s = Schedule {
            name: name.into(),
            spec,
            created_at: now,
            updated_at: now,
            effective_at: None,
        };
        serde_json::to_string(&s).unwrap()
    };
    let key = format!("{}:schedules", app.store.namespace());
    let mut conn = app.store.connection();
    let _: () = redis::cmd("HSET")
        .arg(&key)
        .arg("acme/per-account")
        .arg(old("per-account", "acme"))
        .arg("before-accounts")
        .arg(old("before-accounts", "acme"))
        .arg("globex-before-accounts")
        .arg(old("globex-before-accounts", "globex"))
        .query_async(&mut conn)
        .await
        .unwrap();
    let acme = |names: &[&str]| names.iter().map(|n| ("acme".to_owned(), (*n).to_owned())).collect::<Vec<_>>();
    let at_once = futures::future::join_all((0..8).map(|_| listed(&app, ACME))).await;
    for seen in at_once {
        assert_eq!(seen, acme(&["before-accounts", "per-account"]));
    }
    assert_eq!(
        listed(&app, GLOBEX_SUB).await,
        vec![("globex".to_owned(), "globex-before-accounts".to_owned())]
    );
    assert_eq!(listed(&app, READER).await.len(), 3);
    // Saved again: moved to its per-account field, listed once.
    assert_eq!(
        put(&app, ACME_SUB, "before-accounts", &cleanup_schedule("0 5 * * *", "acme"))
            .await
            .status(),
        200
    );
    assert_eq!(listed(&app, ACME).await, acme(&["before-accounts", "per-account"]));
    assert_eq!(delete(&app, ACME_SUB, "per-account").await, 204);
    assert_eq!(listed(&app, ACME).await, acme(&["before-accounts"]));
    assert_eq!(
        put(&app, ACME_SUB, "new", &cleanup_schedule("0 6 * * *", "acme")).await.status(),
        201
    );
    assert_eq!(listed(&app, ACME).await, acme(&["before-accounts", "new"]));
}

/// An unreadable schedule in the field an older release used (`<name>`, no account in
/// it) cannot say whose it is: for a scoped key asking for that name it is as absent as
/// any other tenant's (404, not a 500 that tells the key something is there), and the
/// key still reads and deletes its own schedule of that name.
#[tokio::test]
async fn an_unreadable_schedule_of_an_older_release_is_a_404_for_a_scoped_key() {
    let app = spawn_app().await;
    let key = format!("{}:schedules", app.store.namespace());
    let mut conn = app.store.connection();
    let _: () = redis::cmd("HSET")
        .arg(&key)
        .arg("nightly")
        .arg("{not a schedule")
        .query_async(&mut conn)
        .await
        .unwrap();
    let res = app.get(ACME_SUB, "/v1/schedules/nightly").send().await.unwrap();
    let p = problem(res, 404).await;
    assert!(!p.to_string().contains("not a schedule"), "{p}");
    assert_eq!(delete(&app, ACME_SUB, "nightly").await, 404);
    assert_eq!(
        put(&app, ACME_SUB, "nightly", &cleanup_schedule("0 4 * * *", "acme"))
            .await
            .status(),
        201
    );
    assert_eq!(app.get(ACME_SUB, "/v1/schedules/nightly").send().await.unwrap().status(), 200);
    assert_eq!(delete(&app, ACME_SUB, "nightly").await, 204);
}

/// N1: a schedule's payload was capped only by `api.jobs.max_payload_bytes` (1 MiB), so 50
/// schedules let one account store 50 MiB that every listing of theirs, and the
/// scheduler, reads. Its own cap, `api.schedules.max_payload_bytes` (64 KiB), is a 413
/// naming it.
#[tokio::test]
async fn a_schedule_payload_over_api_schedules_max_payload_bytes_is_a_413_naming_it() {
    let app = spawn_app().await;
    // About 98 KB: under the jobs' 1 MiB, over the schedules' 64 KiB.
    let p = problem(put(&app, ACME_SUB, "big", &big_schedule("acme", 2500)).await, 413).await;
    let detail = p["detail"].as_str().unwrap();
    assert!(
        detail.contains("api.schedules.max_payload_bytes") && detail.contains("65536"),
        "{detail}"
    );
    assert_eq!(
        app.get(ACME, "/v1/schedules/big").send().await.unwrap().status(),
        404,
        "nothing stored"
    );
    assert_eq!(put(&app, ACME_SUB, "big", &big_schedule("acme", 1500)).await.status(), 201);
}

/// The built-in schedules (a sync every 15 minutes, the daily and weekly audit backfills
/// for every active account) are listed beside the saved ones, as the scheduler that runs
/// them is configured: a newcomer saw syncs appear every 15 minutes that no listing
/// explained. One switched off is not listed, nor is any while no scheduler runs them.
#[tokio::test]
async fn the_listing_shows_the_built_in_schedules_the_running_scheduler_makes_jobs_for() {
    let idle = spawn_app().await;
    let list = idle.get_json(ADMIN, "/v1/schedules").await;
    assert_eq!(list["built_in"], json!([]), "no scheduler runs, so no built-in runs: {list}");

    let app = spawn_app_with(drover_tests::harness::Durability::None, |c| {
        c.scheduler.enabled = true;
        c.scheduler.poll_ms = 50;
        c.scheduler.misfire_grace_ms = 1000;
        c.scheduler.defaults.sync.cron = "*/5 * * * *".into();
        c.scheduler.defaults.weekly_audit.enabled = false;
    })
    .await;
    let mut list = Value::Null;
    for _ in 0..100 {
        list = app.get_json(ACME, "/v1/schedules").await;
        if list["built_in"].as_array().is_some_and(|b| !b.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let built_in = list["built_in"].as_array().unwrap_or_else(|| panic!("no built_in in {list}"));
    let names: Vec<&str> = built_in.iter().filter_map(|b| b["name"].as_str()).collect();
    assert_eq!(names, ["builtin.sync", "builtin.daily_audit"], "{list}");
    let sync = &built_in[0];
    assert_eq!(
        (sync["kind"].as_str(), sync["cron"].as_str()),
        (Some("sync"), Some("*/5 * * * *")),
        "{sync}"
    );
    assert_eq!(sync["trigger"], "schedule:builtin.sync.<account_id>", "{sync}");
    assert_eq!(sync["job"]["resources"], json!(["orders", "listings"]), "{sync}");
    let next = chrono::DateTime::parse_from_rfc3339(sync["next_run_at"].as_str().unwrap()).unwrap();
    assert_eq!(chrono::Timelike::minute(&next) % 5, 0, "{sync}");
    let audit = &built_in[1];
    assert_eq!(
        (audit["kind"].as_str(), audit["cron"].as_str()),
        (Some("backfill"), Some("0 3 * * *")),
        "{audit}"
    );
    assert_eq!(audit["job"]["window_days"], 1, "{audit}");
    assert!(audit["job"]["report_type"].is_string(), "{audit}");
    // The saved schedules are listed apart, as before.
    assert_eq!(list["schedules"], json!([]), "{list}");
}

/// Found by this stop's hostile-tenant audit: a schedule named "." or ".." (sent as
/// `%2E%2E`, which HTTP clients that follow the URL standard turn into a dot segment and
/// drop, so it goes raw here) was saved (201) but cannot be addressed by such clients.
#[tokio::test]
async fn schedule_names_that_are_dot_path_segments_are_a_422_naming_name() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app().await;
    let body = cleanup_schedule("0 2 * * *", "acme").to_string();
    for name in ["%2E", "%2E%2E"] {
        let mut conn = tokio::net::TcpStream::connect(app.addr).await.unwrap();
        let request = format!(
            "PUT /v1/schedules/{name} HTTP/1.1\r\nHost: drover\r\nAuthorization: Bearer {ACME_SUB}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        conn.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        conn.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 422"), "{name}: {answer}");
        assert!(answer.contains(r#""field":"name""#), "{name}: {answer}");
    }
    assert_eq!(app.get_json(ADMIN, "/v1/schedules").await["schedules"], json!([]));
}

/// Found by this stop's audit of the API's surfaces: a replace chose "replace" from a
/// read before its write, so a schedule deleted in between came back — unasked, and
/// without the quota check of a creation: with a creation racing the two, an account went
/// past `max_per_account`. A replace of a schedule that is gone is now a creation.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replace_racing_a_delete_never_takes_an_account_past_its_quota() {
    use drover::schedule::{ScheduleSpec, ScheduleStore};
    let redis = drover_tests::harness::RedisServer::start(drover_tests::harness::Durability::None);
    let store = drover::queue::RedisStore::connect(&redis.url(), "drover", Default::default())
        .await
        .unwrap();
    let schedules = ScheduleStore::new(store.connection(), "drover").with_max_per_account(2);
    let spec = || ScheduleSpec {
        cron: "0 3 * * *".into(),
        kind: JobKind::Cleanup,
        payload: cleanup_schedule("0 3 * * *", "acme")["payload"].clone(),
        enabled: true,
        priority: 0,
        max_attempts: None,
    };
    schedules.put("b", spec()).await.unwrap();
    let mut most = 0;
    for i in 0..300 {
        schedules.put("a", spec()).await.unwrap();
        let extra = format!("n{i}");
        let (s1, s2, s3) = (schedules.clone(), schedules.clone(), schedules.clone());
        let (sp1, sp2) = (spec(), spec());
        let extra2 = extra.clone();
        let replace = tokio::spawn(async move { s1.put("a", sp1).await.map(|_| ()) });
        let delete = tokio::spawn(async move { s2.delete(Some("acme"), "a").await.map(|_| ()) });
        let create = tokio::spawn(async move { s3.put(&extra2, sp2).await.map(|_| ()) });
        let _ = (replace.await.unwrap(), delete.await.unwrap(), create.await.unwrap());
        let held = schedules.page(Some(&["acme"]), None, 100).await.unwrap().schedules.len();
        most = most.max(held);
        schedules.delete(Some("acme"), &extra).await.unwrap();
        schedules.delete(Some("acme"), "a").await.unwrap();
    }
    assert!(most <= 2, "the account held {most} schedules with a quota of 2");
}

/// Found by the newcomer audit of 2026-12-05: `GET /v1/schedules?account_id=` (what
/// `drover schedules ls --account` sends) ignored the account and listed every schedule
/// the key could see.
#[tokio::test]
async fn a_listing_for_one_account_shows_only_its_schedules() {
    let app = spawn_app().await;
    for (name, account) in [("nightly", "acme"), ("weekly", "acme"), ("nightly", "globex")] {
        assert_eq!(put(&app, ADMIN, name, &cleanup_schedule("0 3 * * *", account)).await.status(), 201);
    }
    let names = |v: &Value| -> Vec<(String, String)> {
        let mut seen: Vec<_> = v["schedules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (s["account_id"].as_str().unwrap().to_owned(), s["name"].as_str().unwrap().to_owned()))
            .collect();
        seen.sort();
        seen
    };
    let acme = app.get_json(READER, "/v1/schedules?account_id=acme").await;
    assert_eq!(
        names(&acme),
        [("acme".to_owned(), "nightly".to_owned()), ("acme".to_owned(), "weekly".to_owned())]
    );
    let globex = app.get_json(MULTI, "/v1/schedules?account_id=globex").await;
    assert_eq!(names(&globex), [("globex".to_owned(), "nightly".to_owned())]);
    // A key limited to acme asking for globex, or for an account nobody has, is refused
    // alike: it learns nothing of who exists.
    let other = app.get(ACME_SUB, "/v1/schedules?account_id=globex").send().await.unwrap().status();
    let nobody = app.get(ACME_SUB, "/v1/schedules?account_id=nobody").send().await.unwrap().status();
    assert_eq!((other.as_u16(), nobody.as_u16()), (403, 403));
    let bad = app.get(READER, "/v1/schedules?account_id=a%20b").send().await.unwrap();
    assert_eq!(bad.status(), 422);
}

/// Found by the hostile-tenant audit of 2026-12-06: `GET /v1/schedules` took no page size
/// and answered every schedule the key may see with its payload (up to 500 of 64 KiB for
/// one key, and every key's for a key that sees every account): tens of MiB in one
/// answer, a few of them in parallel past the API's memory. A page holds at most 100,
/// and `next_cursor` goes on, bound to the key and the account filter.
#[tokio::test]
async fn the_schedule_listing_comes_in_pages_of_at_most_a_hundred() {
    let app = spawn_app_with(drover_tests::harness::Durability::None, |c| {
        c.rate_limit.per_minute = 100_000;
        c.rate_limit.burst = 1_000;
    })
    .await;
    for n in 0..120 {
        let account = format!("acct-{}", n % 3);
        let res = put(&app, ADMIN, &format!("s{n:03}"), &cleanup_schedule("0 2 * * *", &account)).await;
        assert_eq!(res.status(), 201);
    }
    let list = app.get_json(ADMIN, "/v1/schedules").await;
    assert_eq!(list["schedules"].as_array().unwrap().len(), 100, "the default page is 100");
    assert!(list["next_cursor"].is_string(), "{}", list["next_cursor"]);

    let (mut seen, mut sizes, mut cursor) = (Vec::new(), Vec::new(), None::<String>);
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/schedules?limit=50&cursor={c}"),
            None => "/v1/schedules?limit=50".to_owned(),
        };
        let page = app.get_json(ADMIN, &path).await;
        let schedules = page["schedules"].as_array().unwrap();
        sizes.push(schedules.len());
        seen.extend(
            schedules
                .iter()
                .map(|s| format!("{}/{}", s["account_id"].as_str().unwrap(), s["name"].as_str().unwrap())),
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
        assert!(sizes.len() < 10, "the pages never end");
    }
    assert_eq!(sizes, vec![50, 50, 20]);
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, seen, "each schedule once, in order");
    assert_eq!(seen.len(), 120);

    let first = app.get_json(ADMIN, "/v1/schedules?limit=1").await;
    let c = first["next_cursor"].as_str().unwrap();
    for (key, path) in [
        (READER, format!("/v1/schedules?limit=1&cursor={c}")),
        (ADMIN, format!("/v1/schedules?limit=1&account_id=acct-0&cursor={c}")),
    ] {
        let p = problem(app.get(key, &path).send().await.unwrap(), 422).await;
        assert!(fields(&p).contains(&"cursor".to_owned()), "{key} {path}: {p}");
    }
    for bad in ["0", "101", "x"] {
        let p = problem(app.get(ADMIN, &format!("/v1/schedules?limit={bad}")).send().await.unwrap(), 422).await;
        assert!(fields(&p).contains(&"limit".to_owned()), "limit={bad}: {p}");
    }
}

/// Found by the API audit of 2026-12-06: an operator's `GET /v1/schedules/{name}`
/// without an account read and parsed every account's schedule of that name (each up to
/// 64 KiB, as many as there are tenants, with no read permit) only to answer that the
/// account must be named. It reads two at most.
#[tokio::test]
async fn an_operators_lookup_of_a_name_many_accounts_use_reads_two_schedules_at_most() {
    let app = spawn_app().await;
    let skus: Vec<String> = (0..2000).map(|i| format!("SKU-{i:016}")).collect();
    for a in 0..30 {
        let account = format!("acct-{a}");
        let body = json!({"cron": "0 2 * * *", "kind": "cleanup",
            "payload": {"account_id": account, "marketplace_id": MARKETPLACE, "skus": skus}});
        let res = put(&app, ADMIN, "nightly", &body).await;
        assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    }
    let before = app.redis_stat("total_net_output_bytes");
    let res = app.get(ADMIN, "/v1/schedules/nightly").send().await.unwrap();
    assert_eq!(res.status(), 422, "several accounts: name one");
    let read = app.redis_stat("total_net_output_bytes") - before;
    assert!(
        read < 250_000,
        "the lookup read {read} bytes from Redis (each schedule is about 45,000)"
    );
    let res = app.get(ADMIN, "/v1/schedules/nightly?account_id=acct-7").send().await.unwrap();
    assert_eq!(res.status(), 200);
}

/// Found by the audit of 2026-12-06: the scheduler logged every unreadable schedule
/// under one name, "schedules", and logs a problem again only when it changes, so two
/// unreadable entries took turns and each poll logged one: two warnings a second per
/// replica, for ever (an older release meeting schedules saved with a newer field does
/// this). Each is logged once.
#[tokio::test]
async fn two_unreadable_schedules_are_logged_once_each_not_at_every_poll() {
    use chrono::{TimeZone, Utc};
    use drover::schedule::{ScheduleStore, Scheduler, SchedulerConfig};
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    let redis = drover_tests::harness::RedisServer::start(drover_tests::harness::Durability::None);
    let store = drover::queue::RedisStore::connect(&redis.url(), "drover", Default::default())
        .await
        .unwrap();
    let _: () = redis::cmd("HSET")
        .arg("drover:schedules")
        .arg("acme/a")
        .arg("{")
        .arg("acme/b")
        .arg("\"x\"")
        .query(&mut redis.conn())
        .unwrap();
    let lines = Lines::default();
    let writer = lines.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let schedules = ScheduleStore::new(store.connection(), "drover");
    let mut scheduler = Scheduler::new(store.clone(), schedules, None, SchedulerConfig::default());
    for s in 0..10 {
        scheduler.tick_once(Utc.with_ymd_and_hms(2030, 1, 1, 12, 0, s).unwrap()).await;
    }
    let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
    let warned = text.lines().filter(|l| l.contains("schedule skipped this round")).count();
    assert_eq!(warned, 2, "one warning for each unreadable schedule:\n{text}");
}

/// Found by the audit of 2026-12-06: the scheduler looks at each schedule's latest tick
/// only, so ticks overtaken by a later one before they could be enqueued (an outage
/// longer than the cadence) were neither run nor counted: `drover_schedule_misfires_total`
/// stayed 0 and nothing was logged. Each overtaken tick is counted as a misfire, once.
#[tokio::test]
async fn ticks_overtaken_before_they_could_be_enqueued_are_counted_as_misfires() {
    use chrono::{TimeZone, Utc};
    use drover::schedule::{ScheduleStore, Scheduler};
    let (_redis, store, config) = each_minute_schedule().await;
    let schedules = ScheduleStore::new(store.connection(), "drover");
    let mut scheduler = Scheduler::new(store.clone(), schedules, None, config);
    let counters = scheduler.counters();
    let at = |m: u32, s: u32| Utc.with_ymd_and_hms(2030, 1, 1, 12, m, s).unwrap();
    // Started at 12:00:05; the next poll comes at 12:03:10 (the loop stalled, Redis was
    // down): the ticks of 12:00:10, 12:01:10 and 12:02:10 were overtaken.
    assert_eq!(scheduler.tick_once(at(0, 5)).await, 0);
    assert_eq!(scheduler.tick_once(at(3, 10)).await, 1, "the latest tick is enqueued");
    assert_eq!((counters.ticks(), counters.misfires()), (1, 3));
    assert_eq!(scheduler.tick_once(at(3, 11)).await, 0);
    assert_eq!(counters.misfires(), 3, "counted once");
}

/// Found by the audit of 2026-12-06 (schedules): the scheduler read ticks on its own
/// replica's clock while jobs, leases and every other replica go by Redis's, so a
/// replica whose clock ran ahead enqueued each tick early (by as much as its clock was
/// off). It now reads Redis's clock (`TIME`), and a schedule's start too. Here a
/// `drover-api` process runs with its clock 20 s ahead (libfaketime) and a schedule
/// ticking every 2 s: every tick's job is created at or after its tick, on Redis's clock
/// (before, each was created about 20 s before it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduler_whose_clock_runs_ahead_of_redis_enqueues_no_tick_early() {
    use drover_tests::harness::{cargo_bin, free_port, ChildProcess, Durability, PgDatabase, RedisServer, LIBFAKETIME};
    assert!(
        std::path::Path::new(LIBFAKETIME).exists(),
        "{LIBFAKETIME} is missing: run tests/setup.sh"
    );
    let server = RedisServer::start(Durability::None);
    let db = PgDatabase::create().await;
    let port = free_port();
    let env = [
        ("LD_PRELOAD", LIBFAKETIME.to_owned()),
        ("FAKETIME", "+20".to_owned()),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1".to_owned()),
        ("DROVER_API__LISTEN", format!("127.0.0.1:{port}")),
        ("DROVER_API__METRICS_LISTEN", String::new()),
        ("DROVER_API__REDIS_URL", server.url()),
        ("DROVER_API__KEYS", format!("ops:admin:{}", drover_api::hash_key(&ADMIN.into()))),
        ("DROVER_API__ENCRYPTION_KEY", TEST_ENCRYPTION_KEY.to_owned()),
        (
            "DROVER_API__MARKETPLACE_TOKEN_URL",
            "https://api.amazon.com/auth/o2/token".to_owned(),
        ),
        ("DROVER_API__SCHEDULES__MIN_INTERVAL_SECS", "1".to_owned()),
        ("DROVER_API__SCHEDULER__POLL_MS", "100".to_owned()),
        ("DROVER_API__SCHEDULER__MISFIRE_GRACE_MS", "5000".to_owned()),
        ("DATABASE_URL", db.url()),
        ("RUST_LOG", "info".to_owned()),
    ];
    let api = ChildProcess::spawn("api-20s-ahead", &cargo_bin("drover-api"), &[], &env);
    assert!(api.wait_for_log("drover-api listening", Duration::from_secs(30)), "{}", api.log());
    let res = reqwest::Client::new()
        .put(format!("http://127.0.0.1:{port}/v1/schedules/every-2s"))
        .bearer_auth(ADMIN)
        .json(&cleanup_schedule("*/2 * * * * *", "acme"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    let mut conn = server.conn();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let ids: Vec<String> = loop {
        let ids: Vec<String> = redis::cmd("ZRANGE")
            .arg("drover:{cleanup}:all")
            .arg(0)
            .arg(-1)
            .query(&mut conn)
            .unwrap();
        if ids.len() >= 3 {
            break ids;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "three ticks' jobs within 30 s: {ids:?}\n{}",
            api.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for id in ids {
        let (tick_key, created): (String, u64) = redis::cmd("HMGET")
            .arg(format!("drover:{{cleanup}}:job:{id}"))
            .arg("ik")
            .arg("ca")
            .query(&mut conn)
            .unwrap();
        let tick: u64 = tick_key.rsplit(':').next().unwrap().parse().unwrap();
        assert!(
            created >= tick * 1000,
            "job {id} of tick {tick} was created {} ms before it, on Redis's clock",
            tick * 1000 - created
        );
    }
}

/// From the hostile-tenant audit of 2026-12-06: a tick refused because its account keeps
/// as many unfinished jobs as it may was sent again every poll until its grace ran out
/// (up to 60 sends of its payload a tick at the defaults, for each of the account's
/// schedules, on every replica). It is now skipped at once and counted as a misfire.
#[tokio::test]
async fn a_tick_refused_for_an_account_at_its_cap_is_a_misfire_not_sent_again() {
    use chrono::{TimeZone, Utc};
    use drover::queue::{JobDefaults, NewJob, RedisStore};
    use drover::schedule::{ScheduleStore, Scheduler};
    let (redis, _store, config) = each_minute_schedule().await;
    let capped = JobDefaults {
        max_unfinished_per_account: 1,
        ..JobDefaults::default()
    };
    let store = RedisStore::connect(&redis.url(), "drover", capped).await.unwrap();
    store
        .enqueue(NewJob::new(cleanup_payload("acme")).delay(Duration::from_secs(86_400)))
        .await
        .unwrap();
    let mut scheduler = Scheduler::new(store.clone(), ScheduleStore::new(store.connection(), "drover"), None, config);
    let counters = scheduler.counters();
    let at = |m: u32, s: u32| Utc.with_ymd_and_hms(2030, 1, 1, 12, m, s).unwrap();
    let mut conn = store.connection();
    let scripts = |conn: &mut drover::redis_conn::RedisConn| {
        let mut conn = conn.clone();
        async move { command_calls(&mut conn, "fcall").await + command_calls(&mut conn, "evalsha").await }
    };
    assert_eq!(scheduler.tick_once(at(0, 5)).await, 0);
    assert_eq!(scheduler.tick_once(at(0, 10)).await, 0, "acme is at its cap: the tick is refused");
    let sent = scripts(&mut conn).await;
    assert_eq!(counters.misfires(), 1, "and counted as a misfire at once");
    assert_eq!(scheduler.tick_once(at(0, 11)).await, 0);
    assert_eq!(scripts(&mut conn).await, sent, "the refused tick is not sent again");
    assert_eq!((counters.ticks(), counters.misfires()), (0, 1));
}

/// Found by the scheduler audit of 2026-12-07: the built-in schedules made their jobs for
/// an account's first marketplace only (a sync or an audit walks one), so an account
/// selling in Germany and France never had France synced or audited by them. Each
/// marketplace gets its own.
#[tokio::test]
async fn the_built_in_schedules_sync_every_marketplace_of_an_account() {
    use std::sync::Arc;

    use chrono::Utc;
    use drover::job::{AccountId, MarketplaceId};
    use drover::schedule::{BuiltIn, DefaultSchedules, ScheduleStore, Scheduler, SchedulerConfig};

    let redis = drover_tests::harness::RedisServer::start(drover_tests::harness::Durability::None);
    let (de, fr) = ("A1PA6795UKMFR9", "A13V1IB3VIYZZH");
    let (_db, repo) = registered(
        AccountId::parse("acme-eu").unwrap(),
        vec![MarketplaceId::parse(de).unwrap(), MarketplaceId::parse(fr).unwrap()],
    )
    .await;
    let store = drover::queue::RedisStore::connect(&redis.url(), "drover", Default::default())
        .await
        .unwrap();
    // (every second: an audit's window must not end in the future)
    let every_second = BuiltIn {
        enabled: true,
        cron: "* * * * * *".into(),
    };
    let config = SchedulerConfig {
        defaults: DefaultSchedules {
            sync: every_second.clone(),
            daily_audit: every_second,
            weekly_audit: BuiltIn {
                enabled: false,
                cron: "0 3 * * 0".into(),
            },
            ..DefaultSchedules::default()
        },
        ..SchedulerConfig::default()
    };
    let schedules = ScheduleStore::new(store.connection(), "drover");
    let mut scheduler = Scheduler::new(store.clone(), schedules, Some(Arc::new(repo)), config);
    assert_eq!(scheduler.tick_once(Utc::now()).await, 4, "a sync and an audit for each marketplace");
    for kind in [JobKind::Sync, JobKind::Backfill] {
        let page = store
            .list(&ListQuery {
                kinds: vec![kind],
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        let mut marketplaces: Vec<String> = page
            .jobs
            .iter()
            .map(|j| j.payload["marketplace_id"].as_str().unwrap().to_owned())
            .collect();
        marketplaces.sort();
        assert_eq!(marketplaces, [fr, de], "{kind}: {:?}", page.jobs);
    }
}

/// Found by the review of this stop's diffs (2026-12-06): the scheduler forgets the ticks
/// of a schedule that is gone, and an account that left the active accounts and came
/// back then had every built-in tick of its absence counted as a misfire (from the
/// replica's start), a page of the misfire alert for nothing. An account that joins the
/// active accounts after the replica's first read of them is scheduled from when it was
/// seen.
#[tokio::test]
async fn an_account_that_comes_back_has_no_misfires_counted_for_its_absence() {
    use std::sync::Arc;

    use chrono::{TimeZone, Utc};
    use drover::job::{AccountId, MarketplaceId};
    use drover::schedule::{BuiltIn, DefaultSchedules, ScheduleStore, Scheduler, SchedulerConfig};

    let redis = drover_tests::harness::RedisServer::start(drover_tests::harness::Durability::None);
    let acme = AccountId::parse("acme").unwrap();
    let (_db, repo) = registered(acme.clone(), vec![MarketplaceId::parse(MARKETPLACE).unwrap()]).await;
    let store = drover::queue::RedisStore::connect(&redis.url(), "drover", Default::default())
        .await
        .unwrap();
    let off = BuiltIn {
        enabled: false,
        cron: "0 3 * * *".into(),
    };
    let config = SchedulerConfig {
        accounts_refresh_ms: 1,
        defaults: DefaultSchedules {
            sync: BuiltIn {
                enabled: true,
                cron: "*/15 * * * *".into(),
            },
            daily_audit: off.clone(),
            weekly_audit: off,
            ..DefaultSchedules::default()
        },
        ..SchedulerConfig::default()
    };
    let schedules = ScheduleStore::new(store.connection(), "drover");
    let mut scheduler = Scheduler::new(store.clone(), schedules, Some(Arc::new(repo.clone())), config);
    let counters = scheduler.counters();
    let at = |h: u32, m: u32, s: u32| Utc.with_ymd_and_hms(2030, 1, 1, h, m, s).unwrap();
    assert_eq!(scheduler.tick_once(at(12, 0, 1)).await, 1, "the sync of 12:00");
    repo.set_active(&acme, false).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(scheduler.tick_once(at(12, 0, 2)).await, 0);
    repo.set_active(&acme, true).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    scheduler.tick_once(at(13, 0, 1)).await;
    assert_eq!(counters.misfires(), 0, "no tick of its absence is a misfire");
    // (its sync of 12:00 still queued, no worker here, the tick's enqueue returns that one)
    scheduler.tick_once(at(13, 15, 1)).await;
    assert_eq!(counters.misfires(), 0, "its ticks are made again, none missed");
}

/// A database with one account registered (active), and its repository.
async fn registered(
    id: drover::job::AccountId,
    marketplace_ids: Vec<drover::job::MarketplaceId>,
) -> (drover_tests::harness::PgDatabase, drover::db::AccountRepo) {
    use drover::crypto::{EncryptionKey, SecretBox};
    use drover::db::{AccountRepo, NewAccount};
    use drover::lwa::LwaCredentials;
    let db = drover_tests::harness::PgDatabase::create().await;
    let repo = AccountRepo::new(db.pool().clone());
    let account = NewAccount {
        id,
        seller_id: "seller-acme".into(),
        marketplace_ids,
        credentials: LwaCredentials {
            client_id: "client".into(),
            client_secret: "secret".into(),
            refresh_token: "refresh".into(),
        },
    };
    repo.insert(&account, &SecretBox::new(&EncryptionKey::dev())).await.unwrap();
    (db, repo)
}
