//! `deploy/run-local.sh`, the README's command that runs the whole system, against this
//! build's binaries: however its user stops it, nothing it started is left running.
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use drover_tests::harness::{cargo_bin, free_port, PgDatabase};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The processes whose parent is `pid` (from `/proc`).
fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(child) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`: the comm may hold spaces, so read after its `)`.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(pid) {
            out.push(child);
        }
    }
    out
}

/// Whether `pid` is a running process (a zombie, ended but not yet reaped, is not).
fn running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()) != Some("Z"),
        Err(_) => false,
    }
}

/// Ends what a failed test leaves running, by PID.
struct KillOnDrop(Vec<u32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for p in self.0.iter().filter(|p| running(**p)) {
            let _ = kill(Pid::from_raw(*p as i32), Signal::SIGKILL);
        }
    }
}

/// `deploy/run-local.sh` up (it printed its URLs), with what it started.
struct Demo {
    script: Child,
    said: Receiver<String>,
    started: Vec<u32>,
    _leftovers: KillOnDrop,
    _db: PgDatabase,
}

impl Demo {
    async fn start() -> Demo {
        Self::start_until("Ctrl-C stops everything").await
    }

    /// Starts the script and returns once it printed a line holding `line`.
    async fn start_until(waited_for: &str) -> Demo {
        let db = PgDatabase::create().await;
        let bin_dir = cargo_bin("drover-api").parent().expect("the binaries' folder").to_owned();
        for name in ["drover", "drover-worker", "simulator"] {
            cargo_bin(name);
        }
        let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut script = Command::new("bash")
            .arg(repo.join("deploy/run-local.sh"))
            .env("DROVER_BIN_DIR", &bin_dir)
            .env("DATABASE_URL", db.url())
            .env("SIM_PORT", free_port().to_string())
            .env("API_PORT", free_port().to_string())
            .env("API_METRICS_PORT", free_port().to_string())
            .env("WORKER_METRICS_PORTS", format!("{} {}", free_port(), free_port()))
            .env_remove("DROVER_REDIS_URL")
            // A group of its own, as a terminal's Ctrl-C reaches a foreground script.
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start deploy/run-local.sh");
        let pid = script.id();
        let stdout = script.stdout.take().expect("its stdout");
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut said = String::new();
        let began = Instant::now();
        loop {
            match rx.recv_timeout(Duration::from_secs(1)) {
                Ok(line) => {
                    said.push_str(&line);
                    said.push('\n');
                    if line.contains(waited_for) {
                        break;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    drop(KillOnDrop(children_of(pid)));
                    panic!("the script ended before it was up:\n{said}")
                }
            }
            if began.elapsed() > Duration::from_secs(120) {
                drop(KillOnDrop(children_of(pid)));
                let _ = kill(Pid::from_raw(-(pid as i32)), Signal::SIGKILL);
                panic!("not up after 120 s:\n{said}");
            }
        }
        // Redis, the simulator, the API and two workers, each in a session of its own.
        let started: Vec<u32> = children_of(pid).into_iter().filter(|p| running(*p)).collect();
        let leftovers = KillOnDrop(started.clone());
        assert!(started.len() >= 5, "it started {started:?}:\n{said}");
        Demo {
            script,
            said: rx,
            started,
            _leftovers: leftovers,
            _db: db,
        }
    }

    /// Ctrl-C, `presses` times half a second apart, as a terminal sends it; then until the
    /// script ends (60 s at most) and what it started is gone (5 s more at most). Panics
    /// naming what is left. Returns what the script said while it stopped.
    async fn ctrl_c(self, presses: usize) -> Vec<String> {
        let group = Pid::from_raw(-(self.script.id() as i32));
        self.signalled(group, Signal::SIGINT, presses).await.1
    }

    /// `signal` sent to `to` (the script's group, or the script alone) `presses` times
    /// half a second apart, then as [`Demo::ctrl_c`]; with how the script exited.
    async fn signalled(mut self, to: Pid, signal: Signal, presses: usize) -> (std::process::ExitStatus, Vec<String>) {
        for press in 0..presses {
            if press > 0 {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            kill(to, signal).expect("signal the script");
        }
        let asked = Instant::now();
        let status = loop {
            if let Some(status) = self.script.try_wait().expect("wait for the script") {
                break status;
            }
            assert!(asked.elapsed() < Duration::from_secs(60), "the script still runs 60 s after Ctrl-C");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let mut left = Vec::new();
        for _ in 0..50 {
            left = self.started.iter().copied().filter(|p| running(*p)).collect();
            if left.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let said: Vec<String> = self.said.try_iter().collect();
        assert!(
            left.is_empty(),
            "still running after the script ended ({status}): {left:?}\nit said after the stop:\n{}",
            said.join("\n")
        );
        (status, said)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stops_everything_it_started() {
    let said = Demo::start().await.ctrl_c(1).await;
    assert!(
        said.iter().any(|l| l.starts_with("logs kept in")),
        "it says where the logs are: {said:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_ctrl_c_while_it_stops_still_ends_everything_it_started() {
    let said = Demo::start().await.ctrl_c(2).await;
    assert!(said.iter().any(|l| l.starts_with("logs kept in")), "it stops to the end: {said:?}");
}

/// Found by a review of this stop's change to the stop: with the stop run without
/// errexit and no `exit` after it, a signal the script took while it set up (a TERM
/// from a process manager; a Ctrl-C alike) stopped everything and then went on with its
/// next steps against the stopped API, printing that Drover runs and ending 0. Stopped,
/// it ends there: 143 for a TERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_term_while_it_sets_up_stops_everything_and_ends_the_script_there() {
    let demo = Demo::start_until("== registering").await;
    let script = Pid::from_raw(demo.script.id() as i32);
    let (status, said) = demo.signalled(script, Signal::SIGTERM, 1).await;
    assert!(
        !said.iter().any(|l| l.contains("Drover is running")),
        "it went on after it stopped: {said:?}"
    );
    assert_eq!(status.code(), Some(143), "{said:?}");
}
