//! Whether this process's runs find the database unreachable: the first run that finds
//! it so logs the outage, the runs after it (each stops and runs again every 2 s without
//! using an attempt) log only at debug, and the first call answered after it logs the end.
use std::sync::atomic::{AtomicBool, Ordering};

use drover::db::DbError;

/// An outage is under way (logged when it began).
static DOWN: AtomicBool = AtomicBool::new(false);

/// A database call failed because the database cannot be reached.
pub(super) fn unreachable(e: &DbError, what: &str) {
    if DOWN.swap(true, Ordering::Relaxed) {
        tracing::debug!(error = %e, during = what, "database still unreachable");
    } else {
        tracing::warn!(
            error = %e,
            during = what,
            "database unreachable: runs that need it stop and run again every 2 s without using an attempt (logged again when it answers)"
        );
    }
}

/// A database call was answered.
pub(super) fn answered() {
    if DOWN.load(Ordering::Relaxed) && DOWN.swap(false, Ordering::Relaxed) {
        tracing::info!("database answers again");
    }
}
