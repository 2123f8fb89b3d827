//! `bench --only durability`: what `queue.durability` costs a single enqueue. Each mode
//! gets fresh servers and a warm-up, then enqueues one job at a time (sequential) and
//! with 100 in flight (the API's shape: many clients, group commit) for `secs` each,
//! timing every call; p50/p99 and the ratio to its `local` baseline on the same servers.
//! `aof` needs Redis >= 7.2 (`--redis8 PATH`, `REDIS8_SERVER`, or tests/redis8.sh's
//! cache); without one its rows are left out and say so.
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use drover::queue::{Durability as QueueDurability, DurabilityMode, JobDefaults, JobStore, RedisStore};
use drover_tests::harness::{Durability, RedisServer};
use tokio::sync::Mutex;

use super::noop;

struct Setup {
    name: &'static str,
    binary: String,
    disk: Durability,
    replica: bool,
    mode: DurabilityMode,
    /// Index of the row this one is compared with (its `local` on the same servers).
    baseline: Option<usize>,
}

struct Measured {
    shape: &'static str,
    calls: usize,
    per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
}

pub fn redis8(flag: Option<String>) -> Option<String> {
    flag.or_else(|| std::env::var("REDIS8_SERVER").ok()).or_else(|| {
        let cache = std::env::var("XDG_CACHE_HOME").unwrap_or_else(|_| format!("{}/.cache", std::env::var("HOME").unwrap_or_default()));
        let p = format!("{cache}/drover/redis8/bin/redis-server");
        std::path::Path::new(&p).exists().then_some(p)
    })
}

pub async fn run(secs: u64, redis8: Option<String>) -> Result<()> {
    let debian = std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
    let mut setups = vec![
        Setup {
            name: "local (primary + replica, no AOF)",
            binary: debian.clone(),
            disk: Durability::None,
            replica: true,
            mode: DurabilityMode::Local,
            baseline: None,
        },
        Setup {
            name: "replica (WAIT 1; primary + replica, no AOF)",
            binary: debian,
            disk: Durability::None,
            replica: true,
            mode: DurabilityMode::Replica,
            baseline: Some(0),
        },
    ];
    match &redis8 {
        Some(bin) => {
            setups.push(Setup {
                name: "local (AOF everysec)",
                binary: bin.clone(),
                disk: Durability::AofEverySec,
                replica: false,
                mode: DurabilityMode::Local,
                baseline: None,
            });
            setups.push(Setup {
                name: "aof (WAITAOF 1 0; AOF everysec)",
                binary: bin.clone(),
                disk: Durability::AofEverySec,
                replica: false,
                mode: DurabilityMode::Aof,
                baseline: Some(2),
            });
            setups.push(Setup {
                name: "local (AOF always)",
                binary: bin.clone(),
                disk: Durability::AofAlways,
                replica: false,
                mode: DurabilityMode::Local,
                baseline: None,
            });
            setups.push(Setup {
                name: "aof (WAITAOF 1 0; AOF always)",
                binary: bin.clone(),
                disk: Durability::AofAlways,
                replica: false,
                mode: DurabilityMode::Aof,
                baseline: Some(4),
            });
        }
        None => eprintln!("no Redis >= 7.2 (tests/redis8.sh, REDIS8_SERVER or --redis8): the aof rows are left out"),
    }
    let mut results: Vec<(usize, Vec<Measured>, String)> = Vec::new();
    for (i, s) in setups.iter().enumerate() {
        let primary = RedisServer::start_binary(&s.binary, s.disk);
        let _replica = s.replica.then(|| RedisServer::start_replica_of(&primary));
        let durability = QueueDurability {
            mode: s.mode,
            timeout: Duration::from_secs(5),
        };
        let store = RedisStore::connect(
            &primary.url(),
            "drover",
            JobDefaults {
                durability,
                ..JobDefaults::default()
            },
        )
        .await?;
        let version = version(&store).await?;
        for j in 0..200 {
            store.enqueue(noop(j, 1)).await?; // warm-up: connections, scripts
        }
        let seq = measure(&store, 1, secs).await?;
        let par = measure(&store, 100, secs).await?;
        results.push((i, vec![seq, par], version));
    }
    println!("| mode | redis | enqueue | calls | jobs/s | p50 ms | p99 ms | p99 vs local |");
    println!("|---|---|---|---:|---:|---:|---:|---:|");
    for (i, rows, version) in &results {
        let s = &setups[*i];
        for (k, m) in rows.iter().enumerate() {
            let ratio = s
                .baseline
                .and_then(|b| results.iter().find(|r| r.0 == b))
                .map(|(_, base, _)| format!("{:.1}×", m.p99_ms / base[k].p99_ms))
                .unwrap_or_else(|| "1×".into());
            println!(
                "| {} | {version} | {} | {} | {:.0} | {:.2} | {:.2} | {ratio} |",
                s.name, m.shape, m.calls, m.per_sec, m.p50_ms, m.p99_ms
            );
        }
    }
    Ok(())
}

async fn version(store: &RedisStore) -> Result<String> {
    let info: String = redis::cmd("INFO").arg("server").query_async(&mut store.connection()).await?;
    Ok(info
        .lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .unwrap_or("?")
        .trim()
        .to_owned())
}

/// `lanes` callers enqueue one job at a time each, for `secs`; every call timed.
async fn measure(store: &RedisStore, lanes: usize, secs: u64) -> Result<Measured> {
    let lat = Arc::new(Mutex::new(Vec::<Duration>::new()));
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    let tasks: Vec<_> = (0..lanes)
        .map(|lane| {
            let (store, lat) = (store.clone(), lat.clone());
            tokio::spawn(async move {
                let mut mine = Vec::new();
                let mut i = lane;
                while Instant::now() < end {
                    let t = Instant::now();
                    store.enqueue(noop(i, 1)).await?;
                    mine.push(t.elapsed());
                    i += lanes;
                }
                lat.lock().await.extend(mine);
                anyhow::Ok(())
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    let took = start.elapsed().as_secs_f64();
    let mut l = std::mem::take(&mut *lat.lock().await);
    l.sort();
    let pct = |p: f64| l[((l.len() as f64 * p) as usize).min(l.len() - 1)].as_secs_f64() * 1000.0;
    Ok(Measured {
        shape: if lanes == 1 { "sequential" } else { "100 in flight" },
        calls: l.len(),
        per_sec: l.len() as f64 / took,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
    })
}
