//! Error responses made outside our handlers (axum's 404/405, a body over its limit, a
//! bare status from a layer) become problems too, so a client only ever has to read one
//! error shape. Responses already carrying a problem pass through untouched.
use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::{ApiError, IsProblem};

pub async fn as_problem(req: Request, next: Next) -> Response {
    rewrite(next.run(req).await)
}

fn rewrite(res: Response) -> Response {
    let status = res.status();
    if !(status.is_client_error() || status.is_server_error()) || res.extensions().get::<IsProblem>().is_some() {
        return res;
    }
    let err = match status {
        StatusCode::METHOD_NOT_ALLOWED => {
            let allow = res.headers().get(header::ALLOW).cloned();
            let mut r = ApiError::MethodNotAllowed.into_response();
            if let Some(allow) = allow {
                r.headers_mut().insert(header::ALLOW, allow);
            }
            return r;
        }
        StatusCode::NOT_FOUND => ApiError::NotFound("no such resource".into()),
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge("request body too large".into()),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType("unsupported content type".into()),
        s if s.is_server_error() => ApiError::Internal(format!("unhandled {s} response")),
        s => ApiError::BadRequest(s.canonical_reason().unwrap_or("bad request").to_lowercase()),
    };
    err.into_response()
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn bare(status: StatusCode) -> Response {
        let mut res = Response::new(axum::body::Body::empty());
        *res.status_mut() = status;
        res
    }

    #[test]
    fn a_bare_405_becomes_a_problem_that_keeps_its_allow_header() {
        let mut res = bare(StatusCode::METHOD_NOT_ALLOWED);
        res.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET,HEAD"));
        let res = rewrite(res);
        assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(res.headers()[header::CONTENT_TYPE], crate::error::PROBLEM_JSON);
        assert_eq!(res.headers()[header::ALLOW], "GET,HEAD");
    }

    #[test]
    fn a_bare_error_becomes_a_problem_keeping_the_statuses_clients_act_on() {
        for (bare_status, answered) in [
            (StatusCode::NOT_FOUND, StatusCode::NOT_FOUND),
            (StatusCode::PAYLOAD_TOO_LARGE, StatusCode::PAYLOAD_TOO_LARGE),
            (StatusCode::UNSUPPORTED_MEDIA_TYPE, StatusCode::UNSUPPORTED_MEDIA_TYPE),
            (StatusCode::IM_A_TEAPOT, StatusCode::BAD_REQUEST),
            (StatusCode::BAD_GATEWAY, StatusCode::INTERNAL_SERVER_ERROR),
        ] {
            let res = rewrite(bare(bare_status));
            assert_eq!(res.status(), answered, "{bare_status}");
            assert_eq!(res.headers()[header::CONTENT_TYPE], crate::error::PROBLEM_JSON);
        }
    }

    #[test]
    fn successes_and_problems_pass_through_untouched() {
        let ok = rewrite(bare(StatusCode::OK));
        assert!(ok.headers().get(header::CONTENT_TYPE).is_none());
        let problem = ApiError::Conflict("taken".into()).into_response();
        let res = rewrite(problem);
        assert_eq!(res.status(), StatusCode::CONFLICT);
        assert!(res.extensions().get::<IsProblem>().is_some());
    }
}
