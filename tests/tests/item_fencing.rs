//! The per-item record's fence (`drover::data::run_fence`) on a real PostgreSQL
//! database: only a job's newest run writes its items, and a run learns when an earlier
//! run sent an item's call without recording its answer.
use drover::data::items::{self, ItemOutcome, Sent};
use drover::data::run_fence::{self, RunFence, Write};
use drover_tests::harness::PgDatabase;
use serde_json::json;

const JOB: &str = "cleanup:fence-test";

fn run(n: i64) -> RunFence<'static> {
    RunFence { job_id: JOB, run: n }
}

async fn seeded(db: &PgDatabase) -> sqlx::pool::PoolConnection<sqlx::Postgres> {
    let mut conn = db.pool().acquire().await.unwrap();
    let skus = vec!["SKU-1".to_owned(), "SKU-2".to_owned()];
    items::seed(&mut conn, JOB, 0, &skus).await.unwrap();
    conn
}

async fn outcome_of(conn: &mut sqlx::PgConnection, item: &str) -> (String, i32) {
    sqlx::query_as("SELECT outcome, tries FROM job_items WHERE job_id = $1 AND item = $2")
        .bind(JOB)
        .bind(item)
        .fetch_one(conn)
        .await
        .unwrap()
}

/// Found by the chaos audit of 2026-12-05: a sync's listing rows were written without
/// the fence, so a worker resumed after its job was taken over wrote a stale listing
/// that the newer run then counted as checked; and the fence could not be held for a
/// write outside the item record (the backfill's `last_synced`).
#[tokio::test]
async fn a_superseded_run_writes_no_listing_and_cannot_hold_the_job() {
    use drover::data::listings::{self, ListingRow};
    let db = PgDatabase::create().await;
    let mut conn = db.pool().acquire().await.unwrap();
    let row = |status: &str| ListingRow {
        sku: "SKU-1".into(),
        marketplace_id: "ATVPDKIKX0DER".into(),
        asin: None,
        status: status.into(),
        raw: None,
    };
    assert_eq!(run_fence::claim(&mut conn, run(100)).await.unwrap(), Write::Landed);
    assert_eq!(
        listings::upsert(&mut conn, run(100), "acme", &row("BUYABLE")).await.unwrap(),
        Write::Landed
    );
    assert_eq!(run_fence::claim(&mut conn, run(200)).await.unwrap(), Write::Landed);
    assert_eq!(
        listings::upsert(&mut conn, run(200), "acme", &row("DISCOVERABLE")).await.unwrap(),
        Write::Landed
    );
    assert_eq!(
        listings::upsert(&mut conn, run(100), "acme", &row("BUYABLE")).await.unwrap(),
        Write::Fenced
    );
    let status: String = sqlx::query_scalar("SELECT status FROM listings WHERE account_id = 'acme' AND sku = 'SKU-1'")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(status, "DISCOVERABLE", "the later run's listing stands");
    assert_eq!(run_fence::hold(&mut conn, run(100)).await.unwrap(), Write::Fenced);
    assert_eq!(run_fence::hold(&mut conn, run(200)).await.unwrap(), Write::Landed);
}

#[tokio::test]
async fn a_run_superseded_by_a_later_claim_writes_nothing_and_cannot_claim_back() {
    let db = PgDatabase::create().await;
    let mut conn = seeded(&db).await;
    assert_eq!(run_fence::claim(&mut conn, run(100)).await.unwrap(), Write::Landed);
    let deleted = items::set(&mut conn, run(100), "SKU-1", ItemOutcome::Deleted, &json!({}))
        .await
        .unwrap();
    assert_eq!(deleted, Write::Landed);

    assert_eq!(run_fence::claim(&mut conn, run(200)).await.unwrap(), Write::Landed);
    let stale = items::set(&mut conn, run(100), "SKU-2", ItemOutcome::Deleted, &json!({}))
        .await
        .unwrap();
    assert_eq!(stale, Write::Fenced);
    assert_eq!(outcome_of(&mut conn, "SKU-2").await, ("pending".to_owned(), 0));
    let note = items::note(&mut conn, run(100), "SKU-2", &json!({"report_id": "r"})).await.unwrap();
    assert_eq!(note, Write::Fenced);
    let put = items::put(&mut conn, run(100), 9, "orders/page-00009", ItemOutcome::Done, &json!({}))
        .await
        .unwrap();
    assert_eq!(put, Write::Fenced);
    assert_eq!(items::mark_sent(&mut conn, run(100), "SKU-2").await.unwrap(), Sent::Fenced);
    assert_eq!(
        run_fence::claim(&mut conn, run(100)).await.unwrap(),
        Write::Fenced,
        "an older run cannot take the job back"
    );

    let fresh = items::set(&mut conn, run(200), "SKU-2", ItemOutcome::Absent, &json!({}))
        .await
        .unwrap();
    assert_eq!(fresh, Write::Landed);
    assert_eq!(outcome_of(&mut conn, "SKU-2").await, ("absent".to_owned(), 1));
    assert_eq!(
        run_fence::claim(&mut conn, run(200)).await.unwrap(),
        Write::Landed,
        "the newest run claims again (a resumed slice)"
    );
}

#[tokio::test]
async fn a_send_left_unanswered_by_an_earlier_run_is_reported_to_the_next_and_cleared_by_an_answer() {
    let db = PgDatabase::create().await;
    let mut conn = seeded(&db).await;
    assert_eq!(run_fence::claim(&mut conn, run(100)).await.unwrap(), Write::Landed);
    assert_eq!(items::mark_sent(&mut conn, run(100), "SKU-1").await.unwrap(), Sent::Marked);
    assert_eq!(items::mark_sent(&mut conn, run(100), "SKU-2").await.unwrap(), Sent::Marked);
    // SKU-2's answer is recorded; SKU-1's is lost with its run.
    let answered = items::set(&mut conn, run(100), "SKU-2", ItemOutcome::Failed, &json!({"class": "transient"}))
        .await
        .unwrap();
    assert_eq!(answered, Write::Landed);

    assert_eq!(run_fence::claim(&mut conn, run(200)).await.unwrap(), Write::Landed);
    assert_eq!(
        items::mark_sent(&mut conn, run(200), "SKU-1").await.unwrap(),
        Sent::AfterUnansweredRun(100)
    );
    assert_eq!(
        items::mark_sent(&mut conn, run(200), "SKU-2").await.unwrap(),
        Sent::Marked,
        "an answered send is not reported"
    );
    assert_eq!(
        items::mark_sent(&mut conn, run(200), "SKU-2").await.unwrap(),
        Sent::Marked,
        "the run's own earlier send (an in-call retry) is not reported"
    );
}
