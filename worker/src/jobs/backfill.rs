//! backfill: historical order reports, one report per time window.
//!
//! Each window: createReport → poll getReport (bounded, backing off) → getReportDocument
//! → download (gunzip) → strict parse → upsert → window `done`, all recorded in
//! `job_items`. The report id is noted on the window as soon as it exists, so a rerun
//! after a crash or a snooze polls that report instead of spending quota on a new one;
//! a window that failed while polling or downloading keeps it too (a retry polls it
//! again), and only a report that can never deliver (FATAL) is set aside
//! (`failed_report_id`) for a new one. While the marketplace prepares a report the run
//! gives its slot away between two polls once it has worked its turn and another job
//! waits (the next run polls the same report, within the same deadline).
//! A quota 429 (the client has already put the account in cooldown), an open breaker or
//! a running cooldown stops the job and snoozes it, and so does an outage of the database
//! or of the rate-limit store (without using an attempt; the window is not failed); any
//! other window failure is recorded and the job goes on, ending `partial`. A rerun does
//! only unfinished windows.
use std::time::Duration as StdDuration;

use amazon_spapi::models::reports_2021_06_30::report::ProcessingStatus;
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use drover::data::items::{self, Item, ItemOutcome};
use drover::data::last_synced::{self, SyncedResource};
use drover::data::orders::{self, OrderRow, OrderSource};
use drover::data::report_lines::{self, ReportLine};
use drover::data::run_fence;
use drover::job::{BackfillPayload, Progress};
use drover::runtime::{JobContext, Outcome};
use drover::JobError;
use serde_json::json;

use super::report_parse::{self, ParsedReport};
use super::{check_cancel, db_error, landed, note_sent, unmark_if_refused, DbCall, Jobs, Seller, SentNote, Slice};
use crate::marketplace::CallError;

/// The windows of `[start, end)`, each `hours` long (the last may be shorter).
pub(crate) fn windows(start: DateTime<Utc>, end: DateTime<Utc>, hours: u32) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let step = Duration::hours(i64::from(hours.max(1)));
    let mut out = Vec::new();
    let mut from = start;
    while from < end {
        let to = (from + step).min(end);
        out.push((from, to));
        from = to;
    }
    out
}

fn window_key((from, to): (DateTime<Utc>, DateTime<Utc>)) -> String {
    format!("{}/{}", from.format("%Y-%m-%dT%H:%M:%SZ"), to.format("%Y-%m-%dT%H:%M:%SZ"))
}

fn parse_key(key: &str) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let (a, b) = key.split_once('/')?;
    let t = |s: &str| DateTime::parse_from_rfc3339(s).ok().map(|t| t.with_timezone(&Utc));
    Some((t(a)?, t(b)?))
}

/// How a window ended when it did not stop the job.
enum WindowEnd {
    Done(serde_json::Value),
    Failed(serde_json::Value),
    /// Done, and recorded with its rows in their transaction (see [`store`]).
    Recorded,
}

