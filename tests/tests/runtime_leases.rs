//! The worker runtime's leases, run in-process against a private redis-server: a run
//! only goes on while its lease is its own, and a lease the process cannot renew is
//! given up before Redis would give the job to someone else.
use std::time::{Duration, Instant};

use drover::job::{JobId, JobKind, JobPayload, JobState};
use drover::queue::{JobDefaults, JobStore, NewJob, RedisStore};
use drover::runtime::{JobContext, Outcome, WorkerSettings};
use drover_tests::harness::{Durability, FrozenProxy, RedisServer};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::json;
use tokio::sync::mpsc;

/// What a handler saw, reported to the test as it happens.
#[derive(Debug, Clone, PartialEq)]
enum Event {
    Started {
        attempt: u32,
    },
    /// The run was told to stop (cancelled, lease lost or fenced), after `after` running,
    /// at `at`.
    Stopped {
        attempt: u32,
        after: Duration,
        at: Instant,
    },
    Finished {
        attempt: u32,
    },
}

fn job() -> NewJob {
    cleanup_for("t.leases").max_attempts(5)
}

/// A cleanup job of `account`.
fn cleanup_for(account: &str) -> NewJob {
    NewJob::new(
        JobPayload::from_json(
            JobKind::Cleanup,
            json!({"account_id": account, "marketplace_id": "ATVPDKIKX0DER", "skus": ["SKU-1"]}),
        )
        .unwrap(),
    )
}

async fn store(server: &RedisServer) -> RedisStore {
    RedisStore::connect(&server.url(), "drover", JobDefaults::default()).await.unwrap()
}

fn settings(lease_ms: u64, heartbeat_ms: u64) -> WorkerSettings {
    WorkerSettings {
        concurrency: [(JobKind::Cleanup, 4), (JobKind::Sync, 0), (JobKind::Backfill, 0)].into(),
        lease: Duration::from_millis(lease_ms),
        heartbeat: Duration::from_millis(heartbeat_ms),
        grace: Duration::from_millis(500),
        prefetch: 0,
        idle_wait: Duration::from_millis(500),
        ..WorkerSettings::default()
    }
}

/// `base` with `slots` for cleanup jobs and none for the other kinds.
fn cleanup_slots(slots: usize, base: WorkerSettings) -> WorkerSettings {
    WorkerSettings {
        concurrency: [(JobKind::Cleanup, slots), (JobKind::Sync, 0), (JobKind::Backfill, 0)].into(),
        ..base
    }
}

/// Tells the test when a run ends without returning (its future was dropped).
struct Dropped {
    events: mpsc::UnboundedSender<Event>,
    attempt: u32,
    began: Instant,
    returned: bool,
}

impl Drop for Dropped {
    fn drop(&mut self) {
        if !self.returned {
            let _ = self.events.send(Event::Stopped {
                attempt: self.attempt,
                after: self.began.elapsed(),
                at: Instant::now(),
            });
        }
    }
}

/// A handler that reports to `events`: run `n` waits up to `wait(n)` for its stop signal
/// (reporting it, or being dropped), then returns successfully.
fn reporting_handler(
    events: mpsc::UnboundedSender<Event>,
    wait: fn(u32) -> Duration,
) -> impl Fn(JobPayload, JobContext) -> futures::future::BoxFuture<'static, Result<Outcome, drover::JobError>> + Send + Sync + 'static {
    move |_payload, ctx: JobContext| {
        let events = events.clone();
        Box::pin(async move {
            let attempt = ctx.attempt;
            let mut guard = Dropped {
                events: events.clone(),
                attempt,
                began: Instant::now(),
                returned: false,
            };
            let _ = events.send(Event::Started { attempt });
            if tokio::time::timeout(wait(attempt), ctx.cancel.cancelled()).await.is_ok() {
                let _ = events.send(Event::Stopped {
                    attempt,
                    after: guard.began.elapsed(),
                    at: Instant::now(),
                });
            }
            guard.returned = true;
            let _ = events.send(Event::Finished { attempt });
            Ok(Outcome::Succeeded(json!({"attempt": attempt})))
        })
    }
}

/// Every event until `within` passes.
async fn events_for(events: &mut mpsc::UnboundedReceiver<Event>, within: Duration) -> Vec<Event> {
    let deadline = tokio::time::Instant::now() + within;
    let mut out = Vec::new();
    while let Ok(Some(e)) = tokio::time::timeout_at(deadline, events.recv()).await {
        out.push(e);
    }
    out
}

