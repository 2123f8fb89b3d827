//! The guard around every rate-limited SP-API call, shared by all the typed methods:
//!
//! 1. report operations: the account's quota cooldown → `Cooldown` without calling
//!    (checked again after the limiter's wait, so a cooldown entered meanwhile counts);
//! 2. the circuit breaker → `BreakerOpen`;
//! 3. the access token from the shared cache (one LWA exchange across all workers),
//!    before the slot: a slot is the moment to send, not to start waiting;
//! 4. a slot from the shared limiter (every attempt takes one: a retry is a call);
//! 5. the request, with the call timeout, `x-amz-access-token` and the job's `traceparent`;
//! 6. the answer classified: success; 404; 401 → refresh once; 429 → cooldown (report
//!    operations), else the shared limiter held until its `Retry-After` and a short
//!    in-call wait; 5xx/timeout/reset/unreadable 2xx → breaker failure and jittered
//!    in-call retries; other 4xx → permanent.
//!
//! Long waits are not slept here: they come back as `RateLimited`/`Cooldown` so the job
//! is snoozed and the worker slot is freed. A 429's wait is long past `retry_max` or the
//! limiter's `max_wait` (`jobs.park_after_ms`, when a run parks), whichever is shorter.
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use drover::job::AccountId;
use drover::lwa::{self, LwaError};
use drover::resilience::{CallOutcome, Operation, ResilienceError};
use drover::trace_context;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, CONTENT_TYPE};
use reqwest::{Method, StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::classify::{self, Disposition};
use super::client::MarketplaceClient;
use super::error::CallError;
use super::types::AccountCtx;
use super::verdicts::{from_resilience, token_unavailable};
use crate::metrics;

/// The header SP-API reads the LWA access token from.
const ACCESS_TOKEN_HEADER: &str = "x-amz-access-token";
/// The largest answer a call reads: a page of orders or a listing is a few hundred KiB;
/// past this the answer is not one (found by the worker-resilience audit of 2026-12-07,
/// fourth: answers were read whole, bounded by the call's timeout only).
const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;
/// A 429 without `Retry-After` is waited out this long (SP-API always sends one).
pub(crate) const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);
/// The longest a 429's `Retry-After` holds every worker's slots of its account and
/// operation: a stray header asking for hours holds them a minute (its own run still
/// parks for the whole wait), and the next 429 holds them again.
const MAX_HOLD: Duration = Duration::from_secs(60);

/// One SP-API request, ready to send (possibly several times).
pub(crate) struct ApiRequest {
    pub(crate) op: Operation,
    pub(crate) method: Method,
    pub(crate) url: Url,
    /// JSON body, for POSTs.
    pub(crate) body: Option<Vec<u8>>,
}

/// Runs once before a call's first request is sent; its error ends the call unsent.
pub(crate) type BeforeSend<'a> = Pin<Box<dyn Future<Output = Result<(), CallError>> + Send + 'a>>;

/// A call that changes something upstream, noted before it goes out: `before_send`
/// notes it, and the call sets `unanswered` when one of its tries may have reached the
/// marketplace without an answer read (a timeout or reset after the request was sent,
/// an unreadable 2xx; a 5xx is an answer that it was not done), so that a later 404 or
/// 429 of the same call is not taken for the whole story.
pub(crate) struct Noting<'a> {
    pub(crate) before_send: BeforeSend<'a>,
    pub(crate) unanswered: &'a AtomicBool,
}

impl ApiRequest {
    /// A GET of `url` (no body).
    pub(crate) fn get(op: Operation, url: Url) -> Self {
        Self {
            op,
            method: Method::GET,
            url,
            body: None,
        }
    }
}

/// A complete answer: status, headers and the whole body.
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

/// Why no answer arrived.
pub(crate) enum SendFail {
    Cancelled,
    /// Timeout, refused or reset connection, truncated body: the text names which.
    /// `maybe_sent`: the request may have reached the marketplace (all but a refused
    /// connection or a request never built).
    Transport {
        reason: String,
        maybe_sent: bool,
    },
}

