//! One try of a delivery: the body, its signature, the request through the guarded
//! resolver with no redirects and no proxy, and what the answer means.
use std::error::Error as _;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use drover::callback::seal::CallbackSealer;
use drover::callback::signature::sign;
use drover::callback::target::refused_range;
use drover::callback::{CallbackUrl, DeliveryBody, DeliveryRecord, DeliveryResult, Verdict};
use drover::queue::DueCallback;
use secrecy::ExposeSecret;

use super::resolver::{GuardedResolver, NotResolved, TargetRefused};
use super::CallbacksConfig;

/// What one try came to: the record to keep (its `result` is set by the caller, who
/// knows whether another try follows) and the verdict.
#[derive(Debug)]
pub struct Tried {
    pub record: DeliveryRecord,
    pub verdict: Verdict,
    /// For the log line: the URL's host, never its path or query.
    pub host: String,
}

/// Sends tries. One HTTP client for every delivery, so connections are reused.
#[derive(Debug, Clone)]
pub struct Deliverer {
    client: reqwest::Client,
    sealer: CallbackSealer,
    allow_http: bool,
    allow_private: bool,
    timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot build the callback HTTP client: {0}")]
pub struct BuildError(String);

impl Deliverer {
    pub fn new(config: &CallbacksConfig, sealer: CallbackSealer) -> Result<Self, BuildError> {
        let client = reqwest::Client::builder()
            .dns_resolver(GuardedResolver {
                allow_private: config.allow_private_targets,
            })
            // A redirect would send a signed body where the tenant did not say, and could
            // point at a refused address the resolver never sees (an IP literal).
            .redirect(reqwest::redirect::Policy::none())
            // A proxy would resolve the host itself, past the resolver's checks.
            .no_proxy()
            .timeout(config.timeout())
            .connect_timeout(config.timeout().min(Duration::from_secs(5)))
            .user_agent(concat!("drover-callbacks/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| BuildError(e.to_string()))?;
        Ok(Self {
            client,
            sealer,
            allow_http: config.allow_http,
            allow_private: config.allow_private_targets,
            timeout: config.timeout(),
        })
    }

    /// Try `due` once.
    pub async fn attempt(&self, due: &DueCallback) -> Tried {
        let at_ms = Utc::now().timestamp_millis();
        let started = Instant::now();
        let tried = |verdict: Verdict, status: Option<u16>, error: Option<&str>, message: Option<String>, host: String| Tried {
            record: DeliveryRecord {
                delivery_id: due.delivery_id.clone(),
                try_number: due.try_number,
                at_ms,
                result: match verdict {
                    Verdict::Delivered => DeliveryResult::Delivered,
                    Verdict::Retry => DeliveryResult::Failed,
                    Verdict::GiveUp => DeliveryResult::GaveUp,
                },
                status,
                error: error.map(str::to_owned),
                message,
                duration_ms: started.elapsed().as_millis() as u64,
            },
            verdict,
            host,
        };
        let url = match CallbackUrl::parse(&due.url, self.allow_http) {
            Ok(u) => u,
            Err(why) => return tried(Verdict::GiveUp, None, Some("url"), Some(format!("the URL {why}")), String::new()),
        };
        let host = url.host();
        if let Some(why) = url.ip().and_then(refused_range).filter(|_| !self.allow_private) {
            let msg = format!("the host is {why}: callbacks go to public addresses only");
            return tried(Verdict::GiveUp, None, Some("refused_target"), Some(msg), host);
        }
        let ended = match &due.ended {
            Ok(e) => e,
            Err(why) => return tried(Verdict::GiveUp, None, Some("record"), Some(why.clone()), host),
        };
        let secret = match self.sealer.open(&due.job_id, &due.url, &due.sealed_secret) {
            Ok(s) => s,
            Err(_) => {
                // This worker's key, not the delivery, is wrong (a worker deployed with
                // another worker.encryption_key than the API's): tried again later, by
                // whichever worker claims it, up to the delivery's tries.
                tracing::error!(
                    job_id = %due.job_id,
                    "a callback's signing secret does not open with this worker's encryption key: \
                     check worker.encryption_key against the API's"
                );
                let msg = "the signing secret does not open with this worker's encryption key".to_owned();
                return tried(Verdict::Retry, None, Some("secret"), Some(msg), host);
            }
        };
        let body = DeliveryBody {
            delivery_id: due.delivery_id.clone(),
            job_id: due.job_id.clone(),
            kind: due.job_id.kind(),
            account: due.account.clone(),
            state: ended.state,
            attempts: ended.attempts,
            ended_at: Utc.timestamp_millis_opt(ended.ended_ms).single().unwrap_or_default(),
            error: ended.error.clone(),
        };
        let bytes = serde_json::to_vec(&body).expect("the delivery body serializes");
        let timestamp = Utc::now().timestamp();
        let signature = sign(secret.expose_secret().as_bytes(), timestamp, &due.delivery_id, &bytes);
        let sent = self
            .client
            .post(url.as_url().clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("Drover-Delivery", &due.delivery_id)
            .header("Drover-Timestamp", timestamp.to_string())
            .header("Drover-Signature", signature)
            .body(bytes)
            .send()
            .await;
        match sent {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let verdict = Verdict::of_status(status);
                let (error, message) = match status {
                    200..=299 => (None, None),
                    300..=399 => (
                        Some("redirect"),
                        Some("the receiver redirected; redirects are not followed".to_owned()),
                    ),
                    _ => (None, None),
                };
                tried(verdict, Some(status), error, message, host)
            }
            Err(e) => {
                let (verdict, class, message) = classify(&e, self.timeout);
                tried(verdict, None, Some(class), Some(message), host)
            }
        }
    }
}

/// A request that got no answer. The message is composed here: reqwest's own shows the
/// URL, whose path or query may hold a tenant's token.
fn classify(e: &reqwest::Error, timeout: Duration) -> (Verdict, &'static str, String) {
    let mut source = e.source();
    while let Some(s) = source {
        if let Some(r) = s.downcast_ref::<TargetRefused>() {
            return (Verdict::GiveUp, "refused_target", r.to_string());
        }
        if s.downcast_ref::<NotResolved>().is_some() {
            return (Verdict::Retry, "dns", "the host did not resolve".into());
        }
        source = s.source();
    }
    if e.is_timeout() {
        (Verdict::Retry, "timeout", format!("no answer within {} ms", timeout.as_millis()))
    } else if e.is_connect() {
        (Verdict::Retry, "connect", "could not connect to the receiver".into())
    } else {
        (Verdict::Retry, "transport", "the request failed before an answer came".into())
    }
}
