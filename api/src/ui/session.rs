//! Console sessions: an API key entered once becomes a cookie. The session lives in Redis
//! under the SHA-256 of the cookie and names the key by its hash, so a key removed or
//! rotated ends its sessions; every `POST` must carry the session's CSRF token, checked
//! here before any handler runs.
//!
//! A key holds at most `api.ui.max_sessions_per_key` sessions: each key's sessions are
//! indexed by creation in a sorted set, and a new one past the cap ends the oldest in
//! the same script. The set and the key's sessions share a hash tag derived from the key
//! (the cookie carries it, `<tag>.<token>`), so that script runs in one slot on a Cluster.
use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use super::page;
use crate::auth::{session_tag, sha256, Caller, Principal, Role, SESSION_TAG_CHARS};
use crate::error::ApiError;
use crate::state::AppState;

/// The session cookie over plain http (the local stack), where a name prefix cannot be
/// used; [`HOST_COOKIE`] over TLS.
pub const COOKIE: &str = "drover_session";
/// Over TLS the cookie is `__Host-` prefixed: a browser keeps it only when this host set
/// it over TLS with `Path=/` and no domain, so a page on a sibling subdomain can neither
/// plant a session of its own (the operator then acting under another's key) nor shadow
/// this one; a bare [`COOKIE`] is not read then.
pub const HOST_COOKIE: &str = "__Host-drover_session";
/// Largest form an action posts (ids of a selection, a group, a count).
const FORM_BYTES: usize = 64 * 1024;

/// The signed-in session, put in the request beside its [`Caller`].
#[derive(Debug, Clone)]
pub struct Session {
    /// The token every action must carry (form field `csrf` or header `X-CSRF-Token`).
    pub csrf: String,
    /// Its record in Redis: gone once the session has ended.
    record: String,
}

/// Starts a session and ends the key's oldest past the cap, in one step.
static CREATE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
-- KEYS[1]: the new session, KEYS[2]: its key's sessions by creation (one slot).
-- ARGV: key hash, csrf, ttl s, most sessions per key, new session's id, sessions' key prefix
-- -> how many older sessions were ended
redis.call('HSET', KEYS[1], 'k', ARGV[1], 'c', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
-- forget the sessions that ended on their own (expired, signed out)
for _, id in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  if redis.call('EXISTS', ARGV[6] .. id) == 0 then redis.call('ZREM', KEYS[2], id) end
end
local t = redis.call('TIME')
redis.call('ZADD', KEYS[2], tonumber(t[1]) * 1000000 + tonumber(t[2]), ARGV[5])
local over = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[4])
if over > 0 then
  for _, id in ipairs(redis.call('ZRANGE', KEYS[2], 0, over - 1)) do
    redis.call('DEL', ARGV[6] .. id)
  end
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, over - 1)
end
redis.call('EXPIRE', KEYS[2], ARGV[3])
return math.max(over, 0)
",
    )
});

/// Reads a session and renews it and its key's index (which must outlive it).
static LOAD: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
-- KEYS[1]: the session, KEYS[2]: its key's sessions (scored by creation, in µs).
-- ARGV: ttl s, the session's id, its longest life in s -> the session's fields (none
-- once it has ended: unused for the ttl, or past its longest life since it began)
local fields = redis.call('HGETALL', KEYS[1])
if #fields > 0 then
  local began = tonumber(redis.call('ZSCORE', KEYS[2], ARGV[2]))
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  if began and now - began > tonumber(ARGV[3]) * 1000000 then
    redis.call('DEL', KEYS[1])
    redis.call('ZREM', KEYS[2], ARGV[2])
    return {}
  end
  redis.call('EXPIRE', KEYS[1], ARGV[1])
  redis.call('EXPIRE', KEYS[2], math.max(tonumber(ARGV[1]), tonumber(ARGV[3])))
end
return fields
",
    )
});

