//! Which accounts share a seller's marketplace limits (`accounts.limits_of`, migration
//! 0007): the marketplace counts calls per seller and application — per credentials —
//! so accounts registered with the same client id and refresh token share one limiter,
//! one set of cooldowns and breakers, keyed by the first such account's id.
use std::collections::HashMap;
use std::sync::Mutex;

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use sqlx::PgConnection;

use super::sealed_column::{self, Column, Opened};
use super::{AccountRepo, DbError};
use crate::crypto::SecretBox;
use crate::job::AccountId;

/// What two registrations of one seller and application have in common: SHA-256 over
/// the client id and the refresh token (a long random string, so the digest gives
/// nothing of it away). It is stored, never shown.
pub(crate) fn credentials_digest(client_id: &str, refresh_token: &SecretString) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(b"drover seller limits v1\0");
    h.update(client_id.as_bytes());
    h.update(b"\0");
    h.update(refresh_token.expose_secret().as_bytes());
    h.finalize().to_vec()
}

/// A transaction-scoped advisory lock key for `digest`: registrations of one seller
/// take turns, so two at once cannot both find none and each keep its own limits.
fn lock_key(digest: &[u8]) -> i64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(b)
}

/// How long the server lets a transaction holding that lock sit idle: one whose client
/// went silent between its statements (past the call deadline) would otherwise hold the
/// lock, and every registration of that seller, until TCP gave up on it.
const IDLE_LIMIT: &str = "5000";

