//! The operator console at `/ui` (docs/console.md): server-rendered pages over the same
//! handlers, keys, roles and account scopes as the HTTP API, signed in with a session
//! cookie; htmx and uPlot are vendored in `api/assets/` and served from the binary.
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Router};
use maud::html;
use secrecy::SecretString;
use serde::Deserialize;

use crate::auth::sha256;
use crate::error::ApiError;
use crate::state::AppState;

mod accounts;
mod audit;
mod dead_letter;
mod jobs;
pub mod login_throttle;
mod notice;
mod overview;
pub mod paced_replays;
pub mod page;
mod queues;
mod schedules;
pub mod series;
pub mod session;

/// The console's routes; none when `api.ui.enabled` is false.
pub fn routes(state: &AppState) -> Router<AppState> {
    if !state.ui().enabled {
        return Router::new();
    }
    let read = Router::new()
        .route("/ui", get(overview::page))
        .route("/ui/jobs", get(jobs::list))
        .route("/ui/jobs/{id}", get(jobs::show))
        .route("/ui/jobs/{id}/live", get(jobs::live))
        .route("/ui/jobs/{id}/events", get(jobs::events))
        .route("/ui/dead-letter", get(dead_letter::groups))
        .route("/ui/dead-letter/confirm", get(dead_letter::confirm))
        .route("/ui/dead-letter/canary", get(dead_letter::canary))
        .route("/ui/queues", get(queues::page))
        .route("/ui/accounts", get(accounts::list))
        .route("/ui/accounts/{id}", get(accounts::show))
        .route("/ui/schedules", get(schedules::page))
        .route("/ui/audit", get(audit::page))
        .route("/ui/logout", post(logout))
        .route_layer(from_fn_with_state(state.clone(), session::read));
    let admin = Router::new()
        .route("/ui/jobs/{id}/cancel", post(jobs::cancel))
        .route("/ui/jobs/{id}/retry", post(jobs::retry))
        .route("/ui/dead-letter/act", post(dead_letter::act))
        .route("/ui/queues/{kind}/pause", post(queues::pause))
        .route("/ui/queues/{kind}/resume", post(queues::resume))
        .route_layer(from_fn_with_state(state.clone(), session::admin));
    Router::new()
        // A key is a few dozen bytes: a sign-in body, read before any key is known, is
        // held to a few kilobytes.
        .route(
            "/ui/login",
            get(login_form).post(login).layer(DefaultBodyLimit::max(LOGIN_BODY_LIMIT)),
        )
        .route("/ui/assets/{file}", get(asset))
        .merge(read)
        .merge(admin)
}

/// Most bytes a sign-in form may have.
const LOGIN_BODY_LIMIT: usize = 4096;

fn login_page(status: StatusCode, problem: Option<&str>) -> Response {
    page::bare(
        status,
        "Sign in",
        html! {
            @if let Some(p) = problem { p.problem { (p) } }
            form #login method="post" action="/ui/login" {
                label { "API key " input type="password" name="key" autocomplete="off" required autofocus; }
                button type="submit" { "Sign in" }
            }
            p.muted { "The key is checked once and kept by its hash in a session; it is never stored in the browser." }
        },
    )
}

/// The sign-in form again, with 429 and `Retry-After`; the same whatever key was sent.
fn throttled(retry_after: Duration) -> Response {
    let secs = retry_after.as_secs_f64().ceil().max(1.0) as u64;
    let mut res = login_page(
        StatusCode::TOO_MANY_REQUESTS,
        Some(&format!("Too many sign-in attempts from this address: try again in {secs} s.")),
    );
    res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    res
}

async fn login_form() -> Response {
    login_page(StatusCode::OK, None)
}

#[derive(Deserialize)]
struct LoginForm {
    key: String,
}

async fn login(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    request: Request,
) -> Response {
    // A sign-in another site's page posted (login CSRF: the browser would be signed in
    // with the other site's key) is refused before anything else.
    if from_another_site(&headers) {
        return login_page(StatusCode::FORBIDDEN, Some("The sign-in form was sent from another site."));
    }
    // Counted before the key is looked at, so a 429 says nothing about it; and before
    // the body is read, so an address past its budget makes the API wait for nothing.
    let throttle = state.login_throttle();
    let client = throttle.client(peer.map(|Extension(ConnectInfo(a))| a), &headers);
    match throttle.check(client).await {
        Ok(()) => {}
        Err(ApiError::RateLimited { retry_after }) => return throttled(retry_after),
        Err(e) => return page::error(&e),
    }
    let form: LoginForm = match Form::from_request(request, &state).await {
        Ok(Form(form)) => form,
        Err(rejected) => return login_page(rejected.status(), Some("The sign-in form could not be read.")),
    };
    let presented = SecretString::from(form.key.trim().to_owned());
    let Some(principal) = state.keys().authenticate(&presented) else {
        return login_page(StatusCode::UNAUTHORIZED, Some("That key is not valid."));
    };
    let hash = sha256(secrecy::ExposeSecret::expose_secret(&presented).as_bytes());
    match session::create(&state, &hash).await {
        Ok(token) => {
            tracing::info!(key = %principal.name, "console session started");
            let mut res = Redirect::to("/ui").into_response();
            res.headers_mut()
                .insert(header::SET_COOKIE, session::cookie(&state, &headers, &token));
            res
        }
        Err(e) => page::error(&e),
    }
}

