//! `POST /v1/accounts`, `PUT /v1/accounts/{id}/credentials`, `GET /v1/accounts/{id}`, `GET /v1/accounts/{id}/limits` end to end:
//! the real API on port 0, a private redis-server, a private Postgres database, and the
//! marketplace simulator (in process, over real HTTP) answering LWA.
//!
//! The two tests that read log lines run in a child process of their own, with one TRACE
//! subscriber for that process: `no_log_line_carries_a_secret` checks every line after
//! running every flow that handles a secret.
use crate::api_support;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use api_support::*;
use drover::job::AccountId;
use drover::resilience::{Resilience, ResilienceConfig};
use drover_tests::harness::{free_port, Durability};
use drover_tests::sim::{self, SimConfig, SimHandle};
use serde_json::{json, Value};
use sqlx::Row;

const CLIENT_ID: &str = "amzn1.application-oa2-client.sim";
const CLIENT_SECRET: &str = "sim-client-secret";
/// Secrets only these tests use, so finding them in a log can only mean a leak.
const BOGUS_SECRET: &str = "bogus-secret-7f3a9c";
const BOGUS_REFRESH: &str = "bogus-refresh-52e1d0";

// ---- log capture -------------------------------------------------------------------------

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installed once for the process, at TRACE, for every crate (ours, sqlx, reqwest, hyper,
/// axum): if anything logs a secret, it lands here. Called only by the tests that run in a
/// child process of their own (the subscriber is process-wide).
fn logs() -> &'static Captured {
    static LOGS: OnceLock<Captured> = OnceLock::new();
    LOGS.get_or_init(|| {
        let captured = Captured::default();
        let writer = captured.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .init();
        captured
    })
}

// ---- helpers -----------------------------------------------------------------------------

async fn simulator() -> SimHandle {
    sim::spawn(SimConfig::fast()).await.expect("the simulator starts")
}

fn token_url(sim: &SimHandle) -> String {
    format!("{}/auth/o2/token", sim.base_url())
}

/// An app whose token URL is the simulator's.
async fn app_with(sim: &SimHandle) -> TestApp {
    let url = token_url(sim);
    spawn_app_with(Durability::None, move |c| c.marketplace_token_url = url).await
}

/// An app whose token URL is a closed port.
async fn app_without_marketplace() -> TestApp {
    let url = format!("http://127.0.0.1:{}/auth/o2/token", free_port());
    spawn_app_with(Durability::None, move |c| c.marketplace_token_url = url).await
}

/// The body for simulator account `acct-N` (seller id == account id), under id `id`.
fn body(id: &str, refresh_token: &str) -> Value {
    json!({
        "id": id,
        "seller_id": "acct-1",
        "marketplace_ids": [MARKETPLACE],
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "refresh_token": refresh_token,
    })
}

async fn create(app: &TestApp, key: &str, body: &Value) -> reqwest::Response {
    app.post(key, "/v1/accounts").json(body).send().await.unwrap()
}

async fn until_ready(app: &TestApp) {
    for _ in 0..200 {
        if app.client.get(app.url("/readyz")).send().await.unwrap().status() == 200 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the app did not become ready (migrations)");
}

async fn problem(res: reqwest::Response, status: u16) -> Value {
    assert_eq!(res.status().as_u16(), status);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    res.json().await.unwrap()
}

async fn pool(app: &TestApp) -> sqlx::PgPool {
    sqlx::PgPool::connect(&app.database_url).await.unwrap()
}

async fn stored_rows(app: &TestApp) -> i64 {
    sqlx::query("SELECT count(*) FROM accounts")
        .fetch_one(&pool(app).await)
        .await
        .unwrap()
        .get(0)
}

fn assert_no_secrets(text: &str) {
    for secret in [CLIENT_SECRET, "rt-acct-1", "rt-acct-2", BOGUS_SECRET, BOGUS_REFRESH] {
        assert!(!text.contains(secret), "{secret:?} leaked into: {text}");
    }
}

// ---- tests -------------------------------------------------------------------------------

#[tokio::test]
async fn valid_credentials_are_stored_encrypted_and_answered_201_without_secrets() {
    let sim = simulator().await;
    let app = app_with(&sim).await;
    until_ready(&app).await;

    let res = create(&app, ADMIN, &body("acme", "rt-acct-1")).await;
    assert_eq!(res.status(), 201);
    assert_eq!(res.headers()["location"], "/v1/accounts/acme");
    let text = res.text().await.unwrap();
    assert_no_secrets(&text);
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["id"], "acme");
    assert_eq!(v["marketplace_ids"], json!([MARKETPLACE]));
    assert_eq!(v["client_id"], CLIENT_ID);
    assert_eq!(v["active"], true);

    let row = sqlx::query("SELECT client_secret_enc, refresh_token_enc FROM accounts WHERE id = 'acme'")
        .fetch_one(&pool(&app).await)
        .await
        .unwrap();
    for (col, plain) in [("client_secret_enc", CLIENT_SECRET), ("refresh_token_enc", "rt-acct-1")] {
        let sealed: Vec<u8> = row.get(col);
        assert!(sealed.len() > plain.len() + 16, "{col} holds nonce and tag");
        assert!(
            !sealed.windows(plain.len()).any(|w| w == plain.as_bytes()),
            "{col} holds the plaintext"
        );
    }
    let stats = sim.admin().stats().await.unwrap();
    assert_eq!(stats.accounts["acct-1"].token_grants, 1, "the marketplace was asked once");
}