pub(super) async fn run(jobs: &Jobs, p: BackfillPayload, ctx: &JobContext) -> Result<Outcome, JobError> {
    let seller = jobs.account(&p.account_id, ctx).await?;
    let job_id = ctx.id.as_str();
    let all: Vec<String> = windows(p.start, p.end, p.window_hours).into_iter().map(window_key).collect();
    let mut conn = jobs.connection("seeding the job's windows").await?;
    items::seed(&mut conn, job_id, 0, &all)
        .within(jobs)
        .await
        .map_err(db_error("seeding the job's windows"))?;
    let todo = items::unfinished(&mut conn, job_id)
        .within(jobs)
        .await
        .map_err(db_error("reading unfinished windows"))?;
    drop(conn);
    // A window that failed in this attempt is the next attempt's to retry: a run of this
    // attempt that comes back after giving its slot away goes on with the windows after
    // it (doing it again in each such run could hold the job on one window for ever).
    let todo: Vec<Item> = todo.into_iter().filter(|i| !failed_in(i, ctx.attempt)).collect();

    let total = all.len() as u64;
    let mut finished = total - todo.len() as u64;
    let slice = Slice::start(jobs.config());
    for (done_here, item) in todo.iter().enumerate() {
        check_cancel(ctx)?;
        if let Some(end) = slice.end(ctx) {
            tracing::info!(job_id, windows_left = todo.len() - done_here, why = %end, "handing the job back between windows");
            return Err(end);
        }
        let end = match window(jobs, &p, &seller, ctx, &slice, item).await {
            Ok(end) => end,
            Err(JobError::RateLimited { retry_after, reason }) => {
                // A quota 429 has put the seller in cooldown: sleep until it ends, not
                // just for the response's hint, so the job wakes once.
                let cooldown = jobs.market().resilience().cooldown(&seller.call.limits).await.ok().flatten();
                let until_end = cooldown.and_then(|c| (c.until - Utc::now()).to_std().ok());
                let retry_after = until_end.filter(|w| *w > retry_after).unwrap_or(retry_after);
                tracing::info!(job_id, window = %item.item, ?retry_after, %reason, "backfill paused by the marketplace's limits");
                return Err(JobError::RateLimited { retry_after, reason });
            }
            Err(stop) => return Err(stop),
        };
        let mut conn = jobs.connection("recording a window").await?;
        let written = match end {
            WindowEnd::Recorded => Ok(run_fence::Write::Landed),
            WindowEnd::Done(detail) => {
                items::set(&mut conn, ctx.fence(), &item.item, ItemOutcome::Done, &detail)
                    .within(jobs)
                    .await
            }
            WindowEnd::Failed(mut detail) => {
                if let Some(d) = detail.as_object_mut() {
                    d.insert(FAILED_IN.to_owned(), json!(ctx.attempt));
                }
                // The one line of a failed window: its steps leave it to this one (a
                // failed marketplace call also has its own, with the marketplace's words).
                tracing::warn!(job_id, window = %item.item, detail = %detail, "backfill window failed; going on with the next");
                items::set(&mut conn, ctx.fence(), &item.item, ItemOutcome::Failed, &detail)
                    .within(jobs)
                    .await
            }
        }
        .map_err(db_error("recording a window"))?;
        landed(written, ctx, "recording a window")?;
        // (a park after this starts the job's count of snoozes again)
        ctx.advanced();
        finished += 1;
        ctx.progress(Progress {
            done: finished,
            total: Some(total),
            message: Some(format!("{finished} of {total} windows")),
        })
        .await?;
    }

    let mut conn = jobs.connection("summarising the job").await?;
    let summary = items::summary(&mut conn, job_id)
        .within(jobs)
        .await
        .map_err(db_error("summarising the job"))?;
    let failed = items::page(&mut conn, job_id, Some(ItemOutcome::Failed), None, 1000)
        .within(jobs)
        .await
        .map_err(db_error("summarising the job"))?;
    let with_bad_rows = items::done_with_rejected_rows(&mut conn, job_id)
        .within(jobs)
        .await
        .map_err(db_error("summarising the job"))?;
    let result = json!({
        "total": summary.total, "succeeded": summary.succeeded, "failed": summary.failed, "skipped": summary.skipped,
        "windows_with_rejected_rows": with_bad_rows,
        "failed_windows": failed.iter().map(|i| json!({"window": i.item, "error": i.detail.get("error")})).collect::<Vec<_>>(),
    });
    if summary.failed > 0 || with_bad_rows > 0 {
        Ok(Outcome::Partial(result))
    } else {
        // Every window done: the account's order reports are synced as of now (by the
        // run that holds the job: a resumed older run records nothing).
        drop(conn);
        let what = "recording the backfill's end";
        let mut tx = jobs.transaction(what).await?;
        let held = run_fence::hold(&mut tx, ctx.fence()).within(jobs).await.map_err(db_error(what))?;
        landed(held, ctx, what)?;
        last_synced::record(&mut tx, p.account_id.as_str(), SyncedResource::OrderReports, job_id)
            .within(jobs)
            .await
            .map_err(db_error(what))?;
        tx.commit().within(jobs).await.map_err(db_error(what))?;
        Ok(Outcome::Succeeded(result))
    }
}

