//! `drover::resilience` against a private redis-server: several `Resilience` instances on
//! separate connections stand in for separate worker processes sharing one Redis.
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use drover::job::AccountId;
use drover::lwa::LwaCredentials;
use drover::resilience::{
    BreakerConfig, BreakerState, CallOutcome, ColdStart, CooldownConfig, ExposeSecret, Operation, RateSpec, Resilience, ResilienceConfig,
    ResilienceError, SecretString,
};
use drover_tests::harness::{Durability, RedisServer};
use tokio_util::sync::CancellationToken;

async fn instances(redis: &RedisServer, n: usize, config: &ResilienceConfig) -> Vec<Resilience> {
    let mut out = Vec::new();
    for _ in 0..n {
        let client = redis::Client::open(redis.url()).unwrap();
        let conn = redis::aio::ConnectionManager::new(client).await.unwrap();
        out.push(Resilience::new(conn, "t", config.clone(), &drover::crypto::EncryptionKey::dev()));
    }
    out
}

fn account() -> AccountId {
    AccountId::parse("acct-1").unwrap()
}

/// The credentials a token is got with; `refresh` tells sets apart.
fn credentials(refresh: &str) -> LwaCredentials {
    LwaCredentials {
        client_id: "amzn1.application-oa2-client.test".into(),
        client_secret: SecretString::from("client-secret"),
        refresh_token: SecretString::from(refresh.to_owned()),
    }
}

fn creds() -> LwaCredentials {
    credentials("Atzr|first")
}

fn with_limit(op: Operation, rate: f64, burst: u32) -> ResilienceConfig {
    let mut c = ResilienceConfig::default();
    c.limits.insert(op, RateSpec::new(rate, burst));
    c
}

