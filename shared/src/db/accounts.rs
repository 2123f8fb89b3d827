//! Seller accounts and their marketplace credentials. The client secret and refresh token
//! are sealed with [`SecretBox`] before they reach the database and opened only by
//! [`AccountRepo::credentials`], for the workers that call the marketplace.
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{FromRow, PgPool};

use super::DbError;
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
}

impl AccountRepo {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Store a new account, its secrets sealed with `secrets`. An existing id is a `Conflict`.
    pub async fn insert(&self, new: &NewAccount, secrets: &SecretBox) -> Result<Account, DbError> {
        let marketplace_ids: Vec<String> = new.marketplace_ids.iter().map(|m| m.as_str().to_owned()).collect();
        let row: AccountRow = sqlx::query_as(concat!(
            "INSERT INTO accounts (id, seller_id, marketplace_ids, client_id, client_secret_enc, refresh_token_enc) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING ",
            columns!()
        ))
        .bind(new.id.as_str())
        .bind(&new.seller_id)
        .bind(&marketplace_ids)
        .bind(&new.credentials.client_id)
        .bind(secrets.encrypt(&new.credentials.client_secret))
        .bind(secrets.encrypt(&new.credentials.refresh_token))
        .fetch_one(&self.pool)
        .await
        .map_err(|e| match DbError::from(e) {
            DbError::Conflict(_) => DbError::Conflict(format!("account {} already exists", new.id)),
            other => other,
        })?;
        row.try_into()
    }

    pub async fn get(&self, id: &AccountId) -> Result<Option<Account>, DbError> {
        let row: Option<AccountRow> = sqlx::query_as(concat!("SELECT ", columns!(), " FROM accounts WHERE id = $1"))
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.map(Account::try_from).transpose()
    }

    /// The account with its credentials opened, for calling the marketplace.
    pub async fn credentials(&self, id: &AccountId, secrets: &SecretBox) -> Result<Option<AccountCredentials>, DbError> {
        let row: Option<SealedRow> = sqlx::query_as(concat!(
            "SELECT ",
            columns!(),
            ", client_secret_enc, refresh_token_enc FROM accounts WHERE id = $1"
        ))
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let account = Account::try_from(row.account)?;
        let open = |sealed: &[u8], what: &str| {
            secrets
                .decrypt(sealed)
                .map_err(|e| DbError::Other(format!("the {what} of account {id} cannot be decrypted: {e}")))
        };
        let credentials = LwaCredentials {
            client_id: account.client_id.clone(),
            client_secret: open(&row.client_secret_enc, "client secret")?,
            refresh_token: open(&row.refresh_token_enc, "refresh token")?,
        };
        Ok(Some(AccountCredentials { account, credentials }))
    }

    /// Active accounts, by id (what schedules fan out over).
    pub async fn list_active(&self) -> Result<Vec<Account>, DbError> {
        let rows: Vec<AccountRow> = sqlx::query_as(concat!("SELECT ", columns!(), " FROM accounts WHERE active ORDER BY id"))
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(Account::try_from).collect()
    }

    /// Switch an account on or off; `NotFound` when there is no such account.
    pub async fn set_active(&self, id: &AccountId, active: bool) -> Result<(), DbError> {
        let done = sqlx::query("UPDATE accounts SET active = $2, updated_at = now() WHERE id = $1")
            .bind(id.as_str())
            .bind(active)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(DbError::NotFound(format!("no account {id}")));
        }
        Ok(())
    }
}
