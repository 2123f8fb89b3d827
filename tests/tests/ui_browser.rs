//! The operator console (docs/console.md) in a real browser: this test seeds an app (the
//! API on port 0, a private redis-server and Postgres database, accounts `acme` and
//! `globex` registered against the simulator, dead jobs in three error groups, two
//! schedules, a `test_worker` process) and runs `tests/ui/console_test.py`, which drives
//! the system Chromium through Playwright against it. Needs `bash tests/ui/setup.sh` once
//! (Chromium and the venv); without them the test fails saying so.
use crate::api_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use api_support::*;
use drover::job::{ErrorClass, JobId};
use drover_tests::harness::Durability;
use drover_tests::sim::{self, SimConfig};
use serde_json::{json, Value};

const VENV_PYTHON: &str = "/var/cache/drover/ui-venv/bin/python";
const CHROMIUM: &str = "/usr/bin/chromium";
/// The whole browser run; the script's own waits are at most 30 s each.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(300);
/// How long the worker's runs take: long enough for the browser to see a canary running.
const RUN_MS: u32 = 1500;
const SCREENSHOTS: [&str; 10] = [
    "overview.png",
    "jobs.png",
    "job.png",
    "dead-letter.png",
    "confirm.png",
    "queues.png",
    "accounts.png",
    "schedules.png",
    "audit.png",
    "login.png",
];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace").to_owned()
}

/// Fails (never skips) when the browser or the venv is missing.
fn assert_browser_installed() {
    for (path, what) in [(CHROMIUM, "Chromium"), (VENV_PYTHON, "the Playwright venv")] {
        assert!(
            Path::new(path).exists(),
            "{what} ({path}) is missing: run `bash tests/ui/setup.sh` (as root) first"
        );
    }
}