/// A cookie's parts: the hash tag of its key's sessions and the secret token.
struct Cookie<'a> {
    tag: &'a str,
    token: &'a str,
}

impl<'a> Cookie<'a> {
    fn parse(value: &'a str) -> Option<Self> {
        let (tag, token) = value.split_once('.')?;
        let hex_tag = tag.len() == SESSION_TAG_CHARS && tag.bytes().all(|b| b.is_ascii_hexdigit());
        // what `random_token` makes: 32 bytes in unpadded URL-safe base64
        let token_ok = token.len() == TOKEN_CHARS && token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        (hex_tag && token_ok).then_some(Cookie { tag, token })
    }

    /// Whether the cookie's tag is a configured key's: only then is there a session to
    /// look up (one Redis call a request, which a made-up cookie must not buy).
    fn of_a_configured_key(&self, keys: &crate::auth::KeyRing) -> bool {
        keys.has_session_tag(self.tag)
    }

    /// The session's id in its key's index: the SHA-256 of the token.
    fn id(&self) -> String {
        hex::encode(sha256(self.token.as_bytes()))
    }
}

/// Characters of a session token (32 random bytes, unpadded URL-safe base64).
const TOKEN_CHARS: usize = 43;

/// Where the sessions of the key tagged `tag` live: `<ns>:ui:{s-<tag>}:session:<id>`.
fn session_prefix(state: &AppState, tag: &str) -> String {
    format!("{}:ui:{{s-{tag}}}:session:", state.store().namespace())
}

/// The key's sessions by creation: `<ns>:ui:{s-<tag>}:sessions`.
fn index_key(state: &AppState, tag: &str) -> String {
    format!("{}:ui:{{s-{tag}}}:sessions", state.store().namespace())
}

fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    URL_SAFE_NO_PAD.encode(bytes)
}

fn ttl_secs(state: &AppState) -> u64 {
    state.ui().session_minutes * 60
}

/// The longest a session lasts from sign-in, however much it is used: a day, or its
/// life without use when that is longer. The cookie is given this life at sign-in;
/// Redis ends an unused session sooner (found by the console audit of 2026-12-07,
/// second, and the review of its fix: the session slid in Redis with every request, the
/// overview's polls too, so an unattended tab kept it for ever, while its cookie ended
/// `session_minutes` after sign-in and left it open, unable to sign out).
fn longest_secs(state: &AppState) -> u64 {
    ttl_secs(state).max(24 * 60 * 60)
}

/// A new session for the key whose hash is `key_hash`, ending the key's oldest past
/// `api.ui.max_sessions_per_key`; returns the cookie's value.
pub async fn create(state: &AppState, key_hash: &[u8; 32]) -> Result<String, ApiError> {
    let tag = session_tag(key_hash);
    let token = random_token();
    let cookie = Cookie { tag: &tag, token: &token };
    let prefix = session_prefix(state, &tag);
    let mut conn = state.store().connection();
    let ended: i64 = CREATE
        .key(format!("{prefix}{}", cookie.id()))
        .key(index_key(state, &tag))
        .arg(hex::encode(key_hash))
        .arg(random_token())
        .arg(ttl_secs(state))
        .arg(state.ui().max_sessions_per_key)
        .arg(cookie.id())
        .arg(&prefix)
        .invoke_async(&mut conn)
        .await
        .map_err(ApiError::from)?;
    if ended > 0 {
        tracing::info!(ended, "a key past api.ui.max_sessions_per_key: its oldest console sessions ended");
    }
    Ok(format!("{tag}.{token}"))
}

