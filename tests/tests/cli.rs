//! The real binaries as a shell would run them: the `drover` client against a live API on
//! port 0 with a private Redis (and a `test_worker` where a job must end), its output and
//! its exit codes; `--help`, `--version` and `config check` of the servers.
//! Needs `cargo build --workspace --bins` first.
use crate::api_support;

use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use api_support::*;
use drover::job::ErrorClass;
use drover_tests::harness::cargo_bin;
use serde_json::Value;

/// What a run printed and how it ended.
#[derive(Debug)]
struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Ran {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }
}

/// Run a binary of the workspace with `env` (and none of the caller's Drover settings),
/// off the runtime's thread: the API under test runs on it.
async fn run(bin: &str, args: &[&str], env: &[(&str, &str)]) -> Ran {
    let mut cmd = Command::new(cargo_bin(bin));
    cmd.args(args);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("DROVER_")) {
        cmd.env_remove(k);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("the binary runs"))
        .await
        .unwrap();
    Ran {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `drover <args>` against the app with `key` in `DROVER_API_KEY`.
async fn drover(app: &TestApp, key: &str, args: &[&str]) -> Ran {
    let api = format!("http://{}", app.addr);
    run("drover", args, &[("DROVER_API", api.as_str()), ("DROVER_API_KEY", key)]).await
}

fn ok(r: &Ran) {
    assert_eq!(r.code, 0, "{r:?}");
}

const MISSING_JOB: &str = "cleanup_01J9Z3K4M5N6P7Q8R9S0T1V2W3";

#[tokio::test]
async fn jobs_ls_and_show_print_tables_or_the_apis_json() {
    let app = spawn_app().await;
    let a = app.submit_ok(&cleanup_body("acme")).await.to_string();
    let b = app.submit_ok(&cleanup_body("globex")).await.to_string();

    let ls = drover(&app, ADMIN, &["jobs", "ls"]).await;
    ok(&ls);
    assert!(ls.stdout.starts_with("ID"), "{ls:?}");
    for id in [&a, &b] {
        let line = ls.stdout.lines().find(|l| l.starts_with(id.as_str())).expect("a row per job");
        assert!(line.contains("cleanup") && line.contains("queued"), "{line}");
    }
    let json = drover(&app, ADMIN, &["jobs", "ls", "--json", "--account", "acme"]).await;
    ok(&json);
    let jobs = json.json()["jobs"].as_array().unwrap().clone();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0]["id"], a.as_str());

    let show = drover(&app, ADMIN, &["jobs", "show", &a]).await;
    ok(&show);
    assert!(
        show.stdout.lines().any(|l| l.starts_with("state") && l.ends_with("queued")),
        "{show:?}"
    );
    assert!(show.stdout.contains("payload.account_id"), "{show:?}");
    let show = drover(&app, ADMIN, &["--json", "jobs", "show", &a]).await;
    ok(&show);
    assert_eq!(show.json()["payload"]["account_id"], "acme");
}

#[tokio::test]
async fn exit_codes_say_not_found_auth_conflict_and_usage() {
    let app = spawn_app().await;
    let id = app.submit_ok(&cleanup_body("acme")).await.to_string();

    let missing = drover(&app, ADMIN, &["jobs", "show", MISSING_JOB]).await;
    assert_eq!(missing.code, 3, "{missing:?}");
    assert!(
        missing.stderr.contains("404 Not found") && missing.stderr.contains("request id"),
        "{missing:?}"
    );
    assert!(!missing.stderr.contains("Api {"), "no debug dump: {missing:?}");

    let bad_key = drover(&app, "not-a-key", &["jobs", "ls"]).await;
    assert_eq!(bad_key.code, 4, "{bad_key:?}");
    assert!(bad_key.stderr.contains("401"), "{bad_key:?}");
    let reader_cancels = drover(&app, READER, &["jobs", "cancel", &id]).await;
    assert_eq!(reader_cancels.code, 4, "{reader_cancels:?}");
    let no_key = run("drover", &["jobs", "ls"], &[("DROVER_API", &format!("http://{}", app.addr))]).await;
    assert_eq!(no_key.code, 4, "{no_key:?}");
    assert!(no_key.stderr.contains("DROVER_API_KEY"), "{no_key:?}");

    let cancel = drover(&app, ADMIN, &["jobs", "cancel", &id]).await;
    ok(&cancel);
    assert!(cancel.stdout.contains("cancelled"), "{cancel:?}");
    let again = drover(&app, ADMIN, &["jobs", "cancel", &id]).await;
    assert_eq!(again.code, 5, "{again:?}");
    assert!(again.stderr.contains("409 Conflict"), "{again:?}");

    let usage = drover(&app, ADMIN, &["jobs", "ls", "--state", "sleeping"]).await;
    assert_eq!(usage.code, 2, "{usage:?}");
    let down = run(
        "drover",
        &["queues", "ls"],
        &[("DROVER_API", "http://127.0.0.1:9"), ("DROVER_API_KEY", ADMIN)],
    )
    .await;
    assert_eq!(down.code, 1, "{down:?}");
    assert!(down.stderr.contains("cannot talk to the API"), "{down:?}");
}

#[tokio::test]
async fn the_key_may_come_from_a_file_and_never_from_a_flag() {
    let app = spawn_app().await;
    let mut file = tempfile::NamedTempFile::new().unwrap();
    writeln!(file, "{ADMIN}").unwrap();
    let api = format!("http://{}", app.addr);
    let path = file.path().to_str().unwrap();
    let from_file = run("drover", &["--api", &api, "--key-file", path, "queues", "ls"], &[]).await;
    ok(&from_file);
    assert!(from_file.stdout.contains("cleanup"), "{from_file:?}");
    let flag = run("drover", &["--api", &api, "--key", ADMIN, "queues", "ls"], &[]).await;
    assert_eq!(flag.code, 2, "{flag:?}");
}

