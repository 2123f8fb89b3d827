//! The API under hostile tenants (issue 15): two scoped tenants, `acme-sub` and
//! `globex-sub`, and clients without a key try to learn about each other or exhaust the
//! process. Cross-tenant requests answer exactly as for things that do not exist; every
//! resource a request can hold is bounded.
mod api_support;

use std::time::Duration;

use api_support::*;
use futures::StreamExt;
use reqwest::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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

/// Read until the server closes the connection (EOF or reset); how long that took.
async fn wait_closed(mut conn: TcpStream, within: Duration) -> Result<Duration, &'static str> {
    let started = std::time::Instant::now();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(within, async {
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return started.elapsed(),
                Ok(_) => {} // a response, or a 408; the close follows
            }
        }
    })
    .await
    .map_err(|_| "the server kept the connection open")
}

#[tokio::test]
async fn two_thousand_silent_slow_and_idle_connections_are_closed_and_a_new_request_is_still_served() {
    let app = spawn_app_with(drover_tests::harness::Durability::None, |c| {
        c.server.header_read_timeout_ms = 500;
        c.server.max_connections = 4096;
    })
    .await;
    let mut conns = Vec::new();
    for i in 0..2000 {
        let mut conn = TcpStream::connect(app.addr).await.unwrap();
        match i % 3 {
            0 => {}                                                             // says nothing at all
            1 => conn.write_all(b"GET /healthz HTTP/1.1\r\nHo").await.unwrap(), // slowloris
            _ => {
                // a served request, then an idle keep-alive connection
                conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
                let mut buf = [0u8; 1024];
                let n = conn.read(&mut buf).await.unwrap();
                assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
            }
        }
        conns.push(conn);
    }
    let closed = futures::future::join_all(conns.into_iter().map(|c| wait_closed(c, Duration::from_secs(5)))).await;
    let kept = closed.iter().filter(|c| c.is_err()).count();
    assert_eq!(kept, 0, "{kept} of 2000 connections were kept open");
    let res = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn connections_over_the_cap_wait_until_idle_ones_are_closed() {
    let app = spawn_app_with(drover_tests::harness::Durability::None, |c| {
        c.server.header_read_timeout_ms = 1500;
        c.server.max_connections = 4;
    })
    .await;
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(TcpStream::connect(app.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let fresh = reqwest::Client::new();
    let over_cap = fresh.get(app.url("/healthz")).timeout(Duration::from_millis(300)).send().await;
    assert!(over_cap.is_err(), "a fifth connection is not served while four are held");
    for conn in idle {
        wait_closed(conn, Duration::from_secs(5)).await.unwrap();
    }
    let res = fresh.get(app.url("/healthz")).timeout(Duration::from_secs(5)).send().await.unwrap();
    assert_eq!(res.status(), 200);
}
