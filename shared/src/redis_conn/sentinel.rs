//! A connection to the primary that Sentinel names for a service, which follows a
//! failover: when a command fails because the primary is gone (connection refused or
//! reset) or has been demoted (READONLY), the sentinels are asked again and, if they name
//! another primary, later commands go there. The failing command's error is returned
//! as is; callers already retry Redis errors with backoff, so no restart is needed.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{Cmd, Pipeline, RedisError, RedisResult, Value};

use super::{manager_config, RedisTarget, Timeouts};

/// How long asking the sentinels may take.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);

pub struct FollowingPrimary {
    sentinels: tokio::sync::Mutex<SentinelClient>,
    /// The primary last named, and a connection to it.
    current: Mutex<Option<(String, ConnectionManager)>>,
    /// How many times the sentinels were asked: a caller that waited while another
    /// asked takes that answer instead of asking again.
    asked: AtomicU64,
    timeouts: Timeouts,
}

impl FollowingPrimary {
    pub(super) fn new(target: &RedisTarget, timeouts: Timeouts) -> RedisResult<Self> {
        let RedisTarget::Sentinel {
            sentinels,
            service,
            username,
            password,
        } = target
        else {
            unreachable!("FollowingPrimary is built for sentinel targets only");
        };
        let mut info = redis::RedisConnectionInfo::default();
        if let Some(u) = username {
            info = info.set_username(u);
        }
        if let Some(p) = password {
            info = info.set_password(p);
        }
        let node = SentinelNodeConnectionInfo::default().set_redis_connection_info(info);
        let client = SentinelClient::build(sentinels.clone(), service.clone(), Some(node), SentinelServerType::Master)?;
        Ok(Self {
            sentinels: tokio::sync::Mutex::new(client),
            current: Mutex::new(None),
            asked: AtomicU64::new(0),
            timeouts,
        })
    }

    fn cached(&self) -> Option<ConnectionManager> {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|(_, c)| c.clone())
    }

    /// Asks the sentinels for the primary and switches to it when it changed, or dials it
    /// afresh when `redial` (a reply timed out: the connection may sit on a silent
    /// socket that `ConnectionManager` would keep).
    ///
    /// One caller asks at a time; those that waited meanwhile take its answer, so a burst
    /// of failing commands after a failover costs one ask (at most 2 s), not one each.
    async fn resolve(&self, redial: bool) -> RedisResult<ConnectionManager> {
        let seen = self.asked.load(Ordering::Acquire);
        let mut sentinels = self.sentinels.lock().await;
        if self.asked.load(Ordering::Acquire) != seen {
            if let Some(conn) = self.cached() {
                return Ok(conn);
            }
        }
        let asked = tokio::time::timeout(ASK_TIMEOUT, sentinels.async_get_client()).await;
        self.asked.fetch_add(1, Ordering::Release);
        let client = asked.map_err(|_| RedisError::from((redis::ErrorKind::Io, "no sentinel answered in time")))??;
        let addr = client.get_connection_info().addr().to_string();
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((known, conn)) = current.as_ref() {
            if *known == addr && !redial {
                return Ok(conn.clone());
            }
            if *known != addr {
                tracing::warn!(primary = %addr, "sentinel named a new Redis primary; switching to it");
            }
        }
        let conn = ConnectionManager::new_lazy_with_config(client, manager_config(self.timeouts))?;
        *current = Some((addr, conn.clone()));
        Ok(conn)
    }

    async fn connection(&self) -> RedisResult<ConnectionManager> {
        match self.cached() {
            Some(c) => Ok(c),
            None => self.resolve(false).await,
        }
    }

    /// After an error: ask the sentinels again when it says the primary is gone.
    async fn after(&self, e: &RedisError) {
        let primary_gone = e.is_connection_refusal()
            || e.is_connection_dropped()
            || e.is_io_error()
            || e.is_timeout()
            || e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly);
        if primary_gone {
            if let Err(e) = self.resolve(e.is_timeout()).await {
                tracing::debug!(error = %e, "asking the sentinels for the primary failed");
            }
        }
    }

    pub(super) async fn command(&self, cmd: &Cmd) -> RedisResult<Value> {
        let mut conn = self.connection().await?;
        let r = conn.req_packed_command(cmd).await;
        if let Err(e) = &r {
            self.after(e).await;
        }
        r
    }

    pub(super) async fn commands(&self, pipeline: &Pipeline, offset: usize, count: usize) -> RedisResult<Vec<Value>> {
        let mut conn = self.connection().await?;
        let r = conn.req_packed_commands(pipeline, offset, count).await;
        if let Err(e) = &r {
            self.after(e).await;
        }
        r
    }
}
