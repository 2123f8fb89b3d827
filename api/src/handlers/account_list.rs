//! `GET /v1/accounts`: the accounts a key may see, by id, a page at a time. The page
//! ends at an account id (`next_after`), not a sealed cursor: ids are what the key can
//! see anyway, and a key limited to accounts is held to them by the query itself.
use axum::extract::{RawQuery, State};
use axum::Json;
use chrono::{DateTime, Utc};
use drover::db::Account;
use drover::job::{AccountId, FieldError};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::accounts::repo;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::query;
use crate::problem_responses::{Invalid, RateLimited, Unauthorized, Unavailable};
use crate::state::AppState;

const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 1000;

/// Query parameters as sent; an empty value is taken as absent.
#[derive(Debug, Default, Deserialize)]
struct RawParams {
    limit: Option<String>,
    after: Option<String>,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // documents `RawParams`, which is what is parsed
pub struct AccountListParams {
    /// 1 to 1000, default 50.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// `next_after` of the previous page: accounts with a greater id.
    after: Option<String>,
}

/// An account in a listing: `GET /v1/accounts/{id}` adds when each resource last synced.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountSummary {
    pub id: String,
    pub seller_id: String,
    pub marketplace_ids: Vec<String>,
    pub client_id: String,
    /// Inactive accounts are skipped by schedules.
    pub active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Account> for AccountSummary {
    fn from(a: Account) -> Self {
        Self {
            id: a.id.into(),
            seller_id: a.seller_id,
            marketplace_ids: a.marketplace_ids.into_iter().map(String::from).collect(),
            client_id: a.client_id,
            active: a.active,
            created_at: a.created_at,
            updated_at: a.updated_at,
        }
    }
}

/// One page of accounts, by id.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountPage {
    pub accounts: Vec<AccountSummary>,
    /// Pass as `after` for the next page; null on the last page.
    pub next_after: Option<String>,
}

/// The accounts this key may see (a key limited to accounts: only those), by id.
#[utoipa::path(
    get,
    path = "/v1/accounts",
    tag = "accounts",
    params(AccountListParams),
    responses(
        (status = 200, body = AccountPage),
        Unauthorized,
        Invalid,
        RateLimited,
        Unavailable,
    )
)]
pub async fn list(State(state): State<AppState>, caller: Caller, RawQuery(raw): RawQuery) -> Result<Json<AccountPage>, ApiError> {
    let raw: RawParams = query(raw.as_deref())?;
    let mut errors = Vec::new();
    let limit = match raw.limit.filter(|l| !l.is_empty()) {
        None => DEFAULT_LIMIT,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                errors.push(FieldError::new("limit", format!("must be a whole number from 1 to {MAX_LIMIT}")));
                DEFAULT_LIMIT
            }
        },
    };
    let after = match raw.after.filter(|a| !a.is_empty()) {
        None => None,
        Some(a) => AccountId::parse(a).map_err(|e| errors.push(FieldError::new("after", e))).ok(),
    };
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let only: Option<Vec<AccountId>> = caller.accounts.as_ref().map(|set| set.iter().cloned().collect());
    // One more than asked for says whether there is a next page.
    let mut accounts = repo(&state)?.page(after.as_ref(), only.as_deref(), limit as i64 + 1).await?;
    let next_after = if accounts.len() > limit {
        accounts.truncate(limit);
        accounts.last().map(|a| a.id.to_string())
    } else {
        None
    };
    Ok(Json(AccountPage {
        accounts: accounts.into_iter().map(Into::into).collect(),
        next_after,
    }))
}
