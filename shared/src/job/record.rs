//! A job as the queue reports it: its record, progress, errors and attempt history.
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{JobId, JobKind, JobState};

/// How far a job has got, as the handler last reported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Progress {
    pub done: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The class of a failure: it decides the job's fate and is kept on the attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    Transient,
    RateLimited,
    Permanent,
    Cancelled,
    /// The job ran past its timeout.
    Timeout,
    /// The handler panicked.
    Panic,
    /// The stored record could not be decoded by this version.
    Decode,
    /// The worker stopped heartbeating (crashed or was cut off) and the lease expired.
    Lost,
    /// A graceful shutdown cut the attempt off; it does not count.
    Interrupted,
}

impl ErrorClass {
    pub const ALL: [ErrorClass; 9] = [
        Self::Transient,
        Self::RateLimited,
        Self::Permanent,
        Self::Cancelled,
        Self::Timeout,
        Self::Panic,
        Self::Decode,
        Self::Lost,
        Self::Interrupted,
    ];
    /// Every class as the API spells it, in [`ErrorClass::ALL`]'s order.
    pub const NAMES: [&'static str; 9] = [
        "transient",
        "rate_limited",
        "permanent",
        "cancelled",
        "timeout",
        "panic",
        "decode",
        "lost",
        "interrupted",
    ];

    /// The class as the API and the stored records spell it (`rate_limited`).
    pub fn as_str(self) -> &'static str {
        Self::NAMES[Self::ALL.iter().position(|c| *c == self).unwrap_or(0)]
    }

    pub fn parse(s: &str) -> Option<ErrorClass> {
        Self::NAMES.iter().position(|n| *n == s).map(|i| Self::ALL[i])
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorInfo {
    pub class: ErrorClass,
    pub message: String,
}

/// What one attempt came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    Succeeded,
    Partial,
    Failed,
    Snoozed,
    Cancelled,
    Lost,
    Released,
}

/// One run of a job: kept in order on the job, never rewritten.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptRecord {
    /// 1-based; a released or snoozed run keeps the number it had but does not use it up.
    pub number: u32,
    pub worker: String,
    pub started_at: DateTime<Utc>,
    pub ended_at: DateTime<Utc>,
    pub outcome: AttemptOutcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// Set when the worker's lease had already gone when it reported: the result was
    /// not applied to the job.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub late: bool,
}

/// How a replayed job's previous life ended: a replay starts a fresh life (no error,
/// end time or result), and an ending recorded only in the last error (cancelled before
/// it ran, a cancel that overrode a hand-back, death after the snooze cap) would
/// otherwise leave no trace, nor what first made the job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreviousEnding {
    /// dead, cancelled or partial.
    pub state: JobState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
    /// What made that life (`api`, a schedule, an earlier `replay`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<String>,
}

/// A job as the queue knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: JobId,
    pub kind: JobKind,
    pub state: JobState,
    /// Kept as stored: a record written by another version still shows.
    pub payload: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    pub priority: u8,
    pub attempts: u32,
    pub max_attempts: u32,
    pub timeout_ms: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<ErrorInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    pub cancel_requested: bool,
    /// What made the job (`api`, `schedule:<account>/<name>`, `replay`, `account_created`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<String>,
    #[serde(default)]
    pub attempt_history: Vec<AttemptRecord>,
    /// How its previous life ended, once it was replayed (the latest replay's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_ending: Option<PreviousEnding>,
    /// The completion callback, with its delivery history (only in a full read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback: Option<crate::callback::JobCallback>,
}

/// The trace id part of a W3C `traceparent` (`00-<trace id>-<span id>-<flags>`), when
/// the header is well formed as the trace context propagator reads it: neither id all
/// zeros, and nothing after the flags in version 00 (found by the audit of 2026-12-07:
/// such a header was kept, and the job named a trace its spans never joined).
pub fn trace_id_of(traceparent: &str) -> Option<&str> {
    let mut parts = traceparent.split('-');
    let version = parts.next()?;
    let trace = parts.next()?;
    let span = parts.next()?;
    let flags = parts.next()?;
    if version == "00" && parts.next().is_some() {
        return None;
    }
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
    let zero = |s: &str| s.bytes().all(|b| b == b'0');
    if hex(version, 2) && version != "ff" && hex(trace, 32) && hex(span, 16) && hex(flags, 2) && !zero(trace) && !zero(span) {
        Some(trace)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_class_names_are_what_serde_writes() {
        for c in ErrorClass::ALL {
            assert_eq!(serde_json::to_value(c).unwrap(), c.as_str());
            assert_eq!(ErrorClass::parse(c.as_str()), Some(c));
        }
        assert_eq!(ErrorClass::parse("nonsense"), None);
    }

    #[test]
    fn a_well_formed_traceparent_yields_its_trace_id() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(trace_id_of(tp), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
    }

    #[test]
    fn a_malformed_traceparent_yields_nothing() {
        for tp in [
            "",
            "00-abc-def-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "zz-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(trace_id_of(tp), None, "{tp}");
        }
    }
}
