//! The console's server side over HTTP (the real API on port 0, a private redis-server and
//! Postgres database): sessions and their cookie, CSRF on every action, read keys that
//! get no action and are refused one, scoped keys that never see another account, and
//! every page's size. The browser suite (`ui_browser::`) drives the same pages in Chromium.
use crate::api_support;

use api_support::*;
use drover::job::{ErrorClass, JobKind};
use drover::queue::JobStore;
use drover_api::config::RateLimitConfig;
use drover_tests::harness::Durability;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use reqwest::redirect::Policy;
use serde_json::Value;

/// A browser without cookies of its own: it keeps the session cookie itself.
struct Browser {
    http: reqwest::Client,
    base: String,
    cookie: String,
}

impl Browser {
    async fn sign_in(app: &TestApp, key: &str) -> Browser {
        let http = reqwest::Client::builder().redirect(Policy::none()).build().unwrap();
        let res = http.post(app.url("/ui/login")).form(&[("key", key)]).send().await.unwrap();
        assert_eq!(res.status(), 303, "signed in");
        assert_eq!(res.headers()[LOCATION], "/ui");
        let set = res.headers()[SET_COOKIE].to_str().unwrap().to_owned();
        let cookie = set.split(';').next().unwrap().to_owned();
        Browser {
            http,
            base: app.url(""),
            cookie,
        }
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let res = self
            .http
            .get(format!("{}{path}", self.base))
            .header(COOKIE, &self.cookie)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        (status, res.text().await.unwrap())
    }

    async fn post(&self, path: &str, form: &[(&str, &str)]) -> u16 {
        self.post_form(path, form).await.status().as_u16()
    }

    /// A form posted with the session's cookie, the answer as it came (not followed).
    async fn post_form<T: serde::Serialize + ?Sized>(&self, path: &str, form: &T) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.base))
            .header(COOKIE, &self.cookie)
            .form(form)
            .send()
            .await
            .unwrap()
    }

    /// Where a page sends the browser (its `Location`), or `None` when it answers itself.
    async fn redirect_of(&self, path: &str) -> Option<String> {
        let res = self
            .http
            .get(format!("{}{path}", self.base))
            .header(COOKIE, &self.cookie)
            .send()
            .await
            .unwrap();
        res.headers().get(LOCATION).map(|l| l.to_str().unwrap().to_owned())
    }

    /// The session's CSRF token, as every page's sign-out form carries it.
    async fn csrf(&self) -> String {
        let (_, page) = self.get("/ui").await;
        let at = page.find("name=\"csrf\" value=\"").expect("a csrf field") + "name=\"csrf\" value=\"".len();
        page[at..].split('"').next().unwrap().to_owned()
    }
}

async fn paused(app: &TestApp, kind: &str) -> bool {
    let v: Value = app.get_json(ADMIN, "/v1/queues").await;
    v["queues"].as_array().unwrap().iter().find(|q| q["kind"] == kind).unwrap()["paused"]
        .as_bool()
        .unwrap()
}

#[tokio::test]
async fn a_key_becomes_a_session_cookie_that_is_httponly_strict_and_ends_at_sign_out() {
    let app = spawn_app().await;
    let http = reqwest::Client::builder().redirect(Policy::none()).build().unwrap();
    let wrong = http.post(app.url("/ui/login")).form(&[("key", "not-a-key")]).send().await.unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(wrong.headers().get(SET_COOKIE).is_none());
    let text = wrong.text().await.unwrap();
    assert!(
        text.contains("That key is not valid") && !text.contains("not-a-key"),
        "the key is not echoed"
    );

    let res = http.post(app.url("/ui/login")).form(&[("key", ADMIN)]).send().await.unwrap();
    let set = res.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    for part in ["HttpOnly", "SameSite=Strict", "Path=/ui"] {
        assert!(set.contains(part), "{set}");
    }
    assert!(!set.contains("Secure") && !set.contains(ADMIN), "{set}");
    let tls = http
        .post(app.url("/ui/login"))
        .header("x-forwarded-proto", "https")
        .form(&[("key", ADMIN)])
        .send()
        .await
        .unwrap();
    let set = tls.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    assert!(set.contains("; Secure"), "Secure over TLS: {set}");
    // Found by the hostile-tenant audit of 2026-12-06: the cookie had no `__Host-`
    // prefix, so a page on a sibling subdomain could plant its own session (its key's)
    // for this host and the operator acted under it. Over TLS only the prefixed cookie,
    // which a browser takes from this host alone, is read.
    assert!(set.starts_with("__Host-drover_session=") && set.contains("Path=/;"), "{set}");
    let value = set.split(';').next().unwrap().split_once('=').unwrap().1.to_owned();
    let over_tls = |cookie: String| {
        http.get(app.url("/ui/jobs"))
            .header("x-forwarded-proto", "https")
            .header(COOKIE, cookie)
            .send()
    };
    let planted = over_tls(format!("drover_session={value}")).await.unwrap();
    assert_eq!(planted.status(), 303, "a bare cookie is not read over TLS");
    let own = over_tls(format!("__Host-drover_session={value}")).await.unwrap();
    assert_eq!(own.status(), 200);

    // Without a session: pages send to the sign-in page, actions are refused.
    let page = http.get(app.url("/ui/jobs")).send().await.unwrap();
    assert_eq!(
        (page.status().as_u16(), page.headers()[LOCATION].to_str().unwrap()),
        (303, "/ui/login")
    );
    let act = http.post(app.url("/ui/queues/sync/pause")).send().await.unwrap();
    assert_eq!(act.status(), 403);

    let b = Browser::sign_in(&app, ADMIN).await;
    assert_eq!(b.get("/ui").await.0, 200);
    let csrf = b.csrf().await;
    assert_eq!(b.post("/ui/logout", &[("csrf", &csrf)]).await, 303);
    assert_eq!(b.get("/ui").await.0, 303, "the session ended");
}

/// Found by the console audit of 2026-12-07 (second): the session slid in Redis with
/// each request (the overview's polls too, so an unattended tab kept it for ever) while
/// its cookie ended 8 h after sign-in, leaving the session open and the browser unable
/// to sign out. A session lasts at most a day from sign-in, its cookie as long; unused,
/// Redis ends it sooner.
#[tokio::test]
async fn a_session_in_use_ends_a_day_after_sign_in_with_its_cookie() {
    let app = spawn_app().await;
    let http = reqwest::Client::builder().redirect(Policy::none()).build().unwrap();
    let res = http.post(app.url("/ui/login")).form(&[("key", ADMIN)]).send().await.unwrap();
    let set = res.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    assert!(set.contains("Max-Age=86400"), "the cookie lasts as long as the session may: {set}");
    let b = Browser {
        http,
        base: app.url(""),
        cookie: set.split(';').next().unwrap().to_owned(),
    };
    assert_eq!(b.get("/ui").await.0, 200);
    // A day and an hour since it began (its index is scored by when it began, in µs),
    // used all along: it has ended.
    let mut conn = app.redis.conn();
    let indexes: Vec<String> = redis::cmd("KEYS").arg("drover:ui:*:sessions").query(&mut conn).unwrap();
    for index in &indexes {
        let ids: Vec<String> = redis::cmd("ZRANGE").arg(index).arg(0).arg(-1).query(&mut conn).unwrap();
        let day_ago = (chrono::Utc::now() - chrono::Duration::hours(25)).timestamp_micros();
        for id in ids {
            let _: () = redis::cmd("ZADD")
                .arg(index)
                .arg("XX")
                .arg(day_ago)
                .arg(id)
                .query(&mut conn)
                .unwrap();
        }
    }
    assert_eq!(b.get("/ui").await.0, 303, "sent to sign in again");
    assert!(session_hashes(&app).await.is_empty(), "and its record is gone");
}

#[tokio::test]
async fn every_action_needs_the_sessions_csrf_token_and_an_admin_key() {
    let app = spawn_app().await;
    let admin = Browser::sign_in(&app, ADMIN).await;
    assert_eq!(admin.post("/ui/queues/sync/pause", &[]).await, 403, "no token");
    assert_eq!(
        admin.post("/ui/queues/sync/pause", &[("csrf", "forged")]).await,
        403,
        "a wrong token"
    );
    let other = Browser::sign_in(&app, ADMIN).await;
    assert_eq!(
        admin.post("/ui/queues/sync/pause", &[("csrf", &other.csrf().await)]).await,
        403,
        "another session's token"
    );
    assert!(!paused(&app, "sync").await, "nothing happened");
    assert_eq!(admin.post("/ui/queues/sync/pause", &[("csrf", &admin.csrf().await)]).await, 303);
    assert!(paused(&app, "sync").await);
    let audit: Value = app.get_json(ADMIN, "/v1/audit").await;
    assert_eq!(audit["entries"][0]["action"], "queue.pause", "{audit}");
    assert_eq!(audit["entries"][0]["actor"], "admin");

    // A read key: pages without action forms; an action with its own valid token refused.
    let reader = Browser::sign_in(&app, READER).await;
    let dead = app.submit_ok(&cleanup_body("acme")).await;
    app.kill_job(&dead).await;
    for path in ["/ui", "/ui/jobs", "/ui/queues", "/ui/dead-letter", &format!("/ui/jobs/{dead}")] {
        let (status, page) = reader.get(path).await;
        assert_eq!(status, 200, "{path}");
        assert!(!page.contains("class=\"action"), "{path} offers a read key an action");
    }
    let token = reader.csrf().await;
    assert_eq!(reader.post("/ui/queues/sync/resume", &[("csrf", &token)]).await, 403);
    assert_eq!(reader.post(&format!("/ui/jobs/{dead}/retry"), &[("csrf", &token)]).await, 403);
    assert!(paused(&app, "sync").await, "still paused");
    let (_, page) = admin.get(&format!("/ui/jobs/{dead}")).await;
    assert!(page.contains("class=\"action retry"), "an admin may retry the dead job");
}

