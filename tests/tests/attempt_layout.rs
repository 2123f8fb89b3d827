//! Where a job's attempt records live in Redis (docs/architecture.md, "Redis layout"): a
//! run that ended the job with a success on its lease stays in the job's hash, so most
//! finished jobs have no history list; any other record goes on the list.
use drover::job::{AttemptOutcome, ErrorClass, ErrorInfo, JobKind};
use drover::queue::{JobDefaults, JobStore, Leased, NewJob, RedisStore, SettleAction, Settlement};
use drover_tests::harness::{Durability, RedisServer};
use serde_json::json;

use crate::conformance::{attempt, cleanup, LEASE};

const P: &str = "drover:{cleanup}:";

/// The job's history list and its `la` field: (list length, `la` set).
fn stored(conn: &mut redis::Connection, l: &Leased) -> (i64, bool) {
    let list: i64 = redis::cmd("LLEN").arg(format!("{P}attempts:{}", l.id)).query(conn).unwrap();
    let la: bool = redis::cmd("HEXISTS").arg(format!("{P}job:{}", l.id)).arg("la").query(conn).unwrap();
    (list, la)
}

#[tokio::test]
async fn a_first_run_success_keeps_its_record_in_the_job_hash_and_a_failure_on_the_list() {
    let server = RedisServer::start(Durability::None);
    let store = RedisStore::connect(&server.url(), "drover", JobDefaults::default()).await.unwrap();
    store.enqueue(NewJob::new(cleanup("a1"))).await.unwrap();
    store.enqueue(NewJob::new(cleanup("a1"))).await.unwrap();
    let leased = store.fetch(JobKind::Cleanup, "w1", 2, LEASE).await.unwrap().jobs;
    let (ok, failed) = (&leased[0], &leased[1]);
    let error = ErrorInfo {
        class: ErrorClass::Permanent,
        message: "bad SKU".into(),
    };
    let settled = store
        .settle(
            JobKind::Cleanup,
            &[
                Settlement {
                    id: ok.id.clone(),
                    token: ok.token.clone(),
                    action: SettleAction::Succeeded(json!({})),
                    attempt: attempt(ok, AttemptOutcome::Succeeded, None),
                },
                Settlement {
                    id: failed.id.clone(),
                    token: failed.token.clone(),
                    action: SettleAction::Dead(error.clone()),
                    attempt: attempt(failed, AttemptOutcome::Failed, Some(error)),
                },
            ],
        )
        .await
        .unwrap();
    assert_eq!(settled.len(), 2);
    let mut conn = server.conn();
    assert_eq!(stored(&mut conn, ok), (0, true), "the success is the hash's `la`, no list");
    assert_eq!(stored(&mut conn, failed), (1, false), "the failure is on the list");
    for l in [ok, failed] {
        let job = store.get(&l.id).await.unwrap().unwrap();
        assert_eq!(job.attempt_history.len(), 1, "each reads back one record");
        assert_eq!(job.attempt_history[0].worker, "w1");
    }
}
