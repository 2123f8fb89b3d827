//! The error responses the endpoints document, each written once: a handler's
//! `#[utoipa::path]` lists `responses(Unauthorized, Unavailable, …)` and writes a tuple
//! only where its own words say more (e.g. what a 409 means there). Every one is an
//! `application/problem+json` [`Problem`]; the doc comment of each names the `ApiError`
//! variants that produce it, the `description` is what clients read.
#![allow(dead_code)] // the types only document responses: `ApiError` is what is sent

use utoipa::IntoResponses;

use crate::error::Problem;

/// `ApiError::BadRequest`.
#[derive(IntoResponses)]
#[response(
    status = 400,
    description = "Malformed JSON, or a header that cannot be used",
    content_type = "application/problem+json"
)]
pub struct BadRequest(Problem);

/// `ApiError::Unauthorized`, sent by the role guard before any handler runs.
#[derive(IntoResponses)]
#[response(
    status = 401,
    description = "Missing or invalid API key",
    content_type = "application/problem+json",
    headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"drover\"`"))
)]
pub struct Unauthorized(Problem);

/// `ApiError::Forbidden`: the role guard, or the handler's account scope check.
#[derive(IntoResponses)]
#[response(
    status = 403,
    description = "The key's role or accounts do not allow this",
    content_type = "application/problem+json"
)]
pub struct Forbidden(Problem);

/// `ApiError::NotFound` from `handlers::load_job`: one answer whether the job is missing
/// or hidden, so a key learns nothing about other tenants.
#[derive(IntoResponses)]
#[response(
    status = 404,
    description = "No such job, or one of an account this key may not see (the same answer)",
    content_type = "application/problem+json"
)]
pub struct JobNotFound(Problem);

/// `ApiError::NotFound` from the accounts endpoints, on the same terms as [`JobNotFound`].
#[derive(IntoResponses)]
#[response(
    status = 404,
    description = "No such account, or one this key may not see",
    content_type = "application/problem+json"
)]
pub struct AccountNotFound(Problem);

/// `ApiError::UnsupportedMediaType`, from the body extractors.
#[derive(IntoResponses)]
#[response(
    status = 415,
    description = "The body is not of the documented content type",
    content_type = "application/problem+json"
)]
pub struct UnsupportedMediaType(Problem);

/// `ApiError::PayloadTooLarge`, from the body limit every JSON body is read under
/// (`api.body_limit_bytes`).
#[derive(IntoResponses)]
#[response(
    status = 413,
    description = "The body is over the size limit (`api.body_limit_bytes`); nothing was read",
    content_type = "application/problem+json"
)]
pub struct PayloadTooLarge(Problem);

/// `ApiError::Validation`: `errors` names each invalid field or parameter.
#[derive(IntoResponses)]
#[response(
    status = 422,
    description = "Invalid fields or parameters, each named in `errors`",
    content_type = "application/problem+json"
)]
pub struct Invalid(Problem);

/// `ApiError::RateLimited`: the per-key limits on writes and on reads (`ratelimit.rs`).
#[derive(IntoResponses)]
#[response(
    status = 429,
    description = "Rate limited: this key sent more requests (writes, or reads) than its limit allows; see Retry-After",
    content_type = "application/problem+json",
    headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))
)]
pub struct RateLimited(Problem);

/// `ApiError::RateLimited` or `ApiError::AccountFull`: what a submit may be refused for.
#[derive(IntoResponses)]
#[response(
    status = 429,
    description = "`type` `urn:drover:problem:rate-limited`: this key sent more writes than its limit allows. \
        `type` `urn:drover:problem:account-full`: the job's account keeps as many unfinished jobs of \
        the kind as it may (`api.jobs.max_unfinished_per_account`); nothing was written. See Retry-After",
    content_type = "application/problem+json",
    headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))
)]
pub struct SubmitLimited(Problem);

/// `ApiError::Unavailable`, `ApiError::Timeout`, `ApiError::NotDurable` or
/// `ApiError::DurabilityUnsupported`.
#[derive(IntoResponses)]
#[response(
    status = 503,
    description = "A dependency (Redis, Postgres) did not answer, or the request timed out; see Retry-After. \
        A write may have happened: retry it with the same Idempotency-Key. `type` \
        `urn:drover:problem:not-durable`: the job was accepted but did not reach the configured \
        `queue.durability` in time; the same request with the same Idempotency-Key returns it",
    content_type = "application/problem+json",
    headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))
)]
pub struct Unavailable(Problem);