#[tokio::test]
async fn queues_pause_and_resume_round_trip() {
    let app = spawn_app().await;
    ok(&drover(&app, ADMIN, &["queues", "pause", "cleanup"]).await);
    let paused = |r: &Ran| {
        r.json()["queues"]
            .as_array()
            .unwrap()
            .iter()
            .find(|q| q["kind"] == "cleanup")
            .unwrap()["paused"]
            .clone()
    };
    let ls = drover(&app, ADMIN, &["--json", "queues", "ls"]).await;
    assert_eq!(paused(&ls), true);
    let table = drover(&app, ADMIN, &["queues", "ls"]).await;
    assert!(
        table.stdout.lines().any(|l| l.starts_with("cleanup") && l.contains("true")),
        "{table:?}"
    );
    let resumed = drover(&app, ADMIN, &["queues", "resume", "cleanup"]).await;
    ok(&resumed);
    assert_eq!(resumed.stdout.trim(), "cleanup: resumed");
    assert_eq!(paused(&drover(&app, ADMIN, &["--json", "queues", "ls"]).await), false);
}

/// `drover audit` shows what the operator commands did, newest first; `--json` is the
/// API's page.
#[tokio::test]
async fn audit_lists_what_operators_did() {
    let app = spawn_app().await;
    ok(&drover(&app, ADMIN, &["queues", "pause", "cleanup"]).await);
    ok(&drover(&app, ADMIN, &["queues", "resume", "cleanup"]).await);
    let page = drover(&app, READER, &["--json", "audit", "--limit", "1"]).await;
    ok(&page);
    let v = page.json();
    let entries = v["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{v}");
    assert_eq!(
        (entries[0]["action"].as_str(), entries[0]["actor"].as_str()),
        (Some("queue.resume"), Some("admin"))
    );
    assert!(page.stderr.contains("more: --before "), "{page:?}");
    let table = drover(&app, READER, &["audit"]).await;
    ok(&table);
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert!(lines[0].starts_with("ID") && lines[0].contains("OUTCOME"), "{table:?}");
    assert!(lines[1].contains("queue.resume") && lines[2].contains("queue.pause"), "{table:?}");
    let scoped = drover(&app, MULTI, &["audit"]).await;
    assert_ne!(scoped.code, 0, "a key for some accounts does not read the log: {scoped:?}");
}

/// Found by the hostile-tenant audit of 2026-12-07 (fourth): a tenant's key could name a
/// schedule with terminal escape sequences (`DELETE /v1/schedules/%1B…`); the refused
/// action is audited with the name as its target, and `drover audit` wrote it to the
/// operator's terminal raw (an OSC 52 clipboard write, a line erased). Control
/// characters are shown escaped.
#[tokio::test]
async fn the_audit_table_shows_a_tenants_control_characters_escaped() {
    let app = spawn_app().await;
    let res = app
        .client
        .delete(app.url("/v1/schedules/%1B%5D52%3Bc%3BcHduZWQ%3D%07%1B%5B2K"))
        .bearer_auth(ACME_SUB)
        .send()
        .await
        .unwrap();
    assert!(res.status().is_client_error(), "{}", res.status());
    let page = drover(&app, READER, &["--json", "audit"]).await;
    ok(&page);
    assert!(
        page.stdout.contains("\\u001b]52"),
        "the refused action is audited with its target: {page:?}"
    );
    let table = drover(&app, READER, &["audit"]).await;
    ok(&table);
    assert!(!table.stdout.contains(['\u{1b}', '\u{7}']), "{table:?}");
    assert!(table.stdout.contains("\\u{1b}]52;c;"), "the target is shown, escaped: {table:?}");
}

#[tokio::test]
async fn a_dlq_dry_run_counts_what_the_api_lists_and_replays_nothing() {
    let app = spawn_app().await;
    for account in ["acme", "acme", "acme", "globex"] {
        let id = app.submit_ok(&cleanup_body(account)).await;
        app.kill_job(&id).await;
    }
    let listed: Value = app
        .get(ADMIN, "/v1/dead-letter?account_id=acme")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let api_count = listed["jobs"].as_array().unwrap().len();
    assert_eq!(api_count, 3);

    let dry = drover(&app, ADMIN, &["dlq", "replay", "--account", "acme", "--dry-run"]).await;
    ok(&dry);
    assert_eq!(dry.stdout.trim(), format!("would replay {api_count} dead jobs"));
    let dry = drover(&app, ADMIN, &["--json", "dlq", "replay", "--error-class", "permanent", "--dry-run"]).await;
    assert_eq!(dry.json()["would_replay"], 4);
    let none = drover(&app, ADMIN, &["--json", "dlq", "replay", "--error-class", "timeout", "--dry-run"]).await;
    assert_eq!(none.json()["would_replay"], 0);

    let ls = drover(&app, ADMIN, &["--json", "dlq", "ls"]).await;
    assert_eq!(ls.json()["jobs"].as_array().unwrap().len(), 4, "the dry run replayed nothing");
}

