//! Review L3: the worker's marketplace client follows no redirect. A followed 307 would
//! re-POST the refresh token and client secret to wherever the token endpoint points,
//! and carry `x-amz-access-token` (which reqwest keeps across hosts) to any host.
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::*;

/// A server whose every answer is a 307 to `to` followed by the request's own path and
/// query, counting the requests it gets; returns its base URL.
async fn redirector(to: String) -> anyhow::Result<(String, Arc<AtomicUsize>)> {
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let (to, hits) = (to.clone(), counted.clone());
        async move {
            hits.fetch_add(1, Ordering::SeqCst);
            let rest = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
            (axum::http::StatusCode::TEMPORARY_REDIRECT, [("location", format!("{to}{rest}"))])
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((format!("http://{addr}"), hits))
}

#[tokio::test]
async fn the_token_exchange_follows_no_redirect_with_the_refresh_token() -> TestResult {
    let env = env().await?;
    let (base, hits) = redirector(env.sim.base_url().trim_end_matches('/').to_owned()).await?;
    let mut config = client_config(&env.sim);
    config.token_url = format!("{base}{}", reqwest::Url::parse(&env.sim.lwa_url())?.path());
    let client = MarketplaceClient::new(config, env.resilience.clone())?;

    let outcome = client.get_orders(&env.ctx("acct-1"), &faults_query()).await;
    let orders = outcome.as_ref().map(|page| page.orders.len());
    assert!(orders.is_err(), "a redirected token exchange cannot succeed: {orders:?} orders");
    assert!(hits.load(Ordering::SeqCst) >= 1, "the token endpoint was asked");
    assert_eq!(
        env.token_grants("acct-1").await?,
        0,
        "the refresh token was re-posted to the redirect's target"
    );
    assert_eq!(env.op_stats("acct-1", Operation::GetOrders).await?.calls, 0);
    Ok(())
}

#[tokio::test]
async fn an_sp_api_call_follows_no_redirect_with_the_access_token() -> TestResult {
    let env = env().await?;
    let (base, hits) = redirector(env.sim.base_url().trim_end_matches('/').to_owned()).await?;
    let mut config = client_config(&env.sim);
    // The token exchange goes to the marketplace itself; only the calls are redirected.
    config.token_url = env.sim.lwa_url();
    config.base_url = base;
    let client = MarketplaceClient::new(config, env.resilience.clone())?;

    let outcome = client.get_orders(&env.ctx("acct-1"), &faults_query()).await;
    let orders = outcome.as_ref().map(|page| page.orders.len());
    assert!(orders.is_err(), "the redirect was followed: {orders:?} orders");
    assert!(hits.load(Ordering::SeqCst) >= 1, "the call was made");
    assert_eq!(env.token_grants("acct-1").await?, 1, "the client held an access token to carry");
    assert_eq!(
        env.op_stats("acct-1", Operation::GetOrders).await?.calls,
        0,
        "the access token reached the redirect's target"
    );
    Ok(())
}
