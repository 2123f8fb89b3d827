//! The marketplace operations that have a usage plan, under SP-API's own names.
use std::fmt;

use serde::{Deserialize, Serialize};

/// One rate-limited marketplace operation. Limits, breakers and snapshots are keyed by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Operation {
    // The lowercase aliases are how `DROVER_*__RESILIENCE__LIMITS__GETORDERS__RATE` reads:
    // environment keys arrive lowercased.
    #[serde(alias = "getorders")]
    GetOrders,
    #[serde(alias = "getlistingsitem")]
    GetListingsItem,
    #[serde(alias = "deletelistingsitem")]
    DeleteListingsItem,
    #[serde(alias = "createreport")]
    CreateReport,
    #[serde(alias = "getreport")]
    GetReport,
    #[serde(alias = "getreportdocument")]
    GetReportDocument,
    /// Called only to find a report whose createReport answer was lost.
    #[serde(alias = "getreports")]
    GetReports,
}

impl Operation {
    /// Every operation, in SP-API documentation order.
    pub const ALL: [Operation; 7] = [
        Operation::GetOrders,
        Operation::GetListingsItem,
        Operation::DeleteListingsItem,
        Operation::CreateReport,
        Operation::GetReport,
        Operation::GetReportDocument,
        Operation::GetReports,
    ];

    /// The SP-API operation name (`getOrders`, ...), also used in Redis keys.
    pub fn name(self) -> &'static str {
        match self {
            Operation::GetOrders => "getOrders",
            Operation::GetListingsItem => "getListingsItem",
            Operation::DeleteListingsItem => "deleteListingsItem",
            Operation::CreateReport => "createReport",
            Operation::GetReport => "getReport",
            Operation::GetReportDocument => "getReportDocument",
            Operation::GetReports => "getReports",
        }
    }

    /// Report operations share the account's report quota, so a 429 on one of them
    /// puts the whole account into quota cooldown.
    pub fn is_report(self) -> bool {
        matches!(
            self,
            Operation::CreateReport | Operation::GetReport | Operation::GetReportDocument | Operation::GetReports
        )
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_serde_and_sp_api() {
        for op in Operation::ALL {
            assert_eq!(serde_json::to_string(&op).unwrap(), format!("\"{}\"", op.name()));
        }
        assert!(Operation::CreateReport.is_report());
        assert!(!Operation::GetOrders.is_report());
    }
}
