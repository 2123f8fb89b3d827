//! Test harness: real processes on random ports, each stopped by its PID.
mod postgres;
mod process;
mod redis_cluster;
mod redis_sentinel;
mod redis_server;

pub use postgres::PgDatabase;
pub use process::{cargo_bin, ChildProcess};
pub use redis_cluster::RedisCluster;
pub use redis_sentinel::{RedisSentinels, SERVICE as SENTINEL_SERVICE};
pub use redis_server::{Durability, RedisServer};

/// A free TCP port on 127.0.0.1 (bound, then released for the caller to use).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port on 127.0.0.1")
}
