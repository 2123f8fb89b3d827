//! Which marketplace operations each job kind calls (`worker/src/jobs/`), so a reader
//! such as the API can tell which of an account's guards stops a job of that kind.
//!
//! The rule for quota cooldowns: a cooldown refuses report operations only
//! ([`Operation::is_report`]), so it stops the kinds that call one — `backfill`
//! (createReport → getReport → getReportDocument; getReports to find a report whose
//! createReport answer was lost). `sync` (getOrders, getListingsItem)
//! and `cleanup` (deleteListingsItem) go on during a cooldown.
use super::Operation;
use crate::job::JobKind;

/// The operations a job of `kind` calls. Keep in step with `worker/src/jobs/`.
pub fn operations(kind: JobKind) -> &'static [Operation] {
    match kind {
        JobKind::Sync => &[Operation::GetOrders, Operation::GetListingsItem],
        JobKind::Backfill => &[
            Operation::CreateReport,
            Operation::GetReport,
            Operation::GetReportDocument,
            Operation::GetReports,
        ],
        JobKind::Cleanup => &[Operation::DeleteListingsItem],
    }
}

/// Whether the account's quota cooldown stops jobs of `kind` (it calls a report operation).
pub fn stopped_by_quota_cooldown(kind: JobKind) -> bool {
    operations(kind).iter().any(|op| op.is_report())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_kind_that_calls_report_operations_waits_for_a_quota_cooldown() {
        let stopped: Vec<JobKind> = JobKind::ALL.into_iter().filter(|k| stopped_by_quota_cooldown(*k)).collect();
        assert_eq!(stopped, [JobKind::Backfill]);
        // Every operation is called by some kind.
        for op in Operation::ALL {
            assert!(JobKind::ALL.iter().any(|k| operations(*k).contains(&op)), "{op}");
        }
    }
}