/// The report an earlier run created for this window but never learned the id of (its
/// createReport went out and the answer was lost when the run was stopped), found with
/// getReports among the account's reports of this type created since that run began
/// (less a minute for the two clocks). Any report of the same type, window and
/// marketplace will do: it holds the same rows.
async fn lost_report(
    jobs: &Jobs,
    p: &BackfillPayload,
    seller: &Seller,
    ctx: &JobContext,
    item: &Item,
    (from, to): (DateTime<Utc>, DateTime<Utc>),
) -> Result<Option<String>, CallError> {
    let Some(run) = item.sent_by.filter(|r| *r != ctx.run) else {
        return Ok(None);
    };
    let since = DateTime::from_timestamp_millis(run).unwrap_or_default() - Duration::minutes(1);
    let reports = jobs.market().get_reports(&seller.call, &p.report_type, since).await?;
    let at = |t: &Option<String>| {
        t.as_deref()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
    };
    Ok(reports
        .into_iter()
        .find(|r| {
            at(&r.data_start_time) == Some(from)
                && at(&r.data_end_time) == Some(to)
                && r.marketplace_ids
                    .as_ref()
                    .is_some_and(|m| m.iter().any(|id| id == p.marketplace_id.as_str()))
        })
        .map(|r| r.report_id))
}

/// Errors that stop the whole job (snooze, cancel, database, a turn given away) come
/// back as `Err`; the window's own failures as `Ok(Failed)`.
async fn window(
    jobs: &Jobs,
    p: &BackfillPayload,
    seller: &Seller,
    ctx: &JobContext,
    slice: &Slice,
    item: &Item,
) -> Result<WindowEnd, JobError> {
    let Some((from, to)) = parse_key(&item.item) else {
        return Ok(WindowEnd::Failed(
            json!({"error": format!("unreadable window key {:?}", item.item)}),
        ));
    };
    let market = jobs.market();
    let marketplaces = std::slice::from_ref(&p.marketplace_id);
    let job_id = ctx.id.as_str();

    let mut requested = requested_at(item);
    let stored_report = item.detail.get("report_id").and_then(|v| v.as_str());
    // A report an earlier run asked for, which may since have gone upstream: not one
    // noted as asked for moments ago (a 404 then may be the marketplace not knowing it
    // yet); a failed window's keeps no request time, and its report is at least as old
    // as that failure.
    let earlier_report = stored_report.filter(|_| requested.is_none_or(|at| Utc::now() - at > Duration::minutes(REPORT_GONE_AFTER_MIN)));
    let report_id = match stored_report {
        Some(id) => id.to_owned(),
        None => {
            let lost = match lost_report(jobs, p, seller, ctx, item, (from, to)).await {
                Ok(lost) => lost,
                Err(e) => return window_error(e),
            };
            let id = match lost {
                Some(id) => {
                    tracing::info!(job_id, window = %item.item, report_id = %id, "found the report an earlier run created for this window; polling it");
                    id
                }
                None => {
                    let sent = SentNote::default();
                    let note = note_sent(jobs, ctx, &item.item, "createReport", &sent);
                    match market
                        .create_report_noting(&seller.call, &p.report_type, from, to, marketplaces, Some(note))
                        .await
                    {
                        Ok(id) => id,
                        Err(e) => {
                            unmark_if_refused(jobs, ctx, &item.item, &e, &sent).await;
                            return window_error(e);
                        }
                    }
                }
            };
            let mut conn = jobs.connection("noting a report id").await?;
            let now = Utc::now();
            let written = items::note(
                &mut conn,
                ctx.fence(),
                &item.item,
                &json!({"report_id": id, REQUESTED_AT: stamp(now)}),
            )
            .within(jobs)
            .await
            .map_err(db_error("noting a report id"))?;
            landed(written, ctx, "noting a report id")?;
            requested = Some(now);
            id
        }
    };
    // A report polled again with no request time noted (a failed window's retry, or a
    // window a release before this one noted): its deadline starts now, noted, so the
    // runs of this attempt share it.
    let requested = match requested {
        Some(at) => at,
        None => {
            let now = Utc::now();
            let mut conn = jobs.connection("noting when a report was polled from").await?;
            let written = items::note(&mut conn, ctx.fence(), &item.item, &json!({REQUESTED_AT: stamp(now)}))
                .within(jobs)
                .await
                .map_err(db_error("noting when a report was polled from"))?;
            landed(written, ctx, "noting when a report was polled from")?;
            now
        }
    };

    // Poll until the report is done, backing off from the configured interval, within
    // `report_poll_max` of its request: a run that gave its slot away between two polls
    // does not give the report a new deadline (a retry of a failed window does).
    let cfg = market.config();
    let max = cfg.report_poll_max();
    // past: polled once more, then the window fails
    let left = (requested + Duration::milliseconds(max.as_millis() as i64) - Utc::now())
        .to_std()
        .unwrap_or_default()
        .min(max);
    let deadline = tokio::time::Instant::now() + left;
    let mut wait = cfg.report_poll_interval();
    let document_id = loop {
        let report = match market.get_report(&seller.call, &report_id).await {
            Ok(r) => r,
            Err(CallError::NotFound { .. }) if earlier_report.is_some() => {
                return report_gone(jobs, p, seller, ctx, slice, item, &report_id).await;
            }
            Err(e) => return report_error(e, &report_id),
        };
        match report.processing_status {
            ProcessingStatus::Done => match report.report_document_id {
                Some(id) => break id,
                None => return Ok(unusable(&report_id, "report DONE without a document id")),
            },
            // SP-API cancels a report that has no data: an empty window, not a failure.
            ProcessingStatus::Cancelled => {
                return Ok(WindowEnd::Done(
                    json!({"report_id": report_id, "rows": 0, "written": 0, "empty": true}),
                ));
            }
            ProcessingStatus::Fatal => return Ok(unusable(&report_id, "report processing ended FATAL")),
            ProcessingStatus::InQueue | ProcessingStatus::InProgress => {
                if tokio::time::Instant::now() + wait > deadline {
                    return Ok(failed(&report_id, &format!("report not done within {:?}", cfg.report_poll_max())));
                }
                between_polls(ctx, slice, wait).await?;
                wait = (wait * 3 / 2).min(StdDuration::from_secs(30));
            }
        }
    };

    let document = match market.get_report_document(&seller.call, &document_id).await {
        Ok(d) => d,
        Err(e) => return report_error(e, &report_id),
    };
    let bytes = match market.download_document(&document).await {
        Ok(b) => b,
        Err(e) => return report_error(e, &report_id),
    };
    let parsed = match report_parse::parse_apart(bytes).await {
        Ok(parsed) => parsed,
        Err(e) => return Ok(failed(&report_id, &e.to_string())),
    };
    let listed: Vec<serde_json::Value> = parsed
        .errors
        .iter()
        .take(jobs.config().parse_errors_listed)
        .map(|e| json!({"line": e.line, "column": e.column, "column_name": e.column_name, "message": e.message}))
        .collect();
    if parsed.too_many_errors() {
        // Logged once, as the window's failure (its detail has the report, the counts
        // and where the first bad rows are).
        return Ok(WindowEnd::Failed(json!({
            "report_id": report_id, "rows": parsed.rows(), "bad_rows": parsed.errors.len(),
            "error": format!("{} of {} rows could not be parsed (more than 1%)", parsed.errors.len(), parsed.rows()),
            "parse_errors": listed,
        })));
    }
    let detail = |written| {
        json!({
            "report_id": report_id, "rows": parsed.rows(), "written": written, "bad_rows": parsed.errors.len(), "parse_errors": listed,
        })
    };
    store(jobs, p, ctx, &item.item, &parsed, detail).await?;
    Ok(WindowEnd::Recorded)
}

