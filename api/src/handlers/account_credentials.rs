//! `PUT /v1/accounts/{id}/credentials`: new credentials for a stored account (a seller's
//! revoked refresh token, a new LWA client secret, or every account sealed again after
//! the encryption key changed), and the credential check `POST /v1/accounts` shares.
//!
//! The credentials are checked with the marketplace's token service first (an admin may
//! skip that), then sealed with the current key in place of the old ones. The account's
//! id, seller, marketplaces, data and jobs stay as they are; the marketplace limits it
//! counts against follow the credentials (`drover::db::seller_limits`). No answer, log
//! line or audit entry carries the secret or the refresh token.
use axum::extract::{Path, State};
use axum::Json;
use drover::job::AccountId;
use drover::lwa::{LwaCredentials, LwaError};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use utoipa::ToSchema;

use super::accounts::{self, AccountView};
use crate::audit::{self, Action};
use crate::auth::{Caller, Role};
use crate::error::{ApiError, Problem, PROBLEM_JSON};
use crate::extract::JsonBody;
use crate::problem_responses::{AccountNotFound, Invalid, PayloadTooLarge, Unauthorized, UnsupportedMediaType};
use crate::state::AppState;

/// `PUT /v1/accounts/{id}/credentials`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCredentials {
    /// The LWA app's client id.
    #[schema(example = "amzn1.application-oa2-client.0123")]
    pub client_id: String,
    /// Stored encrypted; never returned.
    #[schema(value_type = String, format = Password)]
    pub client_secret: SecretString,
    /// The seller's LWA refresh token. Stored encrypted; never returned.
    #[schema(value_type = String, format = Password)]
    pub refresh_token: SecretString,
    /// Store without checking the credentials with the marketplace (admin only).
    #[serde(default)]
    pub skip_validation: bool,
}

/// How long the answer waits for the account's last syncs once its credentials are stored.
const LAST_SYNCED_READ: std::time::Duration = std::time::Duration::from_secs(2);

/// The longest client secret or refresh token accepted.
pub(super) const MAX_SECRET: usize = 4096;

/// Replace an account's credentials (sealed with the API's current encryption key): the
/// workers' next token exchange for the account uses them. An access token the old ones
/// got is used until it expires (at most an hour) or the marketplace refuses it (a
/// revoked one at once). The account counts against the limits of the first account
/// holding the same credentials, else its own.
#[utoipa::path(
    put,
    path = "/v1/accounts/{id}/credentials",
    tag = "accounts",
    params(("id" = String, Path, description = "Account id")),
    request_body = NewCredentials,
    responses(
        PayloadTooLarge,
        (status = 200, description = "Stored; the marketplace accepted them (or validation was skipped)", body = AccountView),
        (status = 400, description = "Malformed JSON, or the marketplace rejected the credentials (its OAuth error code is named)", body = Problem, content_type = PROBLEM_JSON),
        Unauthorized,
        (status = 403, description = "Not admin and not a submit key limited to accounts; or skip_validation without admin", body = Problem, content_type = PROBLEM_JSON),
        AccountNotFound,
        UnsupportedMediaType,
        Invalid,
        (status = 429, description = "Over the key's write rate, or (keys limited to accounts) over 10 credential checks a minute", body = Problem, content_type = PROBLEM_JSON),
        (status = 503, description = "Postgres unavailable, or the marketplace could not be reached to validate; nothing was changed — unless the request timed out after the change was made (the problem says so: GET the account)", body = Problem, content_type = PROBLEM_JSON),
    )
)]
pub async fn replace(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<NewCredentials>,
) -> Result<Json<AccountView>, ApiError> {
    let what = Action::on("account.credentials", id.clone()).with_filter(serde_json::json!({"skip_validation": req.skip_validation}));
    audit::recorded(&state, &caller, what, 1, |state, caller| async move {
        store(&state, &caller, &id, req).await
    })
    .await
}