/// Found by the newcomer audit of 2026-12-06: the runbook for revoked credentials and
/// the encryption key's rotation say to register the account again, but an existing id
/// was always a 409 and nothing could replace its credentials. They are replaced with
/// `PUT /v1/accounts/{id}/credentials`: checked with the marketplace first, sealed with
/// the current key, never answered, and a key never learns of an account outside its
/// scope.
#[tokio::test]
async fn an_accounts_credentials_are_replaced_checked_and_sealed_never_shown() {
    let sim = simulator().await;
    let app = app_with(&sim).await;
    until_ready(&app).await;
    let mut revoked = body("acme", BOGUS_REFRESH);
    revoked["skip_validation"] = json!(true);
    revoked["client_secret"] = json!(BOGUS_SECRET);
    assert_eq!(create(&app, ADMIN, &revoked).await.status(), 201);
    let conflict = create(&app, ADMIN, &body("acme", "rt-acct-1")).await;
    assert_eq!(conflict.status(), 409, "registering it again is still a conflict");

    let put = |key: &'static str, id: &str, body: Value| {
        let req = app
            .client
            .put(app.url(&format!("/v1/accounts/{id}/credentials")))
            .bearer_auth(key)
            .json(&body);
        async move { req.send().await.unwrap() }
    };
    let good = json!({"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "refresh_token": "rt-acct-1"});
    let bad = json!({"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "refresh_token": BOGUS_REFRESH});
    let sealed = || async {
        let token: Vec<u8> = sqlx::query("SELECT refresh_token_enc FROM accounts WHERE id = 'acme'")
            .fetch_one(&pool(&app).await)
            .await
            .unwrap()
            .get(0);
        token
    };
    let sealed_before = sealed().await;

    // Rejected by the marketplace: a 400 naming its code, nothing changed.
    let rejected = problem(put(ADMIN, "acme", bad.clone()).await, 400).await;
    assert!(rejected["detail"].as_str().unwrap().contains("invalid_grant"), "{rejected}");
    assert_no_secrets(&rejected.to_string());
    assert_eq!(sealed().await, sealed_before, "a rejected replacement changes nothing");
    // Another tenant's key, a read key and an unknown account: the read key is refused
    // by role; the other tenant hears the same 404 as for an account that is not there.
    let other = problem(put(GLOBEX_SUB, "acme", good.clone()).await, 404).await;
    let missing = problem(put(ADMIN, "nobody", good.clone()).await, 404).await;
    assert_eq!(other["title"], missing["title"]);
    assert_eq!(put(READER, "acme", good.clone()).await.status(), 403);
    assert_eq!(
        put(SUBMITTER, "acme", good.clone()).await.status(),
        403,
        "a submit key for every account replaces none"
    );
    // Out of scope, even a malformed body is the same 404: the scope comes first.
    let other_invalid = problem(
        put(
            GLOBEX_SUB,
            "acme",
            json!({"client_id": "", "client_secret": "", "refresh_token": ""}),
        )
        .await,
        404,
    )
    .await;
    assert_eq!(other_invalid["title"], missing["title"]);
    let mut skipping = good.clone();
    skipping["skip_validation"] = json!(true);
    assert_eq!(put(ACME_SUB, "acme", skipping).await.status(), 403, "skip_validation is an admin's");
    let mut invalid = good.clone();
    invalid["refresh_token"] = json!("");
    let invalid = problem(put(ADMIN, "acme", invalid).await, 422).await;
    assert!(invalid.to_string().contains("refresh_token"), "{invalid}");

    // The tenant's own key replaces them; the answer is the account, without secrets.
    let res = put(ACME_SUB, "acme", good).await;
    assert_eq!(res.status(), 200);
    let text = res.text().await.unwrap();
    assert_no_secrets(&text);
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!((v["id"].as_str(), v["client_id"].as_str()), (Some("acme"), Some(CLIENT_ID)));
    assert_ne!(sealed().await, sealed_before);
    let repo = drover::db::AccountRepo::new(pool(&app).await);
    let key = drover::crypto::EncryptionKey::parse(TEST_ENCRYPTION_KEY).unwrap();
    let opened = repo
        .credentials(&AccountId::parse("acme").unwrap(), &drover::crypto::SecretBox::new(&key))
        .await
        .unwrap()
        .expect("the account is there");
    use secrecy::ExposeSecret;
    assert_eq!(opened.credentials.refresh_token.expose_secret(), "rt-acct-1");
    assert_eq!(opened.credentials.client_secret.expose_secret(), CLIENT_SECRET);
    // Recorded in the audit log, with neither secret.
    let audit: Value = app.get_json(READER, "/v1/audit?action=account.credentials").await;
    let entries = audit["entries"].as_array().expect("entries");
    assert!(entries.iter().any(|e| e["outcome"] == "ok" && e["actor"] == "acme-sub"), "{audit}");
    assert_no_secrets(&audit.to_string());
}

#[tokio::test]
async fn rejected_credentials_are_a_400_naming_the_oauth_code_and_nothing_is_stored() {
    let sim = simulator().await;
    let app = app_with(&sim).await;
    until_ready(&app).await;

    let p = problem(create(&app, ADMIN, &body("acme", BOGUS_REFRESH)).await, 400).await;
    assert_eq!(p["detail"], "the marketplace rejected these credentials: invalid_grant");
    let mut wrong_secret = body("acme", "rt-acct-1");
    wrong_secret["client_secret"] = BOGUS_SECRET.into();
    let p = problem(create(&app, ADMIN, &wrong_secret).await, 400).await;
    assert_eq!(p["detail"], "the marketplace rejected these credentials: invalid_client");
    assert_no_secrets(&p.to_string());
    assert_eq!(stored_rows(&app).await, 0);
    problem(app.get(ADMIN, "/v1/accounts/acme").send().await.unwrap(), 404).await;
}

#[tokio::test]
async fn an_unreachable_marketplace_is_a_503_and_nothing_is_stored() {
    let app = app_without_marketplace().await;
    until_ready(&app).await;
    let res = create(&app, ADMIN, &body("acme", "rt-acct-1")).await;
    assert!(res.headers().contains_key("retry-after"));
    let p = problem(res, 503).await;
    assert_eq!(
        p["detail"],
        "could not reach the marketplace to validate credentials; retry later or use skip_validation"
    );
    assert_eq!(stored_rows(&app).await, 0);
}

#[tokio::test]
async fn a_marketplace_that_never_answers_is_the_same_503_within_the_request_timeout() {
    a_marketplace_that_never_answers().await;
}

async fn a_marketplace_that_never_answers() {
    // Accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/auth/o2/token", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            held.push(conn);
        }
    });
    let app = spawn_app_with(Durability::None, move |c| {
        c.marketplace_token_url = url;
        c.request_timeout_ms = 1500;
    })
    .await;
    until_ready(&app).await;
    let p = problem(create(&app, ADMIN, &body("acme", "rt-acct-1")).await, 503).await;
    assert_eq!(
        p["detail"],
        "could not reach the marketplace to validate credentials; retry later or use skip_validation"
    );
    assert_eq!(stored_rows(&app).await, 0);
}