/// Whether a browser says the request was made by another site's page: `Sec-Fetch-Site`
/// other than `same-origin` or `none` (typed or bookmarked), or else an `Origin` whose
/// host is not the request's. A request that carries neither (not a browser's, or an
/// old one) is not refused: the form's own pages always come from this origin.
fn from_another_site(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return !matches!(site, "same-origin" | "none");
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Some((scheme, rest)) = origin.split_once("://") else {
        return true; // `null` (a sandboxed or privacy-stripped page) or no origin at all
    };
    let origin_host = without_default_port(rest.trim_end_matches('/'), scheme);
    // The host the browser asked for: `Host`, or the one a proxy in front says it was
    // (`X-Forwarded-Host`, `Forwarded: host=`; a form another site posts cannot set them).
    let forwarded = headers
        .get(header::FORWARDED)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split([';', ',']).find_map(|p| p.trim().strip_prefix("host=")))
        .map(|h| h.trim_matches('"'));
    let asked = [header::HOST.as_str(), "x-forwarded-host"]
        .into_iter()
        .filter_map(|h| headers.get(h).and_then(|v| v.to_str().ok()))
        .map(|v| v.split(',').next().unwrap_or_default().trim())
        .chain(forwarded);
    let mut asked = asked.map(|h| without_default_port(h, scheme));
    origin_host.is_empty() || !asked.any(|h| origin_host.eq_ignore_ascii_case(h))
}

/// `host[:port]` without the scheme's default port (a browser leaves it out of `Origin`,
/// a client may put it in `Host`).
fn without_default_port<'a>(host: &'a str, scheme: &str) -> &'a str {
    let default = if scheme.eq_ignore_ascii_case("https") { ":443" } else { ":80" };
    host.strip_suffix(default).unwrap_or(host)
}

async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(e) = session::end(&state, &headers).await {
        return page::error(&e);
    }
    let mut res = Redirect::to("/ui/login").into_response();
    res.headers_mut().insert(header::SET_COOKIE, session::cookie(&state, &headers, ""));
    res
}

/// The vendored files and the console's own, from the binary; cached for a day (their
/// names carry their versions).
async fn asset(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    let (body, kind): (&'static [u8], &str) = match file.as_str() {
        "htmx-2.0.11.min.js" => (include_bytes!("../../assets/htmx-2.0.11.min.js"), "text/javascript"),
        "htmx-ext-sse-2.2.4.min.js" => (include_bytes!("../../assets/htmx-ext-sse-2.2.4.min.js"), "text/javascript"),
        "uPlot-1.6.32.iife.min.js" => (include_bytes!("../../assets/uPlot-1.6.32.iife.min.js"), "text/javascript"),
        "uPlot-1.6.32.min.css" => (include_bytes!("../../assets/uPlot-1.6.32.min.css"), "text/css"),
        "console.css" => (include_bytes!("../../assets/console.css"), "text/css"),
        "console.js" => (include_bytes!("../../assets/console.js"), "text/javascript"),
        _ => return page::error(&crate::error::ApiError::NotFound("no such file".into())),
    };
    (
        [(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, "public, max-age=86400")],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn a_sign_in_from_another_sites_page_is_told_from_this_ones() {
        assert!(!from_another_site(&headers(&[])), "not a browser");
        assert!(!from_another_site(&headers(&[("sec-fetch-site", "same-origin")])));
        assert!(!from_another_site(&headers(&[("sec-fetch-site", "none")])));
        assert!(from_another_site(&headers(&[("sec-fetch-site", "cross-site")])));
        assert!(from_another_site(&headers(&[("sec-fetch-site", "same-site")])));
        let here = [("host", "drover.example.com:8080")];
        assert!(!from_another_site(&headers(&[
            here[0],
            ("origin", "https://drover.example.com:8080")
        ])));
        assert!(from_another_site(&headers(&[here[0], ("origin", "https://evil.example")])));
        assert!(from_another_site(&headers(&[here[0], ("origin", "null")])));
        let proxied = [("host", "10.0.0.7:8080"), ("x-forwarded-host", "drover.example.com")];
        assert!(!from_another_site(&headers(&[
            proxied[0],
            proxied[1],
            ("origin", "https://drover.example.com")
        ])));
        let forwarded = [
            ("host", "10.0.0.7:8080"),
            ("forwarded", "for=192.0.2.60;proto=https;host=drover.example.com"),
        ];
        assert!(!from_another_site(&headers(&[
            forwarded[0],
            forwarded[1],
            ("origin", "https://drover.example.com")
        ])));
        let default_port = ("host", "drover.example.com:443");
        assert!(!from_another_site(&headers(&[
            default_port,
            ("origin", "https://drover.example.com")
        ])));
        assert!(from_another_site(&headers(&[
            default_port,
            ("origin", "https://drover.example.com.evil.example")
        ])));
    }
}