impl MarketplaceClient {
    /// Runs `req` under the guard and turns a 2xx body into `T` with `parse` (an `Err`
    /// there is an unreadable answer: transient, retried like a 5xx).
    pub(crate) async fn call<T>(
        &self,
        acct: &AccountCtx,
        req: &ApiRequest,
        parse: impl Fn(&Answer) -> Result<T, String>,
    ) -> Result<T, CallError> {
        self.call_noting(acct, req, None, parse).await
    }

    /// [`Self::call`], running `noting.before_send` once, right before the first request
    /// goes out (after the limiter's wait): a job notes there that a call which changes
    /// something upstream was sent, so a rerun knows its answer may have been lost; and
    /// setting `noting.unanswered` when a try may have gone out without an answer.
    pub(crate) async fn call_noting<T>(
        &self,
        acct: &AccountCtx,
        req: &ApiRequest,
        noting: Option<Noting<'_>>,
        parse: impl Fn(&Answer) -> Result<T, String>,
    ) -> Result<T, CallError> {
        let (mut before_send, unanswered) = match noting {
            Some(n) => (Some(n.before_send), Some(n.unanswered)),
            None => (None, None),
        };
        let lost = || {
            if let Some(u) = unanswered {
                u.store(true, Ordering::Relaxed);
            }
        };
        let op = req.op;
        let name = op.name();
        let account = &acct.account_id;
        // the limits the call counts against: the seller's, shared by its accounts
        let limits = &acct.limits;
        let res = self.resilience();
        let retries = self.config().retries;
        let mut attempt: u32 = 0;
        let mut refreshed = false;
        loop {
            if acct.cancel.is_cancelled() {
                return Err(CallError::Cancelled);
            }
            // Checked before taking a breaker probe or a limiter slot, and again after
            // the limiter's wait, so a cooldown another worker entered meanwhile stops
            // this call too.
            self.check_cooldown(limits, op).await?;
            let permit = res.breaker_permit(limits, op).await.map_err(|e| {
                if matches!(e, ResilienceError::BreakerOpen { .. }) {
                    metrics::breaker_refused(op);
                }
                from_resilience(name, e)
            })?;
            let ready = async {
                // The token before the slot: a slot is a moment to send, and a wait for
                // another worker's refresh after it would send many such calls at once.
                let token = self.access_token(acct, name).await?;
                let waited = res.acquire(limits, op, &acct.cancel).await.map_err(|e| from_resilience(name, e))?;
                metrics::limiter_waited(op, waited);
                self.check_cooldown(limits, op).await?;
                if let Some(note) = before_send.take() {
                    note.await?;
                    if acct.cancel.is_cancelled() {
                        return Err(CallError::Cancelled);
                    }
                }
                Ok::<_, CallError>(token)
            };
            let token = match ready.await {
                Ok(token) => token,
                Err(e) => {
                    // A half-open probe not sent goes to the next caller at once.
                    res.unprobe(limits, op, permit).await;
                    return Err(e);
                }
            };
            // A noted call changes something upstream: once sent, a cancel does not cut
            // it off (its answer says what happened; the call's timeout bounds the wait).
            let answer = match self.send(acct, req, &token, unanswered.is_none()).await {
                Ok(answer) => answer,
                Err(SendFail::Cancelled) => {
                    res.unprobe(limits, op, permit).await;
                    return Err(CallError::Cancelled);
                }
                Err(SendFail::Transport { reason, maybe_sent }) => {
                    if maybe_sent {
                        lost();
                    }
                    self.record(acct, op, CallOutcome::Failure).await;
                    // One WARN a failed call, at its last try; the tries before at debug.
                    if attempt < retries {
                        tracing::debug!(account = %account, op = name, call_try = attempt, reason = %reason, "marketplace call failed without an answer; trying again");
                        self.backoff(attempt, &acct.cancel).await?;
                        attempt += 1;
                        continue;
                    }
                    tracing::warn!(account = %account, op = name, tries = attempt + 1, reason = %reason, "marketplace call failed without an answer");
                    return Err(CallError::Transient { op: name, reason });
                }
            };
            if let Some(rate) = classify::rate_limit(&answer.headers).filter(|_| classify::speaks_for_the_plan(answer.status)) {
                unless_cancelled(&acct.cancel, self.observe_rate(limits, op, rate)).await;
            }
            let status = answer.status.as_u16();
            match classify::disposition(answer.status) {
                Disposition::Success => match parse(&answer) {
                    Ok(value) => {
                        self.record(acct, op, CallOutcome::Success).await;
                        return Ok(value);
                    }
                    Err(why) => {
                        // A 2xx we cannot read is the service misbehaving, like a 5xx.
                        lost();
                        self.record(acct, op, CallOutcome::Failure).await;
                        let reason = format!("unreadable {status} answer: {why}");
                        if attempt < retries {
                            tracing::debug!(account = %account, op = name, status, call_try = attempt, reason = %reason, "marketplace call failed; trying again");
                            self.backoff(attempt, &acct.cancel).await?;
                            attempt += 1;
                            continue;
                        }
                        tracing::warn!(account = %account, op = name, status, tries = attempt + 1, reason = %reason, "marketplace call failed");
                        return Err(CallError::Transient { op: name, reason });
                    }
                },
                Disposition::NotFound => {
                    // The service answered correctly: good news for the breaker.
                    self.record(acct, op, CallOutcome::Success).await;
                    return Err(CallError::NotFound { op: name });
                }
                Disposition::Unauthorized => {
                    self.record(acct, op, CallOutcome::Success).await;
                    let reason = classify::upstream_reason(answer.status, &answer.body);
                    tracing::warn!(account = %account, op = name, status, attempt, refreshed, reason = %reason, "marketplace refused the access token");
                    if let Err(e) = res.invalidate_token(account, &acct.credentials, &token).await {
                        tracing::warn!(account = %account, op = name, error = %e, "could not drop the refused access token from the cache");
                    }
                    if !refreshed {
                        refreshed = true;
                        continue;
                    }
                    return Err(CallError::Permanent { op: name, status, reason });
                }
                Disposition::RateLimited => {
                    self.record(acct, op, CallOutcome::Success).await;
                    let hint = classify::retry_after(&answer.headers);
                    tracing::warn!(account = %account, op = name, status, attempt, retry_after_ms = hint.map(|d| d.as_millis() as u64), "marketplace rate limited the call");
                    if op.is_report() {
                        return Err(self.enter_cooldown(acct, name, hint).await);
                    }
                    let wait = hint.unwrap_or(DEFAULT_RETRY_AFTER);
                    // Every worker's next slot of this account and operation waits too,
                    // rather than each learning of the 429 from its own.
                    unless_cancelled(&acct.cancel, self.hold_off(acct, op, wait)).await;
                    // Waited out here only if it is short enough that the run would not
                    // park for it (`jobs.park_after_ms`, the limiter's `max_wait`): a
                    // longer wait here would hold the worker slot other accounts need.
                    let in_call = self.config().retry_max().min(res.config().max_wait);
                    if attempt < retries && wait <= in_call {
                        self.sleep(wait, &acct.cancel).await?;
                        attempt += 1;
                        continue;
                    }
                    return Err(CallError::RateLimited {
                        op: name,
                        retry_after: wait,
                        quota: false,
                    });
                }
                Disposition::ServerError => {
                    // An answer: the marketplace says it did not do it (not `lost`).
                    self.record(acct, op, CallOutcome::Failure).await;
                    let reason = format!("{status} {}", classify::upstream_reason(answer.status, &answer.body));
                    if attempt < retries {
                        tracing::debug!(account = %account, op = name, status, call_try = attempt, reason = %reason, "marketplace call failed; trying again");
                        self.backoff(attempt, &acct.cancel).await?;
                        attempt += 1;
                        continue;
                    }
                    tracing::warn!(account = %account, op = name, status, tries = attempt + 1, reason = %reason, "marketplace call failed");
                    return Err(CallError::Transient { op: name, reason });
                }
                Disposition::ClientError => {
                    self.record(acct, op, CallOutcome::Success).await;
                    let reason = classify::upstream_reason(answer.status, &answer.body);
                    tracing::warn!(account = %account, op = name, status, attempt, reason = %reason, "marketplace refused the request");
                    return Err(CallError::Permanent { op: name, status, reason });
                }
            }
        }
    }

