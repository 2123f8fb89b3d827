//! LWA token exchange and access-token checks.
use super::*;

#[tokio::test]
async fn lwa_grants_a_bearer_token_for_a_demo_account_and_counts_the_grant() -> TestResult {
    let sim = sim::spawn(config()).await?;
    let creds = sim.credentials("acct-2").expect("acct-2 is a demo account");
    let response = reqwest::Client::new()
        .post(sim.lwa_url())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(creds.token_request_body())
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await?;
    assert!(string(&body["access_token"]).starts_with("Atza|"));
    assert_eq!(
        (body["token_type"].as_str(), body["expires_in"].as_u64()),
        (Some("bearer"), Some(3600))
    );
    assert_eq!(string(&body["refresh_token"]), "rt-acct-2");
    assert_eq!(sim.admin().stats().await?.accounts["acct-2"].token_grants, 1);
    Ok(())
}

#[tokio::test]
async fn lwa_answers_invalid_grant_for_an_unknown_refresh_token_and_invalid_client_for_a_wrong_secret() -> TestResult {
    let sim = sim::spawn(config()).await?;
    let http = reqwest::Client::new();
    let mut creds = sim.credentials("acct-1").expect("demo account");
    creds.refresh_token = "rt-nobody".to_owned();
    let response = http
        .post(sim.lwa_url())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(creds.token_request_body())
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(response.json::<Value>().await?["error"], "invalid_grant");

    let mut creds = sim.credentials("acct-1").expect("demo account");
    creds.client_secret = "wrong".to_owned();
    let response = http
        .post(sim.lwa_url())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(creds.token_request_body())
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.json::<Value>().await?["error"], "invalid_client");

    let stats = sim.admin().stats().await?;
    assert_eq!(
        (stats.accounts["acct-1"].token_failures, stats.accounts["acct-1"].token_grants),
        (1, 0)
    );
    assert_eq!(stats.unauthenticated.get(&Operation::LwaToken), Some(&1));
    Ok(())
}

#[tokio::test]
async fn an_expired_token_gets_401() -> TestResult {
    let sim = sim::spawn(config()).await?;
    sim.admin()
        .set_faults(
            "acct-1",
            &FaultSpec {
                token_ttl_s: Some(1),
                ..FaultSpec::default()
            },
        )
        .await?;
    let api = Api {
        token: sim.access_token("acct-1").await?,
        sim,
        http: reqwest::Client::new(),
    };
    assert_eq!(
        api.get(&format!("{LISTING}/SKU-00001?marketplaceIds={US_MARKETPLACE}"))
            .await?
            .status(),
        StatusCode::OK
    );

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let response = api.get(&format!("{LISTING}/SKU-00001?marketplaceIds={US_MARKETPLACE}")).await?;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(&response.json().await?), "Unauthorized");
    let op = api.sim.admin().stats().await?.op("acct-1", Operation::GetListingsItem);
    assert_eq!((op.calls, op.accepted, op.unauthorized), (2, 1, 1));
    Ok(())
}

#[tokio::test]
async fn tokens_expired_through_the_admin_api_get_401_and_a_fresh_token_works() -> TestResult {
    let mut api = api(config()).await?;
    assert_eq!(api.sim.admin().expire_tokens("acct-1").await?, 1);
    let path = format!("{LISTING}/SKU-00001?marketplaceIds={US_MARKETPLACE}");
    assert_eq!(api.get(&path).await?.status(), StatusCode::UNAUTHORIZED);
    api.token = api.sim.access_token("acct-1").await?;
    assert_eq!(api.get(&path).await?.status(), StatusCode::OK);
    Ok(())
}

#[tokio::test]
async fn a_call_without_a_known_token_gets_401_and_counts_as_unauthenticated() -> TestResult {
    let mut api = api(config()).await?;
    api.token = "Atza|made-up".to_owned();
    let response = api
        .get(&format!(
            "/orders/v0/orders?MarketplaceIds={US_MARKETPLACE}&CreatedAfter=2020-01-01"
        ))
        .await?;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(header(&response, "x-amzn-RateLimit-Limit").as_deref(), Some("10"));
    assert_eq!(error_code(&response.json().await?), "Unauthorized");
    assert_eq!(api.sim.admin().stats().await?.unauthenticated.get(&Operation::GetOrders), Some(&1));
    Ok(())
}
