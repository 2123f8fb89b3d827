//! The worker's marketplace client against the real simulator over HTTP, guarded by a
//! real `drover::resilience` on a private redis-server. No mocks: faults are the
//! simulator's own (set per account through its admin API), and the calls the
//! marketplace saw are read back from its counters.
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use drover::job::{AccountId, MarketplaceId, Sku};
use drover::lwa::{LwaCredentials, SecretString};
use drover::resilience::{ColdStart, Operation as ResOp, RateSpec, Resilience, ResilienceConfig};
use drover_tests::harness::{Durability, RedisServer};
use drover_tests::sim::{self, FaultSpec, OpStats, Operation, SimConfig, SimHandle, US_MARKETPLACE};
use drover_worker::marketplace::{AccountCtx, MarketplaceClient, MarketplaceConfig};
use tokio_util::sync::CancellationToken;

type TestResult = anyhow::Result<()>;

/// The simulator's demo app secret and the demo refresh tokens: must never show up in
/// anything the client prints.
const CLIENT_SECRET: &str = "sim-client-secret";

/// A fixed "now" for generated orders, so windows select known orders.
fn anchor() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 1, 0, 0, 0).single().expect("valid date")
}

/// One test's world: a simulator, a private Redis, the shared resilience state and the
/// client under test.
struct Env {
    sim: SimHandle,
    // The redis-server stops when this drops.
    redis: RedisServer,
    resilience: Resilience,
    client: MarketplaceClient,
}

/// The simulator's "fast" usage plans, so the limiter and the marketplace agree and a
/// test never waits a minute for a getOrders slot. Cold start "full" is right here:
/// every test's simulator starts with full buckets.
fn resilience_config() -> ResilienceConfig {
    let mut c = ResilienceConfig::default();
    for (op, rate, burst) in [
        (ResOp::GetOrders, 10.0, 20),
        (ResOp::GetListingsItem, 50.0, 100),
        (ResOp::DeleteListingsItem, 50.0, 100),
        (ResOp::CreateReport, 5.0, 15),
        (ResOp::GetReport, 20.0, 40),
        (ResOp::GetReportDocument, 5.0, 15),
    ] {
        c.limits.insert(op, RateSpec::new(rate, burst));
    }
    c.limiter.cold_start = ColdStart::Full;
    c.max_wait = Duration::from_secs(10);
    c
}

/// Short timeouts and backoffs, so failure paths take milliseconds.
fn client_config(sim: &SimHandle) -> MarketplaceConfig {
    MarketplaceConfig {
        base_url: sim.base_url().to_owned(),
        timeout_ms: 2_000,
        download_timeout_ms: 5_000,
        connect_timeout_ms: 1_000,
        retries: 2,
        retry_base_ms: 10,
        retry_max_ms: 2_000,
        ..MarketplaceConfig::default()
    }
}

async fn env() -> anyhow::Result<Env> {
    env_with(|_| {}, |_| {}).await
}

async fn env_with(tweak: impl FnOnce(&mut MarketplaceConfig), tweak_res: impl FnOnce(&mut ResilienceConfig)) -> anyhow::Result<Env> {
    env_on(SimConfig::fast(), tweak, tweak_res).await
}

/// As [`env_with`], against a simulator set up as `sim` (its anchor is the tests' own).
async fn env_on(
    sim: SimConfig,
    tweak: impl FnOnce(&mut MarketplaceConfig),
    tweak_res: impl FnOnce(&mut ResilienceConfig),
) -> anyhow::Result<Env> {
    let sim = sim::spawn(SimConfig {
        anchor: Some(anchor()),
        ..sim
    })
    .await?;
    let redis = RedisServer::start(Durability::None);
    let conn = redis::aio::ConnectionManager::new(redis::Client::open(redis.url())?).await?;
    let mut res_config = resilience_config();
    tweak_res(&mut res_config);
    let resilience = Resilience::new(conn, "t", res_config, &drover::crypto::EncryptionKey::dev());
    let mut config = client_config(&sim);
    tweak(&mut config);
    let client = MarketplaceClient::new(config, resilience.clone())?;
    Ok(Env {
        sim,
        redis,
        resilience,
        client,
    })
}

impl Env {
    /// A demo account's context with the simulator's real credentials.
    fn ctx(&self, account: &str) -> AccountCtx {
        let creds = self.sim.credentials(account).expect("a demo account");
        AccountCtx {
            account_id: AccountId::parse(account).expect("valid id"),
            limits: AccountId::parse(account).expect("valid id"),
            credentials: LwaCredentials {
                client_id: creds.client_id,
                client_secret: SecretString::from(creds.client_secret),
                refresh_token: SecretString::from(creds.refresh_token),
            },
            cancel: CancellationToken::new(),
            traceparent: None,
        }
    }

    async fn faults(&self, account: &str, spec: FaultSpec) -> anyhow::Result<()> {
        self.sim.admin().set_faults(account, &spec).await?;
        Ok(())
    }

    async fn op_stats(&self, account: &str, op: Operation) -> anyhow::Result<OpStats> {
        Ok(self.sim.admin().stats().await?.op(account, op))
    }

    async fn token_grants(&self, account: &str) -> anyhow::Result<u64> {
        Ok(self.sim.admin().stats().await?.accounts.get(account).map_or(0, |a| a.token_grants))
    }
}

fn us() -> Vec<MarketplaceId> {
    vec![MarketplaceId::parse(US_MARKETPLACE).expect("valid marketplace")]
}

/// A small getOrders query over the month before the anchor.
fn faults_query() -> drover_worker::marketplace::OrdersQuery {
    drover_worker::marketplace::OrdersQuery {
        marketplace_ids: us(),
        created_after: Some(anchor() - chrono::Duration::days(30)),
        max_results: Some(5),
        ..Default::default()
    }
}

fn sku(s: &str) -> Sku {
    Sku::parse(s).expect("valid sku")
}

/// A done orders report of the ten days before the anchor, and its document's reference.
async fn done_document(env: &Env, ctx: &AccountCtx) -> anyhow::Result<amazon_spapi::models::reports_2021_06_30::ReportDocument> {
    use amazon_spapi::models::reports_2021_06_30::report::ProcessingStatus;
    let report_id = env
        .client
        .create_report(
            ctx,
            "GET_FLAT_FILE_ALL_ORDERS_DATA_BY_ORDER_DATE_GENERAL",
            anchor() - chrono::Duration::days(10),
            anchor(),
            &us(),
        )
        .await?;
    anyhow::ensure!(!report_id.is_empty(), "no report id");
    let mut report = env.client.get_report(ctx, &report_id).await?;
    for _ in 0..10 {
        if report.processing_status == ProcessingStatus::Done {
            break;
        }
        report = env.client.get_report(ctx, &report_id).await?;
    }
    anyhow::ensure!(
        report.processing_status == ProcessingStatus::Done,
        "the report never ended: {report:?}"
    );
    let document_id = report
        .report_document_id
        .ok_or_else(|| anyhow::anyhow!("a DONE report names its document"))?;
    let doc = env.client.get_report_document(ctx, &document_id).await?;
    anyhow::ensure!(doc.report_document_id == document_id, "another document: {doc:?}");
    Ok(doc)
}

#[path = "marketplace_client/auth.rs"]
mod auth;
#[path = "marketplace_client/faults.rs"]
mod faults;
#[path = "marketplace_client/happy.rs"]
mod happy;
#[path = "marketplace_client/redirects.rs"]
mod redirects;
#[path = "marketplace_client/secrets.rs"]
mod secrets;
#[path = "marketplace_client/slots.rs"]
mod slots;
