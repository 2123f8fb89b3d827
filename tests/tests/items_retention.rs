//! The per-item record's retention (`drover_worker::items_retention`,
//! `drover::data::items_retention`) on a real PostgreSQL database.
use std::time::Duration;

use drover::data::items;
use drover::data::run_fence::{self, RunFence, Write};
use drover_tests::harness::PgDatabase;

async fn job_with_items(conn: &mut sqlx::PgConnection, job_id: &str, n: usize) {
    let fence = RunFence { job_id, run: 1 };
    assert_eq!(run_fence::claim(conn, fence).await.unwrap(), Write::Landed);
    let skus: Vec<String> = (0..n).map(|i| format!("SKU-{i}")).collect();
    items::seed(conn, job_id, 0, &skus).await.unwrap();
}

/// Rows of `table` (`job_items` or `job_runs`) whose job id is like `jobs_like`.
async fn count(pool: &sqlx::PgPool, table: &str, jobs_like: &str) -> i64 {
    let sql = match table {
        "job_items" => "SELECT count(*) FROM job_items WHERE job_id LIKE $1",
        _ => "SELECT count(*) FROM job_runs WHERE job_id LIKE $1",
    };
    sqlx::query_scalar(sql).bind(jobs_like).fetch_one(pool).await.unwrap()
}

/// From the hostile-tenant audit of 2026-12-06: `job_items` (up to 100,000 rows a
/// cleanup) and `job_runs` were never removed, so one tenant's cleanups grew Postgres
/// for ever, for every tenant. A pass removes the record of jobs whose newest run
/// claimed them longer ago than the retention — more jobs than a batch, and a job with
/// more items than one delete takes — and keeps the record of the others.
#[tokio::test]
async fn the_per_item_record_of_jobs_past_the_retention_is_removed_and_the_others_kept() {
    let db = PgDatabase::create().await;
    let pool = db.pool();
    let mut conn = pool.acquire().await.unwrap();
    for i in 0..150 {
        job_with_items(&mut conn, &format!("cleanup:old-{i}"), 3).await;
    }
    job_with_items(&mut conn, "cleanup:old-big", 25_000).await;
    job_with_items(&mut conn, "cleanup:recent", 3).await;
    sqlx::query("UPDATE job_runs SET claimed_at = now() - interval '40 days' WHERE job_id LIKE 'cleanup:old-%'")
        .execute(pool)
        .await
        .unwrap();

    let removed = drover_worker::items_retention::pass(pool, Duration::from_secs(30 * 86_400), Default::default()).await;
    assert_eq!((removed.jobs, removed.items), (151, 150 * 3 + 25_000));
    assert_eq!(count(pool, "job_items", "cleanup:old-%").await, 0);
    assert_eq!(count(pool, "job_runs", "cleanup:old-%").await, 0);
    assert_eq!(count(pool, "job_items", "cleanup:recent").await, 3, "a recent job keeps its items");
    assert_eq!(count(pool, "job_runs", "cleanup:recent").await, 1);
    let again = drover_worker::items_retention::pass(pool, Duration::from_secs(30 * 86_400), Default::default()).await;
    assert_eq!((again.jobs, again.items), (0, 0), "nothing more is due");
}

/// From the review of 2026-12-06: a pass removed a stale job's items in chunks without
/// holding its claim, so a run claiming the job again meanwhile (a paused queue resumed
/// after weeks, a replay) could seed its items and see them deleted, then find nothing
/// left to do and succeed without doing it. A job whose claim row a run holds is passed
/// over, and keeps its record whole.
#[tokio::test]
async fn a_stale_job_claimed_again_during_a_pass_keeps_its_items() {
    let db = PgDatabase::create().await;
    let pool = db.pool();
    let mut conn = pool.acquire().await.unwrap();
    job_with_items(&mut conn, "cleanup:old-a", 3).await;
    sqlx::query("UPDATE job_runs SET claimed_at = now() - interval '40 days'")
        .execute(pool)
        .await
        .unwrap();
    let mut run = pool.begin().await.unwrap();
    let fence = RunFence {
        job_id: "cleanup:old-a",
        run: 2,
    };
    assert_eq!(run_fence::claim(&mut run, fence).await.unwrap(), Write::Landed);
    let sweeping = {
        let pool = pool.clone();
        tokio::spawn(async move { drover_worker::items_retention::pass(&pool, Duration::from_secs(30 * 86_400), Default::default()).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    run.commit().await.unwrap();
    let removed = tokio::time::timeout(Duration::from_secs(20), sweeping)
        .await
        .expect("the pass ends once the claim is committed")
        .unwrap();
    assert_eq!((removed.jobs, removed.items), (0, 0), "the job its run holds is passed over");
    assert_eq!(count(pool, "job_items", "cleanup:old-a").await, 3, "its run finds its items whole");
    let again = drover_worker::items_retention::pass(pool, Duration::from_secs(30 * 86_400), Default::default()).await;
    assert_eq!(again.jobs, 0, "claimed again: no longer stale");
    assert_eq!(count(pool, "job_runs", "cleanup:old-a").await, 1);
}
