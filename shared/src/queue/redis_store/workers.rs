//! Worker liveness on Redis: each worker's heartbeat key, and `live-workers` (worker →
//! when its heartbeat lapses) so the console counts live workers with one `ZCOUNT`.
use std::time::Duration;

use super::RedisStore;
use crate::queue::StoreError;

impl RedisStore {
    /// Workers whose heartbeat has not lapsed (one `ZCOUNT` of `live-workers`).
    pub async fn live_workers(&self) -> Result<u64, StoreError> {
        let mut conn = self.conn.clone();
        let now = chrono::Utc::now().timestamp_millis();
        let n: u64 = redis::cmd("ZCOUNT")
            .arg(format!("{}:live-workers", self.namespace))
            .arg(now)
            .arg("+inf")
            .query_async(&mut conn)
            .await?;
        Ok(n)
    }

    pub(super) async fn heartbeat(&self, worker: &str, info: &str, ttl: Duration) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let key = format!("{}:workers:{worker}", self.namespace);
        let _: () = redis::cmd("SET")
            .arg(key)
            .arg(info)
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64)
            .query_async(&mut conn)
            .await?;
        // `live-workers` (worker -> when its heartbeat lapses, ms) lets the console count
        // live workers with one ZCOUNT instead of a walk over the heartbeat keys; entries
        // lapsed for an hour go.
        let now = chrono::Utc::now().timestamp_millis();
        let live = format!("{}:live-workers", self.namespace);
        let _: () = redis::pipe()
            .zadd(&live, worker, now + ttl.as_millis() as i64)
            .ignore()
            .zrembyscore(&live, "-inf", now - 3_600_000)
            .ignore()
            .query_async(&mut conn)
            .await?;
        Ok(())
    }
}