async fn store(state: &AppState, caller: &Caller, raw_id: &str, req: NewCredentials) -> Result<Json<AccountView>, ApiError> {
    // Who may, then whether it is there for this key (the same 404 as a read), then the
    // values: a key never learns of an account outside its scope.
    if caller.role < Role::Admin && caller.accounts.is_none() {
        return Err(ApiError::Forbidden(
            "replacing credentials needs an admin key, or a submit key limited to that account".into(),
        ));
    }
    if req.skip_validation && caller.role < Role::Admin {
        return Err(ApiError::Forbidden("skip_validation needs an admin key".into()));
    }
    let account = accounts::load(state, caller, raw_id).await?;
    let skip_validation = req.skip_validation;
    let credentials = checked(req)?;
    if !skip_validation {
        validate(state, caller, &account.id, &credentials).await?;
    }
    let repo = accounts::repo(state)?;
    let replaced = repo
        .replace_credentials(&account.id, &credentials, &state.accounts().secrets)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no account {:?}", account.id.as_str())))?;
    tracing::info!(account = %replaced.id, validated = !skip_validation, key = %caller.name, "account credentials replaced");
    // The credentials are replaced: a failure to read the last syncs only leaves them
    // out of the answer, which must not say the change failed; bounded, so a silent
    // Postgres cannot hold back the action's audit entry (found by an audit of 2026-12-06).
    let read = async {
        match repo.pool().acquire().await {
            Ok(mut conn) => drover::data::last_synced::load(&mut conn, replaced.id.as_str())
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    };
    let synced = tokio::time::timeout(LAST_SYNCED_READ, read)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {LAST_SYNCED_READ:?}")));
    let synced = synced.unwrap_or_else(|error| {
        tracing::warn!(account = %replaced.id, error, "could not read the account's last syncs after replacing its credentials");
        Default::default()
    });
    Ok(Json(AccountView::new(replaced, synced.into())))
}

/// The request's credentials, or every problem with them, each naming its field.
fn checked(req: NewCredentials) -> Result<LwaCredentials, ApiError> {
    let credentials = LwaCredentials {
        client_id: req.client_id,
        client_secret: req.client_secret,
        refresh_token: req.refresh_token,
    };
    let errors = problems(&credentials);
    if errors.is_empty() {
        Ok(credentials)
    } else {
        Err(ApiError::Validation(errors))
    }
}

/// What is wrong with each credential's value, never the value.
pub(super) fn problems(credentials: &LwaCredentials) -> Vec<drover::job::FieldError> {
    use drover::job::FieldError;
    let mut errors = Vec::new();
    let client_id = &credentials.client_id;
    if client_id.trim().is_empty() || client_id.len() > 256 || client_id.chars().any(char::is_control) {
        errors.push(FieldError::new("client_id", "must be 1 to 256 printable characters"));
    }
    for (field, secret) in [
        ("client_secret", &credentials.client_secret),
        ("refresh_token", &credentials.refresh_token),
    ] {
        let s = secret.expose_secret();
        if s.trim().is_empty() || s.len() > MAX_SECRET {
            errors.push(FieldError::new(field, format!("must be 1 to {MAX_SECRET} characters")));
        }
    }
    errors
}

/// Asks the marketplace's token service whether `credentials` work. Each check by a key
/// limited to accounts (or not an admin) counts against its credential checks, so the
/// endpoint cannot be used to test credentials in bulk; a rejection names its OAuth
/// error code only.
pub(super) async fn validate(state: &AppState, caller: &Caller, account: &AccountId, credentials: &LwaCredentials) -> Result<(), ApiError> {
    let accounts = state.accounts();
    if caller.role < Role::Admin || caller.accounts.is_some() {
        accounts.checks.check(&caller.name).await?;
    }
    match drover::lwa::exchange_with_timeout(&accounts.http, &accounts.token_url, credentials, accounts.token_timeout).await {
        Ok(_) => Ok(()),
        Err(LwaError::Rejected { code, .. }) => Err(ApiError::BadRequest(format!("the marketplace rejected these credentials: {code}"))),
        Err(e @ LwaError::Unavailable(_)) => {
            tracing::warn!(account = %account, error = %e, "could not validate account credentials");
            Err(ApiError::UpstreamUnavailable(
                "could not reach the marketplace to validate credentials; retry later or use skip_validation".into(),
            ))
        }
    }
}
