//! One seller registered as two accounts (as for two of its marketplaces, with the same
//! credentials): the marketplace counts both accounts' calls against the seller's one
//! usage plan, so the workers' limiter must too — real `drover-worker` processes, the
//! simulator at SP-API's deleteListingsItem plan (5/s, burst 10), PostgreSQL and Redis.
use crate::jobs_support;

use std::time::Duration;

use drover::crypto::{EncryptionKey, SecretBox, DEV_ENCRYPTION_KEY};
use drover::db::{AccountRepo, NewAccount};
use drover::job::{AccountId, JobState, MarketplaceId};
use drover::lwa::LwaCredentials;
use drover_tests::harness::PgDatabase;
use drover_tests::sim::{AccountSpec, Operation, RateLimit, SimConfig};
use jobs_support::Stack;

/// SP-API's published deleteListingsItem plan.
const DELETE_RATE: f64 = 5.0;

/// Found by the audits of 2026-12-05: each account had its own limiter, so one seller
/// registered twice was sent twice its plan and answered 429s (its jobs parked and
/// finished late). Both accounts now share the seller's limits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seller_registered_as_two_accounts_is_sent_its_one_plan_and_never_throttled() {
    let plans = jobs_support::plans_with(Operation::DeleteListingsItem, RateLimit::new(DELETE_RATE, 10));
    let mut stack = Stack::start_with(
        SimConfig {
            accounts: 0,
            ..SimConfig::fast()
        },
        "",
        plans,
    )
    .await;
    let us = stack
        .account(AccountSpec {
            skus: Some(40),
            ..AccountSpec::new("seller-us")
        })
        .await;
    let ca = stack.same_seller_as("seller-ca", &us).await;
    let skus = stack.sim.admin().skus(us.as_str()).await.unwrap();
    stack.spawn_worker("worker-1", &[]);
    stack.spawn_worker("worker-2", &[]);

    let (first, second) = skus.split_at(skus.len() / 2);
    let jobs = [stack.submit_cleanup(&us, first).await, stack.submit_cleanup(&ca, second).await];
    for id in &jobs {
        let job = stack.finish(id, Duration::from_secs(60)).await;
        assert_eq!(job.state, JobState::Succeeded, "{job:#?}\n{}", stack.logs());
    }

    let stats = stack.sim.admin().stats().await.unwrap();
    let deletes = stats.op(us.as_str(), Operation::DeleteListingsItem);
    println!("one seller, two accounts: {deletes:?}");
    assert_eq!(deletes.accepted as usize, skus.len(), "{deletes:?}");
    assert_eq!(
        deletes.rate_limited, 0,
        "the seller was sent more than its plan and throttled: {deletes:?}"
    );
}

fn registration(id: &str, client_id: &str, refresh: &str) -> NewAccount {
    NewAccount {
        id: AccountId::parse(id).unwrap(),
        seller_id: "A1SELLER".into(),
        marketplace_ids: vec![MarketplaceId::parse("ATVPDKIKX0DER").unwrap()],
        credentials: LwaCredentials {
            client_id: client_id.into(),
            client_secret: "secret".into(),
            refresh_token: refresh.into(),
        },
    }
}

/// A private database with the schema in place, the dev key's sealer and a repository.
async fn migrated() -> (PgDatabase, SecretBox, AccountRepo) {
    let db = PgDatabase::create().await;
    drover::db::migrate(db.pool()).await.unwrap();
    let secrets = SecretBox::new(&EncryptionKey::parse(DEV_ENCRYPTION_KEY).unwrap());
    let repo = AccountRepo::new(db.pool().clone());
    (db, secrets, repo)
}

fn id(s: &str) -> AccountId {
    AccountId::parse(s).unwrap()
}

