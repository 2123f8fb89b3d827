//! Secrets at rest, read the way someone holding a copy of the stores would: the raw Redis
//! value of a cached LWA access token (M8), and sealed credential columns moved between
//! Postgres rows (L2).
use std::time::Duration;

use drover::crypto::{EncryptionKey, SecretBox};
use drover::db::{AccountRepo, NewAccount};
use drover::job::{AccountId, MarketplaceId};
use drover::lwa::LwaCredentials;
use drover::resilience::{ExposeSecret, Resilience, ResilienceConfig, SecretString};
use drover_tests::harness::{Durability, PgDatabase, RedisServer};

const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const TOKEN: &str = "Atza|live-access-token-9c1e";

/// The credentials the dumped token is got with.
fn credentials() -> LwaCredentials {
    LwaCredentials {
        client_id: "client".into(),
        client_secret: SecretString::from("client-secret"),
        refresh_token: SecretString::from("Atzr|refresh"),
    }
}

async fn resilience(redis: &RedisServer) -> Resilience {
    let client = redis::Client::open(redis.url()).unwrap();
    let conn = redis::aio::ConnectionManager::new(client).await.unwrap();
    Resilience::new(conn, "t", ResilienceConfig::default(), &EncryptionKey::parse(KEY).unwrap())
}

#[tokio::test]
async fn a_redis_dump_holds_no_usable_access_token() {
    let redis = RedisServer::start(Durability::None);
    let account = AccountId::parse("acme").unwrap();
    let r = resilience(&redis).await;
    let got = r
        .access_token(&account, &credentials(), || async {
            Ok::<_, String>((SecretString::from(TOKEN), Duration::from_secs(3600)))
        })
        .await
        .unwrap();
    assert_eq!(got.expose_secret(), TOKEN);
    let raw: Vec<u8> = redis::cmd("GET")
        .arg(r.token_key(&account, &credentials()))
        .query(&mut redis.conn())
        .unwrap();
    assert!(!raw.is_empty(), "the token is shared through Redis");
    assert!(
        !raw.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes()),
        "the raw value holds the token: {}",
        String::from_utf8_lossy(&raw)
    );
    // Another process (a fresh instance, nothing in memory) still gets the token.
    let other = resilience(&redis).await;
    let got = other
        .access_token(&account, &credentials(), || async {
            Err::<(SecretString, Duration), _>("must not refresh")
        })
        .await
        .unwrap();
    assert_eq!(got.expose_secret(), TOKEN);
    // A 401 drops it everywhere.
    other.invalidate_token(&account, &credentials(), &got).await.unwrap();
    let gone: Option<Vec<u8>> = redis::cmd("GET")
        .arg(other.token_key(&account, &credentials()))
        .query(&mut redis.conn())
        .unwrap();
    assert_eq!(gone, None);
}

fn new_account(id: &str, secret: &str, refresh: &str) -> NewAccount {
    NewAccount {
        id: AccountId::parse(id).unwrap(),
        seller_id: format!("seller-{id}"),
        marketplace_ids: vec![MarketplaceId::parse("ATVPDKIKX0DER").unwrap()],
        credentials: LwaCredentials {
            client_id: "client".into(),
            client_secret: secret.into(),
            refresh_token: refresh.into(),
        },
    }
}

#[tokio::test]
async fn a_sealed_credential_moved_to_another_row_or_column_does_not_open() {
    let db = PgDatabase::create().await;
    drover::db::migrate(db.pool()).await.unwrap();
    let secrets = SecretBox::new(&EncryptionKey::parse(KEY).unwrap());
    let repo = AccountRepo::new(db.pool().clone());
    repo.insert(&new_account("acme", "acme-secret", "acme-refresh"), &secrets)
        .await
        .unwrap();
    repo.insert(&new_account("globex", "globex-secret", "globex-refresh"), &secrets)
        .await
        .unwrap();
    let acme = AccountId::parse("acme").unwrap();
    let globex = AccountId::parse("globex").unwrap();
    assert_eq!(
        repo.credentials(&acme, &secrets)
            .await
            .unwrap()
            .unwrap()
            .credentials
            .refresh_token
            .expose_secret(),
        "acme-refresh"
    );
    // globex's refresh token copied into acme's row.
    sqlx::query("UPDATE accounts SET refresh_token_enc = (SELECT refresh_token_enc FROM accounts WHERE id = 'globex') WHERE id = 'acme'")
        .execute(db.pool())
        .await
        .unwrap();
    let moved = repo.credentials(&acme, &secrets).await;
    assert!(moved.is_err(), "globex's token opened in acme's row");
    // globex's two columns swapped within its row.
    sqlx::query("UPDATE accounts SET refresh_token_enc = client_secret_enc, client_secret_enc = refresh_token_enc WHERE id = 'globex'")
        .execute(db.pool())
        .await
        .unwrap();
    assert!(repo.credentials(&globex, &secrets).await.is_err(), "swapped columns opened");
}

#[tokio::test]
async fn a_credential_sealed_before_binding_still_opens_until_the_start_up_step_binds_it_to_its_row() {
    let db = PgDatabase::create().await;
    drover::db::migrate(db.pool()).await.unwrap();
    let secrets = SecretBox::new(&EncryptionKey::parse(KEY).unwrap());
    let repo = AccountRepo::new(db.pool().clone());
    repo.insert(&new_account("acme", "x", "y"), &secrets).await.unwrap();
    repo.insert(&new_account("globex", "x", "y"), &secrets).await.unwrap();
    // Rows as the previous version sealed them: the key id as the only associated data.
    for (id, secret, refresh) in [
        ("acme", "acme-secret", "acme-refresh"),
        ("globex", "globex-secret", "globex-refresh"),
    ] {
        sqlx::query("UPDATE accounts SET client_secret_enc = $2, refresh_token_enc = $3 WHERE id = $1")
            .bind(id)
            .bind(secrets.encrypt(&SecretString::from(secret)))
            .bind(secrets.encrypt(&SecretString::from(refresh)))
            .execute(db.pool())
            .await
            .unwrap();
    }
    let acme = AccountId::parse("acme").unwrap();
    let opened = repo.credentials(&acme, &secrets).await.unwrap().unwrap();
    assert_eq!(opened.credentials.client_secret.expose_secret(), "acme-secret");
    // What the API runs once after the migrations: both rows, both columns.
    assert_eq!(repo.reseal_legacy(&secrets).await.unwrap(), 4);
    let opened = repo.credentials(&acme, &secrets).await.unwrap().unwrap();
    assert_eq!(opened.credentials.refresh_token.expose_secret(), "acme-refresh");
    assert_eq!(repo.reseal_legacy(&secrets).await.unwrap(), 0, "nothing left");
    sqlx::query("UPDATE accounts SET refresh_token_enc = (SELECT refresh_token_enc FROM accounts WHERE id = 'globex') WHERE id = 'acme'")
        .execute(db.pool())
        .await
        .unwrap();
    assert!(
        repo.credentials(&acme, &secrets).await.is_err(),
        "a re-sealed value is bound to its row"
    );
}
