//! Usage plans: 429 with Retry-After, per-account limits.
use super::*;

#[tokio::test]
async fn a_client_that_ignores_the_rate_limit_gets_429_with_retry_after() -> TestResult {
    // The documented SP-API plan: getOrders 0.0167 rps, burst 20.
    let api = api(SimConfig {
        anchor: Some(anchor()),
        orders_per_account: 20,
        ..SimConfig::default()
    })
    .await?;
    let path = format!("/orders/v0/orders?MarketplaceIds={US_MARKETPLACE}&CreatedAfter=2020-01-01");
    for _ in 0..20 {
        let response = api.get(&path).await?;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(header(&response, "x-amzn-RateLimit-Limit").as_deref(), Some("0.0167"));
    }
    let response = api.get(&path).await?;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&response, "retry-after").as_deref(), Some("60"));
    assert_eq!(header(&response, "x-amzn-RateLimit-Limit").as_deref(), Some("0.0167"));
    assert_eq!(error_code(&response.json().await?), "QuotaExceeded");

    let op = api.sim.admin().stats().await?.op("acct-1", Operation::GetOrders);
    assert_eq!((op.calls, op.accepted, op.rate_limited), (21, 20, 1));
    assert!(op.max_rps_1s >= 10, "21 calls in a burst: {op:?}");
    Ok(())
}

#[tokio::test]
async fn limits_registered_for_an_account_apply_to_it_alone_and_refill_at_their_rate() -> TestResult {
    let sim = sim::spawn(config()).await?;
    let spec = AccountSpec {
        rate_limits: [(Operation::GetListingsItem, RateLimit::new(1.0, 2))].into_iter().collect(),
        extra_skus: vec!["X-1".to_owned()],
        skus: Some(0),
        ..AccountSpec::new("slow-seller")
    };
    let info = sim.admin().register_account(&spec).await?;
    assert_eq!(
        (info.refresh_token.as_str(), info.skus, info.seller_id.as_str()),
        ("rt-slow-seller", 1, "slow-seller")
    );
    let creds = drover_tests::sim::Credentials {
        client_id: sim.config().client_id.clone(),
        client_secret: sim.config().client_secret.clone(),
        refresh_token: info.refresh_token.clone(),
    };
    let http = reqwest::Client::new();
    let token: Value = http
        .post(sim.lwa_url())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(creds.token_request_body())
        .send()
        .await?
        .json()
        .await?;
    let get = || {
        http.get(sim.url(&format!(
            "/listings/2021-08-01/items/slow-seller/X-1?marketplaceIds={US_MARKETPLACE}"
        )))
        .header("x-amz-access-token", string(&token["access_token"]))
        .send()
    };
    assert_eq!(get().await?.status(), StatusCode::OK);
    assert_eq!(get().await?.status(), StatusCode::OK);
    let limited = get().await?;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&limited, "x-amzn-RateLimit-Limit").as_deref(), Some("1"));
    assert_eq!(header(&limited, "retry-after").as_deref(), Some("1"));
    let other = reqwest::Client::new()
        .get(sim.url(&format!("{LISTING}/SKU-00001?marketplaceIds={US_MARKETPLACE}")))
        .header("x-amz-access-token", sim.access_token("acct-1").await?)
        .send()
        .await?;
    assert_eq!(other.status(), StatusCode::OK);
    assert_eq!(
        header(&other, "x-amzn-RateLimit-Limit").as_deref(),
        Some("50"),
        "acct-1 keeps the fast profile's plan"
    );
    tokio::time::sleep(Duration::from_millis(1050)).await;
    assert_eq!(get().await?.status(), StatusCode::OK, "a token is back after 1 s");
    Ok(())
}
