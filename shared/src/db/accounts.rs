//! Seller accounts and their marketplace credentials. The client secret and refresh token
//! are sealed with [`SecretBox`], bound to their account and column (`sealed_column.rs`),
//! before they reach the database, and opened only by [`AccountRepo::credentials`], for
//! the workers that call the marketplace.
use std::sync::Arc;

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::Serialize;
use sqlx::{FromRow, PgPool};

use super::sealed_column::{self, Column, Opened};
use super::seller_limits;
use super::{CallDeadline, DbError};
use crate::crypto::SecretBox;
use crate::job::{AccountId, MarketplaceId};
use crate::lwa::LwaCredentials;

/// An account as the API shows it: no secrets, sealed or not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Account {
    pub id: AccountId,
    pub seller_id: String,
    pub marketplace_ids: Vec<MarketplaceId>,
    /// LWA client ids are not secret (they appear in consent URLs).
    pub client_id: String,
    pub active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What `insert` stores; the secrets are sealed on the way in.
#[derive(Debug, Clone)]
pub struct NewAccount {
    pub id: AccountId,
    pub seller_id: String,
    pub marketplace_ids: Vec<MarketplaceId>,
    pub credentials: LwaCredentials,
}

/// An account with its opened credentials (for workers only; Debug redacts the secrets).
#[derive(Debug, Clone)]
pub struct AccountCredentials {
    pub account: Account,
    pub credentials: LwaCredentials,
    /// The account whose marketplace limits this one counts against: itself, or the
    /// first account registered with the same credentials (`seller_limits.rs`).
    pub limits_of: AccountId,
}

/// What row `id` stores of `creds`: their digest (`seller_limits.rs`), and the client
/// secret and refresh token sealed to that row and column.
fn stored(id: &AccountId, creds: &LwaCredentials, secrets: &SecretBox) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    (
        seller_limits::credentials_digest(&creds.client_id, &creds.refresh_token),
        sealed_column::seal(secrets, id, Column::ClientSecret, &creds.client_secret),
        sealed_column::seal(secrets, id, Column::RefreshToken, &creds.refresh_token),
    )
}

/// The columns of [`AccountRow`] (a macro so queries stay `&'static str`, never built at run time).
macro_rules! columns {
    () => {
        "id, seller_id, marketplace_ids, client_id, active, created_at, updated_at"
    };
}

