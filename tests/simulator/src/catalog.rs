//! One account's marketplace data: listings (SKUs) and orders, generated from
//! (seed, account) so the same seed always yields the same AmazonOrderIds, dates and
//! amounts, and tests can compute what a sync or backfill must have stored.
use amazon_spapi::models::orders_v0::{order, Money, Order};
use chrono::{DateTime, Duration as ChronoDuration, Utc};

use super::rng::SimRng;

/// Orders spread over this many days before the anchor.
pub(crate) const ORDER_SPREAD_DAYS: i64 = 60;

/// The listing SKU with 0-based index `i`: `SKU-00001`, `SKU-00002`, ...
pub(crate) fn sku_name(i: usize) -> String {
    format!("SKU-{:05}", i + 1)
}

/// A stable ASIN-looking identifier for a SKU.
pub(crate) fn asin_for(seed: u64, account_id: &str, sku: &str) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut rng = SimRng::derive(seed, &[account_id, "asin", sku]);
    let tail: String = (0..8)
        .map(|_| char::from(ALPHABET[rng.below(ALPHABET.len() as u64) as usize]))
        .collect();
    format!("B0{tail}")
}

/// SP-API's timestamp format (`2024-05-01T12:34:56Z`).
pub(crate) fn iso(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// One order, compact; turned into the SP-API model or a report row on the way out.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SimOrder {
    pub id: String,
    pub seller_order_id: String,
    pub purchase: DateTime<Utc>,
    pub updated: DateTime<Utc>,
    pub status: order::OrderStatus,
    pub channel: order::FulfillmentChannel,
    pub sku: String,
    pub asin: String,
    pub quantity: u32,
    /// Item price times quantity, in cents.
    pub amount_cents: u64,
    pub is_prime: bool,
    pub is_business: bool,
}

/// Generates order `index` of an account. Each order has its own generator, so order 7
/// is the same whether the account has 10 orders or 10,000.
pub(crate) fn generate_order(seed: u64, account_id: &str, index: usize, anchor: DateTime<Utc>, sku_count: usize) -> SimOrder {
    let mut rng = SimRng::derive(seed, &[account_id, "order", &index.to_string()]);
    let spread_s = ORDER_SPREAD_DAYS * 24 * 3600;
    let age_s = 1 + rng.below(spread_s as u64) as i64;
    let purchase = anchor - ChronoDuration::seconds(age_s);
    // Updated up to three days after purchase, never after the anchor.
    let update_delay = rng.below(3 * 24 * 3600) as i64;
    let updated = (purchase + ChronoDuration::seconds(update_delay)).min(anchor);
    let recent = age_s < 3 * 24 * 3600;
    let roll = rng.below(100);
    let status = match (recent, roll) {
        (_, 0..=7) => order::OrderStatus::Canceled,
        (true, 8..=29) => order::OrderStatus::Pending,
        (true, 30..=59) => order::OrderStatus::Unshipped,
        (true, 60..=64) => order::OrderStatus::PartiallyShipped,
        _ => order::OrderStatus::Shipped,
    };
    let sku_index = rng.below(sku_count.max(1) as u64) as usize;
    let sku = sku_name(sku_index);
    let quantity = 1 + rng.below(3) as u32;
    let unit_cents = 499 + rng.below(19_500);
    let id = format!(
        "{:03}-{:07}-{:07}",
        100 + rng.below(900),
        rng.below(10_000_000),
        rng.below(10_000_000)
    );
    SimOrder {
        seller_order_id: format!("SO-{account_id}-{:06}", index + 1),
        purchase,
        updated,
        status,
        channel: if rng.chance(0.4) {
            order::FulfillmentChannel::Afn
        } else {
            order::FulfillmentChannel::Mfn
        },
        asin: asin_for(seed, account_id, &sku),
        sku,
        quantity,
        amount_cents: unit_cents * u64::from(quantity),
        is_prime: rng.chance(0.3),
        is_business: rng.chance(0.1),
        id,
    }
}

/// All of an account's generated orders, oldest index first.
pub(crate) fn generate_orders(seed: u64, account_id: &str, count: usize, anchor: DateTime<Utc>, sku_count: usize) -> Vec<SimOrder> {
    (0..count).map(|i| generate_order(seed, account_id, i, anchor, sku_count)).collect()
}

/// An order placed just now (admin "new orders"), for incremental sync tests.
pub(crate) fn new_order(seed: u64, account_id: &str, index: usize, now: DateTime<Utc>, sku_count: usize) -> SimOrder {
    let mut order = generate_order(seed, account_id, index, now, sku_count);
    let now = now.with_nanosecond_zero();
    order.purchase = now;
    order.updated = now;
    order.status = order::OrderStatus::Pending;
    order
}

