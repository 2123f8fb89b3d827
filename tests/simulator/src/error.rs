//! SP-API error responses: `{"errors":[{"code","message","details"}]}` with the status
//! codes the real API uses, so clients classify them exactly as they would in production.
use amazon_spapi::models::listings_items_2021_08_01::{Error as ModelError, ErrorList};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

/// Every way an SP-API call can fail in the simulator; the variant decides the status.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    /// 400: the request itself is wrong (bad query, body, date, page size, SKU).
    #[error("{0}")]
    InvalidInput(String),
    /// 401: no, unknown or expired access token.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: a valid token used for another seller's resources.
    #[error("{0}")]
    Forbidden(String),
    /// 404: unknown SKU, report or document.
    #[error("{0}")]
    NotFound(String),
    /// 429: the usage plan's bucket is empty, a forced burst, or a quota window.
    #[error("You exceeded your quota for the requested resource.")]
    QuotaExceeded { retry_after_s: u64 },
    /// 500 (injected).
    #[error("We encountered an internal error. Please try again.")]
    InternalFailure,
    /// 503 (injected).
    #[error("Service temporarily unavailable. Please try again.")]
    ServiceUnavailable,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidInput(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::QuotaExceeded { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::InternalFailure => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The `code` field, as SP-API spells it.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidInput(_) => "InvalidInput",
            ApiError::Unauthorized(_) | ApiError::Forbidden(_) => "Unauthorized",
            ApiError::NotFound(_) => "NotFound",
            ApiError::QuotaExceeded { .. } => "QuotaExceeded",
            ApiError::InternalFailure => "InternalFailure",
            ApiError::ServiceUnavailable => "ServiceUnavailable",
        }
    }

    /// A 5xx of the given status (only 500 and 503 are injected; anything else is 500).
    pub(crate) fn server_error(status: u16) -> Self {
        if status == 503 {
            ApiError::ServiceUnavailable
        } else {
            ApiError::InternalFailure
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorList::new(vec![ModelError::new(self.code().to_owned(), self.to_string())]);
        let mut response = (self.status(), Json(body)).into_response();
        if let ApiError::QuotaExceeded { retry_after_s } = self {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_s));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_exceeded_carries_retry_after_and_the_sp_api_code() {
        let response = ApiError::QuotaExceeded { retry_after_s: 60 }.into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            response.headers().get(header::RETRY_AFTER).and_then(|v| v.to_str().ok()),
            Some("60")
        );
    }
}
