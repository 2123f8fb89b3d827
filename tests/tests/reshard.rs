//! Resharding under load: the slot holding a Drover queue moves from one Redis Cluster
//! primary to another, key batch by key batch as an operator's tool moves it, while jobs
//! are enqueued and two worker processes run them. No acknowledged enqueue is lost, no
//! job runs twice at once, every job succeeds soon after the move, and the queue carries
//! on on the new primary without a restart; with partitions, the others go on meanwhile.
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use drover::job::{Job, JobId, JobKind, JobPayload, JobState};
use drover::queue::{JobDefaults, JobStore, NewJob, Partitions, RedisStore};
use drover_tests::harness::{ChildProcess, RedisCluster};
use drover_tests::runs::{late_pids, overlapping_runs, read_runs, Runs};
use futures::StreamExt;
use serde_json::json;

/// Jobs sent at a steady pace over [`PRODUCE`] (the move starts [`MOVE_AFTER`] into it),
/// then jobs sent once the move has ended, whenever that is.
const PACED: usize = 3000;
const AFTER: usize = 200;
const JOBS: usize = PACED + AFTER;
const PRODUCE: Duration = Duration::from_secs(10);
const MOVE_AFTER: Duration = Duration::from_secs(3);
/// Keys per `MIGRATE` (`redis-cli --cluster reshard`'s default pipeline), and a pause
/// between two so that the move lasts seconds (a production slot holds far more keys);
/// with `n` partitions the slot holds an `n`th of the keys, and the pause is `n` times this.
const BATCH: usize = 10;
const PAUSE: Duration = Duration::from_millis(15);
/// How long after the move every job must have succeeded.
const SETTLED_WITHIN: Duration = Duration::from_secs(20);
/// The partition whose slot moves.
const MOVED: u16 = 0;

fn now_us() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_micros()
}

fn us(t: chrono::DateTime<chrono::Utc>) -> u128 {
    t.timestamp_micros().max(0) as u128
}

fn worker(url: &str, partitions: u16, run_file: &Path, n: usize) -> ChildProcess {
    let env = [
        ("DROVER_WORKER__REDIS_URL", url.to_owned()),
        ("DROVER_WORKER__QUEUE__PARTITIONS", partitions.to_string()),
        ("DROVER_WORKER__CONCURRENCY__SYNC", "0".to_owned()),
        ("DROVER_WORKER__CONCURRENCY__BACKFILL", "0".to_owned()),
        ("DROVER_WORKER__CONCURRENCY__CLEANUP", "16".to_owned()),
        ("DROVER_WORKER__METRICS_LISTEN", String::new()),
        ("DROVER_TEST_RUN_FILE", run_file.display().to_string()),
        ("RUST_LOG", "info".to_owned()),
    ];
    ChildProcess::test_worker(&format!("worker-{n}"), &env)
}

/// Job `i`: one in twenty runs 2 s (past a lease, so its renewals meet the move), the
/// rest 10 ms, over fifty accounts.
fn job(i: usize) -> NewJob {
    let behaviour = if i.is_multiple_of(20) { "sleep.2000" } else { "sleep.10" };
    let payload = JobPayload::from_json(
        JobKind::Cleanup,
        json!({"account_id": format!("t.{behaviour}_{}", i % 50), "marketplace_id": "ATVPDKIKX0DER", "skus": ["SKU-1"]}),
    )
    .unwrap();
    let mut job = NewJob::new(payload);
    job.idempotency_key = Some(format!("reshard-{i}"));
    job.max_attempts = Some(20);
    job
}

/// A job the store acknowledged: when it was first sent and when it was answered.
struct Acked {
    id: JobId,
    partition: u16,
    sent_us: u128,
    acked_us: u128,
}

/// What the store answered instead of an acknowledgement, by error text, and how often.
type Refusals = Arc<Mutex<HashMap<String, u32>>>;