/// Which accounts share limits: the same client id and refresh token (the marketplace's
/// seller and application) share the first registration's; another application or
/// another authorization keeps its own; a seller id alone shares nothing (it is no
/// secret: another tenant could name it). Rows from before the migration get theirs when
/// a worker first reads one or at the API's next start, the first filled leading.
#[tokio::test]
async fn accounts_share_limits_only_with_the_same_credentials_and_older_rows_get_theirs_on_first_use() {
    let (db, secrets, repo) = migrated().await;
    for (account, client, refresh) in [
        ("acme-us", "app", "Atzr|one"),
        ("acme-ca", "app", "Atzr|one"),
        ("acme-mx", "app", "Atzr|one"),
        ("acme-other-app", "another-app", "Atzr|one"),
        ("acme-reauthorized", "app", "Atzr|two"),
    ] {
        repo.insert(&registration(account, client, refresh), &secrets).await.unwrap();
    }
    let all: Vec<AccountId> = ["acme-us", "acme-ca", "acme-mx", "acme-other-app", "acme-reauthorized"]
        .into_iter()
        .map(id)
        .collect();
    let shared = repo.limits_of(&all).await.unwrap();
    assert_eq!(shared[&id("acme-us")], id("acme-us"));
    assert_eq!(shared[&id("acme-ca")], id("acme-us"));
    assert_eq!(shared[&id("acme-mx")], id("acme-us"));
    assert_eq!(shared[&id("acme-other-app")], id("acme-other-app"));
    assert_eq!(shared[&id("acme-reauthorized")], id("acme-reauthorized"));
    let creds = repo.credentials(&id("acme-ca"), &secrets).await.unwrap().unwrap();
    assert_eq!(creds.limits_of, id("acme-us"), "what the worker's calls count against");

    // Rows as the release before migration 0007 left them, read by a fresh process.
    sqlx::query("UPDATE accounts SET credentials_digest = NULL, limits_of = NULL")
        .execute(db.pool())
        .await
        .unwrap();
    let repo = AccountRepo::new(db.pool().clone());
    let own = repo.limits_of(&all).await.unwrap();
    assert!(own.iter().all(|(a, of)| a == of), "until filled each keeps its own: {own:?}");
    // A worker's run fills the row it reads; the API's start-up fills the rest.
    let creds = repo.credentials(&id("acme-mx"), &secrets).await.unwrap().unwrap();
    assert_eq!(creds.limits_of, id("acme-mx"), "the first of its seller to be filled");
    assert_eq!(repo.fill_seller_limits(&secrets).await.unwrap(), 4);
    let filled = repo.limits_of(&all).await.unwrap();
    for a in ["acme-us", "acme-ca", "acme-mx"] {
        assert_eq!(filled[&id(a)], id("acme-mx"), "{a}: {filled:?}");
    }
    assert_eq!(filled[&id("acme-other-app")], id("acme-other-app"));
    assert_eq!(filled[&id("acme-reauthorized")], id("acme-reauthorized"));
    assert_eq!(repo.fill_seller_limits(&secrets).await.unwrap(), 0, "nothing left to fill");
}