impl SimOrder {
    /// An update to the order happened at `now` (admin "touch"): it moves one step
    /// along Pending -> Unshipped -> Shipped and its LastUpdateDate becomes `now`.
    pub(crate) fn touch(&mut self, now: DateTime<Utc>) {
        self.updated = now.with_nanosecond_zero();
        self.status = match self.status {
            order::OrderStatus::Pending => order::OrderStatus::Unshipped,
            order::OrderStatus::Unshipped | order::OrderStatus::PartiallyShipped => order::OrderStatus::Shipped,
            other => other,
        };
    }

    /// "12.34"
    pub(crate) fn amount(&self) -> String {
        format!("{}.{:02}", self.amount_cents / 100, self.amount_cents % 100)
    }

    fn shipped_items(&self) -> (i32, i32) {
        let q = self.quantity as i32;
        match self.status {
            order::OrderStatus::Shipped => (q, 0),
            order::OrderStatus::PartiallyShipped => (1.min(q), q - 1.min(q)),
            order::OrderStatus::Canceled => (0, 0),
            _ => (0, q),
        }
    }

    pub(crate) fn to_model(&self, marketplace_id: &str) -> Order {
        let mut o = Order::new(self.id.clone(), iso(self.purchase), iso(self.updated), self.status);
        let (shipped, unshipped) = self.shipped_items();
        o.seller_order_id = Some(self.seller_order_id.clone());
        o.fulfillment_channel = Some(self.channel);
        o.sales_channel = Some("Amazon.com".to_owned());
        o.ship_service_level = Some("Std US D2D Dom".to_owned());
        o.order_total = Some(Box::new(Money {
            currency_code: Some("USD".to_owned()),
            amount: Some(self.amount()),
        }));
        o.number_of_items_shipped = Some(shipped);
        o.number_of_items_unshipped = Some(unshipped);
        o.payment_method = Some(order::PaymentMethod::Other);
        o.marketplace_id = Some(marketplace_id.to_owned());
        o.order_type = Some(order::OrderType::StandardOrder);
        o.is_business_order = Some(self.is_business);
        o.is_prime = Some(self.is_prime);
        o.is_premium_order = Some(false);
        o.is_global_express_enabled = Some(false);
        o.is_replacement_order = Some(false);
        o.is_sold_by_ab = Some(false);
        o
    }
}

trait NanosZero {
    fn with_nanosecond_zero(self) -> Self;
}

impl NanosZero for DateTime<Utc> {
    /// Dates go out at whole seconds; keeping them whole inside means a client that
    /// round-trips a date as a filter selects exactly what it saw.
    fn with_nanosecond_zero(self) -> Self {
        chrono::Timelike::with_nanosecond(&self, 0).unwrap_or(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn anchor() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, 1, 0, 0, 0).single().expect("valid date")
    }

    #[test]
    fn orders_are_deterministic_and_independent_of_the_count() {
        let a = generate_orders(42, "acct-1", 10, anchor(), 200);
        let b = generate_orders(42, "acct-1", 500, anchor(), 200);
        assert_eq!(a[..], b[..10]);
        assert_ne!(generate_orders(43, "acct-1", 1, anchor(), 200)[0].id, a[0].id);
        assert_ne!(generate_orders(42, "acct-2", 1, anchor(), 200)[0].id, a[0].id);
    }

    #[test]
    fn orders_fall_in_the_spread_before_the_anchor_and_update_after_purchase() {
        for o in generate_orders(7, "acct-1", 500, anchor(), 20) {
            assert!(
                o.purchase < anchor() && o.purchase >= anchor() - ChronoDuration::days(ORDER_SPREAD_DAYS),
                "{o:?}"
            );
            assert!(o.updated >= o.purchase && o.updated <= anchor(), "{o:?}");
            assert!(o.sku.as_str() <= "SKU-00020");
        }
    }

    #[test]
    fn the_model_speaks_sp_api_field_names() {
        let o = generate_order(1, "acct-1", 0, anchor(), 5);
        let json = serde_json::to_value(o.to_model("ATVPDKIKX0DER")).expect("serializes");
        assert_eq!(json["AmazonOrderId"], serde_json::Value::String(o.id.clone()));
        assert_eq!(json["OrderTotal"]["Amount"], serde_json::Value::String(o.amount()));
        assert_eq!(json["MarketplaceId"], "ATVPDKIKX0DER");
    }
}
