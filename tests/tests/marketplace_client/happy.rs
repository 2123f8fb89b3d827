//! Every operation's happy path against seeded simulator accounts.
use std::collections::HashSet;

use drover_tests::sim::REPORT_COLUMNS;
use drover_worker::marketplace::{CallError, DeleteOutcome, OrdersQuery};

use super::*;

#[tokio::test]
async fn get_orders_returns_a_page_of_the_accounts_orders_in_sp_api_shape() -> TestResult {
    let env = env().await?;
    let page = env
        .client
        .get_orders(
            &env.ctx("acct-1"),
            &OrdersQuery {
                marketplace_ids: us(),
                created_after: Some(anchor() - chrono::Duration::days(90)),
                max_results: Some(10),
                ..OrdersQuery::default()
            },
        )
        .await?;
    assert_eq!(page.orders.len(), 10);
    assert!(page.next_token.is_some(), "500 orders do not fit in one page of 10");
    assert!(page.orders.iter().all(|o| !o.amazon_order_id.is_empty()));
    Ok(())
}

#[tokio::test]
async fn pagination_with_next_token_reaches_every_order_exactly_once() -> TestResult {
    let env = env().await?;
    let ctx = env.ctx("acct-2");
    let mut query = OrdersQuery {
        marketplace_ids: us(),
        created_after: Some(anchor() - chrono::Duration::days(365)),
        max_results: Some(100),
        ..OrdersQuery::default()
    };
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let page = env.client.get_orders(&ctx, &query).await?;
        pages += 1;
        seen.extend(page.orders.into_iter().map(|o| o.amazon_order_id));
        match page.next_token {
            Some(token) => query.next_token = Some(token),
            None => break,
        }
        assert!(pages < 100, "pagination does not end");
    }
    let unique: HashSet<_> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "an order came back twice");
    let expected: HashSet<_> = env
        .sim
        .admin()
        .orders("acct-2")
        .await?
        .into_iter()
        .map(|o| o.amazon_order_id)
        .collect();
    assert_eq!(unique, expected);
    assert_eq!(pages, expected.len().div_ceil(100));
    assert_eq!(env.op_stats("acct-2", Operation::GetOrders).await?.calls, pages as u64);
    Ok(())
}

#[tokio::test]
async fn listings_get_finds_a_sku_and_answers_none_for_a_missing_one() -> TestResult {
    let env = env().await?;
    let ctx = env.ctx("acct-1");
    let item = env.client.get_listings_item(&ctx, "acct-1", &sku("SKU-00001"), &us()).await?;
    let item = item.expect("SKU-00001 is listed");
    assert_eq!(item.sku, "SKU-00001");
    assert!(item.summaries.is_some_and(|s| !s.is_empty()));
    let missing = env.client.get_listings_item(&ctx, "acct-1", &sku("NO-SUCH-SKU"), &us()).await?;
    assert!(missing.is_none());
    Ok(())
}

#[tokio::test]
async fn delete_removes_a_listed_sku_and_reports_absent_for_a_missing_one() -> TestResult {
    let env = env().await?;
    let ctx = env.ctx("acct-1");
    let first = env.client.delete_listings_item(&ctx, "acct-1", &sku("SKU-00002"), &us()).await?;
    assert_eq!(first, DeleteOutcome::Deleted);
    let again = env.client.delete_listings_item(&ctx, "acct-1", &sku("SKU-00002"), &us()).await?;
    assert_eq!(again, DeleteOutcome::Absent);
    assert!(!env.sim.admin().skus("acct-1").await?.contains(&"SKU-00002".to_owned()));
    Ok(())
}

#[tokio::test]
async fn a_sku_with_url_reserved_characters_is_escaped_into_the_path() -> TestResult {
    let env = env().await?;
    env.sim.admin().add_skus("acct-1", &["A B/C#1"]).await?;
    let ctx = env.ctx("acct-1");
    let item = env.client.get_listings_item(&ctx, "acct-1", &sku("A B/C#1"), &us()).await?;
    assert_eq!(item.map(|i| i.sku), Some("A B/C#1".to_owned()));
    Ok(())
}