#[tokio::test]
async fn a_scoped_key_sees_only_its_accounts_jobs_and_dead_letters() {
    let app = spawn_app().await;
    let mine = app.submit_ok(&cleanup_body("acme")).await;
    let theirs = app.submit_ok(&cleanup_body("globex")).await;
    app.kill_job_with(&theirs, ErrorClass::Permanent, "globex-only failure 12345").await;
    let acme = Browser::sign_in(&app, ACME).await;
    let (_, jobs) = acme.get("/ui/jobs").await;
    assert!(jobs.contains(mine.as_str()) && !jobs.contains(theirs.as_str()), "{jobs}");
    let (status, page) = acme.get(&format!("/ui/jobs/{theirs}")).await;
    assert_eq!(status, 404);
    assert!(!page.contains("globex"), "not even the account is named");
    let (_, dlq) = acme.get("/ui/dead-letter").await;
    assert!(!dlq.contains("globex-only"), "{dlq}");
    let (status, _) = acme.get("/ui/dead-letter?account_id=globex").await;
    assert_eq!(status, 403);
    let (_, overview) = acme.get("/ui").await;
    assert!(
        overview.contains("limited to some") && !overview.contains("table id=\"kinds\""),
        "no queue-wide figures"
    );
    // The admin sees both.
    let admin = Browser::sign_in(&app, ADMIN).await;
    let (_, dlq) = admin.get("/ui/dead-letter").await;
    assert!(dlq.contains("globex-only failure #"), "{dlq}");
}

#[tokio::test]
async fn every_page_is_html_under_200_kb_and_errors_are_pages_not_json() {
    let app = spawn_app().await;
    for n in 0..40 {
        let id = app.submit_ok(&cleanup_body(&format!("acct-{n}"))).await;
        app.kill_job_with(&id, ErrorClass::Permanent, &format!("SKU-{n:05} said {n}")).await;
    }
    let b = Browser::sign_in(&app, ADMIN).await;
    for path in [
        "/ui",
        "/ui/jobs",
        "/ui/dead-letter",
        "/ui/queues",
        "/ui/accounts",
        "/ui/schedules",
        "/ui/audit",
    ] {
        let (status, page) = b.get(path).await;
        assert_eq!(status, 200, "{path}: {page}");
        assert!(page.starts_with("<!DOCTYPE html>"), "{path}");
        assert!(page.len() < 200_000, "{path}: {} bytes", page.len());
    }
    let (status, page) = b.get("/ui/jobs/not-a-job").await;
    assert_eq!(status, 404);
    assert!(page.starts_with("<!DOCTYPE html>") && page.contains("Request id"), "{page}");
    for asset in ["htmx-2.0.11.min.js", "uPlot-1.6.32.iife.min.js", "console.js", "console.css"] {
        let res = reqwest::get(app.url(&format!("/ui/assets/{asset}"))).await.unwrap();
        assert_eq!(res.status(), 200, "{asset} is served from the binary");
    }
}

/// Found by the console audit of 2026-12-07: a job page's live section (refreshed on its
/// own) holds the Cancel and Retry forms with the session's token, but was answered
/// without the pages' headers: a sibling site could frame it and have an admin click
/// over its buttons, and it could be stored. It has a page's headers.
#[tokio::test]
async fn the_live_section_of_a_job_page_is_never_framed_nor_stored() {
    let app = spawn_app().await;
    let id = app.submit_ok(&cleanup_body("acme")).await;
    let b = Browser::sign_in(&app, ADMIN).await;
    let res = b
        .http
        .get(format!("{}/ui/jobs/{id}/live", b.base))
        .header(COOKIE, &b.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let header = |name: &str| res.headers().get(name).map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(header("x-frame-options").as_deref(), Some("DENY"));
    assert!(
        header("content-security-policy").is_some_and(|c| c.contains("frame-ancestors 'none'")),
        "{:?}",
        res.headers()
    );
    assert_eq!(header("cache-control").as_deref(), Some("no-store"));
    assert!(res.text().await.unwrap().contains("name=\"csrf\""), "the section holds the forms");
}

/// The hidden fields of the confirm page's form, as the browser posts them.
fn confirm_fields(page: &str) -> Vec<(String, String)> {
    let form = &page[page.find("id=\"confirm\"").expect("a confirm form")..];
    let form = &form[..form.find("</form>").unwrap()];
    form.split("<input ")
        .skip(1)
        .filter_map(|input| {
            let attr = |name: &str| {
                let at = input.find(&format!("{name}=\""))? + name.len() + 2;
                Some(input[at..].split('"').next()?.replace("&amp;", "&"))
            };
            Some((attr("name")?, attr("value")?))
        })
        .collect()
}

/// Found by the console audit of 2026-12-07: the confirm page counted a filter's (or a
/// group's) dead jobs, but its form carried only the filter, so the action selected
/// again when the button was pressed: a job that died in between was deleted for good
/// unseen. The action reaches the jobs dead when the page counted them.
#[tokio::test]
async fn a_discard_confirmed_for_a_filter_leaves_a_job_that_died_after_the_confirm_page() {
    let app = spawn_app().await;
    for n in 0..2 {
        let id = app.submit_ok(&cleanup_body("acme")).await;
        app.kill_job_with(&id, ErrorClass::Permanent, &format!("SKU-{n:05} rejected")).await;
    }
    let b = Browser::sign_in(&app, ADMIN).await;
    for confirm in ["/ui/dead-letter/confirm?op=discard&account_id=acme&kind=cleanup".to_owned(), {
        let groups: Value = app.get_json(ADMIN, "/v1/dead-letter/groups?kind=cleanup").await;
        let group = groups["groups"][0]["id"].as_str().unwrap().to_owned();
        format!("/ui/dead-letter/confirm?op=discard&group={group}")
    }] {
        let (_, page) = b.get(&confirm).await;
        let counted: usize = element(&page, "confirm-count").parse().unwrap();
        let fields = confirm_fields(&page);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let later = app.submit_ok(&cleanup_body("acme")).await;
        app.kill_job_with(&later, ErrorClass::Permanent, "SKU-99999 rejected").await;
        let form: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(b.post("/ui/dead-letter/act", &form).await, 303, "{confirm}: {fields:?}");
        assert_eq!(
            app.job(ADMIN, later.as_str()).await.1["state"],
            "dead",
            "{confirm}: the job that died after the count is left ({counted} counted)"
        );
    }
}

/// Found by the seventh audits of 2026-12-07: a group's count on the dead-letter page
/// linked to every dead job of its kind (`/ui/jobs?state=dead&kind=…`), not the group's,
/// so an operator following it saw the other groups' jobs mixed in. It lists the group's.
#[tokio::test]
async fn a_groups_count_links_to_that_groups_dead_jobs_only() {
    let app = spawn_app().await;
    let mut timeouts = Vec::new();
    for _ in 0..2 {
        let id = app.submit_ok(&cleanup_body("acme")).await;
        app.kill_job_with(&id, drover::job::ErrorClass::Permanent, "timed out waiting for the token")
            .await;
        timeouts.push(id.to_string());
    }
    let refused = app.submit_ok(&cleanup_body("acme")).await;
    app.kill_job_with(&refused, drover::job::ErrorClass::Permanent, "the marketplace refused the listing")
        .await;
    let b = Browser::sign_in(&app, ADMIN).await;
    let (_, dlq) = b.get("/ui/dead-letter").await;
    let groups: Value = app.get_json(ADMIN, "/v1/dead-letter/groups?kind=cleanup").await;
    let group = groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["count"] == 2)
        .unwrap_or_else(|| panic!("the timeouts' group: {groups}"));
    let marker = format!("data-group=\"{}\"", group["id"].as_str().unwrap());
    let row = dlq[dlq.find(&marker).unwrap_or_else(|| panic!("no {marker} in {dlq}"))..]
        .split("</tr>")
        .next()
        .unwrap();
    let at = row.find("href=\"").expect("the count links somewhere") + "href=\"".len();
    let link = row[at..].split('"').next().unwrap().replace("&amp;", "&");
    let (status, listed) = b.get(&link).await;
    assert_eq!(status, 200, "{link}: {listed}");
    for id in &timeouts {
        assert!(listed.contains(id.as_str()), "{link} lists the group's {id}");
    }
    assert!(
        !listed.contains(refused.as_str()),
        "{link} lists another group's dead job {refused}"
    );
}

/// The dead count of `account`'s cleanup jobs.
async fn dead_cleanups(app: &TestApp, account: &str) -> u64 {
    let counts = app.store.account_counts(account).await.unwrap();
    counts.kinds.iter().find(|(k, _)| *k == JobKind::Cleanup).unwrap().1.dead
}

/// The confirm page's form for discarding the one cleanup group there is, as posted.
async fn confirmed_group_discard(app: &TestApp, b: &Browser) -> Vec<(String, String)> {
    let groups: Value = app.get_json(ADMIN, "/v1/dead-letter/groups?kind=cleanup").await;
    let group = groups["groups"][0]["id"].as_str().unwrap().to_owned();
    let (_, page) = b.get(&format!("/ui/dead-letter/confirm?op=discard&group={group}")).await;
    confirm_fields(&page)
}