/// Run the real runtime for `store` until the returned sender fires (or is dropped);
/// its lease keeper connects to `keeper_url`.
fn spawn_runtime<H: drover::runtime::Handler>(
    keeper_url: String,
    store: RedisStore,
    settings: WorkerSettings,
    handler: H,
) -> (tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let url = keeper_url;
    let connect = move || {
        let url = url.clone();
        async move { RedisStore::connect(&url, "drover", JobDefaults::default()).await }
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        drover::runtime::run(store, connect, settings, handler, async move {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    (stop, task)
}

async fn next_event(events: &mut mpsc::UnboundedReceiver<Event>, within: Duration) -> Option<Event> {
    tokio::time::timeout(within, events.recv()).await.ok().flatten()
}

/// Make `id`'s lease look expired to Redis and wake the fetcher, as a renewal gap longer
/// than the lease and its grace would: the lease is also marked the way a first reclaim
/// pass marks it (`sx` = its token), so the next fetch reclaims the job and leases it
/// again.
fn expire_lease_now(server: &RedisServer, id: &JobId) {
    let _: () = redis::cmd("EVAL")
        .arg(
            "redis.call('ZADD', KEYS[1], 'XX', 0, ARGV[1]); \
             local job = 'drover:{cleanup}:job:' .. ARGV[1]; \
             redis.call('HSET', job, 'sx', redis.call('HGET', job, 'ls') or ''); \
             redis.call('LPUSH', KEYS[2], '1')",
        )
        .arg(2)
        .arg("drover:{cleanup}:active")
        .arg("drover:{cleanup}:marker")
        .arg(id.as_str())
        .query(&mut server.conn())
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_leased_again_by_the_same_process_stops_the_first_run_and_keeps_renewing_the_second() {
    let server = RedisServer::start(Durability::None);
    let store = store(&server).await;
    let id = store.enqueue(job()).await.unwrap().id;
    let (tx, mut events) = mpsc::unbounded_channel();
    // Run 1 waits up to 4 s for its stop signal; run 2 outlives several leases.
    let handler = reporting_handler(tx, |attempt| {
        if attempt == 1 {
            Duration::from_secs(4)
        } else {
            Duration::from_secs(6)
        }
    });
    let (stop, runtime) = spawn_runtime(server.url(), store.clone(), settings(1500, 500), handler);
    assert_eq!(
        next_event(&mut events, Duration::from_secs(10)).await,
        Some(Event::Started { attempt: 1 })
    );

    // The keeper may renew the lease between the edit and the fetch; then try again.
    let mut seen = Vec::new();
    for _ in 0..5 {
        expire_lease_now(&server, &id);
        if let Some(e) = next_event(&mut events, Duration::from_millis(400)).await {
            seen.push(e);
            break;
        }
    }
    // Run 2 starts and run 1 is told its lease is gone (in either order), at once:
    // run 1 must not go on beside run 2.
    seen.extend(events_for(&mut events, Duration::from_secs(1)).await);
    assert!(
        seen.contains(&Event::Started { attempt: 2 }),
        "the reclaimed job is leased again by this process: {seen:?}"
    );
    assert!(
        seen.iter().any(|e| matches!(e, Event::Stopped { attempt: 1, .. })),
        "run 1 must be stopped within 1 s of its job being leased again: {seen:?}"
    );

    // Run 1 has ended (its settle finds the lease lost): run 2's lease must still be
    // renewed, so nothing reclaims the job while run 2 goes on for two more leases.
    let later = events_for(&mut events, Duration::from_millis(3000)).await;
    assert!(
        !later
            .iter()
            .any(|e| matches!(e, Event::Started { .. } | Event::Stopped { attempt: 2, .. })),
        "the job must not run a third time, nor run 2 be stopped, while run 2 holds it: {later:?}"
    );
    let j = store.get(&id).await.unwrap().unwrap();
    assert_eq!((j.state, j.attempts), (JobState::Running, 2), "run 2 still holds the job");

    loop {
        match next_event(&mut events, Duration::from_secs(8)).await {
            Some(Event::Finished { attempt: 2 }) => break,
            Some(Event::Finished { attempt: 1 }) => {}
            other => panic!("run 2 must end by itself, got {other:?}"),
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let j = store.get(&id).await.unwrap().unwrap();
        if j.state == JobState::Succeeded {
            assert_eq!(j.attempts, 2);
            assert!(
                j.attempt_history.iter().any(|a| a.late),
                "run 1's result is kept as a late attempt: {:?}",
                j.attempt_history
            );
            break;
        }
        assert!(Instant::now() < deadline, "the job did not succeed: {j:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop.send(());
    runtime.await.unwrap();
}

/// Waits up to 5 s for `id` to succeed, and checks it used one attempt.
async fn succeeds_on_one_attempt(store: &RedisStore, id: &JobId) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let j = store.get(id).await.unwrap().unwrap();
        if j.state == JobState::Succeeded {
            assert_eq!(j.attempts, 1, "{j:?}");
            return;
        }
        assert!(Instant::now() < deadline, "the job did not succeed: {j:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// SIGSTOP the server for `pause`, then SIGCONT it (always, even if the test fails).
struct Paused(u32);

impl Paused {
    fn start(server: &RedisServer) -> Self {
        let pid = server.pid().expect("redis-server runs");
        kill(Pid::from_raw(pid as i32), Signal::SIGSTOP).unwrap();
        Paused(pid)
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.0 as i32), Signal::SIGCONT);
    }
}

/// A lease's clock starts when Redis leased the job, not when the idle fetcher began to
/// wait for work: a job enqueued after the worker has waited longer than a lease may go
/// unrenewed runs to its end on one attempt, renewed, and is never stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_comes_after_a_long_idle_wait_has_its_lease_from_when_it_was_leased() {
    let server = RedisServer::start(Durability::None);
    let store = store(&server).await;
    let (tx, mut events) = mpsc::unbounded_channel();
    // Each run takes 2 s: longer than the lease, so it lives on renewals.
    let handler = reporting_handler(tx, |_| Duration::from_secs(2));
    // A run is fenced once unrenewed for 1.2 s (lease 1.5 s, heartbeat 300 ms); the idle
    // fetcher waits up to 3 s at a time.
    let mut s = settings(1500, 300);
    s.idle_wait = Duration::from_secs(3);
    let (stop, runtime) = spawn_runtime(server.url(), store.clone(), s, handler);
    // The first fetch finds nothing; the job comes 2 s into the wait after it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let id = store.enqueue(job()).await.unwrap().id;
    let seen = events_for(&mut events, Duration::from_secs(5)).await;
    assert_eq!(
        seen,
        vec![Event::Started { attempt: 1 }, Event::Finished { attempt: 1 }],
        "one run, never stopped"
    );
    succeeds_on_one_attempt(&store, &id).await;
    let _ = stop.send(());
    runtime.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_lease_cannot_be_renewed_is_stopped_before_the_lease_runs_out() {
    let server = RedisServer::start(Durability::None);
    let store = store(&server).await;
    let id = store.enqueue(job()).await.unwrap().id;
    let (tx, mut events) = mpsc::unbounded_channel();
    // Run 1 would go on for 20 s; later runs end at once.
    let handler = reporting_handler(tx, |attempt| if attempt == 1 { Duration::from_secs(20) } else { Duration::ZERO });
    let lease = Duration::from_millis(1500);
    let (stop, runtime) = spawn_runtime(server.url(), store.clone(), settings(1500, 300), handler);
    assert_eq!(
        next_event(&mut events, Duration::from_secs(10)).await,
        Some(Event::Started { attempt: 1 })
    );
    tokio::time::sleep(Duration::from_millis(400)).await;

    // Redis stops answering for twice the lease. It counts the lease from the last
    // renewal it applied, which was before the pause: by `paused_at + lease` the job
    // may be given to another worker, so the local run must have stopped by then.
    let paused_at = Instant::now();
    let pause = Paused::start(&server);
    // The run's own moment of stopping is what counts (the handler notes it), not when
    // this task hears of it: a loaded machine may take a while to tell it.
    let stopped = next_event(&mut events, lease * 2).await;
    let stopped_after = match stopped {
        Some(Event::Stopped { at, .. }) => Some(at.duration_since(paused_at)),
        _ => None,
    };
    tokio::time::sleep((lease * 2).saturating_sub(paused_at.elapsed())).await;
    drop(pause);
    eprintln!("run 1 stopped {stopped_after:?} into the pause: {stopped:?}");
    assert!(
        matches!(stopped, Some(Event::Stopped { attempt: 1, .. })) && stopped_after.is_some_and(|d| d < lease),
        "the run must be fenced within the lease, got {stopped:?} after {stopped_after:?}"
    );

    // Redis is back: the job runs again and ends.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let j = store.get(&id).await.unwrap().unwrap();
        if j.state == JobState::Succeeded {
            eprintln!("attempts used: {}; history: {:?}", j.attempts, j.attempt_history);
            break;
        }
        assert!(Instant::now() < deadline, "the job did not succeed after the pause: {j:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = stop.send(());
    runtime.await.unwrap();
}

/// The keeper's connection goes half-open (bytes stop, the socket stays open) on the
/// beat that reports a run's start: the start report and the renewal share one deadline,
/// so the keeper dials afresh and renews well inside the fence, and the run goes on.
/// With a deadline each, the round took two call timeouts (1.5 s), as long as the fence,
/// and every run of the process was stopped and run again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keeper_connection_that_goes_half_open_as_a_run_starts_costs_the_run_nothing() {
    let server = RedisServer::start(Durability::None);
    let proxy = FrozenProxy::start(([127, 0, 0, 1], server.port()).into()).await;
    let store = store(&server).await;
    let (tx, mut events) = mpsc::unbounded_channel();
    let handler = reporting_handler(tx, |_| Duration::from_secs(4));
    // The defaults: lease 1.8 s, beat 300 ms, calls time out after 750 ms, fence at 1.5 s.
    let (stop, runtime) = spawn_runtime(proxy.url(), store.clone(), settings(1800, 300), handler);
    // Let the keeper connect (through the relay) before there is anything to renew.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let id = store.enqueue(job()).await.unwrap().id;
    assert_eq!(
        next_event(&mut events, Duration::from_secs(10)).await,
        Some(Event::Started { attempt: 1 })
    );
    // The start is reported on the next beat: over a connection that no longer answers.
    proxy.freeze_open_connections();
    let seen = events_for(&mut events, Duration::from_secs(5)).await;
    assert_eq!(seen, vec![Event::Finished { attempt: 1 }], "one run, never stopped");
    succeeds_on_one_attempt(&store, &id).await;
    let _ = stop.send(());
    runtime.await.unwrap();
}

/// Queue-core audit of 2026-12-06 (third): a fetch whose reply reached the worker after
/// the lease it took had run out in Redis (a reply held up on the network, by TCP
/// retransmissions say; the store waits up to 5 s for one) still started the run — only
/// the fence, every few tens of ms, looked at a lease's age, and by then the handler had
/// begun, while Redis could already have given the job to another worker. A lease as
/// old as the fence stops runs at is taken for lost before its handler starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_fetch_reply_came_after_its_lease_ran_out_is_not_started() {
    let server = RedisServer::start(Durability::None);
    let proxy = FrozenProxy::start(([127, 0, 0, 1], server.port()).into()).await;
    let slow = RedisStore::connect(&proxy.url(), "drover", JobDefaults::default()).await.unwrap();
    let store = store(&server).await;
    let (tx, mut events) = mpsc::unbounded_channel();
    let handler = reporting_handler(tx, |_| Duration::ZERO);
    // Lease 1.8 s, beat 300 ms: the fence stops runs at 1.5 s. The keeper's own
    // connection is direct.
    let (stop, runtime) = spawn_runtime(server.url(), slow, settings(1800, 300), handler);
    tokio::time::sleep(Duration::from_millis(700)).await;
    proxy.delay_replies(Duration::from_millis(2200));
    let id = store.enqueue(job()).await.unwrap().id;
    let seen = events_for(&mut events, Duration::from_secs(6)).await;
    assert_eq!(seen, vec![], "no run starts on a lease that ran out before its fetch answered");
    // Replies on time again: the job runs once.
    proxy.delay_replies(Duration::ZERO);
    assert_eq!(
        next_event(&mut events, Duration::from_secs(10)).await,
        Some(Event::Started { attempt: 1 })
    );
    succeeds_on_one_attempt(&store, &id).await;
    // The lease lost before its run started records no run (found by the chaos audit of
    // 2026-12-07, second: a `released` run 1 that never happened, then another run 1).
    let history = store.get(&id).await.unwrap().unwrap().attempt_history;
    assert_eq!(
        history.iter().map(|a| (a.number, a.outcome)).collect::<Vec<_>>(),
        [(1, drover::job::AttemptOutcome::Succeeded)],
        "{history:?}"
    );
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), runtime).await;
}

/// Found by the fairness audit of 2026-12-05: while every slot is busy the sweep promotes
/// due jobs for the fetcher, one chunk (500) a sweep, in due order across accounts, so one
/// seller's thousands of jobs falling due at once held every other seller's due job (a
/// delay, a retry, a turn given away) out of its lane for a sweep period per chunk. A
/// sweep now goes on promoting while more are due.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_one_sellers_due_jobs_does_not_hold_another_sellers_out_of_its_lane() {
    let server = RedisServer::start(Durability::None);
    let store = store(&server).await;
    // One slot, held by a run that outlasts the test.
    store.enqueue(cleanup_for("t.busy")).await.unwrap();
    let (tx, mut events) = mpsc::unbounded_channel();
    let handler = reporting_handler(tx, |_| Duration::from_secs(30));
    let one_slot = cleanup_slots(1, settings(1800, 300));
    let (stop, task) = spawn_runtime(server.url(), store.clone(), one_slot, handler);
    assert!(matches!(
        next_event(&mut events, Duration::from_secs(10)).await,
        Some(Event::Started { .. })
    ));
    let due = chrono::Utc::now() + chrono::Duration::milliseconds(500);
    let flood: Vec<NewJob> = (0..4000).map(|_| cleanup_for("t.flood").run_at(due)).collect();
    for r in store.enqueue_bulk(flood).await.unwrap() {
        r.unwrap();
    }
    let small = store
        .enqueue(cleanup_for("t.small").run_at(due + chrono::Duration::milliseconds(10)))
        .await
        .unwrap()
        .id;
    // Due in 0.5 s; a sweep comes every 0.9 s: queued within 2 s (before, 8 sweeps: 7 s).
    let until = Instant::now() + Duration::from_secs(2);
    let state = loop {
        let state = store.get(&small).await.unwrap().unwrap().state;
        if state != JobState::Scheduled || Instant::now() > until {
            break state;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(state, JobState::Queued, "the small seller's due job is still out of its lane");
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
}

/// Found by the chaos audit of 2026-12-05: a run's hand-back that could not reach Redis
/// was given up after a minute (`give_up_after`), and its lease dropped from the
/// keeper's list. When Redis came back nobody renewed the lease in its grace, so the
/// reclaim charged the outage to the job: an attempt used, and on its last attempt the
/// job went dead without having failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_longer_than_a_minute_uses_no_attempt_of_a_job_that_was_running() {
    let mut server = RedisServer::start(Durability::AofAlways);
    let store = store(&server).await;
    let id = store.enqueue(job().max_attempts(1)).await.unwrap().id;
    let (tx, mut events) = mpsc::unbounded_channel();
    // Run 1 goes on until it is stopped; a later run ends at once.
    let handler = reporting_handler(tx, |attempt| if attempt == 1 { Duration::from_secs(120) } else { Duration::ZERO });
    let (stop, runtime) = spawn_runtime(server.url(), store.clone(), settings(1500, 300), handler);
    assert_eq!(
        next_event(&mut events, Duration::from_secs(10)).await,
        Some(Event::Started { attempt: 1 })
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    // Redis is down for longer than the minute the hand-back was retried for (killed:
    // every call is refused at once), then comes back with everything it had written.
    server.kill();
    tokio::time::sleep(Duration::from_secs(63)).await;
    server.restart();
    let deadline = Instant::now() + Duration::from_secs(20);
    let j = loop {
        // (the test's own connection may take a moment to be dialled again)
        match store.get(&id).await {
            Ok(Some(j)) if j.state.is_terminal() => break j,
            r => assert!(Instant::now() < deadline, "the job did not end after the outage: {r:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!("history: {:?}", j.attempt_history);
    assert_eq!(j.state, JobState::Succeeded, "the outage was charged to the job: {j:?}");
    assert!(
        j.attempt_history.iter().all(|a| a.outcome != drover::job::AttemptOutcome::Lost),
        "a live worker's run was recorded lost: {:?}",
        j.attempt_history
    );
    let _ = stop.send(());
    runtime.await.unwrap();
}

/// Found by the chaos audit of 2026-12-05: at Redis's memory limit the renewal script
/// was refused like any write (it writes only fixed-size fields), so every running job
/// was stopped within a lease and its work done again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_keeps_its_lease_while_redis_is_at_its_memory_limit() {
    let server = RedisServer::start(Durability::None);
    let store = store(&server).await;
    let id = store.enqueue(job()).await.unwrap().id;
    let (tx, mut events) = mpsc::unbounded_channel();
    // Each run takes 4 s unless it is stopped.
    let handler = reporting_handler(tx, |_| Duration::from_secs(4));
    let (stop, runtime) = spawn_runtime(server.url(), store.clone(), settings(1500, 300), handler);
    assert_eq!(
        next_event(&mut events, Duration::from_secs(10)).await,
        Some(Event::Started { attempt: 1 })
    );
    // The start is reported on the next beat; then Redis is over its memory limit for
    // 3 s (twice the lease): every write that may grow the data is refused.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let limit = |bytes: u64| {
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxmemory-policy")
            .arg("noeviction")
            .arg("maxmemory")
            .arg(bytes)
            .query(&mut server.conn())
            .unwrap();
    };
    limit(1);
    let full = store.enqueue(job()).await;
    assert!(full.is_err(), "Redis is not at its limit: {full:?}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    limit(0);
    let seen = events_for(&mut events, Duration::from_secs(3)).await;
    assert_eq!(
        seen,
        vec![Event::Finished { attempt: 1 }],
        "the run was stopped at the memory limit"
    );
    succeeds_on_one_attempt(&store, &id).await;
    let j = store.get(&id).await.unwrap().unwrap();
    assert_eq!(j.attempt_history.len(), 1, "{:?}", j.attempt_history);
    let _ = stop.send(());
    runtime.await.unwrap();
}

/// An outcome Redis cannot take for an outage is sent again for as long as the worker
/// runs; one it refuses for another reason (a script's error) only for a bounded time:
/// the two are told apart by the error.
#[tokio::test]
async fn an_outage_is_told_from_an_error_that_would_come_again() {
    use drover::queue::StoreError;
    let server = RedisServer::start(Durability::None);
    let mut c = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = redis::cmd("SET").arg("k").arg("v").query_async(&mut c).await.unwrap();
    let wrong: redis::RedisResult<()> = redis::cmd("HGET").arg("k").arg("f").query_async(&mut c).await;
    assert!(!StoreError::from(wrong.unwrap_err()).is_outage(), "WRONGTYPE would come again");
    assert!(!StoreError::Protocol("a reply this release cannot read".into()).is_outage());
    let url = server.url();
    drop(server);
    let refused = redis::Client::open(url).unwrap().get_multiplexed_async_connection().await;
    assert!(
        StoreError::from(refused.unwrap_err()).is_outage(),
        "a refused connection is an outage"
    );
}

/// A handler whose first run is fast (the pace then says "lease far ahead") and every
/// later one takes 400 ms.
fn fast_then_slow(
) -> impl Fn(JobPayload, JobContext) -> futures::future::BoxFuture<'static, Result<Outcome, drover::JobError>> + Send + Sync + 'static {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let first = Arc::new(AtomicBool::new(true));
    move |_payload: JobPayload, _ctx: JobContext| {
        let fast = first.swap(false, Ordering::SeqCst);
        Box::pin(async move {
            if !fast {
                tokio::time::sleep(Duration::from_millis(400)).await;
            }
            Ok(Outcome::Succeeded(json!({})))
        })
    }
}

/// Fairness and runtime audit of 2026-12-06: a worker leases ahead of its free slots as
/// far as the pace of its runs allows, and holds the rest of its permits back while runs
/// are slow — but only permits it found free at the top of a fetch. Once fast runs had
/// let it lease far ahead and slow ones followed, every slot a run freed went to the
/// next fetch: the worker kept leasing jobs it could not start (up to 64 more than its
/// slots, for minutes), while another worker could have run them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_runs_turned_slow_leases_no_more_while_it_holds_jobs_it_cannot_start() {
    let server = RedisServer::start(Durability::None);
    let store = store(&server).await;
    let handler = fast_then_slow();
    let two_slots = cleanup_slots(2, settings(30_000, 1000));
    let (stop, task) = spawn_runtime(server.url(), store.clone(), two_slots, handler);
    let quick = store.enqueue(cleanup_for("t.quick")).await.unwrap().id;
    succeeds_on_one_attempt(&store, &quick).await;
    let jobs: Vec<NewJob> = (0..200).map(|i| cleanup_for(&format!("t.{i}"))).collect();
    for r in store.enqueue_bulk(jobs).await.unwrap() {
        r.unwrap();
    }
    let queued = || async { store.counts(JobKind::Cleanup).await.unwrap().queued };
    // The first slow runs end within a second; from then on the pace says "slow".
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let after_first_slow_runs = queued().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let later = queued().await;
    let counts = store.counts(JobKind::Cleanup).await.unwrap();
    assert!(
        after_first_slow_runs < 200 && counts.running + counts.prefetched > 10,
        "it leased ahead while its runs were fast: {counts:?}"
    );
    assert_eq!(
        later, after_first_slow_runs,
        "while it holds more jobs than its 2 slots, it leases no more ({counts:?})"
    );
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
}

/// Queue-core audit of 2026-12-06, a regression of the fix above: while a worker works
/// through the jobs it leased ahead, each slot a run frees is held back and no fetch is
/// made, and the sweep — which promotes and reclaims in the fetch's stead while the
/// fetcher waits for a slot — counted that wait afresh each time a run ended. With runs
/// ending more often than half a lease, due jobs stayed `scheduled` and a dead worker's
/// jobs `running` for as long as the jobs leased ahead lasted (here about 10 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_working_through_jobs_leased_ahead_still_promotes_due_jobs_and_reclaims_dead_leases() {
    let server = RedisServer::start(Durability::None);
    let store = store(&server).await;
    let handler = fast_then_slow();
    let lease = Duration::from_millis(1800);
    let (stop, task) = spawn_runtime(server.url(), store.clone(), cleanup_slots(2, settings(1800, 300)), handler);
    let quick = store.enqueue(cleanup_for("t.quick")).await.unwrap().id;
    succeeds_on_one_attempt(&store, &quick).await;
    let jobs: Vec<NewJob> = (0..200).map(|i| cleanup_for(&format!("t.{i}"))).collect();
    for r in store.enqueue_bulk(jobs).await.unwrap() {
        r.unwrap();
    }
    // Slow runs from now on: the worker holds jobs it leased ahead and fetches no more.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let counts = store.counts(JobKind::Cleanup).await.unwrap();
    assert!(
        counts.running + counts.prefetched > 10,
        "it leased ahead while its runs were fast: {counts:?}"
    );
    // A worker that dies holding a job, and a job that falls due in 300 ms.
    let ghost = store.fetch(JobKind::Cleanup, "ghost", 1, lease).await.unwrap();
    let ghosts = ghost.jobs[0].id.clone();
    let later = store
        .enqueue(cleanup_for("t.later").delay(Duration::from_millis(300)))
        .await
        .unwrap()
        .id;
    let deadline = Instant::now() + Duration::from_secs(5);
    let (mut reclaimed, mut promoted) = (false, false);
    while !(reclaimed && promoted) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        reclaimed |= store.get(&ghosts).await.unwrap().unwrap().state != JobState::Running;
        promoted |= store.get(&later).await.unwrap().unwrap().state != JobState::Scheduled;
    }
    let counts = store.counts(JobKind::Cleanup).await.unwrap();
    assert!(
        reclaimed && promoted,
        "within 5 s (a lease of 1.8 s): the dead worker's job reclaimed {reclaimed}, the due job promoted {promoted} ({counts:?})"
    );
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
}

/// Fairness and runtime audit of 2026-12-06: the count of jobs waiting for a slot is set
/// again by each sweep, and a run that took one to give way still drains its calls in
/// flight (a cleanup's deletes) before its slot comes free, so the next sweep counted the
/// same waiting job again and a second run gave way for it. Here two long runs fill both
/// slots, one small job comes, and a run that gives way takes 2 s to hand its slot back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_job_waiting_for_a_slot_makes_one_run_give_way() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let server = RedisServer::start(Durability::None);
    let store = store(&server).await;
    let gave_way = Arc::new(AtomicUsize::new(0));
    let handler = {
        let gave_way = gave_way.clone();
        move |payload: JobPayload, ctx: JobContext| {
            let gave_way = gave_way.clone();
            Box::pin(async move {
                if payload.account_id().as_str() == "t.small" {
                    return Ok(Outcome::Succeeded(json!({})));
                }
                // Steps of 100 ms, for up to 20 s; a run that gives way drains for 2 s.
                for _ in 0..200 {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    if ctx.give_way() {
                        gave_way.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_secs(2)).await;
                        return Err(drover::JobError::GaveWay {
                            retry_after: Duration::from_secs(30),
                            reason: "gave way".into(),
                        });
                    }
                }
                Ok(Outcome::Succeeded(json!({})))
            }) as futures::future::BoxFuture<'static, Result<Outcome, drover::JobError>>
        }
    };
    let two_slots = cleanup_slots(2, settings(1800, 300));
    let (stop, task) = spawn_runtime(server.url(), store.clone(), two_slots, handler);
    for account in ["t.long-1", "t.long-2"] {
        store.enqueue(cleanup_for(account)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let small = store.enqueue(cleanup_for("t.small")).await.unwrap().id;
    succeeds_on_one_attempt(&store, &small).await;
    // Time for a second sweep's count to have been taken too.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(gave_way.load(Ordering::SeqCst), 1, "one waiting job, one run giving way");
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
}

/// Found by the audits of 2026-12-06/07: a job cancelled while it waited in its live
/// worker's prefetch stayed `running` until a slot freed (a run ahead of it may work a
/// whole slice, 20 minutes), holding its account's slot, and then ended with a
/// `cancelled` run in its history that never started. It ends at once, with no run
/// recorded and no attempt used, while the run ahead goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_cancelled_while_it_waited_in_the_prefetch_ends_at_once_without_a_run() {
    use drover::queue::{CancelOutcome, WaitReason};
    use std::sync::Arc;
    let server = RedisServer::start(Durability::None);
    let store = store(&server).await;
    let (tx, mut events) = mpsc::unbounded_channel();
    // The run ahead goes on until the test lets it end (at most 30 s), so every step
    // below happens while it holds the one slot, however slow the machine.
    let release = Arc::new(tokio::sync::Notify::new());
    let handler = {
        let release = release.clone();
        move |payload: JobPayload, ctx: JobContext| {
            let (tx, release) = (tx.clone(), release.clone());
            Box::pin(async move {
                let _ = tx.send(Event::Started { attempt: ctx.attempt });
                if payload.account_id().as_str() == "t.first" {
                    let _ = tokio::time::timeout(Duration::from_secs(30), release.notified()).await;
                }
                Ok(Outcome::Succeeded(json!({})))
            }) as futures::future::BoxFuture<'static, Result<Outcome, drover::JobError>>
        }
    };
    let lease = Duration::from_millis(1800);
    let one_slot = cleanup_slots(
        1,
        WorkerSettings {
            prefetch: 1,
            ..settings(lease.as_millis() as u64, 300)
        },
    );
    // (a store that reports starts, as the worker's: leases wait in `unstarted` until then)
    let runtime_store = RedisStore::connect(&server.url(), "drover", JobDefaults::for_runtime())
        .await
        .unwrap();
    let (stop, task) = spawn_runtime(server.url(), runtime_store, one_slot, handler);
    let running = store.enqueue(cleanup_for("t.first")).await.unwrap().id;
    assert_eq!(
        next_event(&mut events, Duration::from_secs(5)).await,
        Some(Event::Started { attempt: 1 })
    );
    let waiting = store.enqueue(cleanup_for("t.second")).await.unwrap().id;
    // Until this job is leased ahead (a cancel before that ends a queued job, another
    // path); the queue's prefetched count would not do: the run ahead counts in it until
    // the keeper reports its start (found flaky by CI on 2026-12-07).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let why = store.waiting(&waiting).await.unwrap().map(|w| w.reason);
        if why == Some(WaitReason::Prefetched) {
            break;
        }
        assert!(Instant::now() < deadline, "the second job was never leased ahead: {why:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let leased = Instant::now();
    assert_eq!(store.cancel(&waiting).await.unwrap(), CancelOutcome::Requested);
    let asked = Instant::now();
    let job = loop {
        let j = store.get(&waiting).await.unwrap().unwrap();
        if j.state.is_terminal() {
            break j;
        }
        assert!(
            asked.elapsed() < Duration::from_secs(3),
            "the cancelled job did not end while the run ahead went on: {j:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(job.state, JobState::Cancelled, "{job:?}");
    assert_eq!(job.attempts, 0, "{job:?}");
    assert!(
        job.attempt_history.is_empty(),
        "a run that never started is not recorded: {:?}",
        job.attempt_history
    );
    assert_eq!(
        store.get(&running).await.unwrap().unwrap().state,
        JobState::Running,
        "the run ahead goes on"
    );
    // The withdrawn job's task still comes to the slot the first run frees, past the
    // withdrawn lease's fence age, which must not have it taken for lost and recorded
    // late (found by the review of 2026-12-07): it must not run, nor be recorded.
    tokio::time::sleep_until((leased + lease + Duration::from_millis(300)).into()).await;
    release.notify_one();
    succeeds_on_one_attempt(&store, &running).await;
    let seen = events_for(&mut events, Duration::from_secs(1)).await;
    assert!(
        !seen.iter().any(|e| matches!(e, Event::Started { .. })),
        "the withdrawn job never starts: {seen:?}"
    );
    let job = store.get(&waiting).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Cancelled, "{job:?}");
    assert!(
        job.attempt_history.is_empty(),
        "nothing is recorded when its task comes to the slot: {:?}",
        job.attempt_history
    );
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
}

/// Found by the fairness audit of 2026-12-07: the count of jobs waiting for a slot is
/// set by a sweep and was left as it was when a run ended and the fetch leased the job it
/// counted into the freed slot, so a run that worked its turn within the next sweep
/// period gave way for a job already running (for no one). A fetch takes the jobs it
/// leased off the count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_leased_into_a_freed_slot_makes_no_run_give_way() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let server = RedisServer::start(Durability::None);
    let store = store(&server).await;
    let gave_way = Arc::new(AtomicUsize::new(0));
    let handler = {
        let gave_way = gave_way.clone();
        move |payload: JobPayload, ctx: JobContext| {
            let gave_way = gave_way.clone();
            Box::pin(async move {
                let began = Instant::now();
                match payload.account_id().as_str() {
                    "t.medium" => tokio::time::sleep(Duration::from_millis(1600)).await,
                    "t.small" => tokio::time::sleep(Duration::from_secs(3)).await,
                    _ => {
                        // The long run works its turn after 2 s, in steps of 100 ms.
                        while began.elapsed() < Duration::from_secs(6) {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            if began.elapsed() >= Duration::from_secs(2) && ctx.give_way() {
                                gave_way.fetch_add(1, Ordering::SeqCst);
                                return Err(drover::JobError::GaveWay {
                                    retry_after: Duration::from_secs(30),
                                    reason: "gave way".into(),
                                });
                            }
                        }
                    }
                }
                Ok(Outcome::Succeeded(json!({})))
            }) as futures::future::BoxFuture<'static, Result<Outcome, drover::JobError>>
        }
    };
    let two_slots = cleanup_slots(2, settings(1800, 300));
    let (stop, task) = spawn_runtime(server.url(), store.clone(), two_slots, handler);
    for account in ["t.long", "t.medium"] {
        store.enqueue(cleanup_for(account)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Counted waiting by a sweep; leased when the medium run ends at 1.6 s.
    store.enqueue(cleanup_for("t.small")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(gave_way.load(Ordering::SeqCst), 0, "no job waited for a slot after 1.6 s");
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
}

/// Found by the chaos audit of 2026-12-07 (second): a run whose progress found its job
/// held by another run (its lease taken past a stall) stopped as if cancelled, and its
/// history gained a `cancelled` run though no one cancelled the job (unless the keeper's
/// renewal happened to find the lease gone first). It ends as a run that lost its lease,
/// recorded late beside the other worker's run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_progress_finds_its_job_held_by_another_is_not_recorded_cancelled() {
    use drover::job::{AttemptOutcome, Progress};
    let server = RedisServer::start(Durability::None);
    let store = store(&server).await;
    let id = store.enqueue(job()).await.unwrap().id;
    let (tx, mut started) = mpsc::unbounded_channel::<()>();
    // It reports progress every 100 ms until told it may not.
    let handler = move |_payload: JobPayload, ctx: JobContext| -> futures::future::BoxFuture<'static, Result<Outcome, drover::JobError>> {
        let tx = tx.clone();
        Box::pin(async move {
            let _ = tx.send(());
            for done in 0.. {
                ctx.progress(Progress {
                    done,
                    total: None,
                    message: None,
                })
                .await?;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            unreachable!()
        })
    };
    // A long heartbeat and one slot: the run's progress, not the keeper nor the
    // runtime's own fetch, finds the lease gone.
    let slow_keeper = cleanup_slots(
        1,
        WorkerSettings {
            idle_wait: Duration::from_secs(30),
            ..settings(20_000, 5_000)
        },
    );
    let (stop, task) = spawn_runtime(server.url(), store.clone(), slow_keeper, handler);
    tokio::time::timeout(Duration::from_secs(10), started.recv())
        .await
        .expect("the run starts");
    // Another worker holds the job now (its lease ran out past a stall and was taken):
    // the lease's token in Redis is that worker's.
    let _: () = redis::cmd("HSET")
        .arg(format!("drover:{{cleanup}}:job:{id}"))
        .arg("ls")
        .arg("another-workers-token")
        .query(&mut server.conn())
        .unwrap();
    // The first run's end is recorded (late) beside the other worker's run.
    let deadline = Instant::now() + Duration::from_secs(5);
    let job = loop {
        let j = store.get(&id).await.unwrap().unwrap();
        if !j.attempt_history.is_empty() {
            break j;
        }
        assert!(Instant::now() < deadline, "the first run's end was never recorded: {j:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        job.attempt_history.iter().all(|a| a.outcome != AttemptOutcome::Cancelled),
        "no one cancelled it: {:?}",
        job.attempt_history
    );
    assert!(job.attempt_history.iter().all(|a| a.late), "{:?}", job.attempt_history);
    assert!(!job.cancel_requested && job.state == JobState::Running, "{job:?}");
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
}

/// Found by the durability audit of 2026-12-07 (third): a worker leasing a job whose record
/// a newer release wrote (a payload field it does not know, a record version above its
/// own) sent it to dead at once, without a run: during a rollout (the API first, as the
/// operations guide says) or after a rollback, every such job an older worker leased was
/// lost to the dead letter. It goes back for later, no attempt used, saying why; a record
/// that is simply unreadable still goes to dead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_written_by_a_newer_release_waits_for_its_workers_and_a_corrupt_one_is_dead() {
    let server = RedisServer::start(Durability::None);
    let store = store(&server).await;
    let newer_field = store.enqueue(cleanup_for("t.newer-field")).await.unwrap().id;
    let newer_version = store.enqueue(cleanup_for("t.newer-version")).await.unwrap().id;
    let corrupt = store.enqueue(cleanup_for("t.corrupt")).await.unwrap().id;
    let set = |id: &JobId, field: &str, value: String| {
        let _: () = redis::cmd("HSET")
            .arg(format!("drover:{{cleanup}}:job:{id}"))
            .arg(field)
            .arg(value)
            .query(&mut server.conn())
            .unwrap();
    };
    set(
        &newer_field,
        "p",
        json!({"account_id": "t.newer-field", "marketplace_id": "ATVPDKIKX0DER", "skus": ["SKU-1"], "dry_run": true}).to_string(),
    );
    set(&newer_version, "v", "2".to_owned());
    set(&corrupt, "p", "not json".to_owned());
    let (tx, mut events) = mpsc::unbounded_channel();
    let handler = reporting_handler(tx, |_| Duration::ZERO);
    let (stop, task) = spawn_runtime(server.url(), store.clone(), settings(1800, 300), handler);
    let deadline = Instant::now() + Duration::from_secs(5);
    for id in [&newer_field, &newer_version, &corrupt] {
        loop {
            let job = store.get(id).await.unwrap().unwrap();
            if job.state != JobState::Queued && job.state != JobState::Running {
                break;
            }
            assert!(Instant::now() < deadline, "never leased: {job:#?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    for id in [&newer_field, &newer_version] {
        let job = store.get(id).await.unwrap().unwrap();
        assert_eq!(job.state, JobState::Scheduled, "{job:#?}");
        assert_eq!(job.attempts, 0, "{job:#?}");
        assert!(job.attempt_history.is_empty(), "{job:#?}");
        let why = job.last_error.as_ref().map(|e| e.message.clone()).unwrap_or_default();
        assert!(why.starts_with("written by a newer release"), "{why}");
    }
    assert_eq!(store.get(&corrupt).await.unwrap().unwrap().state, JobState::Dead);
    assert!(events_for(&mut events, Duration::from_millis(200)).await.is_empty(), "none ran");
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
}
