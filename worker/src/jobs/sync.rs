//! sync: incremental pull of orders (getOrders by LastUpdatedAfter, page by page) and a
//! refresh of the account's known listings.
//!
//! Each page's rows, its item record and the walk's next token are committed in one
//! transaction, and the cursor moves to the walk's upper bound only with the last page:
//! a worker killed mid-walk leaves a retry that resumes after the last committed page,
//! and a row is never written twice (upserts keyed by order id).
//!
//! A resource whose sync completes is recorded in `last_synced` (orders with the walk's
//! last page, listings with the refresh's item record); a failing run records nothing.
use chrono::{DateTime, Duration, Utc};
use drover::data::cursors::{self, Position, Walk};
use drover::data::items::{self, ItemOutcome};
use drover::data::last_synced::{self, SyncedResource};
use drover::data::listings::{self, ListingRow};
use drover::data::orders::{self, OrderRow, OrderSource};
use drover::job::{Progress, Sku, SyncPayload, SyncResource};
use drover::runtime::{JobContext, Outcome};
use drover::JobError;
use serde_json::json;

use super::{check_cancel, db_error, landed, DbCall, Jobs, Seller, Slice};
use crate::marketplace::{CallError, OrdersQuery};

/// A listing's status when the marketplace refused its SKU's request (a 4xx other than
/// the account's access): checked, with the refusal in its raw record.
const REFUSED: &str = "REFUSED";

const ORDERS: &str = "orders";

pub(super) async fn run(jobs: &Jobs, p: SyncPayload, ctx: &JobContext) -> Result<Outcome, JobError> {
    let seller = jobs.account(&p.account_id, ctx).await?;
    let mut result = serde_json::Map::new();
    // A refresh an earlier run of this job began: its orders walk ended before it.
    let listings_began = if p.resources.contains(&SyncResource::Listings) {
        listings_begun_earlier(jobs, ctx).await?
    } else {
        None
    };
    if p.resources.contains(&SyncResource::Orders) {
        let orders = match listings_began {
            Some(_) => json!({"walked_by_an_earlier_run": true}),
            None => sync_orders(jobs, &p, &seller, ctx).await?,
        };
        result.insert("orders".into(), orders);
    }
    if p.resources.contains(&SyncResource::Listings) {
        result.insert("listings".into(), sync_listings(jobs, &p, &seller, ctx, listings_began).await?);
    }
    let mut conn = jobs.connection("reading the job's items").await?;
    let summary = items::summary(&mut conn, ctx.id.as_str())
        .within(jobs)
        .await
        .map_err(db_error("reading the job's items"))?;
    result.insert("summary".into(), json!(summary));
    Ok(Outcome::Succeeded(serde_json::Value::Object(result)))
}

