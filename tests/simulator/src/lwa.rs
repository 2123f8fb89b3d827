//! Login with Amazon: `POST /auth/o2/token`, the refresh-token grant.
//!
//! Errors follow LWA (OAuth 2) rather than SP-API: `{"error","error_description"}`;
//! an unknown refresh token is 400 `invalid_grant`, a wrong client id or secret is
//! 401 `invalid_client`, as LWA answers them.
use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequest, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::conn::ConnHandle;
use super::error::ApiError;
use super::faults::Verdict;
use super::operation::Operation;
use super::state::Sim;
use super::stats::CallEnd;

/// LWA's answer to a successful grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: String,
    pub expires_in: u64,
    pub refresh_token: String,
}

/// An LWA error.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LwaError {
    status: StatusCode,
    error: &'static str,
    description: String,
    retry_after_s: Option<u64>,
}

impl LwaError {
    fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        Self {
            status,
            error,
            description: description.into(),
            retry_after_s: None,
        }
    }

    /// The LWA form of an injected fault.
    fn from_fault(error: ApiError) -> Self {
        match error {
            ApiError::QuotaExceeded { retry_after_s } => Self {
                retry_after_s: Some(retry_after_s),
                ..Self::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too_many_requests",
                    "Request rate exceeded; slow down.",
                )
            },
            ApiError::ServiceUnavailable => Self::new(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", error.to_string()),
            other => Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", other.to_string()),
        }
    }
}

impl IntoResponse for LwaError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.error, "error_description": self.description });
        let mut response = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after_s {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

pub(crate) async fn token(State(sim): State<Arc<Sim>>, request: Request) -> Response {
    let conn = request.extensions().get::<ConnectInfo<ConnHandle>>().map(|info| info.0.clone());
    let form = match Form::<HashMap<String, String>>::from_request(request, &()).await {
        Ok(Form(form)) => form,
        Err(rejection) => return LwaError::new(StatusCode::BAD_REQUEST, "invalid_request", rejection.body_text()).into_response(),
    };
    let field = |name: &str| form.get(name).map(String::as_str).filter(|v| !v.is_empty());
    let (Some(grant_type), Some(refresh_token), Some(client_id), Some(client_secret)) = (
        field("grant_type"),
        field("refresh_token"),
        field("client_id"),
        field("client_secret"),
    ) else {
        let missing = ["grant_type", "refresh_token", "client_id", "client_secret"]
            .into_iter()
            .find(|n| field(n).is_none())
            .unwrap_or("");
        return LwaError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("The request is missing a required parameter : {missing}"),
        )
        .into_response();
    };
    if grant_type != "refresh_token" {
        return LwaError::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            format!("The grant type {grant_type:?} is not supported."),
        )
        .into_response();
    }

    let account = {
        let mut inner = sim.lock();
        match inner.account_by_refresh_token(refresh_token) {
            None => {
                inner.count_unauthenticated(Operation::LwaToken);
                return LwaError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "The request has an invalid grant parameter : refresh_token",
                )
                .into_response();
            }
            Some(acct) if acct.credentials.client_id != client_id || acct.credentials.client_secret != client_secret => {
                acct.token_failures += 1;
                return LwaError::new(StatusCode::UNAUTHORIZED, "invalid_client", "Client authentication failed").into_response();
            }
            Some(acct) => acct.id().to_owned(),
        }
    };

    // Token exchanges are not job calls: no trace context to record.
    let Some(admission) = sim.admit(&account, Operation::LwaToken, None) else {
        return LwaError::new(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "The request has an invalid grant parameter : refresh_token",
        )
        .into_response();
    };
    if !admission.latency.is_zero() {
        tokio::time::sleep(admission.latency).await;
    }
    let response = match admission.verdict {
        Some(Verdict::Reset) => {
            sim.finish(&account, Operation::LwaToken, CallEnd::Reset, None);
            if let Some(conn) = conn {
                conn.reset();
            }
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
        Some(Verdict::Reject(error)) => LwaError::from_fault(error).into_response(),
        None => grant(&sim, &account, refresh_token).into_response(),
    };
    sim.finish(&account, Operation::LwaToken, CallEnd::Status(response.status().as_u16()), None);
    response
}

fn grant(sim: &Sim, account: &str, refresh_token: &str) -> Json<TokenResponse> {
    let now = Instant::now();
    let mut inner = sim.lock();
    let ttl = inner
        .account_mut(account)
        .and_then(|a| a.faults.token_ttl())
        .unwrap_or(sim.config.token_ttl);
    let inner = &mut *inner;
    let access_token = inner.tokens.grant(account, ttl, &mut inner.rng, now);
    if let Some(acct) = inner.account_mut(account) {
        acct.token_grants += 1;
    }
    Json(TokenResponse {
        access_token,
        token_type: "bearer".to_owned(),
        expires_in: ttl.as_secs(),
        refresh_token: refresh_token.to_owned(),
    })
}
