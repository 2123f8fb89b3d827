//! The Lua scripts as a Redis Functions library (redis_conn/library.rs): loaded on first
//! use and again after the server lost it, and run by EVALSHA where a server refuses
//! `FUNCTION LOAD` — on a private redis-server, through the real store.
use std::sync::LazyLock;
use std::time::Duration;

use drover::job::{JobKind, JobPayload, JobState};
use drover::queue::{JobDefaults, JobStore, ListQuery, NewJob, RedisStore, SettleAction, Settlement};
use drover::redis_conn::{query_grouped, Access, Library, LuaScript, RedisSource, ScriptDef, Timeouts};
use drover_tests::harness::{Durability, RedisCluster, RedisServer};
use serde_json::json;

const HELPERS: &str = "local tag\nlocal function tagged(s) return tag .. s end";

fn defs() -> [ScriptDef; 2] {
    [
        ScriptDef {
            name: "echo",
            helpers: &[HELPERS],
            body: "return tagged(ARGV[2])",
            access: Access::ReadsOnly,
        },
        ScriptDef {
            name: "bump",
            helpers: &[HELPERS],
            body: "return tagged(tostring(redis.call('INCR', KEYS[1])))",
            access: Access::Writes,
        },
    ]
}

// One library per test: a library that fell back to EVALSHA stays so for the process.
static LOADED: LazyLock<Library> = LazyLock::new(|| Library::new("drovertest", "tag = ARGV[1]", &defs()));
static LOADED_ECHO: LuaScript = LuaScript::new(&LOADED, 0);
static LOADED_BUMP: LuaScript = LuaScript::new(&LOADED, 1);
static REFUSED: LazyLock<Library> = LazyLock::new(|| Library::new("drovertest", "tag = ARGV[1]", &defs()));
static REFUSED_BUMP: LuaScript = LuaScript::new(&REFUSED, 1);
static NO_FCALL: LazyLock<Library> = LazyLock::new(|| Library::new("drovertest", "tag = ARGV[1]", &defs()));
static NO_FCALL_BUMP: LuaScript = LuaScript::new(&NO_FCALL, 1);
static ON_CLUSTER: LazyLock<Library> = LazyLock::new(|| Library::new("drovertest", "tag = ARGV[1]", &defs()));
static ON_CLUSTER_BUMP: LuaScript = LuaScript::new(&ON_CLUSTER, 1);

/// A connection to `server` as `user`, a user made with every permission but `denied`.
async fn limited(server: &RedisServer, user: &str, denied: &[&str]) -> drover::redis_conn::RedisConn {
    let mut raw = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let mut cmd = redis::cmd("ACL");
    cmd.arg(&["SETUSER", user, "on", ">s3cret", "~*", "&*", "+@all"]).arg(denied);
    let _: () = cmd.query_async(&mut raw).await.unwrap();
    let url = format!("redis://{user}:s3cret@127.0.0.1:{}", server.port());
    RedisSource::new(&url).unwrap().connect(Timeouts::default()).await.unwrap()
}