/// Where a window's detail keeps when its report was requested (the poll deadline's start).
const REQUESTED_AT: &str = "report_requested_at";

/// When the window's report was requested (or first polled), as an earlier run of this
/// attempt noted it (a failed window's detail no longer holds it: its retry polls with a
/// deadline of its own).
fn requested_at(item: &Item) -> Option<DateTime<Utc>> {
    let at = item.detail.get(REQUESTED_AT)?.as_str()?;
    DateTime::parse_from_rfc3339(at).ok().map(|t| t.with_timezone(&Utc))
}

fn stamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Where a failed window's detail keeps the attempt it failed in.
const FAILED_IN: &str = "attempt";

/// Whether `item` is a window that failed in `attempt` (attempt numbers go on across
/// replays, so a replay's first attempt retries it).
fn failed_in(item: &Item, attempt: u32) -> bool {
    item.outcome == ItemOutcome::Failed && item.detail.get(FAILED_IN).and_then(|v| v.as_u64()) == Some(u64::from(attempt))
}

/// How often a wait between two polls looks whether the run should end early.
const POLL_CHECK: StdDuration = StdDuration::from_millis(250);

/// Waits `wait` between two polls of a report. The marketplace is preparing it, so the
/// slot has nothing to do meanwhile: once the run has worked its turn and another job
/// waits for the slot (or the worker stops, or the slice is used up) the run ends here
/// (`Slice::end`, no attempt used), and its next run polls the same report.
async fn between_polls(ctx: &JobContext, slice: &Slice, wait: StdDuration) -> Result<(), JobError> {
    let until = tokio::time::Instant::now() + wait;
    loop {
        if let Some(end) = slice.end(ctx) {
            return Err(end);
        }
        let now = tokio::time::Instant::now();
        if now >= until {
            return Ok(());
        }
        tokio::select! {
            _ = ctx.cancel.cancelled() => return Err(JobError::Cancelled),
            _ = ctx.stopping.cancelled() => {}
            _ = tokio::time::sleep((until - now).min(POLL_CHECK)) => {}
        }
    }
}