/// Found by the console audit of 2026-12-07 (second): a group's discard walked the
/// group's index from its newest end in calls of 600 index entries, passing over the
/// jobs that died after the confirm page counted, so with 600 or more of those every
/// call found nothing and the console said "Discarded 0" with the confirmed jobs left.
#[tokio::test]
async fn a_group_discard_reaches_the_jobs_it_counted_past_many_that_died_after() {
    let app = spawn_app().await;
    app.dead_in_bulk(&[("acme", 1000)]).await;
    let b = Browser::sign_in(&app, ADMIN).await;
    let fields = confirmed_group_discard(&app, &b).await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    app.dead_in_bulk(&[("acme", 700)]).await;
    let form: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(b.post("/ui/dead-letter/act", &form).await, 303, "{fields:?}");
    assert_eq!(
        dead_cleanups(&app, "acme").await,
        700,
        "the 1,000 counted went, the 700 after stayed"
    );
}

/// Found by the console audit of 2026-12-07 (second): a group's discard checked its cap
/// of 10,000 only between calls, so it deleted for good 200 jobs more than the confirm
/// page said, and its notice never said that more were left.
#[tokio::test]
async fn a_group_discard_deletes_no_more_than_the_confirm_page_said_and_says_more_match() {
    let app = spawn_app().await;
    app.dead_in_bulk(&[("acme", 10_300)]).await;
    let b = Browser::sign_in(&app, ADMIN).await;
    let fields = confirmed_group_discard(&app, &b).await;
    let form: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let res = b.post_form("/ui/dead-letter/act", &form).await;
    assert_eq!(res.status(), 303);
    let (_, page) = b.get(res.headers()[LOCATION].to_str().unwrap()).await;
    // The action may outlast the page (then it says how far it got); wait for its end.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut last = dead_cleanups(&app, "acme").await;
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let now = dead_cleanups(&app, "acme").await;
        if now == last && now < 10_300 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{now} left after a minute");
        last = now;
    }
    assert_eq!(last, 300, "exactly the 10,000 the page said went");
    if page.contains("Discarded 10000 dead jobs") {
        assert!(page.contains("more may match"), "{page}");
    }
}

/// `thousands` × 1,000 queued cleanup jobs for `account`, newer than any before.
async fn queue_thousands(app: &TestApp, account: &str, thousands: usize) {
    for _ in 0..thousands {
        let batch: Vec<drover::queue::NewJob> = (0..1000).map(|_| drover::queue::NewJob::new(cleanup_payload(account))).collect();
        for r in app.store.enqueue_bulk(batch).await.unwrap() {
            r.unwrap();
        }
    }
}

async fn state_of(app: &TestApp, id: &drover::job::JobId) -> String {
    app.job(ADMIN, id.as_str()).await.1["state"].as_str().unwrap().to_owned()
}

