//! Whether this process's runs find the database unreachable: the first run that finds
//! it so logs the outage, the runs after it (each stops and runs again every 2 s without
//! using an attempt) log only at debug, and the first call answered after it logs the end.
use drover::db::DbError;
use drover::outage::Outage;

/// An outage is under way (logged when it began).
static DOWN: Outage = Outage::new();

/// A database call failed because the database cannot be reached.
pub(super) fn unreachable(e: &DbError, what: &str) {
    if DOWN.failed() {
        tracing::warn!(
            error = %e,
            during = what,
            "database unreachable: runs that need it stop and run again every 2 s without using an attempt (logged again when it answers)"
        );
    } else {
        tracing::debug!(error = %e, during = what, "database still unreachable");
    }
}

/// A database call was answered.
pub(super) fn answered() {
    if DOWN.answered() {
        tracing::info!("database answers again");
    }
}
