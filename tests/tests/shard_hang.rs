//! A Redis Cluster primary that hangs (SIGSTOP: its sockets stay open, nothing answers)
//! under a live worker runtime: only the runs whose jobs live on that shard lose their
//! leases; the runs on the healthy shards are renewed and end on their first attempt.
use std::collections::HashSet;
use std::time::{Duration, Instant};

use drover::job::{JobId, JobKind, JobPayload, JobState};
use drover::queue::{JobDefaults, JobStore, NewJob, Partitions, RedisStore};
use drover::runtime::{JobContext, Outcome, WorkerSettings};
use drover_tests::harness::RedisCluster;
use serde_json::json;
use tokio::sync::mpsc;

const JOBS: usize = 12;
/// A lease longer than any test here.
const LEASE_FOR_WARMING: Duration = Duration::from_secs(600);
/// How long a run goes on unless it is told to stop.
const RUN: Duration = Duration::from_secs(8);

fn defaults() -> JobDefaults {
    JobDefaults {
        partitions: Partitions::new(6).unwrap(),
        ..Default::default()
    }
}

fn job(account: &str) -> NewJob {
    let payload = JobPayload::from_json(
        JobKind::Cleanup,
        json!({"account_id": account, "marketplace_id": "ATVPDKIKX0DER", "skus": ["SKU-1"]}),
    )
    .unwrap();
    NewJob::new(payload).max_attempts(5)
}

/// The runtime's defaults (lease 1.8 s, a beat every 300 ms, calls bounded at 750 ms,
/// a run fenced after 1.5 s unrenewed), with a slot for every job (`syncs` of them sync).
fn settings(syncs: usize) -> WorkerSettings {
    WorkerSettings {
        concurrency: [(JobKind::Cleanup, JOBS), (JobKind::Sync, syncs), (JobKind::Backfill, 0)].into(),
        grace: Duration::from_millis(500),
        prefetch: 0,
        ..WorkerSettings::default()
    }
}

/// What a run saw: `(job, attempt, told to stop)`, sent when it ends.
type Ended = (JobId, u32, bool);

fn handler(
    ends: mpsc::UnboundedSender<Ended>,
    starts: mpsc::UnboundedSender<JobId>,
) -> impl Fn(JobPayload, JobContext) -> futures::future::BoxFuture<'static, Result<Outcome, drover::JobError>> + Send + Sync + 'static {
    move |_payload, ctx: JobContext| {
        let (ends, starts) = (ends.clone(), starts.clone());
        Box::pin(async move {
            let _ = starts.send(ctx.id.clone());
            let stopped = tokio::time::timeout(RUN, ctx.cancel.cancelled()).await.is_ok();
            let _ = ends.send((ctx.id.clone(), ctx.attempt, stopped));
            if stopped {
                return Err(drover::JobError::Cancelled);
            }
            Ok(Outcome::Succeeded(json!({})))
        })
    }
}

/// The primary serving the cleanup queue `account`'s jobs go to.
fn primary_of(cluster: &RedisCluster, account: &str) -> u16 {
    let partition = defaults()
        .partitions
        .of_job(&JobId::with_bucket(JobKind::Cleanup, Some(drover::job::bucket_of(account))));
    cluster.primary_serving(&drover::queue::QueueKeys::new("drover", JobKind::Cleanup, partition).slot_key())
}

/// The jobs a store cannot read within 300 ms: those on the hung shard.
async fn unreadable(store: &RedisStore, ids: &[JobId]) -> HashSet<JobId> {
    let reads = ids.iter().map(|id| async move {
        let read = tokio::time::timeout(Duration::from_millis(300), store.get(id)).await;
        (id.clone(), matches!(read, Ok(Ok(Some(_)))))
    });
    futures::future::join_all(reads)
        .await
        .into_iter()
        .filter(|(_, read)| !read)
        .map(|(id, _)| id)
        .collect()
}

/// Found by the audit of 2026-12-05 (docs/architecture.md, "Known limits"): a keeper
/// round's one deadline (750 ms) covered a kind's renewals on every shard, so a shard
/// that hung rather than refused held up every renewal: after 1.5 s every run of the
/// process was fenced, the healthy shards' too, and ran again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hanging_shard_costs_only_its_own_runs_their_leases() {
    hang_a_shard(false).await;
}