#[tokio::test]
async fn skip_validation_stores_without_asking_the_marketplace_for_admins_only() {
    let app = app_without_marketplace().await;
    until_ready(&app).await;
    let mut b = body("acme", "rt-acct-1");
    b["skip_validation"] = true.into();

    let p = problem(create(&app, ACME_SUB, &b).await, 403).await;
    assert!(p["detail"].as_str().unwrap().contains("skip_validation"), "{p}");
    assert_eq!(stored_rows(&app).await, 0);

    assert_eq!(create(&app, ADMIN, &b).await.status(), 201);
    assert_eq!(stored_rows(&app).await, 1);
}

/// `GET /v1/accounts`: by id, a page at a time; a key limited to accounts sees only them.
#[tokio::test]
async fn the_account_listing_pages_by_id_and_shows_a_scoped_key_only_its_accounts() {
    let app = app_without_marketplace().await;
    until_ready(&app).await;
    for id in ["globex", "acme", "initech"] {
        let mut b = body(id, "rt-acct-1");
        b["skip_validation"] = true.into();
        b["first_sync"] = false.into();
        assert_eq!(create(&app, ADMIN, &b).await.status(), 201);
    }
    let page = |key: &'static str, query: &'static str| {
        let req = app.get(key, &format!("/v1/accounts{query}"));
        async move {
            let res = req.send().await.unwrap();
            (res.status().as_u16(), res.json::<Value>().await.unwrap())
        }
    };
    let ids = |v: &Value| -> Vec<String> {
        v["accounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let (status, first) = page(READER, "?limit=2").await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(ids(&first), ["acme", "globex"]);
    assert_eq!(first["next_after"], "globex");
    assert!(first["accounts"][0].get("client_secret").is_none() && !first.to_string().contains(CLIENT_SECRET));
    let (_, rest) = page(READER, "?limit=2&after=globex").await;
    assert_eq!(ids(&rest), ["initech"]);
    assert_eq!(rest["next_after"], Value::Null);

    // MULTI reads acme and globex only; ACME is an admin for acme only.
    assert_eq!(ids(&page(MULTI, "").await.1), ["acme", "globex"]);
    assert_eq!(ids(&page(ACME, "?after=acme").await.1), Vec::<String>::new());

    let (status, p) = page(READER, "?limit=0&after=no%20such").await;
    assert_eq!(status, 422, "{p}");
    assert_eq!(fields(&p), ["limit", "after"]);
}

#[tokio::test]
async fn accounts_are_registered_by_admins_and_by_submit_keys_limited_to_them_only() {
    // A submit key for every account (a producer service) must not register arbitrary
    // accounts (the built-in schedules would then run for them) nor use the endpoint to
    // test credentials; a tenant's own submit key onboards its own account.
    let sim = simulator().await;
    let app = app_with(&sim).await;
    until_ready(&app).await;
    // ACME is an admin limited to `acme`; MULTI is read-only.
    problem(create(&app, ACME, &body("globex", "rt-acct-1")).await, 403).await;
    problem(create(&app, MULTI, &body("acme", "rt-acct-1")).await, 403).await;
    let p = problem(create(&app, SUBMITTER, &body("initech", "rt-acct-2")).await, 403).await;
    assert!(p["detail"].as_str().unwrap().contains("admin key"), "{p}");
    assert_eq!(stored_rows(&app).await, 0);
    assert_eq!(create(&app, ACME, &body("acme", "rt-acct-1")).await.status(), 201);
    assert_eq!(create(&app, GLOBEX_SUB, &body("globex", "rt-acct-2")).await.status(), 201);
}

#[tokio::test]
async fn a_submit_key_checks_credentials_at_a_bounded_rate() {
    // Each registration asks the marketplace about the credentials: a tenant key cannot
    // turn that into a credential-testing service.
    let sim = simulator().await;
    let app = app_with(&sim).await;
    until_ready(&app).await;
    let mut limited = None;
    for _ in 0..12 {
        let res = create(&app, ACME_SUB, &body("acme", BOGUS_REFRESH)).await;
        if res.status() == 429 {
            limited = Some(res.headers().get("retry-after").cloned());
            break;
        }
        assert_eq!(res.status(), 400, "rejected credentials");
    }
    let retry_after = limited.expect("a 429 within 12 credential checks").expect("Retry-After");
    assert!(retry_after.to_str().unwrap().parse::<u64>().unwrap() >= 1);
    // Admins are not limited this way.
    assert_eq!(create(&app, ADMIN, &body("acme", "rt-acct-1")).await.status(), 201);
}

/// Found by this stop's audit of the API's surfaces: the budget exempted every admin
/// key, also one limited to accounts — a tenant's — which could test credentials at its
/// write rate (10 a second) instead of 10 a minute.
#[tokio::test]
async fn an_admin_key_limited_to_accounts_checks_credentials_at_the_tenants_rate() {
    let sim = simulator().await;
    let app = app_with(&sim).await;
    until_ready(&app).await;
    let mut statuses = Vec::new();
    for _ in 0..12 {
        let status = create(&app, ACME, &body("acme", BOGUS_REFRESH)).await.status().as_u16();
        statuses.push(status);
        if status == 429 {
            break;
        }
    }
    assert_eq!(statuses.last(), Some(&429), "no 429 within 12 credential checks: {statuses:?}");
}

#[tokio::test]
async fn a_duplicate_id_is_a_409_and_the_first_account_is_kept() {
    let sim = simulator().await;
    let app = app_with(&sim).await;
    until_ready(&app).await;
    assert_eq!(create(&app, ADMIN, &body("acme", "rt-acct-1")).await.status(), 201);
    let mut again = body("acme", "rt-acct-2");
    again["seller_id"] = "other".into();
    let p = problem(create(&app, ADMIN, &again).await, 409).await;
    assert!(p["detail"].as_str().unwrap().contains("acme"), "{p}");
    let v: Value = app.get(READER, "/v1/accounts/acme").send().await.unwrap().json().await.unwrap();
    assert_eq!(v["seller_id"], "acct-1");
}

#[tokio::test]
async fn invalid_fields_are_a_422_naming_each_and_unknown_fields_are_refused() {
    let app = app_without_marketplace().await;
    until_ready(&app).await;
    let bad = json!({"id": "no spaces", "seller_id": "S", "marketplace_ids": [], "client_id": CLIENT_ID,
        "client_secret": BOGUS_SECRET, "refresh_token": ""});
    let p = problem(create(&app, ADMIN, &bad).await, 422).await;
    let fields: Vec<&str> = p["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["id", "marketplace_ids", "refresh_token"]);
    assert_no_secrets(&p.to_string());

    let mut extra = body("acme", BOGUS_REFRESH);
    extra["access_token"] = "x".into();
    let p = problem(create(&app, ADMIN, &extra).await, 422).await;
    assert_eq!(p["errors"][0]["field"], "access_token");
    assert_eq!(stored_rows(&app).await, 0);
}

/// Found by this stop's hostile-tenant audit: an account id "." or ".." was stored (201)
/// yet could never be addressed (`/v1/accounts/..` is another path once a client
/// normalises it), and the built-in schedules ran for it. They are refused, as for SKUs
/// and seller ids.
#[tokio::test]
async fn account_ids_that_are_dot_path_segments_are_a_422_naming_id() {
    let app = app_without_marketplace().await;
    until_ready(&app).await;
    for id in [".", ".."] {
        let p = problem(create(&app, ADMIN, &body(id, BOGUS_REFRESH)).await, 422).await;
        assert_eq!(p["errors"][0]["field"], "id", "{id}: {p}");
    }
    assert_eq!(stored_rows(&app).await, 0);
}

#[tokio::test]
async fn get_shows_the_account_without_secrets_and_404s_unknown_ids_and_other_accounts_alike() {
    let sim = simulator().await;
    let app = app_with(&sim).await;
    until_ready(&app).await;
    assert_eq!(create(&app, ADMIN, &body("acme", "rt-acct-1")).await.status(), 201);
    assert_eq!(create(&app, ADMIN, &body("initech", "rt-acct-2")).await.status(), 201);

    for key in [READER, MULTI, ACME] {
        let res = app.get(key, "/v1/accounts/acme").send().await.unwrap();
        assert_eq!(res.status(), 200, "{key}");
        let text = res.text().await.unwrap();
        assert_no_secrets(&text);
        assert!(
            !text.contains("_enc") && !text.contains("secret") && !text.contains("refresh"),
            "{text}"
        );
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["id"], "acme");
    }
    problem(app.get(READER, "/v1/accounts/nobody").send().await.unwrap(), 404).await;
    problem(app.get(READER, "/v1/accounts/not%20an%20id").send().await.unwrap(), 404).await;
    // MULTI may read acme and globex only: initech exists, but not for this key.
    problem(app.get(MULTI, "/v1/accounts/initech").send().await.unwrap(), 404).await;
    problem(app.get(MULTI, "/v1/accounts/initech/limits").send().await.unwrap(), 404).await;
    problem(app.get("nope", "/v1/accounts/acme").send().await.unwrap(), 401).await;
}

#[tokio::test]
async fn limits_show_every_operation_and_the_cooldown_the_workers_entered() {
    let app = app_without_marketplace().await;
    app.worker_beat().await;
    until_ready(&app).await;
    let mut b = body("acme", "rt-acct-1");
    b["skip_validation"] = true.into();
    assert_eq!(create(&app, ADMIN, &b).await.status(), 201);

    let v: Value = app
        .get(READER, "/v1/accounts/acme/limits")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["cooldown"], Value::Null, "{v}");
    let ops = v["operations"].as_object().unwrap();
    for op in [
        "getOrders",
        "getListingsItem",
        "deleteListingsItem",
        "createReport",
        "getReport",
        "getReportDocument",
        "getReports",
    ] {
        assert!(ops.contains_key(op), "{op} missing from {v}");
    }

    // What a worker does on a 429 from createReport, on the same Redis.
    let resilience = Resilience::new(
        app.store.connection(),
        "drover",
        ResilienceConfig::default(),
        &drover::crypto::EncryptionKey::dev(),
    );
    let acme = AccountId::parse("acme").unwrap();
    resilience
        .enter_cooldown(&acme, "429 on createReport", Some(Duration::from_secs(60)))
        .await
        .unwrap();
    let v: Value = app
        .get(READER, "/v1/accounts/acme/limits")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["cooldown"]["reason"], "429 on createReport", "{v}");
    assert_eq!(v["cooldown"]["level"], 1);
    assert!(v["cooldown"]["until"].is_string());

    // The same seller registered again with the same credentials shares its limits (the
    // marketplace counts per seller and application), shown under its own id; another
    // authorization (refresh token) of the same seller id does not.
    for (id, token) in [("acme-ca", "rt-acct-1"), ("acme-other", "rt-acct-2")] {
        let mut b = body(id, token);
        b["skip_validation"] = true.into();
        assert_eq!(create(&app, ADMIN, &b).await.status(), 201);
    }
    let shared = app.get_json(ADMIN, "/v1/accounts/acme-ca/limits").await;
    assert_eq!(shared["account"], "acme-ca", "{shared}");
    assert_eq!(shared["cooldown"]["reason"], "429 on createReport", "{shared}");
    let other = app.get_json(ADMIN, "/v1/accounts/acme-other/limits").await;
    assert_eq!(other["cooldown"], Value::Null, "{other}");
    // and a backfill of the account registered again waits for the seller's cooldown
    let end = chrono::Utc::now();
    let backfill = |account: &str| {
        json!({"kind": "backfill", "payload": {"account_id": account, "marketplace_id": MARKETPLACE,
            "report_type": "GET_FLAT_FILE_ALL_ORDERS_DATA_BY_ORDER_DATE_GENERAL",
            "start": end - chrono::Duration::days(2), "end": end}})
    };
    for (account, reason) in [("acme-ca", "quota_cooldown"), ("acme-other", "queued")] {
        let res = app.submit(ADMIN, &backfill(account)).await;
        assert_eq!(res.status(), 202);
        let v: Value = res.json().await.unwrap();
        assert_eq!(v["waiting"]["reason"], reason, "{account}: {v}");
    }

    problem(app.get(READER, "/v1/accounts/nobody/limits").send().await.unwrap(), 404).await;
}

