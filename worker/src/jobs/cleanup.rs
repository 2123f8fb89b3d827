//! cleanup: delete listings one SKU at a time through the shared limiter.
//!
//! Every SKU is an item: `deleted`, `absent` (already gone, 404) or `failed` with its
//! reason and class. Permanent failures are final; transient ones (after the client's
//! in-call retries) are retried by a later attempt of the job, which does only SKUs
//! still pending or failed transiently. An open circuit breaker (or a rate-limit wait
//! too long to sit through) pauses the job: it is snoozed until the breaker's probe
//! time, keeps every outcome recorded so far, and resumes with what is left.
use drover::data::items::{self, Item, ItemOutcome};
use drover::job::{CleanupPayload, Progress, Sku};
use drover::runtime::{JobContext, Outcome};
use drover::JobError;
use futures::stream::{FuturesUnordered, StreamExt};
use serde_json::json;

use super::{check_cancel, db_error, Jobs, Seller, Slice};
use crate::marketplace::{CallError, DeleteOutcome};

/// Records one SKU's outcome. A delete's answer is recorded or lost, never re-asked (a
/// rerun would see 404 and misreport it), so a failed write is tried once more on
/// another connection (a terminated one is not reused) before the error is returned.
async fn record(jobs: &Jobs, job_id: &str, item: &str, outcome: ItemOutcome, detail: &serde_json::Value) -> Result<(), JobError> {
    let write = || async {
        let mut conn = jobs.db().acquire().await?;
        items::set(&mut conn, job_id, item, outcome, detail).await
    };
    match write().await {
        Ok(()) => Ok(()),
        Err(first) => {
            tracing::info!(job_id, item, error = %first, "recording a SKU failed; trying once more");
            write().await.map_err(db_error("recording a SKU"))
        }
    }
}

pub(super) async fn run(jobs: &Jobs, p: CleanupPayload, ctx: &JobContext) -> Result<Outcome, JobError> {
    let seller = jobs.account(&p.account_id, ctx).await?;
    let job_id = ctx.id.as_str();
    let mut seen = std::collections::HashSet::new();
    let all: Vec<String> = p
        .skus
        .iter()
        .map(|s| s.as_str().to_owned())
        .filter(|s| seen.insert(s.clone()))
        .collect();
    let mut conn = jobs.db().acquire().await.map_err(db_error("seeding the job's SKUs"))?;
    for (i, chunk) in all.chunks(5000).enumerate() {
        items::seed(&mut conn, job_id, (i * 5000) as i32, chunk)
            .await
            .map_err(db_error("seeding the job's SKUs"))?;
    }
    let todo: Vec<Item> = items::unfinished(&mut conn, job_id)
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
    let mut in_flight = FuturesUnordered::new();
    let mut last_progress = finished;
    let slice = Slice::start(jobs.config());
    loop {
        if stop.is_none() && slice.is_over() && !queue.as_slice().is_empty() {
            stop = Some(slice.hand_back());
        }
        while stop.is_none() && !ctx.is_cancelled() && in_flight.len() < jobs.config().cleanup_parallelism {
            match queue.next() {
                Some(item) => in_flight.push(delete_one(jobs, &p, &seller, item)),
                None => break,
            }
        }
        let Some((item, result)) = in_flight.next().await else { break };
        let (outcome, detail) = match result {
            Ok(DeleteOutcome::Deleted) => (ItemOutcome::Deleted, json!({})),
            Ok(DeleteOutcome::Absent) => (ItemOutcome::Absent, json!({})),
            Err(
                e @ (CallError::BreakerOpen { .. } | CallError::RateLimited { .. } | CallError::Cooldown { .. } | CallError::Cancelled),
            ) => {
                // The SKU stays pending for the resumed run.
                if stop.is_none() {
                    tracing::info!(job_id, error = %e, "cleanup paused; remaining SKUs stay pending");
                    stop = Some(e.into());
                }
                continue;
            }
            Err(e @ CallError::Transient { .. }) => {
                transient_left += 1;
                (ItemOutcome::Failed, json!({"class": "transient", "reason": e.to_string()}))
            }
            Err(e) => (ItemOutcome::Failed, json!({"class": "permanent", "reason": e.to_string()})),
        };
        if let Err(e) = record(jobs, job_id, &item.item, outcome, &detail).await {
            // No new delete starts; those in flight are still awaited and recorded.
            stop.get_or_insert(e);
            continue;
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

    let mut conn = jobs.db().acquire().await.map_err(db_error("summarising the job"))?;
    let summary = items::summary(&mut conn, job_id).await.map_err(db_error("summarising the job"))?;
    if transient_left > 0 && ctx.attempt < ctx.max_attempts {
        return Err(JobError::transient(format!(
            "{transient_left} SKUs failed transiently; the next attempt retries only those"
        )));
    }
    let failed = items::page(&mut conn, job_id, Some(ItemOutcome::Failed), None, 100)
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

async fn delete_one<'a>(jobs: &Jobs, p: &CleanupPayload, seller: &Seller, item: &'a Item) -> (&'a Item, Result<DeleteOutcome, CallError>) {
    let sku = match Sku::parse(item.item.clone()) {
        Ok(s) => s,
        Err(e) => {
            return (
                item,
                Err(CallError::Permanent {
                    op: "deleteListingsItem",
                    status: 0,
                    reason: format!("invalid SKU: {e}"),
                }),
            )
        }
    };
    let result = jobs
        .market()
        .delete_listings_item(&seller.call, &seller.seller_id, &sku, std::slice::from_ref(&p.marketplace_id))
        .await;
    (item, result)
}
