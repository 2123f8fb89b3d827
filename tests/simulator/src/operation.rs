//! The operations the simulator serves, their SP-API names and their routes.
//!
//! Rate limits, faults and counters are all keyed by operation, under the names
//! SP-API's documentation uses (`getOrders`, `deleteListingsItem`, ...), so JSON from
//! the admin API reads like the real API's rate-limit tables.
use axum::http::Method;
use serde::{Deserialize, Serialize};

/// Route patterns, shared by the router and by [`Operation::from_route`].
pub(crate) mod paths {
    pub(crate) const TOKEN: &str = "/auth/o2/token";
    pub(crate) const ORDERS: &str = "/orders/v0/orders";
    pub(crate) const LISTINGS_ITEM: &str = "/listings/2021-08-01/items/{seller_id}/{sku}";
    pub(crate) const REPORTS: &str = "/reports/2021-06-30/reports";
    pub(crate) const REPORT: &str = "/reports/2021-06-30/reports/{report_id}";
    pub(crate) const DOCUMENT: &str = "/reports/2021-06-30/documents/{document_id}";
    /// Stands in for the pre-signed S3 URL a real report document points at.
    pub(crate) const DOWNLOAD: &str = "/documents/download/{document_id}";
}

/// One marketplace operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Operation {
    /// `POST /auth/o2/token` (LWA). Not rate limited; faults reach it only when a fault
    /// spec names it in `ops`, so a 5xx burst meant for the API does not eat the token call.
    LwaToken,
    GetOrders,
    GetListingsItem,
    DeleteListingsItem,
    CreateReport,
    GetReport,
    GetReportDocument,
    /// `GET /reports/2021-06-30/reports`: the account's reports, filtered.
    GetReports,
    /// The document download (S3 in real life): no access token, no rate limit.
    DownloadReportDocument,
}

impl Operation {
    /// The operations that have a token bucket, in SP-API documentation order.
    pub const RATE_LIMITED: [Operation; 7] = [
        Operation::GetOrders,
        Operation::GetListingsItem,
        Operation::DeleteListingsItem,
        Operation::CreateReport,
        Operation::GetReport,
        Operation::GetReportDocument,
        Operation::GetReports,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Operation::LwaToken => "lwaToken",
            Operation::GetOrders => "getOrders",
            Operation::GetListingsItem => "getListingsItem",
            Operation::DeleteListingsItem => "deleteListingsItem",
            Operation::CreateReport => "createReport",
            Operation::GetReport => "getReport",
            Operation::GetReportDocument => "getReportDocument",
            Operation::GetReports => "getReports",
            Operation::DownloadReportDocument => "downloadReportDocument",
        }
    }

    /// Report operations share the account's report quota (see `quota_window` faults).
    pub fn is_report(self) -> bool {
        matches!(
            self,
            Operation::CreateReport | Operation::GetReport | Operation::GetReportDocument | Operation::GetReports
        )
    }

    pub fn is_rate_limited(self) -> bool {
        Self::RATE_LIMITED.contains(&self)
    }

    /// Which operation a matched route is, for the middleware that wraps all of them.
    pub(crate) fn from_route(method: &Method, matched_path: &str) -> Option<Operation> {
        let op = match (matched_path, method.as_str()) {
            (paths::ORDERS, "GET") => Operation::GetOrders,
            (paths::LISTINGS_ITEM, "GET") => Operation::GetListingsItem,
            (paths::LISTINGS_ITEM, "DELETE") => Operation::DeleteListingsItem,
            (paths::REPORTS, "POST") => Operation::CreateReport,
            (paths::REPORTS, "GET") => Operation::GetReports,
            (paths::REPORT, "GET") => Operation::GetReport,
            (paths::DOCUMENT, "GET") => Operation::GetReportDocument,
            (paths::DOWNLOAD, "GET") => Operation::DownloadReportDocument,
            _ => return None,
        };
        Some(op)
    }
}

impl std::str::FromStr for Operation {
    type Err = String;

    /// Parses the SP-API operation name (`getOrders`, `lwaToken`, ...).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::RATE_LIMITED
            .into_iter()
            .chain([Operation::LwaToken, Operation::DownloadReportDocument])
            .find(|op| op.name() == s)
            .ok_or_else(|| format!("unknown operation {s:?}"))
    }
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_names_match_the_sp_api_operation_names() {
        for op in Operation::RATE_LIMITED
            .into_iter()
            .chain([Operation::LwaToken, Operation::DownloadReportDocument])
        {
            assert_eq!(serde_json::to_value(op).ok(), Some(serde_json::Value::String(op.name().to_owned())));
            assert_eq!(op.name().parse::<Operation>(), Ok(op));
        }
    }

    #[test]
    fn routes_map_to_operations_by_method() {
        assert_eq!(
            Operation::from_route(&Method::DELETE, paths::LISTINGS_ITEM),
            Some(Operation::DeleteListingsItem)
        );
        assert_eq!(
            Operation::from_route(&Method::GET, paths::LISTINGS_ITEM),
            Some(Operation::GetListingsItem)
        );
        assert_eq!(Operation::from_route(&Method::PUT, paths::LISTINGS_ITEM), None);
    }
}