#[tokio::test]
async fn readyz_names_postgres_when_it_cannot_be_reached_and_accounts_answer_503() {
    let url = format!("postgres://postgres@127.0.0.1:{}/drover", free_port());
    let app = spawn_app_with(Durability::None, move |c| {
        c.database.url = url.into();
        c.database.acquire_timeout_ms = 300;
    })
    .await;
    let res = app.client.get(app.url("/readyz")).send().await.unwrap();
    let p = problem(res, 503).await;
    let detail = p["detail"].as_str().unwrap();
    assert!(detail.contains("postgres") && !detail.contains("redis"), "{p}");
    assert!(app.client.get(app.url("/healthz")).send().await.unwrap().status() == 200);
    let p = problem(app.get(READER, "/v1/accounts/acme").send().await.unwrap(), 503).await;
    assert!(p["detail"].as_str().unwrap().contains("postgres"), "{p}");
}

/// Makes the app's database read-only and ends its sessions, so they start again
/// read-only, as a demoted primary's would.
async fn make_read_only(app: &TestApp) {
    drover_tests::harness::make_read_only(&pool(app).await).await;
}

/// Found by the audit of 2026-12-07 (third): `/readyz` asked Postgres `SELECT 1`, which a
/// read-only server answers, so a replica stayed ready while it refused every write (a
/// registration's 503, a run's outage). It is not ready then, and says postgres.
#[tokio::test]
async fn readyz_is_503_naming_postgres_while_the_database_is_read_only() {
    let app = app_without_marketplace().await;
    until_ready(&app).await;
    make_read_only(&app).await;
    let mut last = None;
    for _ in 0..100 {
        let res = app.client.get(app.url("/readyz")).send().await.unwrap();
        if res.status() == 503 {
            let p = problem(res, 503).await;
            assert!(p["detail"].as_str().unwrap().contains("postgres"), "{p}");
            return;
        }
        last = Some(res.status());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("/readyz still answered {last:?} 10 s after the database went read-only");
}

/// Found by the durability audit of 2026-12-07 (third): a Postgres that answers but is
/// read-only (a demoted primary mid-failover, reached through a stale address) refused
/// every write with SQLSTATE 25006, which was an internal error: a 500 without
/// Retry-After for a registration, and a used attempt for a job's run. It is the
/// database being unavailable: a 503 that says when to retry, nothing stored.
#[tokio::test]
async fn a_read_only_postgres_answers_503_with_retry_after_and_stores_nothing() {
    let app = app_without_marketplace().await;
    until_ready(&app).await;
    make_read_only(&app).await;
    // Reads go on (the pool has dialled afresh once one answers)...
    let mut read = false;
    for _ in 0..50 {
        if app.get(ADMIN, "/v1/accounts/acme").send().await.unwrap().status() == 404 {
            read = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(read, "reads answer from the read-only database");
    // ...and a write is refused as the database being unavailable.
    let mut skipping = body("acme", "rt-acct-1");
    skipping["skip_validation"] = json!(true);
    let res = create(&app, ADMIN, &skipping).await;
    assert!(res.headers().contains_key("retry-after"), "{} {:?}", res.status(), res.headers());
    let p = problem(res, 503).await;
    assert_eq!(p["type"], "urn:drover:problem:unavailable", "{p}");
    // (the test's database is dropped with it, read-only or not)
    assert_eq!(stored_rows(&app).await, 0);
}

#[tokio::test]
async fn the_app_refuses_a_missing_or_published_encryption_key_outside_dev_mode() {
    refused_encryption_keys().await;
}

async fn refused_encryption_keys() {
    let redis = drover_tests::harness::RedisServer::start(Durability::None);
    let mut config = test_config(&redis.url());
    config.encryption_key = "".into();
    let err = drover_api::build(config.clone()).await.err().expect("no key, no start").to_string();
    assert!(err.contains("api.encryption_key is missing"), "{err}");

    config.encryption_key = drover::crypto::DEV_ENCRYPTION_KEY.into();
    let err = drover_api::build(config.clone())
        .await
        .err()
        .expect("dev key, no start")
        .to_string();
    assert!(err.contains("api.encryption_key is the published development key"), "{err}");

    config.encryption_key = BOGUS_SECRET.into();
    let err = drover_api::build(config.clone())
        .await
        .err()
        .expect("bad key, no start")
        .to_string();
    assert!(err.contains("api.encryption_key") && !err.contains(BOGUS_SECRET), "{err}");

    config.dev_mode = true;
    config.keys.clear(); // dev mode is refused beside real keys
    config.encryption_key = drover::crypto::DEV_ENCRYPTION_KEY.into();
    assert!(drover_api::build(config).await.is_ok(), "dev mode accepts the published key");
}

/// Runs every path that handles a secret (accepted, rejected, unreachable, invalid,
/// duplicate, read back, a marketplace that never answers, a refused encryption key),
/// then reads every log line the process wrote.
async fn every_secret_flow_then_the_logs() {
    logs();
    a_marketplace_that_never_answers().await;
    refused_encryption_keys().await;
    let sim = simulator().await;
    let app = app_with(&sim).await;
    until_ready(&app).await;
    assert_eq!(create(&app, ADMIN, &body("acme", "rt-acct-1")).await.status(), 201);
    assert_eq!(create(&app, ADMIN, &body("acme", "rt-acct-1")).await.status(), 409);
    assert_eq!(create(&app, ADMIN, &body("globex", BOGUS_REFRESH)).await.status(), 400);
    let mut bad = body("initech", "rt-acct-2");
    bad["client_secret"] = BOGUS_SECRET.into();
    assert_eq!(create(&app, ADMIN, &bad).await.status(), 400);
    bad["marketplace_ids"] = json!(["lower"]);
    assert_eq!(create(&app, ADMIN, &bad).await.status(), 422);
    assert_eq!(app.get(READER, "/v1/accounts/acme").send().await.unwrap().status(), 200);
    let down = app_without_marketplace().await;
    until_ready(&down).await;
    assert_eq!(create(&down, ADMIN, &body("acme", BOGUS_REFRESH)).await.status(), 503);

    let text = String::from_utf8_lossy(&logs().0.lock().unwrap()).into_owned();
    assert!(text.contains("account created"), "the capture works: {} bytes", text.len());
    for secret in [CLIENT_SECRET, "rt-acct-1", "rt-acct-2", BOGUS_SECRET, BOGUS_REFRESH] {
        let leaked: Vec<&str> = text.lines().filter(|l| l.contains(secret)).take(3).collect();
        assert!(leaked.is_empty(), "{secret:?} appears in the logs: {leaked:#?}");
    }
}

// ---- the first sync ------------------------------------------------------------------------

#[tokio::test]
async fn creating_an_account_queues_its_first_sync_with_trigger_account_created() {
    let sim = simulator().await;
    let app = app_with(&sim).await;
    app.worker_beat().await;
    until_ready(&app).await;
    let res = create(&app, ADMIN, &body("acme", "rt-acct-1")).await;
    assert_eq!(res.status(), 201);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["id"], "acme", "the account is answered as before: {v}");
    assert_eq!(v["first_sync_error"], Value::Null, "{v}");
    assert_eq!(
        v["last_synced"],
        json!({"orders": null, "listings": null, "order_reports": null}),
        "{v}"
    );
    let first = &v["first_sync_job"];
    let id = first["id"].as_str().expect("a job was queued");
    assert_eq!(first["state"], "queued");
    assert_eq!(first["status_url"], format!("/v1/jobs/{id}"));
    assert_eq!(first["waiting"]["reason"], "queued", "{first}");

    let (status, job) = app.job(READER, id).await;
    assert_eq!(status, 200);
    assert_eq!(job["kind"], "sync");
    assert_eq!(job["trigger"], "account_created");
    assert_eq!(job["account_id"], "acme");
    assert_eq!(
        job["payload"],
        json!({"account_id": "acme", "marketplace_id": MARKETPLACE, "resources": ["orders", "listings"]})
    );
    // It is the account's sync: another sync submitted now is de-duplicated into it.
    let again = app.submit(ADMIN, &sync_body("acme")).await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.json::<Value>().await.unwrap()["id"], id);
}

/// Found by an audit of error texts: a request timeout that fell after the account's
/// INSERT was sent dropped the rest of the handler: the account stored, its first sync
/// never queued, and no answer saying so. The steps from the insert on now run to their
/// end on a task of their own. Here the insert takes 1.5 s and the request timeout is 1 s.
#[tokio::test]
async fn a_request_timeout_after_the_insert_still_queues_the_first_sync() {
    let sim = simulator().await;
    let url = token_url(&sim);
    let app = spawn_app_with(Durability::None, move |c| {
        c.marketplace_token_url = url;
        c.request_timeout_ms = 1000;
    })
    .await;
    until_ready(&app).await;
    // Test-only SQL: every insert into accounts sleeps 1.5 s on the server.
    sqlx::raw_sql(
        "CREATE FUNCTION slow_insert() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(1.5); RETURN NEW; END $$;
         CREATE TRIGGER slow_insert BEFORE INSERT ON accounts FOR EACH ROW EXECUTE FUNCTION slow_insert();",
    )
    .execute(&pool(&app).await)
    .await
    .unwrap();
    let res = create(&app, ADMIN, &body("acme", "rt-acct-1")).await;
    assert_eq!(res.status(), 503, "the request timed out after the insert was sent");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let jobs = loop {
        let jobs = jobs_of(&app, "acme").await;
        if !jobs.is_empty() || std::time::Instant::now() > deadline {
            break jobs;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(stored_rows(&app).await, 1, "the account is stored");
    assert_eq!(jobs.len(), 1, "its first sync is queued: {jobs:?}");
    assert_eq!(jobs[0]["trigger"], "account_created", "{jobs:?}");
}

async fn jobs_of(app: &TestApp, account: &str) -> Vec<Value> {
    let v: Value = app
        .get(READER, &format!("/v1/jobs?account_id={account}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["jobs"].as_array().unwrap().clone()
}

#[tokio::test]
async fn the_first_sync_is_off_for_a_request_that_says_so_and_for_a_server_configured_without_it() {
    let app = app_without_marketplace().await;
    until_ready(&app).await;
    let mut b = body("acme", "rt-acct-1");
    b["skip_validation"] = true.into();
    b["first_sync"] = false.into();
    let res = create(&app, ADMIN, &b).await;
    assert_eq!(res.status(), 201);
    let v: Value = res.json().await.unwrap();
    assert_eq!((&v["first_sync_job"], &v["first_sync_error"]), (&Value::Null, &Value::Null), "{v}");
    assert!(jobs_of(&app, "acme").await.is_empty(), "no job was queued");

    let off = spawn_app_with(Durability::None, |c| c.accounts.first_sync = false).await;
    until_ready(&off).await;
    let mut b = body("globex", "rt-acct-2");
    b["skip_validation"] = true.into();
    b["first_sync"] = true.into();
    let v: Value = create(&off, ADMIN, &b).await.json().await.unwrap();
    assert_eq!(v["first_sync_job"], Value::Null, "the server's switch wins: {v}");
    assert!(jobs_of(&off, "globex").await.is_empty());
}

/// A token service that answers each exchange only once `release` fires, after telling
/// `asked`: the test decides what happens while the API waits for it.
async fn held_token_service() -> (String, tokio::sync::mpsc::Receiver<()>, tokio::sync::mpsc::Sender<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/auth/o2/token", listener.local_addr().unwrap());
    let (asked_tx, asked) = tokio::sync::mpsc::channel(4);
    let (release, mut released) = tokio::sync::mpsc::channel::<()>(4);
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let mut buf = vec![0u8; 16 * 1024];
            let _ = conn.read(&mut buf).await;
            let _ = asked_tx.send(()).await;
            if released.recv().await.is_none() {
                return;
            }
            let body = r#"{"access_token":"Atza|held","token_type":"bearer","expires_in":3600}"#;
            let reply = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = conn.write_all(reply.as_bytes()).await;
        }
    });
    (url, asked, release)
}

async fn first_sync_not_queued_then_the_logs() {
    logs();
    let (url, mut asked, release) = held_token_service().await;
    let mut app = spawn_app_with(Durability::None, move |c| c.marketplace_token_url = url).await;
    until_ready(&app).await;
    let request = {
        let req = app.post(ADMIN, "/v1/accounts").json(&body("acme", "rt-acct-1"));
        tokio::spawn(async move { req.send().await.unwrap() })
    };
    // The request has passed the key and rate checks (Redis) and waits for the
    // marketplace: Redis goes away before the account is stored and the sync queued.
    tokio::time::timeout(Duration::from_secs(10), asked.recv()).await.unwrap();
    app.redis.kill();
    release.send(()).await.unwrap();
    let res = request.await.unwrap();
    assert_eq!(res.status(), 201, "the account was stored");
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["id"], "acme");
    assert_eq!(v["first_sync_job"], Value::Null, "{v}");
    let why = v["first_sync_error"].as_str().expect("the failure is reported");
    assert!(
        why.starts_with("the account is stored, but its first sync could not be queued")
            && why.ends_with("submit a sync with POST /v1/jobs"),
        "{why}"
    );
    assert_no_secrets(why);
    // what went wrong inside stays in the log: the client reads no Redis error text
    let lower = why.to_lowercase();
    for internal in ["redis", "os error", "refused", "broken pipe", "connection"] {
        assert!(!lower.contains(internal), "the answer names {internal:?}: {why}");
    }
    assert_eq!(stored_rows(&app).await, 1, "the account stays");

    let text = String::from_utf8_lossy(&logs().0.lock().unwrap()).into_owned();
    let logged: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("first sync could not be queued") && l.contains("acme"))
        .collect();
    assert_eq!(logged.len(), 1, "logged once, with the account: {logged:#?}");
}

