//! Extractors that turn every bad input into the right problem: a wrong content type is
//! 415, a body over the limit 413, JSON that does not parse 400, and JSON that parses but
//! does not fit (unknown field, wrong type, missing field, a number out of range) 422
//! naming the field.
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use drover::job::{trace_id_of, FieldError};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A JSON body of type `T`.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        require_content_type(req.headers(), &["application/json"], true)?;
        let bytes = read_body(req, state).await?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// A CSV body (`text/csv`), raw.
pub struct CsvBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for CsvBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        require_content_type(req.headers(), &["text/csv", "application/csv"], false)?;
        Ok(CsvBody(read_body(req, state).await?))
    }
}

async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|e: BytesRejection| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge("the request body is larger than this endpoint accepts".into())
        } else {
            ApiError::BadRequest("the request body could not be read".into())
        }
    })
}

/// 415 unless the media type (parameters such as `charset` aside) is one of `accepted`;
/// `json_suffix` also accepts `application/*+json`.
fn require_content_type(headers: &HeaderMap, accepted: &[&str], json_suffix: bool) -> Result<(), ApiError> {
    let want = || ApiError::UnsupportedMediaType(format!("expected Content-Type: {}", accepted[0]));
    let value = headers.get(header::CONTENT_TYPE).ok_or_else(want)?;
    let media = value.to_str().map_err(|_| want())?;
    let media = media.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    let ok = accepted.contains(&media.as_str()) || (json_suffix && media.starts_with("application/") && media.ends_with("+json"));
    if ok {
        Ok(())
    } else {
        Err(want())
    }
}

/// Parse JSON into `T`: syntax errors are 400, shape errors 422 naming the field.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Ok(v) => v,
        Err(e) => return Err(json_error(e)),
    };
    de.end()
        .map_err(|_| ApiError::BadRequest("the body holds more than one JSON value".into()))?;
    Ok(value)
}

/// Fields whose values are secrets: their errors never repeat the value.
const SECRET_FIELDS: &[&str] = &["client_secret", "refresh_token"];

fn json_error(e: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = e.path().to_string();
    let inner = e.into_inner();
    if !inner.is_data() && !is_number_out_of_range(&inner) {
        return ApiError::BadRequest(format!("the body is not valid JSON: {}", strip_position(&inner.to_string())));
    }
    let path = if path == "." { String::new() } else { path };
    // serde repeats the value it did not want ("invalid type: integer `123456789`"):
    // for a secret field that would send the secret back.
    let secret = SECRET_FIELDS.iter().any(|f| path == *f || path.starts_with(&format!("{f}[")));
    let message = if secret {
        "must be a string".to_owned()
    } else {
        strip_position(&inner.to_string())
    };
    // serde_path_to_error's path already ends in an unknown field's name; a missing
    // field is only named in serde's message, at its parent's path.
    let missing = message.strip_prefix("missing field `").and_then(|rest| rest.split('`').next());
    let field = match (missing, path.is_empty()) {
        (Some(f), true) => f.to_owned(),
        (Some(f), false) => format!("{path}.{f}"),
        (None, true) => "body".to_owned(),
        (None, false) => path,
    };
    ApiError::Validation(vec![FieldError::new(field, message)])
}

/// A number beyond what its type holds (`1e400`, too large for a float): serde_json
/// stops on it while it reads the text, so it counts as a syntax error there, but the
/// JSON is well formed and the path says whose value it was (serde_path_to_error follows
/// the value being read, a `serde_json::Value` payload's too), so it is a 422 naming
/// that field like any other value that does not fit. serde_json names the case only in
/// its message.
fn is_number_out_of_range(e: &serde_json::Error) -> bool {
    e.is_syntax() && e.to_string().starts_with("number out of range")
}

fn strip_position(msg: &str) -> String {
    msg.split(" at line ").next().unwrap_or(msg).to_owned()
}

/// Query parameters into `T`; unknown parameters are ignored, unusable ones are a 422.
pub fn query<T: DeserializeOwned + Default>(raw: Option<&str>) -> Result<T, ApiError> {
    match raw {
        None | Some("") => Ok(T::default()),
        Some(q) => serde_urlencoded::from_str(q).map_err(|e| ApiError::field("query", strip_position(&e.to_string()))),
    }
}