/// Takes the turns of every one of `digests` (until `tx` ends), always in the same order,
/// so two transactions taking the same two (credentials swapped between two accounts,
/// or a seller's new token sent to its accounts at once) wait for each other instead of
/// deadlocking. A turn taken again in the same transaction is held already.
pub(crate) async fn take_turns(tx: &mut PgConnection, digests: &[&[u8]]) -> Result<(), sqlx::Error> {
    let mut keys: Vec<i64> = digests.iter().map(|d| lock_key(d)).collect();
    keys.sort_unstable();
    keys.dedup();
    for key in keys {
        sqlx::query("SELECT set_config('idle_in_transaction_session_timeout', $2, true), pg_advisory_xact_lock($1)")
            .bind(key)
            .bind(IDLE_LIMIT)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

/// Takes `digest`'s turn (until `tx` ends) and answers the account whose limits a row
/// with `digest` shares: the first one registered with it, if any.
pub(crate) async fn shared_with(tx: &mut PgConnection, digest: &[u8]) -> Result<Option<String>, sqlx::Error> {
    take_turns(tx, &[digest]).await?;
    let shared: Option<(String,)> =
        sqlx::query_as("SELECT COALESCE(limits_of, id) FROM accounts WHERE credentials_digest = $1 ORDER BY created_at, id LIMIT 1")
            .bind(digest)
            .fetch_optional(&mut *tx)
            .await?;
    Ok(shared.map(|(of,)| of))
}

/// Row `id` is given the credentials whose digest is `digest`: its group becomes that of the first row holding them (its own when none
/// does), the rows that followed it with these credentials follow it there, and those
/// that followed it with its old ones keep sharing among themselves, led by the oldest
/// of them. The caller holds both digests' turns ([`take_turns`]). Answers the row's group.
pub(crate) async fn regroup(tx: &mut PgConnection, id: &str, digest: &[u8]) -> Result<String, sqlx::Error> {
    let others = shared_with(tx, digest).await?;
    // (the first row with these credentials may be one that follows this one)
    let group = others.unwrap_or_else(|| id.to_owned());
    sqlx::query("UPDATE accounts SET limits_of = $3 WHERE limits_of = $1 AND id <> $1 AND credentials_digest = $2")
        .bind(id)
        .bind(digest)
        .bind(&group)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "UPDATE accounts SET limits_of = (SELECT id FROM accounts WHERE limits_of = $1 AND id <> $1 \
         AND credentials_digest IS DISTINCT FROM $2 ORDER BY created_at, id LIMIT 1) \
         WHERE limits_of = $1 AND id <> $1 AND credentials_digest IS DISTINCT FROM $2",
    )
    .bind(id)
    .bind(digest)
    .execute(&mut *tx)
    .await?;
    Ok(group)
}

/// Which accounts' limits the API has read lately: a row's `limits_of` changes only
/// when an account's credentials are replaced (`regroup`), so the API asks the
/// database once per account and [`SETTLED_FOR`] (the workers read it with every run's
/// credentials). Bounded: emptied when full.
#[derive(Debug, Default)]
pub(crate) struct Settled(Mutex<HashMap<AccountId, (AccountId, std::time::Instant)>>);

/// Accounts [`Settled`] remembers before it starts again.
const SETTLED_MAX: usize = 100_000;
/// How long [`Settled`] keeps what it read: another replica's replacement of an
/// account's credentials is seen within it.
const SETTLED_FOR: std::time::Duration = std::time::Duration::from_secs(60);

impl Settled {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<AccountId, (AccountId, std::time::Instant)>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets every account's group (this process replaced some credentials: the
    /// accounts that followed it may have moved too).
    pub(crate) fn forget_all(&self) {
        self.lock().clear();
    }
}

impl AccountRepo {
    /// The account whose limits each of `ids` counts against (itself unless it shares
    /// a seller's); ids with no row are left out.
    pub async fn limits_of(&self, ids: &[AccountId]) -> Result<HashMap<AccountId, AccountId>, DbError> {
        let mut found = HashMap::new();
        let mut ask: Vec<&str> = Vec::new();
        {
            let settled = self.settled().lock();
            for id in ids {
                match settled.get(id).filter(|(_, at)| at.elapsed() < SETTLED_FOR) {
                    Some((of, _)) => {
                        found.insert(id.clone(), of.clone());
                    }
                    None => ask.push(id.as_str()),
                }
            }
        }
        if ask.is_empty() {
            return Ok(found);
        }
        let rows: Vec<(String, String, bool)> = self
            .deadline()
            .bound(
                sqlx::query_as("SELECT id, COALESCE(limits_of, id), limits_of IS NOT NULL FROM accounts WHERE id = ANY($1)")
                    .bind(&ask)
                    .fetch_all(self.pool()),
            )
            .await?;
        let mut settled = self.settled().lock();
        if settled.len() >= SETTLED_MAX {
            settled.clear();
        }
        for (id, of, set) in rows {
            let (Ok(id), Ok(of)) = (AccountId::parse(id), AccountId::parse(of)) else {
                continue;
            };
            if set {
                settled.insert(id.clone(), (of.clone(), std::time::Instant::now()));
            }
            found.insert(id, of);
        }
        Ok(found)
    }

    /// Give row `id`, registered by a release before migration 0007, its digest and the
    /// account whose limits it shares. Answers what the row holds then (another process
    /// may have filled it first) and whether this call filled it.
    pub(crate) async fn fill_row(&self, id: &str, client_id: &str, token: &SecretString) -> Result<(String, bool), DbError> {
        let digest = credentials_digest(client_id, token);
        let filled = self
            .deadline()
            .bound(async {
                let mut tx = self.pool().begin().await?;
                let of = shared_with(&mut tx, &digest).await?.unwrap_or_else(|| id.to_owned());
                let done =
                    sqlx::query("UPDATE accounts SET credentials_digest = $2, limits_of = $3 WHERE id = $1 AND credentials_digest IS NULL")
                        .bind(id)
                        .bind(&digest)
                        .bind(&of)
                        .execute(&mut *tx)
                        .await?;
                let (now,): (String,) = sqlx::query_as("SELECT COALESCE(limits_of, id) FROM accounts WHERE id = $1")
                    .bind(id)
                    .fetch_one(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok((now, done.rows_affected() > 0))
            })
            .await?;
        if filled.1 {
            tracing::info!(account = %id, limits_of = %filled.0, "account given the seller whose marketplace limits it shares");
        }
        Ok(filled)
    }

    /// Give every row registered before migration 0007 its digest and the account whose
    /// limits it shares (the API runs it once after the migrations; a worker fills a row
    /// it meets unfilled, [`Self::credentials`]). A row whose refresh token does not
    /// open is left on its own limits, for `credentials` to report. Returns how many
    /// rows it filled.
    pub async fn fill_seller_limits(&self, secrets: &SecretBox) -> Result<usize, DbError> {
        let rows: Vec<(String, String, Vec<u8>)> = self
            .deadline()
            .bound(
                sqlx::query_as(
                    "SELECT id, client_id, refresh_token_enc FROM accounts WHERE credentials_digest IS NULL ORDER BY created_at, id",
                )
                .fetch_all(self.pool()),
            )
            .await?;
        let mut filled = 0;
        for (id, client_id, sealed) in rows {
            let Ok(account) = AccountId::parse(id.clone()) else { continue };
            let token = match sealed_column::open(secrets, &account, Column::RefreshToken, &sealed) {
                Ok(Opened::Bound(t) | Opened::Legacy(t)) => t,
                Err(_) => continue,
            };
            filled += usize::from(self.fill_row(&id, &client_id, &token).await?.1);
        }
        Ok(filled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_is_of_the_client_and_the_token_together() {
        let token = SecretString::from("Atzr|token-one");
        let same = credentials_digest("client-a", &SecretString::from("Atzr|token-one"));
        assert_eq!(credentials_digest("client-a", &token), same);
        assert_ne!(credentials_digest("client-b", &token), same, "another application");
        assert_ne!(credentials_digest("client-a", &SecretString::from("Atzr|token-two")), same);
        // the separator keeps the two fields apart
        assert_ne!(
            credentials_digest("client-a", &SecretString::from("b")),
            credentials_digest("client-", &SecretString::from("ab"))
        );
        assert_eq!(same.len(), 32);
    }
}
