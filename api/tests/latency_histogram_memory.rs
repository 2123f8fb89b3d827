//! The API's request metrics hold no more memory as requests go on without a scrape.
//! Alone in its binary: the allocator's counts are the whole process's.
use std::alloc::System;
use std::time::Duration;

use drover_api::metrics::Metrics;
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Found by the second round of audits of 2026-12-07: the request-latency histogram
/// kept every request's sample until a scrape drained it, so an API whose `/metrics` is
/// off or never scraped grew by about 8 bytes a request, for as long as it ran.
#[test]
fn requests_without_a_scrape_do_not_hold_more_memory_as_they_go_on() {
    let metrics = Metrics::new();
    let serve = |n: usize| {
        for _ in 0..n {
            metrics.record_request("POST", "/v1/jobs", 201, Duration::from_micros(700));
        }
    };
    serve(10_000); // the label set's own entries
    let region = Region::new(GLOBAL);
    serve(200_000);
    let change = region.change();
    let held = change.bytes_allocated as i64 - change.bytes_deallocated as i64;
    assert!(held < 64 * 1024, "200,000 requests without a scrape left {held} bytes more held");
}
