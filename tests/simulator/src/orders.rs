//! Orders v0 `getOrders`: filtered by creation or last update, paginated by an opaque
//! `NextToken`.
//!
//! The token is a keyset cursor (the last order's time and id, plus the query), not an
//! offset, so an order that changes during pagination can leave the window without
//! shifting every later page and making the client miss an order.
use std::sync::Arc;

use amazon_spapi::models::orders_v0::{order::OrderStatus, GetOrdersResponse, OrdersList};
use axum::extract::{Extension, State};
use axum::Json;
use chrono::{DateTime, Timelike, Utc};

use super::catalog::{iso, SimOrder};
use super::error::ApiError;
use super::extract::Params;
use super::gate::Caller;
use super::state::Sim;

const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Created,
    Updated,
}

/// Where a paginated query stands; travels inside `NextToken`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Cursor {
    account: String,
    mode: Mode,
    after_ms: i64,
    before_ms: i64,
    /// The last order returned, as (time in ms, id); `None` on the first page.
    last: Option<(i64, String)>,
    statuses: Vec<String>,
    /// MaxResultsPerPage of the first request, kept for the following pages (a request
    /// with a NextToken may repeat it, else the first page's size applies).
    page_size: usize,
}

impl Cursor {
    fn encode(&self) -> String {
        let mode = match self.mode {
            Mode::Created => "c",
            Mode::Updated => "u",
        };
        let (last_ms, last_id) = self.last.clone().unwrap_or((i64::MIN, String::new()));
        let plain = format!(
            "v1|{}|{mode}|{}|{}|{last_ms}|{last_id}|{}|{}",
            self.account,
            self.after_ms,
            self.before_ms,
            self.statuses.join(","),
            self.page_size
        );
        plain.bytes().map(|b| format!("{b:02x}")).collect()
    }

    fn decode(token: &str) -> Option<Cursor> {
        if !token.len().is_multiple_of(2) || !token.is_ascii() {
            return None;
        }
        let bytes: Option<Vec<u8>> = (0..token.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&token[i..i + 2], 16).ok())
            .collect();
        let plain = String::from_utf8(bytes?).ok()?;
        let fields: Vec<&str> = plain.split('|').collect();
        let [version, account, mode, after, before, last_ms, last_id, statuses, page_size] = fields.as_slice() else {
            return None;
        };
        if *version != "v1" {
            return None;
        }
        let last_ms: i64 = last_ms.parse().ok()?;
        Some(Cursor {
            account: (*account).to_owned(),
            mode: match *mode {
                "c" => Mode::Created,
                "u" => Mode::Updated,
                _ => return None,
            },
            after_ms: after.parse().ok()?,
            before_ms: before.parse().ok()?,
            last: (last_ms != i64::MIN).then(|| (last_ms, (*last_id).to_owned())),
            statuses: statuses.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect(),
            page_size: page_size.parse().ok().filter(|n| (1..=MAX_PAGE).contains(n))?,
        })
    }

    fn key(&self, order: &SimOrder) -> i64 {
        match self.mode {
            Mode::Created => order.purchase.timestamp_millis(),
            Mode::Updated => order.updated.timestamp_millis(),
        }
    }

    fn selects(&self, order: &SimOrder) -> bool {
        let key = self.key(order);
        let after_last = self
            .last
            .as_ref()
            .is_none_or(|(ms, id)| (key, order.id.as_str()) > (*ms, id.as_str()));
        self.after_ms <= key
            && key <= self.before_ms
            && after_last
            && (self.statuses.is_empty() || self.statuses.contains(&status_name(order)))
    }
}

