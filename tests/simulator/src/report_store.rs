//! Reports 2021-06-30 as the simulator keeps them: created, polled towards a terminal
//! status, and (when DONE) a document to download.
use std::collections::HashMap;

use amazon_spapi::models::reports_2021_06_30::{report::ProcessingStatus, Report};
use chrono::{DateTime, Utc};
use tokio::time::Instant;

use super::catalog::{iso, SimOrder};
use super::config::ReportTiming;
use super::rng::SimRng;

/// The report types the simulator can produce: the all-orders flat files, selected by
/// purchase date or by last update (which is what the names say in SP-API too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportType {
    OrdersByOrderDate,
    OrdersByLastUpdate,
}

impl ReportType {
    pub const ORDERS_BY_ORDER_DATE: &'static str = "GET_FLAT_FILE_ALL_ORDERS_DATA_BY_ORDER_DATE_GENERAL";
    pub const ORDERS_BY_LAST_UPDATE: &'static str = "GET_FLAT_FILE_ALL_ORDERS_DATA_BY_LAST_UPDATE_GENERAL";

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            Self::ORDERS_BY_ORDER_DATE => Some(Self::OrdersByOrderDate),
            Self::ORDERS_BY_LAST_UPDATE => Some(Self::OrdersByLastUpdate),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::OrdersByOrderDate => Self::ORDERS_BY_ORDER_DATE,
            Self::OrdersByLastUpdate => Self::ORDERS_BY_LAST_UPDATE,
        }
    }

    /// Whether `order` belongs in a report over `[start, end)`.
    pub(crate) fn selects(self, order: &SimOrder, start: DateTime<Utc>, end: DateTime<Utc>) -> bool {
        let t = match self {
            Self::OrdersByOrderDate => order.purchase,
            Self::OrdersByLastUpdate => order.updated,
        };
        start <= t && t < end
    }
}

/// How a report ends once processing is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    Done,
    Fatal,
    Cancelled,
}

/// What a new report is made of; the store gives it its ids.
pub(crate) struct NewReport {
    pub(crate) account: String,
    pub(crate) report_type: ReportType,
    pub(crate) marketplace_ids: Vec<String>,
    pub(crate) start: DateTime<Utc>,
    pub(crate) end: DateTime<Utc>,
    pub(crate) ending: Ending,
    /// The rows, fixed when the report is created (a real report is a snapshot too).
    pub(crate) rows: Vec<SimOrder>,
    pub(crate) malformed_rows: u32,
    pub(crate) split_items: u32,
    pub(crate) row_seed: u64,
}

pub(crate) struct SimReport {
    pub(crate) id: String,
    pub(crate) document_id: String,
    pub(crate) spec: NewReport,
    created: DateTime<Utc>,
    created_at: Instant,
    polls: u32,
}

impl SimReport {
    /// The status now, after `polls` getReport calls.
    pub(crate) fn status(&self, timing: ReportTiming, now: Instant) -> ProcessingStatus {
        let processed = now.saturating_duration_since(self.created_at) >= timing.min_processing;
        if self.polls >= timing.polls_to_done && processed {
            match self.spec.ending {
                Ending::Done => ProcessingStatus::Done,
                Ending::Fatal => ProcessingStatus::Fatal,
                Ending::Cancelled => ProcessingStatus::Cancelled,
            }
        } else if self.polls <= 1 {
            ProcessingStatus::InQueue
        } else {
            ProcessingStatus::InProgress
        }
    }

    /// One getReport call: counts the poll, then answers the status.
    pub(crate) fn poll(&mut self, timing: ReportTiming, now: Instant) -> ProcessingStatus {
        self.polls = self.polls.saturating_add(1);
        self.status(timing, now)
    }

    pub(crate) fn to_model(&self, status: ProcessingStatus) -> Report {
        let mut report = Report::new(self.id.clone(), self.spec.report_type.name().to_owned(), iso(self.created), status);
        report.marketplace_ids = Some(self.spec.marketplace_ids.clone());
        report.data_start_time = Some(iso(self.spec.start));
        report.data_end_time = Some(iso(self.spec.end));
        if status != ProcessingStatus::InQueue {
            report.processing_start_time = Some(iso(self.created));
        }
        if matches!(
            status,
            ProcessingStatus::Done | ProcessingStatus::Fatal | ProcessingStatus::Cancelled
        ) {
            report.processing_end_time = Some(iso(Utc::now()));
        }
        if status == ProcessingStatus::Done {
            report.report_document_id = Some(self.document_id.clone());
        }
        report
    }
}

