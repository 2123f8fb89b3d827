//! One Redis connection handle for every part of Drover, chosen by the URL (see
//! [`RedisTarget`]): a single server (a reconnecting `ConnectionManager`, dialled afresh
//! after a reply times out: [`redialling`]), a Redis Cluster
//! (redis-rs's cluster client: slot routing, MOVED/ASK, topology refresh) or a
//! Sentinel-managed primary that is looked up again after a failover. Clones share the
//! underlying connections. Commands and pipelines go through [`redis::aio::ConnectionLike`],
//! so callers do not care which it is — except that on a cluster one pipeline must stay
//! in one slot: [`grouped`] splits a multi-slot pipeline by hash tag.
mod grouped;
mod library;
mod redialling;
mod sentinel;
mod target;

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

pub use grouped::{query_grouped, query_grouped_each, query_grouped_items_or_stragglers, query_grouped_then, GroupReply, Late, Straggle};
pub use library::{is_missing, Access, Call, Library, LuaScript, ScriptDef};
pub use target::{RedisTarget, TargetError};

/// Timeouts of a connection: how long dialling may take and how long one reply may take
/// (`None` for connections that block, e.g. BLPOP).
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    pub response: Option<Duration>,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(2),
            response: Some(Duration::from_secs(5)),
        }
    }
}

impl Timeouts {
    /// For blocking commands: no reply timeout (the caller bounds the wait itself).
    pub fn blocking() -> Self {
        Self {
            response: None,
            ..Self::default()
        }
    }
}

/// A Redis connection of any of the three kinds. Cheap to clone.
#[derive(Clone)]
pub enum RedisConn {
    Single(ConnectionManager),
    Redialling(Arc<redialling::Redialling>),
    Cluster(ClusterConnection),
    Sentinel(Arc<sentinel::FollowingPrimary>),
}

impl std::fmt::Debug for RedisConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Single(_) | Self::Redialling(_) => "RedisConn::Single",
            Self::Cluster(_) => "RedisConn::Cluster",
            Self::Sentinel(_) => "RedisConn::Sentinel",
        })
    }
}

impl From<ConnectionManager> for RedisConn {
    fn from(c: ConnectionManager) -> Self {
        Self::Single(c)
    }
}

pub(crate) fn manager_config(t: Timeouts) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(t.connect))
        .set_response_timeout(t.response)
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_secs(1))
}

fn cluster_client(seeds: &[String], t: Timeouts) -> redis::RedisResult<ClusterClient> {
    let mut b = ClusterClientBuilder::new(seeds.to_vec())
        .connection_timeout(t.connect)
        .retries(4)
        .min_retry_wait(50)
        .max_retry_wait(1000);
    if let Some(r) = t.response {
        b = b.response_timeout(r);
    }
    b.build()
}

/// How to open connections to one [`RedisTarget`].
#[derive(Clone, Debug)]
pub struct RedisSource {
    target: RedisTarget,
}

impl RedisSource {
    pub fn new(url: &str) -> Result<Self, TargetError> {
        Ok(Self {
            target: RedisTarget::parse(url)?,
        })
    }

    pub fn target(&self) -> &RedisTarget {
        &self.target
    }

    /// A connection that dials on its first command, so a service starts (and reports
    /// itself not ready) while Redis is down, and re-dials after outages.
    pub fn lazy(&self, t: Timeouts) -> redis::RedisResult<RedisConn> {
        Ok(match &self.target {
            RedisTarget::Single(url) => {
                RedisConn::Redialling(Arc::new(redialling::Redialling::new(redis::Client::open(url.as_str())?, t)?))
            }
            RedisTarget::Cluster(seeds) => {
                let client = cluster_client(seeds, t)?;
                RedisConn::Cluster(client.get_pending_async_connection_with_config(cluster_config(t)))
            }
            RedisTarget::Sentinel { .. } => RedisConn::Sentinel(Arc::new(sentinel::FollowingPrimary::new(&self.target, t)?)),
        })
    }

    /// A connection that is dialled now: fails when Redis cannot be reached.
    pub async fn connect(&self, t: Timeouts) -> redis::RedisResult<RedisConn> {
        let mut conn = self.lazy(t)?;
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        Ok(conn)
    }
}

fn cluster_config(t: Timeouts) -> redis::cluster::ClusterConfig {
    let mut c = redis::cluster::ClusterConfig::new().set_connection_timeout(t.connect);
    if let Some(r) = t.response {
        c = c.set_response_timeout(r);
    }
    c
}

impl RedisConn {
    pub fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Redialling(c) => Box::pin(c.command(cmd)),
            Self::Cluster(c) => c.req_packed_command(cmd),
            Self::Sentinel(c) => Box::pin(c.command(cmd)),
        }
    }

    fn req_packed_commands<'a>(&'a mut self, pipeline: &'a Pipeline, offset: usize, count: usize) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Redialling(c) => Box::pin(c.commands(pipeline, offset, count)),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Sentinel(c) => Box::pin(c.commands(pipeline, offset, count)),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Redialling(c) => c.get_db(),
            Self::Cluster(_) | Self::Sentinel(_) => 0,
        }
    }
}
