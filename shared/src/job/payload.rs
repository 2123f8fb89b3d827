//! The typed payload of each job kind, how it is decoded and validated, and the field
//! errors that name what is wrong. With the `openapi` feature the payloads document
//! themselves (`utoipa::ToSchema`) for the API.
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::{AccountId, JobKind, MarketplaceId, Sku};

/// Most SKUs one cleanup job may carry.
pub const MAX_SKUS: usize = 100_000;
/// Longest range one backfill may cover.
pub const MAX_BACKFILL_DAYS: i64 = 731;

/// What a sync walks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum SyncResource {
    Orders,
    Listings,
}

/// The payload of a `sync` job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SyncPayload {
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "acme-eu"))]
    pub account_id: AccountId,
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "A1PA6795UKMFR9"))]
    pub marketplace_id: MarketplaceId,
    /// `orders` and/or `listings`.
    pub resources: Vec<SyncResource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
}

fn default_window_hours() -> u32 {
    6
}

/// The payload of a `backfill` job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct BackfillPayload {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub account_id: AccountId,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub marketplace_id: MarketplaceId,
    #[cfg_attr(feature = "openapi", schema(example = "GET_FLAT_FILE_ALL_ORDERS_DATA_BY_ORDER_DATE_GENERAL"))]
    pub report_type: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// 1 to 720, default 6.
    #[serde(default = "default_window_hours")]
    pub window_hours: u32,
}

/// The payload of a `cleanup` job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CleanupPayload {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub account_id: AccountId,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub marketplace_id: MarketplaceId,
    /// 1 to 100000 seller SKUs.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub skus: Vec<Sku>,
}

/// A typed payload, one variant per kind.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum JobPayload {
    Sync(SyncPayload),
    Backfill(BackfillPayload),
    Cleanup(CleanupPayload),
}

/// One invalid field: its JSON path (e.g. `payload.skus`) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid payload: {}", .0.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; "))]
pub struct PayloadError(pub Vec<FieldError>);

impl JobPayload {
    /// Decode and validate the payload of a job of `kind`. Unknown fields, wrong types
    /// and values out of range all come back as field errors naming the field.
    pub fn from_json(kind: JobKind, value: serde_json::Value) -> Result<Self, PayloadError> {
        // Read through the path tracker, so a bad value deep inside is named by where it
        // is (`payload.skus[1]`, `payload.start`), not only as `payload`.
        let mut track = serde_path_to_error::Track::new();
        let mut payload = Self::typed(kind, serde_path_to_error::Deserializer::new(value, &mut track))
            .map_err(|e| PayloadError(vec![serde_field_error_at(&track.path(), &e)]))?;
        payload.validate()?;
        // A cleanup's SKU named again is stored once, as a CSV upload's is: the run
        // deletes each once anyway, and a payload repeating one SKU 100,000 times would
        // cost a megabyte kept for one delete.
        if let Self::Cleanup(p) = &mut payload {
            let mut seen = std::collections::HashSet::with_capacity(p.skus.len());
            p.skus.retain(|sku| seen.insert(sku.clone()));
        }
        Ok(payload)
    }

    /// Decode and validate a stored payload of a job of `kind` from its JSON text in one
    /// pass, with no `serde_json::Value` in between (the worker reads every leased job's
    /// payload). Text that is not JSON is `payload is not JSON: …`; anything else reads as
    /// [`JobPayload::from_json`]'s error does.
    pub fn from_json_text(kind: JobKind, text: &str) -> Result<Self, String> {
        let mut de = serde_json::Deserializer::from_str(text);
        let payload = Self::typed(kind, &mut de)
            .and_then(|p| de.end().map(|()| p))
            .map_err(|e| match e.classify() {
                // read again, tracking where: the path costs only a payload that fails
                serde_json::error::Category::Data => {
                    let mut again = serde_json::Deserializer::from_str(text);
                    let mut track = serde_path_to_error::Track::new();
                    let at = match Self::typed(kind, serde_path_to_error::Deserializer::new(&mut again, &mut track)) {
                        Err(e) => serde_field_error_at(&track.path(), &e),
                        Ok(_) => serde_field_error(&e),
                    };
                    PayloadError(vec![at]).to_string()
                }
                _ => format!("payload is not JSON: {e}"),
            })?;
        payload.validate().map_err(|e| e.to_string())?;
        Ok(payload)
    }

