//! The real worker's Prometheus metrics: a cleanup job through the simulator with a
//! burst of 5xx answers, then `GET /metrics` on the worker's own listener, parsed as the
//! text exposition format.
use crate::jobs_support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use drover::job::{JobKind, JobState};
use drover_tests::harness::free_port;
use drover_tests::sim::{AccountSpec, Burst5xx, FaultSpec};
use jobs_support::{Stack, MARKETPLACE};
use serde_json::json;

/// One sample of the text format: `name{label="value",...} value`.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the Prometheus text exposition format (comments and blank lines skipped).
fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|line| parse_line(line).unwrap_or_else(|| panic!("not a sample line: {line:?}")))
        .collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let name_end = line.find(['{', ' '])?;
    let name = line[..name_end].to_owned();
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(after) = rest.strip_prefix('{') {
        let mut chars = after.char_indices();
        let mut key = String::new();
        loop {
            let (i, c) = chars.next()?;
            match c {
                '}' => {
                    rest = &after[i + 1..];
                    break;
                }
                ',' | ' ' => {}
                '=' => {
                    if chars.next()?.1 != '"' {
                        return None;
                    }
                    let mut value = String::new();
                    loop {
                        match chars.next()?.1 {
                            '"' => break,
                            '\\' => match chars.next()?.1 {
                                'n' => value.push('\n'),
                                other => value.push(other),
                            },
                            other => value.push(other),
                        }
                    }
                    labels.insert(std::mem::take(&mut key), value);
                }
                other => key.push(other),
            }
        }
    }
    // A timestamp may follow the value; only the value is wanted.
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample { name, labels, value })
}

/// Sum of the samples named `name` whose labels include every pair in `want`.
fn sum(samples: &[Sample], name: &str, want: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name && want.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v)))
        .map(|s| s.value)
        .sum()
}

async fn scrape(port: u16) -> Vec<Sample> {
    let res = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .expect("metrics answer");
    assert_eq!(res.status(), 200);
    parse(&res.text().await.expect("metrics body"))
}

