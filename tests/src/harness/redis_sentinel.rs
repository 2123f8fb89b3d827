//! A private Sentinel set-up per test: a primary, `replicas` replicas and three
//! sentinels watching them as service `drover`, all on free ports and stopped by PID.
//! Killing the primary (SIGKILL) makes the sentinels promote a replica.
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::redis_server::{Durability, RedisServer};

/// The service name the sentinels watch.
pub const SERVICE: &str = "drover";

pub struct RedisSentinels {
    servers: Vec<RedisServer>,
    sentinels: Vec<(u16, Child, tempfile::TempDir)>,
}

impl RedisSentinels {
    pub fn start(replicas: usize) -> Self {
        // No diskless-sync delay: replicas hold the data at once, not 5 s after start.
        let primary = RedisServer::start_picking(
            &mut super::free_port,
            Durability::None,
            vec!["--repl-diskless-sync-delay".to_owned(), "0".to_owned()],
        );
        let primary_port = primary.port();
        let mut servers = vec![primary];
        for _ in 0..replicas {
            // A replica promoted later serves its own replicas at once too.
            let extra = vec![
                "--replicaof".to_owned(),
                "127.0.0.1".to_owned(),
                primary_port.to_string(),
                "--repl-diskless-sync-delay".to_owned(),
                "0".to_owned(),
            ];
            servers.push(RedisServer::start_picking(&mut super::free_port, Durability::None, extra));
        }
        let sentinels = (0..3).map(|_| start_sentinel(primary_port)).collect();
        let s = Self { servers, sentinels };
        s.wait_for_replicas(replicas, Duration::from_secs(20));
        s
    }

    /// `redis+sentinel://` naming every sentinel and the service.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self.sentinels.iter().map(|(p, _, _)| format!("127.0.0.1:{p}")).collect();
        format!("redis+sentinel://{}/{SERVICE}", hosts.join(","))
    }

    pub fn servers(&mut self) -> &mut [RedisServer] {
        &mut self.servers
    }

    /// The port the sentinels name as primary now (the first sentinel that answers).
    pub fn primary_port(&self) -> Option<u16> {
        self.sentinels.iter().find_map(|(p, _, _)| {
            let mut c = redis::Client::open(format!("redis://127.0.0.1:{p}"))
                .ok()?
                .get_connection_with_timeout(Duration::from_millis(300))
                .ok()?;
            let addr: Vec<String> = redis::cmd("SENTINEL")
                .arg("get-master-addr-by-name")
                .arg(SERVICE)
                .query(&mut c)
                .ok()?;
            addr.get(1)?.parse().ok()
        })
    }

    /// Waits until the sentinels know the primary and every replica's link to it is up
    /// (its initial sync done: it holds what the primary held).
    fn wait_for_replicas(&self, replicas: usize, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let linked = self.servers[1..]
                .iter()
                .filter(|r| {
                    let info: Result<String, _> = redis::Client::open(r.url())
                        .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(300)))
                        .and_then(|mut c| redis::cmd("INFO").arg("replication").query(&mut c));
                    info.is_ok_and(|i| i.lines().any(|l| l.trim() == "master_link_status:up"))
                })
                .count();
            let synced = linked == replicas;
            if synced && self.primary_port().is_some() {
                return;
            }
            assert!(Instant::now() < deadline, "the sentinel set-up did not come up within {within:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGSTOPs every sentinel: they accept connections and answer nothing.
    pub fn pause_sentinels(&self) {
        for (_, child, _) in &self.sentinels {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGSTOP);
        }
    }

    /// SIGSTOPs sentinel `i` (the `i`-th in [`Self::url`]): it accepts connections and
    /// answers nothing, while the others go on.
    pub fn pause_sentinel(&self, i: usize) {
        let _ = kill(Pid::from_raw(self.sentinels[i].1.id() as i32), Signal::SIGSTOP);
    }

    /// SIGKILLs the current primary and waits until the sentinels name another one.
    pub fn fail_over(&mut self, within: Duration) -> u16 {
        let old = self.primary_port().expect("a primary");
        if let Some(s) = self.servers.iter_mut().find(|s| s.port() == old) {
            s.kill();
        }
        let deadline = Instant::now() + within;
        loop {
            if let Some(new) = self.primary_port().filter(|p| *p != old) {
                return new;
            }
            assert!(Instant::now() < deadline, "no replica was promoted within {within:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for RedisSentinels {
    fn drop(&mut self) {
        for (_, child, _) in &mut self.sentinels {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            let _ = child.wait();
        }
    }
}

/// One sentinel watching the primary on `primary_port`, answering PING. A port found
/// free can be taken before the sentinel binds it (it then exits at once): another one
/// is tried, up to five.
fn start_sentinel(primary_port: u16) -> (u16, Child, tempfile::TempDir) {
    for _ in 0..5 {
        let dir = tempfile::tempdir().expect("temp dir for a sentinel");
        let port = super::free_port();
        let conf = dir.path().join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\nsentinel monitor {SERVICE} 127.0.0.1 {primary_port} 2\n\
                 sentinel down-after-milliseconds {SERVICE} 1000\nsentinel failover-timeout {SERVICE} 5000\n\
                 sentinel parallel-syncs {SERVICE} 1\n",
                dir.path().display()
            ),
        )
        .expect("write sentinel.conf");
        let mut child = Command::new(std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into()))
            .arg(&conf)
            .arg("--sentinel")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed");
        let deadline = Instant::now() + Duration::from_secs(20);
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).expect("sentinel url");
        loop {
            let pong = client
                .get_connection_with_timeout(Duration::from_millis(200))
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
            if pong.is_ok() {
                return (port, child, dir);
            }
            if !matches!(child.try_wait(), Ok(None)) {
                let _ = child.wait();
                break; // exited: its port was taken; try another
            }
            assert!(Instant::now() < deadline, "sentinel on port {port} did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    panic!("no sentinel started on five free ports");
}
