//! cleanup: delete listings one SKU at a time through the shared limiter.
//!
//! Every SKU is an item: `deleted`, `absent` (already gone, 404) or `failed` with its
//! reason and class. Permanent failures are final; transient ones (after the client's
//! in-call retries) are retried by a later attempt of the job, which does only SKUs
//! still pending or failed transiently. An open circuit breaker (or a rate-limit wait
//! too long to sit through) pauses the job: it is snoozed until the breaker's probe
//! time, keeps every outcome recorded so far, and resumes with what is left. So does an
//! outage of the database or of the rate-limit store (the job runs again in 2 s without
//! using an attempt): the SKUs it meets stay pending, unsent, rather than each failing.
//!
//! A delete is noted on its SKU right before it goes out, and runs on a task of its own:
//! once sent it is not cut off by a cancel (or the run's end), but read to its answer
//! within the call's timeout and recorded, so a cancelled run leaves no SKU `pending`
//! that the marketplace deleted. A run stopped with deletes in flight otherwise (its
//! worker killed) may lose their answers; the rerun, finding such a SKU gone, records it
//! `deleted` (by that earlier run), not `absent`.
use std::sync::Arc;

use drover::data::items::{self, Item, ItemOutcome};
use drover::job::{CleanupPayload, MarketplaceId, Progress, Sku};
use drover::panics;
use drover::runtime::{JobContext, Outcome};
use drover::JobError;
use futures::stream::{FuturesUnordered, StreamExt};
use serde_json::json;

use super::{check_cancel, db_error, landed, note_sent, unmark_if_refused, DbCall, Jobs, Seller, SentNote, Slice};
use crate::marketplace::{CallError, DeleteOutcome};

/// Records one SKU's outcome as this run. A delete's answer is recorded or lost, never
/// re-asked (a rerun would see 404), so a failed write is tried once more on another
/// connection (a terminated one is not reused) before the error is returned. A write
/// refused because a later run holds the job stops this run. `unanswered`: a delete of
/// it went out and was never answered, so the note that a run sent it stays
/// (`items::set_unanswered`).
async fn record(
    jobs: &Jobs,
    ctx: &JobContext,
    item: &str,
    (outcome, detail): (ItemOutcome, &serde_json::Value),
    unanswered: bool,
) -> Result<(), JobError> {
    let write = || async {
        let mut conn = jobs.db().acquire().await?;
        if unanswered {
            items::set_unanswered(&mut conn, ctx.fence(), item, outcome, detail).await
        } else {
            items::set(&mut conn, ctx.fence(), item, outcome, detail).await
        }
    };
    let written = match write().within(jobs).await {
        Ok(written) => written,
        Err(first) => {
            tracing::info!(job_id = %ctx.id, item, error = %first, "recording a SKU failed; trying once more");
            write().within(jobs).await.map_err(db_error("recording a SKU"))?
        }
    };
    landed(written, ctx, "recording a SKU")
}

/// What every delete of one run needs, shared with the tasks the deletes run on.
struct Run {
    jobs: Jobs,
    ctx: JobContext,
    seller: Seller,
    marketplace: MarketplaceId,
}

