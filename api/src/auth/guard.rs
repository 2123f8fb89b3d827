//! The per-route guard: authenticate, check the role, rate-limit writes.
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use secrecy::SecretString;

use super::{Caller, Role};
use crate::error::ApiError;
use crate::state::AppState;

pub async fn require_read(State(state): State<AppState>, req: Request, next: Next) -> Response {
    guard(state, Role::Read, req, next).await
}

/// The route whose bodies may be `api.csv_limit_bytes` (the others `api.body_limit_bytes`).
const CSV_PATH: &str = "/v1/jobs/cleanup.csv";

pub async fn require_submit(State(state): State<AppState>, req: Request, next: Next) -> Response {
    guard(state, Role::Submit, req, next).await
}

pub async fn require_admin(State(state): State<AppState>, req: Request, next: Next) -> Response {
    guard(state, Role::Admin, req, next).await
}

async fn guard(state: AppState, role: Role, mut req: Request, next: Next) -> Response {
    // Read the key before any await: a request (its body) must not be held across one.
    let presented = bearer(req.headers());
    match authorize(&state, role, presented).await {
        Ok(caller) => {
            // Its body's bytes, reserved before it is read (`body_budget.rs`), for as
            // long as the request runs.
            let limits = state.limits();
            let limit = if req.uri().path() == CSV_PATH {
                limits.csv_bytes
            } else {
                limits.body_bytes
            };
            let _body = match crate::body_budget::announced(req.headers(), limit) {
                0 => None,
                bytes => match state.body_budget().reserve(&caller.name, bytes) {
                    Ok(r) => Some(r),
                    Err(e) => return e.into_response(),
                },
            };
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

async fn authorize(state: &AppState, role: Role, presented: Result<SecretString, ApiError>) -> Result<Caller, ApiError> {
    let presented = presented?;
    let principal = state
        .keys()
        .authenticate(&presented)
        .ok_or_else(|| ApiError::Unauthorized("the API key is not valid".into()))?;
    // Every later line of the request names the key (its name, never the key).
    tracing::Span::current().record("key", principal.name.as_str());
    if principal.role < role {
        return Err(ApiError::Forbidden(format!(
            "this key's role is {}; this request needs {role}",
            principal.role
        )));
    }
    // Writes create work; reads cost Redis time: each has its own budget per key.
    let limits = state.limits_per_key();
    if role > Role::Read {
        limits.writes.check(&principal.name).await?;
    } else {
        limits.reads.check(&principal.name).await?;
    }
    Ok(Caller(principal))
}

fn bearer(headers: &HeaderMap) -> Result<SecretString, ApiError> {
    let missing = || ApiError::Unauthorized("missing API key: send Authorization: Bearer <key>".into());
    let value = headers.get(header::AUTHORIZATION).ok_or_else(missing)?;
    let value = value
        .to_str()
        .map_err(|_| ApiError::Unauthorized("the Authorization header is not valid".into()))?;
    let (scheme, key) = value.split_once(' ').ok_or_else(missing)?;
    if !scheme.eq_ignore_ascii_case("bearer") || key.trim().is_empty() {
        return Err(ApiError::Unauthorized(
            "unsupported Authorization scheme: send Authorization: Bearer <key>".into(),
        ));
    }
    Ok(SecretString::from(key.trim()))
}