    /// The payload type of `kind`, read from `from` (not yet validated).
    fn typed<'de, D>(kind: JobKind, from: D) -> Result<Self, serde_json::Error>
    where
        D: serde::Deserializer<'de, Error = serde_json::Error>,
    {
        match kind {
            JobKind::Sync => SyncPayload::deserialize(from).map(JobPayload::Sync),
            JobKind::Backfill => BackfillPayload::deserialize(from).map(JobPayload::Backfill),
            JobKind::Cleanup => CleanupPayload::deserialize(from).map(JobPayload::Cleanup),
        }
    }

    pub fn kind(&self) -> JobKind {
        match self {
            JobPayload::Sync(_) => JobKind::Sync,
            JobPayload::Backfill(_) => JobKind::Backfill,
            JobPayload::Cleanup(_) => JobKind::Cleanup,
        }
    }

    pub fn account_id(&self) -> &AccountId {
        match self {
            JobPayload::Sync(p) => &p.account_id,
            JobPayload::Backfill(p) => &p.account_id,
            JobPayload::Cleanup(p) => &p.account_id,
        }
    }

    pub fn validate(&self) -> Result<(), PayloadError> {
        let mut errors = Vec::new();
        match self {
            JobPayload::Sync(p) => {
                if p.resources.is_empty() {
                    errors.push(FieldError::new("payload.resources", "must name at least one of orders, listings"));
                }
                let mut seen = p.resources.clone();
                seen.sort_by_key(|r| *r as u8);
                seen.dedup();
                if seen.len() != p.resources.len() {
                    errors.push(FieldError::new("payload.resources", "must not repeat a resource"));
                }
                if let Some(since) = p.since {
                    if since > Utc::now() + Duration::minutes(5) {
                        errors.push(FieldError::new("payload.since", "must not be in the future"));
                    }
                }
            }
            JobPayload::Backfill(p) => {
                if p.report_type.is_empty()
                    || p.report_type.len() > 100
                    || !p
                        .report_type
                        .bytes()
                        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
                {
                    errors.push(FieldError::new(
                        "payload.report_type",
                        "must be an SP-API report type such as GET_FLAT_FILE_ALL_ORDERS_DATA_BY_ORDER_DATE_GENERAL",
                    ));
                }
                if p.start >= p.end {
                    errors.push(FieldError::new("payload.end", "must be after start"));
                } else if p.end - p.start > Duration::days(MAX_BACKFILL_DAYS) {
                    errors.push(FieldError::new(
                        "payload.end",
                        format!("range must not exceed {MAX_BACKFILL_DAYS} days"),
                    ));
                }
                if p.end > Utc::now() + Duration::minutes(5) {
                    errors.push(FieldError::new("payload.end", "must not be in the future"));
                }
                if !(1..=720).contains(&p.window_hours) {
                    errors.push(FieldError::new("payload.window_hours", "must be between 1 and 720"));
                }
            }
            JobPayload::Cleanup(p) => {
                if p.skus.is_empty() {
                    errors.push(FieldError::new("payload.skus", "must hold at least one SKU"));
                }
                if p.skus.len() > MAX_SKUS {
                    errors.push(FieldError::new("payload.skus", format!("must hold at most {MAX_SKUS} SKUs")));
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(PayloadError(errors))
        }
    }
}

/// As [`serde_field_error`], with where in the payload the error arose: a value the
/// message does not name a field for is named by its path.
fn serde_field_error_at(path: &serde_path_to_error::Path, e: &serde_json::Error) -> FieldError {
    let mut f = serde_field_error(e);
    let at = path.to_string();
    if f.field == "payload" && at != "." && !at.is_empty() {
        f.field = format!("payload.{at}");
    }
    f
}

/// Turn serde's message into a field error: the field is named when serde names it.
fn serde_field_error(e: &serde_json::Error) -> FieldError {
    let msg = e.to_string();
    let msg = msg.split(" at line ").next().unwrap_or(&msg).to_owned();
    let field = if let Some(rest) = msg.strip_prefix("unknown field `") {
        rest.split('`').next().map(|f| format!("payload.{f}"))
    } else if let Some(rest) = msg.strip_prefix("missing field `") {
        rest.split('`').next().map(|f| format!("payload.{f}"))
    } else {
        None
    };
    FieldError::new(field.unwrap_or_else(|| "payload".to_owned()), msg)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_payload_read_from_its_text_reads_as_one_read_through_a_json_value() {
        let texts = [
            (
                JobKind::Cleanup,
                r#"{"account_id":"a1","marketplace_id":"ATVPDKIKX0DER","skus":["s1","s2"]}"#,
            ),
            (
                JobKind::Sync,
                r#"{"account_id":"acct-1","marketplace_id":"ATVPDKIKX0DER","resources":["orders"]}"#,
            ),
            (
                JobKind::Cleanup,
                r#"{"account_id":"a1","marketplace_id":"ATVPDKIKX0DER","skus":["s1"],"extra":1}"#,
            ),
            (JobKind::Cleanup, r#"{"account_id":"a1","skus":["s1"]}"#),
            (
                JobKind::Cleanup,
                r#"{"account_id":7,"marketplace_id":"ATVPDKIKX0DER","skus":["s1"]}"#,
            ),
            (
                JobKind::Cleanup,
                r#"{"account_id":"a1","marketplace_id":"ATVPDKIKX0DER","skus":[]}"#,
            ),
            (JobKind::Backfill, r#"[1,2]"#),
        ];
        for (kind, text) in texts {
            let through_value = JobPayload::from_json(kind, serde_json::from_str(text).unwrap()).map_err(|e| e.to_string());
            assert_eq!(JobPayload::from_json_text(kind, text), through_value, "{text}");
        }
        let broken = JobPayload::from_json_text(JobKind::Cleanup, r#"{"account_id":"#).unwrap_err();
        let expected = serde_json::from_str::<serde_json::Value>(r#"{"account_id":"#).unwrap_err();
        assert_eq!(broken, format!("payload is not JSON: {expected}"));
    }

    #[test]
    fn a_valid_sync_payload_decodes() {
        let p = JobPayload::from_json(
            JobKind::Sync,
            json!({"account_id": "acct-1", "marketplace_id": "ATVPDKIKX0DER", "resources": ["orders"]}),
        )
        .unwrap();
        assert_eq!(p.account_id().as_str(), "acct-1");
    }

    #[test]
    fn unknown_fields_are_named() {
        let err = JobPayload::from_json(
            JobKind::Sync,
            json!({"account_id": "a", "marketplace_id": "M", "resources": ["orders"], "colour": 1}),
        )
        .unwrap_err();
        assert_eq!(err.0[0].field, "payload.colour");
    }

    #[test]
    fn missing_fields_are_named() {
        let err = JobPayload::from_json(JobKind::Cleanup, json!({"account_id": "a", "marketplace_id": "M"})).unwrap_err();
        assert_eq!(err.0[0].field, "payload.skus");
    }

    #[test]
    fn a_backfill_whose_end_is_before_its_start_is_rejected() {
        let err = JobPayload::from_json(
            JobKind::Backfill,
            json!({"account_id": "a", "marketplace_id": "M", "report_type": "GET_X",
                   "start": "2026-01-02T00:00:00Z", "end": "2026-01-01T00:00:00Z"}),
        )
        .unwrap_err();
        assert_eq!(err.0[0].field, "payload.end");
    }

    #[test]
    fn a_cleanup_without_skus_is_rejected() {
        let err = JobPayload::from_json(JobKind::Cleanup, json!({"account_id": "a", "marketplace_id": "M", "skus": []})).unwrap_err();
        assert_eq!(err.0[0].field, "payload.skus");
    }
}