/// The simulator's usage-plan bucket (tests/simulator/src/ratelimit.rs), replayed over times.
fn bucket_refusals(times: &[Duration], rate: f64, burst: u32, start_tokens: f64) -> usize {
    let (mut tokens, mut at, mut refused) = (start_tokens, Duration::ZERO, 0);
    for &t in times {
        tokens = (tokens + (t.saturating_sub(at)).as_secs_f64() * rate).min(f64::from(burst));
        at = at.max(t);
        if tokens >= 1.0 - 1e-9 {
            tokens -= 1.0;
        } else {
            refused += 1;
        }
    }
    refused
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_processes_share_one_rate_of_20_per_second_within_10_percent_and_inside_the_bucket() {
    let redis = RedisServer::start(Durability::None);
    let config = with_limit(Operation::GetOrders, 20.0, 5);
    let procs = instances(&redis, 4, &config).await;
    let start = Instant::now();
    let run_for = Duration::from_secs(3);
    let mut tasks = Vec::new();
    for r in &procs {
        for _ in 0..3 {
            let r = r.clone();
            tasks.push(tokio::spawn(async move {
                let cancel = CancellationToken::new();
                let mut times = Vec::new();
                while start.elapsed() < run_for {
                    r.acquire(&account(), Operation::GetOrders, &cancel).await.unwrap();
                    times.push(start.elapsed());
                }
                times
            }));
        }
    }
    let mut times: Vec<Duration> = Vec::new();
    for t in tasks {
        times.extend(t.await.unwrap());
    }
    times.sort();
    // After the first second (past any burst), count a 2 s stretch.
    let steady = times.iter().filter(|t| **t >= Duration::from_secs(1) && **t < run_for).count() as f64 / 2.0;
    assert!((18.0..=22.0).contains(&steady), "aggregate steady rate {steady}/s, want 20 ± 10%");
    // Whatever the marketplace's bucket held before (here: nothing), none is refused.
    assert_eq!(bucket_refusals(&times, 20.0, 5, 0.0), 0, "calls {times:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acquire_refuses_a_slot_beyond_max_wait_naming_when_it_comes_and_stops_when_cancelled() {
    let redis = RedisServer::start(Durability::None);
    let mut config = with_limit(Operation::GetReport, 1.0, 1);
    config.max_wait = Duration::from_millis(500);
    config.limiter.cold_start = ColdStart::Full;
    let r = &instances(&redis, 1, &config).await[0];
    let cancel = CancellationToken::new();
    assert_eq!(r.acquire(&account(), Operation::GetReport, &cancel).await.unwrap(), Duration::ZERO);
    let err = r.acquire(&account(), Operation::GetReport, &cancel).await.unwrap_err();
    // The refusal names how far away the next slot is (about one interval at 1/s less
    // the margin), so a parked job sleeps until then and no longer.
    assert!(
        matches!(err, ResilienceError::WaitTooLong(d) if d > Duration::from_millis(900) && d < Duration::from_millis(1200)),
        "{err}"
    );

    let mut config = with_limit(Operation::GetReport, 0.5, 1);
    config.max_wait = Duration::from_secs(10);
    let r = &instances(&redis, 1, &config).await[0];
    let cancel = CancellationToken::new();
    let stopper = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        stopper.cancel();
    });
    let t0 = Instant::now();
    let err = r
        .acquire(&AccountId::parse("acct-2").unwrap(), Operation::GetReport, &cancel)
        .await
        .unwrap_err();
    assert!(matches!(err, ResilienceError::Cancelled), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_announced_rate_is_adopted_by_every_instance_and_reverting_clears_it() {
    let redis = RedisServer::start(Durability::None);
    let config = with_limit(Operation::GetListingsItem, 50.0, 2);
    let procs = instances(&redis, 2, &config).await;
    procs[0]
        .observe_rate_limit(&account(), Operation::GetListingsItem, 5.0)
        .await
        .unwrap();
    let snap = procs[1].snapshot(&account()).await.unwrap();
    let op = &snap.operations[&Operation::GetListingsItem];
    assert!(op.adapted);
    assert_eq!(op.rate, 5.0);
    let cancel = CancellationToken::new();
    let t0 = Instant::now();
    for _ in 0..5 {
        procs[1].acquire(&account(), Operation::GetListingsItem, &cancel).await.unwrap();
    }
    // 5 calls at 5/s (less the margin) from an empty bucket take about a second, not 0.1 s.
    assert!(t0.elapsed() >= Duration::from_millis(950), "{:?}", t0.elapsed());
    procs[1]
        .observe_rate_limit(&account(), Operation::GetListingsItem, 50.0)
        .await
        .unwrap();
    let snap = procs[0].snapshot(&account()).await.unwrap();
    assert!(!snap.operations[&Operation::GetListingsItem].adapted);
}

/// Found by the audits of 2026-12-05: a 429's `Retry-After` stayed with the call that
/// got it, so every other worker of the account sent into the same wait and was refused
/// in turn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_after_a_429_gives_no_instance_a_slot_before_its_end() {
    let redis = RedisServer::start(Durability::None);
    let mut config = with_limit(Operation::DeleteListingsItem, 50.0, 10);
    config.max_wait = Duration::from_millis(500);
    config.limiter.cold_start = ColdStart::Full;
    let procs = instances(&redis, 2, &config).await;
    let cancel = CancellationToken::new();
    // A full bucket: slots at once, until the marketplace says otherwise.
    assert_eq!(
        procs[1].acquire(&account(), Operation::DeleteListingsItem, &cancel).await.unwrap(),
        Duration::ZERO
    );
    procs[0]
        .hold_off(&account(), Operation::DeleteListingsItem, Duration::from_secs(10))
        .await
        .unwrap();
    // The other instance may not wait that long: it is told when the slot comes, to park.
    let err = procs[1]
        .acquire(&account(), Operation::DeleteListingsItem, &cancel)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ResilienceError::WaitTooLong(d) if d > Duration::from_secs(9) && d <= Duration::from_secs(10)),
        "{err}"
    );
    // A shorter hold never brings the slot nearer.
    procs[1]
        .hold_off(&account(), Operation::DeleteListingsItem, Duration::from_millis(100))
        .await
        .unwrap();
    let err = procs[0]
        .acquire(&account(), Operation::DeleteListingsItem, &cancel)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ResilienceError::WaitTooLong(d) if d > Duration::from_secs(9)),
        "{err}"
    );
    // Another operation of the account is not held.
    assert_eq!(
        procs[1].acquire(&account(), Operation::GetListingsItem, &cancel).await.unwrap(),
        Duration::ZERO
    );
}