#[derive(Default)]
pub(crate) struct ReportStore {
    reports: HashMap<String, SimReport>,
    /// Document id -> report id.
    documents: HashMap<String, String>,
    created: u64,
}

impl ReportStore {
    pub(crate) fn create(&mut self, spec: NewReport, rng: &mut SimRng, now: Instant) -> String {
        self.created += 1;
        // Real report ids are long decimal numbers; document ids are `amzn1.spdoc...`.
        let id = format!("{}", 50_000_000_000u64 + self.created);
        let document_id = format!("amzn1.spdoc.1.4.na.{}", rng.hex(32));
        self.documents.insert(document_id.clone(), id.clone());
        self.reports.insert(
            id.clone(),
            SimReport {
                id: id.clone(),
                document_id,
                spec,
                created: Utc::now(),
                created_at: now,
                polls: 0,
            },
        );
        id
    }

    /// A report of `account` (another account's report is as good as absent).
    pub(crate) fn get_mut(&mut self, account: &str, report_id: &str) -> Option<&mut SimReport> {
        self.reports.get_mut(report_id).filter(|r| r.spec.account == account)
    }

    /// `account`'s reports created at or after `since`, oldest first.
    pub(crate) fn of_account_since(&self, account: &str, since: DateTime<Utc>) -> Vec<&SimReport> {
        let mut found: Vec<&SimReport> = self
            .reports
            .values()
            .filter(|r| r.spec.account == account && r.created >= since)
            .collect();
        found.sort_by_key(|r| (r.created, r.id.len(), r.id.clone()));
        found
    }

    pub(crate) fn by_document(&self, document_id: &str) -> Option<&SimReport> {
        self.documents.get(document_id).and_then(|id| self.reports.get(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn report(ending: Ending) -> (ReportStore, String) {
        let mut store = ReportStore::default();
        let spec = NewReport {
            account: "acct-1".to_owned(),
            report_type: ReportType::OrdersByOrderDate,
            marketplace_ids: vec!["ATVPDKIKX0DER".to_owned()],
            start: Utc::now() - chrono::Duration::days(1),
            end: Utc::now(),
            ending,
            rows: Vec::new(),
            malformed_rows: 0,
            split_items: 0,
            row_seed: 0,
        };
        let id = store.create(spec, &mut SimRng::new(1), Instant::now());
        (store, id)
    }

    #[test]
    fn a_report_is_done_on_the_configured_poll() {
        let (mut store, id) = report(Ending::Done);
        let timing = ReportTiming {
            polls_to_done: 3,
            min_processing: Duration::ZERO,
        };
        let r = store.get_mut("acct-1", &id).expect("own report");
        let seen: Vec<_> = (0..4).map(|_| r.poll(timing, Instant::now())).collect();
        assert_eq!(
            seen,
            vec![
                ProcessingStatus::InQueue,
                ProcessingStatus::InProgress,
                ProcessingStatus::Done,
                ProcessingStatus::Done
            ]
        );
    }

    #[test]
    fn only_done_reports_show_their_document_and_other_accounts_see_nothing() {
        let (mut store, id) = report(Ending::Fatal);
        assert!(store.get_mut("acct-2", &id).is_none());
        let r = store.get_mut("acct-1", &id).expect("own report");
        let status = r.poll(
            ReportTiming {
                polls_to_done: 1,
                min_processing: Duration::ZERO,
            },
            Instant::now(),
        );
        assert_eq!(status, ProcessingStatus::Fatal);
        assert_eq!(r.to_model(status).report_document_id, None);
    }

    #[test]
    fn time_based_processing_waits_for_the_minimum() {
        let (mut store, id) = report(Ending::Done);
        let timing = ReportTiming {
            polls_to_done: 0,
            min_processing: Duration::from_secs(5),
        };
        let r = store.get_mut("acct-1", &id).expect("own report");
        let now = Instant::now();
        assert_eq!(r.status(timing, now), ProcessingStatus::InQueue);
        assert_eq!(r.status(timing, now + Duration::from_secs(6)), ProcessingStatus::Done);
    }
}