#[derive(FromRow)]
struct AccountRow {
    id: String,
    seller_id: String,
    marketplace_ids: Vec<String>,
    client_id: String,
    active: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

#[derive(FromRow)]
struct SealedRow {
    #[sqlx(flatten)]
    account: AccountRow,
    client_secret_enc: Vec<u8>,
    refresh_token_enc: Vec<u8>,
    limits_of: String,
    credentials_digest: Option<Vec<u8>>,
}

impl TryFrom<AccountRow> for Account {
    type Error = DbError;
    fn try_from(r: AccountRow) -> Result<Self, DbError> {
        // Rows are only written through `insert`, which takes parsed ids; a row that does not
        // parse was written by something else, and is reported without its content.
        let corrupt = |what: &str| DbError::Other(format!("an accounts row holds an invalid {what}"));
        Ok(Account {
            id: AccountId::parse(r.id).map_err(|_| corrupt("id"))?,
            seller_id: r.seller_id,
            marketplace_ids: r
                .marketplace_ids
                .into_iter()
                .map(MarketplaceId::parse)
                .collect::<Result<_, _>>()
                .map_err(|_| corrupt("marketplace id"))?,
            client_id: r.client_id,
            active: r.active,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

/// The `accounts` table.
#[derive(Debug, Clone)]
pub struct AccountRepo {
    pool: PgPool,
    deadline: CallDeadline,
    /// Which accounts' shared limits are known for good (`seller_limits.rs`).
    settled: Arc<seller_limits::Settled>,
}

impl AccountRepo {
    /// Calls bounded by the default [`CallDeadline`]; see [`Self::bounded_by`].
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            deadline: CallDeadline::default(),
            settled: Arc::default(),
        }
    }

    /// Every call given up (as unavailable) after `deadline`.
    pub fn bounded_by(self, deadline: CallDeadline) -> Self {
        Self { deadline, ..self }
    }

    pub fn deadline(&self) -> CallDeadline {
        self.deadline
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub(crate) fn settled(&self) -> &seller_limits::Settled {
        &self.settled
    }

    /// Store a new account, its secrets sealed with `secrets`. An existing id is a `Conflict`.
    /// An account with the same credentials as one stored before (the same seller and
    /// application) shares that one's marketplace limits (`seller_limits.rs`).
    pub async fn insert(&self, new: &NewAccount, secrets: &SecretBox) -> Result<Account, DbError> {
        let marketplace_ids: Vec<String> = new.marketplace_ids.iter().map(|m| m.as_str().to_owned()).collect();
        let creds = &new.credentials;
        let (digest, client_secret, refresh_token) = stored(&new.id, creds, secrets);
        let row: AccountRow = self
            .deadline
            .bound(async {
                let mut tx = self.pool.begin().await?;
                let limits_of = seller_limits::shared_with(&mut tx, &digest)
                    .await?
                    .unwrap_or_else(|| new.id.as_str().to_owned());
                let row = sqlx::query_as(concat!(
                    "INSERT INTO accounts (id, seller_id, marketplace_ids, client_id, client_secret_enc, refresh_token_enc, \
                     credentials_digest, limits_of) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING ",
                    columns!()
                ))
                .bind(new.id.as_str())
                .bind(&new.seller_id)
                .bind(&marketplace_ids)
                .bind(&creds.client_id)
                .bind(client_secret)
                .bind(refresh_token)
                .bind(&digest)
                .bind(limits_of)
                .fetch_one(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(row)
            })
            .await
            .map_err(|e| match DbError::from(e) {
                DbError::Conflict(_) => DbError::Conflict(format!("account {} already exists", new.id)),
                other => other,
            })?;
        row.try_into()
    }

    /// Replaces a stored account's credentials (client id, secret and refresh token,
    /// sealed with `secrets`, the current key); `None` when there is no such account.
    /// The marketplace limits it counts against follow the credentials, as at
    /// registration: those of the first account holding the new ones, else its own; the
    /// accounts that shared its old ones keep sharing among themselves
    /// (`seller_limits::regroup`).
    pub async fn replace_credentials(
        &self,
        id: &AccountId,
        creds: &LwaCredentials,
        secrets: &SecretBox,
    ) -> Result<Option<Account>, DbError> {
        let (digest, client_secret, refresh_token) = stored(id, creds, secrets);
        let row: Option<AccountRow> = self
            .deadline
            .bound(async {
                let mut tx = self.pool.begin().await?;
                // The turns of the old and the new credentials first, in a fixed order,
                // then the row: as registration takes a turn before it writes (found by
                // the review of this change: the row first deadlocked two replacements).
                let old: Option<(Option<Vec<u8>>,)> = sqlx::query_as("SELECT credentials_digest FROM accounts WHERE id = $1")
                    .bind(id.as_str())
                    .fetch_optional(&mut *tx)
                    .await?;
                let Some((old,)) = old else {
                    return Ok(None);
                };
                let turns: Vec<&[u8]> = old.as_deref().into_iter().chain([digest.as_slice()]).collect();
                seller_limits::take_turns(&mut tx, &turns).await?;
                let locked: Option<(i32,)> = sqlx::query_as("SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE")
                    .bind(id.as_str())
                    .fetch_optional(&mut *tx)
                    .await?;
                if locked.is_none() {
                    return Ok(None);
                }
                let group = seller_limits::regroup(&mut tx, id.as_str(), &digest).await?;
                let row = sqlx::query_as(concat!(
                    "UPDATE accounts SET client_id = $2, client_secret_enc = $3, refresh_token_enc = $4, \
                     credentials_digest = $5, limits_of = $6, updated_at = now() WHERE id = $1 RETURNING ",
                    columns!()
                ))
                .bind(id.as_str())
                .bind(&creds.client_id)
                .bind(client_secret)
                .bind(refresh_token)
                .bind(&digest)
                .bind(group)
                .fetch_optional(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(row)
            })
            .await?;
        self.settled().forget_all();
        row.map(Account::try_from).transpose()
    }

    pub async fn get(&self, id: &AccountId) -> Result<Option<Account>, DbError> {
        let row: Option<AccountRow> = self
            .deadline
            .bound(
                sqlx::query_as(concat!("SELECT ", columns!(), " FROM accounts WHERE id = $1"))
                    .bind(id.as_str())
                    .fetch_optional(&self.pool),
            )
            .await?;
        row.map(Account::try_from).transpose()
    }

    /// The account with its credentials opened, for calling the marketplace.
    pub async fn credentials(&self, id: &AccountId, secrets: &SecretBox) -> Result<Option<AccountCredentials>, DbError> {
        let row: Option<SealedRow> = self
            .deadline
            .bound(
                sqlx::query_as(concat!(
                    "SELECT ",
                    columns!(),
                    ", client_secret_enc, refresh_token_enc, COALESCE(limits_of, id) AS limits_of, credentials_digest \
                     FROM accounts WHERE id = $1"
                ))
                .bind(id.as_str())
                .fetch_optional(&self.pool),
            )
            .await
            .map_err(super::schema_behind_is_unavailable)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let account = Account::try_from(row.account)?;
        let client_secret = self.open(secrets, id, Column::ClientSecret, &row.client_secret_enc).await?;
        let refresh_token = self.open(secrets, id, Column::RefreshToken, &row.refresh_token_enc).await?;
        // A row a release before migration 0007 registered shares its seller's limits
        // from its first use here on. An outage stops the run as any other read's does;
        // another failure leaves it on its own limits (logged).
        let limits_of = match row.credentials_digest {
            Some(_) => row.limits_of,
            None => match self.fill_row(id.as_str(), &account.client_id, &refresh_token).await {
                Ok((of, _)) => of,
                Err(e) if e.is_unavailable() => return Err(e),
                Err(e) => {
                    tracing::warn!(account = %id, error = %e, "could not find which accounts share this seller's limits; using its own");
                    row.limits_of
                }
            },
        };
        let limits_of = AccountId::parse(limits_of).map_err(|_| DbError::Other("an accounts row holds an invalid limits_of".into()))?;
        let credentials = LwaCredentials {
            client_id: account.client_id.clone(),
            client_secret,
            refresh_token,
        };
        Ok(Some(AccountCredentials {
            account,
            credentials,
            limits_of,
        }))
    }

    /// Open one sealed column of `id`'s row. A value sealed before values were bound to
    /// their row still opens; it is not re-sealed here, because a worker of the previous
    /// version (during a rolling upgrade) could not open the re-sealed value: the API
    /// re-seals once it starts ([`Self::reseal_legacy`]), after every worker is upgraded.
    async fn open(&self, secrets: &SecretBox, id: &AccountId, column: Column, sealed: &[u8]) -> Result<SecretString, DbError> {
        sealed_column::open(secrets, id, column, sealed)
            .map(|opened| match opened {
                Opened::Bound(s) | Opened::Legacy(s) => s,
            })
            .map_err(|e| DbError::Other(format!("the {} of account {id} cannot be decrypted: {e}", column.name())))
    }

    async fn reseal(
        &self,
        secrets: &SecretBox,
        id: &AccountId,
        column: Column,
        old: &[u8],
        secret: &SecretString,
    ) -> Result<bool, DbError> {
        let new = sealed_column::seal(secrets, id, column, secret);
        // Column names come from `Column`, never from input.
        let sql = match column {
            Column::ClientSecret => "UPDATE accounts SET client_secret_enc = $3 WHERE id = $1 AND client_secret_enc = $2",
            Column::RefreshToken => "UPDATE accounts SET refresh_token_enc = $3 WHERE id = $1 AND refresh_token_enc = $2",
        };
        let done = self
            .deadline
            .bound(sqlx::query(sql).bind(id.as_str()).bind(old).bind(new).execute(&self.pool))
            .await?;
        if done.rows_affected() > 0 {
            tracing::info!(account = %id, column = column.name(), "re-sealed a credential bound to its account and column");
        }
        Ok(done.rows_affected() > 0)
    }

    /// Re-seal every credential sealed before values were bound to their row and column
    /// (run once after the migrations; later reads find nothing to do). Values that open
    /// neither way are left for `credentials` to report. Returns how many were re-sealed.
    pub async fn reseal_legacy(&self, secrets: &SecretBox) -> Result<usize, DbError> {
        let rows: Vec<(String, Vec<u8>, Vec<u8>)> = self
            .deadline
            .bound(sqlx::query_as("SELECT id, client_secret_enc, refresh_token_enc FROM accounts ORDER BY id").fetch_all(&self.pool))
            .await?;
        let mut done = 0;
        for (id, client_secret, refresh_token) in rows {
            let Ok(id) = AccountId::parse(id) else { continue };
            for (column, sealed) in [(Column::ClientSecret, client_secret), (Column::RefreshToken, refresh_token)] {
                if let Ok(Opened::Legacy(secret)) = sealed_column::open(secrets, &id, column, &sealed) {
                    done += usize::from(self.reseal(secrets, &id, column, &sealed, &secret).await?);
                }
            }
        }
        Ok(done)
    }

    /// Active accounts, by id (what schedules fan out over).
    /// Every registered account, active or not (the scheduler's view of them).
    pub async fn list_all(&self) -> Result<Vec<Account>, DbError> {
        let rows: Vec<AccountRow> = self
            .deadline
            .bound(sqlx::query_as(concat!("SELECT ", columns!(), " FROM accounts ORDER BY id")).fetch_all(&self.pool))
            .await?;
        rows.into_iter().map(Account::try_from).collect()
    }

    pub async fn list_active(&self) -> Result<Vec<Account>, DbError> {
        let rows: Vec<AccountRow> = self
            .deadline
            .bound(sqlx::query_as(concat!("SELECT ", columns!(), " FROM accounts WHERE active ORDER BY id")).fetch_all(&self.pool))
            .await?;
        rows.into_iter().map(Account::try_from).collect()
    }

    /// Up to `limit` accounts by id, after `after`, only those in `only` when given (a
    /// key's accounts): one page of `GET /v1/accounts`.
    pub async fn page(&self, after: Option<&AccountId>, only: Option<&[AccountId]>, limit: i64) -> Result<Vec<Account>, DbError> {
        let only: Option<Vec<&str>> = only.map(|ids| ids.iter().map(AccountId::as_str).collect());
        let rows: Vec<AccountRow> = self
            .deadline
            .bound(
                sqlx::query_as(concat!(
                    "SELECT ",
                    columns!(),
                    " FROM accounts WHERE ($1::text IS NULL OR id > $1) AND ($2::text[] IS NULL OR id = ANY($2)) ORDER BY id LIMIT $3"
                ))
                .bind(after.map(AccountId::as_str))
                .bind(only)
                .bind(limit)
                .fetch_all(&self.pool),
            )
            .await?;
        rows.into_iter().map(Account::try_from).collect()
    }

    /// Switch an account on or off; `NotFound` when there is no such account.
    pub async fn set_active(&self, id: &AccountId, active: bool) -> Result<(), DbError> {
        let done = self
            .deadline
            .bound(
                sqlx::query("UPDATE accounts SET active = $2, updated_at = now() WHERE id = $1")
                    .bind(id.as_str())
                    .bind(active)
                    .execute(&self.pool),
            )
            .await?;
        if done.rows_affected() == 0 {
            return Err(DbError::NotFound(format!("no account {id}")));
        }
        Ok(())
    }
}