// ---- the tests that read the process's log lines, each in a child process -------------

rusty_fork::rusty_fork_test! {
    #![rusty_fork(timeout_ms = 180_000)]

    #[test]
    fn no_log_line_carries_a_secret() {
        in_runtime(every_secret_flow_then_the_logs());
    }

    #[test]
    fn a_first_sync_that_cannot_be_queued_leaves_the_account_stored_and_the_answer_says_so() {
        in_runtime(first_sync_not_queued_then_the_logs());
    }
}

fn in_runtime(flow: impl std::future::Future<Output = ()>) {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(flow);
}

// ---- the repository and the harness, directly --------------------------------------------

mod repository {
    use drover::crypto::{EncryptionKey, SecretBox};
    use drover::db::{AccountRepo, DatabaseConfig, DbError, NewAccount};
    use drover::job::{AccountId, MarketplaceId};
    use drover::lwa::LwaCredentials;
    use drover_tests::harness::PgDatabase;
    use secrecy::ExposeSecret;
    use sqlx::Row;

    use super::{BOGUS_REFRESH, BOGUS_SECRET, CLIENT_ID, TEST_ENCRYPTION_KEY};

    fn sealer() -> SecretBox {
        SecretBox::new(&EncryptionKey::parse(TEST_ENCRYPTION_KEY).unwrap())
    }