/// `dlq discard` counts first, deletes only with `--yes`, and deletes what it counted.
#[tokio::test]
async fn a_dlq_discard_needs_yes_and_deletes_what_the_filter_matches() {
    let app = spawn_app().await;
    for account in ["acme", "acme", "globex"] {
        let id = app.submit_ok(&cleanup_body(account)).await;
        app.kill_job(&id).await;
    }
    let dry = drover(&app, ADMIN, &["--json", "dlq", "discard", "--account", "acme", "--dry-run"]).await;
    ok(&dry);
    assert_eq!(dry.json()["would_discard"], 2);
    let refused = drover(&app, ADMIN, &["dlq", "discard", "--account", "acme"]).await;
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(refused.stderr.contains("deletes 2 dead jobs for good: add --yes"), "{refused:?}");
    let done = drover(&app, ADMIN, &["dlq", "discard", "--account", "acme", "--yes"]).await;
    ok(&done);
    assert_eq!(done.stdout.trim(), "discarded 2 dead jobs");
    let ls = drover(&app, ADMIN, &["--json", "dlq", "ls"]).await.json();
    let left: Vec<&str> = ls["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["account_id"].as_str().unwrap())
        .collect();
    assert_eq!(left, ["globex"]);
}

/// `--filter key=value,…` is the filter flags in one argument; a key given twice, or unknown, is a usage error.
#[tokio::test]
async fn dlq_filter_spreads_into_the_filter_flags() {
    let app = spawn_app().await;
    for (account, class) in [
        ("acme", ErrorClass::Permanent),
        ("acme", ErrorClass::Timeout),
        ("globex", ErrorClass::Permanent),
    ] {
        let id = app.submit_ok(&cleanup_body(account)).await;
        app.kill_job_with(&id, class, "no").await;
    }
    let dry = drover(
        &app,
        ADMIN,
        &[
            "--json",
            "dlq",
            "replay",
            "--filter",
            "account=acme,error_class=permanent",
            "--dry-run",
        ],
    )
    .await;
    ok(&dry);
    assert_eq!(dry.json()["would_replay"], 1, "{dry:?}");
    let ls = drover(
        &app,
        READER,
        &["--json", "dlq", "ls", "--filter", "kind=cleanup, error_class=permanent"],
    )
    .await;
    ok(&ls);
    assert_eq!(ls.json()["jobs"].as_array().unwrap().len(), 2);
    for bad in ["account=acme --account acme", "colour=red", "error_class=sad", "kind"] {
        let mut args = vec!["dlq", "ls", "--filter"];
        let mut parts = bad.split(' ');
        args.push(parts.next().unwrap());
        args.extend(parts);
        let r = drover(&app, READER, &args).await;
        assert_eq!(r.code, 2, "{bad}: {r:?}");
        assert!(r.stderr.contains("--filter"), "{bad}: {r:?}");
    }
}

/// `dlq groups` shows the groups; `--group` chooses one group's jobs for ls, replay, discard.
#[tokio::test]
async fn dlq_groups_lists_error_signatures_and_group_chooses_one_groups_jobs() {
    let app = spawn_app().await;
    for n in 0..3 {
        let id = app.submit_ok(&cleanup_body("acme")).await;
        app.kill_job_with(&id, ErrorClass::Permanent, &format!("SKU-{n:05} rejected")).await;
    }
    let other = app.submit_ok(&cleanup_body("acme")).await;
    app.kill_job_with(&other, ErrorClass::Transient, "socket closed").await;

    let table = drover(&app, READER, &["dlq", "groups"]).await;
    ok(&table);
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert!(lines[0].starts_with("GROUP") && lines[0].ends_with("MESSAGE"), "{table:?}");
    let cells = |line: &str| line.split_whitespace().take(3).map(str::to_owned).collect::<Vec<_>>();
    assert_eq!(cells(lines[1])[1..], ["3", "permanent"], "{table:?}");
    assert!(lines[1].ends_with("SKU-# rejected"), "{table:?}");
    assert_eq!(cells(lines[2])[1..], ["1", "transient"], "{table:?}");
    assert!(lines[2].ends_with("socket closed"), "{table:?}");
    let groups = drover(&app, READER, &["--json", "dlq", "groups", "--kind", "cleanup"]).await.json();
    let group = groups["groups"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(cells(lines[1])[0], group, "{table:?}");

    let listed = drover(&app, READER, &["--json", "dlq", "ls", "--group", &group]).await.json();
    assert_eq!(listed["jobs"].as_array().unwrap().len(), 3, "{listed}");
    let dry = drover(&app, ADMIN, &["--json", "dlq", "replay", "--group", &group, "--dry-run"]).await;
    ok(&dry);
    assert_eq!(dry.json()["would_replay"], 3);
    let done = drover(&app, ADMIN, &["dlq", "discard", "--group", &group, "--yes"]).await;
    ok(&done);
    assert_eq!(done.stdout.trim(), "discarded 3 dead jobs");
    let left = drover(&app, READER, &["--json", "dlq", "groups"]).await.json();
    assert_eq!(left["groups"].as_array().unwrap().len(), 1, "{left}");
    assert_eq!(left["groups"][0]["class"], "transient");
    let bad = drover(&app, READER, &["dlq", "ls", "--group", "nonsense"]).await;
    assert_ne!(bad.code, 0, "{bad:?}");
    assert!(bad.stderr.contains("not a dead-letter group id"), "{bad:?}");
}

async fn dead_jobs(app: &TestApp, account: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..n {
        let id = app.submit_ok(&cleanup_body(account)).await;
        app.kill_job(&id).await;
        ids.push(id.to_string());
    }
    ids
}

async fn wait_state(app: &TestApp, id: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, job) = app.job(ADMIN, id).await;
        if job["state"] == want {
            return;
        }
        assert!(Instant::now() < deadline, "{id} is {} not {want}", job["state"]);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The canary goes first and is waited for; a failing canary stops the rest.
#[tokio::test]
async fn a_replay_with_a_canary_waits_for_it_and_stops_when_it_fails() {
    let app = spawn_app().await;
    // Killed before any worker runs, so they are dead whatever their behaviour.
    let good = dead_jobs(&app, "t.ok", 4).await;
    let bad = dead_jobs(&app, "t.permanent", 3).await;
    let _worker = app.cleanup_worker(&[]);

    let failed = drover(&app, ADMIN, &["dlq", "replay", "--account", "t.permanent", "--canary", "1"]).await;
    assert_eq!(failed.code, 6, "{failed:?}");
    assert!(
        failed.stderr.contains("canaries did not succeed") && failed.stderr.contains("the other 2 jobs were not replayed"),
        "{failed:?}"
    );
    assert!(failed.stdout.contains("replayed 1 dead jobs"), "{failed:?}");
    let dead: Value = app
        .get(ADMIN, "/v1/dead-letter?account_id=t.permanent")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let dead: Vec<&str> = dead["jobs"].as_array().unwrap().iter().map(|j| j["id"].as_str().unwrap()).collect();
    for id in &bad {
        assert!(
            dead.contains(&id.as_str()),
            "the canary died again and the rest were not touched: {dead:?}"
        );
    }

    let started = Instant::now();
    let replayed = drover(
        &app,
        ADMIN,
        &["--json", "dlq", "replay", "--account", "t.ok", "--canary", "1", "--rate", "2"],
    )
    .await;
    ok(&replayed);
    let v = replayed.json();
    assert_eq!(v["replayed"].as_array().unwrap().len(), 4, "{v}");
    // Three after the canary at 2/s: batches of 2, the second half a second... a second later.
    assert!(started.elapsed() >= Duration::from_millis(900), "{:?}", started.elapsed());
    for id in &good {
        wait_state(&app, id, "succeeded").await;
    }
}

#[tokio::test]
async fn jobs_watch_follows_the_job_and_exits_by_its_outcome() {
    let app = spawn_app().await;
    let _worker = app.cleanup_worker(&[]);
    let good = app.submit_ok(&cleanup_body("t.sleep.300")).await.to_string();
    let watched = drover(&app, ADMIN, &["jobs", "watch", &good]).await;
    ok(&watched);
    assert!(watched.stdout.lines().last().unwrap_or("").contains("succeeded"), "{watched:?}");

    let bad = app.submit_ok(&cleanup_body("t.permanent")).await.to_string();
    let watched = drover(&app, ADMIN, &["--json", "jobs", "watch", &bad]).await;
    assert_eq!(watched.code, 6, "{watched:?}");
    let last: Value = serde_json::from_str(watched.stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["state"], "dead");
    assert!(watched.stderr.contains("ended dead"), "{watched:?}");

    let missing = drover(&app, ADMIN, &["jobs", "watch", MISSING_JOB]).await;
    assert_eq!(missing.code, 3, "{missing:?}");
}

/// Found by the fifth audits of 2026-12-06: `drover dlq … --dry-run ID…` counted the
/// ids as given, an id named twice twice. Each job is counted, and sent, once.
#[tokio::test]
async fn a_dry_run_of_ids_counts_each_job_once() {
    let app = spawn_app().await;
    let id = app.submit_ok(&cleanup_body("acme")).await;
    app.kill_job(&id).await;
    let dry = drover(&app, ADMIN, &["--json", "dlq", "discard", "--dry-run", id.as_str(), id.as_str()]).await;
    ok(&dry);
    assert_eq!(dry.json()["would_discard"], 1, "{dry:?}");
    let done = drover(&app, ADMIN, &["--json", "dlq", "discard", "--yes", id.as_str(), id.as_str()]).await;
    ok(&done);
    assert_eq!(done.json()["discarded"].as_array().map(Vec::len), Some(1), "{done:?}");
}

type Lines = tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>;

/// `drover jobs watch <id>` through `relay`, once it has printed the job's first state
/// (queued); its stderr is piped.
async fn watch_through(relay: &drover_tests::harness::FrozenProxy, id: &str) -> (tokio::process::Child, Lines) {
    use tokio::io::AsyncBufReadExt;
    let mut watch = tokio::process::Command::new(cargo_bin("drover"))
        .args(["jobs", "watch", id])
        .env("DROVER_API", format!("http://{}", relay.addr()))
        .env("DROVER_API_KEY", ADMIN)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("drover runs");
    let mut lines = tokio::io::BufReader::new(watch.stdout.take().expect("stdout")).lines();
    let first = tokio::time::timeout(Duration::from_secs(15), lines.next_line())
        .await
        .expect("the watch printed the job's state")
        .expect("stdout");
    assert!(first.unwrap_or_default().contains("queued"), "the first event is the job's state");
    (watch, lines)
}

/// The watch's exit and the lines it printed once it ends, within a minute (else what it
/// printed by then).
async fn watch_to_its_end(
    watch: &mut tokio::process::Child,
    lines: &mut Lines,
) -> Result<(std::process::ExitStatus, Vec<String>), Vec<String>> {
    let mut printed = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(Some(line)) = lines.next_line().await {
            printed.push(line);
        }
        watch.wait().await.expect("the watch ends")
    })
    .await;
    match ended {
        Ok(status) => Ok((status, printed)),
        Err(_) => Err(printed),
    }
}

