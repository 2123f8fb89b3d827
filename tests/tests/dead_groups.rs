//! Dead-letter groups end to end: the real API on port 0 over a private redis-server.
//! Dead jobs that failed the same way (ids and numbers aside) are one group, counted from
//! what the scripts keep when jobs die and leave; a scoped key counts only its own
//! accounts; a group is listed, replayed and discarded by its id; dead jobs from before
//! the groups were kept are grouped by the trimmer's backfill.
use std::time::Duration;

use crate::api_support;

use api_support::*;
use drover::job::{ErrorClass, ErrorInfo, JobId, JobKind};
use drover::queue::{JobStore, NewJob, SettleAction, Settlement};
use serde_json::{json, Value};

async fn groups(app: &TestApp, key: &str, query: &str) -> Vec<Value> {
    let res = app.get(key, &format!("/v1/dead-letter/groups{query}")).send().await.unwrap();
    assert_eq!(res.status(), 200, "{query}");
    let v: Value = res.json().await.unwrap();
    v["groups"].as_array().unwrap().clone()
}

/// Kills a cleanup job of `account` with a "listing not found" error naming its SKU.
async fn sku_not_found(app: &TestApp, account: &str, n: u32) -> JobId {
    let id = app.submit_ok(&cleanup_body(account)).await;
    let message = format!("deleteListingsItem SKU-{n:05} on marketplace ATVPDKIKX0DER: 404 \"listing {n}77 not found\"");
    app.kill_job_with(&id, ErrorClass::Permanent, &message).await;
    id
}