async fn libraries(conn: &mut redis::aio::MultiplexedConnection) -> Vec<String> {
    let list: Vec<Vec<redis::Value>> = redis::cmd("FUNCTION").arg("LIST").query_async(conn).await.unwrap();
    list.into_iter()
        .filter_map(|lib| match lib.get(1) {
            Some(redis::Value::BulkString(name)) => Some(String::from_utf8_lossy(name).into_owned()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_library_is_loaded_on_first_use_and_again_after_the_server_lost_it() {
    let server = RedisServer::start(Durability::None);
    let conn = RedisSource::new(&server.url()).unwrap().connect(Timeouts::default()).await.unwrap();
    let mut raw = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    assert!(libraries(&mut raw).await.is_empty());

    let got: String = LOADED_ECHO
        .key("k")
        .arg("t:")
        .arg("x")
        .invoke_async(&mut conn.clone())
        .await
        .unwrap();
    assert_eq!(got, "t:x", "the helper and the per-call statement ran");
    assert_eq!(libraries(&mut raw).await, vec![LOADED.name().to_owned()]);
    assert!(LOADED.name().starts_with("drovertest_"));
    assert!(!LOADED.by_eval());

    // Lost (a restart without persistence, a flush): the next call loads it again.
    let _: () = redis::cmd("FUNCTION").arg("FLUSH").query_async(&mut raw).await.unwrap();
    let got: String = LOADED_BUMP.key("n").arg("b:").invoke_async(&mut conn.clone()).await.unwrap();
    assert_eq!(got, "b:1");
    // And in a pipeline.
    let _: () = redis::cmd("FUNCTION").arg("FLUSH").query_async(&mut raw).await.unwrap();
    let keys = vec!["n".to_owned(), "n".to_owned()];
    let replies = query_grouped(&conn, &keys, Some(&LOADED), |pipe, i| {
        LOADED_BUMP.key("n").arg(format!("p{i}:")).add_to(pipe);
    })
    .await
    .unwrap();
    let replies: Vec<String> = replies.into_iter().flatten().map(|v| redis::from_redis_value(v).unwrap()).collect();
    assert_eq!(replies, vec!["p0:2", "p1:3"], "the pipeline was sent once more, whole");
    assert_eq!(libraries(&mut raw).await, vec![LOADED.name().to_owned()]);
}

#[tokio::test]
async fn a_server_that_refuses_function_load_runs_the_scripts_by_evalsha() {
    let server = RedisServer::start(Durability::None);
    let mut raw = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let conn = limited(&server, "limited", &["-function"]).await;
    let got: String = REFUSED_BUMP.key("n").arg("r:").invoke_async(&mut conn.clone()).await.unwrap();
    assert_eq!(got, "r:1");
    assert!(REFUSED.by_eval(), "calls go by EVALSHA from now on");
    assert!(libraries(&mut raw).await.is_empty(), "nothing was loaded as a library");
    // A script flush is recovered from the same way.
    let _: () = redis::cmd("SCRIPT").arg("FLUSH").query_async(&mut raw).await.unwrap();
    let got: String = REFUSED_BUMP.key("n").arg("r:").invoke_async(&mut conn.clone()).await.unwrap();
    assert_eq!(got, "r:2");
}

#[tokio::test]
async fn a_server_that_refuses_fcall_runs_the_scripts_by_evalsha() {
    // As a server without Functions answers (unknown command), or an ACL without +fcall.
    let server = RedisServer::start(Durability::None);
    let conn = limited(&server, "nofcall", &["-function", "-fcall"]).await;
    let got: String = NO_FCALL_BUMP.key("n").arg("f:").invoke_async(&mut conn.clone()).await.unwrap();
    assert_eq!(got, "f:1");
    assert!(NO_FCALL.by_eval());
}

fn cleanup(account: &str) -> JobPayload {
    JobPayload::from_json(
        JobKind::Cleanup,
        json!({"account_id": account, "marketplace_id": "ATVPDKIKX0DER", "skus": ["SKU-1"]}),
    )
    .unwrap()
}

#[tokio::test]
async fn the_queue_carries_on_after_the_server_lost_its_scripts() {
    let server = RedisServer::start(Durability::None);
    let store = RedisStore::connect(&server.url(), "drover", JobDefaults::default()).await.unwrap();
    let mut raw = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let flush = |mut raw: redis::aio::MultiplexedConnection| async move {
        let _: () = redis::cmd("FUNCTION").arg("FLUSH").query_async(&mut raw).await.unwrap();
        let _: () = redis::cmd("SCRIPT").arg("FLUSH").query_async(&mut raw).await.unwrap();
    };
    let first = store.enqueue(NewJob::new(cleanup("a1"))).await.unwrap();
    assert!(libraries(&mut raw).await.iter().any(|l| l.starts_with("drover_")));

    flush(raw.clone()).await;
    let bulk = store
        .enqueue_bulk(vec![NewJob::new(cleanup("a2")), NewJob::new(cleanup("a3"))])
        .await
        .unwrap();
    assert!(bulk.iter().all(|r| r.is_ok()), "{bulk:?}");
    flush(raw.clone()).await;
    let leased = store.fetch(JobKind::Cleanup, "w1", 10, Duration::from_secs(30)).await.unwrap().jobs;
    assert_eq!(leased.len(), 3);
    flush(raw.clone()).await;
    let settlements: Vec<Settlement> = leased
        .iter()
        .map(|l| Settlement {
            id: l.id.clone(),
            token: l.token.clone(),
            action: SettleAction::Succeeded(json!({"ok": true})),
            attempt: None,
        })
        .collect();
    store.settle(JobKind::Cleanup, &settlements).await.unwrap();
    flush(raw.clone()).await;
    let query = ListQuery {
        limit: 10,
        ..Default::default()
    };
    let page = store.list(&query).await.unwrap();
    assert_eq!(page.jobs.len(), 3);
    assert!(page.jobs.iter().all(|j| j.state == JobState::Succeeded));
    flush(raw.clone()).await;
    let counts = store.counts(JobKind::Cleanup).await.unwrap();
    assert_eq!(counts.succeeded, 3, "{counts:?}");
    assert_eq!(store.get(&first.id).await.unwrap().unwrap().state, JobState::Succeeded);
}

#[tokio::test]
async fn on_a_cluster_with_a_primary_down_the_others_load_the_library_and_serve() {
    // A library no node has yet (a new release's, or one restarts lost) is loaded on the
    // live primaries while one is down: its keys fail, the others' are served.
    let mut cluster = RedisCluster::start(3, 0);
    cluster.serve_partial_coverage();
    let gone = cluster.primaries()[0];
    cluster.kill(gone);
    let conn = RedisSource::new(&cluster.url())
        .unwrap()
        .connect(Timeouts::default())
        .await
        .unwrap();
    let mut served = 0;
    for n in 0..30 {
        let key = format!("{{t{n}}}:n");
        let got: Result<String, _> = ON_CLUSTER_BUMP.key(&key).arg("c:").invoke_async(&mut conn.clone()).await;
        if let Ok(v) = got {
            assert_eq!(v, "c:1");
            served += 1;
        }
    }
    eprintln!("{served} of 30 keys served with a primary down");
    assert!(served >= 10, "the keys on the two live primaries are served: {served} of 30");
    assert!(served < 30, "the dead primary's keys are not");
}