async fn sync_orders(jobs: &Jobs, p: &SyncPayload, seller: &Seller, ctx: &JobContext) -> Result<serde_json::Value, JobError> {
    let account = p.account_id.as_str();
    let job_id = ctx.id.as_str();
    // The marketplace's own position: a sync of another one moves only that one's.
    let position = Position {
        account_id: account,
        marketplace_id: p.marketplace_id.as_str(),
        resource: ORDERS,
    };
    let mut conn = jobs.connection("loading the sync cursor").await?;
    let stored = cursors::load(&mut conn, position)
        .within(jobs)
        .await
        .map_err(db_error("loading the sync cursor"))?;
    drop(conn);

    // Resume a walk in progress of this marketplace (even one another job started: the
    // rows are the same), else start one from `since`, the cursor, or the first-sync
    // lookback. The walk's start is its first run's (this run's for one stored without).
    let now = Utc::now();
    let fresh_after = || {
        p.since
            .or(stored.cursor_at)
            .unwrap_or_else(|| now - Duration::hours(i64::from(jobs.config().first_sync_lookback_hours)))
    };
    let (mut token, mut before, mut pages, mut after, mut started_at) = match &stored.walk {
        Some(w) => (Some(w.next_token.clone()), w.before, w.pages, None, w.started.unwrap_or(now)),
        None => (None, None, 0, Some(fresh_after()), now),
    };
    let resumed = token.is_some();
    // The call carries the stored walk's token, not yet answered.
    let mut asking_stored = resumed;
    let mut walked_again = false;
    let mut orders_written = 0u64;
    let mut orders_seen = 0u64;
    let slice = Slice::start(jobs.config());
    loop {
        check_cancel(ctx)?;
        if let Some(end) = slice.end(ctx).filter(|_| token.is_some()) {
            // The walk's next token is committed: the next run continues from it.
            return Err(end);
        }
        let answer = jobs
            .market()
            .get_orders(
                &seller.call,
                &OrdersQuery {
                    marketplace_ids: vec![p.marketplace_id.clone()],
                    last_updated_after: if token.is_none() { after } else { None },
                    next_token: token.clone(),
                    max_results: Some(jobs.config().orders_page_size),
                    ..OrdersQuery::default()
                },
            )
            .await;
        let page = match answer {
            // A stored walk's token the marketplace refuses (it lapsed, or the walk is
            // one it forgot): the walk starts again from the cursor, its pages' rows
            // upserted again (found by the audit of 2026-12-07, fourth: every later sync
            // of the marketplace ended on it, until the walk was cleared by hand).
            Err(CallError::Permanent { status: 400, reason, .. }) if asking_stored => {
                tracing::warn!(
                    account = %p.account_id,
                    marketplace = %p.marketplace_id,
                    reason = %reason,
                    "the marketplace refused the stored orders walk's NextToken; walking again from the cursor"
                );
                (token, before, after, started_at, pages) = (None, None, Some(fresh_after()), Utc::now(), 0);
                asking_stored = false;
                walked_again = true;
                continue;
            }
            answer => {
                asking_stored = false;
                answer?
            }
        };
        before = page.last_updated_before.or(before);
        let rows: Vec<OrderRow> = page.orders.iter().filter_map(|o| order_row(o, p.marketplace_id.as_str())).collect();
        if rows.len() != page.orders.len() {
            return Err(JobError::transient(format!(
                "getOrders page {} had {} orders with unreadable dates",
                pages + 1,
                page.orders.len() - rows.len()
            )));
        }
        pages += 1;
        orders_seen += rows.len() as u64;

        let mut tx = jobs.transaction("writing an orders page").await?;
        let written = orders::upsert(&mut tx, account, OrderSource::Sync, &rows)
            .within(jobs)
            .await
            .map_err(db_error("writing an orders page"))?;
        let detail = json!({"resource": ORDERS, "orders": rows.len(), "written": written});
        let recorded = items::put(
            &mut tx,
            ctx.fence(),
            pages,
            &format!("orders/page-{pages:05}"),
            ItemOutcome::Done,
            &detail,
        )
        .within(jobs)
        .await
        .map_err(db_error("recording an orders page"))?;
        // Refused: a later run holds the job, and the page's rows roll back with it.
        landed(recorded, ctx, "recording an orders page")?;
        match &page.next_token {
            Some(next) => {
                let walk = Walk {
                    next_token: next.clone(),
                    before,
                    started: Some(started_at),
                    pages,
                    job_id: Some(job_id.to_owned()),
                };
                cursors::save_walk(&mut tx, position, &walk).within(jobs).await
            }
            // SP-API echoes the bound it applied as LastUpdatedBefore; without it, the
            // walk's start (minus SP-API's 2-minute settle time) is a safe next cursor.
            None => {
                // The walk reached its end: the orders are synced as of this commit.
                let at = before.unwrap_or(started_at - Duration::minutes(2));
                match cursors::finish_walk(&mut tx, position, at).within(jobs).await {
                    Ok(()) => {
                        last_synced::record(&mut tx, account, SyncedResource::Orders, job_id)
                            .within(jobs)
                            .await
                    }
                    Err(e) => Err(e),
                }
            }
        }
        .map_err(db_error("moving the sync cursor"))?;
        tx.commit().within(jobs).await.map_err(db_error("committing an orders page"))?;
        orders_written += written;
        // (a park after this starts the job's count of snoozes again)
        ctx.advanced();

        ctx.progress(Progress {
            done: u64::try_from(pages).unwrap_or_default(),
            total: None,
            message: Some(format!("orders: {pages} pages, {orders_seen} orders this run")),
        })
        .await?;
        match page.next_token {
            Some(next) => token = Some(next),
            None => break,
        }
    }
    Ok(
        json!({"pages": pages, "orders": orders_seen, "written": orders_written, "resumed_walk": resumed, "walked_again": walked_again, "cursor": before}),
    )
}