fn ids_of(page: &Value) -> Vec<String> {
    page["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn dead_jobs_that_differ_only_by_ids_are_one_group_and_a_scoped_key_counts_only_its_own() {
    let app = spawn_app().await;
    let mut acme = Vec::new();
    for n in 0..5 {
        acme.push(sku_not_found(&app, "acme", 1000 + n).await);
    }
    for n in 0..2 {
        sku_not_found(&app, "globex", 2000 + n).await;
    }
    let other = app.submit_ok(&cleanup_body("acme")).await;
    app.kill_job_with(&other, ErrorClass::Transient, "timed out after 30 s").await;

    let all = groups(&app, ADMIN, "").await;
    assert_eq!(all.len(), 2, "{all:#?}");
    let big = &all[0];
    assert_eq!(big["count"], 7, "largest first: {all:#?}");
    assert_eq!(big["kind"], "cleanup");
    assert_eq!(big["class"], "permanent");
    assert_eq!(
        big["message"], "deleteListingsItem SKU-# on marketplace #: 404 \"?\"",
        "ids, long numbers and quoted text masked; the status code kept"
    );
    assert!(big["id"].as_str().unwrap().starts_with("cleanup."), "{big}");
    let samples: Vec<&str> = big["sample_job_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(samples.len(), 3, "{big}");
    assert!(big["first_seen"].as_str().unwrap() <= big["last_seen"].as_str().unwrap(), "{big}");
    assert_eq!((all[1]["count"].clone(), all[1]["class"].clone()), (json!(1), json!("transient")));
    assert_eq!(all[1]["message"], "timed out after 30 s", "short numbers are kept");

    // A key limited to acme: acme's 5 and 1; globex's 2 are not counted, and its jobs
    // are not among the samples.
    let mine = groups(&app, ACME, "").await;
    let counts: Vec<u64> = mine.iter().map(|g| g["count"].as_u64().unwrap()).collect();
    assert_eq!(counts, [5, 1], "{mine:#?}");
    assert_eq!(mine[0]["id"], big["id"], "the same group id");
    for s in mine[0]["sample_job_ids"].as_array().unwrap() {
        assert!(acme.iter().any(|a| a.as_str() == s.as_str().unwrap()), "{s} is acme's");
    }
    let res = app.get(ACME, "/v1/dead-letter/groups?account_id=globex").send().await.unwrap();
    problem(res, 403).await;

    // Listing a group: every job of it, newest first; a scoped key sees its own.
    let group = big["id"].as_str().unwrap();
    let page: Value = app.get_json(ADMIN, &format!("/v1/dead-letter?group={group}")).await;
    assert_eq!(ids_of(&page).len(), 7, "{page}");
    assert_eq!(ids_of(&page)[..3], samples.iter().map(|s| s.to_string()).collect::<Vec<_>>()[..]);
    let page: Value = app.get_json(ACME, &format!("/v1/dead-letter?group={group}")).await;
    let mut listed = ids_of(&page);
    listed.sort();
    let mut expected: Vec<String> = acme.iter().map(ToString::to_string).collect();
    expected.sort();
    assert_eq!(listed, expected);
}

#[tokio::test]
async fn a_group_is_replayed_and_discarded_by_its_id_and_its_count_follows() {
    let app = spawn_app().await;
    for n in 0..6 {
        sku_not_found(&app, "acme", 3000 + n).await;
    }
    let other = app.submit_ok(&cleanup_body("acme")).await;
    app.kill_job_with(&other, ErrorClass::Transient, "connection reset").await;
    let group = groups(&app, ADMIN, "?kind=cleanup").await[0]["id"].as_str().unwrap().to_owned();

    let res = app
        .post(ADMIN, "/v1/dead-letter/replay")
        .json(&json!({"filter": {"group": group}, "limit": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["replayed"].as_array().unwrap().len(), 2, "{v}");
    let after = groups(&app, ADMIN, "").await;
    assert_eq!(after[0]["count"], 4, "replayed jobs leave their group: {after:#?}");
    assert_eq!(after[1]["count"], 1, "the other group is untouched");

    // A replayed job that dies the same way again joins the group again.
    let again: JobId = v["replayed"][0].as_str().unwrap().parse().unwrap();
    app.kill_job_with(
        &again,
        ErrorClass::Permanent,
        "deleteListingsItem SKU-09999 on marketplace ATVPDKIKX0DER: 404 \"x\"",
    )
    .await;
    assert_eq!(groups(&app, ADMIN, "").await[0]["count"], 5);

    let res = app
        .post(ADMIN, "/v1/dead-letter/discard")
        .json(&json!({"filter": {"group": group}, "limit": 1000}))
        .send()
        .await
        .unwrap();
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["discarded"].as_array().unwrap().len(), 5, "{v}");
    let left = groups(&app, ADMIN, "").await;
    assert_eq!(left.len(), 1, "an emptied group is gone: {left:#?}");
    assert_eq!(left[0]["class"], "transient");
    assert_eq!(
        app.store.get(&other).await.unwrap().map(|j| j.state),
        Some(drover::job::JobState::Dead)
    );

    // Bad group ids are named, never a 500.
    for (body, field) in [
        (json!({"filter": {"group": "nonsense"}}), "filter.group"),
        (
            json!({"filter": {"group": "sync.0123456789abcdef", "kind": "cleanup"}}),
            "filter.group",
        ),
    ] {
        let res = app.post(ADMIN, "/v1/dead-letter/replay").json(&body).send().await.unwrap();
        let p = problem(res, 422).await;
        assert_eq!(fields(&p), [field], "{p}");
    }
    let res = app.get(ADMIN, "/v1/dead-letter?group=cleanup.XYZ").send().await.unwrap();
    assert_eq!(fields(&problem(res, 422).await), ["group"]);
    let res = app.get(ADMIN, "/v1/jobs?group=cleanup.0123456789abcdef").send().await.unwrap();
    assert_eq!(fields(&problem(res, 422).await), ["group"]);
    let res = app.get(ADMIN, "/v1/dead-letter/groups?limit=0&kind=nope").send().await.unwrap();
    let mut named = fields(&problem(res, 422).await);
    named.sort();
    assert_eq!(named, ["kind", "limit"]);
}

#[tokio::test]
async fn dead_jobs_from_before_groups_were_kept_are_grouped_by_the_trimmers_backfill() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for n in 0..4 {
        ids.push(sku_not_found(&app, "acme", 4000 + n).await);
    }
    // Make the queue look as an older release left it: no signatures, no group keys.
    let mut conn = app.redis.conn();
    let keys: Vec<String> = redis::cmd("KEYS").arg("*{cleanup*").query(&mut conn).unwrap();
    for k in &keys {
        let suffix = k.rsplit_once("}:").map(|(_, s)| s).unwrap_or_default();
        if [
            "dg", "dgm", "dgf", "dgl", "dgn", "dgdone", "dgcur", "dgjdone", "dgjcur", "dgndone", "dgncur",
        ]
        .contains(&suffix)
            || suffix.starts_with("dg:")
            || suffix.starts_with("dga:")
            || suffix.starts_with("dgj:")
        {
            let _: i64 = redis::cmd("DEL").arg(k).query(&mut conn).unwrap();
        }
    }
    for id in &ids {
        let key = keys.iter().find(|k| k.ends_with(&format!("job:{id}"))).expect("the job's record");
        let _: i64 = redis::cmd("HDEL").arg(key).arg("sg").arg("dn").query(&mut conn).unwrap();
    }
    assert!(groups(&app, ADMIN, "").await.is_empty(), "nothing grouped yet");
    let ranked = |conn: &mut redis::Connection| -> Option<f64> {
        let keys: Vec<String> = redis::cmd("KEYS").arg("*{cleanup*dgn").query(conn).unwrap();
        let key = keys.first()?;
        redis::cmd("ZSCORE").arg(key).arg("acme").query(conn).unwrap()
    };

    let trimmed = app.store.trim(JobKind::Cleanup, Duration::from_secs(3600), 2).await.unwrap();
    assert!(trimmed.is_some(), "this test's trimmer held the lock");
    let after = groups(&app, ADMIN, "").await;
    assert_eq!(after.len(), 1, "{after:#?}");
    assert_eq!(after[0]["count"], 4, "every old dead job is grouped, two at a time");
    assert_eq!(groups(&app, ACME, "").await[0]["count"], 4, "and counted for its account");
    // and put in the account's own index of the group, which a scoped listing reads
    let own: Vec<String> = redis::cmd("KEYS").arg("*{cleanup*dgj:*:acme").query(&mut conn).unwrap();
    assert_eq!(own.len(), 1, "{own:?}");
    let n: i64 = redis::cmd("ZCARD").arg(&own[0]).query(&mut conn).unwrap();
    assert_eq!(n, 4);
    assert_eq!(
        ranked(&mut conn),
        Some(4.0),
        "and counted among the account's dead jobs, for the dead cap"
    );
    let group = after[0]["id"].as_str().unwrap();
    let page: Value = app.get_json(ACME, &format!("/v1/dead-letter?group={group}")).await;
    assert_eq!(ids_of(&page).len(), 4, "{page}");
    // Replaying one of them leaves the group as for any other.
    let res = app
        .post(ADMIN, "/v1/dead-letter/replay")
        .json(&json!({"ids": [ids[0].as_str()]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(groups(&app, ADMIN, "").await[0]["count"], 3);
    assert_eq!(ranked(&mut conn), Some(3.0));
}

/// A scoped key lists its own dead jobs of a group without walking other tenants' dead
/// jobs of the same group (finding M9): with 2,500 of another account's, all newer than
/// its one, its first page holds its job and says nothing more is there — neither
/// slowed by nor hinting at the other tenant's failures.
#[tokio::test]
async fn a_scoped_keys_group_listing_never_walks_another_tenants_dead_jobs() {
    let app = spawn_app().await;
    let mine = sku_not_found(&app, "acme", 1).await;
    let theirs: Vec<NewJob> = (0..2500).map(|_| NewJob::new(cleanup_payload("globex"))).collect();
    for r in app.store.enqueue_bulk(theirs).await.unwrap() {
        r.unwrap();
    }
    let mut dead = 0;
    while dead < 2500 {
        let leased = app
            .store
            .fetch(JobKind::Cleanup, "w", 500, Duration::from_secs(60))
            .await
            .unwrap()
            .jobs;
        assert!(!leased.is_empty(), "{dead} of 2,500 dead, and nothing more to lease");
        let settlements: Vec<Settlement> = leased
            .iter()
            .enumerate()
            .map(|(i, l)| Settlement {
                id: l.id.clone(),
                token: l.token.clone(),
                action: SettleAction::Dead(ErrorInfo {
                    class: ErrorClass::Permanent,
                    message: format!(
                        "deleteListingsItem SKU-{:05} on marketplace ATVPDKIKX0DER: 404 \"listing {i}77 not found\"",
                        dead + i
                    ),
                }),
                attempt: None,
            })
            .collect();
        for chunk in settlements.chunks(200) {
            app.store.settle(JobKind::Cleanup, chunk).await.unwrap();
        }
        dead += leased.len();
    }
    let all = groups(&app, ADMIN, "").await;
    assert_eq!(all.len(), 1, "one failure, one group: {all:#?}");
    assert_eq!(all[0]["count"], 2501);
    let group = all[0]["id"].as_str().unwrap();

    let page: Value = app.get_json(ACME, &format!("/v1/dead-letter?group={group}&limit=10")).await;
    assert_eq!(ids_of(&page), [mine.to_string()], "{page}");
    assert!(
        page["next_cursor"].is_null(),
        "no further page: another tenant's dead jobs are not this key's business: {page}"
    );

    // A job counted for the account but missing from its index (killed by a previous
    // release's script during an upgrade), or an index the trimmer has not yet filled:
    // the account's own index of all its jobs is walked instead, never the group's
    // shared one, so the page is neither short nor a hint at the other tenant's.
    let mut conn = app.redis.conn();
    let own: Vec<String> = redis::cmd("KEYS").arg("*{cleanup*dgj:*:acme").query(&mut conn).unwrap();
    let _: i64 = redis::cmd("ZREM").arg(&own[0]).arg(mine.as_str()).query(&mut conn).unwrap();
    let page: Value = app.get_json(ACME, &format!("/v1/dead-letter?group={group}&limit=10")).await;
    assert_eq!(ids_of(&page), [mine.to_string()], "{page}");
    assert!(page["next_cursor"].is_null(), "{page}");
    let done: Vec<String> = redis::cmd("KEYS").arg("*{cleanup*dgjdone").query(&mut conn).unwrap();
    let _: i64 = redis::cmd("DEL").arg(&done[0]).query(&mut conn).unwrap();
    let page: Value = app.get_json(ACME, &format!("/v1/dead-letter?group={group}&limit=10")).await;
    assert_eq!(ids_of(&page), [mine.to_string()], "{page}");
    assert!(page["next_cursor"].is_null(), "{page}");
}

/// A scoped group listing that began on the account's own index of all its jobs (the
/// group's per-account index was not whole) goes on there when that index becomes whole
/// between pages: its cursor says which index its positions are in, so no job is
/// skipped or shown twice.
#[tokio::test]
async fn a_group_listing_keeps_to_the_index_it_began_on() {
    let app = spawn_app().await;
    // Submitted in one order and killed in the other, so the account's index of all its
    // jobs (by submission) and the group's (by death) order them oppositely.
    let mut mine = Vec::new();
    for _ in 0..5 {
        mine.push(app.submit_ok(&cleanup_body("acme")).await);
    }
    for (n, id) in mine.iter().enumerate().rev() {
        let message = format!("deleteListingsItem SKU-{n:05} on marketplace ATVPDKIKX0DER: 404 \"listing {n}77 not found\"");
        app.kill_job_with(id, ErrorClass::Permanent, &message).await;
        tokio::time::sleep(Duration::from_millis(2)).await;
        sku_not_found(&app, "globex", 200 + n as u32).await;
    }
    let mut mine: Vec<String> = mine.iter().map(ToString::to_string).collect();
    let group = groups(&app, ACME, "").await[0]["id"].as_str().unwrap().to_owned();
    let mut conn = app.redis.conn();
    let own: Vec<String> = redis::cmd("KEYS").arg("*{cleanup*dgj:*:acme").query(&mut conn).unwrap();
    // The first job's place in the group's own index is lost: that index is not whole.
    let died: f64 = redis::cmd("ZSCORE").arg(&own[0]).arg(&mine[0]).query(&mut conn).unwrap();
    let _: i64 = redis::cmd("ZREM").arg(&own[0]).arg(&mine[0]).query(&mut conn).unwrap();
    let first: Value = app.get_json(ACME, &format!("/v1/dead-letter?group={group}&limit=2")).await;
    let mut listed = ids_of(&first);
    // Whole again before the next page.
    let _: i64 = redis::cmd("ZADD").arg(&own[0]).arg(died).arg(&mine[0]).query(&mut conn).unwrap();
    let mut cursor = first["next_cursor"].as_str().map(str::to_owned);
    while let Some(c) = cursor {
        let page: Value = app
            .get_json(ACME, &format!("/v1/dead-letter?group={group}&limit=2&cursor={c}"))
            .await;
        listed.extend(ids_of(&page));
        cursor = page["next_cursor"].as_str().map(str::to_owned);
    }
    let mut sorted = listed.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), listed.len(), "none twice: {listed:?}");
    mine.sort();
    assert_eq!(sorted, mine, "every one of its dead jobs, and only its own");
}
