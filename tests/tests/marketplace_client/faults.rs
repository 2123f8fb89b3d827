//! The marketplace failing in the ways SP-API does, and what the client makes of it.
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use drover::resilience::BreakerConfig;
use drover::JobError;
use drover_tests::sim::{Burst5xx, QuotaWindow, RateLimitBurst};
use drover_worker::marketplace::CallError;

use super::*;

/// A fault spec: the next getOrders call answers 429, asking for `retry_after_s`.
fn one_429_on_get_orders(retry_after_s: u64) -> FaultSpec {
    FaultSpec {
        rate_limit_burst: Some(RateLimitBurst { count: 1, retry_after_s }),
        ops: Some(vec![Operation::GetOrders]),
        ..FaultSpec::default()
    }
}

#[tokio::test]
async fn a_5xx_burst_shorter_than_the_retries_is_absorbed_in_the_call() -> TestResult {
    let env = env().await?;
    env.faults(
        "acct-1",
        FaultSpec {
            burst_5xx: Some(Burst5xx { count: 2, status: None }),
            ..FaultSpec::default()
        },
    )
    .await?;
    let page = env.client.get_orders(&env.ctx("acct-1"), &faults_query()).await?;
    assert_eq!(page.orders.len(), 5);
    let stats = env.op_stats("acct-1", Operation::GetOrders).await?;
    assert_eq!((stats.calls, stats.server_errors, stats.accepted), (3, 2, 1));
    Ok(())
}

#[tokio::test]
async fn only_5xx_answers_end_transient_after_retries_plus_one_calls() -> TestResult {
    let env = env().await?;
    env.faults(
        "acct-1",
        FaultSpec {
            error_rate_5xx: 1.0,
            ..FaultSpec::default()
        },
    )
    .await?;
    let err = env.client.get_orders(&env.ctx("acct-1"), &faults_query()).await.unwrap_err();
    assert!(
        matches!(&err, CallError::Transient { op: "getOrders", reason } if reason.starts_with("50")),
        "{err:?}"
    );
    assert!(matches!(JobError::from(err), JobError::Transient(_)));
    assert_eq!(env.op_stats("acct-1", Operation::GetOrders).await?.calls, 3);
    Ok(())
}

#[tokio::test]
async fn a_429_with_a_short_retry_after_is_waited_out_and_the_call_succeeds() -> TestResult {
    let env = env().await?;
    env.faults("acct-1", one_429_on_get_orders(1)).await?;
    let started = std::time::Instant::now();
    env.client.get_orders(&env.ctx("acct-1"), &faults_query()).await?;
    assert!(started.elapsed() >= Duration::from_secs(1), "Retry-After was not honoured");
    let stats = env.op_stats("acct-1", Operation::GetOrders).await?;
    assert_eq!((stats.calls, stats.rate_limited, stats.accepted), (2, 1, 1));
    Ok(())
}

#[tokio::test]
async fn a_429_with_a_long_retry_after_returns_rate_limited_for_a_snooze() -> TestResult {
    let env = env().await?;
    env.faults("acct-1", one_429_on_get_orders(30)).await?;
    let err = env.client.get_orders(&env.ctx("acct-1"), &faults_query()).await.unwrap_err();
    assert_eq!(
        err,
        CallError::RateLimited {
            op: "getOrders",
            retry_after: Duration::from_secs(30),
            quota: false
        }
    );
    assert!(matches!(JobError::from(err), JobError::RateLimited { retry_after, .. } if retry_after == Duration::from_secs(30)));
    assert_eq!(env.op_stats("acct-1", Operation::GetOrders).await?.calls, 1);
    Ok(())
}

