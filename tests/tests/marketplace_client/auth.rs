//! Access tokens: the LWA exchange itself, one refresh per account across concurrent
//! calls, a refused token refreshed once, refused credentials failing for good.
use drover::lwa::{self, LwaError};
use drover_worker::marketplace::CallError;
use futures::future::join_all;

use super::*;

fn creds(env: &Env, account: &str) -> LwaCredentials {
    env.ctx(account).credentials
}

#[tokio::test]
async fn lwa_exchange_returns_a_token_for_good_credentials() -> TestResult {
    let env = env().await?;
    let token = lwa::exchange(&reqwest::Client::new(), &env.sim.lwa_url(), &creds(&env, "acct-1")).await?;
    assert_eq!(token.expires_in, Duration::from_secs(3600));
    assert_eq!(env.token_grants("acct-1").await?, 1);
    Ok(())
}

#[tokio::test]
async fn lwa_exchange_names_the_oauth_code_when_credentials_are_refused() -> TestResult {
    let env = env().await?;
    let http = reqwest::Client::new();
    let mut bad_grant = creds(&env, "acct-1");
    bad_grant.refresh_token = SecretString::from("rt-nobody");
    let err = lwa::exchange(&http, &env.sim.lwa_url(), &bad_grant).await.unwrap_err();
    assert!(
        matches!(&err, LwaError::Rejected { status: 400, code } if code == "invalid_grant"),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    let mut bad_secret = creds(&env, "acct-1");
    bad_secret.client_secret = SecretString::from("wrong-secret");
    let err = lwa::exchange(&http, &env.sim.lwa_url(), &bad_secret).await.unwrap_err();
    assert!(
        matches!(&err, LwaError::Rejected { status: 401, code } if code == "invalid_client"),
        "{err:?}"
    );
    assert!(!err.to_string().contains("wrong-secret") && !err.to_string().contains("rt-nobody"));
    Ok(())
}

#[tokio::test]
async fn lwa_exchange_is_unavailable_when_the_service_is_down_or_failing() -> TestResult {
    let env = env().await?;
    let http = reqwest::Client::new();
    let closed = format!("http://127.0.0.1:{}/auth/o2/token", drover_tests::harness::free_port());
    let err = lwa::exchange(&http, &closed, &creds(&env, "acct-1")).await.unwrap_err();
    assert!(matches!(err, LwaError::Unavailable(_)), "{err:?}");
    env.faults(
        "acct-1",
        FaultSpec {
            error_rate_5xx: 1.0,
            ops: Some(vec![Operation::LwaToken]),
            ..FaultSpec::default()
        },
    )
    .await?;
    let err = lwa::exchange(&http, &env.sim.lwa_url(), &creds(&env, "acct-1")).await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    Ok(())
}

/// Found by the worker-resilience audit of 2026-12-07 (second): with the token service
/// down, a call's missing token was a transient failure, and a job used an attempt a
/// second: a sync went dead, a cleanup's SKUs and a backfill's windows failed, within
/// seconds. The call was not sent: the run stops and runs again without an attempt.
#[tokio::test]
async fn a_token_service_outage_stops_the_run_without_using_an_attempt() -> TestResult {
    let env = env().await?;
    env.faults(
        "acct-1",
        FaultSpec {
            error_rate_5xx: 1.0,
            ops: Some(vec![Operation::LwaToken]),
            ..FaultSpec::default()
        },
    )
    .await?;
    let err = env
        .client
        .get_listings_item(&env.ctx("acct-1"), "acct-1", &sku("SKU-00001"), &us())
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::Interrupted { .. }), "{err:?}");
    assert!(
        matches!(drover::JobError::from(err), drover::JobError::Unavailable { .. }),
        "parked without an attempt"
    );
    let stats = env.op_stats("acct-1", Operation::GetListingsItem).await?;
    assert_eq!(stats.calls, 0, "nothing was sent without a token");
    Ok(())
}

#[tokio::test]
async fn fifty_concurrent_calls_for_one_account_make_exactly_one_lwa_call() -> TestResult {
    let env = env().await?;
    let ctx = env.ctx("acct-1");
    let calls = (0..50).map(|i| {
        let (client, ctx) = (env.client.clone(), ctx.clone());
        async move {
            let sku = sku(&format!("SKU-{:05}", i + 1));
            client.get_listings_item(&ctx, "acct-1", &sku, &us()).await
        }
    });
    for result in join_all(calls).await {
        assert!(result?.is_some());
    }
    assert_eq!(env.token_grants("acct-1").await?, 1);
    assert_eq!(env.op_stats("acct-1", Operation::GetListingsItem).await?.accepted, 50);
    Ok(())
}