/// Sends job `i` until the store acknowledges it, again with the same idempotency key
/// after a failure (as a client of the API would).
async fn enqueue_until_acked(store: RedisStore, partitions: Partitions, i: usize, refusals: Refusals) -> Acked {
    let sent_us = now_us();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match store.enqueue(job(i)).await {
            Ok(e) => {
                return Acked {
                    // None: the unpartitioned layout's one queue.
                    partition: partitions.of_job(&e.id).unwrap_or(0),
                    id: e.id,
                    sent_us,
                    acked_us: now_us(),
                };
            }
            Err(e) => {
                let text = e.to_string();
                *refusals.lock().unwrap().entry(text.chars().take(100).collect()).or_default() += 1;
                assert!(Instant::now() < deadline, "job {i} unacknowledged after 20 s: {text}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// Sends jobs `jobs`, spread evenly over `over` from now, each on its own task (as
/// concurrent API requests are), so a job of a stalled partition holds back no other.
async fn produce(
    store: RedisStore,
    partitions: Partitions,
    jobs: std::ops::Range<usize>,
    over: Duration,
    refusals: Refusals,
) -> Vec<Acked> {
    let (start, n) = (Instant::now(), jobs.len());
    let mut tasks = tokio::task::JoinSet::new();
    for (k, i) in jobs.enumerate() {
        tokio::time::sleep_until((start + over.mul_f64(k as f64 / n as f64)).into()).await;
        tasks.spawn(enqueue_until_acked(store.clone(), partitions, i, refusals.clone()));
    }
    tasks.join_all().await
}

/// A synchronous connection to the node on `port`.
fn node(port: u16) -> redis::Connection {
    redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .unwrap()
        .get_connection_with_timeout(Duration::from_secs(2))
        .unwrap()
}

fn query<T: redis::FromRedisValue>(port: u16, cmd: &mut redis::Cmd) -> T {
    cmd.query(&mut node(port)).unwrap_or_else(|e| panic!("{cmd:?} on {port}: {e}"))
}

/// The port of the primary that serves `slot`, as the node on `ask` sees it.
fn owner(ask: u16, slot: u16) -> u16 {
    let nodes: String = query(ask, redis::cmd("CLUSTER").arg("NODES"));
    for line in nodes.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        if !f[2].contains("master") {
            continue;
        }
        let serves = f[8..].iter().any(|r| {
            let (lo, hi) = r.split_once('-').unwrap_or((r, r));
            matches!((lo.parse::<u16>(), hi.parse::<u16>()), (Ok(lo), Ok(hi)) if lo <= slot && slot <= hi)
        });
        if serves {
            return f[1].split(['@', ':']).nth(1).unwrap().parse().unwrap();
        }
    }
    panic!("no primary serves slot {slot}:\n{nodes}");
}

/// What the move did, with wall-clock times (µs) to set against the runs.
struct Moved {
    slot: u16,
    from: u16,
    to: u16,
    keys: usize,
    batches: usize,
    started_us: u128,
    ended_us: u128,
}

impl Moved {
    fn during(&self, t: u128) -> bool {
        self.started_us <= t && t <= self.ended_us
    }
}

/// Moves `slot` from the primary on `from` to the one on `to` as `redis-cli --cluster
/// reshard` does: IMPORTING on the target, MIGRATING on the source, the keys in batches
/// (`MIGRATE … KEYS`), then `SETSLOT … NODE` on the target, the source and the others.
fn move_slot(slot: u16, from: u16, to: u16, primaries: &[u16], pause: Duration) -> Moved {
    let from_id: String = query(from, redis::cmd("CLUSTER").arg("MYID"));
    let to_id: String = query(to, redis::cmd("CLUSTER").arg("MYID"));
    let mut src = node(from);
    let started_us = now_us();
    let setslot = |port: u16, how: &str, id: &str| {
        let ok: String = query(port, redis::cmd("CLUSTER").arg("SETSLOT").arg(slot).arg(how).arg(id));
        assert_eq!(ok, "OK", "SETSLOT {slot} {how} on {port}");
    };
    setslot(to, "IMPORTING", &from_id);
    setslot(from, "MIGRATING", &to_id);
    let (mut keys, mut batches) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let batch: Vec<Vec<u8>> = redis::cmd("CLUSTER")
            .arg("GETKEYSINSLOT")
            .arg(slot)
            .arg(BATCH)
            .query(&mut src)
            .unwrap();
        if batch.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "the slot's keys were still moving after 20 s");
        let ok: String = redis::cmd("MIGRATE")
            .arg("127.0.0.1")
            .arg(to)
            .arg("")
            .arg(0)
            .arg(5000)
            .arg("KEYS")
            .arg(&batch)
            .query(&mut src)
            .unwrap();
        assert!(ok == "OK" || ok == "NOKEY", "MIGRATE answered {ok}");
        keys += batch.len();
        batches += 1;
        std::thread::sleep(pause);
    }
    // The target first: the source's MOVED then names a node that serves the slot.
    setslot(to, "NODE", &to_id);
    setslot(from, "NODE", &to_id);
    for p in primaries.iter().filter(|p| **p != from && **p != to) {
        setslot(*p, "NODE", &to_id);
    }
    Moved {
        slot,
        from,
        to,
        keys,
        batches,
        started_us,
        ended_us: now_us(),
    }
}

/// The longest time, in ms, from the move's start to its end plus a second in which no
/// run of the jobs `of` started.
fn longest_without_a_start(runs: &Runs, of: &HashSet<String>, moved: &Moved) -> u128 {
    let mut starts: Vec<u128> = of.iter().filter_map(|id| runs.get(id)).flatten().map(|(_, s, _)| *s).collect();
    starts.sort_unstable();
    let (from, to) = (moved.started_us, moved.ended_us + 1_000_000);
    let mut last = starts.iter().copied().filter(|s| *s <= from).max().unwrap_or(from);
    let mut gap = 0;
    for s in starts.into_iter().filter(|s| *s > from) {
        gap = gap.max(s - last);
        last = s;
        if s > to {
            break;
        }
    }
    gap / 1000
}

/// Reads every job until all have ended, or panics naming those still open
/// [`SETTLED_WITHIN`] after the move.
async fn wait_all_ended(store: &RedisStore, ids: &[JobId], moved: &Moved) -> Vec<Job> {
    loop {
        let jobs: Vec<_> = futures::stream::iter(ids.iter().map(|id| store.get(id)))
            .buffered(32)
            .collect()
            .await;
        let open: Vec<String> = ids
            .iter()
            .zip(&jobs)
            .filter(|(_, j)| !matches!(j, Ok(Some(j)) if j.state.is_terminal()))
            .map(|(id, j)| format!("{id}: {:?}", j.as_ref().map(|j| j.as_ref().map(|j| (j.state, &j.attempt_history)))))
            .collect();
        if open.is_empty() {
            return jobs.into_iter().map(|j| j.unwrap().unwrap()).collect();
        }
        assert!(
            now_us() < moved.ended_us + SETTLED_WITHIN.as_micros(),
            "{} acknowledged jobs not ended {SETTLED_WITHIN:?} after the move (lost or stuck), e.g.:\n{}",
            open.len(),
            open.iter().take(10).cloned().collect::<Vec<_>>().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Puts [`JOBS`] jobs through a 3-primary cluster with the kind in `partitions`
/// partitions, moving partition [`MOVED`]'s slot to another primary meanwhile, and checks
/// the queue's promises. What it measured is printed.
async fn enqueue_and_work_through_a_move(partitions: u16) {
    let cluster = RedisCluster::start(3, 0);
    let url = cluster.url();
    let primaries = cluster.primaries();
    let tag = if partitions == 1 {
        "cleanup".to_owned()
    } else {
        format!("cleanup:{MOVED}")
    };
    let slot: u16 = query(
        primaries[0],
        redis::cmd("CLUSTER").arg("KEYSLOT").arg(format!("drover:{{{tag}}}:slot")),
    );
    let from = owner(primaries[0], slot);
    let to = *primaries.iter().find(|p| **p != from).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let run_file = dir.path().join("runs.log");
    let mut workers: Vec<ChildProcess> = (0..2).map(|n| worker(&url, partitions, &run_file, n)).collect();
    let parts = Partitions::new(partitions).unwrap();
    let defaults = JobDefaults {
        partitions: parts,
        ..Default::default()
    };
    let store = RedisStore::connect(&url, "drover", defaults).await.unwrap();

    let refusals = Refusals::default();
    let producer = tokio::spawn(produce(store.clone(), parts, 0..PACED, PRODUCE, refusals.clone()));
    let mover = tokio::task::spawn_blocking(move || {
        std::thread::sleep(MOVE_AFTER);
        move_slot(slot, from, to, &primaries, PAUSE * u32::from(partitions))
    });
    let moved = mover.await.unwrap();
    let mut acked = producer.await.unwrap();
    acked.extend(produce(store.clone(), parts, PACED..JOBS, Duration::from_secs(1), refusals.clone()).await);
    assert_eq!(acked.len(), JOBS, "every job was acknowledged");
    let ids: Vec<JobId> = acked.iter().map(|a| a.id.clone()).collect();
    let jobs = wait_all_ended(&store, &ids, &moved).await;
    let finished_us = now_us();
    let alive: Vec<bool> = workers.iter_mut().map(|w| w.wait_exit(Duration::ZERO).is_none()).collect();
    let tryagain_logged: usize = workers.iter().map(|w| w.log().matches("TryAgain").count()).sum();
    drop(workers);

    let counts = store.counts(JobKind::Cleanup).await.unwrap();
    let runs = read_runs(&run_file);
    let late: HashMap<String, HashSet<u32>> = jobs.iter().map(|j| (j.id.to_string(), late_pids(j))).collect();
    let (overlaps, excused) = overlapping_runs(&runs, &late, |_| finished_us);

    // What the move met and what it cost.
    let finished_at: HashMap<String, u128> = jobs.iter().filter_map(|j| Some((j.id.to_string(), us(j.finished_at?)))).collect();
    let unfinished_at_move = acked
        .iter()
        .filter(|a| a.acked_us < moved.started_us && finished_at[&a.id.to_string()] > moved.started_us)
        .count();
    let running_at_move = runs
        .values()
        .flatten()
        .filter(|(_, s, e)| *s < moved.started_us && e.is_none_or(|e| e > moved.started_us))
        .count();
    let (in_moved, in_others): (Vec<&Acked>, Vec<&Acked>) = acked.iter().partition(|a| a.partition == MOVED);
    let names = |of: &[&Acked]| -> HashSet<String> { of.iter().map(|a| a.id.to_string()).collect() };
    let (moved_ids, other_ids) = (names(&in_moved), names(&in_others));
    let stalled = longest_without_a_start(&runs, &moved_ids, &moved);
    let slowest_ack = in_moved.iter().map(|a| a.acked_us - a.sent_us).max().unwrap_or(0) / 1000;
    let sent_after: Vec<&&Acked> = in_moved.iter().filter(|a| a.sent_us > moved.ended_us).collect();
    let others_acked_during = in_others.iter().filter(|a| moved.during(a.acked_us)).count();
    let others_started_during = other_ids
        .iter()
        .filter_map(|id| runs.get(id))
        .flatten()
        .filter(|(_, s, _)| moved.during(*s))
        .count();
    let last_end = finished_at.values().copied().max().unwrap_or(0);
    let ran_again = |of: &HashSet<String>| of.iter().filter(|id| runs.get(*id).is_some_and(|r| r.len() > 1)).count();
    let (moved_ran_again, others_ran_again) = (ran_again(&moved_ids), ran_again(&other_ids));
    let charged = jobs.iter().filter(|j| j.attempts > 1).count();
    eprintln!(
        "{partitions} partition(s): moved slot {} ({} keys in {} batches) from {} to {} in {} ms, {} ms after the first enqueue; \
         at its start {unfinished_at_move} acknowledged jobs unfinished, {running_at_move} running. \
         Moved partition ({} jobs): longest time without a run starting {stalled} ms, slowest acknowledgement {slowest_ack} ms, \
         {moved_ran_again} ran more than once, {} sent after the move. Other partitions ({} jobs): {others_acked_during} \
         acknowledged and {others_started_during} runs started during the move, {others_ran_again} ran more than once. \
         Last job ended {} ms after the move; {charged} jobs used a second attempt, {excused} overlaps excused as late; TryAgain in the workers' logs {tryagain_logged} times; \
         enqueue errors retried: {:?}",
        moved.slot,
        moved.keys,
        moved.batches,
        moved.from,
        moved.to,
        (moved.ended_us - moved.started_us) / 1000,
        (moved.started_us.saturating_sub(acked.iter().map(|a| a.sent_us).min().unwrap_or(0))) / 1000,
        in_moved.len(),
        sent_after.len(),
        in_others.len(),
        last_end.saturating_sub(moved.ended_us) / 1000,
        refusals.lock().unwrap()
    );

    // The slot moved, with its keys, and while the queue was busy.
    assert_eq!(owner(moved.from, slot), moved.to, "the old primary names the new one");
    assert_eq!(owner(moved.to, slot), moved.to, "the new primary serves the slot");
    let left: u64 = query(moved.from, redis::cmd("CLUSTER").arg("COUNTKEYSINSLOT").arg(slot));
    let there: u64 = query(moved.to, redis::cmd("CLUSTER").arg("COUNTKEYSINSLOT").arg(slot));
    assert!(
        left == 0 && there > 0,
        "keys of the slot: {left} left on the old primary, {there} on the new"
    );
    assert!(moved.batches > 20, "the move took many batches: {}", moved.batches);
    assert!(
        unfinished_at_move > 0 && running_at_move > 0,
        "the move met queued and running jobs"
    );
    assert!(
        !refusals.lock().unwrap().is_empty(),
        "enqueues met the move (were refused, then retried)"
    );

    // The promises.
    let failed: Vec<String> = jobs
        .iter()
        .filter(|j| j.state != JobState::Succeeded)
        .map(|j| format!("{}: {:?} {:?}", j.id, j.state, j.attempt_history))
        .collect();
    assert!(failed.is_empty(), "acknowledged jobs that did not succeed:\n{}", failed.join("\n"));
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), JOBS, "one job per idempotency key");
    assert_eq!(
        (
            counts.succeeded,
            counts.queued,
            counts.running,
            counts.prefetched,
            counts.retrying,
            counts.scheduled
        ),
        (JOBS as u64, 0, 0, 0, 0, 0),
        "the queue holds exactly the acknowledged jobs, all succeeded"
    );
    assert!(
        overlaps.is_empty(),
        "runs of one job at once (start µs, end µs, pid):\n{}",
        overlaps.join("\n")
    );
    assert!(alive.iter().all(|a| *a), "the workers are still running (alive: {alive:?})");
    // The moved partition carries on on its new primary.
    assert!(!sent_after.is_empty(), "jobs of the moved partition were sent after the move");
    for a in &sent_after {
        assert!(runs.contains_key(&a.id.to_string()), "{} sent after the move was run", a.id);
    }
    // The other partitions do not wait for it.
    if partitions > 1 {
        assert!(
            others_acked_during > 0 && others_started_during > 0,
            "the other partitions took and ran jobs during the move ({others_acked_during} acknowledged, {others_started_during} started)"
        );
        // Each queue renews its own leases: the moved one's refusals stop none of theirs.
        assert_eq!(others_ran_again, 0, "runs of the other partitions were stopped and ran again");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queues_slot_moved_to_another_primary_under_load_loses_no_job_and_runs_none_twice() {
    enqueue_and_work_through_a_move(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_one_partitions_slot_moves_the_other_partitions_go_on() {
    enqueue_and_work_through_a_move(4).await;
}