/// Found by the audits of 2026-12-05: a 429 whose `Retry-After` was within `retry_max`
/// (5 s) was slept in the call even when the run would have parked for a limiter wait
/// that long (`jobs.park_after_ms`, the limiter's `max_wait`), holding the worker slot
/// other accounts' jobs wait for.
#[tokio::test]
async fn a_429_longer_than_the_park_threshold_is_not_slept_in_the_call_and_holds_the_limiter() -> TestResult {
    let env = env_with(|_| {}, |r| r.max_wait = Duration::from_millis(500)).await?;
    env.faults(
        "acct-1",
        // within the in-call budget (`retry_max` 2 s), past the park threshold
        one_429_on_get_orders(2),
    )
    .await?;
    let ctx = env.ctx("acct-1");
    // (slept in the call, it would have been sent again and succeeded)
    let err = env.client.get_orders(&ctx, &faults_query()).await.unwrap_err();
    assert_eq!(
        err,
        CallError::RateLimited {
            op: "getOrders",
            retry_after: Duration::from_secs(2),
            quota: false
        }
    );
    assert_eq!(env.op_stats("acct-1", Operation::GetOrders).await?.calls, 1);
    // The shared limiter heard of it: a call right after is refused before it is sent,
    // naming about the rest of the two seconds.
    let next = env.client.get_orders(&ctx, &faults_query()).await.unwrap_err();
    assert!(
        matches!(next, CallError::RateLimited { retry_after, quota: false, .. } if retry_after > Duration::from_millis(500)),
        "{next:?}"
    );
    assert_eq!(env.op_stats("acct-1", Operation::GetOrders).await?.calls, 1, "not sent");
    Ok(())
}

#[tokio::test]
async fn a_quota_429_on_create_report_enters_the_account_cooldown_and_the_next_call_never_leaves() -> TestResult {
    let env = env().await?;
    env.faults(
        "acct-1",
        FaultSpec {
            quota_window: Some(QuotaWindow { seconds: 60.0 }),
            ..FaultSpec::default()
        },
    )
    .await?;
    let ctx = env.ctx("acct-1");
    let marketplaces = us();
    let create = || {
        env.client.create_report(
            &ctx,
            "GET_FLAT_FILE_ALL_ORDERS_DATA_BY_ORDER_DATE_GENERAL",
            anchor() - chrono::Duration::days(3),
            anchor(),
            &marketplaces,
        )
    };
    let err = create().await.unwrap_err();
    assert!(
        matches!(
            err,
            CallError::RateLimited {
                op: "createReport",
                quota: true,
                ..
            }
        ),
        "{err:?}"
    );
    let cooldown = env.resilience.cooldown(&ctx.account_id).await?.expect("cooldown entered");
    assert!(cooldown.until > Utc::now());
    let second = create().await.unwrap_err();
    assert!(
        matches!(&second, CallError::Cooldown { until, .. } if *until == cooldown.until),
        "{second:?}"
    );
    // The other report operations wait it out too, without reaching the marketplace.
    let poll = env.client.get_report(&ctx, "1").await.unwrap_err();
    assert!(matches!(poll, CallError::Cooldown { .. }), "{poll:?}");
    assert!(matches!(JobError::from(second), JobError::RateLimited { retry_after, .. } if retry_after > Duration::from_secs(60)));
    assert_eq!(env.op_stats("acct-1", Operation::CreateReport).await?.calls, 1);
    assert_eq!(env.op_stats("acct-1", Operation::GetReport).await?.calls, 0);
    Ok(())
}

#[tokio::test]
async fn an_answer_slower_than_the_timeout_is_transient() -> TestResult {
    let env = env_with(
        |c| {
            c.timeout_ms = 200;
            c.retries = 1;
        },
        |_| {},
    )
    .await?;
    env.faults(
        "acct-1",
        FaultSpec {
            latency_ms: 1_000,
            ops: Some(vec![Operation::GetOrders]),
            ..FaultSpec::default()
        },
    )
    .await?;
    let err = env.client.get_orders(&env.ctx("acct-1"), &faults_query()).await.unwrap_err();
    assert!(
        matches!(&err, CallError::Transient { reason, .. } if reason.contains("timed out")),
        "{err:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_permanent_400_sku_fails_permanently_on_the_first_call() -> TestResult {
    let env = env().await?;
    env.faults(
        "acct-1",
        FaultSpec {
            permanent_400_skus: vec!["SKU-00003".into()],
            ..FaultSpec::default()
        },
    )
    .await?;
    let ctx = env.ctx("acct-1");
    let err = env
        .client
        .delete_listings_item(&ctx, "acct-1", &sku("SKU-00003"), &us())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, CallError::Permanent { op: "deleteListingsItem", status: 400, reason } if reason.starts_with("InvalidInput:")),
        "{err:?}"
    );
    assert!(matches!(JobError::from(err), JobError::Permanent(_)));
    assert_eq!(env.op_stats("acct-1", Operation::DeleteListingsItem).await?.calls, 1);
    Ok(())
}

