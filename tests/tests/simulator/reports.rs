//! Reports: the create/poll/document/download flow, endings, malformed rows, quota windows.
use super::*;

#[tokio::test]
async fn report_flow_from_create_to_gzip_download_yields_the_orders_in_the_window() -> TestResult {
    let api = api(config()).await?;
    let (start, end) = (anchor() - chrono::Duration::days(10), anchor() - chrono::Duration::days(5));
    let report_id = api.create_report(start, end).await?;

    let first = api.report(&report_id).await?;
    assert_eq!(string(&first["processingStatus"]), "IN_QUEUE");
    assert!(first.get("reportDocumentId").is_none());
    let done = api.report(&report_id).await?;
    assert_eq!(string(&done["processingStatus"]), "DONE", "done on the second poll by default");
    assert_eq!(string(&done["reportType"]), "GET_FLAT_FILE_ALL_ORDERS_DATA_BY_ORDER_DATE_GENERAL");
    let document_id = string(&done["reportDocumentId"]);

    let response = api.get(&format!("/reports/2021-06-30/documents/{document_id}")).await?;
    assert_eq!(response.status(), StatusCode::OK);
    let document: Value = response.json().await?;
    assert_eq!(string(&document["compressionAlgorithm"]), "GZIP");
    let url = string(&document["url"]);
    assert!(url.starts_with(api.sim.base_url()), "{url}");

    // Like a pre-signed S3 URL: no access token needed.
    let download = reqwest::get(&url).await?;
    assert_eq!(download.status(), StatusCode::OK);
    assert!(download.headers().get("content-encoding").is_none());
    let text = gunzip(&download.bytes().await?)?;
    let mut lines = text.lines();
    assert_eq!(
        lines.next().map(|h| h.split('\t').collect::<Vec<_>>()),
        Some(REPORT_COLUMNS.to_vec())
    );
    let got: HashSet<String> = lines.map(|l| l.split('\t').next().unwrap_or_default().to_owned()).collect();
    let expected: HashSet<String> = api
        .sim
        .admin()
        .orders("acct-1")
        .await?
        .into_iter()
        .filter(|o| o.purchase_date.parse::<DateTime<Utc>>().is_ok_and(|t| start <= t && t < end))
        .map(|o| o.amazon_order_id)
        .collect();
    assert!(expected.len() > 10);
    assert_eq!(got, expected);
    Ok(())
}

#[tokio::test]
async fn a_report_over_a_window_without_orders_is_cancelled_and_a_fatal_fault_ends_one_fatal() -> TestResult {
    let api = api(config()).await?;
    let empty = api
        .create_report(anchor() + chrono::Duration::days(1), anchor() + chrono::Duration::days(2))
        .await?;
    api.report(&empty).await?;
    let report = api.report(&empty).await?;
    assert_eq!(string(&report["processingStatus"]), "CANCELLED");
    assert!(report.get("reportDocumentId").is_none());

    api.sim
        .admin()
        .set_faults(
            "acct-1",
            &FaultSpec {
                fatal_reports: Some(Count { count: 1 }),
                ..FaultSpec::default()
            },
        )
        .await?;
    let fatal = api.create_report(anchor() - chrono::Duration::days(3), anchor()).await?;
    let fine = api.create_report(anchor() - chrono::Duration::days(3), anchor()).await?;
    for _ in 0..2 {
        api.report(&fatal).await?;
        api.report(&fine).await?;
    }
    assert_eq!(string(&api.report(&fatal).await?["processingStatus"]), "FATAL");
    assert_eq!(string(&api.report(&fine).await?["processingStatus"]), "DONE");
    Ok(())
}

