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
        Self::launch(binary, durability, None, None, Vec::new())
    }

    /// A server on `port` with more arguments (e.g. `--cluster-enabled yes`).
    pub fn start_with(port: u16, durability: Durability, extra: Vec<String>) -> Self {
        let binary = std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        Self::launch(&binary, durability, None, Some(port), extra)
    }

    /// [`RedisServer::start_with`] on a port `pick` gives (e.g. one whose cluster bus port
    /// is free too), taking another if it is gone before the server binds it.
    pub fn start_picking(pick: &mut dyn FnMut() -> u16, durability: Durability, extra: Vec<String>) -> Self {
        let binary = std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        Self::launch_on(&binary, durability, None, pick, 5, extra)
    }

    /// A replica of `primary` (`--replicaof`), same binary, returned once its link to the
    /// primary is up (`master_link_status:up`) so it holds everything written before.
    pub fn start_replica_of(primary: &RedisServer) -> Self {
        let replica = Self::launch(&primary.binary, Durability::None, Some(primary.port), None, Vec::new());
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

    /// Starts a server on `port`, or on a free port when `None`. A port found free can be
    /// taken before the server binds it (by another test's outgoing connection, whose
    /// local ports come from the same range): then the server exits at once, and it is
    /// started again on another free port, up to five times.
    fn launch(binary: &str, durability: Durability, replica_of: Option<u16>, port: Option<u16>, extra: Vec<String>) -> Self {
        match port {
            Some(p) => Self::launch_on(binary, durability, replica_of, &mut || p, 1, extra),
            None => Self::launch_on(binary, durability, replica_of, &mut free_port, 5, extra),
        }
    }

    /// [`RedisServer::launch`] on the ports `pick` gives, trying up to `tries` of them.
    fn launch_on(
        binary: &str,
        durability: Durability,
        replica_of: Option<u16>,
        pick: &mut dyn FnMut() -> u16,
        tries: usize,
        extra: Vec<String>,
    ) -> Self {
        let dir = tempfile::tempdir().expect("temp dir for redis-server");
        let mut s = Self {
            port: pick(),
            dir,
            durability,
            child: None,
            binary: binary.to_owned(),
            replica_of,
            extra,
        };
        let mut tried = 1;
        while let Err(why) = s.spawn() {
            assert!(tried < tries, "{why}");
            tried += 1;
            s.port = pick();
        }
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

    fn spawn(&mut self) -> Result<(), String> {
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
        self.wait_ready()
    }

    /// Waits until the server answers PING; an error (with its log) when it exited first.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let client = redis::Client::open(self.url()).expect("redis url");
        loop {
            if let Ok(mut c) = client.get_connection_with_timeout(Duration::from_millis(200)) {
                // A restarted server answers LOADING while it replays the AOF.
                if redis::cmd("PING").query::<String>(&mut c).is_ok() {
                    return Ok(());
                }
            }
            let log = self.dir.path().join("redis.log");
            if !self.is_running() {
                self.child = None;
                let tail = std::fs::read_to_string(&log).unwrap_or_default();
                return Err(format!("redis-server on port {} exited at start:\n{tail}", self.port));
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not start; see {}",
                self.port,
                log.display()
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
        if let Err(why) = self.spawn() {
            panic!("{why}");
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn binary() -> String {
        std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into())
    }

    fn panic_text(p: Box<dyn std::any::Any + Send>) -> String {
        p.downcast_ref::<String>().cloned().unwrap_or_default()
    }

    #[test]
    fn a_server_whose_port_is_taken_fails_at_once_with_its_log() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let err = std::panic::catch_unwind(|| RedisServer::start_with(port, Durability::None, Vec::new()))
            .map(|_| ())
            .expect_err("the port is taken");
        let text = panic_text(err);
        assert!(text.contains("exited at start"), "{text}");
        assert!(text.contains("in use"), "the server's own words: {text}");
    }

    #[test]
    fn a_free_port_taken_before_the_server_binds_it_is_replaced() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let first = taken.local_addr().unwrap().port();
        let mut calls = 0;
        let mut pick = || {
            calls += 1;
            if calls == 1 {
                first
            } else {
                free_port()
            }
        };
        let server = RedisServer::launch_on(&binary(), Durability::None, None, &mut pick, 5, Vec::new());
        assert_ne!(server.port(), first);
        let pong: String = redis::cmd("PING").query(&mut server.conn()).unwrap();
        assert_eq!(pong, "PONG");
    }
}