fn order_row(o: &amazon_spapi::models::orders_v0::Order, marketplace: &str) -> Option<OrderRow> {
    let time = |s: &str| DateTime::parse_from_rfc3339(s).ok().map(|t| t.with_timezone(&Utc));
    let text = |v: serde_json::Value| v.as_str().map(str::to_owned);
    Some(OrderRow {
        order_id: o.amazon_order_id.clone(),
        marketplace_id: o.marketplace_id.clone().unwrap_or_else(|| marketplace.to_owned()),
        purchase_date: time(&o.purchase_date)?,
        last_update_date: time(&o.last_update_date)?,
        order_status: text(serde_json::to_value(o.order_status).ok()?)?,
        fulfillment: o.fulfillment_channel.and_then(|c| serde_json::to_value(c).ok()).and_then(text),
        order_total: o.order_total.as_ref().and_then(|m| m.amount.clone()),
        currency: o.order_total.as_ref().and_then(|m| m.currency_code.clone()),
        raw: serde_json::to_value(o).ok()?,
    })
}

/// The refresh's item record (after the orders pages): pending with its start while it
/// goes on, done with its totals.
const LISTINGS_SEQ: i32 = 100_000;
const LISTINGS_ITEM: &str = "listings";

/// Refresh what we know of the account's listings (its stored listings and the SKUs
/// its order reports mention), one getListingsItem per SKU through the shared limiter,
/// least recently checked first. The refresh keeps its place: its item record holds
/// when it began (the database's clock), and a later run of the job — after a park, a
/// turn given away or a lost lease — checks only the SKUs not checked since then.
async fn sync_listings(
    jobs: &Jobs,
    p: &SyncPayload,
    seller: &Seller,
    ctx: &JobContext,
    began: Option<DateTime<Utc>>,
) -> Result<serde_json::Value, JobError> {
    let account = p.account_id.as_str();
    let began = match began {
        Some(t) => t,
        None => begin_listings(jobs, ctx).await?,
    };
    // A connection is held only around each database call, never across a marketplace
    // call: a refresh takes minutes at SP-API's rates, and the worker's other runs share
    // the pool.
    let mut conn = jobs.connection("reading known SKUs").await?;
    let (before, ..) = listings::checked_since(&mut conn, account, began)
        .within(jobs)
        .await
        .map_err(db_error("reading known SKUs"))?;
    let left = i64::from(jobs.config().listings_per_sync).saturating_sub(before).max(0);
    let skus = listings::known_skus(&mut conn, account, began, left)
        .within(jobs)
        .await
        .map_err(db_error("reading known SKUs"))?;
    drop(conn);
    let total = before as u64 + skus.len() as u64;
    let slice = Slice::start(jobs.config());
    for (i, raw) in skus.iter().enumerate() {
        check_cancel(ctx)?;
        if let Some(end) = slice.end(ctx) {
            // Every SKU checked so far is written: the next run goes on after them.
            return Err(end);
        }
        let item = match Sku::parse(raw.clone()) {
            Ok(sku) => {
                jobs.market()
                    .get_listings_item(&seller.call, &seller.seller_id, &sku, std::slice::from_ref(&p.marketplace_id))
                    .await
            }
            Err(e) => Err(CallError::Permanent {
                op: "getListingsItem",
                status: 400,
                reason: format!("not a SKU the marketplace takes: {e}"),
            }),
        };
        let row = match item {
            // This SKU's request refused (not the account's access, which stops the
            // job): its row says so and is checked, and the refresh goes on. Before
            // (found by the marketplace audit of 2026-12-07, third) the job died, and the
            // SKU, never checked, came first in every later refresh, which died on it too.
            Err(ref e @ CallError::Permanent { status, ref reason, .. }) if !e.is_account_refusal() => ListingRow {
                sku: raw.clone(),
                marketplace_id: p.marketplace_id.as_str().to_owned(),
                asin: None,
                status: REFUSED.to_owned(),
                raw: Some(json!({"refused": {"status": status, "reason": reason}})),
            },
            Err(e) => return Err(e.into()),
            Ok(Some(item)) => {
                let summary = item.summaries.as_ref().and_then(|s| s.first());
                ListingRow {
                    sku: raw.clone(),
                    marketplace_id: p.marketplace_id.as_str().to_owned(),
                    asin: summary.and_then(|s| s.asin.clone()),
                    status: summary
                        .map(|s| {
                            s.status
                                .iter()
                                .filter_map(|st| serde_json::to_value(st).ok()?.as_str().map(str::to_owned))
                                .collect::<Vec<_>>()
                                .join(",")
                        })
                        .filter(|s| !s.is_empty())
                        .unwrap_or_else(|| "UNKNOWN".to_owned()),
                    raw: serde_json::to_value(&item).ok(),
                }
            }
            Ok(None) => ListingRow {
                sku: raw.clone(),
                marketplace_id: p.marketplace_id.as_str().to_owned(),
                asin: None,
                status: "ABSENT".to_owned(),
                raw: None,
            },
        };
        let mut conn = jobs.connection("writing a listing").await?;
        let written = listings::upsert(&mut conn, ctx.fence(), account, &row)
            .within(jobs)
            .await
            .map_err(db_error("writing a listing"))?;
        drop(conn);
        landed(written, ctx, "writing a listing")?;
        // (a park after this starts the job's count of snoozes again)
        ctx.advanced();
        let done = before as u64 + i as u64 + 1;
        if done.is_multiple_of(jobs.config().progress_every) || done == total {
            ctx.progress(Progress {
                done,
                total: Some(total),
                message: Some(format!("listings: {done} of {total} SKUs checked")),
            })
            .await?;
        }
    }
    let mut conn = jobs.connection("counting the listings checked").await?;
    let (checked, absent, refused) = listings::checked_since(&mut conn, account, began)
        .within(jobs)
        .await
        .map_err(db_error("counting the listings checked"))?;
    let detail =
        json!({"resource": "listings", "checked": checked, "found": checked - absent - refused, "absent": absent, "refused": refused});
    drop(conn);
    let mut tx = jobs.transaction("recording the listings refresh").await?;
    let recorded = items::put(&mut tx, ctx.fence(), LISTINGS_SEQ, LISTINGS_ITEM, ItemOutcome::Done, &detail)
        .within(jobs)
        .await
        .map_err(db_error("recording the listings refresh"))?;
    landed(recorded, ctx, "recording the listings refresh")?;
    last_synced::record(&mut tx, account, SyncedResource::Listings, ctx.id.as_str())
        .within(jobs)
        .await
        .map_err(db_error("recording the listings refresh"))?;
    tx.commit().within(jobs).await.map_err(db_error("recording the listings refresh"))?;
    Ok(detail)
}