    /// The account's access token from the shared cache, exchanging the refresh token
    /// when needed. Rejected credentials are permanent; an unreachable LWA is transient.
    async fn access_token(&self, acct: &AccountCtx, name: &'static str) -> Result<SecretString, CallError> {
        let http = self.http();
        let token_url = self.token_url();
        let timeout = self.config().timeout();
        // The cache reports a failed fetch only as text; keep the typed error aside
        // when the fetch ran in this task.
        let rejected = std::sync::Mutex::new(None::<(u16, String)>);
        let fetch = || async {
            match lwa::exchange_with_timeout(http, token_url, &acct.credentials, timeout).await {
                Ok(t) => Ok((t.token, t.expires_in)),
                Err(e) => {
                    if let LwaError::Rejected { status, code } = &e {
                        *rejected.lock().unwrap_or_else(|p| p.into_inner()) = Some((*status, code.clone()));
                    }
                    Err(e)
                }
            }
        };
        let got = tokio::select! {
            _ = acct.cancel.cancelled() => return Err(CallError::Cancelled),
            got = self.resilience().access_token(&acct.account_id, &acct.credentials, fetch) => got,
        };
        got.map_err(|e| {
            let rejected = rejected.lock().unwrap_or_else(|p| p.into_inner()).take();
            match (e, rejected) {
                (_, Some((status, code))) => CallError::Permanent {
                    op: name,
                    status,
                    reason: format!("credentials rejected by the token service: {code}"),
                },
                // Another worker ran the exchange and it was refused: same verdict.
                (ResilienceError::Token(text), None) if text.starts_with("credentials rejected") => CallError::Permanent {
                    op: name,
                    status: 401,
                    reason: text,
                },
                (ResilienceError::Token(text), None) => token_unavailable(name, &text),
                (e, None) => from_resilience(name, e),
            }
        })
    }

