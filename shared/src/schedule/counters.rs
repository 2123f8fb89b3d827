//! What the scheduler counts for `/metrics`: jobs it made for ticks, and ticks it
//! missed. Kept in atomics the process renders (the API has no global recorder) and
//! recorded through the `metrics` facade too (the worker's global recorder).
use std::sync::atomic::{AtomicU64, Ordering};

/// Jobs this process's scheduler created for a tick (a tick another replica enqueued
/// first is not counted, so the sum over processes is the jobs schedules made).
pub const TICKS: &str = "drover_schedule_ticks_total";
/// Ticks that fell due while this process was running and were older than
/// `misfire_grace_ms` before it could enqueue them (skipped, not run late). Every
/// replica that missed a tick counts it: take `max`, not `sum`, across replicas.
pub const MISFIRES: &str = "drover_schedule_misfires_total";

#[derive(Debug, Default)]
pub struct ScheduleCounters {
    ticks: AtomicU64,
    misfires: AtomicU64,
}

impl ScheduleCounters {
    pub(super) fn ticked(&self) {
        self.ticks.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(TICKS).increment(1);
    }

    pub(super) fn missed(&self) {
        self.misfires.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(MISFIRES).increment(1);
    }

    pub fn ticks(&self) -> u64 {
        self.ticks.load(Ordering::Relaxed)
    }

    pub fn misfires(&self) -> u64 {
        self.misfires.load(Ordering::Relaxed)
    }
}
