//! The LWA access-token cache: one token per account and set of credentials, shared by
//! every worker, refreshed by exactly one caller across all processes. An account given
//! other credentials refreshes at its next call with them, while runs that started with
//! the old ones keep their own token and failures (neither overwrites the other's).
//!
//! `<ns>:lwa:<account>:<credentials>` (the first 16 hex digits of the credentials'
//! fingerprint; [`Resilience::token_key`]) holds the token with a PX expiry of `expires_in −
//! refresh_before`, so its absence means "refresh now". The refresher holds
//! `<ns>:lwa:<account>:lock` (SET NX PX with a random owner, extended every third of its
//! life while the exchange runs, released by compare-and-delete): a slow exchange keeps
//! it and a refresher that dies frees it within `lock_ttl`. Everyone else polls for the
//! token. Within a process a per-account
//! mutex keeps callers off Redis while one of them is already asking, and a local copy
//! serves the hot path until the shared key's expiry. The shared copy is sealed
//! (`sealed_token.rs`): Redis never holds a usable token. A failed refresh is noted in
//! `<ns>:lwa:<account>:failed` for a second: after two, callers get the last error at
//! once rather than each asking a failing token service again.
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use redis::Script;
use secrecy::{ExposeSecret, SecretString};
use tokio::time::Instant;

use super::{Resilience, ResilienceError};
use crate::job::AccountId;
use crate::lwa::LwaCredentials;

static PEEK: LazyLock<Script> = lua!("lua/token_peek.lua");
static COMPARE_DELETE: LazyLock<Script> = lua!("lua/compare_delete.lua");
static COMPARE_PEXPIRE: LazyLock<Script> = lua!("lua/compare_pexpire.lua");
static FORGET: LazyLock<Script> = lua!("lua/token_forget.lua");

/// How often a caller waiting on another worker's refresh looks again.
const POLL: Duration = Duration::from_millis(25);
/// A refresh that failed is remembered this long (`<ns>:lwa:<account>:failed`)...
const FAILED_FOR: Duration = Duration::from_secs(1);
/// ...and once this many have failed within it, callers get the last one's error at once
/// instead of asking the token service again (the first failure's waiters try once).
const FAILED_REFRESHES: u64 = 2;

/// Whose token: an account and the fingerprint of its credentials.
type Whose = (AccountId, String);

/// In-process part of the cache. Never printed: it holds secrets.
#[derive(Default)]
pub(crate) struct LocalTokens {
    tokens: Mutex<HashMap<Whose, (SecretString, Instant)>>,
    flights: Mutex<HashMap<Whose, Arc<tokio::sync::Mutex<()>>>>,
}

impl LocalTokens {
    fn get(&self, whose: &Whose) -> Option<SecretString> {
        let map = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        map.get(whose)
            .filter(|(_, fresh_until)| Instant::now() < *fresh_until)
            .map(|(t, _)| t.clone())
    }

    fn put(&self, whose: &Whose, token: &SecretString, fresh_for: Duration) {
        let mut map = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        map.insert(whose.clone(), (token.clone(), Instant::now() + fresh_for));
    }

    fn forget(&self, whose: &Whose, token: &SecretString) {
        let mut map = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        if map.get(whose).is_some_and(|(t, _)| t.expose_secret() == token.expose_secret()) {
            map.remove(whose);
        }
    }

    fn flight(&self, whose: &Whose) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.flights.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(whose.clone()).or_default().clone()
    }
}

enum Peek {
    Token(SecretString, Duration),
    Refreshing,
    /// No token and nobody refreshing: how many refreshes failed within [`FAILED_FOR`],
    /// and the last one's error.
    Missing {
        failed: u64,
        last: String,
    },
}

