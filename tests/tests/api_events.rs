//! `GET /v1/jobs/{id}/events`: server-sent events for a job run by a real worker
//! (the worker runtime in-process), and streams ending on terminal states and shutdown.
use crate::api_support;

use std::time::Duration;

use api_support::*;
use drover::job::{JobPayload, Progress};
use drover::queue::JobStore;
use drover::runtime::{JobContext, Outcome};
use drover::JobError;
use futures::StreamExt;
use serde_json::{json, Value};

/// Reads server-sent events from a response, one at a time.
struct Events {
    stream: futures::stream::BoxStream<'static, reqwest::Result<Vec<u8>>>,
    buf: String,
}

impl Events {
    fn new(res: reqwest::Response) -> Self {
        Self {
            stream: res.bytes_stream().map(|r| r.map(|b| b.to_vec())).boxed(),
            buf: String::new(),
        }
    }

    /// The next event as (name, data); None when the stream ended.
    async fn next(&mut self) -> Option<(String, Value)> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut name = String::from("message");
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        name = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if data.is_empty() {
                    continue; // a keep-alive comment
                }
                return Some((name, serde_json::from_str(&data).unwrap()));
            }
            let chunk = tokio::time::timeout(Duration::from_secs(15), self.stream.next())
                .await
                .expect("an event or the end within 15 s")?;
            self.buf.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        }
    }
}

fn worker_config(redis_url: &str) -> drover_worker::WorkerConfig {
    let mut c = drover_worker::WorkerConfig {
        redis_url: redis_url.to_owned().into(),
        heartbeat_ms: 100,
        lease_ms: 1000,
        idle_wait_ms: 100,
        grace_ms: 1000,
        ..Default::default()
    };
    c.concurrency.sync = 0;
    c.concurrency.backfill = 0;
    c.concurrency.cleanup = 1;
    c
}

async fn three_steps(_payload: JobPayload, ctx: JobContext) -> Result<Outcome, JobError> {
    for done in 1..=3 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        ctx.progress(Progress {
            done,
            total: Some(3),
            message: Some(format!("step {done}")),
        })
        .await?;
    }
    Ok(Outcome::Succeeded(json!({"deleted": 3})))
}

