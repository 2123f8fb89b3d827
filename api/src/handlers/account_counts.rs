//! `GET /v1/accounts/{id}/counts`: the account's jobs by state in every kind, read from
//! counters the queue keeps at write time (a few reads per kind, whatever the number of
//! jobs).
use axum::extract::{Path, State};
use axum::Json;

use super::accounts::load;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::problem_responses::{AccountNotFound, RateLimited, Unauthorized, Unavailable};
use crate::state::AppState;
use crate::views::AccountJobCounts;

/// The account's jobs by state, per kind (`complete` is false while an upgrade's older
/// jobs are still being counted).
#[utoipa::path(
    get,
    path = "/v1/accounts/{id}/counts",
    tag = "accounts",
    params(("id" = String, Path, description = "Account id")),
    responses(
        (status = 200, body = AccountJobCounts),
        Unauthorized,
        AccountNotFound,
        RateLimited,
        Unavailable,
    )
)]
pub async fn counts(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<Json<AccountJobCounts>, ApiError> {
    let account = load(&state, &caller, &id).await?;
    let counts = state.store().account_counts(account.id.as_str()).await?;
    Ok(Json(AccountJobCounts::new(account.id.as_str().to_owned(), counts)))
}