#[tokio::test]
async fn an_expired_token_gets_a_401_one_refresh_and_then_the_answer() -> TestResult {
    let env = env().await?;
    let ctx = env.ctx("acct-1");
    env.client.get_listings_item(&ctx, "acct-1", &sku("SKU-00001"), &us()).await?;
    assert!(env.sim.admin().expire_tokens("acct-1").await? >= 1);
    let item = env.client.get_listings_item(&ctx, "acct-1", &sku("SKU-00001"), &us()).await?;
    assert!(item.is_some());
    let stats = env.op_stats("acct-1", Operation::GetListingsItem).await?;
    assert_eq!((stats.calls, stats.unauthorized, stats.accepted), (3, 1, 2));
    assert_eq!(env.token_grants("acct-1").await?, 2);
    Ok(())
}

#[tokio::test]
async fn tokens_born_expired_get_one_refresh_then_a_permanent_error() -> TestResult {
    let env = env().await?;
    env.faults(
        "acct-1",
        FaultSpec {
            token_ttl_s: Some(0),
            ..FaultSpec::default()
        },
    )
    .await?;
    let err = env
        .client
        .get_listings_item(&env.ctx("acct-1"), "acct-1", &sku("SKU-00001"), &us())
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::Permanent { status: 401, .. }), "{err:?}");
    let stats = env.op_stats("acct-1", Operation::GetListingsItem).await?;
    assert_eq!((stats.calls, stats.unauthorized), (2, 2));
    Ok(())
}

#[tokio::test]
async fn a_refused_refresh_token_is_permanent_and_never_reaches_the_api() -> TestResult {
    let env = env().await?;
    let mut ctx = env.ctx("acct-1");
    ctx.credentials.refresh_token = SecretString::from("rt-revoked");
    let err = env.client.get_orders(&ctx, &super::faults_query()).await.unwrap_err();
    assert!(
        matches!(&err, CallError::Permanent { status: 400, reason, .. } if reason.contains("invalid_grant")),
        "{err:?}"
    );
    assert_eq!(env.op_stats("acct-1", Operation::GetOrders).await?.calls, 0);
    Ok(())
}

/// Found by the worker-resilience audit of 2026-12-07 (second): the worker took the
/// `x-amzn-RateLimit-Limit` of any answer, a refused token's too. A 401 comes from the
/// marketplace's gate before the seller's usage plan applies (the simulator's carries its
/// default plan), so one refused token set a slow seller's shared limiter to a faster
/// rate than the seller has, for every worker. The rate is learnt from answers the
/// seller's plan applied to only.
#[tokio::test]
async fn a_refused_tokens_answer_leaves_the_sellers_learnt_rate_alone() -> TestResult {
    use drover_tests::sim::{AccountSpec, RateLimit};
    use std::collections::BTreeMap;
    let env = env().await?;
    let plan = BTreeMap::from([(Operation::GetListingsItem, RateLimit::new(1.0, 2))]);
    env.sim
        .admin()
        .register_account(&AccountSpec {
            account_id: "slow-1".into(),
            skus: Some(3),
            rate_limits: plan,
            ..AccountSpec::default()
        })
        .await?;
    let mut ctx = env.ctx("acct-1");
    ctx.account_id = AccountId::parse("slow-1").expect("valid id");
    ctx.limits = AccountId::parse("slow-1").expect("valid id");
    ctx.credentials.refresh_token = SecretString::from(SimConfig::refresh_token_for("slow-1"));
    let rate = || async { anyhow::Ok(env.resilience.snapshot(&ctx.account_id).await?.operations[&ResOp::GetListingsItem].rate) };
    env.client.get_listings_item(&ctx, "slow-1", &sku("SKU-00001"), &us()).await?;
    assert_eq!(rate().await?, 1.0, "the seller's own plan is learnt from its answer");
    env.faults(
        "slow-1",
        FaultSpec {
            token_ttl_s: Some(0),
            ..FaultSpec::default()
        },
    )
    .await?;
    env.sim.admin().expire_tokens("slow-1").await?;
    let err = env
        .client
        .get_listings_item(&ctx, "slow-1", &sku("SKU-00002"), &us())
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::Permanent { status: 401, .. }), "{err:?}");
    assert_eq!(env.op_stats("slow-1", Operation::GetListingsItem).await?.unauthorized, 2);
    assert_eq!(rate().await?, 1.0, "a refused token's answer does not speak for the seller's plan");
    Ok(())
}