/// Found by the fifth audits of 2026-12-06: `drover jobs watch` ended with exit 1 when
/// the API could not be reached while it reconnected (a rolling restart, a proxy
/// between replicas), though the job went on. It tries again until the API answers (for
/// a minute at most) and then follows the job to its end. Here the relay closes the
/// stream and refuses the API for three seconds, and the job then dies.
#[tokio::test]
async fn jobs_watch_rides_out_an_api_it_cannot_reach_while_it_reconnects() {
    let app = spawn_app().await;
    let id = app.submit_ok(&cleanup_body("acme")).await;
    let relay = drover_tests::harness::FrozenProxy::start(app.addr).await;
    let (mut watch, mut lines) = watch_through(&relay, id.as_str()).await;
    // Nothing listens where the relay now points: each new connection is dropped, and
    // the open ones (the stream, and the pool's) are closed.
    let nowhere = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    relay.retarget(nowhere);
    relay.cut_open_connections();
    tokio::time::sleep(Duration::from_secs(3)).await;
    relay.retarget(app.addr);
    app.kill_job(&id).await;
    let (status, printed) = watch_to_its_end(&mut watch, &mut lines)
        .await
        .unwrap_or_else(|printed| panic!("the watch did not end: {printed:?}"));
    let mut stderr = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut watch.stderr.take().unwrap(), &mut stderr)
        .await
        .unwrap();
    assert_eq!(status.code(), Some(6), "the job ended dead: {printed:?} {stderr}");
    assert!(printed.last().is_some_and(|l| l.contains("dead")), "{printed:?} {stderr}");
}

/// Found by an audit of waits: `drover jobs watch` read its event stream with no bound,
/// so a connection gone half-open (a NAT or load balancer dropping its state) left it
/// waiting forever, though the API sends a keep-alive every 15 s. A stream silent for
/// 40 s is now taken for dead and opened again. Here the watch goes through a relay whose
/// open connections freeze; the job then ends, and the watch hears of it on a new one.
#[tokio::test]
async fn jobs_watch_opens_a_stream_that_went_silent_again() {
    let app = spawn_app().await;
    let id = app.submit_ok(&cleanup_body("t.sleep.100")).await.to_string();
    let relay = drover_tests::harness::FrozenProxy::start(app.addr).await;
    let (mut watch, mut lines) = watch_through(&relay, &id).await;
    relay.freeze_open_connections();
    let _worker = app.cleanup_worker(&[]);
    wait_state(&app, &id, "succeeded").await;
    let frozen_at = Instant::now();
    let (status, printed) = watch_to_its_end(&mut watch, &mut lines).await.unwrap_or_else(|printed| {
        panic!(
            "the watch still waits {:?} after its stream went silent: {printed:?}",
            frozen_at.elapsed()
        )
    });
    assert!(status.success(), "{status:?}: {printed:?}");
    assert!(printed.last().is_some_and(|l| l.contains("succeeded")), "{printed:?}");
}

