//! The shared resilience layer seen from outside: several real worker processes, one
//! seller account, the simulator counting every call.
use crate::jobs_support;

use std::time::{Duration, Instant};

use drover::job::{JobId, JobKind, JobState};
use drover::queue::JobStore;
use drover_tests::sim::{AccountSpec, DeleteOutcome, FaultSpec, Operation, RateLimit, SimConfig};
use jobs_support::{plans, Stack, MARKETPLACE};
use serde_json::json;

fn sim() -> SimConfig {
    SimConfig {
        accounts: 0,
        ..SimConfig::fast()
    }
}

async fn cleanup_jobs(stack: &Stack, account: &str, skus: &[String], jobs: usize) -> Vec<JobId> {
    let mut ids = Vec::new();
    for chunk in skus.chunks(skus.len().div_ceil(jobs)) {
        ids.push(
            stack
                .submit(
                    JobKind::Cleanup,
                    json!({"account_id": account, "marketplace_id": MARKETPLACE, "skus": chunk}),
                )
                .await,
        );
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_worker_processes_on_one_account_hold_its_rate_and_never_get_a_429() {
    // SP-API's plans hold 2 s or more of burst (deleteListingsItem: 5/s, burst 10);
    // this one holds 1 s, at ten times SP-API's rate.
    const RATE: f64 = 50.0;
    let mut limits = plans();
    limits.insert(Operation::DeleteListingsItem, RateLimit::new(RATE, 50));
    let mut stack = Stack::start_with(sim(), "", limits).await;
    let acct = stack
        .account(AccountSpec {
            skus: Some(600),
            ..AccountSpec::new("seller-rate")
        })
        .await;
    let skus = stack.sim.admin().skus(acct.as_str()).await.unwrap();
    for i in 0..4 {
        stack.spawn_worker(&format!("worker-{i}"), &[("DROVER_WORKER__JOBS__CLEANUP_PARALLELISM", "8")]);
    }
    let ids = cleanup_jobs(&stack, acct.as_str(), &skus, 8).await;
    for id in &ids {
        let job = stack.finish(id, Duration::from_secs(60)).await;
        assert_eq!(job.state, JobState::Succeeded, "{job:#?}");
    }
    let workers_used: std::collections::HashSet<String> = {
        let mut w = std::collections::HashSet::new();
        for id in &ids {
            for a in stack.store.get(id).await.unwrap().unwrap().attempt_history {
                w.insert(a.worker);
            }
        }
        w
    };
    assert!(workers_used.len() >= 3, "the load was spread over the processes: {workers_used:?}");

    let stats = stack.sim.admin().stats().await.unwrap();
    let account = &stats.accounts[acct.as_str()];
    let deletes = &account.operations[&Operation::DeleteListingsItem];
    assert_eq!(deletes.rate_limited, 0, "no call beyond the plan: {deletes:?}");
    assert_eq!(deletes.accepted, 600);
    // The aggregate rate after the initial burst, from the simulator's own timestamps.
    let mut at: Vec<_> = account
        .deletes
        .iter()
        .filter(|d| d.outcome == DeleteOutcome::Deleted)
        .map(|d| d.at)
        .collect();
    at.sort();
    // After the initial burst: the sustained rate.
    let steady = &at[60..];
    let secs = (*steady.last().unwrap() - steady[0]).num_milliseconds() as f64 / 1000.0;
    let rate = (steady.len() - 1) as f64 / secs;
    assert!(
        (rate - RATE).abs() <= RATE * 0.10,
        "aggregate rate {rate:.1}/s is not within 10% of {RATE}/s"
    );
    println!("aggregate deleteListingsItem rate across 4 workers: {rate:.1}/s (plan {RATE}/s), 0 × 429");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_5xx_storm_opens_the_breaker_for_every_worker_and_recovery_closes_it() {
    let mut limits = plans();
    limits.insert(Operation::DeleteListingsItem, RateLimit::new(150.0, 10));
    let mut stack = Stack::start_with(sim(), "", limits).await;
    let acct = stack
        .account(AccountSpec {
            skus: Some(3000),
            ..AccountSpec::new("seller-breaker")
        })
        .await;
    let skus = stack.sim.admin().skus(acct.as_str()).await.unwrap();
    stack
        .faults(
            &acct,
            FaultSpec {
                latency_ms: 3,
                ..FaultSpec::default()
            },
        )
        .await;
    // Three jobs of one account run at once (one per worker): the account's cap allows it.
    for i in 0..3 {
        stack.spawn_worker(
            &format!("worker-{i}"),
            &[
                ("DROVER_WORKER__CONCURRENCY__CLEANUP", "1"),
                ("DROVER_WORKER__PREFETCH", "0"),
                ("DROVER_WORKER__JOBS__CLEANUP__PER_ACCOUNT", "3"),
            ],
        );
    }
    let ids = cleanup_jobs(&stack, acct.as_str(), &skus, 3).await;
    // Let all three run, then fail every call.
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let mut running = 0;
        for id in &ids {
            let job = stack.store.get(id).await.unwrap().unwrap();
            if job.progress.is_some_and(|p| p.done >= 100) {
                running += 1;
            }
        }
        if running == ids.len() {
            break;
        }
        assert!(Instant::now() < until, "jobs not all running\n{}", stack.logs());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stack
        .faults(
            &acct,
            FaultSpec {
                error_rate_5xx: 1.0,
                ..FaultSpec::default()
            },
        )
        .await;
    let storm = Instant::now();
    // Every job (one per worker process) is paused by the open breaker.
    let mut paused_at = Vec::new();
    for id in &ids {
        loop {
            let job = stack.store.get(id).await.unwrap().unwrap();
            if job.state == JobState::Scheduled {
                let why = job.attempt_history.last().and_then(|a| a.error.clone()).expect("reason");
                assert!(why.message.contains("circuit open"), "{why:?}");
                paused_at.push(storm.elapsed());
                break;
            }
            assert!(
                storm.elapsed() < Duration::from_secs(20) && !job.state.is_terminal(),
                "{job:#?}\n{}",
                stack.logs()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let spread = paused_at.iter().max().unwrap().saturating_sub(*paused_at.iter().min().unwrap());
    assert!(
        spread < Duration::from_secs(1),
        "every worker saw the open breaker within 1 s: {paused_at:?}"
    );
    // While open, calls stop (only half-open probes get through).
    let before = stack.sim.admin().stats().await.unwrap().accounts[acct.as_str()].operations[&Operation::DeleteListingsItem].calls;
    tokio::time::sleep(Duration::from_millis(900)).await;
    let after = stack.sim.admin().stats().await.unwrap().accounts[acct.as_str()].operations[&Operation::DeleteListingsItem].calls;
    assert!(after - before <= 2, "{} calls while the breaker was open", after - before);

    stack.sim.admin().clear_faults(acct.as_str()).await.unwrap();
    for id in &ids {
        let job = stack.finish(id, Duration::from_secs(90)).await;
        assert!(matches!(job.state, JobState::Succeeded | JobState::Partial), "{job:#?}");
    }
    let r = drover::resilience::Resilience::new(
        redis::Client::open(stack.redis.url())
            .unwrap()
            .get_connection_manager()
            .await
            .unwrap(),
        "drover",
        drover::resilience::ResilienceConfig::default(),
        &drover::crypto::EncryptionKey::dev(),
    );
    let snapshot = serde_json::to_value(r.snapshot(&acct).await.unwrap()).unwrap();
    assert_eq!(
        snapshot["operations"]["deleteListingsItem"]["breaker"]["state"], "closed",
        "{snapshot}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_jobs_for_one_account_make_one_token_call_and_no_secret_reaches_a_log() {
    let mut stack = Stack::start(sim(), "").await;
    let acct = stack
        .account(AccountSpec {
            skus: Some(50),
            ..AccountSpec::new("seller-token")
        })
        .await;
    let skus = stack.sim.admin().skus(acct.as_str()).await.unwrap();
    for i in 0..2 {
        stack.spawn_worker(&format!("worker-{i}"), &[("DROVER_WORKER__CONCURRENCY__CLEANUP", "25")]);
    }
    let ids = cleanup_jobs(&stack, acct.as_str(), &skus, 50).await;
    assert_eq!(ids.len(), 50);
    for id in &ids {
        let job = stack.finish(id, Duration::from_secs(60)).await;
        assert_eq!(job.state, JobState::Succeeded, "{job:#?}");
    }
    let stats = stack.sim.admin().stats().await.unwrap();
    assert_eq!(stats.accounts[acct.as_str()].token_grants, 1, "one LWA call for all 50 jobs");

    // Secrets: the client secret, the refresh token and any access token never appear
    // in the workers' logs (stdout + stderr, info level and up).
    let logs = stack.logs();
    assert!(logs.contains("worker started"), "logs were captured");
    for secret in [stack.sim.config().client_secret.as_str(), &format!("rt-{}", acct.as_str()), "Atza|"] {
        assert!(!logs.contains(secret), "a secret ({}…) reached the logs", &secret[..4]);
    }
}

fn report_calls(stats: &drover_tests::sim::StatsSnapshot, account: &str) -> u64 {
    let ops = &stats.accounts[account].operations;
    [Operation::CreateReport, Operation::GetReport, Operation::GetReportDocument]
        .iter()
        .filter_map(|op| ops.get(op))
        .map(|s| s.calls)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_quota_window_puts_the_account_in_cooldown_visible_through_the_api_within_a_second_and_report_calls_stop() {
    let mut stack = Stack::start(sim(), "").await;
    let acct = stack
        .account(AccountSpec {
            orders: Some(3000),
            ..AccountSpec::new("seller-quota")
        })
        .await;
    let api = stack.start_api().await;
    stack.spawn_worker("worker-1", &[]);
    stack.spawn_worker("worker-2", &[]);
    let end = chrono::Utc::now();
    for days in [30, 60] {
        stack
            .submit(
                JobKind::Backfill,
                json!({"account_id": acct.as_str(), "marketplace_id": MARKETPLACE,
                       "report_type": "GET_FLAT_FILE_ALL_ORDERS_DATA_BY_ORDER_DATE_GENERAL",
                       "start": end - chrono::Duration::days(days), "end": end - chrono::Duration::days(days - 30)}),
            )
            .await;
    }
    let http = reqwest::Client::new();
    let limits = || async {
        let res = http
            .get(format!("{api}/v1/accounts/{}/limits", acct.as_str()))
            .bearer_auth(drover_api::DEV_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        res.json::<serde_json::Value>().await.unwrap()
    };
    assert!(limits().await["cooldown"].is_null(), "no cooldown before the quota window");
    // Let report calls flow, then exhaust the quota for 4 s.
    let until = Instant::now() + Duration::from_secs(30);
    while report_calls(&stack.sim.admin().stats().await.unwrap(), acct.as_str()) < 30 {
        assert!(Instant::now() < until, "no report calls\n{}", stack.logs());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stack
        .faults(
            &acct,
            FaultSpec {
                quota_window: Some(drover_tests::sim::QuotaWindow { seconds: 4.0 }),
                ..FaultSpec::default()
            },
        )
        .await;
    let window_opened = Instant::now();
    let cooldown = loop {
        let l = limits().await;
        if !l["cooldown"].is_null() {
            break l["cooldown"].clone();
        }
        assert!(
            window_opened.elapsed() < Duration::from_secs(5),
            "cooldown never visible\n{}",
            stack.logs()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let visible_after = window_opened.elapsed();
    assert!(visible_after < Duration::from_secs(1), "cooldown visible after {visible_after:?}");
    assert!(cooldown["reason"].as_str().unwrap().contains("429"), "{cooldown}");
    let until: chrono::DateTime<chrono::Utc> = cooldown["until"].as_str().unwrap().parse().unwrap();

    // From the moment it is visible until it ends, no worker calls a report operation
    // (calls already on the wire when the first 429 came back are counted before).
    tokio::time::sleep(Duration::from_millis(100)).await;
    let at_start = report_calls(&stack.sim.admin().stats().await.unwrap(), acct.as_str());
    let left = (until - chrono::Utc::now())
        .to_std()
        .unwrap_or_default()
        .saturating_sub(Duration::from_millis(150));
    tokio::time::sleep(left).await;
    let at_end = report_calls(&stack.sim.admin().stats().await.unwrap(), acct.as_str());
    assert_eq!(at_end, at_start, "report calls during the cooldown (until {until})");
    println!("cooldown visible through the API {visible_after:?} after the quota window opened; 0 report calls during it");
}
