//! A single server's connection that is dialled afresh after a reply times out.
//! redis-rs's `ConnectionManager` reconnects when its socket errors, not when a reply
//! times out; a server that stops answering while its socket stays open (a frozen
//! process, a peer gone half-open) would leave every later command timing out on that
//! same socket until the kernel gives up on it, some 15 minutes on.
use std::sync::Mutex;

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::{Cmd, Pipeline, RedisError, RedisResult, Value};

use super::{manager_config, Timeouts};

/// A reply timed out and none has come since, on any connection of this process: a
/// silent Redis is logged once (every connection, and every command on it, meets it),
/// then its end once.
static SILENT: crate::outage::Outage = crate::outage::Outage::new();

/// A reply came: a silence logged before has ended.
fn answered() {
    if SILENT.answered() {
        tracing::info!("Redis answers again");
    }
}

pub struct Redialling {
    client: redis::Client,
    timeouts: Timeouts,
    /// The connection in use, and how many times it was dialled afresh.
    current: Mutex<(u64, ConnectionManager)>,
}

impl Redialling {
    /// Dials on the first command, as `ConnectionManager::new_lazy_with_config` does.
    pub(super) fn new(client: redis::Client, timeouts: Timeouts) -> RedisResult<Self> {
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), manager_config(timeouts))?;
        Ok(Self {
            client,
            timeouts,
            current: Mutex::new((0, conn)),
        })
    }

    fn current(&self) -> (u64, ConnectionManager) {
        self.current.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// After `e` on connection `dialled`: a reply that timed out puts a fresh connection
    /// in its place (unless another call already has), so the next command does not
    /// wait on the same silent socket.
    fn after(&self, dialled: u64, e: &RedisError) {
        if !e.is_timeout() {
            return;
        }
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if current.0 != dialled {
            return;
        }
        match ConnectionManager::new_lazy_with_config(self.client.clone(), manager_config(self.timeouts)) {
            Ok(fresh) => {
                if SILENT.failed() {
                    tracing::warn!(
                        error = %e,
                        "Redis did not answer in time; dialling a fresh connection (logged again when it answers)"
                    );
                } else {
                    tracing::debug!(error = %e, "Redis still silent; dialling a fresh connection");
                }
                *current = (dialled + 1, fresh);
            }
            Err(e) => tracing::warn!(error = %e, "Redis did not answer in time and a fresh connection could not be made"),
        }
    }

    pub(super) async fn command(&self, cmd: &Cmd) -> RedisResult<Value> {
        let (dialled, mut conn) = self.current();
        let r = conn.req_packed_command(cmd).await;
        match &r {
            Ok(_) => answered(),
            Err(e) => self.after(dialled, e),
        }
        r
    }

    pub(super) async fn commands(&self, pipeline: &Pipeline, offset: usize, count: usize) -> RedisResult<Vec<Value>> {
        let (dialled, mut conn) = self.current();
        let r = conn.req_packed_commands(pipeline, offset, count).await;
        match &r {
            Ok(_) => answered(),
            Err(e) => self.after(dialled, e),
        }
        r
    }

    pub(super) fn get_db(&self) -> i64 {
        self.current().1.get_db()
    }
}