/// Polls until the job has this state (the console's paced replay runs in the background).
async fn until_state(app: &TestApp, id: &drover::job::JobId, want: &str) {
    for _ in 0..100 {
        if state_of(app, id).await == want {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("{id} never became {want}: {}", state_of(app, id).await);
}

/// The text of the first element with this id.
fn element(page: &str, id: &str) -> String {
    let at = page.find(&format!("id=\"{id}\">")).unwrap_or_else(|| panic!("no #{id} in {page}")) + id.len() + 6;
    page[at..].split('<').next().unwrap().to_owned()
}

/// Found by the console audit of 2026-12-06: when the canary replayed no job (another
/// sync of its account active, the picked jobs no longer dead), the canary page had no
/// rows, took that for "every canary succeeded" and offered the rest at once. Nothing
/// else goes now, and the answer says why, as the CLI's does.
#[tokio::test]
async fn a_canary_that_replayed_nothing_lets_nothing_else_go() {
    let app = spawn_app().await;
    let queued = app.submit_ok(&cleanup_body("acme")).await;
    let dead = app.submit_ok(&cleanup_body("acme")).await;
    app.kill_job_with(&dead, ErrorClass::Permanent, "SKU-00001 rejected").await;
    let b = Browser::sign_in(&app, ADMIN).await;
    let csrf = b.csrf().await;
    let ids = format!("{queued},{dead}");
    let res = b
        .post_form(
            "/ui/dead-letter/act",
            &[("csrf", csrf.as_str()), ("op", "replay"), ("ids", &ids), ("canary", "1")],
        )
        .await;
    let status = res.status().as_u16();
    let page = res.text().await.unwrap();
    assert_eq!(status, 409, "{page}");
    assert!(
        page.contains("no canary could be replayed") && !page.contains("replay-rest"),
        "{page}"
    );
    assert_eq!(state_of(&app, &dead).await, "dead", "nothing else went");
    // A canary page with no canary (a hand-made address) offers nothing either.
    let (_, page) = b.get(&format!("/ui/dead-letter/canary?ids={dead}&canary_ids=")).await;
    assert!(!page.contains("replay-rest"), "{page}");
}

#[tokio::test]
async fn picked_jobs_a_filter_and_a_group_with_a_canary_are_confirmed_with_their_count_first() {
    let app = spawn_app().await;
    let mut acme = Vec::new();
    for n in 0..4 {
        let id = app.submit_ok(&cleanup_body("acme")).await;
        app.kill_job_with(&id, ErrorClass::Permanent, &format!("SKU-{n:05} rejected")).await;
        acme.push(id);
    }
    let globex = app.submit_ok(&cleanup_body("globex")).await;
    app.kill_job_with(&globex, ErrorClass::Transient, "socket closed").await;
    let b = Browser::sign_in(&app, ADMIN).await;
    let csrf = b.csrf().await;

    // A selection: two picked jobs, counted, then discarded.
    let (_, jobs) = b.get("/ui/jobs?state=dead").await;
    assert!(
        jobs.contains(&format!("name=\"ids\" value=\"{}\"", acme[0])),
        "dead jobs can be picked"
    );
    let picked = format!("/ui/dead-letter/confirm?op=discard&ids={}&ids={}", acme[0], acme[1]);
    let (status, page) = b.get(&picked).await;
    assert_eq!((status, element(&page, "confirm-count")), (200, "2".to_owned()), "{page}");
    let ids = format!("{},{}", acme[0], acme[1]);
    assert_eq!(
        b.post("/ui/dead-letter/act", &[("csrf", &csrf), ("op", "discard"), ("ids", &ids)])
            .await,
        303
    );
    assert_eq!(app.job(ADMIN, acme[0].as_str()).await.0, 404, "deleted");

    // A filter: globex's one dead job, counted, then replayed (paced, in the background).
    let (_, page) = b.get("/ui/dead-letter/confirm?op=replay&account_id=globex").await;
    assert_eq!(element(&page, "confirm-count"), "1");
    assert_eq!(
        b.post(
            "/ui/dead-letter/act",
            &[("csrf", &csrf), ("op", "replay"), ("account_id", "globex")]
        )
        .await,
        303
    );
    until_state(&app, &globex, "queued").await;

    // A group with a canary of 1: the other job waits until the canary has succeeded.
    let groups: Value = app.get_json(ADMIN, "/v1/dead-letter/groups?kind=cleanup").await;
    let group = groups["groups"][0]["id"].as_str().unwrap().to_owned();
    let (_, page) = b.get(&format!("/ui/dead-letter/confirm?op=replay&group={group}&canary=1")).await;
    assert_eq!(element(&page, "confirm-count"), "2");
    let res = b
        .post_form(
            "/ui/dead-letter/act",
            &[("csrf", csrf.as_str()), ("op", "replay"), ("group", &group), ("canary", "1")],
        )
        .await;
    let canary_url = res.headers()[LOCATION].to_str().unwrap().to_owned();
    assert!(canary_url.starts_with("/ui/dead-letter/canary?"), "{canary_url}");
    let states = [state_of(&app, &acme[2]).await, state_of(&app, &acme[3]).await];
    let (canary, other) = if states[0] == "queued" {
        (&acme[2], &acme[3])
    } else {
        (&acme[3], &acme[2])
    };
    assert_eq!(state_of(&app, other).await, "dead", "only the canary went: {states:?}");
    let (_, page) = b.get(&canary_url).await;
    assert!(page.contains("Waiting for the canary") && !page.contains("replay-rest"), "{page}");

    let token = app.lease(canary).await;
    let done = drover::queue::Settlement {
        id: canary.clone(),
        token,
        action: drover::queue::SettleAction::Succeeded(serde_json::json!({})),
        attempt: None,
    };
    app.store.settle(JobKind::Cleanup, &[done]).await.unwrap();
    let (_, page) = b.get(&canary_url).await;
    assert!(page.contains("id=\"replay-rest\""), "the rest may follow now: {page}");
    assert_eq!(state_of(&app, other).await, "dead", "still waiting for the operator");
    assert_eq!(
        b.post("/ui/dead-letter/act", &[("csrf", &csrf), ("op", "rest"), ("group", &group)])
            .await,
        303
    );
    until_state(&app, other, "queued").await;
    // Each action is in the audit log once (a paced replay once it has finished).
    let mut actions = Vec::new();
    for _ in 0..50 {
        let audit: Value = app.get_json(ADMIN, "/v1/audit").await;
        actions = audit["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["action"].as_str().unwrap().to_owned())
            .collect();
        if actions.len() >= 4 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    actions.sort();
    assert_eq!(actions, ["dlq.discard", "dlq.replay", "dlq.replay", "dlq.replay"]);
}

/// `POST /ui/login` with `key`, from a client without cookies: (status, Retry-After, body).
async fn try_login(app: &TestApp, key: &str, forwarded_for: Option<&str>) -> (u16, Option<String>, String) {
    let http = reqwest::Client::builder().redirect(Policy::none()).build().unwrap();
    let mut req = http.post(app.url("/ui/login")).form(&[("key", key)]);
    if let Some(from) = forwarded_for {
        req = req.header("x-forwarded-for", from);
    }
    let res = req.send().await.unwrap();
    let retry_after = res.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
    (res.status().as_u16(), retry_after, res.text().await.unwrap())
}

/// The console's session hashes in Redis (not the index of a key's sessions).
async fn session_hashes(app: &TestApp) -> Vec<String> {
    let mut conn = redis::Client::open(app.redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS").arg("drover:ui:*session:*").query_async(&mut conn).await.unwrap();
    keys
}

/// Found by the hostile-tenant audit of 2026-12-05: the sign-in form's body (up to the
/// API's 1 MiB limit) was read before the throttle was asked, so an address past its
/// budget still made the API wait for and hold a megabyte per connection, without a key.
/// The throttle answers first, and a sign-in body is a few kilobytes at most.
#[tokio::test]
async fn a_throttled_sign_in_is_refused_before_its_body_is_read_and_a_big_one_is_refused() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app_with(Durability::None, |c| c.ui.login_limit = RateLimitConfig::LOGINS).await;
    let (status, _, _) = try_login(&app, &"k".repeat(64 * 1024), None).await;
    assert_eq!(status, 413, "a sign-in body of 64 KiB is refused");
    for n in 0..30 {
        if try_login(&app, &format!("guess-{n}"), None).await.0 == 429 {
            break;
        }
    }
    // Headers that promise a megabyte, and no body: the throttle answers at once.
    let mut raw = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    raw.write_all(
        b"POST /ui/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1048576\r\n\r\nkey=",
    )
    .await
    .unwrap();
    let mut answer = vec![0u8; 64];
    let n = tokio::time::timeout(std::time::Duration::from_secs(2), raw.read(&mut answer))
        .await
        .expect("answered without waiting for the body")
        .unwrap();
    let head = String::from_utf8_lossy(&answer[..n]).to_string();
    assert!(head.starts_with("HTTP/1.1 429"), "{head}");
}

#[tokio::test]
async fn failed_sign_ins_from_one_address_get_429_with_retry_after_and_a_valid_key_works_once_it_has_passed() {
    // The default budget (api.ui.login_limit: 10 at once, then one every 6 s per address).
    let app = spawn_app_with(Durability::None, |c| c.ui.login_limit = RateLimitConfig::LOGINS).await;
    let mut statuses = Vec::new();
    for n in 0..30 {
        let (status, _, _) = try_login(&app, &format!("guess-{n}"), None).await;
        statuses.push(status);
    }
    let first_429 = statuses.iter().position(|s| *s == 429);
    assert!(
        first_429.is_some_and(|at| at <= 10 && statuses[at..].iter().all(|s| *s == 429)),
        "30 wrong keys from one address: {statuses:?}"
    );

    // Throttled, a valid key gets the same answer as a wrong one: the 429 says nothing
    // about the key, and X-Forwarded-For from an untrusted peer does not change the address.
    let (valid, retry_after, valid_page) = try_login(&app, ADMIN, None).await;
    let (wrong, _, wrong_page) = try_login(&app, "guess-again", Some("203.0.113.9")).await;
    assert_eq!((valid, wrong), (429, 429));
    let seconds: u64 = retry_after.expect("a Retry-After header").parse().unwrap();
    assert!((1..=60).contains(&seconds), "Retry-After: {seconds}");
    let shape = |page: &str| page.chars().filter(|c| !c.is_ascii_digit()).collect::<String>();
    assert_eq!(
        shape(&valid_page),
        shape(&wrong_page),
        "a 429 does not tell a valid key from a wrong one"
    );
    assert!(
        valid_page.starts_with("<!DOCTYPE html>") && !valid_page.contains(ADMIN),
        "{valid_page}"
    );

    tokio::time::sleep(std::time::Duration::from_secs(seconds)).await;
    let (status, _, _) = try_login(&app, ADMIN, None).await;
    assert_eq!(status, 303, "once the window has passed the valid key signs in");
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_sign_in_budget() {
    let app = spawn_app_with(Durability::None, |c| {
        c.ui.login_limit = RateLimitConfig { per_minute: 1, burst: 3 };
        c.ui.trusted_proxies = vec!["127.0.0.0/8".into()];
    })
    .await;
    for n in 0..3 {
        assert_eq!(try_login(&app, &format!("guess-{n}"), Some("203.0.113.7")).await.0, 401);
    }
    assert_eq!(
        try_login(&app, ADMIN, Some("203.0.113.7")).await.0,
        429,
        "203.0.113.7 spent its budget"
    );
    // What a client writes left of the address the proxy appended is not believed.
    let spoofed = try_login(&app, ADMIN, Some("198.51.100.1, 203.0.113.7")).await.0;
    assert_eq!(spoofed, 429, "a forged hop does not open a fresh budget");
    assert_eq!(try_login(&app, ADMIN, Some("203.0.113.8")).await.0, 303, "another client signs in");
    assert_eq!(try_login(&app, ADMIN, None).await.0, 303, "the proxy's own address is a client too");
}

#[tokio::test]
async fn one_key_holds_at_most_its_cap_of_sessions_the_oldest_end_and_the_newest_work() {
    // The default cap (api.ui.max_sessions_per_key): 20.
    let app = spawn_app().await;
    let reader = Browser::sign_in(&app, READER).await;
    let mut admins = Vec::new();
    for _ in 0..23 {
        admins.push(Browser::sign_in(&app, ADMIN).await);
    }
    let held = session_hashes(&app).await;
    assert!(
        held.len() <= 21,
        "23 sign-ins by one key and one by another left {} sessions in Redis",
        held.len()
    );
    for (n, b) in admins.iter().enumerate() {
        let want = if n < 3 { 303 } else { 200 };
        assert_eq!(b.get("/ui").await.0, want, "session {n} of 23");
    }
    assert_eq!(reader.get("/ui").await.0, 200, "another key's session is not ended");

    let mut conn = redis::Client::open(app.redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS").arg("drover:ui:*session*").query_async(&mut conn).await.unwrap();
    for key in keys {
        let ttl: i64 = redis::cmd("TTL").arg(&key).query_async(&mut conn).await.unwrap();
        assert!(ttl > 0, "{key} has no TTL ({ttl})");
    }
}

/// Found by this stop's hostile-tenant audit: the confirm page counted picked jobs by
/// reading each one whole (payload, attempts) once per copy of its id, up to 10,000, so
/// one GET with a large job's id repeated made Redis send gigabytes. The ids are counted
/// once each, from their summaries.
#[tokio::test]
async fn the_confirm_page_counts_each_picked_job_once_without_reading_its_record() {
    let app = spawn_app().await;
    let id = app.submit_ok(&cleanup_body("acme")).await;
    app.kill_job(&id).await;
    let b = Browser::sign_in(&app, ADMIN).await;
    let picked: Vec<String> = (0..200).map(|_| format!("ids={id}")).collect();
    let mut conn = app.store.connection();
    // What a confirm page reads whatever it counts (the session), with an id that names no job.
    let before = command_calls(&mut conn, "hgetall").await;
    b.get("/ui/dead-letter/confirm?op=replay&ids=nonsense").await;
    let session = command_calls(&mut conn, "hgetall").await - before;
    let before = command_calls(&mut conn, "hgetall").await;
    let (status, page) = b.get(&format!("/ui/dead-letter/confirm?op=replay&{}", picked.join("&"))).await;
    assert_eq!(
        (status, element(&page, "confirm-count")),
        (200, "1".to_owned()),
        "each copy was counted"
    );
    assert_eq!(
        command_calls(&mut conn, "hgetall").await - before,
        session,
        "a picked job's whole record was read"
    );
}

/// Found by this stop's newcomer audit: a sync's job page said "Progress: 1 of null" (a
/// sync does not know its total), and an error the worker wrote ("transient: …", its
/// class first) read "transient: transient: …".
#[tokio::test]
async fn a_job_page_shows_progress_without_a_total_and_an_errors_class_once() {
    let app = spawn_app().await;
    let running = app.submit_ok(&sync_body("acme")).await;
    let token = app.lease(&running).await;
    let progress = drover::job::Progress {
        done: 3,
        total: None,
        message: Some("orders: 3 pages".into()),
    };
    assert!(app.store.set_progress(&running, &token, &progress).await.unwrap());
    let dead = app.submit_ok(&cleanup_body("acme")).await;
    app.kill_job_with(&dead, ErrorClass::Transient, "transient: socket closed").await;
    let b = Browser::sign_in(&app, ADMIN).await;
    let (_, page) = b.get(&format!("/ui/jobs/{running}")).await;
    assert!(page.contains("Progress: 3 orders: 3 pages"), "no progress line as expected");
    assert!(!page.contains("of null"), "a total that is not known was shown as null");
    let (_, page) = b.get(&format!("/ui/jobs/{dead}")).await;
    assert!(page.contains("transient: socket closed"), "the error is shown");
    assert!(!page.contains("transient: transient:"), "the error's class was shown twice");
}

/// Found by the audit of 2026-12-07 (third): a job page showed neither what the job
/// ended with (its result: a partial backfill's failed windows, a cleanup's counts) nor,
/// for a replayed job, how its previous life ended. It shows both, escaped.
#[tokio::test]
async fn a_job_page_shows_the_result_and_how_a_replayed_jobs_previous_life_ended() {
    let app = spawn_app().await;
    let ended = app.submit_ok(&cleanup_body("acme")).await;
    let token = app.lease(&ended).await;
    let result = serde_json::json!({"deleted": 7, "failed_windows": [{"window": "w1", "error": "<b>upstream</b> said no"}]});
    let s = drover::queue::Settlement {
        id: ended.clone(),
        token,
        action: drover::queue::SettleAction::Partial(result),
        attempt: None,
    };
    app.store.settle(JobKind::Cleanup, &[s]).await.unwrap();
    let replayed = app.submit_ok(&cleanup_body("acme")).await;
    app.kill_job_with(&replayed, ErrorClass::Permanent, "SKU rejected by the marketplace")
        .await;
    assert_eq!(app.store.retry(&replayed).await.unwrap(), drover::queue::RetryOutcome::Queued);
    let b = Browser::sign_in(&app, ADMIN).await;
    let (_, page) = b.get(&format!("/ui/jobs/{ended}")).await;
    let shown = page
        .split("id=\"job-result\"")
        .nth(1)
        .unwrap_or_default()
        .split("</pre>")
        .next()
        .unwrap_or_default();
    assert!(
        shown.contains("&quot;deleted&quot;: 7") || shown.contains("\"deleted\": 7"),
        "{page}"
    );
    assert!(shown.contains("&lt;b&gt;upstream&lt;/b&gt; said no"), "escaped: {page}");
    let (_, page) = b.get(&format!("/ui/jobs/{replayed}")).await;
    let shown = page
        .split("id=\"job-previous-ending\"")
        .nth(1)
        .unwrap_or_default()
        .split("</p>")
        .next()
        .unwrap_or_default();
    assert!(
        shown.contains("dead") && shown.contains("SKU rejected by the marketplace"),
        "{page}"
    );
}

/// Found by the API audit of 2026-12-07 (third): a job page showed a wait's reason and
/// `until` alone, so a wait that had ended in a paused queue read "scheduled until <a
/// past time>" for as long as the pause, and a running job's pending cancel was not
/// shown. The page says what comes after the wait, and that a cancel is pending.
#[tokio::test]
async fn a_job_page_says_what_comes_after_a_wait_and_that_a_cancel_is_pending() {
    let app = spawn_app().await;
    app.store.set_paused(JobKind::Cleanup, true).await.unwrap();
    let mut soon = cleanup_body("acme");
    soon["delay_ms"] = serde_json::json!(100);
    let waiting = app.submit_ok(&soon).await;
    let running = app.submit_ok(&sync_body("acme")).await;
    app.lease(&running).await;
    assert_eq!(app.store.cancel(&running).await.unwrap(), drover::queue::CancelOutcome::Requested);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let b = Browser::sign_in(&app, ADMIN).await;
    let (_, page) = b.get(&format!("/ui/jobs/{waiting}")).await;
    let shown = page.split("id=\"job-waiting\"").nth(1).unwrap_or_default();
    assert!(shown.contains("then queue_paused"), "{page}");
    let (_, page) = b.get(&format!("/ui/jobs/{running}")).await;
    assert!(page.contains("id=\"job-cancel-requested\""), "{page}");
}

/// Hostile-tenant finding H6: the dead-letter page showed whatever text a link put in
/// `?notice=`, so a crafted link could show a signed-in operator any message as the
/// console's own. Only a notice the console made for this session after an action shows.
#[tokio::test]
async fn the_dead_letter_page_shows_only_notices_the_console_made_for_this_session() {
    let app = spawn_app().await;
    let b = Browser::sign_in(&app, ADMIN).await;
    let (status, page) = b
        .get("/ui/dead-letter?notice=Your+session+has+expired.+Call+support+on+555-0100")
        .await;
    assert_eq!(status, 200);
    assert!(!page.contains("555-0100"), "a crafted link's text was shown as a notice");

    let dead = app.submit_ok(&cleanup_body("acme")).await;
    app.kill_job_with(&dead, ErrorClass::Permanent, "rejected").await;
    let csrf = b.csrf().await;
    let res = b
        .post_form(
            "/ui/dead-letter/act",
            &[("csrf", csrf.as_str()), ("op", "discard"), ("ids", dead.as_str())],
        )
        .await;
    assert_eq!(res.status(), 303);
    let after = res.headers()[LOCATION].to_str().unwrap().to_owned();
    let (_, page) = b.get(&after).await;
    assert!(page.contains("Discarded 1 dead jobs"), "the action's own notice is shown: {page}");
    let other = Browser::sign_in(&app, ADMIN).await;
    let (_, page) = other.get(&after).await;
    assert!(
        !page.contains("Discarded 1 dead jobs"),
        "another session's notice link shows nothing"
    );
}

/// An app whose console replays `rate` jobs a second, six dead cleanups of globex, and
/// an admin signed in to it.
async fn six_dead_of_globex_replayed_at(rate: u32) -> (TestApp, Vec<drover::job::JobId>, Browser) {
    let app = spawn_app_with(Durability::None, move |c| c.ui.replay_rate = rate).await;
    let mut dead = Vec::new();
    for _ in 0..6 {
        let id = app.submit_ok(&cleanup_body("globex")).await;
        app.kill_job_with(&id, ErrorClass::Permanent, "rejected").await;
        dead.push(id);
    }
    let b = Browser::sign_in(&app, ADMIN).await;
    (app, dead, b)
}

/// Found by a review of the API (2026-12-05): every "replay" of a selection started a
/// paced replay of its own, so asking twice (or sixty times) for one group replayed it
/// at twice (sixty times) `api.ui.replay_rate`, long after the requests. A selection
/// already being replayed for the key is not started again, and the console says so.
#[tokio::test]
async fn asking_again_to_replay_a_selection_being_replayed_starts_no_second_replay() {
    let (app, dead, b) = six_dead_of_globex_replayed_at(1).await;
    // Each time through the confirm page, as the browser goes: each page stamps the
    // selection with when it counted (found by the review of 2026-12-07: two stamps were
    // two selections, and the second replay started).
    let ask = || async {
        let (_, page) = b.get("/ui/dead-letter/confirm?op=replay&account_id=globex").await;
        let fields = confirm_fields(&page);
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let res = b.post_form("/ui/dead-letter/act", &fields).await;
        assert_eq!(res.status(), 303);
        let after = res.headers()[LOCATION].to_str().unwrap().to_owned();
        b.get(&after).await.1
    };
    let began = tokio::time::Instant::now();
    let first = ask().await;
    assert!(first.contains("Replaying"), "{first}");
    let second = ask().await;
    assert!(second.contains("Already replaying"), "a second replay was started: {second}");
    // One job a second (the first at once): after about 1.5 s, two have gone back to the
    // queue, not four; a slow machine's extra seconds allow one more each.
    tokio::time::sleep_until(began + std::time::Duration::from_millis(1500)).await;
    let mut queued = 0;
    for id in &dead {
        if state_of(&app, id).await == "queued" {
            queued += 1;
        }
    }
    let took = began.elapsed();
    assert!(queued <= 1 + took.as_secs(), "{queued} replayed in {took:?} at 1 a second");
}

/// Found by the hostile-tenant audit of 2026-12-07 (third): the console's paced replay of
/// a filter (or a group, or a canary's rest) replayed its first second's jobs and
/// stopped: each later tick found the running total at its limit, replayed nothing, and
/// took the selection for used up — the rest stayed dead, and the audit said "ok".
#[tokio::test]
async fn a_paced_replay_goes_on_past_its_first_second_to_the_selections_end() {
    let (app, dead, b) = six_dead_of_globex_replayed_at(2).await;
    let (_, page) = b.get("/ui/dead-letter/confirm?op=replay&account_id=globex").await;
    assert_eq!(element(&page, "confirm-count"), "6", "{page}");
    let res = b.post_form("/ui/dead-letter/act", &confirm_fields(&page)).await;
    assert_eq!(res.status(), 303);
    // Two a second: all six within about three seconds (`until_state` waits up to 10 s).
    for id in &dead {
        until_state(&app, id, "queued").await;
    }
    let mut entry = Value::Null;
    for _ in 0..50 {
        let audit: Value = app.get_json(ADMIN, "/v1/audit").await;
        if let Some(e) = audit["entries"].as_array().unwrap().iter().find(|e| e["action"] == "dlq.replay") {
            entry = e.clone();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(entry["touched"], 6, "{entry}");
    assert_eq!(entry["outcome"], "ok", "{entry}");
}

/// Found by this stop's audit of the API's surfaces: the confirm and canary pages
/// counted a filter's dead jobs a page of the listing at a time until the last page, and
/// a page with no match went on: a key scoped to an account walked that account's index
/// of every job it retains (20,000 entries a page), up to the request timeout, and the
/// canary page did so again every 2 s — for read-only keys too. The count now reads at
/// most 3 pages and says "at least", and the canary is an admin's page like the confirm.
#[tokio::test]
async fn the_confirm_pages_count_of_a_filter_reads_a_bounded_part_of_the_index() {
    let app = spawn_app().await;
    let dead = app.submit_ok(&cleanup_body("acme")).await;
    app.kill_job(&dead).await;
    queue_thousands(&app, "acme", 100).await;
    let b = Browser::sign_in(&app, ACME).await;
    let mut conn = app.store.connection();
    let before = command_calls(&mut conn, "fcall").await;
    let (status, page) = b.get("/ui/dead-letter/confirm?op=replay&account_id=acme&kind=cleanup").await;
    // each filtered page is two calls: its read-ahead (`list_ahead`) and the page (`list`)
    let pages = (command_calls(&mut conn, "fcall").await - before) / 2;
    assert_eq!(status, 200, "{page}");
    assert!(pages <= 3, "{pages} pages of 20,000 entries read to count one selection");
    assert_eq!(element(&page, "confirm-count"), "at least 0", "{page}");

    let reader = Browser::sign_in(&app, READER).await;
    let (status, _) = reader.get("/ui/dead-letter/canary?account_id=acme").await;
    assert_eq!(status, 403, "the canary page is an admin's");
}

/// A console `POST` whose body arrives slowly: `Content-Length` bytes announced, a few
/// sent, then nothing. The raw connection.
async fn stalled_form(app: &TestApp, cookie: &str, path: &str, bytes: usize) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut raw = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nCookie: {cookie}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {bytes}\r\n\r\ncsrf="
    );
    raw.write_all(head.as_bytes()).await.unwrap();
    raw
}

/// Found by the hostile-tenant audit of 2026-12-05: the console's forms were read
/// outside the request-body budget the API's routes reserve from, so a signed-in key
/// (a read-only one too: it may sign out) could hold a form's 64 KiB per stalled
/// `POST /ui/logout` until the request timeout, as many as it opened. They now reserve
/// from the same budget: past the key's quarter a form is refused at once.
#[tokio::test]
async fn console_forms_sent_slowly_are_bounded_by_the_request_body_budget() {
    use tokio::io::AsyncReadExt;
    let app = spawn_app_with(Durability::None, |c| {
        c.server.max_body_bytes_in_flight = 1 << 20;
        // (no more than one body may reserve of it: seven eighths)
        (c.body_limit_bytes, c.csv_limit_bytes) = (900_000, 900_000);
    })
    .await;
    let browser = Browser::sign_in(&app, ACME_SUB).await;
    // A key's quarter of 1 MiB holds four forms of 60,000 bytes.
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(stalled_form(&app, &browser.cookie, "/ui/logout", 60_000).await);
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let mut fifth = stalled_form(&app, &browser.cookie, "/ui/logout", 60_000).await;
    let mut buf = vec![0u8; 256];
    let answer = match tokio::time::timeout(std::time::Duration::from_secs(2), fifth.read(&mut buf)).await {
        Ok(Ok(n)) if n > 0 => String::from_utf8_lossy(&buf[..n]).lines().next().unwrap_or_default().to_owned(),
        _ => String::new(),
    };
    assert_eq!(answer, "HTTP/1.1 503 Service Unavailable", "refused at once, not held");
    drop(held);
}

/// Found by the review of 7df120f: the audit page's "Older →" link dropped the page's
/// `actor` and `action`, so a filtered view's next page showed every entry.
#[tokio::test]
async fn the_audit_pages_older_link_keeps_its_filters() {
    let app = spawn_app().await;
    for _ in 0..2 {
        assert_eq!(app.post(ADMIN, "/v1/queues/cleanup/pause").send().await.unwrap().status(), 200);
    }
    let browser = Browser::sign_in(&app, ADMIN).await;
    let (status, html) = browser.get("/ui/audit?actor=admin&action=queue.pause&limit=1").await;
    assert_eq!(status, 200, "{html}");
    assert!(
        html.contains("&amp;actor=admin&amp;action=queue.pause\"") || html.contains("&actor=admin&action=queue.pause\""),
        "the next page's link keeps the filters: {html}"
    );
}

/// Found by the hostile-tenant audit of 2026-12-06: the console's error page dropped the
/// `Retry-After` the API's error carries, so a session over its rate (or at its stream
/// cap) was told 429 with no hint of when to come back.
#[tokio::test]
async fn a_console_page_refused_for_the_sessions_rate_says_when_to_retry() {
    let app = spawn_app_with(Durability::None, |c| {
        c.read_rate_limit = RateLimitConfig { per_minute: 60, burst: 2 }
    })
    .await;
    let b = Browser::sign_in(&app, READER).await;
    let mut refused = None;
    for _ in 0..10 {
        let res = b.http.get(app.url("/ui")).header(COOKIE, &b.cookie).send().await.unwrap();
        if res.status() == 429 {
            refused = Some(res);
            break;
        }
    }
    let res = refused.expect("the session ran over its read rate");
    let retry_after = res
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .map(|v| v.to_str().unwrap().to_owned());
    let secs: u64 = retry_after.as_deref().unwrap_or_default().parse().unwrap_or(0);
    assert!(secs >= 1, "no Retry-After on the console's 429: {retry_after:?}");
    assert!(res.text().await.unwrap().starts_with("<!DOCTYPE html>"), "a page, not JSON");
}

/// Found by the hostile-tenant audit of 2026-12-06: `/ui/schedules` looked up the last
/// jobs of up to 50 accounts, a job listing each, and was charged one read for all of
/// them: one unit of a key's read budget bought fifty listings' Redis work.
#[tokio::test]
async fn the_schedules_page_charges_a_read_for_each_accounts_listing_it_makes() {
    let app = spawn_app_with(Durability::None, |c| {
        c.read_rate_limit = RateLimitConfig { per_minute: 60, burst: 5 }
    })
    .await;
    for n in 0..20 {
        app.schedule_ok(&format!("nightly-{n}"), &format!("acct-{n}")).await;
    }
    let b = Browser::sign_in(&app, READER).await;
    let (status, page) = b.get("/ui/schedules").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("nightly-19"), "every schedule is shown");
    // The page's listings used the key's burst: its next API read is refused.
    let res = app.get(READER, "/v1/jobs?account_id=acct-0").send().await.unwrap();
    assert_eq!(res.status(), 429, "one page bought twenty listings for one read");
}

/// Found by the hostile-tenant audit of 2026-12-07 (third): the confirm and canary pages
/// of jobs picked by id read every picked id's summary (up to 10,000) on the one read the
/// page cost, so a burst of such pages bought millions of record reads. They are charged
/// as a listing's walk is: a read for every 200 records.
#[tokio::test]
async fn the_confirm_page_of_picked_jobs_charges_a_read_for_every_200_it_reads() {
    // (a read back a minute: the check below is never late enough to find one refilled)
    let app = spawn_app_with(Durability::None, |c| {
        c.read_rate_limit = RateLimitConfig { per_minute: 1, burst: 5 }
    })
    .await;
    let b = Browser::sign_in(&app, ADMIN).await;
    let ids: Vec<String> = (0..1000).map(|_| drover::job::JobId::new(JobKind::Sync).to_string()).collect();
    let (status, page) = b
        .get(&format!("/ui/dead-letter/confirm?op=replay&picked=1&ids={}", ids.join(",")))
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(element(&page, "confirm-count"), "0", "{page}");
    // The page read 1,000 records: five reads, the key's whole burst.
    let res = app.get(ADMIN, "/v1/jobs").send().await.unwrap();
    assert_eq!(res.status(), 429, "one page read 1,000 records for one read");
}

/// Found by the console audit of 2026-12-06: the schedules page filed each job a schedule
/// made under `<account>/<account>/<name>` (its trigger already names the account) and
/// looked it up under `<account>/<name>`, so the "last jobs" column was always empty; and
/// a disabled schedule showed next ticks it will not make.
#[tokio::test]
async fn the_schedules_page_links_the_jobs_each_schedule_made_and_no_ticks_of_a_disabled_one() {
    use drover::queue::NewJob;
    let app = spawn_app().await;
    app.schedule_ok("nightly", "acme").await;
    let made = app
        .store
        .enqueue(NewJob::new(cleanup_payload("acme")).trigger("schedule:acme/nightly"))
        .await
        .unwrap()
        .id;
    let mut off = serde_json::json!({"cron": "0 3 * * *", "kind": "cleanup", "payload": cleanup_body("acme")["payload"]});
    off["enabled"] = serde_json::json!(false);
    let res = app
        .client
        .put(app.url("/v1/schedules/paused-one"))
        .bearer_auth(ADMIN)
        .json(&off)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let b = Browser::sign_in(&app, READER).await;
    let (status, page) = b.get("/ui/schedules").await;
    assert_eq!(status, 200, "{page}");
    let row = |name: &str| {
        let at = page
            .find(&format!("data-schedule=\"{name}\""))
            .unwrap_or_else(|| panic!("no row {name}: {page}"));
        page[at..at + page[at..].find("</tr>").unwrap()].to_owned()
    };
    assert!(
        row("nightly").contains(&format!("/ui/jobs/{made}")),
        "the job it made is linked: {}",
        row("nightly")
    );
    assert!(row("paused-one").contains("none: disabled"), "{}", row("paused-one"));
}

/// Found by the API audit of 2026-12-06: every console request with a session cookie,
/// made up or not, ran the session's lookup script before any key was known or any rate
/// limit applied, so anyone could buy Redis calls with `Cookie: drover_session=<16 hex>.x`.
/// A cookie that is not a configured key's session (tag and token shape) costs none.
#[tokio::test]
async fn a_made_up_session_cookie_costs_redis_nothing() {
    let app = spawn_app().await;
    let client = reqwest::Client::builder().redirect(Policy::none()).build().unwrap();
    let made_up = [
        "drover_session=0123456789abcdef.x".to_owned(),
        format!("drover_session=0123456789abcdef.{}", "A".repeat(43)),
    ];
    // Once the app's start-up writes are done (its background makes a few a second).
    let mut last = app.redis_stat("total_commands_processed");
    for _ in 0..20 {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let now = app.redis_stat("total_commands_processed");
        if now - last < 5 {
            break;
        }
        last = now;
    }
    let before = app.redis_stat("total_commands_processed");
    for cookie in made_up.iter().cycle().take(100) {
        let res = client.get(app.url("/ui")).header(COOKIE, cookie).send().await.unwrap();
        assert_eq!(res.status(), 303, "to the sign-in page");
        let res = client.post(app.url("/ui/logout")).header(COOKIE, cookie).send().await.unwrap();
        assert!(res.status().is_redirection() || res.status() == 403, "{}", res.status());
    }
    let used = app.redis_stat("total_commands_processed") - before;
    assert!(used < 40, "200 requests with made-up cookies made {used} Redis commands");
    // A real session still works.
    let browser = Browser::sign_in(&app, ADMIN).await;
    assert_eq!(browser.get("/ui").await.0, 200);
}

/// Found by the API audit of 2026-12-06: a console action on the dead letters (a discard
/// or replay of a filter, up to 10,000 jobs in calls of 1,000) was charged one write,
/// where the API charges each call of 1,000: one unit of a key's write budget bought ten
/// calls' work. Each call after the first now costs a write — and (review of that fix)
/// only a call that is made: a discard of fewer than 1,000 is one write, and one stopped
/// by the budget says what it did.
#[tokio::test]
async fn a_console_discard_of_thousands_costs_a_write_for_each_thousand() {
    let app = spawn_app_with(Durability::None, |c| c.rate_limit = RateLimitConfig { per_minute: 1, burst: 2 }).await;
    app.dead_in_bulk(&[("small", 500), ("acme", 2500)]).await;
    let dead_of = |account: &'static str| {
        let store = app.store.clone();
        async move {
            let counts = store.account_counts(account).await.unwrap();
            counts.kinds.iter().find(|(k, _)| *k == JobKind::Cleanup).unwrap().1.dead
        }
    };
    assert_eq!((dead_of("small").await, dead_of("acme").await), (500, 2500));
    let b = Browser::sign_in(&app, ADMIN).await;
    let csrf = b.csrf().await;
    let discard = |account: &'static str| {
        b.http
            .post(app.url("/ui/dead-letter/act"))
            .header(COOKIE, &b.cookie)
            .form(&[("csrf", csrf.as_str()), ("op", "discard"), ("account_id", account)])
            .send()
    };
    // Fewer than 1,000: one call, one write.
    assert_eq!(discard("small").await.unwrap().status(), 303);
    assert_eq!(dead_of("small").await, 0);
    // The second write of the budget pays for the first call; the next is over it.
    let res = discard("acme").await.unwrap();
    assert_eq!(res.status(), 303, "what was done is kept and said");
    let left = dead_of("acme").await;
    assert!(0 < left && left < 2500, "one call's worth discarded, the rest kept: {left} left");
    let (_, page) = b.get(res.headers()[LOCATION].to_str().unwrap()).await;
    assert!(
        page.contains("past this key&#x27;s budget") || page.contains("past this key's budget"),
        "{page}"
    );
}

/// Found by the API audit of 2026-12-06: the sign-in form had no check of where it came
/// from, so another site's page could post its own key to `/ui/login` and sign the
/// victim's browser in to the console as that key (login CSRF). A browser's sign-in from
/// another site is refused; this site's, and a client that is no browser, are not.
#[tokio::test]
async fn a_sign_in_posted_by_another_sites_page_is_refused() {
    let app = spawn_app().await;
    let client = reqwest::Client::builder().redirect(Policy::none()).build().unwrap();
    let post = |extra: &'static [(&'static str, &'static str)]| {
        let mut req = client.post(app.url("/ui/login")).form(&[("key", ADMIN)]);
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        req.send()
    };
    for from_elsewhere in [
        &[("sec-fetch-site", "cross-site"), ("origin", "https://evil.example")][..],
        &[("origin", "https://evil.example")][..],
    ] {
        let res = post(from_elsewhere).await.unwrap();
        assert_eq!(res.status(), 403, "{from_elsewhere:?}");
        assert!(res.headers().get(SET_COOKIE).is_none(), "no session for {from_elsewhere:?}");
    }
    let res = post(&[("sec-fetch-site", "same-origin")]).await.unwrap();
    assert_eq!(res.status(), 303);
    assert!(res.headers().get(SET_COOKIE).is_some());
    let res = post(&[]).await.unwrap();
    assert_eq!(res.status(), 303, "no browser headers: not refused");
}

/// Found by the job-story audit of 2026-12-06: a job page listed its first 100 items
/// with no way to the rest and a summary of total, succeeded and failed only, so a
/// cleanup of 150 SKUs read "150 items: 0 succeeded, 0 failed" with the skipped and
/// pending ones nowhere. The summary names every outcome and the table pages on.
#[tokio::test]
async fn a_job_page_counts_every_items_outcome_and_pages_through_them() {
    use drover::data::items::{self, ItemOutcome};
    use drover::data::run_fence::{self, RunFence, Write};

    let app = spawn_app().await;
    let id = app.submit_ok(&cleanup_body("acme")).await;
    let pool = drover::db::connect_lazy(&drover::db::DatabaseConfig::with_url(app.database_url.clone())).unwrap();
    let mut conn = pool.acquire().await.unwrap();
    let skus: Vec<String> = (0..150).map(|i| format!("SKU-{i:03}")).collect();
    items::seed(&mut conn, id.as_str(), 0, &skus).await.unwrap();
    let run = RunFence {
        job_id: id.as_str(),
        run: 1,
    };
    assert_eq!(run_fence::claim(&mut conn, run).await.unwrap(), Write::Landed);
    for sku in &skus[..100] {
        let written = items::set(&mut conn, run, sku, ItemOutcome::Absent, &serde_json::json!({})).await;
        assert_eq!(written.unwrap(), Write::Landed);
    }
    let b = Browser::sign_in(&app, ADMIN).await;
    let (_, page) = b.get(&format!("/ui/jobs/{id}")).await;
    assert!(page.contains("100 skipped"), "the skipped items are counted");
    assert!(page.contains("50 pending"), "the pending items are counted");
    let next = page
        .split("href=\"")
        .filter_map(|s| s.split('"').next())
        .find(|href| href.contains("cursor="))
        .expect("a link to the next items")
        .replace("&amp;", "&");
    let (status, rest) = b.get(&next).await;
    assert_eq!(status, 200);
    assert!(rest.contains("SKU-149"), "the next page holds the last items");
    assert!(!rest.contains("SKU-000<"), "and not the first");
}

/// Found by the hostile-tenant audit of 2026-12-06: the canary page, charged one read of
/// the key's budget and refreshed every 2 s, read the whole record (payload and all) of
/// each of up to 20 ids the link names: 20 full reads of up to 1 MiB for one charge. It
/// reads each job's state only.
#[tokio::test]
async fn the_canary_page_reads_its_jobs_states_not_their_whole_records() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        let id = app.submit_ok(&cleanup_body("acme")).await;
        app.kill_job(&id).await;
        ids.push(id.to_string());
    }
    let b = Browser::sign_in(&app, ADMIN).await;
    let before = command_calls(&mut app.store.connection(), "hgetall").await;
    let (status, page) = b
        .get(&format!(
            "/ui/dead-letter/canary?kind=cleanup&account_id=acme&canary_ids={}",
            ids.join(",")
        ))
        .await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains(&ids[4]), "the canary's jobs are listed");
    let reads = command_calls(&mut app.store.connection(), "hgetall").await - before;
    // (one: the session's own, read by its script)
    assert_eq!(reads, 1, "{reads} whole hashes read for a page of five states");
}

