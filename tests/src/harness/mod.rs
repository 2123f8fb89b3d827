//! Test harness: real processes on random ports, each stopped by its PID.
mod frozen_proxy;
mod key_monitor;
mod port_claims;
mod postgres;
mod process;
mod redis_cluster;
mod redis_sentinel;
mod redis_server;

pub use frozen_proxy::FrozenProxy;
pub use key_monitor::{KeyMonitor, Undeclared};
pub use postgres::{make_read_only, PgDatabase};
pub use process::{cargo_bin, ChildProcess};
pub use redis_cluster::RedisCluster;
pub use redis_sentinel::{RedisSentinels, SERVICE as SENTINEL_SERVICE};
pub use redis_server::{Durability, RedisServer};

/// Where Debian's `faketime` package puts the library (tests/setup.sh installs it): a
/// process started with it in `LD_PRELOAD` and `FAKETIME=+20` has its clock 20 s ahead.
pub const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// How far above a cluster node's port Redis puts its cluster bus port.
pub const CLUSTER_BUS_OFFSET: u16 = 10_000;

/// A free TCP port on 127.0.0.1 (bound, then released for the caller to use), below the
/// kernel's ephemeral range with room for a cluster bus port below it too. The port and
/// its bus port are claimed for the calling process's life, so no other test (nor this
/// one again) is given either while it runs.
/// A port the kernel hands out as a client's own can be taken while its server is down:
/// a client reconnecting to it may be given that very port and connect to itself (TCP
/// simultaneous open), so the server, restarted on its port, fails to bind it.
pub fn free_port() -> u16 {
    const FLOOR: u16 = 10_000;
    let (low, _) = ephemeral_ports();
    let top = low.saturating_sub(CLUSTER_BUS_OFFSET);
    if top > FLOOR + 1_000 {
        for _ in 0..1_000 {
            let port = rand::random_range(FLOOR..top);
            let Some(claim) = port_claims::claim(port) else { continue };
            let Some(bus) = port_claims::claim(port + CLUSTER_BUS_OFFSET) else {
                continue;
            };
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
                claim.keep();
                bus.keep();
                return port;
            }
        }
    }
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port on 127.0.0.1")
}

/// The kernel's range of ports for clients' own ends (Linux's default when unreadable).
pub fn ephemeral_ports() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|p| p.parse::<u16>().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or((32_768, 60_999))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_below_the_ephemeral_range_with_their_bus_port() {
        let (low, _) = ephemeral_ports();
        for _ in 0..100 {
            let port = free_port();
            assert!(
                port + CLUSTER_BUS_OFFSET < low,
                "{port} (+ its bus offset) reaches the ephemeral range from {low}"
            );
        }
    }

    #[test]
    fn a_port_handed_out_is_not_handed_out_again_while_its_taker_runs() {
        let mut given = std::collections::HashSet::new();
        // (each keeps two files open for the process's life)
        for _ in 0..300 {
            let port = free_port();
            assert!(given.insert(port), "{port} was handed out twice");
        }
        for port in &given {
            let bus = port + CLUSTER_BUS_OFFSET;
            assert!(!given.contains(&bus), "{bus} was handed out, and it is {port}'s bus port");
        }
    }
}