    /// One attempt: send, read the whole body, within the call timeout; cut off by the
    /// account's cancel when `cancellable`.
    async fn send(&self, acct: &AccountCtx, req: &ApiRequest, token: &SecretString, cancellable: bool) -> Result<Answer, SendFail> {
        let mut token_value = HeaderValue::from_str(token.expose_secret()).map_err(|_| SendFail::Transport {
            reason: "access token is not a valid header value".into(),
            maybe_sent: false,
        })?;
        token_value.set_sensitive(true);
        let mut builder = self
            .http()
            .request(req.method.clone(), req.url.clone())
            .timeout(self.config().timeout())
            .header(ACCEPT, "application/json")
            .header(ACCESS_TOKEN_HEADER, token_value);
        if let Some(body) = &req.body {
            builder = builder.header(CONTENT_TYPE, "application/json").body(body.clone());
        }
        // One span per attempt: with an exporter it is the upstream's parent span.
        let span = tracing::info_span!(
            "upstream",
            otel.kind = "client",
            op = req.op.name(),
            http.request.method = %req.method,
            http.response.status_code = tracing::field::Empty,
        );
        if let Some(tp) = trace_context::outgoing(&span, acct.traceparent.as_deref()) {
            builder = builder.header(trace_context::TRACEPARENT, tp);
        }
        let unanswered = |e: reqwest::Error| {
            metrics::upstream_unanswered(req.op, e.is_timeout());
            SendFail::Transport {
                reason: describe(&e),
                maybe_sent: !e.is_connect(),
            }
        };
        let exchange = async {
            let response = builder.send().await.map_err(unanswered)?;
            let status = response.status();
            tracing::Span::current().record("http.response.status_code", status.as_u16());
            let headers = response.headers().clone();
            let body = match drover::http_body::read_at_most(response, MAX_ANSWER_BYTES).await {
                Ok(body) => Bytes::from(body),
                Err(drover::http_body::BodyError::Read(e)) => return Err(unanswered(e)),
                // Answered, but not with anything a call of ours is answered with: the
                // service misbehaving, as a 2xx it cannot read (the call went out).
                Err(too_large) => {
                    metrics::upstream_answered(req.op, status.as_u16());
                    return Err(SendFail::Transport {
                        reason: too_large.to_string(),
                        maybe_sent: true,
                    });
                }
            };
            metrics::upstream_answered(req.op, status.as_u16());
            Ok(Answer { status, headers, body })
        }
        .instrument(span);
        if !cancellable {
            return exchange.await;
        }
        tokio::select! {
            _ = acct.cancel.cancelled() => Err(SendFail::Cancelled),
            answer = exchange => answer,
        }
    }

