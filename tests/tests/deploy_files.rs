//! The deploy files against the real binaries: with the API, two workers and the
//! simulator running jobs, every metric the Grafana dashboard's panels, the alert rules
//! and the autoscalers name is served by the API's or a worker's `/metrics` once the
//! events behind it have happened; and the Kubernetes ConfigMaps' `drover.toml` files are
//! accepted by both binaries' configuration loaders (which reject unknown keys).
use crate::jobs_support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use drover::job::{JobKind, JobState};
use drover_tests::harness::free_port;
use drover_tests::sim::{AccountSpec, FaultSpec, QuotaWindow};
use jobs_support::{Stack, MARKETPLACE};
use serde_json::json;

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo_file(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every `drover_*` and `http_*` word in a deploy file: the metric names its PromQL uses.
/// Drover's metrics all carry one of these prefixes, and no label or function does.
fn referenced_metrics(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| w.starts_with("drover_") || w.starts_with("http_"))
        .map(str::to_owned)
        .collect()
}

/// The series names in a Prometheus text exposition.
fn exposed_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

async fn get_text(url: &str) -> String {
    let res = reqwest::get(url).await.unwrap_or_else(|e| panic!("{url}: {e}"));
    assert_eq!(res.status(), 200, "{url}");
    res.text().await.expect("metrics body")
}

/// The series names served by all of `urls` together.
async fn scrape_all(urls: &[String]) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for url in urls {
        names.extend(exposed_names(&get_text(url).await));
    }
    names
}

