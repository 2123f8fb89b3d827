//! The marketplace simulator over real HTTP: each test spawns its own simulator on a
//! random port and talks to it as a marketplace client (and as a test, through the
//! admin API) would.
use std::collections::HashSet;
use std::io::Read;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use drover_tests::sim::{
    self, AccountSpec, Burst5xx, Count, DeleteOutcome, FaultSpec, Operation, OrderChange, QuotaWindow, RateLimit, RateLimitBurst,
    SimConfig, SimHandle, REPORT_COLUMNS, US_MARKETPLACE,
};
use reqwest::StatusCode;
use serde_json::{json, Value};

type TestResult = anyhow::Result<()>;

/// A fixed "now" for generated orders, so windows in these tests select known orders.
fn anchor() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 1, 0, 0, 0).single().expect("valid date")
}

fn config() -> SimConfig {
    SimConfig {
        anchor: Some(anchor()),
        ..SimConfig::fast()
    }
}

/// A simulator and a client holding an access token of `acct-1`.
struct Api {
    sim: SimHandle,
    http: reqwest::Client,
    token: String,
}

async fn api(config: SimConfig) -> anyhow::Result<Api> {
    let sim = sim::spawn(config).await?;
    let token = sim.access_token("acct-1").await?;
    Ok(Api {
        sim,
        http: reqwest::Client::new(),
        token,
    })
}

impl Api {
    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> reqwest::Result<reqwest::Response> {
        let mut request = self
            .http
            .request(method, self.sim.url(path))
            .header("x-amz-access-token", &self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await
    }

    async fn get(&self, path: &str) -> anyhow::Result<reqwest::Response> {
        Ok(self.send(reqwest::Method::GET, path, None).await?)
    }

    async fn delete(&self, path: &str) -> anyhow::Result<reqwest::Response> {
        Ok(self.send(reqwest::Method::DELETE, path, None).await?)
    }

    async fn post(&self, path: &str, body: Value) -> anyhow::Result<reqwest::Response> {
        Ok(self.send(reqwest::Method::POST, path, Some(body)).await?)
    }

    async fn create_report(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> anyhow::Result<String> {
        let body = json!({
            "reportType": "GET_FLAT_FILE_ALL_ORDERS_DATA_BY_ORDER_DATE_GENERAL",
            "marketplaceIds": [US_MARKETPLACE],
            "dataStartTime": start.to_rfc3339(),
            "dataEndTime": end.to_rfc3339(),
        });
        let response = self.post("/reports/2021-06-30/reports", body).await?;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        Ok(string(&response.json::<Value>().await?["reportId"]))
    }

    async fn report(&self, report_id: &str) -> anyhow::Result<Value> {
        Ok(self.get(&format!("/reports/2021-06-30/reports/{report_id}")).await?.json().await?)
    }
}

fn string(v: &Value) -> String {
    v.as_str().map(str::to_owned).unwrap_or_default()
}

fn error_code(body: &Value) -> String {
    string(&body["errors"][0]["code"])
}

fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

fn time(v: &Value) -> DateTime<Utc> {
    string(v).parse().unwrap_or(DateTime::<Utc>::MIN_UTC)
}

fn gunzip(bytes: &[u8]) -> anyhow::Result<String> {
    let mut text = String::new();
    flate2::read::GzDecoder::new(bytes).read_to_string(&mut text)?;
    Ok(text)
}

const LISTING: &str = "/listings/2021-08-01/items/acct-1";

// The cases, by area; `simulator/` beside this file (a test crate root looks for
// modules next to itself, hence the paths).
#[path = "simulator/admin.rs"]
mod admin;
#[path = "simulator/binary.rs"]
mod binary;
#[path = "simulator/faults.rs"]
mod faults;
#[path = "simulator/listings.rs"]
mod listings;
#[path = "simulator/lwa.rs"]
mod lwa;
#[path = "simulator/orders.rs"]
mod orders;
#[path = "simulator/rate_limits.rs"]
mod rate_limits;
#[path = "simulator/reports.rs"]
mod reports;