async fn until_ready(app: &TestApp) {
    for _ in 0..200 {
        if app.client.get(app.url("/readyz")).send().await.unwrap().status() == 200 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the app did not become ready (migrations)");
}

/// Registers `id` as the simulator's demo account `seller` (the credentials are checked
/// with its LWA endpoint); the id of the first sync it queued.
async fn register(app: &TestApp, id: &str, seller: &str) -> String {
    let body = json!({
        "id": id,
        "seller_id": seller,
        "marketplace_ids": [MARKETPLACE],
        "client_id": "amzn1.application-oa2-client.sim",
        "client_secret": "sim-client-secret",
        "refresh_token": SimConfig::refresh_token_for(seller),
    });
    let res = app.post(ADMIN, "/v1/accounts").json(&body).send().await.unwrap();
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    let v: Value = res.json().await.unwrap();
    v["first_sync_job"]["id"].as_str().expect("a first sync was queued").to_owned()
}

/// A cleanup job of `account` killed with this error; its id.
async fn dead(app: &TestApp, account: &str, class: ErrorClass, message: &str) -> JobId {
    let id = app.submit_ok(&cleanup_body(account)).await;
    app.kill_job_with(&id, class, message).await;
    id
}

/// Dies on a missing listing: the same group whatever the SKU.
fn sku_not_found(n: u32) -> String {
    format!("deleteListingsItem SKU-{n:05} on marketplace ATVPDKIKX0DER: 404 \"listing {n}77 not found\"")
}

async fn wait_succeeded(app: &TestApp, ids: &[JobId]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    for id in ids {
        loop {
            let (_, job) = app.job(ADMIN, id.as_str()).await;
            if job["state"] == "succeeded" {
                break;
            }
            assert!(Instant::now() < deadline, "{id} did not succeed: {job}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The seeded groups, found by what their jobs died of: (missing SKU, timeout, denied).
async fn seeded_groups(app: &TestApp) -> Vec<(String, u64)> {
    let v: Value = app.get_json(ADMIN, "/v1/dead-letter/groups").await;
    let groups = v["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 3, "{v}");
    let find = |needle: &str| {
        let g = groups
            .iter()
            .find(|g| g["message"].as_str().unwrap().contains(needle))
            .unwrap_or_else(|| panic!("no group for {needle:?}: {v}"));
        (g["id"].as_str().unwrap().to_owned(), g["count"].as_u64().unwrap())
    };
    vec![find("deleteListingsItem"), find("timed out"), find("revoked")]
}

/// Runs the browser script with `env`, killing it after [`SCRIPT_TIMEOUT`]; (exit code,
/// stdout, stderr). Polled, not waited on: the API it talks to runs on this runtime.
async fn run_script(env: &[(&str, String)]) -> (Option<i32>, String, String) {
    let out = tempfile::NamedTempFile::new().unwrap();
    let err = tempfile::NamedTempFile::new().unwrap();
    let mut cmd = Command::new(VENV_PYTHON);
    cmd.arg(repo_root().join("tests/ui/console_test.py"))
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .stdout(out.reopen().unwrap())
        .stderr(err.reopen().unwrap())
        .env("PYTHONUNBUFFERED", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("the venv's python runs");
    let deadline = Instant::now() + SCRIPT_TIMEOUT;
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if Instant::now() > deadline {
            // Its own process only (by PID); Chromium, its child, ends when its pipe closes.
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let read = |f: &tempfile::NamedTempFile| std::fs::read_to_string(f.path()).unwrap_or_default();
    (code, read(&out), read(&err))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_and_acts_as_the_api_does_for_admin_read_and_scoped_keys_in_a_browser() {
    assert_browser_installed();
    let sim = sim::spawn(SimConfig::fast()).await.expect("the simulator starts");
    let token_url = format!("{}/auth/o2/token", sim.base_url());
    let app = spawn_app_with(Durability::None, move |c| {
        c.marketplace_token_url = token_url;
        // Samples every second, so the overview's chart has points within the run.
        c.ui.sample_secs = 1;
    })
    .await;
    until_ready(&app).await;

    let acme_sync = register(&app, "acme", "acct-1").await;
    register(&app, "globex", "acct-2").await;
    app.schedule_ok("acme-nightly", "acme").await;
    app.schedule_ok("globex-nightly", "globex").await;

    // Dead before any worker runs: six differing only by SKU (both accounts), two timeouts
    // of acme, two refusals of globex.
    for n in 0..6 {
        let account = if n < 4 { "acme" } else { "globex" };
        dead(&app, account, ErrorClass::Permanent, &sku_not_found(100 + n)).await;
    }
    let acme_dead = dead(&app, "acme", ErrorClass::Transient, "timed out after 30 s").await;
    dead(&app, "acme", ErrorClass::Transient, "timed out after 30 s").await;
    for _ in 0..2 {
        let message = "deleteListingsItem: 403 the seller revoked the app's authorisation";
        dead(&app, "globex", ErrorClass::Permanent, message).await;
    }
    let groups = seeded_groups(&app).await;
    assert_eq!(groups.iter().map(|g| g.1).collect::<Vec<_>>(), [6, 2, 2], "{groups:?}");

    let mut done = Vec::new();
    for account in ["acme", "globex", "acme", "globex", "acme", "globex"] {
        done.push(app.submit_ok(&cleanup_body(account)).await);
    }
    // A worker for the cleanups (the first syncs stay queued): each run of an acme or
    // globex job sleeps RUN_MS and succeeds.
    let _worker = app.cleanup_worker(&[("DROVER_TEST_BEHAVIOUR", format!("sleep.{RUN_MS}"))]);
    wait_succeeded(&app, &done).await;

    let screenshots = repo_root().join("target/ui-screenshots");
    std::fs::create_dir_all(&screenshots).unwrap();
    // This run's pictures only (the script adds `failed-<check>-<n>.png` when a check fails).
    for entry in std::fs::read_dir(&screenshots).unwrap().flatten() {
        if entry.path().extension().is_some_and(|e| e == "png") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    let env = [
        ("DROVER_UI_BASE_URL", app.url("")),
        ("DROVER_UI_ADMIN_KEY", ADMIN.to_owned()),
        ("DROVER_UI_READ_KEY", READER.to_owned()),
        ("DROVER_UI_SCOPED_KEY", ACME.to_owned()),
        ("DROVER_UI_ACCOUNT", "acme".to_owned()),
        ("DROVER_UI_OTHER_ACCOUNT", "globex".to_owned()),
        (
            "DROVER_UI_GROUPS",
            groups.iter().map(|(id, n)| format!("{id}={n}")).collect::<Vec<_>>().join(","),
        ),
        ("DROVER_UI_CANARY_GROUP", groups[0].0.clone()),
        ("DROVER_UI_HELD_GROUP", groups[1].0.clone()),
        ("DROVER_UI_QUEUED_JOB", acme_sync),
        ("DROVER_UI_DEAD_JOB", acme_dead.to_string()),
        ("DROVER_UI_OTHER_JOB", done[1].to_string()),
        ("DROVER_UI_SCHEDULE", "acme-nightly".to_owned()),
        ("DROVER_UI_OTHER_SCHEDULE", "globex-nightly".to_owned()),
        ("DROVER_UI_SCREENSHOTS", screenshots.display().to_string()),
        ("DROVER_UI_CHROMIUM", CHROMIUM.to_owned()),
    ];
    let started = Instant::now();
    let (code, stdout, stderr) = run_script(&env).await;
    assert_eq!(
        code,
        Some(0),
        "tests/ui/console_test.py failed (None: killed after {SCRIPT_TIMEOUT:?}) after {:?}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        started.elapsed()
    );
    println!("{stdout}");
    for name in SCREENSHOTS {
        assert!(screenshots.join(name).exists(), "no screenshot {name} in {}", screenshots.display());
    }
}