/// How old a report must be (since it was asked for) before a 404 for it means it has
/// gone upstream.
const REPORT_GONE_AFTER_MIN: i64 = 10;

/// The report an earlier run asked for is gone upstream (SP-API keeps a report for a
/// limited time): the window forgets it and asks for a new one, in this run, once (found
/// by the audit of 2026-12-07, third: every replay polled the gone report again and
/// failed the window). Not looked for among the account's reports (`lost_report`): the
/// call that made it was answered.
async fn report_gone(
    jobs: &Jobs,
    p: &BackfillPayload,
    seller: &Seller,
    ctx: &JobContext,
    slice: &Slice,
    item: &Item,
    report_id: &str,
) -> Result<WindowEnd, JobError> {
    tracing::info!(job_id = %ctx.id, window = %item.item, report_id, "the window's report is gone upstream (404); asking for a new one");
    let forget = json!({"report_id": null, REQUESTED_AT: null});
    let mut conn = jobs.connection("forgetting a gone report").await?;
    let written = items::note(&mut conn, ctx.fence(), &item.item, &forget)
        .within(jobs)
        .await
        .map_err(db_error("forgetting a gone report"))?;
    landed(written, ctx, "forgetting a gone report")?;
    drop(conn);
    let mut fresh = item.clone();
    fresh.sent_by = None;
    if let Some(detail) = fresh.detail.as_object_mut() {
        detail.remove("report_id");
        detail.remove(REQUESTED_AT);
    }
    Box::pin(window(jobs, p, seller, ctx, slice, &fresh)).await
}

/// A failed window that keeps its report: a rerun polls it again rather than spending
/// report quota on a new one (it may finish, or its document download may work then).
fn failed(report_id: &str, error: &str) -> WindowEnd {
    WindowEnd::Failed(json!({"report_id": report_id, "error": error}))
}

/// A failed window whose report can never deliver (FATAL, or DONE without a document):
/// named as `failed_report_id`, so a rerun asks for a new one.
fn unusable(report_id: &str, error: &str) -> WindowEnd {
    WindowEnd::Failed(json!({"failed_report_id": report_id, "error": error}))
}

/// Quota, breaker, cooldown, cancellation, a call not sent for an outage (the database
/// could not note it, the rate-limit store could not be reached) and a refusal of the
/// account's access (its windows' own requests are not at fault: they stay pending for a
/// replay once the credentials are fixed, as a cleanup's SKUs do) stop the job; the rest
/// fail the window.
fn window_error(e: CallError) -> Result<WindowEnd, JobError> {
    match e {
        // Before (found by the marketplace audit of 2026-12-07, fourth) every window
        // failed within seconds and the job ended partial.
        e if e.is_account_refusal() => Err(e.into()),
        CallError::RateLimited { .. }
        | CallError::BreakerOpen { .. }
        | CallError::Cooldown { .. }
        | CallError::Cancelled
        | CallError::Interrupted { .. } => Err(e.into()),
        other => Ok(WindowEnd::Failed(json!({"error": other.to_string()}))),
    }
}

/// As [`window_error`], for a window whose report exists: a failed window keeps the
/// report's id.
fn report_error(e: CallError, report_id: &str) -> Result<WindowEnd, JobError> {
    match window_error(e)? {
        WindowEnd::Failed(detail) => Ok(failed(report_id, detail["error"].as_str().unwrap_or_default())),
        done => Ok(done),
    }
}

