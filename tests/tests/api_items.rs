//! `GET /v1/jobs/{id}/items`: a job's per-item results from PostgreSQL, filtered by
//! outcome and cursor paginated, with totals.
use crate::api_support;

use api_support::*;
use drover::data::items::{self, ItemOutcome};
use drover::data::run_fence::{self, RunFence, Write};
use drover::db::DatabaseConfig;
use serde_json::{json, Value};

async fn job_with_items(app: &TestApp) -> String {
    let id = app.submit_ok(&cleanup_body("acme")).await;
    let pool = drover::db::connect_lazy(&DatabaseConfig::with_url(app.database_url.clone())).unwrap();
    let mut conn = pool.acquire().await.unwrap();
    let skus: Vec<String> = (0..250).map(|i| format!("SKU-{i:03}")).collect();
    items::seed(&mut conn, id.as_str(), 0, &skus).await.unwrap();
    // Written as one run of the job, as a worker writes them.
    let run = RunFence {
        job_id: id.as_str(),
        run: 1,
    };
    assert_eq!(run_fence::claim(&mut conn, run).await.unwrap(), Write::Landed);
    for (i, sku) in skus.iter().enumerate() {
        let (outcome, detail) = match i % 5 {
            0 => (ItemOutcome::Failed, json!({"class": "permanent", "reason": "400 InvalidInput"})),
            1 => (ItemOutcome::Absent, json!({})),
            _ => (ItemOutcome::Deleted, json!({})),
        };
        if i < 240 {
            let written = items::set(&mut conn, run, sku, outcome, &detail).await.unwrap();
            assert_eq!(written, Write::Landed);
        }
    }
    id.to_string()
}

