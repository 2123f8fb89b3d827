//! Injected faults: 5xx bursts, forced 429s, resets, latency, slow bodies, seeded randomness.
use super::*;

#[tokio::test]
async fn fault_burst_of_5xx_then_recovers() -> TestResult {
    let api = api(config()).await?;
    api.sim
        .admin()
        .set_faults(
            "acct-1",
            &FaultSpec {
                burst_5xx: Some(Burst5xx { count: 3, status: None }),
                ..FaultSpec::default()
            },
        )
        .await?;
    let path = format!("{LISTING}/SKU-00001?marketplaceIds={US_MARKETPLACE}");
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(api.get(&path).await?.status().as_u16());
    }
    assert_eq!(statuses, vec![500, 503, 500, 200]);
    let op = api.sim.admin().stats().await?.op("acct-1", Operation::GetListingsItem);
    assert_eq!((op.calls, op.server_errors, op.accepted), (4, 3, 1));
    assert_eq!(api.sim.admin().faults("acct-1").await?.remaining.burst_5xx, 0);
    Ok(())
}

#[tokio::test]
async fn a_rate_limit_burst_forces_429s_on_the_named_operation_only() -> TestResult {
    let api = api(config()).await?;
    let faults = FaultSpec {
        rate_limit_burst: Some(RateLimitBurst {
            count: 2,
            retry_after_s: 7,
        }),
        ops: Some(vec![Operation::DeleteListingsItem]),
        ..FaultSpec::default()
    };
    api.sim.admin().set_faults("acct-1", &faults).await?;
    assert_eq!(
        api.get(&format!("{LISTING}/SKU-00001?marketplaceIds={US_MARKETPLACE}"))
            .await?
            .status(),
        StatusCode::OK
    );
    let path = format!("{LISTING}/SKU-00001?marketplaceIds={US_MARKETPLACE}");
    for _ in 0..2 {
        let response = api.delete(&path).await?;
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(header(&response, "retry-after").as_deref(), Some("7"));
    }
    assert_eq!(api.delete(&path).await?.status(), StatusCode::OK);
    let outcomes: Vec<DeleteOutcome> = api.sim.admin().deletes("acct-1").await?.iter().map(|d| d.outcome).collect();
    assert_eq!(
        outcomes,
        vec![DeleteOutcome::Throttled, DeleteOutcome::Throttled, DeleteOutcome::Deleted]
    );
    Ok(())
}

#[tokio::test]
async fn a_reset_fault_closes_the_connection_without_an_answer() -> TestResult {
    let api = api(config()).await?;
    api.sim
        .admin()
        .set_faults(
            "acct-1",
            &FaultSpec {
                reset_rate: 1.0,
                ..FaultSpec::default()
            },
        )
        .await?;
    let path = format!("{LISTING}/SKU-00001?marketplaceIds={US_MARKETPLACE}");
    let error = api
        .send(reqwest::Method::DELETE, &path, None)
        .await
        .expect_err("no answer on a reset connection");
    assert!(error.status().is_none() && !error.is_timeout(), "{error:?}");

    api.sim.admin().clear_faults("acct-1").await?;
    assert_eq!(
        api.delete(&path).await?.status(),
        StatusCode::OK,
        "the listing was untouched by the reset call"
    );
    let stats = api.sim.admin().stats().await?;
    assert_eq!(stats.op("acct-1", Operation::DeleteListingsItem).resets, 1);
    let outcomes: Vec<DeleteOutcome> = stats.accounts["acct-1"].deletes.iter().map(|d| d.outcome).collect();
    assert_eq!(outcomes, vec![DeleteOutcome::Reset, DeleteOutcome::Deleted]);
    Ok(())
}

#[tokio::test]
async fn latency_delays_the_answer_and_a_slow_body_trickles_after_the_headers() -> TestResult {
    let api = api(config()).await?;
    let path = format!("{LISTING}/SKU-00001?marketplaceIds={US_MARKETPLACE}");
    api.sim
        .admin()
        .set_faults(
            "acct-1",
            &FaultSpec {
                latency_ms: 300,
                ..FaultSpec::default()
            },
        )
        .await?;
    let started = Instant::now();
    assert_eq!(api.get(&path).await?.status(), StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(300));

    api.sim
        .admin()
        .set_faults(
            "acct-1",
            &FaultSpec {
                slow_body_ms: 600,
                ..FaultSpec::default()
            },
        )
        .await?;
    let started = Instant::now();
    let response = api.get(&path).await?;
    let headers_after = started.elapsed();
    let body: Value = response.json().await?;
    let body_after = started.elapsed();
    assert_eq!(string(&body["sku"]), "SKU-00001", "the trickled body is whole");
    assert!(headers_after < Duration::from_millis(300), "headers came after {headers_after:?}");
    assert!(body_after >= Duration::from_millis(500), "body done after {body_after:?}");
    Ok(())
}

#[tokio::test]
async fn random_5xx_faults_repeat_exactly_for_the_same_seed() -> TestResult {
    async fn statuses(seed: u64) -> anyhow::Result<Vec<u16>> {
        let api = api(SimConfig { seed, ..config() }).await?;
        api.sim
            .admin()
            .set_faults(
                "acct-1",
                &FaultSpec {
                    error_rate_5xx: 0.5,
                    ..FaultSpec::default()
                },
            )
            .await?;
        let mut out = Vec::new();
        for _ in 0..24 {
            out.push(
                api.get(&format!("{LISTING}/SKU-00001?marketplaceIds={US_MARKETPLACE}"))
                    .await?
                    .status()
                    .as_u16(),
            );
        }
        Ok(out)
    }
    let (a, b, c) = (statuses(11).await?, statuses(11).await?, statuses(12).await?);
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert!(a.contains(&200) && a.iter().any(|s| *s >= 500), "{a:?}");
    Ok(())
}
