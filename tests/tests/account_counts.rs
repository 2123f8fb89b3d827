//! Per-account counts by state (`RedisStore::account_counts`, `GET /v1/accounts/{id}/counts`)
//! on a private redis-server: after every kind of move a job can make the counts equal
//! what the account's own listing says, jobs made before the counters existed are counted
//! by the trimmer's backfill, a partition migration carries them, and a scoped key never
//! reads another tenant's.
use std::collections::HashMap;
use std::time::Duration;

use crate::api_support;
use crate::conformance::{cleanup, sync};

use api_support::*;
use drover::job::{ErrorClass, ErrorInfo, JobKind, JobState};
use drover::queue::{JobDefaults, JobStore, Leased, ListQuery, NewJob, Partitions, RedisStore, SettleAction, Settlement};
use drover_tests::harness::{Durability, RedisServer};
use serde_json::{json, Value};

const LEASE: Duration = Duration::from_secs(30);

async fn store_on(server: &RedisServer, partitions: u16) -> RedisStore {
    let defaults = JobDefaults {
        max_attempts: 3,
        partitions: Partitions::new(partitions).unwrap(),
        ..Default::default()
    };
    RedisStore::connect(&server.url(), "drover", defaults).await.unwrap()
}

/// (kind, state) -> jobs, from walking every page of the account's listing.
async fn listed(store: &RedisStore, account: &str) -> HashMap<(JobKind, JobState), u64> {
    let mut out = HashMap::new();
    let mut cursor = None;
    loop {
        let page = store
            .list(&ListQuery {
                account_id: Some(account.to_owned()),
                limit: 100,
                cursor,
                ..Default::default()
            })
            .await
            .unwrap();
        for j in page.jobs {
            *out.entry((j.kind, j.state)).or_default() += 1;
        }
        cursor = page.next;
        if cursor.is_none() {
            return out;
        }
    }
}

/// (kind, state) -> jobs, from the counters (zeros left out).
async fn counted(store: &RedisStore, account: &str) -> (HashMap<(JobKind, JobState), u64>, bool) {
    let c = store.account_counts(account).await.unwrap();
    let mut out = HashMap::new();
    for (kind, s) in c.kinds {
        for (state, n) in [
            (JobState::Queued, s.queued),
            (JobState::Scheduled, s.scheduled),
            (JobState::Running, s.running),
            (JobState::Retrying, s.retrying),
            (JobState::Succeeded, s.succeeded),
            (JobState::Partial, s.partial),
            (JobState::Dead, s.dead),
            (JobState::Cancelled, s.cancelled),
        ] {
            if n > 0 {
                out.insert((kind, state), n);
            }
        }
    }
    (out, c.complete)
}

async fn assert_counts_match(store: &RedisStore, account: &str, step: &str) {
    let (counts, complete) = counted(store, account).await;
    assert!(complete, "{step}: counts complete");
    assert_eq!(counts, listed(store, account).await, "{step}: counters vs the listing of {account}");
}

fn err(class: ErrorClass) -> ErrorInfo {
    ErrorInfo {
        class,
        message: format!("{class:?} failure"),
    }
}

async fn settle(store: &RedisStore, l: &Leased, action: SettleAction) {
    let s = Settlement {
        id: l.id.clone(),
        token: l.token.clone(),
        action,
        attempt: None,
    };
    store.settle(l.id.kind(), &[s]).await.unwrap();
}

async fn enqueue(store: &RedisStore, job: NewJob) -> drover::job::JobId {
    store.enqueue(job).await.unwrap().id
}

/// A queue with jobs of `acme` in every state, and one of `globex` beside them.
async fn seed_every_state(store: &RedisStore) {
    for _ in 0..8 {
        enqueue(store, NewJob::new(cleanup("acme"))).await;
    }
    enqueue(store, NewJob::new(cleanup("acme")).delay(Duration::from_secs(600))).await;
    enqueue(store, NewJob::new(sync("acme"))).await;
    enqueue(store, NewJob::new(cleanup("globex"))).await;
    // 8 leases: 7 of acme's (one stays running), globex's, and acme's eighth stays queued
    let leased = store.fetch(JobKind::Cleanup, "w1", 8, LEASE).await.unwrap().jobs;
    let acme: Vec<&Leased> = leased
        .iter()
        .filter(|l| l.payload.as_ref().unwrap().account_id().as_str() == "acme")
        .collect();
    assert_eq!(acme.len(), 7, "acme's leased");
    settle(store, acme[0], SettleAction::Succeeded(json!({}))).await;
    settle(store, acme[1], SettleAction::Partial(json!({}))).await;
    let retry = SettleAction::Retry {
        delay: Duration::from_secs(600),
        error: err(ErrorClass::Transient),
    };
    settle(store, acme[2], retry).await;
    let snooze = SettleAction::Snooze {
        delay: Duration::from_secs(600),
        error: err(ErrorClass::RateLimited),
        advanced: false,
    };
    settle(store, acme[3], snooze).await;
    settle(store, acme[4], SettleAction::Dead(err(ErrorClass::Permanent))).await;
    settle(store, acme[5], SettleAction::Cancelled(err(ErrorClass::Cancelled))).await;
}

