//! The Redis settings Drover's memory depends on, checked once at start-up. Redis
//! keeps a hash compact (a listpack) only while every value fits in
//! `hash-max-listpack-value` bytes; Redis's default (64) is shorter than a realistic
//! payload (a marketplace id and a SKU already pass it) or result, and a record kept as a
//! hashtable takes about twice the memory. And `maxmemory` 0 (Redis's default) is no
//! limit at all: with `noeviction` Redis then grows until the host kills it, instead of
//! refusing writes (the API's 503 `queue-full`), and the memory alert, which divides by
//! it, never fires (docs/operations.md, "What Drover needs").
use super::{RedisStore, StoreError};

/// The `hash-max-listpack-value` `deploy/redis/redis.conf` sets.
pub const RECOMMENDED_LISTPACK_VALUE: u64 = 1024;

impl RedisStore {
    /// The server's `hash-max-listpack-value`, or `None` when it cannot be read (`CONFIG`
    /// is disabled on some managed services).
    pub async fn listpack_value_limit(&self) -> Result<Option<u64>, StoreError> {
        self.config_number("hash-max-listpack-value").await
    }

    /// The server's `maxmemory` in bytes (0: no limit), or `None` when it cannot be read.
    pub async fn memory_limit(&self) -> Result<Option<u64>, StoreError> {
        self.config_number("maxmemory").await
    }

    async fn config_number(&self, setting: &str) -> Result<Option<u64>, StoreError> {
        let mut conn = self.connection();
        let reply: redis::RedisResult<Vec<String>> = redis::cmd("CONFIG").arg("GET").arg(setting).query_async(&mut conn).await;
        match reply {
            Ok(pair) => Ok(pair.get(1).and_then(|v| v.parse().ok())),
            // The server answered with an error (CONFIG renamed away, no ACL permission).
            Err(e) if e.code().is_some() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// What is wrong with the server's settings for Drover, one sentence each; a setting
    /// that cannot be read is not reported.
    pub async fn redis_setting_problems(&self) -> Result<Vec<String>, StoreError> {
        let mut problems = Vec::new();
        if let Some(limit) = self.listpack_value_limit().await? {
            if limit < RECOMMENDED_LISTPACK_VALUE {
                problems.push(format!(
                    "Redis keeps job records whose payload, result or error is over {limit} bytes as hashtables, at about \
                     twice the memory: set hash-max-listpack-value {RECOMMENDED_LISTPACK_VALUE} (deploy/redis/redis.conf)"
                ));
            }
        }
        if self.memory_limit().await? == Some(0) {
            problems.push(
                "Redis has no maxmemory: it grows until the host kills it rather than refusing writes, and the \
                 memory alert never fires: set maxmemory below the memory Redis is given (deploy/redis/redis.conf)"
                    .to_owned(),
            );
        }
        Ok(problems)
    }

    /// Warns once for each of [`Self::redis_setting_problems`] (a process calls it at
    /// start-up).
    pub async fn check_redis_settings(&self) -> Result<(), StoreError> {
        for problem in self.redis_setting_problems().await? {
            tracing::warn!("{problem}");
        }
        Ok(())
    }
}