/// The session's key and CSRF token, renewing its lifetime; `None` when it has ended or
/// its key is no longer configured.
async fn load(state: &AppState, value: &str) -> Result<Option<(Arc<Principal>, Session)>, ApiError> {
    let Some(cookie) = Cookie::parse(value).filter(|c| c.of_a_configured_key(state.keys())) else {
        return Ok(None);
    };
    let mut conn = state.store().connection();
    let record = format!("{}{}", session_prefix(state, cookie.tag), cookie.id());
    let fields: HashMap<String, String> = LOAD
        .key(&record)
        .key(index_key(state, cookie.tag))
        .arg(ttl_secs(state))
        .arg(cookie.id())
        .arg(longest_secs(state))
        .invoke_async(&mut conn)
        .await
        .map_err(ApiError::from)?;
    let (Some(k), Some(csrf)) = (fields.get("k"), fields.get("c")) else {
        return Ok(None);
    };
    let Some(hash) = hex::decode(k).ok().and_then(|h| <[u8; 32]>::try_from(h).ok()) else {
        return Ok(None);
    };
    Ok(state.keys().by_hash(&hash).map(|p| {
        (
            p,
            Session {
                csrf: csrf.clone(),
                record,
            },
        )
    }))
}

#[cfg(test)]
impl Session {
    /// A session of `csrf` with no record (for tests of what reads only its token).
    pub fn with_csrf(csrf: &str) -> Session {
        Session {
            csrf: csrf.into(),
            record: String::new(),
        }
    }
}

/// Whether `session` is still open (not signed out, not ended past its key's cap, not
/// expired). A read that fails says yes: a blip of Redis ends nothing.
pub async fn still_open(state: &AppState, session: &Session) -> bool {
    let mut conn = state.store().connection();
    redis::cmd("EXISTS")
        .arg(&session.record)
        .query_async::<bool>(&mut conn)
        .await
        .unwrap_or(true)
}

/// Ends the session named by the request's cookie, if any.
pub async fn end(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = token_from(headers, over_tls(state, headers)) else {
        return Ok(());
    };
    let Some(cookie) = Cookie::parse(&value).filter(|c| c.of_a_configured_key(state.keys())) else {
        return Ok(());
    };
    let mut conn = state.store().connection();
    let _: () = redis::pipe()
        .del(format!("{}{}", session_prefix(state, cookie.tag), cookie.id()))
        .ignore()
        .zrem(index_key(state, cookie.tag), cookie.id())
        .ignore()
        .query_async(&mut conn)
        .await
        .map_err(ApiError::from)?;
    Ok(())
}

fn token_from(headers: &HeaderMap, tls: bool) -> Option<String> {
    let wanted = if tls { HOST_COOKIE } else { COOKIE };
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == wanted)
        .map(|(_, value)| value.to_owned())
        .filter(|v| !v.is_empty() && v.len() <= 64)
}