fn status_name(order: &SimOrder) -> String {
    serde_json::to_value(order.status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn parse_status(name: &str) -> Result<String, ApiError> {
    serde_json::from_value::<OrderStatus>(serde_json::Value::String(name.to_owned()))
        .map(|_| name.to_owned())
        .map_err(|_| ApiError::InvalidInput(format!("OrderStatuses contains an unknown status {name:?}")))
}

/// The query of a first page.
fn first_page(account: &str, params: &Params, page_size: usize, now: DateTime<Utc>) -> Result<Cursor, ApiError> {
    let created_after = params.time("CreatedAfter")?;
    let updated_after = params.time("LastUpdatedAfter")?;
    let created_before = params.time("CreatedBefore")?;
    let updated_before = params.time("LastUpdatedBefore")?;
    let (mode, after, before) = match (created_after, updated_after) {
        (Some(_), Some(_)) => {
            return Err(ApiError::InvalidInput(
                "Specify CreatedAfter or LastUpdatedAfter, not both.".to_owned(),
            ))
        }
        (None, None) => {
            return Err(ApiError::InvalidInput(
                "Either CreatedAfter or LastUpdatedAfter is required.".to_owned(),
            ))
        }
        (Some(after), None) => {
            if updated_before.is_some() {
                return Err(ApiError::InvalidInput(
                    "LastUpdatedBefore can only be used with LastUpdatedAfter.".to_owned(),
                ));
            }
            (Mode::Created, after, created_before.unwrap_or(now))
        }
        (None, Some(after)) => {
            if created_before.is_some() {
                return Err(ApiError::InvalidInput(
                    "CreatedBefore can only be used with CreatedAfter.".to_owned(),
                ));
            }
            (Mode::Updated, after, updated_before.unwrap_or(now))
        }
    };
    if after > before {
        return Err(ApiError::InvalidInput(
            "The After date must not be later than the Before date.".to_owned(),
        ));
    }
    let statuses = params
        .list("OrderStatuses")
        .iter()
        .map(|s| parse_status(s))
        .collect::<Result<_, _>>()?;
    Ok(Cursor {
        account: account.to_owned(),
        mode,
        after_ms: after.timestamp_millis(),
        before_ms: before.timestamp_millis(),
        last: None,
        statuses,
        page_size,
    })
}

pub(crate) async fn get_orders(
    State(sim): State<Arc<Sim>>,
    Extension(Caller(account)): Extension<Caller>,
    params: Params,
) -> Result<Json<GetOrdersResponse>, ApiError> {
    let marketplaces = params.list("MarketplaceIds");
    if marketplaces.is_empty() {
        return Err(ApiError::InvalidInput("MarketplaceIds is required.".to_owned()));
    }
    let page_size = params
        .get("MaxResultsPerPage")
        .map(|raw| {
            raw.parse::<usize>().ok().filter(|n| (1..=MAX_PAGE).contains(n)).ok_or_else(|| {
                ApiError::InvalidInput(format!(
                    "MaxResultsPerPage must be a whole number from 1 to {MAX_PAGE}, got {raw:?}"
                ))
            })
        })
        .transpose()?;
    let cursor = match params.get("NextToken") {
        Some(token) => {
            let cursor = Cursor::decode(token)
                .filter(|c| c.account == account)
                .ok_or_else(|| ApiError::InvalidInput("Invalid NextToken.".to_owned()))?;
            Cursor {
                page_size: page_size.unwrap_or(cursor.page_size),
                ..cursor
            }
        }
        // Whole seconds, like every date the simulator hands out: the bound echoed as
        // LastUpdatedBefore is then exactly the bound applied, and a client that uses it
        // as its next LastUpdatedAfter misses nothing.
        None => first_page(
            &account,
            &params,
            page_size.unwrap_or(DEFAULT_PAGE),
            Utc::now().with_nanosecond(0).unwrap_or_else(Utc::now),
        )?,
    };

    let mut inner = sim.lock();
    let acct = inner
        .account_mut(&account)
        .ok_or_else(|| ApiError::Unauthorized("Unknown account.".to_owned()))?;
    let marketplace = acct.marketplace_id.clone();
    let mut page: Vec<&SimOrder> = if marketplaces.contains(&marketplace) {
        acct.orders(sim.anchor).iter().filter(|o| cursor.selects(o)).collect()
    } else {
        Vec::new()
    };
    page.sort_by(|a, b| (cursor.key(a), &a.id).cmp(&(cursor.key(b), &b.id)));
    let more = page.len() > cursor.page_size;
    page.truncate(cursor.page_size);

    let next_token = more.then(|| {
        let last = page.last().map(|o| (cursor.key(o), o.id.clone()));
        Cursor { last, ..cursor.clone() }.encode()
    });
    let mut list = OrdersList::new(page.iter().map(|o| o.to_model(&marketplace)).collect());
    list.next_token = next_token;
    let before = DateTime::<Utc>::from_timestamp_millis(cursor.before_ms).map(iso);
    match cursor.mode {
        Mode::Created => list.created_before = before,
        Mode::Updated => list.last_updated_before = before,
    }
    Ok(Json(GetOrdersResponse {
        payload: Some(Box::new(list)),
        errors: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_tokens_round_trip_and_reject_garbage() {
        let cursor = Cursor {
            account: "acct-1".to_owned(),
            mode: Mode::Updated,
            after_ms: 1_000,
            before_ms: 2_000,
            last: Some((1_500, "111-2222222-3333333".to_owned())),
            statuses: vec!["Shipped".to_owned(), "Pending".to_owned()],
            page_size: 40,
        };
        assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor.clone()));
        let first = Cursor {
            last: None,
            statuses: Vec::new(),
            ..cursor
        };
        assert_eq!(Cursor::decode(&first.encode()), Some(first));
        assert_eq!(Cursor::decode("zz"), None);
        assert_eq!(Cursor::decode("abc"), None);
        assert_eq!(Cursor::decode("é"), None);
    }
}