/// Found by an audit of waits: the CLI's client had a connect timeout only, so a request
/// sent without a total timeout (`schedules rm`) waited forever on an API that accepted
/// the connection and never answered. Every read now ends after 40 s.
#[tokio::test]
async fn a_request_to_an_api_that_never_answers_gives_up() {
    let app = spawn_app().await;
    let relay = drover_tests::harness::FrozenProxy::start(app.addr).await;
    relay.freeze_all_connections();
    let started = Instant::now();
    let rm = tokio::process::Command::new(cargo_bin("drover"))
        .args(["schedules", "rm", "nightly"])
        .env("DROVER_API", format!("http://{}", relay.addr()))
        .env("DROVER_API_KEY", ADMIN)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), rm)
        .await
        .unwrap_or_else(|_| panic!("drover still waits after {:?}", started.elapsed()))
        .expect("drover runs");
    assert!(!out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("timed out") || stderr.contains("timeout"), "{stderr}");
}

/// Found by an audit of error texts: `--help` showed `DROVER_API`'s value, credentials
/// and all (a base URL behind a proxy with basic auth).
#[tokio::test]
async fn help_never_shows_the_api_url_from_the_environment() {
    let help = run("drover", &["--help"], &[("DROVER_API", "https://ops:hunter2@drover.internal")]).await;
    ok(&help);
    assert!(help.stdout.contains("DROVER_API"), "the variable is named: {help:?}");
    assert!(!help.stdout.contains("hunter2"), "{help:?}");
}

/// Found by the CLI audit of 2026-12-06: `--rate 1e-20` or a `--canary-timeout` past what
/// a clock can add panicked (exit 101, no summary) after the canaries had been replayed,
/// and `--canary 1500` replayed nothing after a 422. Each is a usage error before
/// anything is sent.
#[tokio::test]
async fn replay_flags_out_of_range_are_usage_errors_before_anything_is_sent() {
    let unused = [("DROVER_API", "http://127.0.0.1:9"), ("DROVER_API_KEY", "k")];
    for flags in [
        &["--rate", "1e-20"][..],
        &["--rate", "1e300"],
        &["--canary-timeout", "18446744073709551615"],
        &["--canary", "1500"],
    ] {
        let mut args = vec!["dlq", "replay", "--account", "acme", "--dry-run"];
        args.extend_from_slice(flags);
        let r = run("drover", &args, &unused).await;
        assert_eq!(r.code, 2, "{flags:?}: {r:?}");
        assert!(r.stderr.contains(flags[0]), "the flag is named: {r:?}");
    }
}

#[tokio::test]
async fn every_binary_answers_help_and_version() {
    for bin in ["drover", "drover-api", "drover-worker"] {
        let v = run(bin, &["--version"], &[]).await;
        ok(&v);
        assert_eq!(v.stdout.trim(), format!("{bin} {}", env!("CARGO_PKG_VERSION")));
        let h = run(bin, &["--help"], &[]).await;
        ok(&h);
        assert!(h.stdout.contains("Usage:"), "{h:?}");
    }
    let h = run("drover", &["--help"], &[]).await.stdout;
    for needle in [
        "jobs",
        "dlq",
        "queues",
        "accounts",
        "schedules",
        "completions",
        "Exit codes",
        "DROVER_API_KEY",
    ] {
        assert!(h.contains(needle), "{needle} missing from\n{h}");
    }
    let h = run("drover-api", &["--help"], &[]).await.stdout;
    for needle in [
        "hash-key",
        "healthcheck",
        "config",
        "api.request_timeout_ms",
        "DROVER_API__REQUEST_TIMEOUT_MS",
        "10000",
    ] {
        assert!(h.contains(needle), "{needle} missing from\n{h}");
    }
    let h = run("drover-worker", &["--help"], &[]).await.stdout;
    for needle in ["healthcheck", "config", "worker.lease_ms", "DROVER_WORKER__LEASE_MS", "1800"] {
        assert!(h.contains(needle), "{needle} missing from\n{h}");
    }
    let bash = run("drover", &["completions", "bash"], &[]).await;
    ok(&bash);
    assert!(bash.stdout.contains("_drover()"), "{bash:?}");
}

#[tokio::test]
async fn the_old_subcommands_still_work() {
    let hashed = run("drover-api", &["hash-key", "password"], &[]).await;
    ok(&hashed);
    assert_eq!(
        hashed.stdout.trim(),
        "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8"
    );
    let unhealthy = run("drover-api", &["healthcheck", "127.0.0.1:9"], &[]).await;
    assert_eq!(unhealthy.code, 1, "{unhealthy:?}");
    let unhealthy = run("drover-worker", &["healthcheck", "127.0.0.1:9"], &[]).await;
    assert_eq!(unhealthy.code, 1, "{unhealthy:?}");
}