#[tokio::test]
async fn a_connection_reset_is_retried_like_a_5xx() -> TestResult {
    let env = env_with(|c| c.retries = 1, |_| {}).await?;
    env.faults(
        "acct-1",
        FaultSpec {
            reset_rate: 1.0,
            ops: Some(vec![Operation::GetOrders]),
            ..FaultSpec::default()
        },
    )
    .await?;
    let err = env.client.get_orders(&env.ctx("acct-1"), &faults_query()).await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert_eq!(env.op_stats("acct-1", Operation::GetOrders).await?.resets, 2);
    Ok(())
}

/// A marketplace whose getOrders answers 200 with `answer`'s body (what the simulator
/// cannot be told to send), over real HTTP, counting its calls.
async fn orders_host(answer: fn() -> axum::body::Body) -> anyhow::Result<(SocketAddr, Arc<AtomicUsize>, tokio::task::JoinHandle<()>)> {
    use axum::routing::get;
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let app = axum::Router::new().route(
        "/orders/v0/orders",
        get(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async move { ([("content-type", "application/json")], answer()) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((addr, hits, task))
}

/// A client whose tokens come from the simulator's LWA and whose orders from `host`,
/// trying `retries` more times.
async fn env_on_host(host: SocketAddr, retries: u32) -> anyhow::Result<Env> {
    env_with(
        |c| {
            c.token_url = format!("{}/auth/o2/token", c.base_url);
            c.base_url = format!("http://{host}");
            c.retries = retries;
        },
        |_| {},
    )
    .await
}

#[tokio::test]
async fn a_2xx_with_a_malformed_json_body_is_transient() -> TestResult {
    let (addr, hits, server) = orders_host(|| r#"{"payload": {"Orders": [{"AmazonOrderId": "#.into()).await?;
    let env = env_on_host(addr, 1).await?;
    let err = env.client.get_orders(&env.ctx("acct-1"), &faults_query()).await.unwrap_err();
    assert!(
        matches!(&err, CallError::Transient { op: "getOrders", reason } if reason.contains("unreadable 200 answer")),
        "{err:?}"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 2, "one call and one retry");
    server.abort();
    Ok(())
}

#[tokio::test]
async fn an_open_breaker_refuses_calls_without_reaching_the_marketplace() -> TestResult {
    let env = env_with(
        |c| c.retries = 1,
        |r| {
            r.breaker = BreakerConfig {
                min_calls: 2,
                failure_ratio: 0.5,
                ..BreakerConfig::default()
            }
        },
    )
    .await?;
    env.faults(
        "acct-1",
        FaultSpec {
            error_rate_5xx: 1.0,
            ..FaultSpec::default()
        },
    )
    .await?;
    let ctx = env.ctx("acct-1");
    let first = env.client.get_orders(&ctx, &faults_query()).await.unwrap_err();
    assert!(first.is_transient(), "{first:?}");
    let second = env.client.get_orders(&ctx, &faults_query()).await.unwrap_err();
    assert!(matches!(second, CallError::BreakerOpen { op: "getOrders", .. }), "{second:?}");
    assert!(matches!(JobError::from(second), JobError::RateLimited { retry_after, .. } if retry_after >= Duration::from_secs(1)));
    assert_eq!(env.op_stats("acct-1", Operation::GetOrders).await?.calls, 2);
    // Another operation of the same account has its own circuit.
    assert!(env
        .client
        .get_listings_item(&ctx, "acct-1", &sku("SKU-00001"), &us())
        .await
        .is_err());
    assert_eq!(env.op_stats("acct-1", Operation::GetListingsItem).await?.calls, 2);
    Ok(())
}

/// Found by the fairness audit of 2026-12-06: a caller that won the half-open breaker's
/// probe and then returned before sending it (its access token refused, no limiter slot
/// in time, a cooldown, a cancel) kept the probe's lease for the whole open period, and
/// every other caller of the seller and operation was refused (and its run parked) until
/// it ran out. A probe not sent is handed back: the next caller probes at once.
#[tokio::test]
async fn a_breaker_probe_its_caller_never_sent_goes_to_the_next_caller() -> TestResult {
    let env = env_with(
        |c| c.retries = 0,
        |r| {
            r.breaker = BreakerConfig {
                min_calls: 2,
                failure_ratio: 0.5,
                open_for: Duration::from_secs(1),
                ..BreakerConfig::default()
            }
        },
    )
    .await?;
    env.faults(
        "acct-1",
        FaultSpec {
            error_rate_5xx: 1.0,
            ..FaultSpec::default()
        },
    )
    .await?;
    let ctx = env.ctx("acct-1");
    for _ in 0..2 {
        assert!(env.client.get_orders(&ctx, &faults_query()).await.unwrap_err().is_transient());
    }
    env.faults("acct-1", FaultSpec::default()).await?;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // Another account on the same seller's limits, whose refresh token is refused: it
    // wins the probe and fails before sending it.
    let mut refused = env.ctx("acct-1");
    refused.account_id = AccountId::parse("acct-other").unwrap();
    refused.credentials.refresh_token = SecretString::from("not-a-token".to_owned());
    let err = env.client.get_orders(&refused, &faults_query()).await.unwrap_err();
    assert!(!matches!(err, CallError::BreakerOpen { .. }), "it won the probe: {err:?}");
    let page = env.client.get_orders(&ctx, &faults_query()).await;
    assert!(page.is_ok(), "the next caller probes at once: {:?}", page.err());
    Ok(())
}

#[tokio::test]
async fn cancelling_the_job_ends_a_retry_after_wait_at_once() -> TestResult {
    let env = env().await?;
    env.faults("acct-1", one_429_on_get_orders(2)).await?;
    let ctx = env.ctx("acct-1");
    let cancel = ctx.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        cancel.cancel();
    });
    let started = std::time::Instant::now();
    let err = env.client.get_orders(&ctx, &faults_query()).await.unwrap_err();
    assert_eq!(err, CallError::Cancelled);
    assert!(started.elapsed() < Duration::from_millis(1_500), "waited {:?}", started.elapsed());
    assert_eq!(env.op_stats("acct-1", Operation::GetOrders).await?.calls, 1);
    Ok(())
}

/// Found by the second audits of 2026-12-05 (a known limit until now): a call that
/// found its rate-limit store (Redis) down failed as transient, so a cleanup recorded
/// each SKU failed in turn and its job used an attempt (a long outage took it to dead).
/// A store that cannot be reached now stops the call unsent as `Interrupted` — the run
/// stops and its job runs again without using an attempt — whichever guard meets it
/// first: the breaker of getOrders and deleteListingsItem, the quota cooldown of
/// createReport. The client's store is on the connection the worker uses (dialled
/// afresh, a few hundred ms a try).
#[tokio::test]
async fn a_call_whose_rate_limit_store_cannot_be_reached_is_interrupted_unsent() -> TestResult {
    let mut env = env().await?;
    let conn = drover::redis_conn::RedisSource::new(&env.redis.url())?.lazy(drover::redis_conn::Timeouts::default())?;
    let resilience = Resilience::new(conn, "t", resilience_config(), &drover::crypto::EncryptionKey::dev());
    let client = MarketplaceClient::new(client_config(&env.sim), resilience)?;
    env.redis.kill();
    let ctx = env.ctx("acct-1");
    let marketplaces = us();
    let ends = [
        client.get_orders(&ctx, &faults_query()).await.map(|_| ()),
        client
            .delete_listings_item(&ctx, "acct-1", &sku("SKU-00003"), &marketplaces)
            .await
            .map(|_| ()),
        client
            .create_report(
                &ctx,
                "GET_FLAT_FILE_ALL_ORDERS_DATA_BY_ORDER_DATE_GENERAL",
                anchor() - chrono::Duration::days(3),
                anchor(),
                &marketplaces,
            )
            .await
            .map(|_| ()),
    ];
    for end in ends {
        let err = end.expect_err("no call succeeds without its store");
        assert!(
            matches!(&err, CallError::Interrupted { reason, .. } if reason.contains("rate-limit store")),
            "{err:?}"
        );
        // Redis's own words stay in the log.
        let text = err.to_string();
        assert!(!text.contains("refused") && !text.contains("os error"), "{text}");
        assert!(matches!(JobError::from(err), JobError::Unavailable { .. }));
    }
    for op in [Operation::GetOrders, Operation::DeleteListingsItem, Operation::CreateReport] {
        assert_eq!(env.op_stats("acct-1", op).await?.calls, 0, "{op:?} went out without its slot");
    }
    assert_eq!(env.token_grants("acct-1").await?, 0, "no token was asked for either");
    Ok(())
}

/// Found by the worker-resilience audit of 2026-12-07 (second): a report download
/// answered 429 was read as a 5xx — quick tries with its `Retry-After` ignored, then a
/// transient failure that used an attempt. It is waited out in the call when short (as an
/// API call's 429), and a long one snoozes the run without an attempt.
#[tokio::test]
async fn a_429_on_a_report_download_is_waited_out_or_snoozed_as_its_retry_after_says() -> TestResult {
    let env = env().await?;
    let ctx = env.ctx("acct-1");
    let doc = done_document(&env, &ctx).await?;
    let on_download = |retry_after_s| FaultSpec {
        rate_limit_burst: Some(RateLimitBurst { count: 1, retry_after_s }),
        ops: Some(vec![Operation::DownloadReportDocument]),
        ..FaultSpec::default()
    };
    env.faults("acct-1", on_download(1)).await?;
    let started = std::time::Instant::now();
    env.client.download_document(&doc).await?;
    assert!(started.elapsed() >= Duration::from_secs(1), "Retry-After was not honoured");
    env.faults("acct-1", on_download(30)).await?;
    let err = env.client.download_document(&doc).await.unwrap_err();
    assert_eq!(
        err,
        CallError::RateLimited {
            op: "downloadReportDocument",
            retry_after: Duration::from_secs(30),
            quota: false
        }
    );
    assert!(
        matches!(JobError::from(err), JobError::RateLimited { .. }),
        "a snooze, no attempt used"
    );
    let stats = env.op_stats("acct-1", Operation::DownloadReportDocument).await?;
    assert_eq!((stats.calls, stats.rate_limited), (3, 2), "{stats:?}");
    Ok(())
}

/// Found by the worker-resilience audit of 2026-12-07 (fourth): a call's answer was read
/// whole, bounded by the call's timeout only, so a marketplace (or a proxy before it)
/// answering with a huge body made the worker buffer it all — 512 MiB pods were killed,
/// and every run of the worker reclaimed as lost. A call reads at most 16 MiB of an
/// answer; past it the call fails as the service misbehaving.
#[tokio::test]
async fn an_answer_over_the_size_cap_is_refused_unread() -> TestResult {
    // 32 MiB of a JSON string, sent in 1 MiB chunks without a length.
    let (addr, hits, server) = orders_host(|| {
        let chunks = (0..32).map(|i| {
            let mut chunk = vec![b' '; 1024 * 1024];
            if i == 0 {
                chunk[0] = b'"';
            }
            Ok::<_, std::io::Error>(chunk)
        });
        axum::body::Body::from_stream(futures::stream::iter(chunks))
    })
    .await?;
    let env = env_on_host(addr, 0).await?;
    let err = env.client.get_orders(&env.ctx("acct-1"), &faults_query()).await.unwrap_err();
    assert!(
        matches!(&err, CallError::Transient { op: "getOrders", reason } if reason.contains("over 16777216 bytes")),
        "{err:?}"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    server.abort();
    Ok(())
}