    fn new_account(id: &str) -> NewAccount {
        NewAccount {
            id: AccountId::parse(id).unwrap(),
            seller_id: format!("{id}-seller"),
            marketplace_ids: vec![MarketplaceId::parse("ATVPDKIKX0DER").unwrap()],
            credentials: LwaCredentials {
                client_id: CLIENT_ID.into(),
                client_secret: BOGUS_SECRET.into(),
                refresh_token: BOGUS_REFRESH.into(),
            },
        }
    }

    #[tokio::test]
    async fn credentials_open_to_what_was_stored_and_only_with_the_same_key() {
        let db = PgDatabase::create().await;
        let repo = AccountRepo::new(db.pool().clone());
        let stored = repo.insert(&new_account("acme"), &sealer()).await.unwrap();
        assert_eq!(stored.seller_id, "acme-seller");

        let opened = repo.credentials(&stored.id, &sealer()).await.unwrap().expect("the account exists");
        assert_eq!(opened.account, stored);
        assert_eq!(opened.credentials.client_id, CLIENT_ID);
        assert_eq!(opened.credentials.client_secret.expose_secret(), BOGUS_SECRET);
        assert_eq!(opened.credentials.refresh_token.expose_secret(), BOGUS_REFRESH);
        let shown = format!("{opened:?}");
        assert!(!shown.contains(BOGUS_SECRET) && !shown.contains(BOGUS_REFRESH), "{shown}");

        let other_key = SecretBox::new(&EncryptionKey::parse(drover::crypto::DEV_ENCRYPTION_KEY).unwrap());
        let err = repo.credentials(&stored.id, &other_key).await.unwrap_err();
        assert!(matches!(err, DbError::Other(_)), "{err:?}");
        assert!(!err.to_string().contains(BOGUS_SECRET), "{err}");
        assert!(repo
            .credentials(&AccountId::parse("nobody").unwrap(), &sealer())
            .await
            .unwrap()
            .is_none());
    }

