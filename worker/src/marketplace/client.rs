//! [`MarketplaceClient`]: SP-API's operations as typed methods over SP-API's own models
//! (`amazon-spapi`, the same ones the simulator serves), every call under the guard in
//! `call`.
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use amazon_spapi::models::listings_items_2021_08_01::{listings_item_submission_response::Status as SubmissionStatus, Item};
use amazon_spapi::models::orders_v0::GetOrdersResponse;
use amazon_spapi::models::reports_2021_06_30::{
    CreateReportResponse, CreateReportSpecification, GetReportsResponse, Report, ReportDocument,
};
use chrono::{DateTime, SecondsFormat, Utc};
use drover::job::{AccountId, MarketplaceId, Sku};
use drover::resilience::{Operation, Resilience};
use reqwest::{Method, Url};
use serde::de::DeserializeOwned;

use super::call::{Answer, ApiRequest, Noting};
use super::config::MarketplaceConfig;
use super::error::CallError;
use super::types::{AccountCtx, DeleteOutcome, OrdersPage, OrdersQuery};

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientBuildError {
    #[error("invalid marketplace configuration: {}", .0.join("; "))]
    Invalid(Vec<String>),
    #[error("could not build the HTTP client: {0}")]
    Http(String),
}

/// The worker's client to the marketplace. Cheap to clone: one pooled HTTP client and
/// one [`Resilience`] shared by every clone.
#[derive(Clone)]
pub struct MarketplaceClient {
    inner: Arc<Inner>,
}

/// How long a rate passed on to the shared limiter is taken as known there.
const RATE_RESEND: Duration = Duration::from_secs(10);

struct Inner {
    http: reqwest::Client,
    config: MarketplaceConfig,
    base: Url,
    token_url: String,
    resilience: Resilience,
    /// The last `x-amzn-RateLimit-Limit` passed on per account+operation and when, so the
    /// shared limiter hears about it once in a while rather than on every call.
    observed: Mutex<HashMap<(AccountId, Operation), (f64, Instant)>>,
}

impl fmt::Debug for MarketplaceClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MarketplaceClient")
            .field("base_url", &self.inner.base.as_str())
            .field("token_url", &self.inner.token_url)
            .field("timeout_ms", &self.inner.config.timeout_ms)
            .field("retries", &self.inner.config.retries)
            .finish_non_exhaustive()
    }
}

