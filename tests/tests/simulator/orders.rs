//! Orders v0: pagination, filters, determinism, bad queries.
use super::*;

async fn all_orders(api: &Api, query: &str) -> anyhow::Result<(Vec<Value>, usize, Value)> {
    let mut orders = Vec::new();
    let mut pages = 0;
    let mut path = format!("/orders/v0/orders?MarketplaceIds={US_MARKETPLACE}&{query}");
    loop {
        let response = api.get(&path).await?;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await?;
        pages += 1;
        orders.extend(body["payload"]["Orders"].as_array().cloned().unwrap_or_default());
        match body["payload"]["NextToken"].as_str() {
            Some(token) => path = format!("/orders/v0/orders?MarketplaceIds={US_MARKETPLACE}&NextToken={token}"),
            None => return Ok((orders, pages, body["payload"].clone())),
        }
    }
}

#[tokio::test]
async fn orders_paginate_with_next_token_and_cover_every_order_once() -> TestResult {
    let api = api(SimConfig {
        orders_per_account: 250,
        ..config()
    })
    .await?;
    let (orders, pages, last) = all_orders(&api, "CreatedAfter=2020-01-01T00:00:00Z").await?;
    assert_eq!(pages, 3, "250 orders at the default 100 per page");
    let ids: Vec<String> = orders.iter().map(|o| string(&o["AmazonOrderId"])).collect();
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!((ids.len(), unique.len()), (250, 250));
    let expected: HashSet<String> = api
        .sim
        .admin()
        .orders("acct-1")
        .await?
        .into_iter()
        .map(|o| o.amazon_order_id)
        .collect();
    assert_eq!(unique.into_iter().cloned().collect::<HashSet<_>>(), expected);
    let times: Vec<DateTime<Utc>> = orders.iter().map(|o| time(&o["PurchaseDate"])).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "pages come in purchase-date order");
    assert!(last["CreatedBefore"].is_string());
    assert!(last.get("NextToken").is_none());
    Ok(())
}

#[tokio::test]
async fn orders_filter_by_last_update_and_honour_the_page_size() -> TestResult {
    let api = api(config()).await?;
    let after = anchor() - chrono::Duration::days(20);
    let query = format!("LastUpdatedAfter={}&MaxResultsPerPage=40", after.format("%Y-%m-%dT%H:%M:%SZ"));
    let (orders, pages, last) = all_orders(&api, &query).await?;
    let expected = api
        .sim
        .admin()
        .orders("acct-1")
        .await?
        .into_iter()
        .filter(|o| o.last_update_date.parse::<DateTime<Utc>>().is_ok_and(|t| t >= after))
        .count();
    assert!(expected > 0);
    assert_eq!(orders.len(), expected);
    assert_eq!(pages, expected.div_ceil(40));
    assert!(orders.iter().all(|o| time(&o["LastUpdateDate"]) >= after));
    assert!(last["LastUpdatedBefore"].is_string());
    Ok(())
}

#[tokio::test]
async fn new_and_updated_orders_show_up_after_the_last_updated_before_cursor() -> TestResult {
    let api = api(SimConfig {
        orders_per_account: 50,
        ..config()
    })
    .await?;
    let (_, _, last) = all_orders(&api, "LastUpdatedAfter=2020-01-01T00:00:00Z").await?;
    let cursor = string(&last["LastUpdatedBefore"]);
    assert_eq!(api.sim.admin().change_orders("acct-1", OrderChange { new: 3, touch: 2 }).await?, 53);
    let (orders, _, _) = all_orders(&api, &format!("LastUpdatedAfter={cursor}")).await?;
    assert_eq!(orders.len(), 5, "3 new and 2 updated orders: {orders:#?}");
    assert!(orders.iter().filter(|o| o["OrderStatus"] == "Pending").count() >= 3);
    Ok(())
}

#[tokio::test]
async fn the_same_seed_generates_the_same_orders_and_another_seed_does_not() -> TestResult {
    let a = sim::spawn(config()).await?;
    let b = sim::spawn(config()).await?;
    let c = sim::spawn(SimConfig { seed: 7, ..config() }).await?;
    let (oa, ob, oc) = (
        a.admin().orders("acct-2").await?,
        b.admin().orders("acct-2").await?,
        c.admin().orders("acct-2").await?,
    );
    assert_eq!(oa.len(), 500);
    assert_eq!(oa, ob);
    assert_ne!(oa, oc);
    assert!(oa.iter().all(|o| o
        .purchase_date
        .parse::<DateTime<Utc>>()
        .is_ok_and(|t| t < anchor() && t >= anchor() - chrono::Duration::days(60))));
    Ok(())
}

#[tokio::test]
async fn bad_order_queries_get_sp_api_400_bodies() -> TestResult {
    let api = api(config()).await?;
    for query in [
        format!("MarketplaceIds={US_MARKETPLACE}"),
        format!("MarketplaceIds={US_MARKETPLACE}&CreatedAfter=yesterday"),
        format!("MarketplaceIds={US_MARKETPLACE}&CreatedAfter=2020-01-01&MaxResultsPerPage=0"),
        format!("MarketplaceIds={US_MARKETPLACE}&NextToken=not-a-token"),
        "CreatedAfter=2020-01-01".to_owned(),
    ] {
        let response = api.get(&format!("/orders/v0/orders?{query}")).await?;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{query}");
        let body: Value = response.json().await?;
        assert_eq!(error_code(&body), "InvalidInput", "{query}");
        assert!(!string(&body["errors"][0]["message"]).is_empty());
    }
    Ok(())
}
