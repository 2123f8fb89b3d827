//! A private redis-server per test or suite: random free port, its own temp dir,
//! AOF when durability is tested; it can be killed and restarted on the same port.
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::free_port;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Nothing kept on disk.
    None,
    /// `appendonly yes`, `appendfsync everysec`: how a durable queue runs.
    AofEverySec,
    /// `appendonly yes`, `appendfsync always`: an fsync before every reply.
    AofAlways,
}

pub struct RedisServer {
    port: u16,
    dir: tempfile::TempDir,
    durability: Durability,
    child: Option<Child>,
    /// The redis-server binary (`REDIS_SERVER`, else `redis-server` on the PATH).
    binary: String,
    /// The primary's port when this server is its replica.
    replica_of: Option<u16>,
    /// More `redis-server` arguments (cluster mode, replication, sentinel).
    extra: Vec<String>,
}

impl RedisServer {
    pub fn start(durability: Durability) -> Self {
        Self::start_binary(&std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into()), durability)
    }

    /// [`RedisServer::start`] with another redis-server binary (e.g. a newer Redis).
    pub fn start_binary(binary: &str, durability: Durability) -> Self {
        Self::launch(binary, durability, None, free_port(), Vec::new())
    }

    /// A server on `port` with more arguments (e.g. `--cluster-enabled yes`).
    pub fn start_with(port: u16, durability: Durability, extra: Vec<String>) -> Self {
        let binary = std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        Self::launch(&binary, durability, None, port, extra)
    }

    /// A replica of `primary` (`--replicaof`), same binary, returned once its link to the
    /// primary is up (`master_link_status:up`) so it holds everything written before.
    pub fn start_replica_of(primary: &RedisServer) -> Self {
        let replica = Self::launch(&primary.binary, Durability::None, Some(primary.port), free_port(), Vec::new());
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut conn = replica.conn();
        loop {
            let info: String = redis::cmd("INFO").arg("replication").query(&mut conn).expect("INFO replication");
            if info.lines().any(|l| l.trim() == "master_link_status:up") {
                return replica;
            }
            assert!(
                Instant::now() < deadline,
                "replica on port {} never linked to its primary on {}:\n{info}",
                replica.port,
                primary.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn launch(binary: &str, durability: Durability, replica_of: Option<u16>, port: u16, extra: Vec<String>) -> Self {
        let dir = tempfile::tempdir().expect("temp dir for redis-server");
        let mut s = Self {
            port,
            dir,
            durability,
            child: None,
            binary: binary.to_owned(),
            replica_of,
            extra,
        };
        s.spawn();
        s
    }

    /// SIGSTOP the server: it holds its connections but answers nothing (a stalled
    /// replica or a frozen host) until [`RedisServer::resume`].
    pub fn pause(&self) {
        self.signal(Signal::SIGSTOP);
    }

    /// SIGCONT a server [`RedisServer::pause`] stopped.
    pub fn resume(&self) {
        self.signal(Signal::SIGCONT);
    }

    fn signal(&self, signal: Signal) {
        let pid = self.pid().expect("the server runs");
        kill(Pid::from_raw(pid as i32), signal).unwrap_or_else(|e| panic!("{signal} to redis-server {pid}: {e}"));
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_owned()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--port")
            .arg(self.port.to_string())
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--save")
            .arg("")
            .arg("--daemonize")
            .arg("no")
            .arg("--logfile")
            .arg(self.dir.path().join("redis.log"));
        if let Some(primary) = self.replica_of {
            cmd.arg("--replicaof").arg("127.0.0.1").arg(primary.to_string());
        }
        match self.durability {
            Durability::None => {
                cmd.arg("--appendonly").arg("no");
            }
            Durability::AofEverySec => {
                cmd.arg("--appendonly").arg("yes").arg("--appendfsync").arg("everysec");
            }
            Durability::AofAlways => {
                cmd.arg("--appendonly").arg("yes").arg("--appendfsync").arg("always");
            }
        }
        cmd.args(&self.extra);
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed");
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let client = redis::Client::open(self.url()).expect("redis url");
        loop {
            if let Ok(mut c) = client.get_connection_with_timeout(Duration::from_millis(200)) {
                // A restarted server answers LOADING while it replays the AOF.
                if redis::cmd("PING").query::<String>(&mut c).is_ok() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not start; see {}",
                self.port,
                self.dir.path().join("redis.log").display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the process is still there (not killed, not exited).
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGKILL the server (no shutdown save).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            let _ = child.wait();
        }
    }

    /// Start it again on the same port and directory (it replays its AOF, if any).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// A plain (synchronous) connection, for test set-up and assertions.
    pub fn conn(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .expect("redis url")
            .get_connection()
            .expect("connect to test redis")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // A paused server must run again to obey SIGTERM.
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGCONT);
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            let _ = child.wait();
        }
    }
}