#[tokio::test]
async fn config_check_prints_the_configuration_without_secrets_and_fails_listing_every_problem() {
    let hash = drover_api::hash_key(&"ops-key".into());
    let api_env = [
        ("DROVER_API__REDIS_URL", "redis://:hunter2@127.0.0.1:6390/0"),
        ("DROVER_API__KEYS", &*format!("ops:admin:{hash}")),
        ("DROVER_API__ENCRYPTION_KEY", TEST_ENCRYPTION_KEY),
        ("DROVER_API__MARKETPLACE_TOKEN_URL", "https://api.amazon.com/auth/o2/token"),
        ("DATABASE_URL", "postgres://app:pgsecret@db/drover"),
    ];
    let good = run("drover-api", &["config", "check"], &api_env).await;
    ok(&good);
    assert!(
        good.stdout.contains("api.redis_url = redis://:<secret>@127.0.0.1:6390/0"),
        "{good:?}"
    );
    assert!(
        good.stdout.contains("api.database.url = postgres://app:<secret>@db/drover"),
        "{good:?}"
    );
    assert!(good.stdout.contains("api.encryption_key = <secret>"), "{good:?}");
    for secret in ["hunter2", "pgsecret", hash.as_str(), TEST_ENCRYPTION_KEY] {
        assert!(
            !good.stdout.contains(secret) && !good.stderr.contains(secret),
            "{secret} shown: {good:?}"
        );
    }
    let mut bad_env = api_env.to_vec();
    bad_env.extend([("DROVER_API__LISTEN", "nowhere"), ("DROVER_API__REQUEST_TIMEOUT_MS", "5")]);
    let bad = run("drover-api", &["config", "check"], &bad_env).await;
    assert_eq!(bad.code, 1, "{bad:?}");
    assert!(
        bad.stderr.contains("api.listen") && bad.stderr.contains("api.request_timeout_ms = 5"),
        "{bad:?}"
    );
    assert!(!bad.stderr.contains("hunter2") && !bad.stdout.contains("hunter2"), "{bad:?}");
    assert_eq!(
        bad.stderr.matches("api.request_timeout_ms = 5").count(),
        1,
        "each problem once: {bad:?}"
    );
    assert!(!bad.stderr.contains("backtrace"), "a message, not a backtrace: {bad:?}");
    let unreadable = run("drover-api", &["config", "check"], &[("DROVER_API__REQUEST_TIMEOUT_MS", "soon")]).await;
    assert_eq!(unreadable.code, 1, "{unreadable:?}");

    let worker_env = [
        ("DROVER_WORKER__REDIS_URL", "redis://:hunter2@127.0.0.1:6390/0"),
        ("DROVER_WORKER__ENCRYPTION_KEY", TEST_ENCRYPTION_KEY),
        ("DROVER_WORKER__MARKETPLACE__INSECURE_HTTP", "true"),
    ];
    let good = run("drover-worker", &["config", "check"], &worker_env).await;
    ok(&good);
    assert!(
        good.stdout.contains("worker.redis_url = redis://:<secret>@127.0.0.1:6390/0"),
        "{good:?}"
    );
    assert!(good.stdout.contains("worker.encryption_key = <secret>"), "{good:?}");
    assert!(
        !good.stdout.contains("hunter2") && !good.stdout.contains(TEST_ENCRYPTION_KEY),
        "{good:?}"
    );
    let mut bad_env = worker_env.to_vec();
    bad_env.extend([("DROVER_WORKER__HEARTBEAT_MS", "1"), ("DROVER_WORKER__ENCRYPTION_KEY", "short")]);
    let bad = run("drover-worker", &["config", "check"], &bad_env).await;
    assert_eq!(bad.code, 1, "{bad:?}");
    assert!(
        bad.stderr.contains("worker.heartbeat_ms = 1") && bad.stderr.contains("worker.encryption_key"),
        "{bad:?}"
    );
}

