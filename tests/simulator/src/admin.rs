//! The admin API tests and operators use to shape and inspect the simulator. Every
//! path is under `/_admin`; JSON in, JSON out, errors as `{"error": "..."}`.
//!
//! | method + path                         | body                         | answer |
//! |---------------------------------------|------------------------------|--------|
//! | `POST /_admin/accounts`               | [`AccountSpec`]              | 201 [`AccountInfo`]; 400; 409 duplicate |
//! | `GET /_admin/accounts`                |                              | `[AccountInfo]` |
//! | `GET /_admin/faults/{account}`        |                              | [`FaultsView`] |
//! | `PUT /_admin/faults/{account}`        | [`FaultSpec`]                | [`FaultsView`] (replaces, counters restart) |
//! | `DELETE /_admin/faults/{account}`     |                              | 204 (no faults at all) |
//! | `GET /_admin/skus/{account}`          |                              | `{"skus": [..]}` |
//! | `POST /_admin/skus/{account}`         | [`SkuChange`]                | `{"skus": count}` |
//! | `GET /_admin/orders/{account}`        |                              | `[Order]` (SP-API model), by purchase date |
//! | `POST /_admin/orders/{account}`       | [`OrderChange`]              | `{"orders": count}` |
//! | `GET /_admin/deletes/{account}`       |                              | `[DeleteRecord]` in arrival order |
//! | `POST /_admin/tokens/{account}/expire`|                              | `{"expired": n}` |
//! | `GET /_admin/stats`                   |                              | [`StatsSnapshot`] |
//! | `POST /_admin/reset`                  |                              | 204 |
use std::sync::Arc;

use amazon_spapi::models::orders_v0::Order;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::account::{validate_sku, AccountInfo, AccountSpec};
use super::faults::{FaultSpec, FaultsRemaining};
use super::state::{Inner, Sim};
use super::stats::{DeleteRecord, StatsSnapshot};

/// What went wrong with an admin request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let status = match self {
            AdminError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AdminError::NotFound(_) => StatusCode::NOT_FOUND,
            AdminError::Conflict(_) => StatusCode::CONFLICT,
        };
        (status, Json(serde_json::json!({ "error": self.to_string() }))).into_response()
    }
}

impl From<JsonRejection> for AdminError {
    fn from(rejection: JsonRejection) -> Self {
        AdminError::BadRequest(rejection.body_text())
    }
}

impl From<PathRejection> for AdminError {
    fn from(rejection: PathRejection) -> Self {
        AdminError::BadRequest(rejection.body_text())
    }
}

/// An account's faults: what was asked and what is left of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultsView {
    pub spec: FaultSpec,
    pub remaining: FaultsRemaining,
}

/// Listings to create and delete (by SKU) behind the API's back.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SkuChange {
    pub add: Vec<String>,
    pub remove: Vec<String>,
}

/// Order activity to simulate: `new` orders placed now, `touch` existing orders updated
/// now (status moves along, LastUpdateDate becomes now).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OrderChange {
    pub new: usize,
    pub touch: usize,
}

pub(crate) fn routes() -> Router<Arc<Sim>> {
    Router::new()
        .route("/_admin/accounts", post(register_account).get(list_accounts))
        .route("/_admin/faults/{account}", get(get_faults).put(put_faults).delete(delete_faults))
        .route("/_admin/skus/{account}", get(get_skus).post(change_skus))
        .route("/_admin/orders/{account}", get(get_orders).post(change_orders))
        .route("/_admin/deletes/{account}", get(get_deletes))
        .route("/_admin/tokens/{account}/expire", post(expire_tokens))
        .route("/_admin/stats", get(stats))
        .route("/_admin/reset", post(reset))
}

type AdminResult<T> = Result<T, AdminError>;
type AccountPath = Result<Path<String>, PathRejection>;
type Body<T> = Result<Json<T>, JsonRejection>;

fn no_account(account: &str) -> AdminError {
    AdminError::NotFound(format!("no account {account:?}"))
}

/// Runs `f` on an account under the lock.
fn with_account<T>(sim: &Sim, account: &str, f: impl FnOnce(&mut Inner, &str) -> AdminResult<T>) -> AdminResult<T> {
    let mut inner = sim.lock();
    if !inner.accounts.contains_key(account) {
        return Err(no_account(account));
    }
    f(&mut inner, account)
}

async fn register_account(State(sim): State<Arc<Sim>>, body: Body<AccountSpec>) -> AdminResult<(StatusCode, Json<AccountInfo>)> {
    let Json(spec) = body?;
    let mut inner = sim.lock();
    if inner.accounts.contains_key(&spec.account_id) {
        return Err(AdminError::Conflict(format!("account {:?} already exists", spec.account_id)));
    }
    let account = inner
        .add_account(spec, &sim.config, Instant::now())
        .map_err(AdminError::BadRequest)?;
    Ok((StatusCode::CREATED, Json(account.info())))
}