/// Found by the console audit of 2026-12-06: "Discard picked…" with no box ticked sent
/// no ids, which read as a filter of nothing, "every dead job" (of every kind and, for
/// an admin, every tenant), one click from a permanent delete; and the jobs page's state
/// filter offered `prefetched`, which is no state (the listing answered 422).
#[tokio::test]
async fn the_pick_form_with_nothing_ticked_selects_nothing_and_every_state_offered_filters() {
    let app = spawn_app().await;
    let id = app.submit_ok(&cleanup_body("acme")).await;
    app.kill_job_with(&id, ErrorClass::Permanent, "SKU-00001 rejected").await;
    let b = Browser::sign_in(&app, ADMIN).await;
    let (_, jobs) = b.get("/ui/jobs?state=dead").await;
    assert!(
        jobs.contains("name=\"picked\""),
        "the pick form says its selection is the ticked boxes"
    );
    let (status, page) = b.get("/ui/dead-letter/confirm?picked=1&canary=0&op=discard").await;
    assert_eq!(status, 422, "{page}");
    assert!(!page.contains("every dead job"), "{page}");
    assert!(!page.contains("id=\"confirm\""), "no confirm form: {page}");

    let select = jobs.split("<select name=\"state\">").nth(1).expect("a state filter");
    let select = select.split("</select>").next().unwrap();
    let states: Vec<&str> = select
        .split("<option value=\"")
        .skip(1)
        .filter_map(|o| o.split('"').next())
        .filter(|v| !v.is_empty())
        .collect();
    assert!(states.contains(&"dead"), "{states:?}");
    for state in states {
        let (status, page) = b.get(&format!("/ui/jobs?state={state}")).await;
        assert_eq!(status, 200, "state {state}: {page}");
    }
}