impl Resilience {
    /// The account's LWA access token got with `credentials`. When the shared cache has
    /// none (or it is within `refresh_before` of expiry, or was got with other
    /// credentials), exactly one caller across all processes runs `fetch` while the
    /// others wait up to `wait_timeout` for its result.
    pub async fn access_token<F, Fut, E>(
        &self,
        account: &AccountId,
        credentials: &LwaCredentials,
        fetch: F,
    ) -> Result<SecretString, ResilienceError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(SecretString, Duration), E>>,
        E: std::fmt::Display,
    {
        let local = &self.inner.tokens;
        let credentials = credentials.fingerprint();
        let credentials = credentials.as_str();
        let whose: Whose = (account.clone(), credentials.to_owned());
        if let Some(t) = local.get(&whose) {
            return Ok(t);
        }
        // The deadline counts from the call, so waiting behind this process's own
        // exchange is bounded as waiting behind another process's is.
        let cfg = &self.config().token;
        let deadline = Instant::now() + cfg.wait_timeout;
        let flight = local.flight(&whose);
        let Ok(_one_per_process) = tokio::time::timeout_at(deadline, flight.lock()).await else {
            return Err(ResilienceError::Token(format!(
                "no token from this process's refresh within {:?}",
                cfg.wait_timeout
            )));
        };
        if let Some(t) = local.get(&whose) {
            return Ok(t);
        }
        let mut fetch = Some(fetch);
        // A waiter whose refresher gave up (lock gone, no token) tries once itself.
        let mut retried = false;
        let mut first = true;
        loop {
            match self.peek_token(account, credentials).await? {
                Peek::Token(t, ttl) => {
                    local.put(&whose, &t, ttl);
                    return Ok(t);
                }
                Peek::Missing { failed, last } if failed >= FAILED_REFRESHES => {
                    return Err(ResilienceError::Token(last));
                }
                Peek::Missing { .. } if first || !retried => {
                    if !first {
                        retried = true;
                    }
                    if let Some(t) = self.try_refresh(account, credentials, &mut fetch).await? {
                        return Ok(t);
                    }
                }
                Peek::Missing { .. } => {
                    return Err(ResilienceError::Token("another worker's token refresh failed".into()));
                }
                Peek::Refreshing => {}
            }
            first = false;
            if Instant::now() >= deadline {
                return Err(ResilienceError::Token(format!(
                    "no token from another worker's refresh within {:?}",
                    cfg.wait_timeout
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// A call got 401 with `token`, got with `credentials`: drop it everywhere, but only
    /// if it is still the cached one (another worker may already have stored a fresh
    /// token).
    pub async fn invalidate_token(
        &self,
        account: &AccountId,
        credentials: &LwaCredentials,
        token: &SecretString,
    ) -> Result<(), ResilienceError> {
        self.inner.tokens.forget(&(account.clone(), credentials.fingerprint()), token);
        let _: i64 = FORGET
            .key(self.token_key(account, credentials))
            .arg(super::sealed_token::fingerprint(token))
            .invoke_async(&mut self.conn())
            .await?;
        Ok(())
    }

    /// The Redis key of the token `account` gets with `credentials` (its lock and its
    /// failures are this with `:lock` and `:failed`).
    pub fn token_key(&self, account: &AccountId, credentials: &LwaCredentials) -> String {
        self.token_key_of(account, &credentials.fingerprint())
    }

    fn token_key_of(&self, account: &AccountId, credentials: &str) -> String {
        format!("{}:{}", self.key("lwa", account, None), &credentials[..16])
    }

    async fn peek_token(&self, account: &AccountId, credentials: &str) -> Result<Peek, ResilienceError> {
        let token_key = self.token_key_of(account, credentials);
        let (token, pttl, held, failed, last): (String, i64, i64, u64, String) = PEEK
            .key(&token_key)
            .key(format!("{token_key}:lock"))
            .key(format!("{token_key}:failed"))
            .invoke_async(&mut self.conn())
            .await?;
        // A value that does not open (stored before tokens were sealed, under another
        // key, or got with credentials since replaced) counts as missing: the refresh
        // overwrites it.
        let opened = (!token.is_empty() && pttl > 0)
            .then(|| self.inner.sealer.open(account, credentials, &token))
            .flatten();
        Ok(if let Some(token) = opened {
            Peek::Token(token, Duration::from_millis(pttl as u64))
        } else if held == 1 {
            Peek::Refreshing
        } else {
            Peek::Missing { failed, last }
        })
    }

    /// Take the refresh lock and run `fetch`; `Ok(None)` when someone else holds the lock
    /// (or our fetch was already spent).
    async fn try_refresh<F, Fut, E>(
        &self,
        account: &AccountId,
        credentials: &str,
        fetch: &mut Option<F>,
    ) -> Result<Option<SecretString>, ResilienceError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(SecretString, Duration), E>>,
        E: std::fmt::Display,
    {
        if fetch.is_none() {
            return Ok(None);
        }
        let cfg = &self.config().token;
        let token_key = self.token_key_of(account, credentials);
        let lock_key = format!("{token_key}:lock");
        let owner = format!("{:032x}", rand::random::<u128>());
        let won: Option<String> = redis::cmd("SET")
            .arg(&lock_key)
            .arg(&owner)
            .arg("NX")
            .arg("PX")
            .arg(cfg.lock_ttl.as_millis() as u64)
            .query_async(&mut self.conn())
            .await?;
        if won.is_none() {
            return Ok(None);
        }
        let Some(fetch) = fetch.take() else { return Ok(None) };
        let result = self.holding_lock(account, &lock_key, &owner, fetch()).await;
        let outcome = match result {
            Ok((token, expires_in)) => {
                // Expire the shared copy `refresh_before` early so the next caller refreshes
                // in time; a token that lives shorter than that is kept for half its life.
                let keep = expires_in
                    .checked_sub(cfg.refresh_before)
                    .filter(|d| !d.is_zero())
                    .unwrap_or(expires_in / 2);
                let keep = keep.max(Duration::from_millis(1));
                let stored: Result<(), redis::RedisError> = redis::cmd("SET")
                    .arg(&token_key)
                    .arg(self.inner.sealer.seal(account, credentials, &token))
                    .arg("PX")
                    .arg(keep.as_millis() as u64)
                    .query_async(&mut self.conn())
                    .await;
                match stored {
                    Ok(()) => {
                        self.inner.tokens.put(&(account.clone(), credentials.to_owned()), &token, keep);
                        Ok(Some(token))
                    }
                    Err(e) => Err(ResilienceError::from(e)),
                }
            }
            Err(e) => {
                tracing::warn!(account = %account, error = %e, "access token refresh failed");
                let text = e.to_string();
                let failed_key = format!("{token_key}:failed");
                let noted: Result<(), redis::RedisError> = redis::pipe()
                    .hincr(&failed_key, "n", 1)
                    .ignore()
                    .hset(&failed_key, "last", &text)
                    .ignore()
                    .pexpire(&failed_key, FAILED_FOR.as_millis() as i64)
                    .ignore()
                    .query_async(&mut self.conn())
                    .await;
                if let Err(e) = noted {
                    tracing::debug!(account = %account, error = %e, "could not note the failed token refresh");
                }
                Err(ResilienceError::Token(text))
            }
        };
        let released: Result<i64, redis::RedisError> = COMPARE_DELETE.key(&lock_key).arg(&owner).invoke_async(&mut self.conn()).await;
        if let Err(e) = released {
            tracing::warn!(account = %account, error = %e, "could not release the token refresh lock; it expires by itself");
        }
        outcome
    }

    /// Runs `exchange`, extending the refresh lock every third of its life meanwhile. A
    /// lock found gone or taken is not fought for: the exchange finishes and its token is
    /// stored all the same (at worst a second refresher runs one too).
    async fn holding_lock<T>(&self, account: &AccountId, lock_key: &str, owner: &str, exchange: impl Future<Output = T>) -> T {
        let ttl = self.config().token.lock_ttl;
        let mut renew = tokio::time::interval_at(Instant::now() + ttl / 3, ttl / 3);
        renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(exchange);
        let mut held = true;
        loop {
            tokio::select! {
                result = &mut exchange => return result,
                _ = renew.tick(), if held => {
                    let extended: Result<i64, redis::RedisError> = COMPARE_PEXPIRE
                        .key(lock_key)
                        .arg(owner)
                        .arg(ttl.as_millis() as u64)
                        .invoke_async(&mut self.conn())
                        .await;
                    match extended {
                        Ok(1) => {}
                        Ok(_) => {
                            tracing::warn!(account = %account, "the token refresh lock expired while the exchange ran; another worker may refresh too");
                            held = false;
                        }
                        Err(e) => tracing::warn!(account = %account, error = %e, "could not extend the token refresh lock"),
                    }
                }
            }
        }
    }
}
