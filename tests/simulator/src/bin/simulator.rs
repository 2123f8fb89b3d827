//! `simulator`: the SP-API-shaped marketplace simulator as a process, for the demo,
//! docker-compose and benchmarks. Flags (or `SIM_*` variables) become a `SimConfig`;
//! the fault flags apply to every account. Stops on SIGINT or SIGTERM.
use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use drover_simulator::{
    self as sim, Burst5xx, FaultSpec, Operation, QuotaWindow, RateLimitBurst, RateLimits, RateProfile, ReportTiming, SimConfig,
};

#[derive(Debug, Parser)]
#[command(name = "simulator", about = "SP-API-shaped marketplace simulator with fault injection")]
struct Args {
    #[arg(long, env = "SIM_LISTEN", default_value = "127.0.0.1:9100")]
    listen: SocketAddr,
    #[arg(long, env = "SIM_SEED", default_value_t = 42)]
    seed: u64,
    /// Demo accounts acct-1..acct-N (refresh tokens rt-acct-1..).
    #[arg(long, env = "SIM_ACCOUNTS", default_value_t = 3)]
    accounts: usize,
    #[arg(long, env = "SIM_ORDERS_PER_ACCOUNT", default_value_t = 500)]
    orders_per_account: usize,
    #[arg(long, env = "SIM_SKUS_PER_ACCOUNT", default_value_t = 200)]
    skus_per_account: usize,
    /// spapi (documented limits), fast (tests, demo) or unlimited (benchmarks).
    #[arg(long, env = "SIM_RATE_PROFILE", default_value = "spapi")]
    rate_profile: RateProfile,
    #[arg(long, env = "SIM_TOKEN_TTL_S", default_value_t = 3600)]
    token_ttl_s: u64,
    /// getReport calls until a report is done.
    #[arg(long, env = "SIM_REPORT_POLLS", default_value_t = 2)]
    report_polls: u32,
    /// Minimum processing time of a report, in ms.
    #[arg(long, env = "SIM_REPORT_MIN_MS", default_value_t = 0)]
    report_min_ms: u64,
    /// Base URL for report document URLs (default: the Host the client used).
    #[arg(long, env = "SIM_PUBLIC_URL")]
    public_url: Option<String>,
    /// End empty reports DONE with a header-only document instead of CANCELLED.
    #[arg(long, env = "SIM_KEEP_EMPTY_REPORTS")]
    keep_empty_reports: bool,

    /// Fault: probability (0..1) of a 500/503 per call.
    #[arg(long, env = "SIM_ERROR_RATE_5XX", default_value_t = 0.0)]
    error_rate_5xx: f64,
    /// Fault: the first N calls of each account fail with 5xx.
    #[arg(long, env = "SIM_BURST_5XX")]
    burst_5xx: Option<u32>,
    /// Fault: the first N calls of each account get 429.
    #[arg(long, env = "SIM_RATE_LIMIT_BURST")]
    rate_limit_burst: Option<u32>,
    /// Fault: report operations answer 429 for this many seconds after start.
    #[arg(long, env = "SIM_QUOTA_WINDOW_S")]
    quota_window_s: Option<f64>,
    #[arg(long, env = "SIM_LATENCY_MS", default_value_t = 0)]
    latency_ms: u64,
    #[arg(long, env = "SIM_SLOW_BODY_MS", default_value_t = 0)]
    slow_body_ms: u64,
    /// Fault: probability (0..1) that a connection is reset instead of answered.
    #[arg(long, env = "SIM_RESET_RATE", default_value_t = 0.0)]
    reset_rate: f64,
    /// Fault: malformed rows added to every report document.
    #[arg(long, env = "SIM_MALFORMED_ROWS", default_value_t = 0)]
    malformed_rows: u32,
    /// Fault: orders (of quantity 2 or more) written as two rows of their SKU in every
    /// report document, their quantity and price split between the rows.
    #[arg(long, env = "SIM_SPLIT_ITEMS", default_value_t = 0)]
    split_items: u32,
    /// Fault: SKUs whose get/delete answer 400 (comma-separated).
    #[arg(long, env = "SIM_PERMANENT_400_SKUS", value_delimiter = ',')]
    permanent_400_skus: Vec<String>,
    /// Fault: SKUs whose get/delete answer 500 on every call (comma-separated).
    #[arg(long, env = "SIM_FAILING_SKUS", value_delimiter = ',')]
    failing_skus: Vec<String>,
    /// Operations the per-call faults apply to (comma-separated SP-API names; default all).
    #[arg(long, env = "SIM_FAULT_OPS", value_delimiter = ',')]
    fault_ops: Vec<Operation>,
    /// A whole fault spec as JSON (the admin API's shape); replaces the fault flags.
    #[arg(long, env = "SIM_FAULTS_JSON")]
    faults_json: Option<String>,
}

impl Args {
    fn faults(&self) -> anyhow::Result<FaultSpec> {
        if let Some(json) = &self.faults_json {
            return serde_json::from_str(json).map_err(|e| anyhow::anyhow!("--faults-json: {e}"));
        }
        Ok(FaultSpec {
            error_rate_5xx: self.error_rate_5xx,
            burst_5xx: self.burst_5xx.map(|count| Burst5xx { count, status: None }),
            rate_limit_burst: self.rate_limit_burst.map(|count| RateLimitBurst { count, retry_after_s: 1 }),
            quota_window: self.quota_window_s.map(|seconds| QuotaWindow { seconds }),
            latency_ms: self.latency_ms,
            slow_body_ms: self.slow_body_ms,
            reset_rate: self.reset_rate,
            malformed_rows: self.malformed_rows,
            split_items: self.split_items,
            token_ttl_s: None,
            permanent_400_skus: self.permanent_400_skus.clone(),
            failing_skus: self.failing_skus.clone(),
            fatal_reports: None,
            ops: (!self.fault_ops.is_empty()).then(|| self.fault_ops.clone()),
        })
    }

    fn config(&self) -> anyhow::Result<SimConfig> {
        Ok(SimConfig {
            seed: self.seed,
            accounts: self.accounts,
            orders_per_account: self.orders_per_account,
            skus_per_account: self.skus_per_account,
            token_ttl: Duration::from_secs(self.token_ttl_s),
            rate_limits: RateLimits::profile(self.rate_profile),
            reports: ReportTiming {
                polls_to_done: self.report_polls,
                min_processing: Duration::from_millis(self.report_min_ms),
            },
            cancel_empty_reports: !self.keep_empty_reports,
            default_faults: self.faults()?,
            public_url: self.public_url.clone(),
            ..SimConfig::default()
        })
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = args.config()?;
    config.validate().map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!("simulator listening on http://{}", listener.local_addr()?);
    sim::serve(listener, config, stop_signal()).await
}

/// SIGTERM or SIGINT: the server stops taking connections and ends.
async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
