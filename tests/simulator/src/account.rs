//! One seller account inside the simulator: credentials, listings, orders, usage-plan
//! buckets, faults and counters.
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::catalog::{self, SimOrder};
use super::config::{Credentials, SimConfig};
use super::faults::{FaultSpec, FaultState};
use super::operation::Operation;
use super::ratelimit::{RateLimit, RateLimits, TokenBucket};
use super::rng::SimRng;
use super::stats::{AccountStats, DeleteRecord, OpTracker};

/// What `POST /_admin/accounts` takes. Only `account_id` is required; the rest default
/// to the simulator's configuration (shared client credentials, `rt-<account_id>`,
/// configured order and SKU counts, configured rate limits and default faults).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountSpec {
    pub account_id: String,
    /// Seller id expected in listings paths; default: the account id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seller_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub marketplace_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// Generated orders.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orders: Option<usize>,
    /// Generated listings `SKU-00001` ..
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skus: Option<usize>,
    /// Further listings that exist, by SKU.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_skus: Vec<String>,
    /// Overrides of the configured usage plans, by operation name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rate_limits: BTreeMap<Operation, RateLimit>,
    /// Faults to start with instead of the configured defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub faults: Option<FaultSpec>,
}

impl AccountSpec {
    pub fn new(account_id: impl Into<String>) -> Self {
        Self {
            account_id: account_id.into(),
            ..Self::default()
        }
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        let id = &self.account_id;
        if id.is_empty() || id.len() > 64 || !id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
            return Err(format!(
                "account_id must be 1-64 characters of A-Z, a-z, 0-9, '-', '_' or '.', got {id:?}"
            ));
        }
        for sku in &self.extra_skus {
            validate_sku(sku)?;
        }
        if self.skus.is_some_and(|n| n > 99_999) {
            return Err("skus is at most 99999".to_owned());
        }
        for (op, limit) in &self.rate_limits {
            if !op.is_rate_limited() {
                return Err(format!("{op} has no rate limit"));
            }
            limit.validate(*op)?;
        }
        if let Some(faults) = &self.faults {
            faults.validate()?;
        }
        Ok(())
    }
}

/// SP-API SKUs are 1-40 characters.
pub(crate) fn validate_sku(sku: &str) -> Result<(), String> {
    if sku.is_empty() || sku.chars().count() > 40 {
        return Err(format!("a SKU must be 1-40 characters, got {sku:?}"));
    }
    Ok(())
}

/// An account as the admin API shows it (never with its client secret).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccountInfo {
    pub account_id: String,
    pub seller_id: String,
    pub marketplace_id: String,
    pub client_id: String,
    pub refresh_token: String,
    /// Orders the account has now.
    pub orders: usize,
    /// Listings that exist now.
    pub skus: usize,
    pub rate_limits: RateLimits,
}

pub(crate) struct Account {
    pub(crate) spec: AccountSpec,
    pub(crate) seller_id: String,
    pub(crate) marketplace_id: String,
    pub(crate) credentials: Credentials,
    pub(crate) limits: RateLimits,
    order_count: usize,
    generated_skus: usize,
    /// Generated on first use: a benchmark with thousands of accounts pays only for
    /// the ones it touches.
    orders: Option<Vec<SimOrder>>,
    pub(crate) listings: BTreeSet<String>,
    pub(crate) faults: FaultState,
    buckets: HashMap<Operation, TokenBucket>,
    trackers: BTreeMap<Operation, OpTracker>,
    pub(crate) token_grants: u64,
    pub(crate) token_failures: u64,
    pub(crate) reports_created: u64,
    pub(crate) deletes: Vec<DeleteRecord>,
    seed: u64,
}