/// Whether the request came over TLS (directly, or as a proxy in front says).
fn over_tls(state: &AppState, headers: &HeaderMap) -> bool {
    state.ui().secure_cookies
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

/// `Set-Cookie` for a new session (`value` empty: the cookie is removed).
pub fn cookie(state: &AppState, headers: &HeaderMap, value: &str) -> HeaderValue {
    let max_age = if value.is_empty() { 0 } else { longest_secs(state) };
    let c = if over_tls(state, headers) {
        format!("{HOST_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}; Secure")
    } else {
        format!("{COOKIE}={value}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={max_age}")
    };
    HeaderValue::from_str(&c).unwrap_or_else(|_| HeaderValue::from_static(""))
}

pub async fn read(State(state): State<AppState>, req: Request, next: Next) -> Response {
    signed_in(state, Role::Read, req, next).await
}

pub async fn admin(State(state): State<AppState>, req: Request, next: Next) -> Response {
    signed_in(state, Role::Admin, req, next).await
}

/// Puts the session's [`Caller`] and [`Session`] in the request. A page without a session
/// redirects to the login page; an action without one, without the session's CSRF token,
/// or from a key whose role is below `role` is refused with 403 and does nothing.
async fn signed_in(state: AppState, role: Role, req: Request, next: Next) -> Response {
    let found = match token_from(req.headers(), over_tls(&state, req.headers())) {
        None => None,
        Some(token) => match load(&state, &token).await {
            Ok(found) => found,
            Err(e) => return page::error(&e),
        },
    };
    let is_post = req.method() == Method::POST;
    let Some((principal, session)) = found else {
        if is_post {
            return page::error(&ApiError::Forbidden("sign in first: the session has ended".into()));
        }
        return Redirect::to("/ui/login").into_response();
    };
    let limits = state.limits_per_key();
    let counted = if is_post {
        limits.writes.check(&principal.name).await
    } else {
        limits.reads.check(&principal.name).await
    };
    if let Err(e) = counted {
        return page::error(&e);
    }
    if principal.role < role {
        return page::error(&ApiError::Forbidden(format!(
            "this key's role is {}; this needs {role}",
            principal.role
        )));
    }
    let mut req = req;
    // A form's bytes, reserved before it is read from the budget the API's bodies share
    // (`body_budget.rs`), for as long as the request runs.
    let _body = match is_post.then(|| crate::body_budget::announced(req.headers(), FORM_BYTES)) {
        None | Some(0) => None,
        Some(bytes) => match state.body_budget().reserve(&principal.name, bytes) {
            Ok(r) => Some(r),
            Err(e) => return page::error(&e),
        },
    };
    if is_post {
        req = match with_csrf_checked(req, &session.csrf).await {
            Ok(r) => r,
            Err(e) => return page::error(&e),
        };
    }
    req.extensions_mut().insert(Caller(principal));
    req.extensions_mut().insert(session);
    next.run(req).await
}

/// Reads the form (bounded), checks its `csrf` field (or the `X-CSRF-Token` header)
/// against the session's, and gives the request back with the same body.
async fn with_csrf_checked(req: Request, csrf: &str) -> Result<Request, ApiError> {
    let (parts, body) = req.into_parts();
    let bytes = to_bytes(body, FORM_BYTES)
        .await
        .map_err(|_| ApiError::PayloadTooLarge("the form is too large".into()))?;
    let header = parts.headers.get("x-csrf-token").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let field = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&bytes)
        .ok()
        .and_then(|pairs| pairs.into_iter().find(|(k, _)| k == "csrf").map(|(_, v)| v));
    let sent = header.or(field).unwrap_or_default();
    if sent.is_empty() || !bool::from(subtle::ConstantTimeEq::ct_eq(sent.as_bytes(), csrf.as_bytes())) {
        return Err(ApiError::Forbidden(
            "the form's CSRF token is missing or not this session's: reload the page".into(),
        ));
    }
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Session {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Session>()
            .cloned()
            .ok_or_else(|| ApiError::Unauthorized("sign in first".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{KeyRing, SESSION_TAGS_MADE};

    /// Found by the audit of 2026-12-07 (fourth): checking a cookie's tag made the tag of
    /// every configured key again, one SHA-256 each, so a made-up cookie bought as many
    /// hashes as there are keys. The tags are made once, with the ring.
    #[test]
    fn a_cookies_tag_is_checked_without_hashing_each_configured_key() {
        let mut ring = KeyRing::default();
        for i in 0..500 {
            ring.add(&format!("k{i}"), sha256(format!("key {i}").as_bytes()), Role::Read, None)
                .unwrap();
        }
        let real = format!("{}.{}", session_tag(&sha256(b"key 7")), "a".repeat(TOKEN_CHARS));
        let made = SESSION_TAGS_MADE.with(|n| n.get());
        for i in 0..100 {
            let fake = format!("{:016x}.{}", i, "a".repeat(TOKEN_CHARS));
            assert!(!Cookie::parse(&fake).unwrap().of_a_configured_key(&ring));
        }
        assert!(Cookie::parse(&real).unwrap().of_a_configured_key(&ring));
        let per_cookie = (SESSION_TAGS_MADE.with(|n| n.get()) - made) as f64 / 101.0;
        assert_eq!(per_cookie, 0.0, "session tags made per cookie checked against 500 keys");
    }
}
