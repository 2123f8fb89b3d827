//! Load generator for `POST /v1/jobs` (a benchmark tool, not a test).
//!
//! Three modes, each printing a human summary and one `RESULT {json}` line:
//!
//! - **open loop** (default): requests are *due* on a fixed schedule — request `j` at
//!   `start + j / rate` — whatever the responses do. A request waits for a free
//!   connection when all `--connections` are busy, and its latency is measured from its
//!   due time, so queueing (in the API or here) is counted instead of hidden
//!   (no coordinated omission). The first `--warmup-s` seconds are sent but not measured.
//! - **closed loop** (`--closed N`): N requests in flight, each sent when the previous
//!   one is answered; measures the most the API sustains.
//! - **direct** (`--direct-redis URL --closed N`): `RedisStore::enqueue` with N in flight
//!   and no HTTP, the baseline the API is compared with (as the `bench` binary does it).
//!
//! Every job id that got a 202 (or was created, in direct mode) is written to `--ids`, one
//! a line, so a script can check each exists in Redis afterwards.
//!
//! `api_load --url http://127.0.0.1:8080 --key KEY --rate 2000 --duration-s 30 --warmup-s 5`
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use drover::job::{JobKind, JobPayload};
use drover::queue::{JobDefaults, JobStore, NewJob, RedisStore};
use hdrhistogram::Histogram;
use serde_json::json;
use tokio::sync::Semaphore;

/// The job every mode submits: a cleanup the test workers finish at once.
const BODY: &str = r#"{"kind":"cleanup","payload":{"account_id":"t.ok","marketplace_id":"ATVPDKIKX0DER","skus":["SKU-1","SKU-2"]}}"#;

#[derive(Parser, Debug)]
#[command(about = "Open- or closed-loop load on POST /v1/jobs, or direct RedisStore::enqueue")]
struct Args {
    /// Base URL of the API.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// API key (submit role).
    #[arg(long, env = "API_LOAD_KEY", default_value = "")]
    key: String,
    /// Open loop: requests per second, due on a fixed schedule.
    #[arg(long, default_value_t = 2000.0)]
    rate: f64,
    /// Measured seconds (after the warm-up).
    #[arg(long, default_value_t = 30.0)]
    duration_s: f64,
    /// Seconds sent before measuring starts (open and closed loop).
    #[arg(long, default_value_t = 5.0)]
    warmup_s: f64,
    /// Open loop: most connections (requests in flight) at once.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Closed loop with this many requests in flight instead of the open loop.
    #[arg(long)]
    closed: Option<usize>,
    /// Enqueue straight into this Redis (RedisStore::enqueue, no HTTP); needs --closed.
    #[arg(long)]
    direct_redis: Option<String>,
    /// Redis namespace, for --direct-redis.
    #[arg(long, default_value = "drover")]
    namespace: String,
    /// Where to write the ids of accepted jobs.
    #[arg(long)]
    ids: Option<PathBuf>,
    /// A label for the RESULT line.
    #[arg(long, default_value = "")]
    label: String,
    /// Per-request timeout, ms.
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
}

/// What happened to one request.
struct Sample {
    /// Due (open loop) or sent (closed loop, direct) time, from the run's start.
    at: Duration,
    /// From `at` until the whole response was read.
    latency: Duration,
    /// HTTP status, or 0 for a transport error / timeout / store error.
    status: u16,
    id: Option<String>,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid bounds")
}

fn client(args: &Args, idle: usize) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .http1_only()
        .pool_max_idle_per_host(idle)
        .pool_idle_timeout(Duration::from_secs(120))
        .tcp_nodelay(true)
        .timeout(Duration::from_millis(args.timeout_ms))
        .build()
        .context("building the HTTP client")
}

async fn post(client: &reqwest::Client, url: &str, auth: &str) -> (u16, Option<String>) {
    let res = client
        .post(url)
        .header("content-type", "application/json")
        .header("authorization", auth)
        .body(BODY)
        .send()
        .await;
    let Ok(res) = res else { return (0, None) };
    let status = res.status().as_u16();
    let Ok(body) = res.bytes().await else { return (0, None) };
    let id = (status == 202)
        .then(|| serde_json::from_slice::<serde_json::Value>(&body).ok())
        .flatten()
        .and_then(|v| v["id"].as_str().map(str::to_owned));
    (status, id)
}