#[test]
fn the_parser_reads_labels_escapes_and_special_values() {
    let s = parse("# TYPE x counter\nx_total{a=\"1\",b=\"q\\\"uote\"} 3\ny 4.5\nz_bucket{le=\"+Inf\"} +Inf\n");
    assert_eq!(s.len(), 3);
    assert_eq!(s[0].name, "x_total");
    assert_eq!(s[0].labels["b"], "q\"uote");
    assert_eq!(sum(&s, "x_total", &[("a", "1")]), 3.0);
    assert_eq!(sum(&s, "y", &[]), 4.5);
    assert!(s[2].value.is_infinite());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cleanup_shows_up_in_the_workers_metrics_with_its_calls_and_limiter_waits() {
    let mut stack = Stack::start_empty().await;
    let acct = stack
        .account(AccountSpec {
            skus: Some(50),
            ..AccountSpec::new("seller-metrics")
        })
        .await;
    let skus = stack.sim.admin().skus(acct.as_str()).await.unwrap();
    assert_eq!(skus.len(), 50);
    stack
        .faults(
            &acct,
            FaultSpec {
                burst_5xx: Some(Burst5xx { count: 3, status: None }),
                ..FaultSpec::default()
            },
        )
        .await;
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    stack.spawn_worker("worker-1", &[("DROVER_WORKER__METRICS_LISTEN", listen.as_str())]);
    assert!(stack.workers[0].log().contains("metrics listening"), "{}", stack.logs());

    let id = stack
        .submit(
            JobKind::Cleanup,
            json!({"account_id": acct.as_str(), "marketplace_id": MARKETPLACE, "skus": skus}),
        )
        .await;
    let job = stack.finish(&id, Duration::from_secs(60)).await;
    assert_eq!(job.state, JobState::Succeeded, "{job:#?}\n{}", stack.logs());

    // The counter is bumped just after the outcome is stored: allow it a moment.
    let until = Instant::now() + Duration::from_secs(10);
    let samples = loop {
        let samples = scrape(port).await;
        let finished = sum(
            &samples,
            "drover_jobs_finished_total",
            &[("kind", "cleanup"), ("outcome", "succeeded")],
        );
        if finished >= 1.0 || Instant::now() > until {
            break samples;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let op = ("op", "deleteListingsItem");
    assert_eq!(
        sum(
            &samples,
            "drover_jobs_finished_total",
            &[("kind", "cleanup"), ("outcome", "succeeded")]
        ),
        1.0
    );
    let ok = sum(&samples, "drover_upstream_requests_total", &[op, ("status", "200")]);
    assert!(ok >= 50.0, "200s: {ok}");
    let server_errors: f64 = samples
        .iter()
        .filter(|s| {
            s.name == "drover_upstream_requests_total"
                && s.labels.get("op").map(String::as_str) == Some("deleteListingsItem")
                && s.labels.get("status").is_some_and(|st| st.starts_with('5'))
        })
        .map(|s| s.value)
        .sum();
    assert!(server_errors >= 1.0, "5xx: {server_errors}");
    let waits = sum(&samples, "drover_limiter_wait_seconds_count", &[op]);
    assert!(waits >= 50.0, "limiter waits: {waits}");
    assert!(
        sum(&samples, "drover_job_run_duration_seconds_count", &[("kind", "cleanup")]) >= 1.0,
        "run duration not recorded"
    );
    assert_eq!(sum(&samples, "drover_jobs_running", &[("kind", "cleanup")]), 0.0);
    assert!(
        samples
            .iter()
            .any(|s| s.name == "drover_trim_backlog_jobs" && s.labels.get("kind").map(String::as_str) == Some("cleanup")),
        "the trim backlog is exported per kind"
    );
    assert_eq!(sum(&samples, "drover_trim_backlog_jobs", &[("kind", "cleanup")]), 0.0);
}

/// Found by an audit of what the API shows (2026-12-06): a record the worker cannot
/// decode goes to the dead letter straight from the fetch, past where runs are counted,
/// so `drover_jobs_finished_total{outcome="dead"}` — what the dead-letter alert reads —
/// never counted it (a rolling deploy meeting records of a newer release is when it
/// matters).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_record_is_counted_dead() {
    let mut stack = Stack::start_empty().await;
    let id = stack
        .submit(
            JobKind::Cleanup,
            json!({"account_id": "seller-unreadable", "marketplace_id": MARKETPLACE, "skus": ["SKU-1"]}),
        )
        .await;
    let key = stack.store.job_keys(&id).job(&id);
    let _: () = redis::cmd("HSET")
        .arg(&key)
        .arg("p")
        .arg("{\"from_the_future\": true}")
        .query(&mut stack.redis.conn())
        .unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    stack.spawn_worker("worker-1", &[("DROVER_WORKER__METRICS_LISTEN", listen.as_str())]);
    let job = stack.finish(&id, Duration::from_secs(30)).await;
    assert_eq!(job.state, JobState::Dead, "{job:#?}\n{}", stack.logs());
    let until = Instant::now() + Duration::from_secs(10);
    let dead = loop {
        let dead = sum(
            &scrape(port).await,
            "drover_jobs_finished_total",
            &[("kind", "cleanup"), ("outcome", "dead")],
        );
        if dead >= 1.0 || Instant::now() > until {
            break dead;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(dead, 1.0, "{}", stack.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metrics_port_in_use_is_logged_and_the_worker_runs_anyway() {
    let mut stack = Stack::start_empty().await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port to occupy");
    let listen = taken.local_addr().unwrap().to_string();
    // spawn_worker itself asserts the worker started.
    stack.spawn_worker("worker-1", &[("DROVER_WORKER__METRICS_LISTEN", listen.as_str())]);
    let log = stack.workers[0].log();
    assert!(log.contains("metrics listener could not bind") && log.contains(&listen), "{log}");
    assert!(!log.contains("metrics listening"), "{log}");
}

/// Found by an audit of waits: the metrics listener served hyper without a timer, so a
/// client that opened a connection and sent nothing held it (a task and a file
/// descriptor) forever, with no cap on how many. A silent connection is now closed
/// after 10 s, and scrapes are still served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_metrics_listener_closes_connections_that_send_nothing() {
    use tokio::io::AsyncReadExt;

    let mut stack = Stack::start_empty().await;
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    stack.spawn_worker("worker-1", &[("DROVER_WORKER__METRICS_LISTEN", listen.as_str())]);
    let mut silent = Vec::new();
    for _ in 0..40 {
        silent.push(
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .expect("the listener accepts"),
        );
    }
    let opened = Instant::now();
    for conn in &mut silent {
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_secs(30), conn.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("a silent connection still open {:?} on", opened.elapsed()));
        assert!(matches!(read, Ok(0) | Err(_)), "the server closes it: {read:?}");
    }
    // And it serves scrapes after (`scrape` checks the 200).
    scrape(port).await;
}

/// Found by the observability audit of 2026-12-07 (second): the metrics listener stopped
/// at SIGTERM while the worker's runs drained, so nothing counted during the drain was
/// ever scraped (a run's end, its calls) and a scrape then met a closed port. The
/// listener now serves until the worker has stopped its runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_metrics_are_served_while_a_stopping_worker_drains_its_runs() {
    use nix::sys::signal::Signal;
    let mut stack = Stack::start_empty().await;
    let acct = stack
        .account(AccountSpec {
            skus: Some(1),
            ..AccountSpec::new("seller-draining")
        })
        .await;
    stack
        .faults(
            &acct,
            FaultSpec {
                latency_ms: 4_000,
                ops: Some(vec![drover_tests::sim::Operation::DeleteListingsItem]),
                ..FaultSpec::default()
            },
        )
        .await;
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let w = stack.spawn_worker("worker-1", &[("DROVER_WORKER__METRICS_LISTEN", listen.as_str())]);
    stack
        .submit(
            JobKind::Cleanup,
            json!({"account_id": acct.as_str(), "marketplace_id": MARKETPLACE, "skus": ["SKU-00001"]}),
        )
        .await;
    let until = Instant::now() + Duration::from_secs(30);
    let deletes_sent = || async {
        let stats = stack.sim.admin().stats().await.expect("simulator stats");
        stats.op(acct.as_str(), drover_tests::sim::Operation::DeleteListingsItem).calls
    };
    while deletes_sent().await == 0 {
        assert!(Instant::now() < until, "the delete was never sent\n{}", stack.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stack.workers[w].signal(Signal::SIGTERM);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        stack.workers[w].wait_exit(Duration::from_millis(30)),
        None,
        "the worker is still draining its sent delete"
    );
    let during = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    let during = match during {
        Ok(res) => res,
        Err(e) => panic!("no scrape while the worker drains: {e}\n{}", stack.logs()),
    };
    assert_eq!(during.status(), 200);
    let samples = parse(&during.text().await.unwrap());
    assert_eq!(
        sum(&samples, "drover_jobs_running", &[("kind", "cleanup")]),
        1.0,
        "the draining run is counted"
    );
    assert!(
        stack.workers[w].wait_exit(Duration::from_secs(30)).is_some(),
        "the worker stops\n{}",
        stack.logs()
    );
    assert!(
        reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await.is_err(),
        "the listener closes with the worker"
    );
}

/// Found by the second round of audits of 2026-12-07: a counter the alerts read appeared
/// only when first counted, at 1, and `increase()` has no earlier sample to count from,
/// so a new worker pod's first dead job (or first open breaker, cooldown or misfired
/// tick) was lost to the alerts that read it. A new worker serves them at 0 from its start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_worker_serves_the_counters_the_alerts_read_at_zero() {
    let mut stack = Stack::start_empty().await;
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    stack.spawn_worker("worker-1", &[("DROVER_WORKER__METRICS_LISTEN", listen.as_str())]);
    let samples = scrape(port).await;
    let series = |name: &str, want: &[(&str, &str)]| -> Vec<f64> {
        samples
            .iter()
            .filter(|s| s.name == name && want.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v)))
            .map(|s| s.value)
            .collect()
    };
    for kind in ["sync", "backfill", "cleanup"] {
        for outcome in [
            "succeeded",
            "partial",
            "retried",
            "dead",
            "snoozed",
            "cancelled",
            "released",
            "lost",
        ] {
            let want = [("kind", kind), ("outcome", outcome)];
            assert_eq!(series("drover_jobs_finished_total", &want), vec![0.0], "{kind} {outcome}");
        }
    }
    for op in drover::resilience::Operation::ALL {
        assert_eq!(
            series("drover_breaker_open_total", &[("op", op.name())]),
            vec![0.0],
            "{}",
            op.name()
        );
    }
    assert_eq!(series("drover_cooldowns_entered_total", &[]), vec![0.0]);
    assert_eq!(series("drover_schedule_misfires_total", &[]), vec![0.0]);
}
