//! Whether this process's runs find the database unreachable or read-only: the first
//! run that finds it so logs the outage, the runs after it (each stops and runs again
//! every 2 s without using an attempt) log only at debug, and the first call answered
//! after it logs the end — for a read-only database, the first write answered (its
//! reads are answered all along: before, found by the third round of audits of
//! 2026-12-07, each run logged the outage's end at its connection and its start again
//! at its first write).
use drover::db::DbError;
use drover::outage::Outage;

/// The database cannot be reached (logged when it began).
static DOWN: Outage = Outage::new();
/// The database answers but refuses writes (logged when it began).
static READ_ONLY: Outage = Outage::new();

/// A database call failed because the database cannot be reached or takes no writes.
pub(super) fn unreachable(e: &DbError, what: &str) {
    if e.is_read_only() {
        if READ_ONLY.failed() {
            tracing::warn!(
                error = %e,
                during = what,
                "database read-only: runs stop at their first write and run again every 2 s without using an attempt (logged again when it takes writes)"
            );
            return;
        }
    } else if DOWN.failed() {
        tracing::warn!(
            error = %e,
            during = what,
            "database unreachable: runs that need it stop and run again every 2 s without using an attempt (logged again when it answers)"
        );
        return;
    }
    tracing::debug!(error = %e, during = what, "database still unavailable");
}

/// A database call was answered.
pub(super) fn answered() {
    if DOWN.answered() {
        tracing::info!("database answers again");
    }
}

/// A write was answered (a run's claim of its items): a read-only outage is over.
pub(super) fn wrote() {
    if READ_ONLY.answered() {
        tracing::info!("database takes writes again");
    }
}