/// Found by the console audit of 2026-12-06: discarding a filter's dead jobs called the
/// API's discard until a call found none, and each call walked only the newest 12,000
/// entries of the account's index (which holds its jobs in every state): a dead job
/// behind 13,000 newer jobs was counted by the confirm page (which lists a page at a
/// time) and then not discarded ("Discarded 0"). The action now lists the filter's ids
/// as the count does, then discards them.
#[tokio::test]
async fn a_filters_discard_reaches_every_dead_job_its_confirm_page_counted() {
    let app = spawn_app().await;
    let dead = app.submit_ok(&cleanup_body("acme")).await;
    app.kill_job(&dead).await;
    queue_thousands(&app, "acme", 13).await;
    let b = Browser::sign_in(&app, ADMIN).await;
    let csrf = b.csrf().await;
    let (status, page) = b.get("/ui/dead-letter/confirm?op=discard&account_id=acme&kind=cleanup").await;
    assert_eq!((status, element(&page, "confirm-count")), (200, "1".to_owned()), "{page}");
    assert_eq!(
        b.post(
            "/ui/dead-letter/act",
            &[("csrf", &csrf), ("op", "discard"), ("account_id", "acme"), ("kind", "cleanup")]
        )
        .await,
        303
    );
    assert_eq!(app.job(ADMIN, dead.as_str()).await.0, 404, "the counted dead job was discarded");
}