#[tokio::test]
async fn malformed_rows_are_injected_when_asked() -> TestResult {
    let api = api(config()).await?;
    api.sim
        .admin()
        .set_faults(
            "acct-1",
            &FaultSpec {
                malformed_rows: 3,
                ..FaultSpec::default()
            },
        )
        .await?;
    let report_id = api
        .create_report(anchor() - chrono::Duration::days(6), anchor() - chrono::Duration::days(3))
        .await?;
    api.report(&report_id).await?;
    let document_id = string(&api.report(&report_id).await?["reportDocumentId"]);
    let document: Value = api
        .get(&format!("/reports/2021-06-30/documents/{document_id}"))
        .await?
        .json()
        .await?;
    let text = gunzip(&reqwest::get(string(&document["url"])).await?.bytes().await?)?;
    let rows: Vec<Vec<&str>> = text.lines().skip(1).map(|l| l.split('\t').collect()).collect();

    let wrong_width = rows.iter().filter(|r| r.len() != REPORT_COLUMNS.len()).count();
    let full: Vec<&Vec<&str>> = rows.iter().filter(|r| r.len() == REPORT_COLUMNS.len()).collect();
    let bad_date = full.iter().filter(|r| DateTime::parse_from_rfc3339(r[2]).is_err()).count();
    let bad_amount = full.iter().filter(|r| r[13].parse::<f64>().is_err()).count();
    assert_eq!((wrong_width, bad_date, bad_amount), (1, 1, 1));
    let good = rows.len() - 3;
    let expected = api
        .sim
        .admin()
        .orders("acct-1")
        .await?
        .iter()
        .filter(|o| {
            o.purchase_date
                .parse::<DateTime<Utc>>()
                .is_ok_and(|t| anchor() - chrono::Duration::days(6) <= t && t < anchor() - chrono::Duration::days(3))
        })
        .count();
    assert_eq!(good, expected, "malformed rows come on top of the real ones");
    Ok(())
}

#[tokio::test]
async fn a_quota_window_makes_every_report_operation_answer_429_until_it_ends() -> TestResult {
    let api = api(config()).await?;
    let report_id = api.create_report(anchor() - chrono::Duration::days(2), anchor()).await?;
    api.report(&report_id).await?;
    let document_id = string(&api.report(&report_id).await?["reportDocumentId"]);

    api.sim
        .admin()
        .set_faults(
            "acct-1",
            &FaultSpec {
                quota_window: Some(QuotaWindow { seconds: 1.5 }),
                ..FaultSpec::default()
            },
        )
        .await?;
    let create = json!({"reportType": "GET_FLAT_FILE_ALL_ORDERS_DATA_BY_ORDER_DATE_GENERAL", "marketplaceIds": [US_MARKETPLACE]});
    let answers = [
        api.post("/reports/2021-06-30/reports", create.clone()).await?,
        api.get(&format!("/reports/2021-06-30/reports/{report_id}")).await?,
        api.get(&format!("/reports/2021-06-30/documents/{document_id}")).await?,
    ];
    for response in answers {
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        let retry_after: u64 = header(&response, "retry-after").and_then(|v| v.parse().ok()).unwrap_or(0);
        assert!(
            (1..=2).contains(&retry_after),
            "the rest of the 1.5 s window, rounded up: {retry_after}"
        );
        assert_eq!(error_code(&response.json().await?), "QuotaExceeded");
    }
    let orders = api
        .get(&format!(
            "/orders/v0/orders?MarketplaceIds={US_MARKETPLACE}&CreatedAfter=2025-02-28"
        ))
        .await?;
    assert_eq!(orders.status(), StatusCode::OK, "the quota window is about report operations only");

    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_eq!(
        api.get(&format!("/reports/2021-06-30/reports/{report_id}")).await?.status(),
        StatusCode::OK
    );
    assert_eq!(
        api.post("/reports/2021-06-30/reports", create).await?.status(),
        StatusCode::ACCEPTED
    );
    let stats = api.sim.admin().stats().await?;
    assert_eq!(stats.op("acct-1", Operation::CreateReport).rate_limited, 1);
    assert_eq!(stats.op("acct-1", Operation::GetReportDocument).rate_limited, 1);
    Ok(())
}

#[tokio::test]
async fn bad_report_requests_get_sp_api_400_bodies() -> TestResult {
    let api = api(config()).await?;
    for body in [
        json!({"reportType": "GET_SOMETHING_ELSE", "marketplaceIds": [US_MARKETPLACE]}),
        json!({"reportType": "GET_FLAT_FILE_ALL_ORDERS_DATA_BY_ORDER_DATE_GENERAL", "marketplaceIds": []}),
        json!({"reportType": "GET_FLAT_FILE_ALL_ORDERS_DATA_BY_ORDER_DATE_GENERAL", "marketplaceIds": [US_MARKETPLACE], "dataStartTime": "soon"}),
        json!({"marketplaceIds": [US_MARKETPLACE]}),
    ] {
        let response = api.post("/reports/2021-06-30/reports", body.clone()).await?;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(error_code(&response.json().await?), "InvalidInput", "{body}");
    }
    let response = api.get("/reports/2021-06-30/reports/12345").await?;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    Ok(())
}