#[tokio::test]
async fn items_are_listed_in_order_with_totals_and_a_cursor_that_reaches_every_item_once() {
    let app = spawn_app().await;
    let id = job_with_items(&app).await;
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/jobs/{id}/items?limit=100&cursor={c}"),
            None => format!("/v1/jobs/{id}/items?limit=100"),
        };
        let res = app.get(READER, &path).send().await.unwrap();
        assert_eq!(res.status(), 200);
        let page: Value = res.json().await.unwrap();
        assert_eq!(
            page["summary"],
            json!({"total": 250, "succeeded": 144, "failed": 48, "skipped": 48, "pending": 10})
        );
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["item"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let expected: Vec<String> = (0..250).map(|i| format!("SKU-{i:03}")).collect();
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn items_can_be_filtered_by_outcome_and_show_why_they_failed() {
    let app = spawn_app().await;
    let id = job_with_items(&app).await;
    let page: Value = app
        .get(READER, &format!("/v1/jobs/{id}/items?outcome=failed&limit=1000"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 48);
    assert!(items
        .iter()
        .all(|i| i["outcome"] == "failed" && i["detail"]["reason"] == "400 InvalidInput"));
}

/// Found by an audit of error texts: every Postgres error here was a 503 telling the
/// client to retry, a schema that does not match (which no retry fixes) too. Now only an
/// unavailable database is a 503; anything else is a 500 that quotes no SQL.
#[tokio::test]
async fn a_database_error_no_retry_fixes_is_a_500_not_a_503() {
    let app = spawn_app().await;
    let id = job_with_items(&app).await;
    let pool = drover::db::connect_lazy(&DatabaseConfig::with_url(app.database_url.clone())).unwrap();
    sqlx::query("ALTER TABLE job_items RENAME COLUMN detail TO detail_gone")
        .execute(&pool)
        .await
        .unwrap();
    let res = app.get(READER, &format!("/v1/jobs/{id}/items")).send().await.unwrap();
    let p = problem(res, 500).await;
    assert!(
        !p.to_string().contains("detail_gone") && !p.to_string().contains("column"),
        "no SQL text: {p}"
    );
}

/// Found by the hostile-tenant audit of 2026-12-07 (second): the items listing went to
/// Postgres without asking whether the schema was in, so until the migrations ran (a
/// fresh database, another replica holding their lock) it answered a 500 and logged an
/// error for each call, where every other Postgres-backed route says 503, retry.
#[tokio::test]
async fn items_before_the_schema_is_in_are_a_503_to_retry_not_a_500() {
    let db = drover_tests::harness::PgDatabase::create().await;
    // The schema as a start-up finds it part-applied: its migrations cannot run here (one
    // of those recorded no longer matches) and the items' table is not there.
    sqlx::query("UPDATE _sqlx_migrations SET checksum = '\\x00'::bytea WHERE version = (SELECT min(version) FROM _sqlx_migrations)")
        .execute(db.pool())
        .await
        .unwrap();
    sqlx::query("DROP TABLE job_items").execute(db.pool()).await.unwrap();
    let url = db.url();
    let app = spawn_app_with(drover_tests::harness::Durability::None, |c| c.database.url = url.into()).await;
    let id = app.submit_ok(&cleanup_body("acme")).await;
    let res = app.get(READER, &format!("/v1/jobs/{id}/items")).send().await.unwrap();
    assert!(res.headers().contains_key("retry-after"), "{:?}", res.headers());
    let p = problem(res, 503).await;
    assert_eq!(p["type"], "urn:drover:problem:unavailable", "{p}");
}

#[tokio::test]
async fn bad_item_parameters_are_a_422_naming_each_and_unknown_jobs_a_404() {
    let app = spawn_app().await;
    let id = job_with_items(&app).await;
    let res = app
        .get(READER, &format!("/v1/jobs/{id}/items?outcome=gone&limit=0&cursor=zzz"))
        .send()
        .await
        .unwrap();
    let p = problem(res, 422).await;
    let f = fields(&p);
    for name in ["outcome", "limit", "cursor"] {
        assert!(f.contains(&name.to_owned()), "{name} missing in {f:?}");
    }
    // Found by an audit of error texts: a limit that is not a number, or too large for
    // one, was refused as the field `query` with the parser's words.
    for limit in ["abc", "99999999999"] {
        let res = app.get(READER, &format!("/v1/jobs/{id}/items?limit={limit}")).send().await.unwrap();
        let p = problem(res, 422).await;
        assert_eq!(fields(&p), ["limit"], "{p}");
    }
    let res = app
        .get(READER, "/v1/jobs/cleanup_01J9Z3K4M5N6P7Q8R9S0T1V2W3/items")
        .send()
        .await
        .unwrap();
    problem(res, 404).await;
}

#[tokio::test]
async fn a_key_limited_to_other_accounts_cannot_read_a_jobs_items_and_is_told_it_does_not_exist() {
    let app = spawn_app().await;
    let globex = app.submit_ok(&cleanup_body("globex")).await;
    let res = app.get(ACME, &format!("/v1/jobs/{globex}/items")).send().await.unwrap();
    problem(res, 404).await;
}

/// Hostile-tenant audit of 2026-12-06: every page of a job's items counts all of them
/// by outcome in Postgres (up to 100,000 for a cleanup), and cost one read of the key's
/// budget whatever the count, so a key's 600-read burst held the API's database pool.
/// A page is charged a read for each `ITEMS_COUNTED_PER_READ` items counted past the
/// first ones.
#[tokio::test]
async fn a_page_of_a_job_with_many_items_is_charged_for_counting_them() {
    let app = spawn_app_with(drover_tests::harness::Durability::None, |c| {
        c.read_rate_limit.per_minute = 60;
        c.read_rate_limit.burst = 30;
    })
    .await;
    let id = app.submit_ok(&cleanup_body("acme")).await;
    let pool = drover::db::connect_lazy(&DatabaseConfig::with_url(app.database_url.clone())).unwrap();
    let mut conn = pool.acquire().await.unwrap();
    let skus: Vec<String> = (0..20_000).map(|i| format!("SKU-{i:05}")).collect();
    items::seed(&mut conn, id.as_str(), 0, &skus).await.unwrap();
    let mut served = 0;
    for _ in 0..30 {
        let res = app.get(ACME, &format!("/v1/jobs/{id}/items?limit=1")).send().await.unwrap();
        if res.status() == 429 {
            assert!(res.headers().get("retry-after").is_some());
            break;
        }
        assert_eq!(res.status(), 200);
        let page: Value = res.json().await.unwrap();
        assert_eq!(page["summary"]["total"], 20_000, "{page}");
        served += 1;
    }
    assert!(
        (1..=5).contains(&served),
        "a budget of 30 reads pays for a few counts of 20,000 items, not 30: {served} served"
    );
    // A small job's page costs one read: another key's 25 are all served.
    let small = app.submit_ok(&cleanup_body("globex")).await;
    items::seed(&mut conn, small.as_str(), 0, &skus[..10]).await.unwrap();
    for i in 0..25 {
        let res = app.get(MULTI, &format!("/v1/jobs/{small}/items")).send().await.unwrap();
        assert_eq!(res.status(), 200, "small page {i}");
    }
}

/// Found by the audit of what the API shows (2026-12-07): an items cursor was a plain
/// `item:<seq>`, taken on any job, under any outcome filter and when made by hand, so a
/// walk that changed its filter (or its job) midway skipped items without an error. It is
/// bound to the key, the job and the filter, as the listings' cursors are.
#[tokio::test]
async fn an_items_cursor_is_bound_to_its_job_and_outcome_filter() {
    use base64::Engine;
    let app = spawn_app().await;
    let id = job_with_items(&app).await;
    let other = job_with_items(&app).await;
    let page = app.get_json(READER, &format!("/v1/jobs/{id}/items?outcome=failed&limit=5")).await;
    let cursor = page["next_cursor"].as_str().expect("a next page").to_owned();
    let next = app
        .get_json(READER, &format!("/v1/jobs/{id}/items?outcome=failed&limit=5&cursor={cursor}"))
        .await;
    assert_eq!(
        next["items"].as_array().unwrap().len(),
        5,
        "the cursor goes on where it was made: {next}"
    );
    let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("item:0");
    for path in [
        format!("/v1/jobs/{id}/items?cursor={cursor}"),
        format!("/v1/jobs/{other}/items?outcome=failed&cursor={cursor}"),
        format!("/v1/jobs/{id}/items?cursor={forged}"),
    ] {
        let res = app.get(READER, &path).send().await.unwrap();
        let p = problem(res, 422).await;
        assert_eq!(fields(&p), ["cursor"], "{path}: {p}");
    }
}

/// Found by the same audit: `?outcome=&limit=` (what a form sends for "no filter") and
/// an unknown parameter were a 422 on this listing only; every other one reads an empty
/// parameter as absent and ignores unknown ones.
#[tokio::test]
async fn empty_and_unknown_item_parameters_are_read_as_on_other_listings() {
    let app = spawn_app().await;
    let id = job_with_items(&app).await;
    let plain = app.get_json(READER, &format!("/v1/jobs/{id}/items")).await;
    let res = app
        .get(READER, &format!("/v1/jobs/{id}/items?outcome=&limit=&cursor=&page=2"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let loose: Value = res.json().await.unwrap();
    assert_eq!(loose["items"], plain["items"]);
}
