//! The API under hostile tenants (issue 15): two scoped tenants, `acme-sub` and
//! `globex-sub`, and clients without a key try to learn about each other or exhaust the
//! process. Cross-tenant requests answer exactly as for things that do not exist; every
//! resource a request can hold is bounded.
mod api_support;

use api_support::*;
use futures::StreamExt;
use reqwest::Method;

async fn scrape(app: &TestApp) -> String {
    let res = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    res.text().await.unwrap()
}

/// The series lines of a Prometheus text page (no comments).
fn series(page: &str) -> Vec<&str> {
    page.lines().filter(|l| !l.is_empty() && !l.starts_with('#')).collect()
}

#[tokio::test]
async fn two_thousand_made_up_http_methods_add_no_metrics_series() {
    let app = spawn_app().await;
    let send = |method: String| {
        let req = app
            .client
            .request(Method::from_bytes(method.as_bytes()).unwrap(), app.url("/healthz"));
        async move { req.send().await.unwrap().status() }
    };
    // One made-up method and two scrapes first, so every series the rest can touch exists.
    send("XWARMUP".into()).await;
    scrape(&app).await;
    let before = scrape(&app).await;
    let statuses: Vec<_> = futures::stream::iter(0..2000)
        .map(|i| send(format!("X{i:04}{}", "Q".repeat(100))))
        .buffer_unordered(16)
        .collect()
        .await;
    assert!(statuses.iter().all(|s| s.as_u16() == 405), "a made-up method is not allowed");
    let after = scrape(&app).await;
    assert_eq!(
        series(&before).len(),
        series(&after).len(),
        "the number of series must not grow with made-up methods"
    );
    assert!(!after.contains("X0001"), "no made-up method is a label");
    assert!(after.contains("method=\"other\""), "made-up methods are counted as other");
}