/// Write a document's lines and their orders, and the window's record (`window`, done,
/// with `detail` of how many were written), in one transaction, only while this run holds
/// the job: a run stopped past its lease and resumed after another took the job over
/// writes none of them, and a failure between them leaves none written (before, found by
/// the data audit of 2026-12-06, the rows were committed on their own, unfenced, and the
/// window's record after them).
async fn store(
    jobs: &Jobs,
    p: &BackfillPayload,
    ctx: &JobContext,
    window: &str,
    parsed: &ParsedReport,
    detail: impl FnOnce(u64) -> serde_json::Value,
) -> Result<(), JobError> {
    let account = p.account_id.as_str();
    let job_id = ctx.id.as_str();
    let what = "writing report lines";
    let mut tx = jobs.transaction(what).await?;
    let held = run_fence::hold(&mut tx, ctx.fence()).within(jobs).await.map_err(db_error(what))?;
    landed(held, ctx, what)?;
    let mut written = 0;
    // (an order's items of one SKU counted together, wherever the chunks cut)
    let lines = report_lines::merge_items(&parsed.lines);
    for chunk in lines.chunks(1000) {
        written += report_lines::upsert(&mut tx, account, &p.report_type, job_id, chunk)
            .within(jobs)
            .await
            .map_err(db_error("writing report lines"))?;
        let rows = order_rows(chunk, p.marketplace_id.as_str());
        orders::upsert(&mut tx, account, OrderSource::Report, &rows)
            .within(jobs)
            .await
            .map_err(db_error("writing report orders"))?;
    }
    let recorded = items::set(&mut tx, ctx.fence(), window, ItemOutcome::Done, &detail(written))
        .within(jobs)
        .await
        .map_err(db_error("recording a window"))?;
    landed(recorded, ctx, "recording a window")?;
    tx.commit().within(jobs).await.map_err(db_error("committing report lines"))?;
    Ok(())
}

/// One order row per order id in the lines (the report has a line per order item).
fn order_rows(lines: &[ReportLine], marketplace: &str) -> Vec<OrderRow> {
    let mut by_id: std::collections::BTreeMap<&str, &ReportLine> = std::collections::BTreeMap::new();
    for l in lines {
        let keep = by_id
            .get(l.order_id.as_str())
            .is_none_or(|seen| seen.last_updated_date < l.last_updated_date);
        if keep {
            by_id.insert(&l.order_id, l);
        }
    }
    by_id
        .values()
        .map(|l| OrderRow {
            order_id: l.order_id.clone(),
            marketplace_id: marketplace.to_owned(),
            purchase_date: l.purchase_date,
            last_update_date: l.last_updated_date,
            order_status: l.order_status.clone(),
            fulfillment: None,
            order_total: None,
            currency: Some(l.currency.clone()),
            raw: json!({"source": "report", "sku": l.sku, "asin": l.asin, "item_status": l.item_status, "quantity": l.quantity,
                        "item_price": l.item_price}),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn day(d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 1, d, 0, 0, 0).single().expect("valid")
    }

    #[test]
    fn thirty_days_in_six_hour_windows_is_120_windows() {
        let w = windows(day(1), day(31), 6);
        assert_eq!(w.len(), 120);
        assert_eq!(w[0], (day(1), day(1) + Duration::hours(6)));
        assert_eq!(w[119].1, day(31));
    }

    #[test]
    fn a_call_not_sent_for_an_outage_stops_the_backfill_and_fails_no_window() {
        let interrupted = CallError::Interrupted {
            op: "createReport",
            reason: "the rate-limit store (Redis) cannot be reached".into(),
            retry_after: StdDuration::from_secs(2),
        };
        assert!(matches!(window_error(interrupted.clone()), Err(JobError::Unavailable { .. })));
        assert!(matches!(report_error(interrupted, "r-1"), Err(JobError::Unavailable { .. })));
    }

    #[test]
    fn window_keys_round_trip() {
        let w = (day(1), day(2));
        assert_eq!(parse_key(&window_key(w)), Some(w));
    }

    proptest! {
        #[test]
        fn windows_tile_the_range_without_gaps_or_overlaps(start in 0i64..1_000_000, len in 1i64..2_000_000, hours in 1u32..48) {
            let s = Utc.timestamp_opt(1_700_000_000 + start, 0).single().expect("valid");
            let e = s + Duration::seconds(len);
            let w = windows(s, e, hours);
            prop_assert_eq!(w.first().map(|x| x.0), Some(s));
            prop_assert_eq!(w.last().map(|x| x.1), Some(e));
            for pair in w.windows(2) {
                prop_assert_eq!(pair[0].1, pair[1].0);
            }
            prop_assert!(w.iter().all(|(a, b)| a < b && *b - *a <= Duration::hours(i64::from(hours))));
        }
    }
}
