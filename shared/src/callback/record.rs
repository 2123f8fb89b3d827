//! What a delivery sends (the body) and what the job keeps of each try (its history).
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::job::{ErrorInfo, JobId, JobKind, JobState};

/// How the job ended, as the script that ended it wrote it (`cbe`): a replay later
/// does not change what this delivery reports.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Ended {
    pub state: JobState,
    pub ended_ms: i64,
    pub attempts: u32,
    #[serde(default)]
    pub error: Option<ErrorInfo>,
}

/// The JSON body POSTed to the callback URL (what the signature covers, byte for byte).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryBody {
    /// Stable across the tries of one delivery (`<job id>:<n>`, n counting the job's
    /// endings): receivers use it to process each delivery once.
    pub delivery_id: String,
    pub job_id: JobId,
    pub kind: JobKind,
    pub account: Option<String>,
    pub state: JobState,
    /// Attempts the job used.
    pub attempts: u32,
    pub ended_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
}

/// What one try came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryResult {
    /// The receiver answered 2xx.
    Delivered,
    /// It will be tried again (the answer or failure may pass).
    Failed,
    /// No more tries: an answer that will not change, a refused target, or the last try.
    GaveUp,
    /// The worker trying it stopped before recording it (its claim ran out).
    Lost,
}

/// One try, as kept on the job (newest 20) and shown by `GET /v1/jobs/{id}`. Never the
/// secret or the signature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryRecord {
    pub delivery_id: String,
    #[serde(rename = "try")]
    pub try_number: u32,
    pub at_ms: i64,
    pub result: DeliveryResult,
    /// The receiver's HTTP status, when it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Why it failed when there was no answer to show: `timeout`, `connect`, `dns`,
    /// `refused_target`, `redirect`, `secret`, `transport`, `lost`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub duration_ms: u64,
}

/// Where a job's delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallbackStatus {
    /// The job has not ended yet.
    Waiting,
    /// Due, or being tried, or waiting for its next try.
    Pending,
    Delivered,
    /// No more tries.
    Failed,
}

/// A job's callback as `GET /v1/jobs/{id}` shows it (never the secret).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobCallback {
    pub url: String,
    pub status: CallbackStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_try_at: Option<DateTime<Utc>>,
    /// The newest tries, oldest first.
    #[serde(default)]
    pub deliveries: Vec<DeliveryRecord>,
}
