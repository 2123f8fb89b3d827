//! The console's page shell (navigation, sign-out, assets), its error page, and the small
//! pieces every page uses: times, ages, action forms.
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use maud::{html, Markup, PreEscaped, DOCTYPE};

use super::session::Session;
use crate::auth::{Caller, Role};
use crate::error::{ApiError, IsProblem};
use crate::middleware::request_id;

/// The pages in the navigation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Overview,
    Jobs,
    DeadLetter,
    Queues,
    Accounts,
    Schedules,
    Audit,
}

const LINKS: [(Nav, &str, &str); 7] = [
    (Nav::Overview, "/ui", "Overview"),
    (Nav::Jobs, "/ui/jobs", "Jobs"),
    (Nav::DeadLetter, "/ui/dead-letter", "Dead letter"),
    (Nav::Queues, "/ui/queues", "Queues"),
    (Nav::Accounts, "/ui/accounts", "Accounts"),
    (Nav::Schedules, "/ui/schedules", "Schedules"),
    (Nav::Audit, "/ui/audit", "Audit"),
];

/// Who is looking: what a page shows and which actions it offers.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub caller: Caller,
    pub session: Session,
}

impl Viewer {
    /// Whether this key may act (admin): read keys get no action forms at all.
    pub fn acts(&self) -> bool {
        self.caller.role >= Role::Admin
    }

    /// A hidden field with the session's CSRF token, for every action form.
    pub fn csrf(&self) -> Markup {
        html! { input type="hidden" name="csrf" value=(self.session.csrf); }
    }
}

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · Drover" }
            link rel="stylesheet" href="/ui/assets/console.css";
            link rel="stylesheet" href="/ui/assets/uPlot-1.6.32.min.css";
            script src="/ui/assets/htmx-2.0.11.min.js" defer {}
            script src="/ui/assets/htmx-ext-sse-2.2.4.min.js" defer {}
            script src="/ui/assets/uPlot-1.6.32.iife.min.js" defer {}
            script src="/ui/assets/console.js" defer {}
        }
    }
}

/// A page for a signed-in viewer.
pub fn render(viewer: &Viewer, active: Nav, title: &str, body: Markup) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                header {
                    nav {
                        strong { "Drover" }
                        @for (nav, href, label) in LINKS {
                            a href=(href) class=[(nav == active).then_some("active")] { (label) }
                        }
                        span.who { "key " (viewer.caller.name) " (" (viewer.caller.role) ")" }
                        form method="post" action="/ui/logout" {
                            (viewer.csrf())
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    };
    html_response(StatusCode::OK, markup)
}

/// A page without the navigation (sign-in, errors).
pub fn bare(status: StatusCode, title: &str, body: Markup) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body { main.narrow { h1 { (title) } (body) } }
        }
    };
    html_response(status, markup)
}

/// A part of a page (a live section's refresh), with a page's headers: it may hold
/// forms and their token, so it is never framed nor stored either.
pub fn fragment(markup: Markup) -> Response {
    html_response(StatusCode::OK, markup)
}

fn html_response(status: StatusCode, markup: Markup) -> Response {
    let mut res = (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        markup.into_string(),
    )
        .into_response();
    let headers = res.headers_mut();
    headers.insert("x-frame-options", header::HeaderValue::from_static("DENY"));
    headers.insert(
        "content-security-policy",
        header::HeaderValue::from_static("default-src 'self'; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'"),
    );
    // A page, not a problem document: the problem layer leaves it as it is.
    res.extensions_mut().insert(IsProblem);
    res
}

/// For a key limited to several accounts, a page that lists one account at a time (the
/// API asks such a key to name one) opened without one: the same page for the key's
/// first account, whose field then offers to change it. `None` for other keys, or when
/// the page names an account. (Found by the console audit of 2026-12-06: the Jobs and
/// Dead letter links were error pages for such a key.)
pub fn one_of_several_accounts(caller: &crate::auth::Caller, path: &str, raw: Option<&str>, account: Option<&str>) -> Option<Response> {
    if account.is_some_and(|a| !a.is_empty()) {
        return None;
    }
    let accounts = caller.accounts.as_ref().filter(|a| a.len() > 1)?;
    let first = accounts.iter().next()?;
    let mut q: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or_default()).unwrap_or_default();
    q.retain(|(k, _)| k != "account_id");
    q.push(("account_id".to_owned(), first.to_string()));
    let to = format!("{path}?{}", serde_urlencoded::to_string(&q).unwrap_or_default());
    Some(axum::response::Redirect::to(&to).into_response())
}

/// The error as a page: its status, its title and what the API would say, never internals.
pub fn error(e: &ApiError) -> Response {
    let status = e.status();
    if status.is_server_error() {
        tracing::error!(error = %e, "console request failed");
    }
    let (_, title) = e.kind();
    let mut res = bare(
        status,
        title,
        html! {
            p.problem { (e.detail()) }
            @if let Some(id) = request_id::current() { p.muted { "Request id " code { (id) } } }
            p { a href="/ui" { "Back to the overview" } }
        },
    );
    if let Some(after) = e.retry_after() {
        res.headers_mut()
            .insert(header::RETRY_AFTER, crate::error::retry_after_secs(after).into());
    }
    res
}

pub fn time(at: &DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// An RFC 3339 time from a view, as [`time`] writes it (`-` when absent or unreadable).
pub fn when(v: &serde_json::Value) -> String {
    v.as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map_or_else(|| "-".into(), |t| time(&t.with_timezone(&Utc)))
}

/// A duration in ms as people read it: `850 ms`, `12.5 s`, `3 min`, `2 h 5 min`.
pub fn age(ms: u64) -> String {
    match ms {
        0..=999 => format!("{ms} ms"),
        1000..=59_999 => format!("{:.1} s", ms as f64 / 1000.0),
        60_000..=3_599_999 => format!("{} min", ms / 60_000),
        _ => format!("{} h {} min", ms / 3_600_000, ms % 3_600_000 / 60_000),
    }
}

/// A one-button action form (class `action`, with the CSRF token).
pub fn action(viewer: &Viewer, path: &str, class: &str, label: &str, fields: &[(&str, &str)]) -> Markup {
    html! {
        form class={"action " (class)} method="post" action=(path) {
            (viewer.csrf())
            @for (name, value) in fields { input type="hidden" name=(name) value=(value); }
            button type="submit" { (label) }
        }
    }
}

/// Inline JSON for a page's script (`<` escaped so it cannot end the script element).
pub fn json_data(id: &str, value: &serde_json::Value) -> Markup {
    let text = value.to_string().replace('<', "\\u003c");
    html! { script type="application/json" id=(id) { (PreEscaped(text)) } }
}
