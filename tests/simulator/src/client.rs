//! [`SimAdmin`]: a typed client of the admin API, for tests and harnesses that run the
//! simulator in-process (via [`super::SimHandle::admin`]) or as the `simulator` binary.
use amazon_spapi::models::orders_v0::Order;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::account::{AccountInfo, AccountSpec};
use super::admin::{FaultsView, OrderChange, SkuChange};
use super::faults::FaultSpec;
use super::stats::{DeleteRecord, StatsSnapshot};

/// Why an admin call failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminClientError {
    #[error("admin request to the simulator failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error("simulator admin API answered {status}: {body}")]
    Status { status: StatusCode, body: String },
}

/// Admin API client. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SimAdmin {
    base_url: String,
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct Skus {
    skus: Vec<String>,
}

#[derive(Deserialize)]
struct Count {
    #[serde(alias = "skus", alias = "orders", alias = "expired")]
    count: usize,
}

/// Percent-encodes one path segment (account ids are URL-safe when valid, but a test
/// asking about an invalid one should get the simulator's 404, not a malformed URL).
fn segment(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

impl SimAdmin {
    /// A client of the simulator at `base_url` (e.g. `http://127.0.0.1:9100`).
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
        }
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, format!("{}/_admin/{path}", self.base_url))
    }

    async fn send(&self, request: RequestBuilder) -> Result<reqwest::Response, AdminClientError> {
        let response = request.send().await?;
        if response.status().is_success() {
            Ok(response)
        } else {
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            Err(AdminClientError::Status { status, body })
        }
    }

    async fn json<T: DeserializeOwned>(&self, request: RequestBuilder) -> Result<T, AdminClientError> {
        Ok(self.send(request).await?.json().await?)
    }

    async fn with_body<B: Serialize, T: DeserializeOwned>(&self, method: Method, path: &str, body: &B) -> Result<T, AdminClientError> {
        self.json(self.request(method, path).json(body)).await
    }

    pub async fn register_account(&self, spec: &AccountSpec) -> Result<AccountInfo, AdminClientError> {
        self.with_body(Method::POST, "accounts", spec).await
    }

    pub async fn accounts(&self) -> Result<Vec<AccountInfo>, AdminClientError> {
        self.json(self.request(Method::GET, "accounts")).await
    }

    /// Replaces the account's faults; their counters (bursts, windows) start now.
    pub async fn set_faults(&self, account: &str, spec: &FaultSpec) -> Result<FaultsView, AdminClientError> {
        self.with_body(Method::PUT, &format!("faults/{}", segment(account)), spec).await
    }

    pub async fn faults(&self, account: &str) -> Result<FaultsView, AdminClientError> {
        self.json(self.request(Method::GET, &format!("faults/{}", segment(account)))).await
    }

    pub async fn clear_faults(&self, account: &str) -> Result<(), AdminClientError> {
        self.send(self.request(Method::DELETE, &format!("faults/{}", segment(account))))
            .await
            .map(drop)
    }

    pub async fn skus(&self, account: &str) -> Result<Vec<String>, AdminClientError> {
        Ok(self
            .json::<Skus>(self.request(Method::GET, &format!("skus/{}", segment(account))))
            .await?
            .skus)
    }

    /// Makes these listings exist; answers how many the account has now.
    pub async fn add_skus(&self, account: &str, skus: &[&str]) -> Result<usize, AdminClientError> {
        let change = SkuChange {
            add: skus.iter().map(|s| (*s).to_owned()).collect(),
            remove: Vec::new(),
        };
        Ok(self
            .with_body::<_, Count>(Method::POST, &format!("skus/{}", segment(account)), &change)
            .await?
            .count)
    }

    pub async fn remove_skus(&self, account: &str, skus: &[&str]) -> Result<usize, AdminClientError> {
        let change = SkuChange {
            add: Vec::new(),
            remove: skus.iter().map(|s| (*s).to_owned()).collect(),
        };
        Ok(self
            .with_body::<_, Count>(Method::POST, &format!("skus/{}", segment(account)), &change)
            .await?
            .count)
    }

    /// Every order of the account, as getOrders would show it, by purchase date.
    pub async fn orders(&self, account: &str) -> Result<Vec<Order>, AdminClientError> {
        self.json(self.request(Method::GET, &format!("orders/{}", segment(account)))).await
    }

    /// Places `new` orders now and updates `touch` existing ones; answers the order count.
    pub async fn change_orders(&self, account: &str, change: OrderChange) -> Result<usize, AdminClientError> {
        Ok(self
            .with_body::<_, Count>(Method::POST, &format!("orders/{}", segment(account)), &change)
            .await?
            .count)
    }

    pub async fn deletes(&self, account: &str) -> Result<Vec<DeleteRecord>, AdminClientError> {
        self.json(self.request(Method::GET, &format!("deletes/{}", segment(account)))).await
    }

    /// Expires the account's access tokens now; answers how many were live.
    pub async fn expire_tokens(&self, account: &str) -> Result<usize, AdminClientError> {
        Ok(self
            .json::<Count>(self.request(Method::POST, &format!("tokens/{}/expire", segment(account))))
            .await?
            .count)
    }

    pub async fn stats(&self) -> Result<StatsSnapshot, AdminClientError> {
        self.json(self.request(Method::GET, "stats")).await
    }

    pub async fn reset(&self) -> Result<(), AdminClientError> {
        self.send(self.request(Method::POST, "reset")).await.map(drop)
    }
}
