//! A job's completion callback as `GET /v1/jobs/{id}` shows it: the URL (whole to the
//! keys that may have set it), where its delivery stands and the newest tries. Never the
//! secret or a signature.
use chrono::{DateTime, TimeZone, Utc};
use drover::callback::{CallbackStatus, CallbackUrl, DeliveryRecord, DeliveryResult, JobCallback};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::Principal;

#[derive(Debug, Serialize, ToSchema)]
pub struct CallbackView {
    pub url: String,
    /// `waiting` (the job has not ended), `pending` (due, being tried, or waiting for its
    /// next try), `delivered` or `failed` (no more tries).
    #[schema(value_type = String, example = "delivered")]
    pub status: CallbackStatus,
    /// When the next try is due, while `pending`.
    pub next_try_at: Option<DateTime<Utc>>,
    /// The newest 20 tries, oldest first.
    pub deliveries: Vec<DeliveryView>,
}

/// One try of a delivery.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryView {
    /// Stable across the tries of one delivery (also sent as `Drover-Delivery`).
    pub delivery_id: String,
    /// 1-based.
    #[serde(rename = "try")]
    pub try_number: u32,
    pub at: DateTime<Utc>,
    /// `delivered`, `failed` (tried again later), `gave_up` or `lost` (the worker
    /// trying it stopped).
    #[schema(value_type = String, example = "delivered")]
    pub result: DeliveryResult,
    /// The receiver's HTTP status, when it answered.
    pub status: Option<u16>,
    /// Why, when there was no answer to show: `timeout`, `connect`, `dns`,
    /// `refused_target`, `redirect`, `secret`, `transport`, `lost`.
    pub error: Option<String>,
    pub message: Option<String>,
    pub duration_ms: u64,
}

impl From<DeliveryRecord> for DeliveryView {
    fn from(d: DeliveryRecord) -> Self {
        Self {
            delivery_id: d.delivery_id,
            try_number: d.try_number,
            at: Utc.timestamp_millis_opt(d.at_ms).single().unwrap_or_default(),
            result: d.result,
            status: d.status,
            error: d.error,
            message: d.message,
            duration_ms: d.duration_ms,
        }
    }
}

impl CallbackView {
    /// The view as `caller` may see it. The URL's path and query may hold its receiver's
    /// token: a key for some accounts sees the URL whole only when its host is one of the
    /// key's own `callback_hosts` (the key may have set it), else its scheme and host
    /// only — another key (an operator's) may have set it on the tenant's job.
    pub fn seen_by(mut self, caller: &Principal) -> Self {
        if caller.accounts.is_none() {
            return self;
        }
        let url = CallbackUrl::parse(&self.url, true).ok();
        let own = url.as_ref().is_some_and(|u| {
            let host = u.host();
            caller
                .callbacks
                .as_ref()
                .is_some_and(|grant| grant.hosts.iter().any(|p| p.matches(&host)))
        });
        if !own {
            self.url = url.map_or_else(String::new, |u| format!("{}/", u.as_url().origin().ascii_serialization()));
        }
        self
    }
}

impl From<JobCallback> for CallbackView {
    fn from(c: JobCallback) -> Self {
        Self {
            url: c.url,
            status: c.status,
            next_try_at: c.next_try_at,
            deliveries: c.deliveries.into_iter().map(Into::into).collect(),
        }
    }
}