/// When an earlier run of this job began its listings refresh (its item record is
/// pending with the start), if one did.
async fn listings_begun_earlier(jobs: &Jobs, ctx: &JobContext) -> Result<Option<DateTime<Utc>>, JobError> {
    let what = "reading where the listings refresh stands";
    let mut conn = jobs.connection(what).await?;
    let unfinished = items::unfinished(&mut conn, ctx.id.as_str())
        .within(jobs)
        .await
        .map_err(db_error(what))?;
    Ok(unfinished
        .iter()
        .find(|i| i.item == LISTINGS_ITEM)
        .and_then(|i| i.detail.get("began")?.as_str()?.parse::<DateTime<Utc>>().ok()))
}

/// Begins the listings refresh now (the database's clock), recorded before the first
/// SKU so a later run of the job can go on from there.
async fn begin_listings(jobs: &Jobs, ctx: &JobContext) -> Result<DateTime<Utc>, JobError> {
    let what = "recording the listings refresh's start";
    let mut conn = jobs.connection(what).await?;
    let began = listings::now(&mut conn).within(jobs).await.map_err(db_error(what))?;
    drop(conn);
    let detail = json!({"resource": LISTINGS_ITEM, "began": began});
    let mut tx = jobs.transaction(what).await?;
    let recorded = items::put(&mut tx, ctx.fence(), LISTINGS_SEQ, LISTINGS_ITEM, ItemOutcome::Pending, &detail)
        .within(jobs)
        .await
        .map_err(db_error(what))?;
    landed(recorded, ctx, what)?;
    tx.commit().within(jobs).await.map_err(db_error(what))?;
    Ok(began)
}