    #[tokio::test]
    async fn duplicates_conflict_and_inactive_accounts_leave_the_active_list() {
        let db = PgDatabase::create().await;
        let repo = AccountRepo::new(db.pool().clone());
        for id in ["b-acct", "a-acct", "c-acct"] {
            repo.insert(&new_account(id), &sealer()).await.unwrap();
        }
        let err = repo.insert(&new_account("a-acct"), &sealer()).await.unwrap_err();
        assert_eq!(err, DbError::Conflict("account a-acct already exists".into()));

        repo.set_active(&AccountId::parse("b-acct").unwrap(), false).await.unwrap();
        let active: Vec<String> = repo.list_active().await.unwrap().into_iter().map(|a| a.id.to_string()).collect();
        assert_eq!(active, ["a-acct", "c-acct"]);
        let b = repo.get(&AccountId::parse("b-acct").unwrap()).await.unwrap().unwrap();
        assert!(!b.active && b.updated_at >= b.created_at);
        assert!(matches!(
            repo.set_active(&AccountId::parse("nobody").unwrap(), true).await,
            Err(DbError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn every_connection_runs_with_the_configured_statement_timeout() {
        let db = PgDatabase::create().await;
        let pool = drover::db::connect_lazy(&DatabaseConfig {
            statement_timeout_ms: 1500,
            ..DatabaseConfig::with_url(db.url())
        })
        .unwrap();
        let shown: String = sqlx::query("SHOW statement_timeout").fetch_one(&pool).await.unwrap().get(0);
        assert_eq!(shown, "1500ms");
        let err: DbError = sqlx::query("SELECT pg_sleep(3)").execute(&pool).await.unwrap_err().into();
        assert!(err.is_unavailable() && err.to_string().contains("57014"), "{err}");
    }

    #[tokio::test]
    async fn migrations_can_run_again_and_concurrently() {
        let db = PgDatabase::create().await;
        let runs = (0..4).map(|_| drover::db::migrate(db.pool()));
        for r in futures::future::join_all(runs).await {
            r.unwrap();
        }
    }

    /// Found by the durability audit of 2026-12-07 (second): sqlx returns from a failed
    /// migration run with its advisory lock still held by the session, and the pool kept
    /// that connection: every other replica's migration waited behind it (up to the
    /// connection's life, 30 min). A failed run leaves no lock.
    #[tokio::test]
    async fn a_migration_run_that_fails_leaves_no_lock_behind() {
        let db = PgDatabase::create().await;
        // one applied migration no longer matches: every run fails
        sqlx::query("UPDATE _sqlx_migrations SET checksum = '\\x00'::bytea WHERE version = (SELECT min(version) FROM _sqlx_migrations)")
            .execute(db.pool())
            .await
            .unwrap();
        assert!(drover::db::migrate(db.pool()).await.is_err());
        // (the server ends the closed session's locks as its process exits)
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        loop {
            let locks: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' \
                 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            )
            .fetch_one(db.pool())
            .await
            .unwrap();
            if locks == 0 {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "the failed run's lock is still held");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// A rolled-back release meets migrations it does not know (a newer release applied
    /// them): it starts anyway, as they only add tables and columns.
    #[tokio::test]
    async fn migrations_a_newer_release_applied_do_not_stop_an_older_one() {
        let db = PgDatabase::create().await;
        drover::db::migrate(db.pool()).await.unwrap();
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (99999, 'from a newer release', true, '\\x00'::bytea, 1)",
        )
        .execute(db.pool())
        .await
        .unwrap();
        drover::db::migrate(db.pool())
            .await
            .expect("an unknown applied migration is ignored");
    }

    async fn exists(name: &str) -> bool {
        let admin = PgDatabase::create().await;
        let n: i64 = sqlx::query("SELECT count(*) FROM pg_database WHERE datname = $1")
            .bind(name)
            .fetch_one(admin.pool())
            .await
            .unwrap()
            .get(0);
        n == 1
    }

    #[tokio::test]
    async fn a_test_database_is_dropped_with_its_handle_even_when_the_test_panics() {
        let db = PgDatabase::create().await;
        let name = db.name().to_owned();
        assert!(exists(&name).await);
        // An open connection does not keep it alive.
        let _open = sqlx::query("SELECT 1").execute(db.pool()).await.unwrap();
        drop(db);
        assert!(!exists(&name).await, "{name} was dropped");

        let (tx, rx) = tokio::sync::oneshot::channel();
        let panicked = tokio::spawn(async move {
            let db = PgDatabase::create().await;
            tx.send(db.name().to_owned()).unwrap();
            panic!("a failing test");
        })
        .await;
        assert!(panicked.is_err());
        let name = rx.await.unwrap();
        assert!(!exists(&name).await, "{name} was dropped while unwinding");
    }
}

/// Found by the audits of 2026-12-05 (docs/architecture.md, "Known limits"): registering
/// an account checked a scoped key's accounts before it validated the body, so a
/// malformed id was a 403 while `POST /v1/jobs` and schedules answered 422 naming it.
/// A malformed id is a 422 naming it now; a well-formed account that is not the key's is
/// still a 403 (before the other fields are looked at: `api_tenants::
/// a_huge_marketplace_list_is_refused_before_any_per_element_work`), and nothing is
/// stored either way.
#[tokio::test]
async fn a_scoped_keys_malformed_account_is_a_422_naming_its_fields() {
    let app = app_without_marketplace().await;
    until_ready(&app).await;
    let p = problem(create(&app, ACME_SUB, &body("not an id!", "rt-acct-1")).await, 422).await;
    assert_eq!(fields(&p), ["id"], "{p}");
    problem(create(&app, ACME_SUB, &body("globex", "rt-acct-1")).await, 403).await;
    assert_eq!(stored_rows(&app).await, 0);
}
