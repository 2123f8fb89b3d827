//! Which accounts share a seller's marketplace limits (`accounts.limits_of`, migration
//! 0007): the marketplace counts calls per seller and application — per credentials —
//! so accounts registered with the same client id and refresh token share one limiter,
//! one set of cooldowns and breakers, keyed by the first such account's id.
use std::collections::HashMap;

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

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
pub(crate) fn lock_key(digest: &[u8]) -> i64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(b)
}

/// The account whose limits a new row with `digest` shares: the first one registered
/// with the same digest, if any. Run in the inserting transaction, under [`lock_key`].
pub(crate) const SHARED_WITH: &str =
    "SELECT COALESCE(limits_of, id) FROM accounts WHERE credentials_digest = $1 ORDER BY created_at, id LIMIT 1";

impl AccountRepo {
    /// The account whose limits each of `ids` counts against (itself unless it shares
    /// a seller's); ids with no row are left out.
    pub async fn limits_of(&self, ids: &[AccountId]) -> Result<HashMap<AccountId, AccountId>, DbError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let names: Vec<&str> = ids.iter().map(AccountId::as_str).collect();
        let rows: Vec<(String, String)> = self
            .deadline()
            .bound(
                sqlx::query_as("SELECT id, COALESCE(limits_of, id) FROM accounts WHERE id = ANY($1)")
                    .bind(&names)
                    .fetch_all(self.pool()),
            )
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(id, of)| Some((AccountId::parse(id).ok()?, AccountId::parse(of).ok()?)))
            .collect())
    }

    /// Give every row registered before migration 0007 its digest and the account whose
    /// limits it shares (run once after the migrations, as [`Self::reseal_legacy`];
    /// later runs find nothing to do). A row whose refresh token does not open is left
    /// on its own limits, for `credentials` to report. Returns how many rows it filled.
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
            let digest = credentials_digest(&client_id, &token);
            let done = self
                .deadline()
                .bound(async {
                    let mut tx = self.pool().begin().await?;
                    sqlx::query("SELECT pg_advisory_xact_lock($1)")
                        .bind(lock_key(&digest))
                        .execute(&mut *tx)
                        .await?;
                    let shared: Option<(String,)> = sqlx::query_as(SHARED_WITH).bind(&digest).fetch_optional(&mut *tx).await?;
                    let of = shared.map_or(id.clone(), |(of,)| of);
                    let done = sqlx::query(
                        "UPDATE accounts SET credentials_digest = $2, limits_of = $3 WHERE id = $1 AND credentials_digest IS NULL",
                    )
                    .bind(&id)
                    .bind(&digest)
                    .bind(&of)
                    .execute(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    Ok(done.rows_affected())
                })
                .await?;
            filled += done as usize;
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