/// The headers that shape an enqueue: `Idempotency-Key` and W3C `traceparent`.
#[derive(Debug, Default)]
pub struct SubmitHeaders {
    pub idempotency_key: Option<String>,
    /// Only a well-formed `traceparent` is kept; a malformed one is ignored, as the W3C
    /// spec asks (the job then starts a new trace).
    pub traceparent: Option<String>,
}

pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

impl<S: Send + Sync> FromRequestParts<S> for SubmitHeaders {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let idempotency_key = match parts.headers.get(IDEMPOTENCY_KEY) {
            None => None,
            Some(v) => {
                let s = v.to_str().unwrap_or_default();
                let ok = (1..=255).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_graphic());
                if !ok {
                    return Err(ApiError::field(
                        "Idempotency-Key",
                        "must be 1 to 255 visible ASCII characters without spaces",
                    ));
                }
                Some(s.to_owned())
            }
        };
        let traceparent = parts
            .headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|tp| trace_id_of(tp).is_some())
            .map(str::to_owned);
        Ok(SubmitHeaders {
            idempotency_key,
            traceparent,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[allow(dead_code)]
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        kind: String,
        inner: Option<Inner>,
    }

    #[allow(dead_code)]
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        n: u8,
    }

    fn field_of(json: &str) -> (String, String) {
        match parse_json::<Body>(json.as_bytes()) {
            Err(ApiError::Validation(e)) => (e[0].field.clone(), e[0].message.clone()),
            other => panic!("expected a 422, got {other:?}"),
        }
    }

    #[test]
    fn syntax_errors_are_400() {
        assert!(matches!(parse_json::<Body>(b"{\"kind\":"), Err(ApiError::BadRequest(_))));
        assert!(matches!(parse_json::<Body>(br#"{"kind":"a"} {}"#), Err(ApiError::BadRequest(_))));
    }

    #[test]
    fn shape_errors_name_the_field() {
        assert_eq!(field_of(r#"{"kind":"a","colour":1}"#).0, "colour");
        assert_eq!(field_of(r#"{}"#).0, "kind");
        assert_eq!(field_of(r#"{"kind":"a","inner":{"n":300}}"#).0, "inner.n");
        assert_eq!(field_of(r#"{"kind":"a","inner":{"n":1,"m":2}}"#).0, "inner.m");
        assert_eq!(field_of(r#"[]"#).0, "body");
        assert!(!field_of(r#"{"kind":1}"#).1.contains("line"), "positions are not shown");
    }

    /// Found by the submit-path audits of 2026-12-05: `1e400` was a 400 "not valid JSON"
    /// naming no field.
    #[test]
    fn a_number_out_of_range_names_its_field() {
        assert_eq!(
            field_of(r#"{"kind":"a","inner":{"n":1e400}}"#),
            ("inner.n".to_owned(), "number out of range".to_owned())
        );
        assert_eq!(field_of(r#"{"kind":-1e400}"#).0, "kind");
        assert_eq!(field_of(r#"1e400"#).0, "body");

        #[allow(dead_code)]
        #[derive(Debug, Deserialize)]
        struct Loose {
            payload: serde_json::Value,
        }
        match parse_json::<Loose>(br#"{"payload":{"skus":["a",1e400]}}"#) {
            Err(ApiError::Validation(e)) => assert_eq!(e[0].field, "payload.skus[1]", "{e:?}"),
            other => panic!("expected a 422, got {other:?}"),
        }
        // A number cut short is still not JSON.
        assert!(matches!(
            parse_json::<Body>(br#"{"kind":"a","inner":{"n":1e}}"#),
            Err(ApiError::BadRequest(_))
        ));
    }

    /// I5: serde's message repeats a non-string value; for a secret field that would send
    /// the secret back (and into any log of the response).
    #[test]
    fn a_bad_secret_field_is_named_without_repeating_its_value() {
        #[allow(dead_code)]
        #[derive(Debug, Deserialize)]
        struct Creds {
            client_secret: String,
            refresh_token: String,
        }
        for json in [
            r#"{"client_secret":123456789,"refresh_token":"r"}"#,
            r#"{"client_secret":"s","refresh_token":[123456789]}"#,
        ] {
            match parse_json::<Creds>(json.as_bytes()) {
                Err(ApiError::Validation(e)) => {
                    assert!(e[0].field == "client_secret" || e[0].field == "refresh_token", "{e:?}");
                    assert!(!e[0].message.contains("123456789"), "{e:?}");
                }
                other => panic!("expected a 422, got {other:?}"),
            }
        }
    }
}