async fn list_accounts(State(sim): State<Arc<Sim>>) -> Json<Vec<AccountInfo>> {
    Json(sim.lock().accounts.values().map(|a| a.info()).collect())
}

fn faults_view(inner: &Inner, account: &str) -> AdminResult<FaultsView> {
    let acct = inner.accounts.get(account).ok_or_else(|| no_account(account))?;
    Ok(FaultsView {
        spec: acct.faults.spec().clone(),
        remaining: acct.faults.remaining(Instant::now()),
    })
}

async fn get_faults(State(sim): State<Arc<Sim>>, path: AccountPath) -> AdminResult<Json<FaultsView>> {
    let Path(account) = path?;
    with_account(&sim, &account, |inner, account| faults_view(inner, account).map(Json))
}

async fn put_faults(State(sim): State<Arc<Sim>>, path: AccountPath, body: Body<FaultSpec>) -> AdminResult<Json<FaultsView>> {
    let (Path(account), Json(spec)) = (path?, body?);
    with_account(&sim, &account, |inner, account| {
        inner
            .set_faults(account, spec, sim.config.seed, Instant::now())
            .map_err(AdminError::BadRequest)?;
        faults_view(inner, account).map(Json)
    })
}

async fn delete_faults(State(sim): State<Arc<Sim>>, path: AccountPath) -> AdminResult<StatusCode> {
    let Path(account) = path?;
    with_account(&sim, &account, |inner, account| {
        inner
            .set_faults(account, FaultSpec::default(), sim.config.seed, Instant::now())
            .map_err(AdminError::BadRequest)?;
        Ok(StatusCode::NO_CONTENT)
    })
}

async fn get_skus(State(sim): State<Arc<Sim>>, path: AccountPath) -> AdminResult<Json<serde_json::Value>> {
    let Path(account) = path?;
    with_account(&sim, &account, |inner, account| {
        let skus: Vec<&String> = inner.accounts.get(account).map(|a| a.listings.iter().collect()).unwrap_or_default();
        Ok(Json(serde_json::json!({ "skus": skus })))
    })
}

async fn change_skus(State(sim): State<Arc<Sim>>, path: AccountPath, body: Body<SkuChange>) -> AdminResult<Json<serde_json::Value>> {
    let (Path(account), Json(change)) = (path?, body?);
    for sku in change.add.iter().chain(&change.remove) {
        validate_sku(sku).map_err(AdminError::BadRequest)?;
    }
    with_account(&sim, &account, |inner, account| {
        let acct = inner.account_mut(account).ok_or_else(|| no_account(account))?;
        acct.listings.extend(change.add);
        for sku in &change.remove {
            acct.listings.remove(sku);
        }
        Ok(Json(serde_json::json!({ "skus": acct.listings.len() })))
    })
}

async fn get_orders(State(sim): State<Arc<Sim>>, path: AccountPath) -> AdminResult<Json<Vec<Order>>> {
    let Path(account) = path?;
    with_account(&sim, &account, |inner, account| {
        let acct = inner.account_mut(account).ok_or_else(|| no_account(account))?;
        let marketplace = acct.marketplace_id.clone();
        let mut orders: Vec<_> = acct.orders(sim.anchor).iter().collect();
        orders.sort_by(|a, b| (a.purchase, &a.id).cmp(&(b.purchase, &b.id)));
        Ok(Json(orders.into_iter().map(|o| o.to_model(&marketplace)).collect()))
    })
}

async fn change_orders(State(sim): State<Arc<Sim>>, path: AccountPath, body: Body<OrderChange>) -> AdminResult<Json<serde_json::Value>> {
    let (Path(account), Json(change)) = (path?, body?);
    with_account(&sim, &account, |inner, account| {
        let acct = inner.account_mut(account).ok_or_else(|| no_account(account))?;
        acct.add_orders(sim.anchor, Utc::now(), change.new, change.touch);
        Ok(Json(serde_json::json!({ "orders": acct.order_count() })))
    })
}

async fn get_deletes(State(sim): State<Arc<Sim>>, path: AccountPath) -> AdminResult<Json<Vec<DeleteRecord>>> {
    let Path(account) = path?;
    with_account(&sim, &account, |inner, account| {
        Ok(Json(inner.accounts.get(account).map(|a| a.deletes.clone()).unwrap_or_default()))
    })
}

async fn expire_tokens(State(sim): State<Arc<Sim>>, path: AccountPath) -> AdminResult<Json<serde_json::Value>> {
    let Path(account) = path?;
    with_account(&sim, &account, |inner, account| {
        let expired = inner.tokens.expire_account(account, Instant::now());
        Ok(Json(serde_json::json!({ "expired": expired })))
    })
}

async fn stats(State(sim): State<Arc<Sim>>) -> Json<StatsSnapshot> {
    Json(sim.stats())
}

async fn reset(State(sim): State<Arc<Sim>>) -> StatusCode {
    sim.reset();
    StatusCode::NO_CONTENT
}
