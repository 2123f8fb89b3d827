//! Limiter slots are moments to send: calls keep to the marketplace's plan even when
//! something held them back before they went out.
use drover_tests::sim::RateLimit;
use futures::future::join_all;

use super::*;

/// `op` with a plan of 10 calls a second, burst 5, at the marketplace and in the limiter.
async fn tight_plan(sim_op: Operation, op: ResOp) -> anyhow::Result<Env> {
    let mut sim = SimConfig::fast();
    sim.rate_limits.0.insert(sim_op, RateLimit::new(10.0, 5));
    env_on(
        sim,
        |_| {},
        |r| {
            r.limits.insert(op, RateSpec::new(10.0, 5));
        },
    )
    .await
}

/// A call takes its limiter slot once it holds the access token. Slots taken while
/// another worker's refresh held the token back would all go out together when it
/// ended: more at once than the plan's burst, so the marketplace refuses them. (Seen in
/// CI: a worker SIGKILLed mid-refresh left its lock for its 10 s TTL, and the surviving
/// worker's calls, their slots long past, drew 429s when it expired.)
#[tokio::test]
async fn calls_held_back_by_another_workers_token_refresh_keep_to_the_plan_when_it_ends() -> TestResult {
    const CALLS: usize = 12;
    let env = tight_plan(Operation::GetListingsItem, ResOp::GetListingsItem).await?;
    // Another worker's refresh of acct-1's token, in flight for 1.5 s: its lock.
    let mut redis = redis::Client::open(env.redis.url())?.get_multiplexed_async_connection().await?;
    let ctx = env.ctx("acct-1");
    let lock = format!("{}:lock", env.resilience.token_key(&ctx.account_id, &ctx.credentials));
    let _: () = redis::cmd("SET")
        .arg(&lock)
        .arg("another-worker")
        .arg("PX")
        .arg(1500)
        .query_async(&mut redis)
        .await?;

    let calls = (0..CALLS).map(|i| {
        let (client, ctx) = (env.client.clone(), ctx.clone());
        async move {
            let sku = sku(&format!("SKU-{:05}", i + 1));
            client.get_listings_item(&ctx, "acct-1", &sku, &us()).await
        }
    });
    let results = join_all(calls).await;
    let stats = env.op_stats("acct-1", Operation::GetListingsItem).await?;
    assert_eq!(stats.rate_limited, 0, "calls went out beyond the plan: {stats:?}");
    for result in results {
        assert!(result?.is_some());
    }
    assert_eq!(stats.accepted, CALLS as u64, "{stats:?}");
    assert_eq!(env.token_grants("acct-1").await?, 1);
    Ok(())
}