#[tokio::test]
async fn schedules_put_ls_rm_round_trip_and_accounts_answer_not_found() {
    let app = spawn_app().await;
    let mut payload = tempfile::NamedTempFile::new().unwrap();
    write!(
        payload,
        r#"{{"account_id": "acme", "marketplace_id": "{MARKETPLACE}", "skus": ["SKU-1"]}}"#
    )
    .unwrap();
    let from_file = format!("@{}", payload.path().display());
    let put = drover(
        &app,
        ADMIN,
        &[
            "schedules",
            "put",
            "nightly",
            "--cron",
            "30 2 * * *",
            "--kind",
            "cleanup",
            "--payload",
            &from_file,
        ],
    )
    .await;
    ok(&put);
    assert!(put.stdout.starts_with("nightly: next run "), "{put:?}");
    let ls = drover(&app, ADMIN, &["schedules", "ls"]).await;
    ok(&ls);
    let row = ls
        .stdout
        .lines()
        .find(|l| l.starts_with("nightly"))
        .expect("the schedule is listed");
    assert!(row.contains("acme") && row.contains("30 2 * * *") && row.contains("true"), "{row}");

    let invalid = drover(
        &app,
        ADMIN,
        &[
            "schedules",
            "put",
            "bad",
            "--cron",
            "every night",
            "--kind",
            "cleanup",
            "--payload",
            &from_file,
        ],
    )
    .await;
    assert_eq!(invalid.code, 2, "{invalid:?}");
    assert!(invalid.stderr.contains("422") && invalid.stderr.contains("cron"), "{invalid:?}");
    let not_json = drover(
        &app,
        ADMIN,
        &[
            "schedules",
            "put",
            "bad",
            "--cron",
            "0 * * * *",
            "--kind",
            "cleanup",
            "--payload",
            "{",
        ],
    )
    .await;
    assert_eq!(not_json.code, 2, "{not_json:?}");

    ok(&drover(&app, ADMIN, &["schedules", "rm", "nightly"]).await);
    let ls = drover(&app, ADMIN, &["--json", "schedules", "ls"]).await;
    assert_eq!(ls.json()["schedules"], serde_json::json!([]));
    let again = drover(&app, ADMIN, &["schedules", "rm", "nightly"]).await;
    assert_eq!(again.code, 3, "{again:?}");

    // Accounts live in Postgres: wait for the migrations, then register one.
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.client.get(app.url("/readyz")).send().await.unwrap().status() != 200 {
        assert!(Instant::now() < deadline, "the app did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let created = app
        .post(ADMIN, "/v1/accounts")
        .json(&serde_json::json!({
            "id": "acme", "seller_id": "acme-seller", "marketplace_ids": [MARKETPLACE],
            "client_id": "cid", "client_secret": "topsecret-client", "refresh_token": "topsecret-refresh",
            "skip_validation": true, "first_sync": false,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201, "{}", created.text().await.unwrap());
    let ls = drover(&app, READER, &["accounts", "ls"]).await;
    ok(&ls);
    let row = ls.stdout.lines().find(|l| l.starts_with("acme")).expect("the account is listed");
    assert!(
        row.contains("acme-seller") && row.contains(MARKETPLACE) && row.contains("true"),
        "{row}"
    );
    let shown = drover(&app, ADMIN, &["accounts", "show", "acme"]).await;
    ok(&shown);
    assert!(
        shown
            .stdout
            .lines()
            .any(|l| l.starts_with("seller_id") && l.ends_with("acme-seller")),
        "{shown:?}"
    );
    assert!(!shown.stdout.contains("topsecret"), "{shown:?}");
    let limits = drover(&app, ADMIN, &["--json", "accounts", "limits", "acme"]).await;
    ok(&limits);
    assert!(limits.json()["operations"]["getOrders"].is_object(), "{limits:?}");

    let counts = drover(&app, READER, &["accounts", "counts", "acme"]).await;
    ok(&counts);
    let header = counts.stdout.lines().next().unwrap_or_default();
    assert!(
        header.starts_with("KIND") && header.contains("SUCCEEDED") && header.contains("DEAD"),
        "{counts:?}"
    );
    assert_eq!(
        counts
            .stdout
            .lines()
            .filter(|l| l.starts_with("cleanup") || l.starts_with("sync"))
            .count(),
        2,
        "{counts:?}"
    );
    let counts = drover(&app, READER, &["--json", "accounts", "counts", "acme"]).await;
    ok(&counts);
    assert_eq!(counts.json()["account_id"], "acme", "{counts:?}");

    let account = drover(&app, ADMIN, &["accounts", "show", "nobody"]).await;
    assert_eq!(account.code, 3, "{account:?}");
    let counts = drover(&app, ADMIN, &["accounts", "counts", "nobody"]).await;
    assert_eq!(counts.code, 3, "{counts:?}");
    let limits = drover(&app, ADMIN, &["accounts", "limits", "nobody"]).await;
    assert_eq!(limits.code, 3, "{limits:?}");
}

/// Found by this stop's newcomer audit: `drover jobs ls` (and `dlq ls`) printed an error
/// the worker wrote ("transient: …", its class first) as "transient: transient: …".
#[tokio::test]
async fn a_last_error_is_printed_with_its_class_once() {
    let app = spawn_app().await;
    let id = app.submit_ok(&cleanup_body("acme")).await;
    app.kill_job_with(&id, ErrorClass::Transient, "transient: socket closed").await;
    for args in [&["jobs", "ls"][..], &["dlq", "ls"][..]] {
        let ls = drover(&app, ADMIN, args).await;
        ok(&ls);
        let line = ls.stdout.lines().find(|l| l.starts_with(id.as_str())).expect("a row for the job");
        assert!(line.contains("transient: socket closed"), "{args:?}: {line}");
        assert!(!line.contains("transient: transient:"), "{args:?}: {line}");
    }
}

/// Found by this stop's newcomer audit: `drover queues ls` left out the partial and
/// cancelled counts that `GET /v1/queues` gives.
#[tokio::test]
async fn queues_ls_shows_every_count_the_api_gives() {
    let app = spawn_app().await;
    let id = app.submit_ok(&cleanup_body("acme")).await;
    ok(&drover(&app, ADMIN, &["jobs", "cancel", id.as_str()]).await);
    let table = drover(&app, ADMIN, &["queues", "ls"]).await;
    ok(&table);
    let mut lines = table.stdout.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    let row: Vec<&str> = lines.find(|l| l.starts_with("cleanup")).unwrap().split_whitespace().collect();
    let column = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .unwrap_or_else(|| panic!("no {name} in {header:?}"))
    };
    assert_eq!(row[column("CANCELLED")], "1", "{table:?}");
    assert_eq!(row[column("PARTIAL")], "0", "{table:?}");
}

/// Found by this stop's newcomer audit: `drover jobs watch <id> | head -1` panicked
/// ("failed printing to stdout: Broken pipe") once the reader had gone, with a backtrace
/// and an exit code outside the documented ones. It ends quietly, as other Unix tools do.
#[tokio::test]
async fn a_reader_that_stops_reading_ends_the_cli_quietly() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let app = spawn_app().await;
    let id = app.submit_ok(&cleanup_body("acme")).await;
    let mut cmd = Command::new(cargo_bin("drover"));
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("DROVER_")) {
        cmd.env_remove(k);
    }
    cmd.args(["jobs", "watch", id.as_str()])
        .env("DROVER_API", format!("http://{}", app.addr))
        .env("DROVER_API_KEY", ADMIN)
        .env("RUST_BACKTRACE", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut first = String::new();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let read = tokio::task::spawn_blocking(move || {
        stdout.read_line(&mut first).unwrap();
        first // the pipe's reading end closes here
    });
    let first = read.await.unwrap();
    assert!(first.contains("queued"), "{first}");
    // The next event (its cancel) is written to a pipe nobody reads.
    ok(&drover(&app, ADMIN, &["jobs", "cancel", id.as_str()]).await);
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Found by the audit of 2026-12-06 (schedules, config, CLI): `drover dlq replay` stopped
/// with Ctrl-C printed nothing of the batches it had sent, so an operator could not tell
/// what had been replayed. It now prints its summary so far (here as JSON) and exits 130;
/// what it says was replayed is exactly what left the dead letter.
#[tokio::test]
async fn a_dlq_replay_stopped_with_ctrl_c_prints_what_it_replayed() {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;

    let app = spawn_app().await;
    let mut dead = Vec::new();
    for _ in 0..8 {
        let id = app.submit_ok(&cleanup_body("t.ok")).await;
        app.kill_job(&id).await;
        dead.push(id.to_string());
    }
    let mut cmd = tokio::process::Command::new(cargo_bin("drover"));
    cmd.args(["--json", "dlq", "replay", "--account", "t.ok", "--rate", "1"])
        .env("DROVER_API", format!("http://{}", app.addr))
        .env("DROVER_API_KEY", ADMIN)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn().expect("drover runs");
    // one job a second: a few batches in, the rest still to come
    tokio::time::sleep(Duration::from_millis(2500)).await;
    kill(Pid::from_raw(child.id().unwrap() as i32), Signal::SIGINT).unwrap();
    let out = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .expect("the replay ends at Ctrl-C")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stdout}\n{stderr}");
    assert!(stderr.contains("Ctrl-C"), "{stderr}");
    let printed: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("a summary ({e}): {stdout:?}"));
    let replayed: Vec<&str> = printed["replayed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!((2..8).contains(&replayed.len()), "some batches, not all: {printed}");
    let still: Value = app.get_json(ADMIN, "/v1/dead-letter?account_id=t.ok").await;
    let still: Vec<&str> = still["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    for id in &dead {
        assert_eq!(
            replayed.contains(&id.as_str()),
            !still.contains(&id.as_str()),
            "{id}: printed as replayed exactly when it left the dead letter"
        );
    }
}

/// Found by the CLI audit of 2026-12-07: `--canary N` looked at each canary's job every
/// 0.5 s, each look a read of the key's budget, and the first 429 of its own making ended
/// the wait with exit 1 after the canaries had gone. It paces its looks and asks again
/// after a refusal, until `--canary-timeout`.
#[tokio::test]
async fn a_canary_wait_stays_within_the_keys_read_budget() {
    use drover_api::config::RateLimitConfig;
    let app = spawn_app_with(drover_tests::harness::Durability::None, |c| {
        c.read_rate_limit = RateLimitConfig {
            per_minute: 600,
            burst: 10,
        }
    })
    .await;
    dead_jobs(&app, "acme", 20).await;
    // No worker: the canaries never end.
    let ran = drover(
        &app,
        ADMIN,
        &["dlq", "replay", "--account", "acme", "--canary", "20", "--canary-timeout", "4"],
    )
    .await;
    assert_eq!(ran.code, 6, "{ran:?}");
    assert!(ran.stderr.contains("not ended after 4s"), "{ran:?}");
}

/// Found by the fifth audits of 2026-12-06: the CLI's commands of several requests
/// stopped at the first 429 without reading `Retry-After`, so a discard of a few batches
/// by a key with a small write budget ended with exit 1 part-way. A refused request is
/// sent again once the API's `Retry-After` has passed, and the discard ends its work.
#[tokio::test]
async fn a_discard_of_several_batches_waits_out_the_keys_write_budget() {
    use drover_api::config::RateLimitConfig;
    let app = spawn_app_with(drover_tests::harness::Durability::None, |c| {
        c.rate_limit = RateLimitConfig { per_minute: 20, burst: 1 }
    })
    .await;
    app.dead_in_bulk(&[("acme", 2_500)]).await;
    let ran = drover(&app, ADMIN, &["--json", "dlq", "discard", "--account", "acme", "--yes"]).await;
    ok(&ran);
    assert_eq!(ran.json()["discarded"].as_array().map(Vec::len), Some(2_500), "{}", ran.stderr);
    assert!(ran.stderr.contains("429"), "it said it waited for the budget: {}", ran.stderr);
    let left: Value = app.get_json(ADMIN, "/v1/dead-letter?account_id=acme").await;
    assert_eq!(left["jobs"].as_array().map(Vec::len), Some(0), "{left}");
}

/// Found by the CLI audit of 2026-12-07 (second): the canary wait checked its deadline
/// only between rounds, and each look of a frozen API waited the client's 40 s read
/// timeout, so `--canary-timeout 5` waited minutes; and then the canaries it never heard
/// of were reported failed (exit 6), not the API unreachable (exit 1).
#[tokio::test]
async fn a_canary_wait_on_an_api_that_stops_answering_ends_at_its_timeout_with_exit_1() {
    use tokio::io::AsyncBufReadExt;
    let app = spawn_app().await;
    dead_jobs(&app, "acme", 6).await;
    let relay = drover_tests::harness::FrozenProxy::start(app.addr).await;
    let mut child = tokio::process::Command::new(cargo_bin("drover"))
        .args(["dlq", "replay", "--account", "acme", "--canary", "5", "--canary-timeout", "5"])
        .env("DROVER_API", format!("http://{}", relay.addr()))
        .env("DROVER_API_KEY", ADMIN)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("drover runs");
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut said = Vec::new();
    let started = loop {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("the canaries are replayed")
            .unwrap()
            .unwrap_or_else(|| panic!("drover ended first: {said:?}"));
        said.push(line.clone());
        if line.contains("replayed 5 canaries") {
            relay.freeze_all_connections();
            break Instant::now();
        }
    };
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .unwrap_or_else(|_| panic!("still waiting {:?} after a 5 s canary timeout", started.elapsed()))
        .unwrap();
    while let Ok(Some(line)) = lines.next_line().await {
        said.push(line);
    }
    assert!(started.elapsed() < Duration::from_secs(15), "{:?}: {said:?}", started.elapsed());
    assert_eq!(status.code(), Some(1), "the API could not be reached: {said:?}");
    assert!(
        said.iter().any(|l| l.contains("could not learn how the canaries ended")),
        "{said:?}"
    );
}

/// Found by the same audit: a filtered `dlq replay` or `discard` takes at most 10,000
/// dead jobs at once and said nothing of the rest (exit 0, "discarded 10000"). It says
/// more match.
#[tokio::test]
async fn a_filtered_selection_past_10000_says_more_match() {
    let app = spawn_app().await;
    app.dead_in_bulk(&[("acme", 10_001)]).await;
    let ran = drover(&app, ADMIN, &["dlq", "discard", "--account", "acme", "--dry-run"]).await;
    ok(&ran);
    assert!(ran.stdout.contains("would discard 10000 dead jobs"), "{ran:?}");
    assert!(ran.stderr.contains("more dead jobs may match"), "{ran:?}");
}

/// Found by the review of 2026-12-07: the API answers a dead-letter action stopped by an
/// error part-way with what it did and `stopped`, and the CLI read only what it did: it
/// went on and exited 0 with the rest of the batch still dead, unsaid. It ends with the
/// error, after the summary of what was done.
#[tokio::test]
async fn a_replay_the_api_stopped_part_way_exits_with_its_error() {
    let app = spawn_app().await;
    let ids = dead_jobs(&app, "acme", 3).await;
    // The middle one's record is unreadable (a wrong type): the API stops there.
    let _: () = redis::cmd("SET")
        .arg(format!("drover:{{cleanup}}:job:{}", ids[1]))
        .arg("not a hash")
        .query(&mut app.redis.conn())
        .unwrap();
    let ran = drover(&app, ADMIN, &["dlq", "replay", &ids[0], &ids[1], &ids[2]]).await;
    assert_ne!(ran.code, 0, "{ran:?}");
    assert!(ran.stdout.contains("replayed 1 dead jobs"), "{ran:?}");
    assert!(ran.stderr.contains("stopped part-way"), "{ran:?}");
    let (_, last) = app.job(ADMIN, &ids[2]).await;
    assert_eq!(last["state"], "dead", "not tried after the error");
}
