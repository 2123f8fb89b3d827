//! Listings Items: existence, deletes and their record, permanent errors.
use super::*;

#[tokio::test]
async fn listings_exist_for_generated_and_added_skus_only() -> TestResult {
    let api = api(SimConfig {
        skus_per_account: 5,
        ..config()
    })
    .await?;
    let response = api.get(&format!("{LISTING}/SKU-00005?marketplaceIds={US_MARKETPLACE}")).await?;
    assert_eq!(response.status(), StatusCode::OK);
    let item: Value = response.json().await?;
    assert_eq!(
        (string(&item["sku"]), string(&item["summaries"][0]["marketplaceId"])),
        ("SKU-00005".to_owned(), US_MARKETPLACE.to_owned())
    );
    assert!(string(&item["summaries"][0]["asin"]).starts_with("B0"));

    assert_eq!(
        api.get(&format!("{LISTING}/SKU-00006?marketplaceIds={US_MARKETPLACE}"))
            .await?
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(api.sim.admin().add_skus("acct-1", &["MY SKU/1"]).await?, 6);
    assert_eq!(
        api.get(&format!("{LISTING}/MY%20SKU%2F1?marketplaceIds={US_MARKETPLACE}"))
            .await?
            .status(),
        StatusCode::OK
    );
    Ok(())
}

#[tokio::test]
async fn deleting_an_absent_sku_is_404_and_is_recorded() -> TestResult {
    let api = api(config()).await?;
    let path = format!("{LISTING}/SKU-00002?marketplaceIds={US_MARKETPLACE}");
    let response = api.delete(&path).await?;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await?;
    assert_eq!(
        (string(&body["sku"]), string(&body["status"])),
        ("SKU-00002".to_owned(), "ACCEPTED".to_owned())
    );
    assert_eq!(string(&body["submissionId"]).len(), 32);

    let response = api.delete(&path).await?;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(&response.json().await?), "NotFound");
    assert_eq!(
        api.delete(&format!("{LISTING}/NEVER-EXISTED?marketplaceIds={US_MARKETPLACE}"))
            .await?
            .status(),
        StatusCode::NOT_FOUND
    );

    let deletes = api.sim.admin().deletes("acct-1").await?;
    let seen: Vec<(&str, u16, DeleteOutcome)> = deletes.iter().map(|d| (d.sku.as_str(), d.status, d.outcome)).collect();
    assert_eq!(
        seen,
        vec![
            ("SKU-00002", 200, DeleteOutcome::Deleted),
            ("SKU-00002", 404, DeleteOutcome::NotFound),
            ("NEVER-EXISTED", 404, DeleteOutcome::NotFound)
        ]
    );
    assert!(!api.sim.admin().skus("acct-1").await?.contains(&"SKU-00002".to_owned()));
    Ok(())
}

#[tokio::test]
async fn permanent_400_skus_answer_400_and_are_recorded_as_rejected() -> TestResult {
    let api = api(config()).await?;
    let faults = FaultSpec {
        permanent_400_skus: vec!["SKU-00003".to_owned()],
        ..FaultSpec::default()
    };
    api.sim.admin().set_faults("acct-1", &faults).await?;
    for _ in 0..2 {
        let response = api.delete(&format!("{LISTING}/SKU-00003?marketplaceIds={US_MARKETPLACE}")).await?;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(error_code(&response.json().await?), "InvalidInput");
    }
    let outcomes: Vec<DeleteOutcome> = api.sim.admin().deletes("acct-1").await?.iter().map(|d| d.outcome).collect();
    assert_eq!(outcomes, vec![DeleteOutcome::Rejected, DeleteOutcome::Rejected]);
    assert!(
        api.sim.admin().skus("acct-1").await?.contains(&"SKU-00003".to_owned()),
        "a rejected delete deletes nothing"
    );
    Ok(())
}

#[tokio::test]
async fn a_listing_path_with_another_sellers_id_is_403_and_missing_marketplace_ids_is_400() -> TestResult {
    let api = api(config()).await?;
    let response = api
        .delete(&format!(
            "/listings/2021-08-01/items/acct-2/SKU-00001?marketplaceIds={US_MARKETPLACE}"
        ))
        .await?;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_code(&response.json().await?), "Unauthorized");
    let response = api.delete(&format!("{LISTING}/SKU-00001")).await?;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&response.json().await?), "InvalidInput");
    Ok(())
}