#[tokio::test]
async fn report_flow_creates_polls_fetches_and_gunzips_the_document() -> TestResult {
    let env = env().await?;
    let doc = done_document(&env, &env.ctx("acct-1")).await?;
    let bytes = env.client.download_document(&doc).await?;
    let text = String::from_utf8(bytes)?;
    let header = text.lines().next().unwrap_or_default();
    assert_eq!(header.split('\t').collect::<Vec<_>>(), REPORT_COLUMNS.to_vec());
    assert!(text.lines().count() > 1, "ten days before the anchor hold orders");
    Ok(())
}

#[tokio::test]
async fn an_unknown_report_is_not_found() -> TestResult {
    let env = env().await?;
    let err = env.client.get_report(&env.ctx("acct-1"), "999999").await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    Ok(())
}

#[tokio::test]
async fn the_rate_the_marketplace_announces_is_adopted_by_the_shared_limiter() -> TestResult {
    // We start believing getOrders allows 2/s; the simulator's plan (and header) says 10.
    let env = env_with(
        |_| {},
        |r| {
            r.limits.insert(ResOp::GetOrders, RateSpec::new(2.0, 20));
        },
    )
    .await?;
    let ctx = env.ctx("acct-1");
    let before = env.resilience.snapshot(&ctx.account_id).await?;
    assert_eq!(before.operations[&ResOp::GetOrders].rate, 2.0);
    env.client
        .get_orders(
            &ctx,
            &OrdersQuery {
                marketplace_ids: us(),
                created_after: Some(anchor() - chrono::Duration::days(5)),
                ..OrdersQuery::default()
            },
        )
        .await?;
    let after = env.resilience.snapshot(&ctx.account_id).await?;
    let orders = &after.operations[&ResOp::GetOrders];
    assert!(orders.adapted, "{orders:?}");
    assert_eq!(orders.rate, 10.0);
    Ok(())
}

/// L6: a report document past `max_document_bytes` (as sent) or `max_unpacked_bytes`
/// (gunzipped) is a permanent error, not a worker out of memory nor a retry.
#[tokio::test]
async fn a_report_document_over_the_size_caps_is_a_permanent_error() -> TestResult {
    let env = env().await?;
    let doc = done_document(&env, &env.ctx("acct-1")).await?;
    let sent = reqwest::get(&doc.url).await?.bytes().await?.len() as u64;
    let unpacked = env.client.download_document(&doc).await?.len() as u64;
    assert!(sent > 1 && unpacked > sent, "a gzip document: {sent} bytes, {unpacked} unpacked");
    let capped = |tweak: fn(&mut MarketplaceConfig, u64, u64)| {
        let mut config = client_config(&env.sim);
        tweak(&mut config, sent, unpacked);
        MarketplaceClient::new(config, env.resilience.clone()).expect("client")
    };
    for (client, setting) in [
        (capped(|c, sent, _| c.max_document_bytes = sent - 1), "max_document_bytes"),
        (capped(|c, _, unpacked| c.max_unpacked_bytes = unpacked - 1), "max_unpacked_bytes"),
    ] {
        let err = client.download_document(&doc).await.unwrap_err();
        assert!(matches!(&err, CallError::Permanent { .. }), "{setting}: {err:?}");
        assert!(err.to_string().contains(setting), "{setting}: {err}");
    }
    // Exactly at the caps is fine.
    let mut config = client_config(&env.sim);
    (config.max_document_bytes, config.max_unpacked_bytes) = (sent, unpacked);
    let exact = MarketplaceClient::new(config, env.resilience.clone())?;
    assert_eq!(exact.download_document(&doc).await?.len() as u64, unpacked);
    Ok(())
}
