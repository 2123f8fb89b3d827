//! The Redis setting a job record's memory depends on, checked once at start-up. Redis
//! keeps a hash compact (a listpack) only while every value fits in
//! `hash-max-listpack-value` bytes; Redis's default (64) is shorter than a realistic
//! payload (a marketplace id and a SKU already pass it) or result, and a record kept as a
//! hashtable takes about twice the memory (docs/operations.md, "What Drover needs").
use super::{RedisStore, StoreError};

/// The `hash-max-listpack-value` `deploy/redis/redis.conf` sets.
pub const RECOMMENDED_LISTPACK_VALUE: u64 = 1024;

impl RedisStore {
    /// The server's `hash-max-listpack-value`, or `None` when it cannot be read (`CONFIG`
    /// is disabled on some managed services).
    pub async fn listpack_value_limit(&self) -> Result<Option<u64>, StoreError> {
        let mut conn = self.connection();
        let reply: redis::RedisResult<Vec<String>> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("hash-max-listpack-value")
            .query_async(&mut conn)
            .await;
        match reply {
            Ok(pair) => Ok(pair.get(1).and_then(|v| v.parse().ok())),
            // The server answered with an error (CONFIG renamed away, no ACL permission).
            Err(e) if e.code().is_some() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Warns (once per call; a process calls it at start-up) when the server keeps job
    /// records at twice their memory. A setting that cannot be read is not warned about.
    pub async fn check_redis_settings(&self) -> Result<(), StoreError> {
        if let Some(limit) = self.listpack_value_limit().await? {
            if limit < RECOMMENDED_LISTPACK_VALUE {
                tracing::warn!(
                    hash_max_listpack_value = limit,
                    recommended = RECOMMENDED_LISTPACK_VALUE,
                    "Redis keeps job records whose payload, result or error is over {limit} bytes as hashtables, at about \
                     twice the memory: set hash-max-listpack-value {RECOMMENDED_LISTPACK_VALUE} (deploy/redis/redis.conf)"
                );
            }
        }
        Ok(())
    }
}