/// Found by the chaos audit of 2026-12-06: when every lease of one kind (here the one
/// sync) sat on the hung shard, that kind's renewal timed out whole and the keeper
/// dropped its store — the healthy shards' renewals of the round with it — and dialled
/// afresh, which cannot end while a primary hangs: no lease of the process was renewed,
/// and every run on the healthy shards was fenced too.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_kind_whose_every_lease_is_on_a_hanging_shard_costs_the_other_kinds_nothing() {
    hang_a_shard(true).await;
}

/// Runs [`JOBS`] cleanups (and, with `sync`, one sync job, on the shard that hangs) on
/// a live runtime, hangs one primary for three leases' worth, and checks that only the
/// runs on it were stopped.
async fn hang_a_shard(sync: bool) {
    let cluster = RedisCluster::start(3, 0);
    cluster.serve_partial_coverage();
    let store = RedisStore::connect(&cluster.url(), "drover", defaults()).await.unwrap();
    let mut ids = Vec::new();
    let mut hung = cluster.primaries()[0];
    if sync {
        let payload = JobPayload::from_json(
            JobKind::Sync,
            json!({"account_id": "s0", "marketplace_id": "ATVPDKIKX0DER", "resources": ["orders"]}),
        )
        .unwrap();
        let id = store.enqueue(NewJob::new(payload).max_attempts(5)).await.unwrap().id;
        hung = cluster.primary_serving(&store.job_keys(&id).job(&id));
        ids.push(id);
    }
    for a in 0..JOBS {
        ids.push(store.enqueue(job(&format!("a{a}"))).await.unwrap().id);
    }
    let (ends_tx, mut ends) = mpsc::unbounded_channel();
    let (starts_tx, mut starts) = mpsc::unbounded_channel();
    let url = cluster.url();
    let connect = move || {
        let url = url.clone();
        async move { RedisStore::connect(&url, "drover", defaults()).await }
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let runtime = tokio::spawn(drover::runtime::run(
        store.clone(),
        connect,
        settings(usize::from(sync)),
        handler(ends_tx, starts_tx),
        async move {
            let _ = stopped.await;
        },
    ));
    let mut started = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while started.len() < ids.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, starts.recv()).await {
            Ok(Some(id)) => {
                started.insert(id);
            }
            _ => panic!("only {} of {} runs started", started.len(), ids.len()),
        }
    }
    // Every start reported and renewed at least once before the hang.
    tokio::time::sleep(Duration::from_millis(700)).await;

    cluster.pause(hung);
    let paused_at = Instant::now();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let on_hung = unreadable(&store, &ids).await;
    // Three leases' worth of hanging: long past the fence and Redis's own expiry (and
    // long enough for the keeper to dial a fresh store beside the one in use).
    let mut stopped_runs = Vec::new();
    while paused_at.elapsed() < Duration::from_millis(5400) {
        if let Ok(Some(end)) = tokio::time::timeout(Duration::from_millis(100), ends.recv()).await {
            stopped_runs.push(end);
        }
    }
    cluster.resume(hung);
    eprintln!(
        "{} of {JOBS} jobs on the hung shard; runs ended during the hang: {stopped_runs:?}",
        on_hung.len()
    );
    assert!(
        !on_hung.is_empty() && on_hung.len() < ids.len(),
        "the jobs spread over the shards: {} on the hung one",
        on_hung.len()
    );
    let healthy_stopped: Vec<&Ended> = stopped_runs
        .iter()
        .filter(|(id, _, stopped)| *stopped && !on_hung.contains(id))
        .collect();
    assert!(
        healthy_stopped.is_empty(),
        "runs on healthy shards were stopped while another shard hung: {healthy_stopped:?}"
    );

    // The healthy shards' jobs end on their first attempt.
    let deadline = Instant::now() + Duration::from_secs(30);
    for id in ids.iter().filter(|id| !on_hung.contains(*id)) {
        loop {
            let job = store.get(id).await.unwrap().unwrap();
            if job.state.is_terminal() {
                assert_eq!(job.state, JobState::Succeeded, "{job:#?}");
                assert_eq!(job.attempts, 1, "one attempt: {job:#?}");
                assert!(job.attempt_history.len() <= 1, "one run: {job:#?}");
                break;
            }
            assert!(Instant::now() < deadline, "{id} never ended: {job:#?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let _ = stop.send(());
    runtime.await.unwrap().unwrap();
}

/// Jobs submitted while one shard hangs, to partitions on the others, run once each,
/// and soon. Found by the chaos audit of 2026-12-07 (third; that of 2026-12-06 read it
/// too, but this test then checked only the runs): a fetch waited for every shard's
/// answer before handing any lease on, the hung one's for the connection's 5 s timeout,
/// so the healthy shards' leases came too old to start, were handed back unrecorded, and
/// 200 ms jobs took about 10 s. A shard that has not answered a quarter of the lease
/// after the others is left out of that fetch.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jobs_on_healthy_shards_run_once_while_another_shard_hangs() {
    let cluster = RedisCluster::start(3, 0);
    cluster.serve_partial_coverage();
    let store = RedisStore::connect(&cluster.url(), "drover", defaults()).await.unwrap();
    let hung = cluster.primaries()[0];
    let healthy: Vec<String> = (0..200)
        .map(|a| format!("h{a}"))
        .filter(|a| primary_of(&cluster, a) != hung)
        .take(JOBS)
        .collect();
    let url = cluster.url();
    let connect = move || {
        let url = url.clone();
        async move { RedisStore::connect(&url, "drover", defaults()).await }
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let fast = |_payload: JobPayload, _ctx: JobContext| -> futures::future::BoxFuture<'static, Result<Outcome, drover::JobError>> {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            Ok(Outcome::Succeeded(json!({})))
        })
    };
    let runtime = tokio::spawn(drover::runtime::run(store.clone(), connect, settings(0), fast, async move {
        let _ = stopped.await;
    }));
    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster.pause(hung);
    // Three waves, while the fetches keep meeting the hung shard.
    let mut ids = Vec::new();
    for _ in 0..3 {
        for a in &healthy {
            ids.push(store.enqueue(job(a)).await.unwrap().id);
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut slowest = Duration::ZERO;
    for id in &ids {
        loop {
            let job = store.get(id).await.unwrap().unwrap();
            if job.state.is_terminal() {
                assert_eq!(job.state, JobState::Succeeded, "{job:#?}");
                assert_eq!(job.attempt_history.len(), 1, "one run, no hand-backs: {job:#?}");
                let took = (job.finished_at.expect("ended") - job.created_at).to_std().unwrap_or_default();
                slowest = slowest.max(took);
                break;
            }
            assert!(Instant::now() < deadline, "{id} did not run while another shard hung: {job:#?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    cluster.resume(hung);
    // A 200 ms run, leased within a fetch or two: well under the 5 s a fetch waited.
    eprintln!("slowest healthy job, submission to end: {slowest:?}");
    assert!(
        slowest < Duration::from_secs(3),
        "a healthy shard's job took {slowest:?} from submission to its end"
    );
    let _ = stop.send(());
    runtime.await.unwrap().unwrap();
}

/// Found by the cluster audit of 2026-12-06: single enqueues made at one moment shared
/// one group-committed call across every shard, answered once the slowest shard had
/// answered, so with one primary hung every enqueue of the process (for any shard) took
/// its timeout, about 5 s, and many outlived the API's request timeout; and the scheduler
/// enqueued its due ticks one after another, each waiting that long, so schedules of
/// healthy shards missed their ticks. Enqueues are group-committed per queue now, and the
/// scheduler sends a poll's ticks together.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hanging_shard_holds_up_neither_the_other_shards_enqueues_nor_their_schedules() {
    use chrono::Utc;
    use drover::schedule::{ScheduleSpec, ScheduleStore, Scheduler, SchedulerConfig};

    let cluster = RedisCluster::start(3, 0);
    cluster.serve_partial_coverage();
    let store = RedisStore::connect(&cluster.url(), "drover", defaults()).await.unwrap();
    let schedules_at = cluster.primary_serving("drover:schedules");
    let hung = *cluster.primaries().iter().find(|p| **p != schedules_at).unwrap();
    let on_hung = |a: &String| primary_of(&cluster, a) == hung;
    let (sick, healthy): (Vec<String>, Vec<String>) = (0..400).map(|a| format!("h{a}")).partition(on_hung);
    let (sick, healthy) = (&sick[..12], &healthy[..12]);

    let schedules = ScheduleStore::new(store.connection(), "drover");
    let spec = |account: &str| ScheduleSpec {
        cron: "* * * * *".into(),
        kind: JobKind::Cleanup,
        payload: json!({"account_id": account, "marketplace_id": "ATVPDKIKX0DER", "skus": ["SKU-1"]}),
        enabled: true,
        priority: 0,
        max_attempts: None,
    };
    for account in sick.iter().chain(&healthy[..1]) {
        schedules.put(&format!("minutely-{account}"), spec(account)).await.unwrap();
    }
    // Every queue used once while all answer (the scripts loaded everywhere, as a
    // running fleet has them).
    for account in sick.iter().chain(healthy) {
        store.enqueue(job(account)).await.unwrap();
    }
    cluster.pause(hung);

    // Enqueues to the hung shard on the wire, then enqueues to the healthy ones.
    let stuck: Vec<_> = sick
        .iter()
        .map(|a| {
            let (store, job) = (store.clone(), job(a));
            tokio::spawn(async move { store.enqueue(job).await.is_ok() })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let answered = futures::future::join_all(healthy.iter().map(|a| {
        let (store, job) = (store.clone(), job(a));
        async move {
            let began = Instant::now();
            let ok = store.enqueue(job).await.is_ok();
            (ok, began.elapsed())
        }
    }))
    .await;
    for (ok, took) in &answered {
        assert!(
            *ok && *took < Duration::from_secs(2),
            "a healthy shard's enqueue: ok {ok}, {took:?}"
        );
    }

    // A poll a minute on: every schedule has a tick due.
    let config = SchedulerConfig {
        misfire_grace_ms: 120_000,
        ..SchedulerConfig::default()
    };
    let mut scheduler = Scheduler::new(store.clone(), schedules, None, config);
    let began = Instant::now();
    let created = scheduler.tick_once(Utc::now() + chrono::Duration::seconds(60)).await;
    assert!(began.elapsed() < Duration::from_secs(10), "a poll took {:?}", began.elapsed());
    assert_eq!(created, 1, "the healthy shard's schedule made its job");
    cluster.resume(hung);
    for task in stuck {
        let _ = task.await;
    }
}

/// Found by the cluster audit of 2026-12-06: deliveries were claimed partition after
/// partition with no bound, so each partition of a hung shard held the claim round its
/// timeout (about 5 s): what the healthy partitions claimed went out after the claims had
/// run out, another worker claimed and sent them again, and neither could record the
/// delivery. A partition's claim is bounded now.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hanging_shard_costs_the_callback_claims_a_bounded_wait() {
    use drover::job::bucket_of;
    use drover::queue::{AccountShare, CallbackStore, NewCallback};

    let cluster = RedisCluster::start(3, 0);
    cluster.serve_partial_coverage();
    let store = RedisStore::connect(&cluster.url(), "drover", defaults()).await.unwrap();
    let hung = cluster.primaries()[0];
    let on_hung = |a: &String| primary_of(&cluster, a) == hung;
    let (sick, healthy): (Vec<String>, Vec<String>) = (0..400).map(|a| format!("c{a}")).partition(on_hung);
    let (sick, healthy) = (&sick[..6], &healthy[..6]);
    for account in sick.iter().chain(healthy) {
        let callback = NewCallback {
            job_id: JobId::with_bucket(JobKind::Cleanup, Some(bucket_of(account))),
            url: "https://hooks.example.com/drover".into(),
            sealed_secret: vec![1, 2, 3],
        };
        let id = store.enqueue(job(account).callback(callback)).await.unwrap().id;
        store.cancel(&id).await.unwrap();
    }
    cluster.pause(hung);
    let began = Instant::now();
    let (claimed, _) = store
        .claim_callbacks(JobKind::Cleanup, "w1", 100, Duration::from_secs(30), 8, &AccountShare::default())
        .await
        .unwrap();
    let took = began.elapsed();
    cluster.resume(hung);
    assert_eq!(claimed.len(), healthy.len(), "the healthy partitions' deliveries are claimed");
    assert!(took < Duration::from_secs(4), "a claim round took {took:?}");
}

/// Found by the review of 2026-12-07: a fetch that cut off a slow shard's pipeline (so as
/// not to hold up the others) dropped its answer, and what that shard leased when it
/// came to it reached no run: left to run out, such leases were reclaimed as a dead
/// worker's, each costing its job a free hand-back (then an attempt, then its life). What
/// a late answer leased is given back as it comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn what_a_shard_cut_off_from_a_fetch_leased_is_given_back_when_it_answers() {
    let cluster = RedisCluster::start(3, 0);
    cluster.serve_partial_coverage();
    // One run per account: a first fetch leases one job of each, and learns the keys of
    // the lanes it leaves (a cluster's fetch declares them: it leases nothing from lanes
    // it has not seen, asking again for them).
    let capped = JobDefaults {
        per_account: [1, 1, 1],
        ..defaults()
    };
    let store = RedisStore::connect(&cluster.url(), "drover", capped).await.unwrap();
    let slow = cluster.primaries()[0];
    let on = |slow_one: bool| -> Vec<String> {
        (0..200)
            .map(|a| format!("s{a}"))
            .filter(|a| (primary_of(&cluster, a) == slow) == slow_one)
            .take(4)
            .collect()
    };
    let mut late_ids = Vec::new();
    for a in on(true) {
        store.enqueue(job(&a)).await.unwrap();
        late_ids.push(store.enqueue(job(&a)).await.unwrap().id);
    }
    for a in on(false) {
        store.enqueue(job(&a)).await.unwrap();
    }
    let first = store.fetch(JobKind::Cleanup, "w0", 100, LEASE_FOR_WARMING).await.unwrap().jobs;
    assert_eq!(first.len(), 8, "one job of each account");
    let done: Vec<drover::queue::Settlement> = first
        .iter()
        .map(|l| drover::queue::Settlement {
            id: l.id.clone(),
            token: l.token.clone(),
            action: drover::queue::SettleAction::Succeeded(json!({})),
            attempt: None,
        })
        .collect();
    store.settle(JobKind::Cleanup, &done).await.unwrap();
    for a in on(false) {
        store.enqueue(job(&a)).await.unwrap();
    }
    cluster.pause(slow);
    let fetch = {
        let store = store.clone();
        tokio::spawn(async move { store.fetch(JobKind::Cleanup, "w1", 100, Duration::from_millis(1800)).await })
    };
    // The slow shard answers a second later: past the fetch's straggle (450 ms).
    tokio::time::sleep(Duration::from_secs(1)).await;
    cluster.resume(slow);
    let fetched = fetch.await.unwrap().unwrap();
    assert_eq!(fetched.jobs.len(), 4, "the other shards' jobs, without waiting: {:?}", fetched.jobs);
    assert!(fetched.jobs.iter().all(|l| !late_ids.contains(&l.id)));
    // Given back well before the leases (1.8 s) would run out: queued, nothing used.
    let deadline = Instant::now() + Duration::from_millis(1200);
    for id in &late_ids {
        loop {
            let job = store.get(id).await.unwrap().unwrap();
            if job.state == JobState::Queued {
                assert_eq!(job.attempts, 0, "{job:#?}");
                assert!(job.attempt_history.is_empty(), "{job:#?}");
                break;
            }
            assert!(Instant::now() < deadline, "the late answer's lease was not given back: {job:#?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Found on the sixth stop of 2026-12-07 (the test above failed once in a full CI run:
/// 4.67 s where < 3 s is wanted): a fetch round that asked only a hung shard's
/// partitions — a one-job fetch whose plan starts with one of them, or a wake-up when
/// only they are due — had no other shard's answer to start the quarter-lease cut-off
/// from, and waited the connection's 5 s out before the healthy partitions were asked
/// again. Such a round asks a healthy partition beside them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fetch_round_that_meets_only_a_hung_shard_does_not_wait_out_its_timeout() {
    let cluster = RedisCluster::start(3, 0);
    cluster.serve_partial_coverage();
    let store = RedisStore::connect(&cluster.url(), "drover", defaults()).await.unwrap();
    // The shard of the partition a fresh fetcher's first plan starts with.
    let first = defaults().partitions.all()[0];
    let hung = cluster.primary_serving(&drover::queue::QueueKeys::new("drover", JobKind::Cleanup, first).slot_key());
    let healthy: Vec<String> = (0..200)
        .map(|a| format!("h{a}"))
        .filter(|a| primary_of(&cluster, a) != hung)
        .take(4)
        .collect();
    let on_hung = defaults()
        .partitions
        .all()
        .iter()
        .filter(|p| cluster.primary_serving(&drover::queue::QueueKeys::new("drover", JobKind::Cleanup, **p).slot_key()) == hung)
        .count();
    let mut ids = HashSet::new();
    for a in &healthy {
        ids.insert(store.enqueue(job(a)).await.unwrap().id);
    }
    cluster.pause(hung);
    // One job per fetch, for five seconds: the plans start with the hung partitions in
    // turn, and once the healthy jobs are leased only the hung ones fall due often.
    let mut leased = HashSet::new();
    let mut took = Vec::new();
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        let sent = Instant::now();
        if let Ok(fetched) = store.fetch(JobKind::Cleanup, "w", 1, Duration::from_millis(1800)).await {
            leased.extend(fetched.jobs.into_iter().map(|l| l.id));
        }
        took.push(sent.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster.resume(hung);
    eprintln!("{on_hung} partitions on the hung shard; fetches took {took:?}");
    let slowest = took.iter().max().copied().unwrap_or_default();
    assert!(
        slowest < Duration::from_millis(1500),
        "a fetch took {slowest:?}: it waited for the hung shard (a round is cut off 1.125 s after it was sent)"
    );
    // A partition not yet known to fail may hold its round the cut-off from the send;
    // once known, it is asked beside a healthy one, and waits a quarter of the lease
    // after that one's answer.
    let long = took.iter().filter(|t| **t > Duration::from_millis(800)).count();
    assert!(
        long <= on_hung,
        "{long} fetches took over 800 ms, {on_hung} partitions on the hung shard: {took:?}"
    );
    assert_eq!(leased, ids, "every healthy shard's job leased while the other shard hung");
}

/// Found by the second round of audits of 2026-12-07: a pause that one shard refused
/// failed, and left the other shards' partitions paused — a queue half paused, whatever
/// the caller did next; a resume whose wake-up a shard at its memory limit refused
/// failed too, though it had resumed every partition. A refused change now leaves every
/// partition as it was, a resume needs no memory, and a change a hung shard may still
/// apply is left whole for the caller to try again (undone, the shard would pause its
/// own partitions alone when it woke).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pause_a_shard_refuses_changes_no_partition_and_one_it_leaves_unanswered_is_not_undone() {
    use drover::queue::QueueKeys;

    let cluster = RedisCluster::start(3, 0);
    cluster.serve_partial_coverage();
    let store = RedisStore::connect(&cluster.url(), "drover", defaults()).await.unwrap();
    let keys: Vec<QueueKeys> = defaults()
        .partitions
        .all()
        .iter()
        .map(|p| QueueKeys::new("drover", JobKind::Cleanup, *p))
        .collect();
    let refusing = cluster.primary_serving(&keys[0].slot_key());
    assert!(
        keys.iter().any(|k| cluster.primary_serving(&k.slot_key()) != refusing),
        "the partitions span more than one shard"
    );
    let node = |port: u16| async move {
        redis::Client::open(format!("redis://127.0.0.1:{port}"))
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    };
    let max_memory = |bytes: &'static str| async move {
        let mut c = node(refusing).await;
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxmemory")
            .arg(bytes)
            .query_async(&mut c)
            .await
            .unwrap();
    };
    // Each partition's flag, read from the primary serving it.
    let flags = || async {
        let mut out = Vec::new();
        for k in &keys {
            let mut c = node(cluster.primary_serving(&k.slot_key())).await;
            let flag: Option<String> = redis::cmd("GET").arg(k.key("paused")).query_async(&mut c).await.unwrap();
            out.push(flag.is_some());
        }
        out
    };
    let n = keys.len();
    max_memory("1").await;
    let refused = store.set_paused(JobKind::Cleanup, true).await;
    assert!(refused.is_err(), "the shard at its memory limit refused the pause");
    assert_eq!(flags().await, vec![false; n], "a refused pause paused no partition");
    max_memory("0").await;
    store.set_paused(JobKind::Cleanup, true).await.unwrap();
    assert_eq!(flags().await, vec![true; n]);
    max_memory("1").await;
    store
        .set_paused(JobKind::Cleanup, false)
        .await
        .expect("a resume takes flags away: a shard at its memory limit takes it");
    assert_eq!(flags().await, vec![false; n]);
    max_memory("0").await;
    cluster.pause(refusing);
    assert!(store.set_paused(JobKind::Cleanup, true).await.is_err(), "a shard did not answer");
    cluster.resume(refusing);
    // (the change it was sent runs as it wakes)
    let deadline = Instant::now() + Duration::from_secs(2);
    while flags().await != vec![true; n] && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        flags().await,
        vec![true; n],
        "the hung shard paused its partitions when it woke, and the others kept theirs"
    );
}
