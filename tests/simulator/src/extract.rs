//! Request extractors whose rejections are SP-API 400s (`InvalidInput`) instead of
//! axum's plain-text ones, so a bad request never panics and always reads like SP-API.
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::Json;
use chrono::{DateTime, NaiveDate, Utc};
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// Query parameters. SP-API sends lists comma-separated (`MarketplaceIds=A,B`); repeated
/// names are accepted too.
pub(crate) struct Params(Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map(|Query(pairs)| Params(pairs))
            .map_err(|rejection| ApiError::InvalidInput(rejection.body_text()))
    }
}

impl Params {
    /// The last non-empty value of `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name`, commas split, blanks dropped.
    pub(crate) fn list(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .flat_map(|(_, v)| v.split(','))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// `get` parsed as an ISO 8601 time.
    pub(crate) fn time(&self, name: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
        self.get(name).map(|v| parse_time(name, v)).transpose()
    }
}

/// A JSON body; a malformed one is a 400 InvalidInput naming the problem.
pub(crate) struct SpJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for SpJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Json::<T>::from_request(req, state)
            .await
            .map(|Json(v)| SpJson(v))
            .map_err(|rejection| ApiError::InvalidInput(rejection.body_text()))
    }
}

/// Path parameters; undecodable ones are a 400 InvalidInput.
pub(crate) struct SpPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for SpPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| SpPath(v))
            .map_err(|rejection| ApiError::InvalidInput(rejection.body_text()))
    }
}

/// ISO 8601 as SP-API accepts it: a full timestamp with offset (`2024-05-01T00:00:00Z`,
/// fractional seconds allowed) or a bare date (midnight UTC).
pub(crate) fn parse_time(name: &str, value: &str) -> Result<DateTime<Utc>, ApiError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Some(t) = NaiveDate::parse_from_str(value, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
    {
        return Ok(t.and_utc());
    }
    Err(ApiError::InvalidInput(format!(
        "{name} must be an ISO 8601 date-time such as 2024-05-01T00:00:00Z, got {value:?}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_in_the_forms_sp_api_accepts() {
        let expected = "2024-05-01T00:00:00Z".parse::<DateTime<Utc>>().expect("valid");
        assert_eq!(parse_time("t", "2024-05-01T00:00:00Z"), Ok(expected));
        assert_eq!(parse_time("t", "2024-05-01T02:00:00+02:00"), Ok(expected));
        assert_eq!(parse_time("t", "2024-05-01"), Ok(expected));
        assert!(matches!(parse_time("CreatedAfter", "yesterday"), Err(ApiError::InvalidInput(m)) if m.contains("CreatedAfter")));
    }

    #[test]
    fn lists_split_commas_and_merge_repeats() {
        let p = Params(vec![
            ("M".into(), "A,B".into()),
            ("M".into(), "C".into()),
            ("X".into(), String::new()),
        ]);
        assert_eq!(p.list("M"), vec!["A", "B", "C"]);
        assert_eq!(p.get("X"), None);
    }
}