/// Found by the review of 2026-12-06's changes: replacing an account's credentials
/// (`PUT /v1/accounts/{id}/credentials`) kept its group, so two accounts holding the
/// same credentials could count against two limiters (twice the seller's plan), and the
/// accounts that followed one whose credentials changed went on counting against
/// another seller's limits. The group now follows the credentials, as at registration.
#[tokio::test]
async fn replaced_credentials_move_an_account_to_the_limits_they_belong_to() {
    let (db, secrets, repo) = migrated().await;
    for (account, refresh) in [
        ("acme-us", "Atzr|one"),
        ("acme-ca", "Atzr|one"),
        ("acme-mx", "Atzr|one"),
        ("acme-re", "Atzr|two"),
    ] {
        repo.insert(&registration(account, "app", refresh), &secrets).await.unwrap();
    }
    let all: Vec<AccountId> = ["acme-us", "acme-ca", "acme-mx", "acme-re"].into_iter().map(id).collect();
    let groups = || async {
        // a fresh process's view, and the API's own after its replacement
        let fresh = AccountRepo::new(db.pool().clone()).limits_of(&all).await.unwrap();
        assert_eq!(fresh, repo.limits_of(&all).await.unwrap(), "the API forgets what it had read");
        ["acme-us", "acme-ca", "acme-mx", "acme-re"].map(|a| fresh[&id(a)].to_string())
    };
    assert_eq!(groups().await, ["acme-us", "acme-us", "acme-us", "acme-re"]);
    let replace = |account: &'static str, refresh: &'static str| {
        let creds = registration(account, "app", refresh).credentials;
        let (repo, secrets) = (&repo, &secrets);
        async move {
            repo.replace_credentials(&id(account), &creds, secrets)
                .await
                .unwrap()
                .expect("stored")
        }
    };

    // Authorized again with the seller's one token: it joins the seller's limits.
    replace("acme-re", "Atzr|one").await;
    assert_eq!(groups().await, ["acme-us", "acme-us", "acme-us", "acme-us"]);
    // The first account is given another seller's credentials: it leaves, and the
    // others keep sharing theirs, led by the oldest of them.
    replace("acme-us", "Atzr|three").await;
    assert_eq!(groups().await, ["acme-us", "acme-ca", "acme-ca", "acme-ca"]);
    let creds = repo.credentials(&id("acme-mx"), &secrets).await.unwrap().unwrap();
    assert_eq!(creds.limits_of, id("acme-ca"), "what the worker's calls count against");
    // Sealed again with the same credentials (a new encryption key): nothing moves.
    replace("acme-ca", "Atzr|one").await;
    assert_eq!(groups().await, ["acme-us", "acme-ca", "acme-ca", "acme-ca"]);
    assert!(repo
        .replace_credentials(&id("nobody"), &registration("nobody", "app", "x").credentials, &secrets)
        .await
        .unwrap()
        .is_none());
}

/// Found by the review of the change above: the replacement locked the account's row
/// before the credentials' turns, so two replacements at once — credentials swapped
/// between two accounts — could each hold what the other waited for, and Postgres ended
/// one (a 503). The turns now come first, always in the same order.
#[tokio::test]
async fn credentials_swapped_between_two_accounts_at_once_never_deadlock() {
    let (db, secrets, repo) = migrated().await;
    repo.insert(&registration("acme-a", "app", "Atzr|x"), &secrets).await.unwrap();
    repo.insert(&registration("acme-b", "app", "Atzr|y"), &secrets).await.unwrap();
    let (acme_a, acme_b) = (id("acme-a"), id("acme-b"));
    for round in 0..30 {
        let (to_a, to_b) = if round % 2 == 0 {
            ("Atzr|y", "Atzr|x")
        } else {
            ("Atzr|x", "Atzr|y")
        };
        let (a, b) = (
            registration("acme-a", "app", to_a).credentials,
            registration("acme-b", "app", to_b).credentials,
        );
        let (ra, rb) = tokio::join!(
            repo.replace_credentials(&acme_a, &a, &secrets),
            repo.replace_credentials(&acme_b, &b, &secrets)
        );
        ra.unwrap_or_else(|e| panic!("round {round}: {e}"));
        rb.unwrap_or_else(|e| panic!("round {round}: {e}"));
    }
    let groups = AccountRepo::new(db.pool().clone())
        .limits_of(&[id("acme-a"), id("acme-b")])
        .await
        .unwrap();
    assert_eq!(groups[&id("acme-a")], id("acme-a"));
    assert_eq!(groups[&id("acme-b")], id("acme-b"));
}

/// Found by the review of this change: a worker of this release starts leasing while it
/// applies migration 0007 in the background, and its first runs read a schema without
/// the new columns. That read was a permanent error (the job failed, "could not be
/// read"); it is now an outage (the run stops without using an attempt and comes back).
#[tokio::test]
async fn reading_credentials_before_the_migration_ran_is_an_outage_not_a_failure() {
    let (db, secrets, repo) = migrated().await;
    repo.insert(&registration("acme", "app", "Atzr|one"), &secrets).await.unwrap();
    sqlx::query("ALTER TABLE accounts DROP COLUMN limits_of, DROP COLUMN credentials_digest")
        .execute(db.pool())
        .await
        .unwrap();
    let e = repo.credentials(&id("acme"), &secrets).await.unwrap_err();
    assert!(e.is_unavailable(), "{e}");
    assert!(e.to_string().contains("migrations not applied yet"), "{e}");
}