#[tokio::test]
async fn an_accounts_counts_equal_its_listing_after_every_move_its_jobs_make() {
    let server = RedisServer::start(Durability::None);
    let store = store_on(&server, 1).await;
    seed_every_state(&store).await;
    assert_counts_match(&store, "acme", "every state").await;
    assert_counts_match(&store, "globex", "another account beside it").await;
    let (c, _) = counted(&store, "acme").await;
    for state in [
        JobState::Queued,
        JobState::Scheduled,
        JobState::Running,
        JobState::Retrying,
        JobState::Succeeded,
        JobState::Partial,
        JobState::Dead,
        JobState::Cancelled,
    ] {
        assert!(
            c.contains_key(&(JobKind::Cleanup, state)),
            "acme has a cleanup job {state:?}: {c:?}"
        );
    }

    // Cancels (queued, scheduled, retrying), a replay of the dead and cancelled jobs.
    let page = |state| ListQuery {
        account_id: Some("acme".into()),
        kinds: vec![JobKind::Cleanup],
        state: Some(state),
        limit: 10,
        ..Default::default()
    };
    for state in [JobState::Queued, JobState::Scheduled, JobState::Retrying] {
        let id = store.list(&page(state)).await.unwrap().jobs[0].id.clone();
        store.cancel(&id).await.unwrap();
        assert_counts_match(&store, "acme", &format!("cancelled a {state:?} job")).await;
    }
    for state in [JobState::Dead, JobState::Cancelled, JobState::Partial] {
        let id = store.list(&page(state)).await.unwrap().jobs[0].id.clone();
        store.retry(&id).await.unwrap();
        assert_counts_match(&store, "acme", &format!("replayed a {state:?} job")).await;
    }

    // A lease that runs out is reclaimed (back to queued, or dead on its last attempt);
    // a due retry is promoted.
    let short = store
        .fetch(JobKind::Cleanup, "w2", 3, Duration::from_millis(50))
        .await
        .unwrap()
        .jobs;
    assert!(!short.is_empty());
    let due = enqueue(&store, NewJob::new(cleanup("acme")).delay(Duration::from_millis(30))).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // (nothing fetched meanwhile looks like an outage: the leases get a grace first)
    for _ in 0..2 {
        let again = store.fetch(JobKind::Cleanup, "w3", 0, LEASE).await.unwrap();
        assert!(again.jobs.is_empty());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for l in &short {
        assert_ne!(store.get(&l.id).await.unwrap().unwrap().state, JobState::Running, "reclaimed");
    }
    assert_ne!(store.get(&due).await.unwrap().unwrap().state, JobState::Scheduled, "promoted");
    assert_counts_match(&store, "acme", "reclaimed leases and a promoted job").await;

    // Everything runs out: dead or succeeded, in turns.
    let mut ran = 0;
    loop {
        let leased = store.fetch(JobKind::Cleanup, "w4", 50, LEASE).await.unwrap().jobs;
        if leased.is_empty() {
            break;
        }
        for l in &leased {
            ran += 1;
            let action = if ran % 2 == 0 {
                SettleAction::Succeeded(json!({}))
            } else {
                SettleAction::Dead(err(ErrorClass::Permanent))
            };
            settle(&store, l, action).await;
        }
    }
    assert!(ran >= 2, "{ran} runs; listing {:?}", listed(&store, "acme").await);
    assert_counts_match(&store, "acme", "a drained queue").await;

    // Purge one dead job, then trim every finished one.
    let dead = store.list(&page(JobState::Dead)).await.unwrap().jobs[0].id.clone();
    assert_eq!(store.purge_dead(JobKind::Cleanup, &[dead]).await.unwrap(), 1);
    assert_counts_match(&store, "acme", "purged a dead job").await;
    store.trim(JobKind::Cleanup, Duration::ZERO, 1000).await.unwrap();
    assert_counts_match(&store, "acme", "trimmed every finished job past retention").await;
    let (c, _) = counted(&store, "acme").await;
    let gone: u64 = c
        .iter()
        .filter(|((kind, st), _)| *kind == JobKind::Cleanup && st.is_terminal() && *st != JobState::Dead)
        .map(|(_, n)| n)
        .sum();
    assert_eq!(gone, 0, "dead jobs have a retention of their own; the rest went: {c:?}");
}

/// One settle call ending runs of two accounts in every way at once: the call writes
/// each account's net counter moves once, at its end.
#[tokio::test]
async fn one_settle_call_of_many_outcomes_over_two_accounts_counts_each_of_them() {
    let server = RedisServer::start(Durability::None);
    let store = store_on(&server, 1).await;
    for acct in ["acme", "acme", "acme", "globex", "globex", "globex"] {
        enqueue(&store, NewJob::new(cleanup(acct))).await;
    }
    let leased = store.fetch(JobKind::Cleanup, "w1", 6, LEASE).await.unwrap().jobs;
    assert_eq!(leased.len(), 6);
    let later = Duration::from_secs(600);
    let actions = [
        SettleAction::Succeeded(json!({})),
        SettleAction::Succeeded(json!({})),
        SettleAction::Dead(err(ErrorClass::Permanent)),
        SettleAction::Partial(json!({})),
        SettleAction::Retry {
            delay: later,
            error: err(ErrorClass::Transient),
        },
        SettleAction::Release,
    ];
    let settlements: Vec<Settlement> = leased
        .iter()
        .zip(actions)
        .map(|(l, action)| Settlement {
            id: l.id.clone(),
            token: l.token.clone(),
            action,
            attempt: None,
        })
        .collect();
    store.settle(JobKind::Cleanup, &settlements).await.unwrap();
    assert_counts_match(&store, "acme", "after one settle of many outcomes").await;
    assert_counts_match(&store, "globex", "the other account in the same call").await;
    let (all, _) = counted(&store, "acme").await;
    let (other, _) = counted(&store, "globex").await;
    let total: u64 = all.values().chain(other.values()).sum();
    assert_eq!(total, 6, "every job counted once: {all:?} {other:?}");
}

#[tokio::test]
async fn jobs_made_before_the_counters_existed_are_counted_by_the_trimmers_backfill() {
    let server = RedisServer::start(Durability::None);
    let store = store_on(&server, 1).await;
    seed_every_state(&store).await;
    // Make the queues look as an older release left them: no `ac` marks, no counters.
    let mut conn = server.conn();
    let keys: Vec<String> = redis::cmd("KEYS").arg("drover:{*").query(&mut conn).unwrap();
    for k in &keys {
        let suffix = k.rsplit_once("}:").map(|(_, s)| s).unwrap_or_default();
        if suffix.starts_with("as:") || ["acdone", "accur", "acend"].contains(&suffix) {
            let _: i64 = redis::cmd("DEL").arg(k).query(&mut conn).unwrap();
        } else if suffix.starts_with("job:") {
            let _: i64 = redis::cmd("HDEL").arg(k).arg("ac").query(&mut conn).unwrap();
        }
    }
    let (before, complete) = counted(&store, "acme").await;
    assert!(!complete, "not counted yet");
    assert!(!before.contains_key(&(JobKind::Cleanup, JobState::Succeeded)), "{before:?}");

    // An old job that moves before the backfill reaches it is counted by its move.
    let old_dead = store
        .list(&ListQuery {
            account_id: Some("acme".into()),
            kinds: vec![JobKind::Cleanup],
            state: Some(JobState::Dead),
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .jobs[0]
        .id
        .clone();
    store.retry(&old_dead).await.unwrap();

    for kind in JobKind::ALL {
        // two at a time, so the backfill takes several batches
        let trimmed = store.trim(kind, Duration::from_secs(3600), 2).await.unwrap();
        assert!(trimmed.is_some(), "this test's trimmer held the lock");
    }
    assert_counts_match(&store, "acme", "after the backfill").await;
    assert_counts_match(&store, "globex", "after the backfill").await;
}

#[tokio::test]
async fn an_account_with_no_job_is_complete_while_another_tenants_old_jobs_wait_for_the_backfill() {
    let server = RedisServer::start(Durability::None);
    let store = store_on(&server, 1).await;
    enqueue(&store, NewJob::new(cleanup("globex"))).await;
    // As an older release left the queue: its jobs not yet counted by the backfill.
    let mut conn = server.conn();
    let keys: Vec<String> = redis::cmd("KEYS").arg("drover:{*").query(&mut conn).unwrap();
    let marks: Vec<&String> = keys.iter().filter(|k| k.ends_with("}:acdone")).collect();
    assert!(!marks.is_empty(), "{keys:?}");
    for k in marks {
        let _: i64 = redis::cmd("DEL").arg(k).query(&mut conn).unwrap();
    }
    let (_, complete) = counted(&store, "globex").await;
    assert!(!complete, "globex's jobs wait for the backfill");
    // Whether acme's counts are whole depends on acme's jobs alone: a scoped key does
    // not learn from it that another tenant has jobs in the queue.
    let (counts, complete) = counted(&store, "acme").await;
    assert!(counts.is_empty(), "{counts:?}");
    assert!(complete, "acme has no job in the queue, so nothing of its is left to count");
}

#[tokio::test]
async fn a_partition_migration_carries_the_counts_with_the_jobs() {
    let server = RedisServer::start(Durability::None);
    let one = store_on(&server, 1).await;
    let mut accounts = Vec::new();
    for n in 0..12 {
        let account = format!("acct-{n}");
        for _ in 0..3 {
            enqueue(&one, NewJob::new(cleanup(&account))).await;
        }
        accounts.push(account);
    }
    loop {
        let leased = one.fetch(JobKind::Cleanup, "w1", 50, LEASE).await.unwrap().jobs;
        if leased.is_empty() {
            break;
        }
        for (i, l) in leased.iter().enumerate() {
            let action = match i % 3 {
                0 => SettleAction::Succeeded(json!({})),
                1 => SettleAction::Partial(json!({})),
                _ => SettleAction::Dead(err(ErrorClass::Permanent)),
            };
            settle(&one, l, action).await;
        }
    }
    let mut before = Vec::new();
    for a in &accounts {
        assert_counts_match(&one, a, "before the migration").await;
        before.push(counted(&one, a).await.0);
    }
    let done = one.migrate_partitions(Partitions::new(4).unwrap()).await.unwrap();
    assert!(done.moved > 0, "{done:?}");
    let four = store_on(&server, 4).await;
    for (a, was) in accounts.iter().zip(before) {
        let (now, complete) = counted(&four, a).await;
        assert!(complete, "{a}");
        assert_eq!(now, was, "{a}: the same counts in its new partition");
        assert_eq!(now, listed(&four, a).await, "{a}: and they equal its listing");
    }
}

#[tokio::test]
async fn the_counts_endpoint_answers_for_the_keys_accounts_and_404s_the_rest_alike() {
    let app = spawn_app().await;
    for _ in 0..5 {
        app.submit_ok(&cleanup_body("acme")).await;
    }
    let dead = app.submit_ok(&cleanup_body("acme")).await;
    app.kill_job_with(&dead, ErrorClass::Permanent, "gone").await;
    app.submit_ok(&cleanup_body("globex")).await;
    for _ in 0..200 {
        if app.client.get(app.url("/readyz")).send().await.unwrap().status() == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for id in ["acme", "globex", "initech"] {
        let body = json!({
            "id": id, "seller_id": id, "marketplace_ids": [MARKETPLACE],
            "client_id": "amzn1.application-oa2-client.x", "client_secret": "s", "refresh_token": "Atzr|x",
            "skip_validation": true, "first_sync": false,
        });
        let res = app.post(ADMIN, "/v1/accounts").json(&body).send().await.unwrap();
        assert_eq!(res.status(), 201, "{id}: {}", res.text().await.unwrap());
    }
    let expect_acme = |v: &Value| {
        assert_eq!(v["account_id"], "acme");
        assert_eq!(v["complete"], true, "{v}");
        let cleanup = v["kinds"].as_array().unwrap().iter().find(|k| k["kind"] == "cleanup").unwrap();
        assert_eq!(cleanup["counts"]["queued"], 5, "{v}");
        assert_eq!(cleanup["counts"]["dead"], 1, "{v}");
    };
    for key in [ADMIN, ACME, MULTI] {
        expect_acme(&app.get_json(key, "/v1/accounts/acme/counts").await);
    }
    // A key for acme alone: globex (exists) and nobody (does not) read the same.
    let a = problem(app.get(ACME, "/v1/accounts/globex/counts").send().await.unwrap(), 404).await;
    let b = problem(app.get(ACME, "/v1/accounts/nobody/counts").send().await.unwrap(), 404).await;
    assert_eq!(a["title"], b["title"]);
    problem(app.get(MULTI, "/v1/accounts/initech/counts").send().await.unwrap(), 404).await;
    problem(app.get("nope", "/v1/accounts/acme/counts").send().await.unwrap(), 401).await;
}
