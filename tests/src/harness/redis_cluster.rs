//! A private Redis Cluster per test: `masters` primaries with `replicas` replicas each,
//! started as cluster-mode redis-servers on free ports (each with its bus port free
//! too), joined with `redis-cli --cluster create`, and stopped by PID. A primary can be
//! SIGKILLed to make its replica take over, or SIGSTOPped to hang with its sockets open.
use std::process::Command;
use std::time::{Duration, Instant};

use super::redis_server::{Durability, RedisServer};

pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

/// A free port whose cluster bus port (port + [`super::CLUSTER_BUS_OFFSET`]) is free as well.
fn free_cluster_port() -> u16 {
    loop {
        let p = super::free_port();
        if p < 55_000 && std::net::TcpListener::bind(("127.0.0.1", p + super::CLUSTER_BUS_OFFSET)).is_ok() {
            return p;
        }
    }
}

impl RedisCluster {
    pub fn start(masters: usize, replicas: usize) -> Self {
        let n = masters * (1 + replicas);
        let nodes: Vec<RedisServer> = (0..n)
            .map(|_| {
                let extra = [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "1000",
                    // A replica takes over however long it was cut off (tests kill primaries).
                    "--cluster-replica-validity-factor",
                    "0",
                ];
                RedisServer::start_picking(
                    &mut free_cluster_port,
                    Durability::None,
                    extra.iter().map(|s| s.to_string()).collect(),
                )
            })
            .collect();
        let addrs: Vec<String> = nodes.iter().map(|s| format!("127.0.0.1:{}", s.port())).collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .arg("--cluster-replicas")
            .arg(replicas.to_string())
            .arg("--cluster-yes")
            .output()
            .expect("redis-cli must be installed");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let cluster = Self { nodes };
        cluster.wait_until_ok(Duration::from_secs(30));
        cluster.wait_until_replicas_synced(Duration::from_secs(30));
        cluster
    }

    /// Waits until every replica has finished its first sync with its primary
    /// (`master_link_status:up`): until then it acknowledges nothing, so a `WAIT 1`
    /// (`queue.durability = replica`) would time out on a cluster that is otherwise ok.
    pub fn wait_until_replicas_synced(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let synced = self.nodes.iter().filter(|n| n.pid().is_some()).all(|n| {
                ask::<String>(n, redis::cmd("INFO").arg("replication"))
                    .is_some_and(|i| i.contains("role:master") || i.contains("master_link_status:up"))
            });
            if synced {
                return;
            }
            assert!(Instant::now() < deadline, "the replicas did not sync within {within:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `redis+cluster://` with every node as a seed.
    pub fn url(&self) -> String {
        let seeds: Vec<String> = self.nodes.iter().map(|s| format!("127.0.0.1:{}", s.port())).collect();
        format!("redis+cluster://{}", seeds.join(","))
    }

    pub fn nodes(&mut self) -> &mut [RedisServer] {
        &mut self.nodes
    }

    /// Waits until every running node says `cluster_state:ok` and knows all 16384 slots.
    pub fn wait_until_ok(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let ok = self.nodes.iter().filter(|n| n.pid().is_some()).all(|n| {
                ask::<String>(n, redis::cmd("CLUSTER").arg("INFO"))
                    .is_some_and(|i| i.contains("cluster_state:ok") && i.contains("cluster_slots_ok:16384"))
            });
            if ok {
                return;
            }
            assert!(Instant::now() < deadline, "the cluster did not become ok within {within:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The ports of the nodes that are primaries now (as the first live node sees it).
    pub fn primaries(&self) -> Vec<u16> {
        self.roles().into_iter().filter(|(_, primary)| *primary).map(|(p, _)| p).collect()
    }

    /// (port, is primary) of every running node, asked of each node itself.
    pub fn roles(&self) -> Vec<(u16, bool)> {
        self.nodes
            .iter()
            .filter(|n| n.pid().is_some())
            .filter_map(|n| {
                let role: Vec<redis::Value> = ask(n, &redis::cmd("ROLE"))?;
                let name: String = redis::from_redis_value(role.into_iter().next()?).ok()?;
                Some((n.port(), name == "master"))
            })
            .collect()
    }

    /// The ports of the running replicas of the primary on `primary`.
    pub fn replicas_of(&self, primary: u16) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|n| n.pid().is_some())
            .filter_map(|n| {
                let info: String = ask(n, redis::cmd("INFO").arg("replication"))?;
                let of = info
                    .lines()
                    .find_map(|l| l.strip_prefix("master_port:"))?
                    .trim()
                    .parse::<u16>()
                    .ok()?;
                (of == primary).then_some(n.port())
            })
            .collect()
    }

    /// Lets the shards whose slots are all served keep serving while another has none
    /// (`cluster-require-full-coverage no` on every running node).
    pub fn serve_partial_coverage(&self) {
        for n in self.nodes.iter().filter(|n| n.pid().is_some()) {
            let ok: Option<String> = ask(n, redis::cmd("CONFIG").arg("SET").arg("cluster-require-full-coverage").arg("no"));
            assert!(ok.is_some(), "CONFIG SET on {}", n.port());
        }
    }

    /// The port of the primary that serves `key`'s slot (the others answer `MOVED`).
    pub fn primary_serving(&self, key: &str) -> u16 {
        self.primaries()
            .into_iter()
            .find(|port| ask::<i64>(self.node(*port), redis::cmd("EXISTS").arg(key)).is_some())
            .unwrap_or_else(|| panic!("no live primary serves {key}"))
    }

    /// SIGKILL the node on `port`.
    pub fn kill(&mut self, port: u16) {
        if let Some(n) = self.nodes.iter_mut().find(|n| n.port() == port) {
            n.kill();
        }
    }

    /// SIGSTOP the node on `port`: it hangs with its sockets open (a frozen process, a
    /// peer gone half-open) until [`RedisCluster::resume`].
    pub fn pause(&self, port: u16) {
        self.node(port).pause();
    }

    /// SIGCONT the node [`RedisCluster::pause`] stopped.
    pub fn resume(&self, port: u16) {
        self.node(port).resume();
    }

    fn node(&self, port: u16) -> &RedisServer {
        self.nodes
            .iter()
            .find(|n| n.port() == port)
            .unwrap_or_else(|| panic!("no node on port {port}"))
    }

    /// Keys per primary (`DBSIZE`), by port.
    pub fn keys_per_primary(&self) -> Vec<(u16, u64)> {
        self.primaries()
            .into_iter()
            .filter_map(|port| {
                let n = self.nodes.iter().find(|n| n.port() == port)?;
                Some((port, ask(n, &redis::cmd("DBSIZE"))?))
            })
            .collect()
    }
}

/// `cmd`'s answer from node `n` (a short connect timeout: a dead node answers nothing).
fn ask<T: redis::FromRedisValue>(n: &RedisServer, cmd: &redis::Cmd) -> Option<T> {
    let mut c = redis::Client::open(n.url())
        .ok()?
        .get_connection_with_timeout(Duration::from_millis(300))
        .ok()?;
    cmd.query(&mut c).ok()
}
