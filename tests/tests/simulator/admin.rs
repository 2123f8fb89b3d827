//! The admin API itself.
use super::*;

#[tokio::test]
async fn the_admin_api_rejects_bad_fault_specs_and_unknown_accounts_with_a_message() -> TestResult {
    let sim = sim::spawn(config()).await?;
    let http = reqwest::Client::new();
    let response = http
        .put(sim.url("/_admin/faults/acct-1"))
        .json(&json!({"error_rate_5xx": 2.0}))
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(string(&response.json::<Value>().await?["error"]).contains("error_rate_5xx"));
    let response = http
        .put(sim.url("/_admin/faults/acct-1"))
        .json(&json!({"latency": 5}))
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST, "unknown fields are refused");
    let response = http.put(sim.url("/_admin/faults/nobody")).json(&json!({})).send().await?;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let response = http
        .post(sim.url("/_admin/accounts"))
        .json(&json!({"account_id": "acct-1"}))
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    Ok(())
}

#[tokio::test]
async fn admin_reset_restores_the_initial_state() -> TestResult {
    let api = api(config()).await?;
    api.delete(&format!("{LISTING}/SKU-00001?marketplaceIds={US_MARKETPLACE}")).await?;
    api.sim.admin().register_account(&AccountSpec::new("extra")).await?;
    api.sim
        .admin()
        .set_faults(
            "acct-1",
            &FaultSpec {
                latency_ms: 50,
                ..FaultSpec::default()
            },
        )
        .await?;

    api.sim.admin().reset().await?;
    let accounts: Vec<String> = api.sim.admin().accounts().await?.into_iter().map(|a| a.account_id).collect();
    assert_eq!(accounts, vec!["acct-1", "acct-2", "acct-3"]);
    assert!(api.sim.admin().skus("acct-1").await?.contains(&"SKU-00001".to_owned()));
    assert!(api.sim.admin().faults("acct-1").await?.spec.is_empty());
    let stats = api.sim.admin().stats().await?;
    assert!(stats
        .accounts
        .values()
        .all(|a| a.operations.is_empty() && a.deletes.is_empty() && a.token_grants == 0));
    assert_eq!(
        api.get(&format!("{LISTING}/SKU-00001?marketplaceIds={US_MARKETPLACE}"))
            .await?
            .status(),
        StatusCode::UNAUTHORIZED,
        "tokens do not survive a reset"
    );
    Ok(())
}
