//! Listings Items 2021-08-01: `getListingsItem` and `deleteListingsItem`.
//!
//! Deletes are recorded with their outcome by the gate (which also sees the calls that
//! faults answered), so tests can hold a cleanup job's per-SKU results against what
//! the marketplace actually saw.
use std::sync::Arc;

use amazon_spapi::models::listings_items_2021_08_01::{
    item_summary_by_marketplace::Status as SummaryStatus, listings_item_submission_response::Status, Item, ItemSummaryByMarketplace,
    ListingsItemSubmissionResponse,
};
use axum::extract::{Extension, State};
use axum::Json;

use super::account::Account;
use super::catalog::{asin_for, iso};
use super::error::ApiError;
use super::extract::{Params, SpPath};
use super::gate::Caller;
use super::state::Sim;

/// Checks what both operations check, in SP-API's order: the seller in the path is the
/// token's seller, marketplaceIds is given, and the SKU is not one that must fail (a
/// 400 for `permanent_400_skus`, a 500 for `failing_skus`).
fn check(acct: &Account, seller_id: &str, sku: &str, params: &Params) -> Result<String, ApiError> {
    if seller_id != acct.seller_id {
        return Err(ApiError::Forbidden(format!(
            "Access to requested resource is denied: sellerId {seller_id:?} is not the seller of this access token."
        )));
    }
    let marketplaces = params.list("marketplaceIds");
    let Some(marketplace) = marketplaces.first() else {
        return Err(ApiError::InvalidInput("marketplaceIds is required.".to_owned()));
    };
    if acct.faults.is_permanent_400(sku) {
        return Err(ApiError::InvalidInput(format!(
            "SKU {sku:?} is invalid for this operation in marketplace {marketplace}."
        )));
    }
    if acct.faults.is_failing(sku) {
        return Err(ApiError::server_error(500));
    }
    Ok(marketplace.clone())
}

fn not_found(sku: &str, marketplace: &str) -> ApiError {
    ApiError::NotFound(format!("SKU {sku:?} not found in marketplace {marketplace}."))
}

pub(crate) async fn get_item(
    State(sim): State<Arc<Sim>>,
    Extension(Caller(account)): Extension<Caller>,
    SpPath((seller_id, sku)): SpPath<(String, String)>,
    params: Params,
) -> Result<Json<Item>, ApiError> {
    let mut inner = sim.lock();
    let acct = inner
        .account_mut(&account)
        .ok_or_else(|| ApiError::Unauthorized("Unknown account.".to_owned()))?;
    let marketplace = check(acct, &seller_id, &sku, &params)?;
    if !acct.listings.contains(&sku) {
        return Err(not_found(&sku, &marketplace));
    }
    let created = iso(sim.anchor - chrono::Duration::days(365));
    let mut summary = ItemSummaryByMarketplace::new(
        marketplace,
        "PRODUCT".to_owned(),
        vec![SummaryStatus::Buyable, SummaryStatus::Discoverable],
        created.clone(),
        created,
    );
    summary.asin = Some(asin_for(sim.config.seed, &account, &sku));
    summary.item_name = Some(format!("Simulated product {sku}"));
    let mut item = Item::new(sku);
    item.summaries = Some(vec![summary]);
    Ok(Json(item))
}

pub(crate) async fn delete_item(
    State(sim): State<Arc<Sim>>,
    Extension(Caller(account)): Extension<Caller>,
    SpPath((seller_id, sku)): SpPath<(String, String)>,
    params: Params,
) -> Result<Json<ListingsItemSubmissionResponse>, ApiError> {
    let mut inner = sim.lock();
    let inner = &mut *inner;
    let acct = inner
        .accounts
        .get_mut(&account)
        .ok_or_else(|| ApiError::Unauthorized("Unknown account.".to_owned()))?;
    let marketplace = check(acct, &seller_id, &sku, &params)?;
    if !acct.listings.remove(&sku) {
        return Err(not_found(&sku, &marketplace));
    }
    let submission_id = inner.rng.hex(32);
    Ok(Json(ListingsItemSubmissionResponse::new(sku, Status::Accepted, submission_id)))
}
