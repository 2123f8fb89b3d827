//! Nothing the client prints — any error variant, its job fate, the client, an account
//! context — holds the client secret, the refresh token or the access token.
use drover::lwa::ExposeSecret;
use drover::resilience::BreakerConfig;
use drover::JobError;
use drover_tests::sim::{QuotaWindow, RateLimitBurst};
use drover_worker::marketplace::CallError;

use super::*;

#[tokio::test]
async fn no_error_variant_nor_the_client_nor_the_context_prints_a_secret() -> TestResult {
    let env = env_with(
        |c| c.retries = 0,
        |r| {
            r.breaker = BreakerConfig {
                min_calls: 2,
                failure_ratio: 0.4,
                ..BreakerConfig::default()
            }
        },
    )
    .await?;
    let ctx = env.ctx("acct-1");
    let mut errors: Vec<CallError> = Vec::new();

    // NotFound, and a token in the cache to look for afterwards.
    errors.push(env.client.get_report(&ctx, "404").await.unwrap_err());
    let access = env
        .resilience
        .access_token(&ctx.account_id, || async { Err::<(SecretString, Duration), _>("must be cached") })
        .await?;
    let access = access.expose_secret().to_owned();
    assert!(access.starts_with("Atza|"));

    // RateLimited (a 429 longer than the in-call budget).
    env.faults(
        "acct-1",
        FaultSpec {
            rate_limit_burst: Some(RateLimitBurst {
                count: 1,
                retry_after_s: 60,
            }),
            ops: Some(vec![Operation::GetOrders]),
            ..FaultSpec::default()
        },
    )
    .await?;
    errors.push(env.client.get_orders(&ctx, &faults_query()).await.unwrap_err());

    // Transient, then BreakerOpen once failures pass the ratio.
    env.faults(
        "acct-1",
        FaultSpec {
            error_rate_5xx: 1.0,
            ops: Some(vec![Operation::GetOrders]),
            ..FaultSpec::default()
        },
    )
    .await?;
    for _ in 0..4 {
        errors.push(env.client.get_orders(&ctx, &faults_query()).await.unwrap_err());
    }
    assert!(errors.iter().any(|e| matches!(e, CallError::Transient { .. })), "{errors:#?}");
    assert!(errors.iter().any(|e| matches!(e, CallError::BreakerOpen { .. })), "{errors:#?}");

    // Cooldown (and the quota RateLimited before it).
    env.faults(
        "acct-1",
        FaultSpec {
            quota_window: Some(QuotaWindow { seconds: 60.0 }),
            ..FaultSpec::default()
        },
    )
    .await?;
    errors.push(env.client.get_report(&ctx, "1").await.unwrap_err());
    errors.push(env.client.get_report(&ctx, "1").await.unwrap_err());
    assert!(errors.iter().any(|e| matches!(e, CallError::Cooldown { .. })), "{errors:#?}");

    // Permanent: refused credentials, and a permanent 4xx.
    env.sim.admin().clear_faults("acct-1").await?;
    let mut revoked = env.ctx("acct-2");
    revoked.credentials.refresh_token = SecretString::from("rt-acct-1-revoked");
    errors.push(env.client.get_orders(&revoked, &faults_query()).await.unwrap_err());
    errors.push(
        env.client
            .get_listings_item(&ctx, "acct-2", &sku("SKU-00001"), &us())
            .await
            .unwrap_err(),
    );
    assert!(
        errors.iter().filter(|e| matches!(e, CallError::Permanent { .. })).count() >= 2,
        "{errors:#?}"
    );

    // Cancelled.
    let cancelled = env.ctx("acct-1");
    cancelled.cancel.cancel();
    errors.push(env.client.get_orders(&cancelled, &faults_query()).await.unwrap_err());
    assert!(errors.iter().any(|e| matches!(e, CallError::Cancelled)));

    let mut printed: Vec<String> = vec![format!("{:?}", env.client), format!("{ctx:?}"), format!("{revoked:?}")];
    for e in errors {
        printed.push(format!("{e} {e:?}"));
        let job = JobError::from(e);
        printed.push(format!("{job} {job:?}"));
    }
    for text in &printed {
        for secret in [CLIENT_SECRET, "rt-acct-1", access.as_str()] {
            assert!(!text.contains(secret), "{text:?} contains a secret");
        }
    }
    Ok(())
}
