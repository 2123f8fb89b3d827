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

/// Queue-core audit of 2026-12-06 (F2): the trim lock (one trimmer per kind, 1 s) was
/// written with the process id and deleted at the end of a pass without a look at who
/// held it then; a pass that outlasted it (many partitions, a slow Redis) deleted the
/// next trimmer's lock, so a third could start beside that one and both take the dead
/// cap's surplus. Here Redis stops for longer than the lock while a pass runs, and
/// another trimmer takes the lock as Redis comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trim_pass_that_outlasted_its_lock_leaves_the_next_trimmers_lock_alone() {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let server = RedisServer::start(Durability::None);
    let store = RedisStore::connect(&server.url(), "drover", JobDefaults::default()).await.unwrap();
    crate::conformance::succeeded_jobs(&store, 3000).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let lock = store.partition_keys(JobKind::Cleanup, None).key("trim:lock");
    // One job a call: the pass goes on for its whole budget.
    let pass = {
        let store = store.clone();
        tokio::spawn(async move { store.trim(JobKind::Cleanup, Duration::from_millis(1), 1).await })
    };
    let mut c = server.conn();
    let until = std::time::Instant::now() + Duration::from_secs(5);
    while !redis::cmd("EXISTS").arg(&lock).query::<bool>(&mut c).unwrap() {
        assert!(std::time::Instant::now() < until, "the pass never took the lock");
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut other = server.conn();
    let pid = Pid::from_raw(server.pid().expect("redis-server runs") as i32);
    kill(pid, Signal::SIGSTOP).unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    // Another trimmer takes the lock, which has run out, as Redis comes back: its SET is
    // on the wire before Redis answers the pass's call in flight.
    let taker = {
        let lock = lock.clone();
        std::thread::spawn(move || {
            let _: () = redis::cmd("SET")
                .arg(&lock)
                .arg("another-trimmer")
                .arg("PX")
                .arg(60_000)
                .query(&mut other)
                .unwrap();
        })
    };
    std::thread::sleep(Duration::from_millis(100));
    kill(pid, Signal::SIGCONT).unwrap();
    taker.join().unwrap();
    let _ = pass.await.unwrap();
    let holder: Option<String> = redis::cmd("GET").arg(&lock).query(&mut c).unwrap();
    assert_eq!(
        holder.as_deref(),
        Some("another-trimmer"),
        "the pass deleted the next trimmer's lock"
    );
}
