//! [`spawn`]: a simulator on a random local port for one test, and its [`SimHandle`].
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::client::SimAdmin;
use super::config::{Credentials, SimConfig};
use super::lwa::TokenResponse;
use super::operation::paths;
use super::server::serve;

/// How long [`SimHandle::shutdown`] lets open requests (slow bodies, long latencies)
/// finish before it cuts them off.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A running simulator. Dropping it stops the server too (without waiting).
#[derive(Debug)]
pub struct SimHandle {
    addr: SocketAddr,
    base_url: String,
    config: SimConfig,
    admin: SimAdmin,
    stop: CancellationToken,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

/// Starts a simulator on `127.0.0.1:0`.
pub async fn spawn(config: SimConfig) -> anyhow::Result<SimHandle> {
    // Fail here, with the reason, rather than inside the server task.
    config
        .validate()
        .map_err(|e| anyhow::anyhow!("invalid simulator configuration: {e}"))?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let base_url = format!("http://{addr}");
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    let task = tokio::spawn(serve(listener, config.clone(), async move { stopped.cancelled().await }));
    Ok(SimHandle {
        addr,
        admin: SimAdmin::new(base_url.clone()),
        base_url,
        config,
        stop,
        task: Some(task),
    })
}

impl SimHandle {
    /// `http://127.0.0.1:<port>`, the base URL of every SP-API path and of LWA.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `base_url` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// The LWA token endpoint.
    pub fn lwa_url(&self) -> String {
        self.url(paths::TOKEN)
    }

    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// LWA credentials of a demo account (`acct-1` ..).
    pub fn credentials(&self, account: &str) -> Option<Credentials> {
        self.config.credentials(account)
    }

    pub fn admin(&self) -> &SimAdmin {
        &self.admin
    }

    /// Exchanges a demo account's refresh token for an access token, as a client would.
    pub async fn access_token(&self, account: &str) -> anyhow::Result<String> {
        let creds = self
            .credentials(account)
            .ok_or_else(|| anyhow::anyhow!("{account:?} is not a demo account of this simulator"))?;
        let response = reqwest::Client::new()
            .post(self.lwa_url())
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(creds.token_request_body())
            .send()
            .await?
            .error_for_status()?;
        Ok(response.json::<TokenResponse>().await?.access_token)
    }

    /// Stops accepting, lets open requests finish (up to 5 s), and reports how the
    /// server ended.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        self.stop.cancel();
        let Some(mut task) = self.task.take() else { return Ok(()) };
        match tokio::time::timeout(SHUTDOWN_GRACE, &mut task).await {
            Ok(joined) => joined?,
            Err(_) => {
                task.abort();
                Ok(())
            }
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
