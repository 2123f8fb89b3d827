//! Reports 2021-06-30: `createReport`, `getReport`, `getReports`, `getReportDocument`,
//! and the document download the document's URL points at.
use std::sync::Arc;

use amazon_spapi::models::reports_2021_06_30::{
    report::ProcessingStatus, report_document::CompressionAlgorithm, CreateReportResponse, CreateReportSpecification, GetReportsResponse,
    Report, ReportDocument,
};
use axum::extract::{Extension, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{Duration as ChronoDuration, Utc};
use tokio::time::Instant;

use super::error::ApiError;
use super::extract::{parse_time, Params, SpJson, SpPath};
use super::flatfile;
use super::gate::Caller;
use super::operation::paths;
use super::report_store::{Ending, NewReport, ReportType};
use super::state::Sim;

pub(crate) async fn create_report(
    State(sim): State<Arc<Sim>>,
    Extension(Caller(account)): Extension<Caller>,
    SpJson(spec): SpJson<CreateReportSpecification>,
) -> Result<(StatusCode, Json<CreateReportResponse>), ApiError> {
    let report_type = ReportType::parse(&spec.report_type).ok_or_else(|| {
        ApiError::InvalidInput(format!(
            "reportType {:?} is not supported by the simulator; use {} or {}.",
            spec.report_type,
            ReportType::ORDERS_BY_ORDER_DATE,
            ReportType::ORDERS_BY_LAST_UPDATE
        ))
    })?;
    if spec.marketplace_ids.is_empty() {
        return Err(ApiError::InvalidInput(
            "marketplaceIds must name at least one marketplace.".to_owned(),
        ));
    }
    let now = Utc::now();
    let end = spec
        .data_end_time
        .as_deref()
        .map(|v| parse_time("dataEndTime", v))
        .transpose()?
        .unwrap_or(now);
    // SP-API's default window for order reports is the 30 days before the end.
    let start = spec
        .data_start_time
        .as_deref()
        .map(|v| parse_time("dataStartTime", v))
        .transpose()?
        .unwrap_or(end - ChronoDuration::days(30));
    if start >= end {
        return Err(ApiError::InvalidInput("dataStartTime must be before dataEndTime.".to_owned()));
    }

    let mut inner = sim.lock();
    let inner = &mut *inner;
    let acct = inner
        .accounts
        .get_mut(&account)
        .ok_or_else(|| ApiError::Unauthorized("Unknown account.".to_owned()))?;
    let rows = if spec.marketplace_ids.contains(&acct.marketplace_id) {
        acct.orders(sim.anchor)
            .iter()
            .filter(|o| report_type.selects(o, start, end))
            .cloned()
            .collect()
    } else {
        Vec::new()
    };
    let ending = if acct.faults.take_fatal_report() {
        Ending::Fatal
    } else if sim.config.cancel_empty_reports && Vec::is_empty(&rows) {
        Ending::Cancelled
    } else {
        Ending::Done
    };
    let new = NewReport {
        account: account.clone(),
        report_type,
        marketplace_ids: spec.marketplace_ids,
        start,
        end,
        ending,
        rows,
        malformed_rows: acct.faults.spec().malformed_rows,
        split_items: acct.faults.spec().split_items,
        row_seed: acct.faults.next_seed(),
    };
    acct.reports_created += 1;
    let report_id = inner.reports.create(new, &mut inner.rng, Instant::now());
    Ok((StatusCode::ACCEPTED, Json(CreateReportResponse::new(report_id))))
}

pub(crate) async fn get_report(
    State(sim): State<Arc<Sim>>,
    Extension(Caller(account)): Extension<Caller>,
    SpPath(report_id): SpPath<String>,
) -> Result<Json<Report>, ApiError> {
    let mut inner = sim.lock();
    let report = inner
        .reports
        .get_mut(&account, &report_id)
        .ok_or_else(|| ApiError::NotFound(format!("Report {report_id} not found.")))?;
    let status = report.poll(sim.config.reports, Instant::now());
    Ok(Json(report.to_model(status)))
}

/// Most reports `getReports` answers per page, and how many when `pageSize` is absent.
const MAX_REPORTS_PAGE: usize = 100;
const DEFAULT_REPORTS_PAGE: usize = 10;

/// `getReports`: the account's reports of the named types created since `createdSince`
/// (default: 90 days ago), oldest first, `pageSize` at a time; `nextToken` (alone) for
/// the next page. Reading the list does not advance a report's processing.
pub(crate) async fn get_reports(
    State(sim): State<Arc<Sim>>,
    Extension(Caller(account)): Extension<Caller>,
    params: Params,
) -> Result<Json<GetReportsResponse>, ApiError> {
    let query = match params.get("nextToken") {
        Some(token) => ReportsQuery::decode(token).ok_or_else(|| ApiError::InvalidInput("Invalid nextToken.".to_owned()))?,
        None => {
            let types = params.list("reportTypes");
            if types.is_empty() {
                return Err(ApiError::InvalidInput("reportTypes is required without a nextToken.".to_owned()));
            }
            let page_size = params
                .get("pageSize")
                .map(|raw| {
                    raw.parse::<usize>()
                        .ok()
                        .filter(|n| (1..=MAX_REPORTS_PAGE).contains(n))
                        .ok_or_else(|| {
                            ApiError::InvalidInput(format!("pageSize must be a whole number from 1 to {MAX_REPORTS_PAGE}, got {raw:?}"))
                        })
                })
                .transpose()?
                .unwrap_or(DEFAULT_REPORTS_PAGE);
            let since = params
                .time("createdSince")?
                .unwrap_or_else(|| Utc::now() - ChronoDuration::days(90));
            ReportsQuery {
                types,
                since,
                page_size,
                offset: 0,
            }
        }
    };
    let inner = sim.lock();
    let now = Instant::now();
    let matching: Vec<Report> = inner
        .reports
        .of_account_since(&account, query.since)
        .into_iter()
        .filter(|r| query.types.iter().any(|t| t == r.spec.report_type.name()))
        .map(|r| r.to_model(r.status(sim.config.reports, now)))
        .collect();
    let page: Vec<Report> = matching.iter().skip(query.offset).take(query.page_size).cloned().collect();
    let mut response = GetReportsResponse::new(page);
    if matching.len() > query.offset + query.page_size {
        response.next_token = Some(
            ReportsQuery {
                offset: query.offset + query.page_size,
                ..query
            }
            .encode(),
        );
    }
    Ok(Json(response))
}

/// A `getReports` listing, as its `nextToken` carries it.
struct ReportsQuery {
    types: Vec<String>,
    since: chrono::DateTime<Utc>,
    page_size: usize,
    offset: usize,
}

impl ReportsQuery {
    fn encode(&self) -> String {
        format!(
            "{}|{}|{}|{}",
            self.offset,
            self.page_size,
            self.since.timestamp_millis(),
            self.types.join(",")
        )
    }

    fn decode(token: &str) -> Option<Self> {
        let mut parts = token.splitn(4, '|');
        let offset = parts.next()?.parse().ok()?;
        let page_size = parts.next()?.parse().ok()?;
        let since = chrono::DateTime::from_timestamp_millis(parts.next()?.parse().ok()?)?;
        let types = parts.next()?.split(',').map(str::to_owned).collect();
        Some(Self {
            types,
            since,
            page_size,
            offset,
        })
    }
}

pub(crate) async fn get_document(
    State(sim): State<Arc<Sim>>,
    Extension(Caller(account)): Extension<Caller>,
    SpPath(document_id): SpPath<String>,
    headers: HeaderMap,
) -> Result<Json<ReportDocument>, ApiError> {
    let inner = sim.lock();
    let not_found = || ApiError::NotFound(format!("Report document {document_id} not found."));
    let report = inner
        .reports
        .by_document(&document_id)
        .filter(|r| r.spec.account == account)
        .ok_or_else(not_found)?;
    // The id is only ever shown by a DONE report; anything else is a guess.
    if report.status(sim.config.reports, Instant::now()) != ProcessingStatus::Done {
        return Err(not_found());
    }
    let url = format!(
        "{}{}",
        base_url(&sim, &headers),
        paths::DOWNLOAD.replace("{document_id}", &document_id)
    );
    let mut document = ReportDocument::new(document_id.clone(), url);
    document.compression_algorithm = Some(CompressionAlgorithm::Gzip);
    Ok(Json(document))
}

/// Where clients reach the simulator: configured, else the `Host` they used (right
/// behind docker-compose service names), else the bound address.
fn base_url(sim: &Sim, headers: &HeaderMap) -> String {
    if let Some(url) = &sim.config.public_url {
        return url.trim_end_matches('/').to_owned();
    }
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
        })
        .map_or_else(|| sim.local_url.clone(), |host| format!("http://{host}"))
}

/// The gzip'd flat file. Like S3, it is served as opaque bytes with no
/// `Content-Encoding`, so an HTTP client with automatic gzip decoding does not unpack
/// it: the client must honour `compressionAlgorithm: GZIP` itself, as with SP-API.
pub(crate) async fn download(State(sim): State<Arc<Sim>>, SpPath(document_id): SpPath<String>) -> Response {
    let text = {
        let inner = sim.lock();
        match inner.reports.by_document(&document_id) {
            Some(report) => flatfile::render(
                &report.spec.rows,
                report.spec.malformed_rows,
                report.spec.split_items,
                report.spec.row_seed,
            ),
            None => return ApiError::NotFound(format!("Report document {document_id} not found.")).into_response(),
        }
    };
    match flatfile::gzip(&text) {
        Ok(bytes) => (
            [(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"))],
            bytes,
        )
            .into_response(),
        Err(err) => {
            tracing::error!(error = %err, document_id, "simulator: gzip of a report document failed");
            ApiError::InternalFailure.into_response()
        }
    }
}