/// Found by the console audit of 2026-12-06: for a key limited to several accounts the
/// Jobs and Dead letter links were error pages (the API asks such a key to name an
/// account), with no field to name one. They open on the key's first account.
#[tokio::test]
async fn a_key_for_several_accounts_opens_the_jobs_and_dead_letter_pages_on_one_of_them() {
    let app = spawn_app().await;
    app.submit_ok(&cleanup_body("acme")).await;
    let b = Browser::sign_in(&app, MULTI).await;
    for (page, kept) in [("/ui/jobs?state=queued", "state=queued&"), ("/ui/dead-letter", "")] {
        let to = b.redirect_of(page).await.unwrap_or_else(|| panic!("{page} answered itself"));
        let path = page.split('?').next().unwrap();
        assert_eq!(to, format!("{path}?{kept}account_id=acme"), "{page}");
        let (status, body) = b.get(&to).await;
        assert_eq!(status, 200, "{to}: {body}");
    }
    assert_eq!(
        b.redirect_of("/ui/jobs?account_id=globex").await,
        None,
        "a page naming an account is that account's"
    );
}

/// Found by the review of this stop's diffs (2026-12-06): a canary of every picked job
/// left no ids for "the rest", which read as every dead job (of every tenant, for an
/// admin): the canary page offered to replay them all. Picked jobs none of which is
/// left are nothing, and acting on them is refused.
#[tokio::test]
async fn a_canary_of_every_picked_job_leaves_nothing_else_to_replay() {
    let app = spawn_app().await;
    let acme = app.submit_ok(&cleanup_body("acme")).await;
    app.kill_job_with(&acme, ErrorClass::Permanent, "SKU-00001 rejected").await;
    let globex = app.submit_ok(&cleanup_body("globex")).await;
    app.kill_job_with(&globex, ErrorClass::Permanent, "SKU-00002 rejected").await;
    let b = Browser::sign_in(&app, ADMIN).await;
    let csrf = b.csrf().await;
    let res = b
        .http
        .post(format!("{}/ui/dead-letter/act", b.base))
        .header(COOKIE, &b.cookie)
        .form(&[
            ("csrf", csrf.as_str()),
            ("op", "replay"),
            ("ids", acme.as_str()),
            ("picked", "1"),
            ("canary", "1"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let canary = res.headers()[LOCATION].to_str().unwrap().to_owned();
    let (status, page) = b.get(&canary).await;
    assert_eq!(status, 200, "{page}");
    assert!(!page.contains("every dead job"), "{page}");
    assert!(!page.contains("replay-rest"), "nothing else to replay: {page}");
    let status = b
        .post(
            "/ui/dead-letter/act",
            &[("csrf", &csrf), ("op", "rest"), ("ids", ""), ("picked", "1")],
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(state_of(&app, &globex).await, "dead", "another tenant's dead job stays dead");
}

/// Found by the console audit of 2026-12-07: a console discard of thousands of dead jobs
/// ran inside its request, which the API's timeout (`api.request_timeout_ms`) dropped
/// part-way: the browser got the API's problem JSON, what was done went unsaid and the
/// rest was never tried. The action runs on its own task to its end; past most of the
/// request's time the page says how far it has got.
#[tokio::test]
async fn a_console_discard_that_outlasts_the_request_timeout_goes_on_to_its_end() {
    use futures::StreamExt;
    let app = spawn_app_with(Durability::None, |c| c.request_timeout_ms = 400).await;
    app.dead_in_bulk(&[("acme", 5000)]).await;
    let dead = || async {
        let counts = app.store.account_counts("acme").await.unwrap();
        counts.kinds.iter().find(|(k, _)| *k == JobKind::Cleanup).unwrap().1.dead
    };
    assert_eq!(dead().await, 5000);
    let b = Browser::sign_in(&app, ADMIN).await;
    let csrf = b.csrf().await;
    // The form's last bytes come 150 ms late: the request's time runs from when it came
    // (found by the review of 2026-12-07: the page was timed from the handler's start,
    // and the API's timeout answered first).
    let form = format!("csrf={csrf}&op=discard&account_id=acme");
    let (head, tail) = form.split_at(form.len() - 4);
    let (head, tail) = (head.to_owned(), tail.to_owned());
    let body = futures::stream::iter([Ok::<_, std::io::Error>(head)]).chain(futures::stream::once(async move {
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
        Ok(tail)
    }));
    let res = b
        .http
        .post(app.url("/ui/dead-letter/act"))
        .header(COOKIE, &b.cookie)
        .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303, "a page, not the API's timeout: {:?}", res.headers());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while dead().await > 0 {
        assert!(std::time::Instant::now() < deadline, "{} left after a minute", dead().await);
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Found by the hostile-tenant audit of 2026-12-07: a console event stream was checked
/// against its session only when it opened, so a browser signed out (or a session ended
/// past its key's cap) went on getting the job's events until `api.events_max_ms` (up to
/// an hour). It ends with its session.
#[tokio::test]
async fn signing_out_ends_the_sessions_open_event_streams() {
    use futures::StreamExt;
    let app = spawn_app().await;
    let mut later = cleanup_body("acme");
    later["run_at"] = serde_json::json!((chrono::Utc::now() + chrono::Duration::days(360)).to_rfc3339());
    let id = app.submit_ok(&later).await;
    let b = Browser::sign_in(&app, ADMIN).await;
    let csrf = b.csrf().await;
    let res = b
        .http
        .get(format!("{}/ui/jobs/{id}/events", b.base))
        .header(COOKIE, &b.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let mut body = res.bytes_stream();
    let first = tokio::time::timeout(std::time::Duration::from_secs(5), body.next()).await;
    assert!(matches!(first, Ok(Some(Ok(_)))), "the stream opened: {first:?}");
    assert_eq!(b.post("/ui/logout", &[("csrf", &csrf)]).await, 303);
    let ended = tokio::time::timeout(std::time::Duration::from_secs(12), async {
        while let Some(Ok(_)) = body.next().await {}
    })
    .await;
    assert!(ended.is_ok(), "the stream went on after its session ended");
}

/// Found by the console audit of 2026-12-07: which selections are being replayed at their
/// pace was each API process's own, so the same group confirmed again on another replica
/// (replicas share sessions; nothing pins a browser to one) started a second replay at
/// twice `api.ui.replay_rate`, and a key could run 4 replays per replica. The replays
/// running are kept in Redis, for every replica.
#[tokio::test]
async fn a_replay_asked_again_on_another_replica_starts_nothing() {
    let app = spawn_app_with(Durability::None, |c| c.ui.replay_rate = 1).await;
    for _ in 0..6 {
        let id = app.submit_ok(&cleanup_body("globex")).await;
        app.kill_job_with(&id, ErrorClass::Permanent, "rejected").await;
    }
    let mut config = test_config(&app.redis.url());
    config.ui.replay_rate = 1;
    let (replica, _stop, _task) = start(config).await;
    let b = Browser::sign_in(&app, ADMIN).await;
    let ask = |base: String| {
        let b = &b;
        async move {
            let (_, page) = b.get("/ui/dead-letter/confirm?op=replay&account_id=globex").await;
            let fields = confirm_fields(&page);
            let res = b
                .http
                .post(format!("{base}/ui/dead-letter/act"))
                .header(COOKIE, &b.cookie)
                .form(&fields)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 303);
            let after = res.headers()[LOCATION].to_str().unwrap().to_owned();
            let page = b
                .http
                .get(format!("{base}{after}"))
                .header(COOKIE, &b.cookie)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            page
        }
    };
    let first = ask(app.url("")).await;
    assert!(first.contains("Replaying"), "{first}");
    let second = ask(format!("http://{replica}")).await;
    assert!(
        second.contains("Already replaying"),
        "another replica started a second replay: {second}"
    );
}