fn short_cooldowns() -> ResilienceConfig {
    ResilienceConfig {
        cooldown: CooldownConfig {
            steps: vec![Duration::from_millis(200), Duration::from_millis(400), Duration::from_millis(800)],
            decay_after: Duration::from_millis(1500),
        },
        ..ResilienceConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cooldown_entered_by_one_instance_is_seen_by_another_within_a_second() {
    let redis = RedisServer::start(Durability::None);
    let mut config = ResilienceConfig::default();
    config.cooldown.steps = vec![Duration::from_secs(600)];
    let procs = instances(&redis, 2, &config).await;
    assert!(procs[1].cooldown(&account()).await.unwrap().is_none());
    let t0 = Instant::now();
    let entered = procs[0].enter_cooldown(&account(), "429 on createReport", None).await.unwrap();
    let seen = procs[1].cooldown(&account()).await.unwrap().expect("visible to the other instance");
    assert!(t0.elapsed() < Duration::from_secs(1));
    assert_eq!(seen, entered);
    assert_eq!(seen.level, 1);
    assert_eq!(seen.reason, "429 on createReport");
    let length = (seen.until - seen.since).num_milliseconds();
    assert!((599_000..=600_000).contains(&length), "{length}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cooldowns_escalate_step_by_step_concurrent_429s_count_once_and_quiet_resets() {
    let redis = RedisServer::start(Durability::None);
    let procs = instances(&redis, 4, &short_cooldowns()).await;
    let mut levels = Vec::new();
    for round in 0..4 {
        // Eight 429s from four processes at once: one escalation.
        let mut hits = Vec::new();
        for i in 0..8 {
            let r = procs[i % 4].clone();
            hits.push(tokio::spawn(async move {
                r.enter_cooldown(&account(), "429 on createReport", None).await.unwrap()
            }));
        }
        let mut seen = Vec::new();
        for h in hits {
            seen.push(h.await.unwrap());
        }
        assert!(
            seen.iter().all(|c| c.level == seen[0].level && c.until == seen[0].until),
            "round {round}: {seen:?}"
        );
        let cd = &seen[0];
        levels.push((cd.level, (cd.until - cd.since).num_milliseconds()));
        let left = (cd.until - chrono::Utc::now()).to_std().unwrap_or_default();
        tokio::time::sleep(left + Duration::from_millis(50)).await;
        assert!(procs[round % 4].cooldown(&account()).await.unwrap().is_none(), "ended");
    }
    assert_eq!(levels, vec![(1, 200), (2, 400), (3, 800), (3, 800)]);
    // A server hint longer than the step wins; a quiet period past decay_after resets.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let cd = procs[0]
        .enter_cooldown(&account(), "429", Some(Duration::from_millis(700)))
        .await
        .unwrap();
    assert_eq!((cd.level, (cd.until - cd.since).num_milliseconds()), (1, 700));
}

fn fast_breaker() -> ResilienceConfig {
    ResilienceConfig {
        breaker: BreakerConfig {
            window: Duration::from_secs(10),
            min_calls: 4,
            failure_ratio: 0.5,
            open_for: Duration::from_millis(300),
        },
        ..ResilienceConfig::default()
    }
}

async fn probes_won(procs: &[Resilience], op: Operation) -> usize {
    let mut tries = Vec::new();
    for i in 0..12 {
        let r = procs[i % procs.len()].clone();
        tries.push(tokio::spawn(async move { r.breaker_permit(&account(), op).await }));
    }
    let mut won = 0;
    for t in tries {
        match t.await.unwrap() {
            Ok(p) => {
                assert!(p.probe);
                won += 1;
            }
            Err(ResilienceError::BreakerOpen { .. }) => {}
            Err(e) => panic!("{e}"),
        }
    }
    won
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_breaker_opens_past_half_failures_lets_one_probe_across_instances_and_closes_on_success() {
    let redis = RedisServer::start(Durability::None);
    let procs = instances(&redis, 4, &fast_breaker()).await;
    let op = Operation::GetOrders;
    let a = account();
    for (i, outcome) in [
        CallOutcome::Success,
        CallOutcome::Success,
        CallOutcome::Failure,
        CallOutcome::Failure,
    ]
    .into_iter()
    .enumerate()
    {
        assert_eq!(
            procs[i].record(&a, op, outcome).await.unwrap(),
            BreakerState::Closed,
            "4 calls at 50% stay closed"
        );
    }
    assert!(matches!(
        procs[0].record(&a, op, CallOutcome::Failure).await.unwrap(),
        BreakerState::Open { .. }
    ));
    for r in &procs {
        assert!(matches!(
            r.breaker_permit(&a, op).await,
            Err(ResilienceError::BreakerOpen {
                op: Operation::GetOrders,
                ..
            })
        ));
    }
    // Other operations of the account are unaffected.
    assert!(!procs[1].breaker_permit(&a, Operation::GetReport).await.unwrap().probe);

    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(probes_won(&procs, op).await, 1, "exactly one half-open probe");
    assert!(matches!(
        procs[2].record(&a, op, CallOutcome::Failure).await.unwrap(),
        BreakerState::Open { .. }
    ));
    assert!(procs[3].breaker_permit(&a, op).await.is_err(), "a failed probe re-opens");

    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(probes_won(&procs, op).await, 1);
    assert_eq!(procs[1].record(&a, op, CallOutcome::Success).await.unwrap(), BreakerState::Closed);
    for r in &procs {
        assert!(!r.breaker_permit(&a, op).await.unwrap().probe, "closed for everyone");
    }
    let snap = procs[0].snapshot(&a).await.unwrap();
    let json = serde_json::to_value(&snap).unwrap();
    assert_eq!(json["operations"]["getOrders"]["breaker"]["state"], "closed");
}

type TokenFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(SecretString, Duration), String>> + Send>>;

/// A token fetch that counts its calls and takes 200 ms, like a slow LWA endpoint.
fn counting_fetch(count: &Arc<AtomicUsize>) -> impl FnOnce() -> TokenFuture {
    let count = count.clone();
    move || {
        Box::pin(async move {
            let n = count.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::time::sleep(Duration::from_millis(200)).await;
            Ok((SecretString::from(format!("Atza|secret-token-{n}")), Duration::from_secs(3600)))
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_callers_in_five_processes_fetch_the_token_once_and_invalidation_fetches_once_more() {
    let redis = RedisServer::start(Durability::None);
    let procs = instances(&redis, 5, &ResilienceConfig::default()).await;
    let count = Arc::new(AtomicUsize::new(0));
    let mut callers = Vec::new();
    for i in 0..50 {
        let r = procs[i % 5].clone();
        let fetch = counting_fetch(&count);
        callers.push(tokio::spawn(async move { r.access_token(&account(), &creds(), fetch).await }));
    }
    for c in callers {
        assert_eq!(c.await.unwrap().unwrap().expose_secret(), "Atza|secret-token-1");
    }
    assert_eq!(count.load(Ordering::SeqCst), 1);

    let old = SecretString::from("Atza|secret-token-1".to_owned());
    procs[0].invalidate_token(&account(), &creds(), &old).await.unwrap();
    let mut callers = Vec::new();
    for _ in 0..10 {
        let r = procs[0].clone();
        let fetch = counting_fetch(&count);
        callers.push(tokio::spawn(async move { r.access_token(&account(), &creds(), fetch).await }));
    }
    for c in callers {
        assert_eq!(c.await.unwrap().unwrap().expose_secret(), "Atza|secret-token-2");
    }
    assert_eq!(count.load(Ordering::SeqCst), 2);
    // A late 401 elsewhere with the old token must not throw away the new one.
    procs[3].invalidate_token(&account(), &creds(), &old).await.unwrap();
    let t = procs[3].access_token(&account(), &creds(), counting_fetch(&count)).await.unwrap();
    assert_eq!(t.expose_secret(), "Atza|secret-token-2");
    assert_eq!(count.load(Ordering::SeqCst), 2);
}

/// An account given other credentials (`PUT /v1/accounts/{id}/credentials`) gets a token
/// of the new ones at its next call, in the process that held the old one and in every
/// other. Found by an audit: the cache was per account, so workers kept the old
/// credentials' token until it expired, up to an hour.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_token_got_with_replaced_credentials_is_not_used_with_the_new_ones() {
    let redis = RedisServer::start(Durability::None);
    let procs = instances(&redis, 2, &ResilienceConfig::default()).await;
    let count = Arc::new(AtomicUsize::new(0));
    let old = procs[0].access_token(&account(), &creds(), counting_fetch(&count)).await.unwrap();
    assert_eq!(old.expose_secret(), "Atza|secret-token-1");

    let replaced = credentials("Atzr|second");
    let new = procs[0].access_token(&account(), &replaced, counting_fetch(&count)).await.unwrap();
    assert_eq!(new.expose_secret(), "Atza|secret-token-2", "the process that held the old token");
    let elsewhere = procs[1].access_token(&account(), &replaced, counting_fetch(&count)).await.unwrap();
    assert_eq!(
        elsewhere.expose_secret(),
        "Atza|secret-token-2",
        "another process shares the new one"
    );
    assert_eq!(count.load(Ordering::SeqCst), 2, "one exchange for each set of credentials");
}

/// Found by the review of this stop's diffs (2026-12-06): with one token per account,
/// a run still holding the replaced credentials and a run with the new ones refreshed
/// over each other's token at every call, and the old credentials' refused refreshes,
/// noted for the account, failed the new credentials' callers without trying. Each set
/// of credentials keeps its own token and its own failures.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn old_and_new_credentials_keep_their_own_tokens_and_failures() {
    let redis = RedisServer::start(Durability::None);
    let procs = instances(&redis, 2, &ResilienceConfig::default()).await;
    let count = Arc::new(AtomicUsize::new(0));
    let (old, new) = (creds(), credentials("Atzr|second"));
    for round in 0..3 {
        let a = procs[round % 2]
            .access_token(&account(), &old, counting_fetch(&count))
            .await
            .unwrap();
        let b = procs[(round + 1) % 2]
            .access_token(&account(), &new, counting_fetch(&count))
            .await
            .unwrap();
        assert_ne!(a.expose_secret(), b.expose_secret());
    }
    assert_eq!(count.load(Ordering::SeqCst), 2, "one exchange for each set of credentials");

    let revoked = credentials("Atzr|revoked");
    for _ in 0..2 {
        let refused = procs[0]
            .access_token(&account(), &revoked, || async {
                Err::<(SecretString, Duration), _>("credentials rejected: invalid_grant")
            })
            .await;
        assert!(refused.is_err());
    }
    let fresh = credentials("Atzr|third");
    let t = procs[1].access_token(&account(), &fresh, counting_fetch(&count)).await;
    assert!(t.is_ok(), "other credentials' refusals fail these: {t:?}");
}

/// Callers in one process behind an exchange that hangs (LWA not answering) give up after
/// `wait_timeout`, as callers in other processes do. Found by an audit of unbounded waits:
/// they queued on the process's own flight lock before their deadline was set, so each
/// waited out the exchange ahead of it (up to the marketplace timeout, 30 s, each in turn).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn callers_behind_a_hung_exchange_in_the_same_process_give_up_within_the_wait_timeout() {
    let redis = RedisServer::start(Durability::None);
    let mut config = ResilienceConfig::default();
    config.token.wait_timeout = Duration::from_secs(1);
    let procs = instances(&redis, 1, &config).await;
    let hung = {
        let r = procs[0].clone();
        tokio::spawn(async move {
            r.access_token(&account(), &creds(), || async {
                tokio::time::sleep(Duration::from_secs(10)).await;
                Ok::<_, String>((SecretString::from("Atza|late".to_owned()), Duration::from_secs(3600)))
            })
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let count = Arc::new(AtomicUsize::new(0));
    let began = std::time::Instant::now();
    let mut callers = Vec::new();
    for _ in 0..3 {
        let (r, fetch) = (procs[0].clone(), counting_fetch(&count));
        callers.push(tokio::spawn(async move { r.access_token(&account(), &creds(), fetch).await }));
    }
    for c in callers {
        let r = c.await.unwrap();
        assert!(r.is_err(), "no token while the exchange hangs: {r:?}");
    }
    assert!(began.elapsed() < Duration::from_secs(3), "given up after {:?}", began.elapsed());
    assert_eq!(count.load(Ordering::SeqCst), 0, "none ran an exchange of its own meanwhile");
    hung.abort();
}

/// The refresh lock is held for as long as its refresher works and no longer: a slow
/// exchange keeps it (one exchange across all processes), and a refresher that dies
/// mid-exchange holds the others back for seconds, not the 10 s the lock used to live.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_refresh_keeps_its_lock_and_a_dead_refreshers_lock_frees_within_seconds() {
    let redis = RedisServer::start(Durability::None);
    let procs = instances(&redis, 2, &ResilienceConfig::default()).await;
    let lock_ttl = ResilienceConfig::default().token.lock_ttl;

    // A refresher that takes twice the lock's life: the other process waits for its token.
    let count = Arc::new(AtomicUsize::new(0));
    let slow = {
        let (r, count) = (procs[0].clone(), count.clone());
        tokio::spawn(async move {
            r.access_token(&account(), &creds(), move || async move {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(lock_ttl * 2).await;
                Ok::<_, String>((SecretString::from("Atza|slow".to_owned()), Duration::from_secs(3600)))
            })
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let other = procs[1].access_token(&account(), &creds(), counting_fetch(&count)).await.unwrap();
    assert_eq!(other.expose_secret(), "Atza|slow", "the other process ran an exchange of its own");
    assert_eq!(slow.await.unwrap().unwrap().expose_secret(), "Atza|slow");
    assert_eq!(count.load(Ordering::SeqCst), 1);

    // A refresher that dies mid-exchange (its task ends, as a killed process does).
    let other_account = AccountId::parse("acct-2").unwrap();
    let dying = {
        let (r, account) = (procs[0].clone(), other_account.clone());
        tokio::spawn(async move {
            r.access_token(&account, &creds(), || async {
                std::future::pending::<()>().await;
                Err::<(SecretString, Duration), String>("never".to_owned())
            })
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    dying.abort();
    let t0 = Instant::now();
    let t = procs[1]
        .access_token(&other_account, &creds(), counting_fetch(&count))
        .await
        .unwrap();
    assert!(t.expose_secret().starts_with("Atza|secret-token-"));
    // Its lock runs out (3 s) and another takes over: a dead refresher holds the others
    // back for the lock's life, never the token wait's (a loaded machine adds its own).
    assert!(
        t0.elapsed() <= lock_ttl + Duration::from_millis(1500),
        "a dead refresher held the others back {:?}",
        t0.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_refresh_releases_the_lock_and_one_waiter_retries() {
    let redis = RedisServer::start(Durability::None);
    let procs = instances(&redis, 3, &ResilienceConfig::default()).await;
    let count = Arc::new(AtomicUsize::new(0));
    let mut callers = Vec::new();
    for i in 0..9 {
        let r = procs[i % 3].clone();
        let count = count.clone();
        callers.push(tokio::spawn(async move {
            r.access_token(&account(), &creds(), move || async move {
                let n = count.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(100)).await;
                if n == 0 {
                    Err("LWA said 503".to_owned())
                } else {
                    Ok((SecretString::from("Atza|fresh".to_owned()), Duration::from_secs(3600)))
                }
            })
            .await
        }));
    }
    let t0 = Instant::now();
    let (mut ok, mut failed) = (0, 0);
    for c in callers {
        match c.await.unwrap() {
            Ok(t) => {
                assert_eq!(t.expose_secret(), "Atza|fresh");
                ok += 1;
            }
            Err(ResilienceError::Token(msg)) => {
                assert!(msg.contains("503"), "{msg}");
                failed += 1;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!((ok, failed), (8, 1));
    assert_eq!(count.load(Ordering::SeqCst), 2);
    assert!(t0.elapsed() < Duration::from_secs(5), "nobody waited for the timeout");
}

/// Fairness and runtime audit of 2026-12-06: a refresh that failed left no trace, so
/// against a token service that keeps failing every caller of the account ran an exchange
/// of its own, one after another (a process's callers take turns, each finding no token
/// and nobody refreshing): ten calls, ten exchanges sent to a failing service, each
/// waited for. After a second failure within a second, callers are told so at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_service_that_keeps_failing_is_asked_at_most_twice_a_second() {
    let redis = RedisServer::start(Durability::None);
    let procs = instances(&redis, 2, &ResilienceConfig::default()).await;
    let count = Arc::new(AtomicUsize::new(0));
    let mut callers = Vec::new();
    for i in 0..10 {
        let r = procs[i % 2].clone();
        let count = count.clone();
        callers.push(tokio::spawn(async move {
            r.access_token(&account(), &creds(), move || async move {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
                Err::<(SecretString, Duration), _>("LWA said 503".to_owned())
            })
            .await
        }));
    }
    for c in callers {
        match c.await.unwrap() {
            Err(ResilienceError::Token(msg)) => assert!(msg.contains("503"), "{msg}"),
            other => panic!("{:?}", other.map(|_| "a token")),
        }
    }
    assert!(count.load(Ordering::SeqCst) <= 2, "{} exchanges", count.load(Ordering::SeqCst));
    // A second later the service is asked again, and its token is kept.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let fresh = procs[0]
        .access_token(&account(), &creds(), || async {
            Ok::<_, String>((SecretString::from("Atza|back".to_owned()), Duration::from_secs(3600)))
        })
        .await
        .unwrap();
    assert_eq!(fresh.expose_secret(), "Atza|back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_snapshot_shows_every_operation_the_breaker_and_the_cooldown_but_never_the_token() {
    let redis = RedisServer::start(Durability::None);
    let procs = instances(&redis, 2, &short_cooldowns()).await;
    let a = account();
    let fresh = procs[0].snapshot(&a).await.unwrap();
    let json = serde_json::to_value(&fresh).unwrap();
    assert!(json["cooldown"].is_null());
    assert_eq!(json["operations"].as_object().unwrap().len(), Operation::ALL.len());
    assert_eq!(json["operations"]["getOrders"]["rate"], 0.0167);
    assert_eq!(json["operations"]["getOrders"]["burst"], 20);

    let count = Arc::new(AtomicUsize::new(0));
    let token = procs[0].access_token(&a, &creds(), counting_fetch(&count)).await.unwrap();
    procs[1]
        .enter_cooldown(&a, "429 on createReport", Some(Duration::from_secs(60)))
        .await
        .unwrap();
    procs[1].record(&a, Operation::CreateReport, CallOutcome::Failure).await.unwrap();
    let snap = procs[0].snapshot(&a).await.unwrap();
    let text = serde_json::to_string(&snap).unwrap();
    assert!(!text.contains(token.expose_secret()), "{text}");
    assert!(!text.contains("secret-token"), "{text}");
    assert!(!format!("{:?} {:?}", procs[0], snap).contains("secret-token"));
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["cooldown"]["level"], 1);
    assert_eq!(json["cooldown"]["reason"], "429 on createReport");
    let cr = &json["operations"]["createReport"];
    assert_eq!(cr["breaker"]["calls"], 1);
    assert_eq!(cr["breaker"]["failures"], 1);
    assert_eq!(cr["breaker"]["state"], "closed");
    assert!(cr["tokens_available"].as_f64().is_some());
    assert!(cr["next_slot_at"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clients_obeying_the_limiter_get_no_429_from_the_simulator_even_after_someone_used_its_bucket() {
    use drover_tests::sim::{self, Operation as SimOp, SimConfig, US_MARKETPLACE};
    let redis = RedisServer::start(Durability::None);
    let sim = sim::spawn(SimConfig::fast()).await.unwrap();
    let token = sim.access_token("acct-1").await.unwrap();
    let http = reqwest::Client::new();
    let url = sim.url(&format!(
        "/orders/v0/orders?MarketplaceIds={US_MARKETPLACE}&CreatedAfter=2020-01-01"
    ));
    // Someone else drains most of the bucket (fast plan: getOrders 10/s, burst 20) first.
    for _ in 0..18 {
        let status = http.get(&url).header("x-amz-access-token", &token).send().await.unwrap().status();
        assert!(status.is_success(), "{status}");
    }
    let procs = instances(&redis, 4, &with_limit(Operation::GetOrders, 10.0, 20)).await;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for r in &procs {
        for _ in 0..3 {
            let (r, http, url, token) = (r.clone(), http.clone(), url.clone(), token.clone());
            tasks.push(tokio::spawn(async move {
                let cancel = CancellationToken::new();
                while start.elapsed() < Duration::from_millis(2500) {
                    r.acquire(&account(), Operation::GetOrders, &cancel).await.unwrap();
                    let status = http.get(&url).header("x-amz-access-token", &token).send().await.unwrap().status();
                    assert!(status.is_success(), "{status} after {:?}", start.elapsed());
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let op = sim.admin().stats().await.unwrap().op("acct-1", SimOp::GetOrders);
    assert_eq!(op.rate_limited, 0, "{op:?}");
    let ours = op.accepted - 18;
    // 2.5 s at 10/s, plus up to one slot per task reserved just before the deadline.
    assert!((20..=25 + 12).contains(&ours), "{ours} calls in 2.5 s at 10/s: {op:?}");
}

/// Found by this stop's chaos run: a caller that lost the half-open breaker's probe race
/// was told to stay away until the probe's lease ran out (the whole open period, 30 s by
/// default), so its job waited 30 s more though the probe closed the breaker at once. It
/// is told to look again within a second (or at the lease's end, when that is sooner).
#[tokio::test]
async fn a_caller_that_loses_the_probe_race_looks_again_within_a_second() {
    let redis = RedisServer::start(Durability::None);
    let mut config = fast_breaker();
    config.breaker.open_for = Duration::from_secs(3);
    let procs = instances(&redis, 2, &config).await;
    let (a, op) = (account(), Operation::GetOrders);
    for _ in 0..4 {
        procs[0].record(&a, op, CallOutcome::Failure).await.unwrap();
    }
    assert!(procs[0].breaker_permit(&a, op).await.is_err(), "open");
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert!(procs[0].breaker_permit(&a, op).await.unwrap().probe, "the probe");
    let asked = chrono::Utc::now();
    match procs[1].breaker_permit(&a, op).await {
        Err(ResilienceError::BreakerOpen { until, .. }) => {
            let wait = until - asked;
            assert!(wait <= chrono::Duration::milliseconds(1100), "told to stay away for {wait}");
        }
        other => panic!("not refused while the probe is out: {other:?}"),
    }
    // The probe succeeds: the breaker closes for everyone.
    procs[0].record(&a, op, CallOutcome::Success).await.unwrap();
    assert!(!procs[1].breaker_permit(&a, op).await.unwrap().probe);
}

/// Found by the worker-resilience audit of 2026-12-07 (fourth): a 429 on a report
/// operation whose `Retry-After` asked a day (any hint up to 86,400 s was taken) stopped
/// every backfill of the seller for that day. A hint stretches a cooldown to its longest
/// step at most, entering one or joining it.
#[tokio::test]
async fn a_cooldowns_hint_stretches_it_to_its_longest_step_at_most() {
    let redis = RedisServer::start(Durability::None);
    let procs = instances(&redis, 1, &ResilienceConfig::default()).await;
    let day = Some(Duration::from_secs(86_400));
    let cd = procs[0].enter_cooldown(&account(), "429 on createReport", day).await.unwrap();
    assert_eq!((cd.level, (cd.until - cd.since).num_seconds()), (1, 7200), "{cd:?}");
    let joined = procs[0].enter_cooldown(&account(), "429 on getReport", day).await.unwrap();
    assert!((joined.until - joined.since).num_seconds() <= 7201, "{joined:?}");
}