#[tokio::test]
async fn the_event_stream_delivers_queued_running_succeeded_for_a_job_run_by_a_real_worker() {
    let app = spawn_app().await;
    let id = app.submit_ok(&cleanup_body("acme")).await;
    let res = app.get(READER, &format!("/v1/jobs/{id}/events")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let mut events = Events::new(res);
    let (name, first) = events.next().await.unwrap();
    assert_eq!((name.as_str(), first["state"].as_str()), ("state", Some("queued")));

    let (stop_worker, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(drover_worker::run(worker_config(&app.redis.url()), three_steps, async move {
        let _ = stopped.await;
    }));

    let mut states = vec!["queued".to_owned()];
    let mut progress = Vec::new();
    let mut last = String::new();
    let mut prefetched = false;
    while let Some((name, data)) = events.next().await {
        assert_eq!(data["id"], id.as_str());
        match name.as_str() {
            "state" => states.push(data["state"].as_str().unwrap().to_owned()),
            "progress" => progress.push(data["done"].as_u64().unwrap()),
            // Why it waits while it is queued: a worker until the one started here
            // serves the queue, then its turn (no other reason here); once leased,
            // until the worker's keeper reports the run's start (within a heartbeat),
            // it waits in the worker's prefetch.
            "waiting" => {
                let reason = data["waiting"]["reason"].as_str().unwrap_or_default();
                assert!(["no_worker", "queued", "prefetched"].contains(&reason), "{data}");
                prefetched |= reason == "prefetched";
            }
            other => panic!("unexpected event {other}"),
        }
        last = name;
    }
    // A stream that saw the run wait in the prefetch also hears when it starts (a state
    // event in the same state): under load a poll can fall in that window.
    let want: &[&str] = if prefetched {
        &["queued", "running", "running", "succeeded"]
    } else {
        &["queued", "running", "succeeded"]
    };
    assert_eq!(states, want);
    assert!(!progress.is_empty(), "progress is streamed");
    assert!(
        progress.windows(2).all(|w| w[0] < w[1]),
        "progress only moves forward: {progress:?}"
    );
    assert_eq!(progress.last(), Some(&3), "the final progress comes before the end");
    assert_eq!(last, "state", "the stream ends with the terminal state");

    let _ = stop_worker.send(());
    worker.await.unwrap().unwrap();
    let (_, job) = app.job(ADMIN, id.as_str()).await;
    assert_eq!(job["result"], json!({"deleted": 3}));
    assert_eq!(job["progress"]["done"], 3);
    assert_eq!(job["attempt_history"][0]["outcome"], "succeeded");
}

#[tokio::test]
async fn the_stream_of_an_ended_job_sends_its_state_and_ends() {
    let app = spawn_app().await;
    let id = app.submit_ok(&cleanup_body("acme")).await;
    app.kill_job(&id).await;
    let res = app.get(READER, &format!("/v1/jobs/{id}/events")).send().await.unwrap();
    let mut events = Events::new(res);
    let (name, data) = events.next().await.unwrap();
    assert_eq!((name.as_str(), data["state"].as_str()), ("state", Some("dead")));
    assert_eq!(data["last_error"]["class"], "permanent");
    assert!(events.next().await.is_none());
}

/// The `id:` of each event of a stream that ends, in order.
async fn event_ids(res: reqwest::Response) -> Vec<String> {
    let text = tokio::time::timeout(Duration::from_secs(15), res.text())
        .await
        .expect("the stream ends")
        .unwrap();
    text.lines()
        .filter_map(|l| l.strip_prefix("id:"))
        .map(|v| v.trim().to_owned())
        .collect()
}

/// Found by the fifth audits of 2026-12-06 (a known limit until now): a stream's event
/// ids started at 1 on every connection and `Last-Event-ID` was not read, so a client
/// reconnecting (EventSource does, sending the last id it got) saw its ids go back and
/// repeat. A stream's ids count on from the one the client sends; without one, or with
/// one that is not a number, from 1.
#[tokio::test]
async fn a_reconnecting_stream_counts_its_event_ids_on_from_the_last_one_the_client_got() {
    let app = spawn_app().await;
    let id = app.submit_ok(&cleanup_body("acme")).await;
    app.kill_job(&id).await;
    let url = format!("/v1/jobs/{id}/events");
    let fresh = event_ids(app.get(READER, &url).send().await.unwrap()).await;
    assert_eq!(fresh, vec!["1"]);
    let resumed = event_ids(app.get(READER, &url).header("Last-Event-ID", "41").send().await.unwrap()).await;
    assert_eq!(resumed, vec!["42"], "the ids go on from the client's last");
    let garbled = event_ids(app.get(READER, &url).header("Last-Event-ID", "forty-one").send().await.unwrap()).await;
    assert_eq!(garbled, vec!["1"]);
}

#[tokio::test]
async fn shutting_down_ends_open_streams_and_returns() {
    let app = spawn_app().await;
    let id = app.submit_ok(&cleanup_body("acme")).await;
    let res = app.get(READER, &format!("/v1/jobs/{id}/events")).send().await.unwrap();
    let mut events = Events::new(res);
    assert_eq!(events.next().await.unwrap().1["state"], "queued");
    assert_eq!(events.next().await.unwrap().0, "waiting", "why it waits follows its state");
    let started = std::time::Instant::now();
    app.stop().await.expect("a clean shutdown");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "open streams do not hold the shutdown up"
    );
    assert!(events.next().await.is_none(), "the stream ended");
}

/// The next event other than `progress`, within 15 s.
async fn next_named(events: &mut Events, name: &str) -> Value {
    loop {
        let (n, data) = events.next().await.expect("the stream goes on");
        if n == name {
            return data;
        }
        assert!(n == "state" || n == "waiting", "unexpected event {n}: {data}");
    }
}

#[tokio::test]
async fn the_stream_says_why_a_job_waits_and_again_whenever_that_changes() {
    let app = spawn_app().await;
    app.worker_beat().await;
    let end = chrono::Utc::now();
    let backfill = json!({"kind": "backfill", "payload": {"account_id": "acme", "marketplace_id": MARKETPLACE,
        "report_type": "GET_FLAT_FILE_ALL_ORDERS_DATA_BY_ORDER_DATE_GENERAL",
        "start": end - chrono::Duration::days(1), "end": end}});
    let id = app.submit_ok(&backfill).await;
    let res = app.get(READER, &format!("/v1/jobs/{id}/events")).send().await.unwrap();
    let mut events = Events::new(res);
    let (name, first) = events.next().await.unwrap();
    assert_eq!((name.as_str(), first["state"].as_str()), ("state", Some("queued")));
    let w = next_named(&mut events, "waiting").await;
    assert_eq!((w["id"].as_str(), w["state"].as_str()), (Some(id.as_str()), Some("queued")));
    assert_eq!(w["waiting"]["reason"], "queued", "{w}");

    // A worker's 429 on a report operation puts the account in cooldown: nothing is
    // written on the job, and the stream still tells.
    let mut config = drover::resilience::ResilienceConfig::default();
    config.cooldown.steps = vec![Duration::from_secs(2)];
    let resilience = drover::resilience::Resilience::new(app.store.connection(), "drover", config, &drover::crypto::EncryptionKey::dev());
    let cooldown = resilience
        .enter_cooldown(&drover::job::AccountId::parse("acme").unwrap(), "429 on createReport", None)
        .await
        .unwrap();
    let w = next_named(&mut events, "waiting").await;
    assert_eq!(w["waiting"]["reason"], "quota_cooldown", "{w}");
    let until: chrono::DateTime<chrono::Utc> = w["waiting"]["until"].as_str().unwrap().parse().unwrap();
    assert_eq!(until, cooldown.until);
    // ... and when it is over.
    let w = next_named(&mut events, "waiting").await;
    assert_eq!(w["waiting"]["reason"], "queued", "{w}");
    assert!(chrono::Utc::now() >= cooldown.until);

    // A run that parks on the limiter (what the marketplace client's snooze says).
    let token = app.lease(&id).await;
    let s = next_named(&mut events, "state").await;
    assert_eq!(s["state"], "running");
    let park = drover::queue::Settlement {
        id: id.clone(),
        token,
        action: drover::queue::SettleAction::Snooze {
            delay: Duration::from_secs(30),
            error: drover::job::ErrorInfo {
                class: drover::job::ErrorClass::RateLimited,
                message: "createReport: rate limited (retry after 30s)".into(),
            },
            advanced: false,
        },
        attempt: None,
    };
    app.store.settle(id.kind(), &[park]).await.unwrap();
    let s = next_named(&mut events, "state").await;
    assert_eq!(s["state"], "scheduled");
    let w = next_named(&mut events, "waiting").await;
    assert_eq!(w["waiting"]["reason"], "rate_limit", "{w}");
    assert_eq!(w["waiting"]["detail"]["operation"], "createReport");
    let until: chrono::DateTime<chrono::Utc> = w["waiting"]["until"].as_str().unwrap().parse().unwrap();
    assert!(until > chrono::Utc::now() + chrono::Duration::seconds(25), "{w}");
}

/// Found by an audit of what the API shows (2026-12-06): a scheduled (or retrying) job
/// whose wait ends in a queue no worker serves keeps its reason and end, and only its
/// `detail.then` says it now waits for a worker; the stream compared reason and end
/// only, so it never said so, and the console's live panel kept showing a wait whose
/// end had passed.
#[tokio::test]
async fn the_stream_says_when_a_timed_wait_has_run_into_a_queue_no_worker_serves() {
    let app = spawn_app().await;
    let mut body = cleanup_body("acme");
    body["delay_ms"] = json!(1000);
    let id = app.submit_ok(&body).await;
    let res = app.get(READER, &format!("/v1/jobs/{id}/events")).send().await.unwrap();
    let mut events = Events::new(res);
    let (name, first) = events.next().await.unwrap();
    assert_eq!((name.as_str(), first["state"].as_str()), ("state", Some("scheduled")));
    let w = next_named(&mut events, "waiting").await;
    assert_eq!(w["waiting"]["reason"], "scheduled", "{w}");
    assert!(w["waiting"]["detail"].get("then").is_none(), "its end has not come: {w}");
    let w = next_named(&mut events, "waiting").await;
    assert_eq!(w["waiting"]["reason"], "scheduled", "{w}");
    assert_eq!(w["waiting"]["detail"]["then"], "no_worker", "{w}");
}

#[tokio::test]
async fn a_job_behind_its_accounts_cap_is_streamed_as_account_busy_until_the_run_ends() {
    let app = spawn_app().await;
    app.worker_beat().await;
    let running = app.submit_ok(&cleanup_body("acme")).await;
    let behind = app.submit_ok(&cleanup_body("acme")).await;
    let res = app.get(READER, &format!("/v1/jobs/{behind}/events")).send().await.unwrap();
    let mut events = Events::new(res);
    assert_eq!(next_named(&mut events, "waiting").await["waiting"]["reason"], "queued");

    // A worker whose cap is one cleanup per account leases the first job; its next
    // fetch finds the account at its cap.
    let capped = drover::queue::RedisStore::connect(
        &app.redis.url(),
        "drover",
        drover::queue::JobDefaults {
            per_account: [1, 1, 1],
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let lease = Duration::from_secs(30);
    let mut fetched = capped.fetch(drover::job::JobKind::Cleanup, "w-1", 1, lease).await.unwrap();
    let leased = fetched.jobs.pop().expect("the first job");
    assert_eq!(leased.id, running);
    assert!(capped
        .fetch(drover::job::JobKind::Cleanup, "w-1", 1, lease)
        .await
        .unwrap()
        .jobs
        .is_empty());
    let w = next_named(&mut events, "waiting").await;
    assert_eq!(w["waiting"]["reason"], "account_busy", "{w}");
    assert_eq!(w["waiting"]["detail"], json!({"cap": 1, "running": [running.as_str()]}));

    // The run ends: the account has room again.
    let done = drover::queue::Settlement {
        id: running.clone(),
        token: leased.token,
        action: drover::queue::SettleAction::Succeeded(json!({})),
        attempt: None,
    };
    capped.settle(drover::job::JobKind::Cleanup, &[done]).await.unwrap();
    let w = next_named(&mut events, "waiting").await;
    assert_eq!(w["waiting"]["reason"], "queued", "{w}");
}

/// Runs of `fails_once` so far (only one test uses it).
static FAILS_ONCE_RUNS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Fails its first run with a transient error, succeeds the next.
async fn fails_once(_payload: JobPayload, _ctx: JobContext) -> Result<Outcome, JobError> {
    if FAILS_ONCE_RUNS.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        return Err(JobError::Transient("upstream said 503".into()));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    Ok(Outcome::Succeeded(json!({"deleted": 1})))
}

/// Found by an audit of job histories: the stream sent a `state` event only when the
/// state's name changed, and a retry that falls due within one poll (or a lost lease
/// reclaimed and leased again in one fetch) goes from running to running: the failed
/// run and its error were never streamed. Every new run is news.
#[tokio::test]
async fn a_run_that_failed_and_was_retried_at_once_is_streamed_with_its_error() {
    let app = spawn_app().await;
    let id = app.submit_ok(&cleanup_body("acme")).await;
    let mut events = Events::new(app.get(READER, &format!("/v1/jobs/{id}/events")).send().await.unwrap());
    let mut config = worker_config(&app.redis.url());
    // The retry is due at once (full jitter over 1 ms): the job is `retrying` for far
    // less than one poll of the stream.
    config.retry.cleanup = Some(drover::queue::RetryPolicy {
        base: Duration::from_millis(1),
        max: Duration::from_millis(1),
    });
    let (stop_worker, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(drover_worker::run(config, fails_once, async move {
        let _ = stopped.await;
    }));

    let mut states = Vec::new();
    while let Some((name, data)) = events.next().await {
        if name == "state" {
            states.push(data);
        }
    }
    let _ = stop_worker.send(());
    worker.await.unwrap().unwrap();
    let seen: Vec<(String, u64)> = states
        .iter()
        .map(|s| (s["state"].as_str().unwrap().to_owned(), s["attempts"].as_u64().unwrap()))
        .collect();
    let second_run = states
        .iter()
        .find(|s| s["state"] == "running" && s["attempts"] == 2)
        .unwrap_or_else(|| panic!("the second run is streamed: {seen:?}"));
    assert!(
        second_run["last_error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("upstream said 503")),
        "with the first run's error: {second_run}"
    );
    assert_eq!(seen.last(), Some(&("succeeded".to_owned(), 2)), "{seen:?}");
}

/// The queue's next cleanup, leased (not yet started) by a worker's store that reports
/// its runs' starts.
async fn leased_by_a_worker(app: &TestApp) -> (drover::queue::RedisStore, drover::queue::Leased) {
    use drover::job::JobKind;
    use drover::queue::{JobDefaults, RedisStore};
    let worker = RedisStore::connect(&app.redis.url(), "drover", JobDefaults::for_runtime())
        .await
        .unwrap();
    let run = worker
        .fetch(JobKind::Cleanup, "host-1:42", 1, Duration::from_secs(30))
        .await
        .unwrap()
        .jobs
        .pop()
        .expect("leased");
    (worker, run)
}

/// Found by a review of this stop's changes: a job leased into a worker's prefetch is
/// streamed as waiting `prefetched`, and when its run starts nothing in its record
/// changes, so the stream said nothing more until the run ended. The start is a
/// `state` event.
#[tokio::test]
async fn a_prefetched_jobs_start_is_streamed() {
    use drover::job::JobKind;

    let app = spawn_app().await;
    let id = app.submit_ok(&cleanup_body("acme")).await;
    let (worker, run) = leased_by_a_worker(&app).await;
    let mut events = Events::new(app.get(READER, &format!("/v1/jobs/{id}/events")).send().await.unwrap());
    loop {
        let (name, data) = events.next().await.expect("events until the wait");
        if name == "waiting" {
            assert_eq!(data["waiting"]["reason"], "prefetched", "{data}");
            break;
        }
    }
    worker
        .mark_started(JobKind::Cleanup, &[(run.id.clone(), run.token.clone())], Duration::from_secs(5))
        .await
        .unwrap();
    let (name, data) = events.next().await.expect("an event once the run starts");
    assert_eq!((name.as_str(), data["state"].as_str()), ("state", Some("running")), "{data}");
}

/// Found by the visibility audit of 2026-12-05: a cancel accepted for a running job
/// (202, `cancel_requested` in `GET` at once) sent nothing on the job's stream until
/// the job ended, which for a prefetched job is after the run ahead of it.
#[tokio::test]
async fn a_cancel_accepted_for_a_running_job_is_streamed_at_once() {
    use drover::job::JobKind;

    let app = spawn_app().await;
    let id = app.submit_ok(&cleanup_body("acme")).await;
    let (worker, run) = leased_by_a_worker(&app).await;
    worker
        .mark_started(JobKind::Cleanup, &[(run.id.clone(), run.token.clone())], Duration::from_secs(5))
        .await
        .unwrap();
    let mut events = Events::new(app.get(READER, &format!("/v1/jobs/{id}/events")).send().await.unwrap());
    let first = next_named(&mut events, "state").await;
    assert_eq!(first["state"], "running", "{first}");
    let r = app.post(ADMIN, &format!("/v1/jobs/{id}/cancel")).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let next = next_named(&mut events, "state").await;
    assert_eq!(
        (next["state"].as_str(), next["cancel_requested"].as_bool()),
        (Some("running"), Some(true)),
        "{next}"
    );
}

/// Found by the visibility audit of 2026-12-06: a second stream on a job sent the job as
/// it read it, then the shared poll's last snapshot, up to a poll older: a job that had
/// just started was streamed `running`, then `queued`, then `running` again.
#[tokio::test]
async fn a_second_stream_on_a_job_never_sends_its_state_going_back() {
    use drover::job::JobKind;

    let app = spawn_app_with(drover_tests::harness::Durability::None, |c| c.events_poll_ms = 3000).await;
    let id = app.submit_ok(&cleanup_body("acme")).await;
    // The first stream starts the job's shared poll, which reads it queued.
    let mut first = Events::new(app.get(READER, &format!("/v1/jobs/{id}/events")).send().await.unwrap());
    assert_eq!(next_named(&mut first, "state").await["state"], "queued");
    tokio::time::sleep(Duration::from_millis(3300)).await;
    let (worker, run) = leased_by_a_worker(&app).await;
    worker
        .mark_started(JobKind::Cleanup, &[(run.id.clone(), run.token.clone())], Duration::from_secs(5))
        .await
        .unwrap();
    // Before the poll reads it again, a second stream opens on the running job.
    let mut second = Events::new(app.get(READER, &format!("/v1/jobs/{id}/events")).send().await.unwrap());
    assert_eq!(next_named(&mut second, "state").await["state"], "running");
    let later = tokio::time::timeout(Duration::from_millis(1500), next_named(&mut second, "state")).await;
    assert!(later.is_err(), "the second stream went back to {later:?}");
}