impl Account {
    pub(crate) fn new(spec: AccountSpec, config: &SimConfig, fault_rng: SimRng, now: Instant) -> Self {
        let generated_skus = spec.skus.unwrap_or(config.skus_per_account);
        let listings = (0..generated_skus)
            .map(catalog::sku_name)
            .chain(spec.extra_skus.iter().cloned())
            .collect();
        let faults = spec.faults.clone().unwrap_or_else(|| config.default_faults.clone());
        Self {
            seller_id: spec.seller_id.clone().unwrap_or_else(|| spec.account_id.clone()),
            marketplace_id: spec.marketplace_id.clone().unwrap_or_else(|| config.marketplace_id.clone()),
            credentials: Credentials {
                client_id: spec.client_id.clone().unwrap_or_else(|| config.client_id.clone()),
                client_secret: spec.client_secret.clone().unwrap_or_else(|| config.client_secret.clone()),
                refresh_token: spec
                    .refresh_token
                    .clone()
                    .unwrap_or_else(|| SimConfig::refresh_token_for(&spec.account_id)),
            },
            limits: config.rate_limits.merged(&spec.rate_limits),
            order_count: spec.orders.unwrap_or(config.orders_per_account),
            generated_skus,
            orders: None,
            listings,
            faults: FaultState::new(faults, fault_rng, now),
            buckets: HashMap::new(),
            trackers: BTreeMap::new(),
            token_grants: 0,
            token_failures: 0,
            reports_created: 0,
            deletes: Vec::new(),
            seed: config.seed,
            spec,
        }
    }

    pub(crate) fn id(&self) -> &str {
        &self.spec.account_id
    }

    pub(crate) fn orders(&mut self, anchor: DateTime<Utc>) -> &mut Vec<SimOrder> {
        let (seed, count, skus) = (self.seed, self.order_count, self.generated_skus);
        let id = self.spec.account_id.clone();
        self.orders
            .get_or_insert_with(|| catalog::generate_orders(seed, &id, count, anchor, skus))
    }

    /// Appends `count` orders placed at `now` and moves `touch` existing ones along.
    pub(crate) fn add_orders(&mut self, anchor: DateTime<Utc>, now: DateTime<Utc>, count: usize, touch: usize) {
        let (seed, skus) = (self.seed, self.generated_skus.max(1));
        let id = self.spec.account_id.clone();
        let orders = self.orders(anchor);
        // `touch` distinct orders, drawn reproducibly (a partial Fisher-Yates shuffle).
        let mut rng = SimRng::derive(seed, &[&id, "touch", &orders.len().to_string()]);
        let mut indices: Vec<usize> = (0..orders.len()).collect();
        for k in 0..touch.min(orders.len()) {
            let pick = k + rng.below((indices.len() - k) as u64) as usize;
            indices.swap(k, pick);
            orders[indices[k]].touch(now);
        }
        let start = orders.len();
        orders.extend((start..start + count).map(|i| catalog::new_order(seed, &id, i, now, skus)));
        let total = orders.len();
        self.order_count = total;
    }

    pub(crate) fn order_count(&self) -> usize {
        self.orders.as_ref().map_or(self.order_count, Vec::len)
    }

    /// Takes a token from the operation's bucket, or says how long until there is one.
    pub(crate) fn take_token(&mut self, op: Operation, now: Instant) -> Result<(), Duration> {
        let limit = self.limits.get(op);
        self.buckets
            .entry(op)
            .or_insert_with(|| TokenBucket::full(limit, now))
            .try_take(limit, now)
    }

    pub(crate) fn tracker(&mut self, op: Operation) -> &mut OpTracker {
        self.trackers.entry(op).or_default()
    }

    pub(crate) fn stats(&self) -> AccountStats {
        AccountStats {
            token_grants: self.token_grants,
            token_failures: self.token_failures,
            reports_created: self.reports_created,
            operations: self.trackers.iter().map(|(op, t)| (*op, t.snapshot())).collect(),
            deletes: self.deletes.clone(),
        }
    }

    pub(crate) fn info(&self) -> AccountInfo {
        AccountInfo {
            account_id: self.spec.account_id.clone(),
            seller_id: self.seller_id.clone(),
            marketplace_id: self.marketplace_id.clone(),
            client_id: self.credentials.client_id.clone(),
            refresh_token: self.credentials.refresh_token.clone(),
            orders: self.order_count(),
            skus: self.listings.len(),
            rate_limits: self.limits.clone(),
        }
    }
}