    /// A report operation hit the quota: the whole seller waits (shared with every
    /// worker and with the seller's other accounts), and this call reports how long.
    /// `Err(Cooldown)` when `op` is a report operation and `limits` is cooling down.
    async fn check_cooldown(&self, limits: &AccountId, op: Operation) -> Result<(), CallError> {
        if !op.is_report() {
            return Ok(());
        }
        match self
            .resilience()
            .cooldown(limits)
            .await
            .map_err(|e| from_resilience(op.name(), e))?
        {
            Some(c) => {
                metrics::cooldown_refused(op);
                Err(CallError::Cooldown {
                    op: op.name(),
                    until: c.until,
                    reason: c.reason,
                })
            }
            None => Ok(()),
        }
    }

    /// A 429 named how long to wait: the shared limiter gives no slot of `op` before
    /// then. A failure only loses the warning to other workers (each learns from its own
    /// 429), so it is logged and the call goes on.
    async fn hold_off(&self, acct: &AccountCtx, op: Operation, wait: Duration) {
        if let Err(e) = self.resilience().hold_off(&acct.limits, op, wait.min(MAX_HOLD)).await {
            tracing::warn!(account = %acct.account_id, op = op.name(), error = %e, "could not pass the marketplace's Retry-After on to the shared limiter");
        }
    }

    async fn enter_cooldown(&self, acct: &AccountCtx, name: &'static str, hint: Option<Duration>) -> CallError {
        let account = &acct.account_id;
        let retry_after = match self
            .resilience()
            .enter_cooldown(&acct.limits, &format!("429 on {name}"), hint)
            .await
        {
            Ok(c) => {
                metrics::cooldown_entered();
                (c.until - Utc::now()).to_std().unwrap_or_default()
            }
            Err(e) => {
                tracing::warn!(account = %account, op = name, error = %e, "could not record the quota cooldown");
                hint.unwrap_or(DEFAULT_RETRY_AFTER)
            }
        };
        CallError::RateLimited {
            op: name,
            retry_after,
            quota: true,
        }
    }

    /// Breaker bookkeeping must not fail a call that already has its answer, nor hold
    /// the answer from a run being stopped.
    async fn record(&self, acct: &AccountCtx, op: Operation, outcome: CallOutcome) {
        unless_cancelled(&acct.cancel, async {
            if let Err(e) = self.resilience().record(&acct.limits, op, outcome).await {
                tracing::warn!(account = %acct.account_id, op = op.name(), error = %e, "could not record the call outcome for the circuit breaker");
            }
        })
        .await;
    }

    pub(crate) async fn backoff(&self, attempt: u32, cancel: &CancellationToken) -> Result<(), CallError> {
        let c = self.config();
        self.sleep(
            classify::backoff(attempt, c.retry_base(), c.retry_max(), rand::random::<f64>()),
            cancel,
        )
        .await
    }

    pub(crate) async fn sleep(&self, wait: Duration, cancel: &CancellationToken) -> Result<(), CallError> {
        tokio::select! {
            _ = cancel.cancelled() => Err(CallError::Cancelled),
            _ = tokio::time::sleep(wait) => Ok(()),
        }
    }
}

/// Bookkeeping after an answer arrived (the limiter's observation, the breaker's record)
/// waits on Redis. A run being stopped (its lease fenced while Redis stalls) has only a
/// moment to record what it was answered, so it stops waiting for the bookkeeping.
async fn unless_cancelled(cancel: &CancellationToken, work: impl Future<Output = ()>) {
    tokio::select! {
        biased;
        () = work => {}
        () = cancel.cancelled() => tracing::debug!("call bookkeeping skipped: the run is being stopped"),
    }
}

/// A transport failure without its URL (see `drover::lwa::describe_transport_error`).
pub(crate) fn describe(e: &reqwest::Error) -> String {
    drover::lwa::describe_transport_error(e)
}