/// Open loop: request `j` is due at `start + j / rate`.
async fn open_loop(args: &Args) -> Result<(Vec<Sample>, Duration, Histogram<u64>)> {
    let client = client(args, args.connections)?;
    let url = Arc::<str>::from(format!("{}/v1/jobs", args.url.trim_end_matches('/')));
    let auth = Arc::<str>::from(format!("Bearer {}", args.key));
    let permits = Arc::new(Semaphore::new(args.connections));
    let total = ((args.warmup_s + args.duration_s) * args.rate).round() as u64;
    let runtime = tokio::runtime::Handle::current();
    let rate = args.rate;
    // The schedule is kept by a thread of its own sleeping with the OS timer (tens of µs),
    // not by a tokio timer, which wakes on 1 ms ticks and would add up to 1 ms of its own
    // lateness to every latency. How late it still issued requests (its wake-up and any
    // stall) is counted in every latency and printed so it can be told apart.
    let dispatcher = std::thread::spawn(move || {
        let start = Instant::now();
        let mut dispatch_lag = histogram();
        let mut tasks = Vec::with_capacity(total as usize);
        for j in 0..total {
            let due = start + Duration::from_secs_f64(j as f64 / rate);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            dispatch_lag.saturating_record(due.elapsed().as_micros() as u64);
            let (client, url, auth, permits) = (client.clone(), url.clone(), auth.clone(), permits.clone());
            tasks.push(runtime.spawn(async move {
                let _permit = permits.acquire_owned().await.expect("never closed");
                let (status, id) = post(&client, &url, &auth).await;
                Sample {
                    at: due - start,
                    latency: due.elapsed(),
                    status,
                    id,
                }
            }));
        }
        (tasks, start.elapsed(), dispatch_lag)
    });
    let (tasks, sent_for, dispatch_lag) = tokio::task::spawn_blocking(move || dispatcher.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the dispatch thread panicked"))?;
    let mut samples = Vec::with_capacity(tasks.len());
    for t in tasks {
        samples.push(t.await?);
    }
    Ok((samples, sent_for, dispatch_lag))
}

/// Closed loop: `n` lanes, each sending its next request when the last is answered.
async fn closed_loop(args: &Args, n: usize) -> Result<(Vec<Sample>, Duration)> {
    let client = client(args, n)?;
    let url = Arc::<str>::from(format!("{}/v1/jobs", args.url.trim_end_matches('/')));
    let auth = Arc::<str>::from(format!("Bearer {}", args.key));
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(args.warmup_s + args.duration_s);
    let lanes: Vec<_> = (0..n)
        .map(|_| {
            let (client, url, auth) = (client.clone(), url.clone(), auth.clone());
            tokio::spawn(async move {
                let mut out = Vec::new();
                while Instant::now() < until {
                    let sent = Instant::now();
                    let (status, id) = post(&client, &url, &auth).await;
                    out.push(Sample {
                        at: sent - start,
                        latency: sent.elapsed(),
                        status,
                        id,
                    });
                }
                out
            })
        })
        .collect();
    let mut samples = Vec::new();
    for l in lanes {
        samples.extend(l.await?);
    }
    Ok((samples, start.elapsed()))
}

/// Direct: `RedisStore::enqueue` from `n` lanes, no HTTP.
async fn direct(args: &Args, redis_url: &str, n: usize) -> Result<(Vec<Sample>, Duration)> {
    // the cap on an account's unfinished jobs on, as the API has it, out of the way
    let defaults = JobDefaults {
        max_unfinished_per_account: 100_000_000,
        ..JobDefaults::default()
    };
    let store = RedisStore::connect(redis_url, &args.namespace, defaults).await?;
    let body: serde_json::Value = serde_json::from_str(BODY)?;
    let payload = JobPayload::from_json(JobKind::Cleanup, body["payload"].clone()).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(args.warmup_s + args.duration_s);
    let lanes: Vec<_> = (0..n)
        .map(|_| {
            let (store, payload) = (store.clone(), payload.clone());
            tokio::spawn(async move {
                let mut out = Vec::new();
                while Instant::now() < until {
                    let sent = Instant::now();
                    let r = store.enqueue(NewJob::new(payload.clone())).await;
                    let (status, id) = match r {
                        Ok(e) if e.created => (202, Some(e.id.to_string())),
                        Ok(_) => (200, None),
                        Err(_) => (0, None),
                    };
                    out.push(Sample {
                        at: sent - start,
                        latency: sent.elapsed(),
                        status,
                        id,
                    });
                }
                out
            })
        })
        .collect();
    let mut samples = Vec::new();
    for l in lanes {
        samples.extend(l.await?);
    }
    Ok((samples, start.elapsed()))
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let (mode, result) = match (&args.direct_redis, args.closed) {
        (Some(url), Some(n)) => (
            format!("direct, {n} in flight"),
            direct(&args, url, n).await.map(|(s, d)| (s, d, None))?,
        ),
        (Some(_), None) => bail!("--direct-redis needs --closed N (how many enqueues in flight)"),
        (None, Some(n)) => (
            format!("closed loop, {n} in flight"),
            closed_loop(&args, n).await.map(|(s, d)| (s, d, None))?,
        ),
        (None, None) => {
            if args.rate <= 0.0 || args.connections == 0 {
                bail!("--rate and --connections must be positive");
            }
            let (s, d, lag) = open_loop(&args).await?;
            (
                format!("open loop, {} /s due, {} connections", args.rate, args.connections),
                (s, d, Some(lag)),
            )
        }
    };
    let (samples, ran_for, dispatch_lag) = result;

    let warmup = Duration::from_secs_f64(args.warmup_s);
    let mut hist = histogram();
    let mut measured_status: BTreeMap<u16, u64> = BTreeMap::new();
    let mut all_status: BTreeMap<u16, u64> = BTreeMap::new();
    let mut measured = 0u64;
    let mut last_done = Duration::ZERO;
    for s in &samples {
        *all_status.entry(s.status).or_default() += 1;
        if s.at >= warmup {
            measured += 1;
            *measured_status.entry(s.status).or_default() += 1;
            hist.saturating_record(s.latency.as_micros() as u64);
            last_done = last_done.max(s.at + s.latency);
        }
    }
    // Rate over the measured window: requests due/sent in it, over its length. For the
    // closed loop the window ends at the last response.
    let window = if args.closed.is_some() {
        last_done.saturating_sub(warmup).max(Duration::from_millis(1))
    } else {
        Duration::from_secs_f64(args.duration_s)
    };
    let achieved = measured as f64 / window.as_secs_f64();
    let accepted_all = all_status.get(&202).copied().unwrap_or(0);
    let ids: Vec<&str> = samples.iter().filter_map(|s| s.id.as_deref()).collect();
    if let Some(path) = &args.ids {
        let mut f = std::io::BufWriter::new(std::fs::File::create(path).with_context(|| format!("{}", path.display()))?);
        for id in &ids {
            writeln!(f, "{id}")?;
        }
        f.flush()?;
    }
    let status_str = |m: &BTreeMap<u16, u64>| {
        m.iter()
            .map(|(k, v)| if *k == 0 { format!("error={v}") } else { format!("{k}={v}") })
            .collect::<Vec<_>>()
            .join(" ")
    };
    let q = |p: f64| ms(hist.value_at_quantile(p));
    println!(
        "mode: {mode}; warm-up {:.1} s, measured {:.1} s, ran {:.1} s",
        args.warmup_s,
        window.as_secs_f64(),
        ran_for.as_secs_f64()
    );
    println!(
        "measured: {measured} requests, {achieved:.0} /s; status {}",
        status_str(&measured_status)
    );
    println!(
        "all (warm-up included): status {}; ids written {}",
        status_str(&all_status),
        ids.len()
    );
    println!(
        "latency ms{}: p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}  (mean {:.2})",
        if dispatch_lag.is_some() { " from due time" } else { "" },
        q(0.5),
        q(0.9),
        q(0.99),
        q(0.999),
        ms(hist.max()),
        hist.mean() / 1000.0
    );
    if let Some(lag) = &dispatch_lag {
        println!(
            "dispatch lag ms (generator's own lateness, included above): p50 {:.2}  p99 {:.2}  max {:.2}",
            ms(lag.value_at_quantile(0.5)),
            ms(lag.value_at_quantile(0.99)),
            ms(lag.max())
        );
    }
    let result = json!({
        "label": args.label,
        "mode": mode,
        "rate_target": if args.closed.is_none() { Some(args.rate) } else { None },
        "measured": measured,
        "achieved_per_s": achieved.round(),
        "status": measured_status.iter().map(|(k, v)| (k.to_string(), *v)).collect::<BTreeMap<_, _>>(),
        "status_all": all_status.iter().map(|(k, v)| (k.to_string(), *v)).collect::<BTreeMap<_, _>>(),
        "accepted_all": accepted_all,
        "ids_written": ids.len(),
        "p50_ms": q(0.5), "p90_ms": q(0.9), "p99_ms": q(0.99), "p999_ms": q(0.999), "max_ms": ms(hist.max()),
        "dispatch_lag_p99_ms": dispatch_lag.as_ref().map(|l| ms(l.value_at_quantile(0.99))),
    });
    println!("RESULT {result}");
    Ok(())
}