impl MarketplaceClient {
    /// Validates `config` and builds the pooled HTTP client.
    pub fn new(config: MarketplaceConfig, resilience: Resilience) -> Result<Self, ClientBuildError> {
        config.validate().map_err(ClientBuildError::Invalid)?;
        let base = Url::parse(&config.base_url).map_err(|e| ClientBuildError::Invalid(vec![format!("marketplace.base_url: {e}")]))?;
        let http = reqwest::Client::builder()
            .user_agent(config.user_agent.clone())
            .connect_timeout(config.connect_timeout())
            .pool_max_idle_per_host(config.pool_idle_per_host)
            // Calls carry x-amz-access-token, which reqwest does not strip on a redirect to
            // another host, and the token exchange would re-POST the refresh token.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ClientBuildError::Http(super::call::describe(&e)))?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                token_url: config.token_url(),
                config,
                base,
                resilience,
                observed: Mutex::new(HashMap::new()),
            }),
        })
    }

    pub fn config(&self) -> &MarketplaceConfig {
        &self.inner.config
    }
    pub fn resilience(&self) -> &Resilience {
        &self.inner.resilience
    }
    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.inner.http
    }
    pub(crate) fn token_url(&self) -> &str {
        &self.inner.token_url
    }

    /// Orders v0 `getOrders`: one page.
    pub async fn get_orders(&self, acct: &AccountCtx, q: &OrdersQuery) -> Result<OrdersPage, CallError> {
        let mut url = self.url(&["orders", "v0", "orders"]);
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("MarketplaceIds", &join(&q.marketplace_ids));
            match &q.next_token {
                Some(token) => {
                    query.append_pair("NextToken", token);
                }
                None => {
                    if let Some(t) = q.created_after {
                        query.append_pair("CreatedAfter", &iso(t));
                    }
                    if let Some(t) = q.last_updated_after {
                        query.append_pair("LastUpdatedAfter", &iso(t));
                    }
                }
            }
            if let Some(n) = q.max_results {
                query.append_pair("MaxResultsPerPage", &n.to_string());
            }
        }
        let req = ApiRequest::get(Operation::GetOrders, url);
        self.call(acct, &req, |answer| {
            let response: GetOrdersResponse = json(answer)?;
            let list = response.payload.ok_or("no payload in the getOrders answer")?;
            Ok(OrdersPage {
                last_updated_before: list
                    .last_updated_before
                    .as_deref()
                    .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| t.with_timezone(&Utc)),
                orders: list.orders,
                next_token: list.next_token.filter(|t| !t.is_empty()),
            })
        })
        .await
    }

    /// Listings Items `getListingsItem` (summaries); `None` when the SKU does not exist.
    pub async fn get_listings_item(
        &self,
        acct: &AccountCtx,
        seller_id: &str,
        sku: &Sku,
        marketplace_ids: &[MarketplaceId],
    ) -> Result<Option<Item>, CallError> {
        let mut url = self.url(&["listings", "2021-08-01", "items", seller_id, sku.as_str()]);
        url.query_pairs_mut()
            .append_pair("marketplaceIds", &join(marketplace_ids))
            .append_pair("includedData", "summaries");
        let req = ApiRequest::get(Operation::GetListingsItem, url);
        match self.call(acct, &req, json::<Item>).await {
            Ok(item) => Ok(Some(item)),
            Err(CallError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Listings Items `deleteListingsItem`. A SKU that is already gone is `Absent`; a
    /// submission SP-API answers `INVALID` is permanent (with its first issue).
    pub async fn delete_listings_item(
        &self,
        acct: &AccountCtx,
        seller_id: &str,
        sku: &Sku,
        marketplace_ids: &[MarketplaceId],
    ) -> Result<DeleteOutcome, CallError> {
        self.delete_listings_item_noting(acct, seller_id, sku, marketplace_ids, None).await
    }

    /// [`Self::delete_listings_item`], noting the delete (`noting`) as it goes out.
    pub(crate) async fn delete_listings_item_noting(
        &self,
        acct: &AccountCtx,
        seller_id: &str,
        sku: &Sku,
        marketplace_ids: &[MarketplaceId],
        noting: Option<Noting<'_>>,
    ) -> Result<DeleteOutcome, CallError> {
        let mut url = self.url(&["listings", "2021-08-01", "items", seller_id, sku.as_str()]);
        url.query_pairs_mut().append_pair("marketplaceIds", &join(marketplace_ids));
        let req = ApiRequest {
            op: Operation::DeleteListingsItem,
            method: Method::DELETE,
            url,
            body: None,
        };
        let submission = match self
            .call_noting(
                acct,
                &req,
                noting,
                json::<amazon_spapi::models::listings_items_2021_08_01::ListingsItemSubmissionResponse>,
            )
            .await
        {
            Ok(s) => s,
            Err(CallError::NotFound { .. }) => return Ok(DeleteOutcome::Absent),
            Err(e) => return Err(e),
        };
        if submission.status == SubmissionStatus::Invalid {
            let issue = submission
                .issues
                .as_ref()
                .and_then(|i| i.first())
                .map(|i| format!("{}: {}", i.code, i.message))
                .unwrap_or_else(|| "submission INVALID".to_owned());
            return Err(CallError::Permanent {
                op: Operation::DeleteListingsItem.name(),
                status: 200,
                reason: issue,
            });
        }
        Ok(DeleteOutcome::Deleted)
    }

    /// Reports `createReport` for `[data_start, data_end)`; returns the report id.
    pub async fn create_report(
        &self,
        acct: &AccountCtx,
        report_type: &str,
        data_start: DateTime<Utc>,
        data_end: DateTime<Utc>,
        marketplace_ids: &[MarketplaceId],
    ) -> Result<String, CallError> {
        self.create_report_noting(acct, report_type, data_start, data_end, marketplace_ids, None)
            .await
    }

    /// [`Self::create_report`], noting the request (`noting`) as it goes out.
    pub(crate) async fn create_report_noting(
        &self,
        acct: &AccountCtx,
        report_type: &str,
        data_start: DateTime<Utc>,
        data_end: DateTime<Utc>,
        marketplace_ids: &[MarketplaceId],
        noting: Option<Noting<'_>>,
    ) -> Result<String, CallError> {
        let mut spec = CreateReportSpecification::new(
            report_type.to_owned(),
            marketplace_ids.iter().map(|m| m.as_str().to_owned()).collect(),
        );
        spec.data_start_time = Some(iso(data_start));
        spec.data_end_time = Some(iso(data_end));
        let body = serde_json::to_vec(&spec).map_err(|e| CallError::Permanent {
            op: Operation::CreateReport.name(),
            status: 0,
            reason: format!("could not encode the report specification: {e}"),
        })?;
        let req = ApiRequest {
            op: Operation::CreateReport,
            method: Method::POST,
            url: self.url(&["reports", "2021-06-30", "reports"]),
            body: Some(body),
        };
        self.call_noting(acct, &req, noting, |answer| {
            let created: CreateReportResponse = json(answer)?;
            if created.report_id.is_empty() {
                return Err("empty reportId".to_owned());
            }
            Ok(created.report_id)
        })
        .await
    }

    /// Reports `getReport`: the status (IN_QUEUE, IN_PROGRESS, DONE, CANCELLED, FATAL)
    /// and, when DONE, the document id.
    pub async fn get_report(&self, acct: &AccountCtx, report_id: &str) -> Result<Report, CallError> {
        let req = ApiRequest::get(Operation::GetReport, self.url(&["reports", "2021-06-30", "reports", report_id]));
        self.call(acct, &req, json::<Report>).await
    }

    /// Reports `getReports`: the account's reports of `report_type` created since
    /// `created_since`, up to 100 (the first page: it is asked about a few minutes).
    pub async fn get_reports(&self, acct: &AccountCtx, report_type: &str, created_since: DateTime<Utc>) -> Result<Vec<Report>, CallError> {
        let mut url = self.url(&["reports", "2021-06-30", "reports"]);
        url.query_pairs_mut()
            .append_pair("reportTypes", report_type)
            .append_pair("createdSince", &iso(created_since))
            .append_pair("pageSize", "100");
        let req = ApiRequest::get(Operation::GetReports, url);
        self.call(acct, &req, json::<GetReportsResponse>).await.map(|r| r.reports)
    }

    /// Reports `getReportDocument`: where to download the document and how it is packed.
    pub async fn get_report_document(&self, acct: &AccountCtx, document_id: &str) -> Result<ReportDocument, CallError> {
        let req = ApiRequest::get(
            Operation::GetReportDocument,
            self.url(&["reports", "2021-06-30", "documents", document_id]),
        );
        self.call(acct, &req, |answer| {
            let doc: ReportDocument = json(answer)?;
            if doc.url.is_empty() {
                return Err("report document without a url".to_owned());
            }
            Ok(doc)
        })
        .await
    }

    /// Tells the shared limiter about the rate SP-API announced, when it changed since
    /// this process last did, or when that was [`RATE_RESEND`] ago: the limiter's record
    /// of it goes with its idle expiry or a Redis restart, and the marketplace announces
    /// the same rate again. Noted only once Redis has it: a call dropped on the way (its
    /// run stopped) or failed leaves the next answer to send it.
    pub(crate) async fn observe_rate(&self, account: &AccountId, op: Operation, rate: f64) {
        let key = (account.clone(), op);
        {
            let seen = self.inner.observed.lock().unwrap_or_else(|p| p.into_inner());
            if seen
                .get(&key)
                .is_some_and(|(r, at)| r.to_bits() == rate.to_bits() && at.elapsed() < RATE_RESEND)
            {
                return;
            }
        }
        match self.resilience().observe_rate_limit(account, op, rate).await {
            Ok(_) => {
                let mut seen = self.inner.observed.lock().unwrap_or_else(|p| p.into_inner());
                seen.insert(key, (rate, Instant::now()));
            }
            Err(e) => tracing::warn!(account = %account, op = op.name(), error = %e, "could not pass the announced rate limit on"),
        }
    }

    /// `base_url` plus escaped path segments (SKUs may hold '/', spaces, '#').
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.inner.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }
}

/// A 2xx body as `T`; the error names the type, never echoes the body.
fn json<T: DeserializeOwned>(answer: &Answer) -> Result<T, String> {
    serde_json::from_slice(&answer.body).map_err(|e| format!("not a valid {}: {e}", short_type_name::<T>()))
}

fn short_type_name<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    full.rsplit("::").next().unwrap_or(full)
}

/// SP-API's comma-separated list form.
fn join(ids: &[MarketplaceId]) -> String {
    ids.iter().map(MarketplaceId::as_str).collect::<Vec<_>>().join(",")
}

/// ISO 8601 in UTC with a `Z`, as SP-API documents its date parameters.
fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}
