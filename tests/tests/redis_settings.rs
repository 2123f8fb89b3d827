//! The Redis setting a job record's memory depends on (`hash-max-listpack-value`,
//! `shared/src/queue/redis_settings.rs`): what the store reads of it, and what the value
//! in `deploy/redis/redis.conf` does to a realistic job's record, on a private
//! redis-server through the real store.
use std::time::Duration;

use drover::job::{JobId, JobKind, JobPayload, JobState};
use drover::queue::{JobDefaults, JobStore, NewJob, QueueKeys, RedisStore, SettleAction, Settlement, RECOMMENDED_LISTPACK_VALUE};
use drover_tests::harness::{Durability, RedisServer};
use serde_json::json;

/// A job as the API stores one: a real marketplace id, a few SKUs, a trace context.
fn realistic(i: usize) -> NewJob {
    let payload = JobPayload::from_json(
        JobKind::Cleanup,
        json!({"account_id": "seller-42", "marketplace_id": "ATVPDKIKX0DER", "skus": [format!("SKU-{i}-A"), format!("SKU-{i}-B")]}),
    )
    .unwrap();
    NewJob::new(payload).traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
}

/// What `deploy/redis/redis.conf` sets `setting` to.
fn shipped(setting: &str) -> String {
    let conf = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/redis/redis.conf")).unwrap();
    let prefix = format!("{setting} ");
    conf.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("redis.conf sets {setting}"))
        .trim()
        .to_lowercase()
}

/// The value `deploy/redis/redis.conf` ships.
fn shipped_value() -> u64 {
    shipped("hash-max-listpack-value").parse().unwrap()
}

fn encoding(server: &RedisServer, id: &JobId) -> String {
    let key = QueueKeys::new("drover", JobKind::Cleanup, None).job(id);
    redis::cmd("OBJECT").arg("ENCODING").arg(key).query(&mut server.conn()).unwrap()
}

async fn enqueue(store: &RedisStore, job: NewJob) -> JobId {
    store.enqueue(job).await.unwrap().id
}

#[tokio::test]
async fn a_realistic_job_is_a_compact_record_only_with_the_shipped_listpack_setting() {
    let server = RedisServer::start(Durability::None);
    let store = RedisStore::connect(&server.url(), "drover", JobDefaults::default()).await.unwrap();
    assert_eq!(
        shipped_value(),
        RECOMMENDED_LISTPACK_VALUE,
        "the store warns below what redis.conf sets"
    );

    // Redis's default: the store reads it (and warns at start-up), and the record of a
    // realistic job is already a hashtable.
    assert_eq!(store.listpack_value_limit().await.unwrap(), Some(64));
    let first = enqueue(&store, realistic(1)).await;
    assert_eq!(encoding(&server, &first), "hashtable");

    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("hash-max-listpack-value")
        .arg(shipped_value())
        .query(&mut server.conn())
        .unwrap();
    assert_eq!(store.listpack_value_limit().await.unwrap(), Some(shipped_value()));
    let second = enqueue(&store, realistic(2)).await;
    assert_eq!(encoding(&server, &second), "listpack");

    // It stays compact through its run, with a result of a few hundred bytes.
    let leased = store.fetch(JobKind::Cleanup, "w1", 10, Duration::from_secs(30)).await.unwrap().jobs;
    let second = leased.iter().find(|l| l.id == second).expect("the second job leased");
    let result = json!({"deleted": (0..20).map(|i| format!("SKU-2-{i}")).collect::<Vec<_>>()});
    let s = Settlement {
        id: second.id.clone(),
        token: second.token.clone(),
        action: SettleAction::Succeeded(result),
        attempt: None,
    };
    store.settle(JobKind::Cleanup, &[s]).await.unwrap();
    assert_eq!(store.get(&second.id).await.unwrap().unwrap().state, JobState::Succeeded);
    assert_eq!(encoding(&server, &second.id), "listpack");
}

#[tokio::test]
async fn a_server_that_refuses_config_is_not_an_error() {
    let server = RedisServer::start(Durability::None);
    let store = RedisStore::connect(&server.url(), "drover", JobDefaults::default()).await.unwrap();
    // As a managed service does: CONFIG GET answers with an error.
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("default")
        .arg("-config")
        .query(&mut server.conn())
        .unwrap();
    assert_eq!(store.listpack_value_limit().await.unwrap(), None);
    store.check_layout().await.expect("start-up goes on without the setting");
}

/// The `maxmemory` `deploy/redis/redis.conf` ships, in bytes (Redis's units).
fn shipped_memory_limit() -> u64 {
    let value = shipped("maxmemory");
    let (digits, unit) = value.split_at(value.find(|c: char| !c.is_ascii_digit()).unwrap_or(value.len()));
    let n: u64 = digits.parse().unwrap();
    n * match unit {
        "" => 1,
        "kb" => 1024,
        "mb" => 1024 * 1024,
        "gb" => 1024 * 1024 * 1024,
        other => panic!("unit {other}"),
    }
}

/// Found by the newcomer audit of 2026-12-06: the shipped redis.conf set no maxmemory,
/// so Redis grew until the host killed it (never the API's 503 `queue-full`) and the
/// memory alert, dividing by it, never fired; nothing said so. The shipped file sets
/// one, and a Redis without one is reported at start-up.
#[tokio::test]
async fn a_redis_without_maxmemory_is_reported_and_the_shipped_file_sets_one() {
    let server = RedisServer::start(Durability::None);
    let store = RedisStore::connect(&server.url(), "drover", JobDefaults::default()).await.unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg(0)
        .query(&mut server.conn())
        .unwrap();
    assert_eq!(store.memory_limit().await.unwrap(), Some(0));
    let problems = store.redis_setting_problems().await.unwrap();
    assert!(problems.iter().any(|p| p.contains("no maxmemory")), "{problems:?}");

    let limit = shipped_memory_limit();
    assert!(limit > 0, "redis.conf sets maxmemory 0");
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg(limit)
        .query(&mut server.conn())
        .unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("hash-max-listpack-value")
        .arg(shipped_value())
        .query(&mut server.conn())
        .unwrap();
    assert_eq!(store.memory_limit().await.unwrap(), Some(limit));
    assert_eq!(
        store.redis_setting_problems().await.unwrap(),
        Vec::<String>::new(),
        "the shipped settings"
    );
}