/// Scrape `urls` until `done` holds for the names they expose together, or fail after
/// `timeout`.
async fn scrape_until(urls: &[String], timeout: Duration, what: &str, done: impl Fn(&BTreeSet<String>) -> bool, logs: impl Fn() -> String) {
    let until = Instant::now() + timeout;
    loop {
        let names = scrape_all(urls).await;
        if done(&names) {
            return;
        }
        assert!(Instant::now() < until, "{what} never showed in {urls:?}: {names:?}\n{}", logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The value of the first series named `name` whose labels include every one of `labels`.
fn value_of(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with('{'))
        .find(|l| labels.iter().all(|want| l.contains(want)))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Each panel of a Grafana dashboard: its title and the PromQL of its targets.
fn dashboard_panels(json: &str) -> Vec<(String, Vec<String>)> {
    let d: serde_json::Value = serde_json::from_str(json).expect("dashboard JSON");
    let mut out = Vec::new();
    let mut stack: Vec<&serde_json::Value> = d["panels"].as_array().expect("panels").iter().collect();
    while let Some(p) = stack.pop() {
        if let Some(inner) = p["panels"].as_array() {
            stack.extend(inner);
        }
        let exprs: Vec<String> = p["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["expr"].as_str().map(str::to_owned))
            .collect();
        if !exprs.is_empty() {
            out.push((p["title"].as_str().unwrap_or("?").to_owned(), exprs));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_metric_the_dashboard_alerts_and_autoscalers_name_is_served_by_the_api_or_one_of_two_workers() {
    let files = [
        "deploy/grafana/dashboards/drover.json",
        "deploy/prometheus/alerts.yml",
        "deploy/k8s/base/worker-scaledobject.yaml",
        "deploy/k8s/components/worker-hpa/worker-hpa.yaml",
    ];
    let mut wanted = BTreeSet::new();
    for f in files {
        let names = referenced_metrics(&read(f));
        assert!(!names.is_empty(), "{f} names no Drover metric");
        wanted.extend(names);
    }

    let mut stack = Stack::start_empty().await;
    let api = stack.start_api().await;
    let mut worker_metrics = Vec::new();
    for name in ["worker-1", "worker-2"] {
        let listen = format!("127.0.0.1:{}", free_port());
        stack.spawn_worker(name, &[("DROVER_WORKER__METRICS_LISTEN", listen.as_str())]);
        worker_metrics.push(format!("http://{listen}/metrics"));
    }

    // A cleanup into a 5xx storm: calls, limiter waits, then an open breaker refusing calls.
    let storm = stack
        .account(AccountSpec {
            skus: Some(200),
            ..AccountSpec::new("seller-dash-storm")
        })
        .await;
    let skus = stack.sim.admin().skus(storm.as_str()).await.unwrap();
    stack
        .faults(
            &storm,
            FaultSpec {
                error_rate_5xx: 1.0,
                ..FaultSpec::default()
            },
        )
        .await;
    let cleanup = stack
        .submit(
            JobKind::Cleanup,
            json!({"account_id": storm.as_str(), "marketplace_id": MARKETPLACE, "skus": skus}),
        )
        .await;
    scrape_until(
        &worker_metrics,
        Duration::from_secs(60),
        "a breaker refusal",
        |n| n.contains("drover_breaker_open_total"),
        || stack.logs(),
    )
    .await;
    stack.sim.admin().clear_faults(storm.as_str()).await.unwrap();

    // Backfills into a report-quota window: 429s and a cooldown. A report call is refused
    // by the cooldown only when it comes while one is in force, so keep submitting
    // backfills (each makes a report call as soon as a worker takes it) until one is.
    // The window outlasts the escalating cooldowns (2 s, 4 s, 8 s in FAST_WORKER).
    let quota = stack
        .account(AccountSpec {
            orders: Some(200),
            ..AccountSpec::new("seller-dash-quota")
        })
        .await;
    stack
        .faults(
            &quota,
            FaultSpec {
                quota_window: Some(QuotaWindow { seconds: 20.0 }),
                ..FaultSpec::default()
            },
        )
        .await;
    let end = chrono::Utc::now();
    let until = Instant::now() + Duration::from_secs(60);
    for day in 1.. {
        stack
            .submit(
                JobKind::Backfill,
                json!({"account_id": quota.as_str(), "marketplace_id": MARKETPLACE,
                       "report_type": "GET_FLAT_FILE_ALL_ORDERS_DATA_BY_ORDER_DATE_GENERAL",
                       "start": end - chrono::Duration::days(day), "end": end - chrono::Duration::days(day - 1)}),
            )
            .await;
        let names = scrape_all(&worker_metrics).await;
        if names.contains("drover_cooldowns_entered_total") && names.contains("drover_cooldown_refusals_total") {
            break;
        }
        assert!(
            Instant::now() < until,
            "no cooldown refusal after {day} backfills: {names:?}\n{}",
            stack.logs()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let job = stack.finish(&cleanup, Duration::from_secs(90)).await;
    assert!(matches!(job.state, JobState::Succeeded | JobState::Partial), "{job:#?}");
    scrape_until(
        &worker_metrics,
        Duration::from_secs(10),
        "the finished runs",
        |n| n.contains("drover_jobs_finished_total"),
        || stack.logs(),
    )
    .await;

    // One API request before the API's scrape, so its request series exist.
    let res = reqwest::Client::new()
        .get(format!("{api}/v1/queues"))
        .bearer_auth(drover_api::DEV_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    let api_metrics = stack.api_metrics.clone().expect("the API serves metrics");
    // The backfills the cooldown stopped parked themselves, and the API counts the parks.
    let api_text = get_text(&api_metrics).await;
    let parks = value_of(
        &api_text,
        "drover_queue_parked_runs_total",
        &["kind=\"backfill\"", "reason=\"quota_cooldown\""],
    );
    assert!(
        parks.is_some_and(|n| n >= 1.0),
        "no quota_cooldown park counted: {parks:?}\n{api_text}"
    );
    let mut every = vec![api_metrics];
    every.extend(worker_metrics.iter().cloned());
    let served = scrape_all(&every).await;
    // Panel by panel, so a failure names the panel whose query would show nothing.
    let panels = dashboard_panels(&read(files[0]));
    assert!(panels.len() >= 20, "only {} panels with queries", panels.len());
    for (title, exprs) in &panels {
        for expr in exprs {
            let missing: Vec<String> = referenced_metrics(expr).difference(&served).cloned().collect();
            assert!(
                missing.is_empty(),
                "panel {title:?} queries {missing:?}, served by none of {every:?}: {expr}"
            );
        }
    }
    let missing: Vec<&String> = wanted.difference(&served).collect();
    assert!(
        missing.is_empty(),
        "named in {files:?} but served by neither the API nor a worker: {missing:?}\nserved: {served:?}"
    );
    println!(
        "{} dashboard panels and {} metric names in the deploy files, all served",
        panels.len(),
        wanted.len()
    );
}

/// `drover.toml` with the settings the Secret supplies as environment in the cluster.
fn with_secrets(path: &str) -> tempfile::NamedTempFile {
    const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    let hash = "0".repeat(64);
    let text = read(path)
        .replacen(
            "[api]\n",
            &format!("[api]\nencryption_key = \"{KEY}\"\nkeys = [{{ name = \"ops\", key_sha256 = \"{hash}\", role = \"admin\" }}]\n"),
            1,
        )
        .replacen("[worker]\n", &format!("[worker]\nencryption_key = \"{KEY}\"\n"), 1);
    let mut file = tempfile::Builder::new().suffix(".toml").tempfile().expect("temp config");
    std::io::Write::write_all(&mut file, text.as_bytes()).expect("write config");
    file
}

#[test]
fn the_kubernetes_config_files_are_accepted_by_the_api_and_the_worker() {
    for path in ["deploy/k8s/base/drover.toml", "deploy/k8s/overlays/dev/drover.toml"] {
        let file = with_secrets(path);
        let file = file.path().to_str().expect("utf-8 path");
        let api = drover_api::ApiConfig::load(Some(file)).unwrap_or_else(|e| panic!("{path}: {e}"));
        api.validate().unwrap_or_else(|e| panic!("{path}: {e}"));
        let worker = drover_worker::WorkerConfig::load(Some(file)).unwrap_or_else(|e| panic!("{path}: {e}"));
        worker.validate_jobs().unwrap_or_else(|e| panic!("{path}: {e}"));
        // The grace periods in the manifests are computed from these.
        assert_eq!(worker.grace_ms, 30_000, "{path}: terminationGracePeriodSeconds assumes 30 s");
        assert_eq!(worker.metrics_listen, "0.0.0.0:9464", "{path}: the probes and scrape use 9464");
    }
}

/// Runs `bin healthcheck <address>` and says whether it passed.
fn healthcheck(bin: &str, address: &str) -> bool {
    let out = std::process::Command::new(drover_tests::harness::cargo_bin(bin))
        .args(["healthcheck", address])
        .output()
        .expect("the binary runs");
    out.status.success()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_images_health_check_passes_for_a_running_api_and_worker_and_fails_without_them() {
    let dockerfile = read("deploy/Dockerfile");
    assert!(dockerfile.contains("drover-api healthcheck") && dockerfile.contains("drover-worker healthcheck"));
    let mut stack = Stack::start_empty().await;
    let api = stack.start_api().await;
    let listen = format!("127.0.0.1:{}", free_port());
    stack.spawn_worker("worker-1", &[("DROVER_WORKER__METRICS_LISTEN", listen.as_str())]);
    let api_addr = api.trim_start_matches("http://");
    assert!(healthcheck("drover-api", api_addr), "the API's /healthz answers 200");
    assert!(healthcheck("drover-worker", &listen), "the worker's /metrics answers 200");
    let closed = format!("127.0.0.1:{}", free_port());
    assert!(!healthcheck("drover-api", &closed));
    assert!(!healthcheck("drover-worker", &closed));
}