pub(super) async fn run(jobs: &Jobs, p: CleanupPayload, ctx: &JobContext) -> Result<Outcome, JobError> {
    let mut seller = jobs.account(&p.account_id, ctx).await?;
    // The deletes stop with the job's cancel, and with this run however it ends (a
    // timeout, a hard stop or a panic drop it without a cancel): a delete not yet sent
    // stops; one on the wire is read to its answer (a noted call, `call.rs`).
    let deletes_stop = ctx.cancel.child_token();
    let _stop_deletes_with_the_run = deletes_stop.clone().drop_guard();
    seller.call.cancel = deletes_stop;
    let shared = Arc::new(Run {
        jobs: jobs.clone(),
        ctx: ctx.clone(),
        seller,
        marketplace: p.marketplace_id.clone(),
    });
    let job_id = ctx.id.as_str();
    let mut seen = std::collections::HashSet::new();
    let all: Vec<String> = p
        .skus
        .iter()
        .map(|s| s.as_str().to_owned())
        .filter(|s| seen.insert(s.clone()))
        .collect();
    let mut conn = jobs.connection("seeding the job's SKUs").await?;
    for (i, chunk) in all.chunks(5000).enumerate() {
        items::seed(&mut conn, job_id, (i * 5000) as i32, chunk)
            .within(jobs)
            .await
            .map_err(db_error("seeding the job's SKUs"))?;
    }
    let todo: Vec<Item> = items::unfinished(&mut conn, job_id)
        .within(jobs)
        .await
        .map_err(db_error("reading unfinished SKUs"))?
        .into_iter()
        .filter(|i| i.outcome == ItemOutcome::Pending || i.detail.get("class").and_then(|c| c.as_str()) == Some("transient"))
        .collect();
    drop(conn);

    let total = all.len() as u64;
    let mut finished = total - todo.len() as u64;
    let mut stop: Option<JobError> = None;
    let mut transient_left = 0u64;
    // Up to `cleanup_parallelism` deletes in flight. Once the job must stop, no new
    // delete starts but those in flight are awaited and recorded: a delete that reached
    // the marketplace is never left pending (its rerun would see 404 and misreport it).
    let mut queue = todo.iter();
    // SKUs whose delete found no limiter slot soon while others were in flight: sent
    // again, first, as a delete in flight ends.
    let mut again: Vec<Item> = Vec::new();
    let mut parallelism = jobs.config().cleanup_parallelism;
    let mut in_flight = FuturesUnordered::new();
    let mut last_progress = finished;
    let slice = Slice::start(jobs.config());
    loop {
        if stop.is_none() && !(queue.as_slice().is_empty() && again.is_empty()) {
            stop = slice.end(ctx);
        }
        while stop.is_none() && !ctx.is_cancelled() && in_flight.len() < parallelism {
            match again.pop().or_else(|| queue.next().cloned()) {
                // (a panic there is raised again here, the run's: `panics::spawn`)
                Some(item) => in_flight.push(panics::spawn(delete_and_record(shared.clone(), item))),
                None => break,
            }
        }
        // A cancel ends the run at once: the deletes in flight go on, each recording its
        // answer on its own task.
        let done = tokio::select! {
            done = in_flight.next() => done,
            _ = ctx.cancel.cancelled() => None,
        };
        let done = match done {
            None => break,
            Some(Ok(done)) => done,
            // (the runtime is shutting down)
            Some(Err(_)) => Done::NotRecorded(JobError::transient("a delete's task was stopped before its answer")),
        };
        match done {
            Done::Recorded { transient } => {
                transient_left += u64::from(transient);
                if !transient {
                    // a SKU settled: a park after this starts the count of snoozes again
                    ctx.advanced();
                }
            }
            // The seller's limiter has no slot soon for this many deletes at once (this
            // run's and its other runs'): one fewer in flight from now on, and the SKU goes
            // again as one ends. A run parks only when it has none in flight.
            Done::Paused(CallError::RateLimited { .. }, item) if stop.is_none() && !in_flight.is_empty() => {
                parallelism = in_flight.len();
                again.push(item);
                continue;
            }
            Done::Paused(e, _) => {
                if stop.is_none() {
                    tracing::info!(job_id, error = %e, "cleanup paused; remaining SKUs stay pending");
                    stop = Some(e.into());
                }
                continue;
            }
            Done::NotRecorded(e) => {
                // No new delete starts; those in flight are still awaited and recorded.
                stop.get_or_insert(e);
                continue;
            }
        }
        finished += 1;
        if finished - last_progress >= jobs.config().progress_every || finished == total {
            last_progress = finished;
            // Progress also tells us when the job was cancelled elsewhere; the loop
            // then drains what is in flight before returning.
            if ctx
                .progress(Progress {
                    done: finished,
                    total: Some(total),
                    message: Some(format!("{finished} of {total} SKUs")),
                })
                .await
                .is_err()
                && stop.is_none()
            {
                stop = Some(JobError::Cancelled);
            }
        }
    }
    check_cancel(ctx)?;
    if let Some(stop) = stop {
        return Err(stop);
    }

    let mut conn = jobs.connection("summarising the job").await?;
    let summary = items::summary(&mut conn, job_id)
        .within(jobs)
        .await
        .map_err(db_error("summarising the job"))?;
    if transient_left > 0 && ctx.attempt < ctx.max_attempts {
        return Err(JobError::transient(format!(
            "{transient_left} SKUs failed transiently; the next attempt retries only those"
        )));
    }
    let failed = items::page(&mut conn, job_id, Some(ItemOutcome::Failed), None, 100)
        .within(jobs)
        .await
        .map_err(db_error("summarising the job"))?;
    let result = json!({
        "total": summary.total, "succeeded": summary.succeeded, "failed": summary.failed, "skipped": summary.skipped,
        "deleted": summary.succeeded, "absent": summary.skipped,
        "failed_skus": failed.iter().map(|i| json!({"sku": i.item, "reason": i.detail.get("reason")})).collect::<Vec<_>>(),
    });
    if summary.failed > 0 {
        Ok(Outcome::Partial(result))
    } else {
        Ok(Outcome::Succeeded(result))
    }
}

