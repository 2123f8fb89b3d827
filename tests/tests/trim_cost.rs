//! What the retention trim asks of Redis, on a private redis-server through the real
//! store. Every worker process calls it for every kind every 2 s while nothing is due
//! (shared/src/runtime/mod.rs, `trim_loop`), so an idle trim must cost Redis a few
//! commands, not a read of the oldest jobs' records.
use std::time::Duration;

use drover::job::JobKind;
use drover::queue::{JobDefaults, JobStore, RedisStore};
use drover_tests::harness::{Durability, RedisServer};

const JOBS: usize = 200;

/// Calls of `command` since the last `CONFIG RESETSTAT`, from `INFO commandstats`.
fn calls(server: &RedisServer, command: &str) -> u64 {
    let info: String = redis::cmd("INFO").arg("commandstats").query(&mut server.conn()).unwrap();
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}

/// Calls of the library function whose name ends with `suffix` (an FCALL names it), from
/// the SLOWLOG, which logs every command while `slowlog-log-slower-than` is 0.
fn script_calls(server: &RedisServer, suffix: &str) -> usize {
    let entries: Vec<redis::Value> = redis::cmd("SLOWLOG").arg("GET").arg(-1).query(&mut server.conn()).unwrap();
    entries
        .iter()
        .filter(|e| {
            let redis::Value::Array(fields) = e else { return false };
            let Some(redis::Value::Array(args)) = fields.get(3) else {
                return false;
            };
            args.iter()
                .any(|a| matches!(a, redis::Value::BulkString(b) if b.ends_with(suffix.as_bytes())))
        })
        .count()
}

#[tokio::test]
async fn a_trim_with_nothing_due_reads_no_job_records_and_a_due_one_removes_them_all() {
    let server = RedisServer::start(Durability::None);
    let store = RedisStore::connect(&server.url(), "drover", JobDefaults::default()).await.unwrap();
    crate::conformance::succeeded_jobs(&store, JOBS).await;

    // Kept for an hour: nothing is due.
    let mut c = server.conn();
    let _: () = redis::cmd("CONFIG").arg("RESETSTAT").query(&mut c).unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("slowlog-log-slower-than")
        .arg(0)
        .query(&mut c)
        .unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("slowlog-max-len")
        .arg(10_000)
        .query(&mut c)
        .unwrap();
    let _: () = redis::cmd("SLOWLOG").arg("RESET").query(&mut c).unwrap();
    let t = store
        .trim(JobKind::Cleanup, Duration::from_secs(3600), 500)
        .await
        .unwrap()
        .expect("no other trimmer");
    assert_eq!((t.removed, t.backlog), (0, 0));
    assert_eq!(calls(&server, "hmget"), 0, "an idle trim read job records");
    assert_eq!(script_calls(&server, "_remove"), 0, "an idle trim ran the remove script");

    // Once they are past retention the same call removes every one of them.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let t = store
        .trim(JobKind::Cleanup, Duration::from_millis(1), 500)
        .await
        .unwrap()
        .expect("no other trimmer");
    assert_eq!((t.removed, t.backlog), (JOBS as u64, 0));
    assert!(
        script_calls(&server, "_remove") > 0,
        "the SLOWLOG shows the remove script when it runs"
    );
    assert_eq!(store.counts(JobKind::Cleanup).await.unwrap().succeeded, 0);
}