/// One SKU's delete, once its outcome is written (or could not be).
enum Done {
    /// Its outcome is recorded; `transient` when that is a failure a later attempt retries.
    Recorded { transient: bool },
    /// Refused for now (open breaker, rate limit, cooldown), not sent for an outage
    /// (`Interrupted`) or cancelled: the SKU stays pending (and may go again in this
    /// run, for a rate limit) or the run stops.
    Paused(CallError, Item),
    /// Its outcome could not be written: the run stops.
    NotRecorded(JobError),
}

/// Deletes one SKU and records its outcome, on a task of its own (so a cancelled run's
/// deletes on the wire are still read and recorded); the run's loop awaits nothing else
/// while deletes are in flight, so none of them sits unpolled holding a database
/// connection that the loop would wait for.
async fn delete_and_record(run: Arc<Run>, mut item: Item) -> Done {
    let Run { jobs, ctx, .. } = &*run;
    let Answered { earlier, result } = delete_one(&run, &item).await;
    // What this run knows of the SKU's unanswered deletes goes with it, should it be
    // sent again in this run (a rate limit): the note in the database cannot tell this
    // run's own unanswered call from a 429 whose unmark failed.
    item.sent_by = earlier;
    let (outcome, detail, transient) = match result {
        Ok(DeleteOutcome::Deleted) => (ItemOutcome::Deleted, json!({}), false),
        // Gone now, and an earlier delete of it went out unanswered — an earlier run's
        // (its answer lost when the run was stopped), an earlier call of this run (its
        // tries unanswered, then a rate limit: the SKU sent again) or an earlier try of
        // this call (a timeout or reset after it was sent): that delete removed it.
        Ok(DeleteOutcome::Absent) if earlier.is_some() => (
            ItemOutcome::Deleted,
            json!({"deleted_by_run": earlier, "note": "an earlier delete was sent and its answer lost; the listing is gone"}),
            false,
        ),
        Ok(DeleteOutcome::Absent) => (ItemOutcome::Absent, json!({}), false),
        Err(
            e @ (CallError::BreakerOpen { .. }
            | CallError::RateLimited { .. }
            | CallError::Cooldown { .. }
            | CallError::Cancelled
            | CallError::Interrupted { .. }),
        ) => {
            // The SKU stays pending for the resumed run.
            return Done::Paused(e, item);
        }
        // The account's access refused: every SKU would fail the same way, so the run
        // stops (the job dies once, saying why) and the SKUs stay pending for a replay
        // once the credentials are fixed (found by the marketplace audit of 2026-12-07,
        // third: each SKU was recorded failed `permanent` within seconds, the job ended
        // `partial`, and a retry after the fix sent no delete).
        Err(e) if e.is_account_refusal() => return Done::Paused(e, item),
        Err(e @ CallError::Transient { .. }) => (ItemOutcome::Failed, json!({"class": "transient", "reason": e.to_string()}), true),
        Err(e) => (ItemOutcome::Failed, json!({"class": "permanent", "reason": e.to_string()}), false),
    };
    // A transient failure after a delete of it went out unanswered (a try of this call,
    // or an earlier run's): that delete may have removed it, so the next attempt's 404
    // must count as this job's delete.
    let unanswered = transient && earlier.is_some();
    match record(jobs, ctx, &item.item, (outcome, &detail), unanswered).await {
        Ok(()) => Done::Recorded { transient },
        Err(e) => Done::NotRecorded(e),
    }
}

/// One SKU's delete as this run saw it.
struct Answered {
    /// The earlier run whose delete of this SKU went out and was never answered.
    earlier: Option<i64>,
    result: Result<DeleteOutcome, CallError>,
}

/// Deletes one SKU, noting on its item, right before the request goes out, that this
/// run sent it (`items::mark_sent`): a rerun then knows a 404 may be this job's own
/// delete whose answer was lost.
async fn delete_one(run: &Run, item: &Item) -> Answered {
    let Run {
        jobs,
        ctx,
        seller,
        marketplace,
    } = run;
    let sku = match Sku::parse(item.item.clone()) {
        Ok(s) => s,
        Err(e) => {
            return Answered {
                earlier: None,
                result: Err(CallError::Permanent {
                    op: "deleteListingsItem",
                    status: 0,
                    reason: format!("invalid SKU: {e}"),
                }),
            }
        }
    };
    // (an earlier run's note read with the SKU, or this run's own unanswered call)
    let sent = SentNote::after(item.sent_by);
    let note = note_sent(jobs, ctx, &item.item, "deleteListingsItem", &sent);
    let result = jobs
        .market()
        .delete_listings_item_noting(&seller.call, &seller.seller_id, &sku, std::slice::from_ref(marketplace), Some(note))
        .await;
    if let Err(e) = &result {
        unmark_if_refused(jobs, ctx, &item.item, e, &sent).await;
    }
    let earlier = sent.sent_unanswered_by(ctx);
    Answered { earlier, result }
}
