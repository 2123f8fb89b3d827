"""The operator console (docs/console.md) in a real browser: the system Chromium driven by
Playwright, against an API the Rust test `ui_browser` started and seeded.

Every check is a function that prints one line when it passes; the first failure stops
the run with a message naming the check and exits 1. Nothing is read from the console's
source: the pages are found by the URLs, form fields, ids, data attributes and classes
docs/console.md names, and every figure is compared with what the HTTP API answers.

Environment (set by tests/tests/ui_browser.rs):
  DROVER_UI_BASE_URL        the API, e.g. http://127.0.0.1:41234
  DROVER_UI_ADMIN_KEY       an admin key for every account
  DROVER_UI_READ_KEY        a read key for every account
  DROVER_UI_SCOPED_KEY      an admin key limited to DROVER_UI_ACCOUNT
  DROVER_UI_ACCOUNT         the scoped key's account (acme)
  DROVER_UI_OTHER_ACCOUNT   another account (globex)
  DROVER_UI_GROUPS          every dead-letter group seeded, `id=count,id=count`
  DROVER_UI_CANARY_GROUP    the group to replay with a canary (dead jobs that succeed when run)
  DROVER_UI_HELD_GROUP      a group nobody replays (the forged replay aims at it)
  DROVER_UI_QUEUED_JOB      a job that stays queued (its kind has no worker slots)
  DROVER_UI_DEAD_JOB        a dead job of DROVER_UI_ACCOUNT in DROVER_UI_HELD_GROUP
  DROVER_UI_OTHER_JOB       a job of DROVER_UI_OTHER_ACCOUNT
  DROVER_UI_SCHEDULE        a schedule of DROVER_UI_ACCOUNT
  DROVER_UI_OTHER_SCHEDULE  a schedule of DROVER_UI_OTHER_ACCOUNT
  DROVER_UI_SCREENSHOTS     the directory for the full-page screenshots
  DROVER_UI_CHROMIUM        the browser (default /usr/bin/chromium)
"""

import json
import os
import re
import sys
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import expect, sync_playwright

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Every wait is bounded; none is longer than this.
WAIT_MS = 30_000
SHORT_MS = 10_000
PAGE_LIMIT_BYTES = 200 * 1024
SESSION_COOKIE = "drover_session"
NOT_ENDED = ("queued", "scheduled", "running", "prefetched", "retrying")


class CheckFailed(Exception):
    pass


def fail(message):
    raise CheckFailed(message)


def env(name):
    value = os.environ.get(name, "")
    if not value:
        fail(f"environment variable {name} is not set (the Rust test ui_browser sets it)")
    return value


def load_env():
    """Reads the settings the Rust test passes (module globals, read by every check)."""
    global BASE, ADMIN_KEY, READ_KEY, SCOPED_KEY, ACCOUNT, OTHER_ACCOUNT, GROUPS, CANARY_GROUP
    global HELD_GROUP, QUEUED_JOB, DEAD_JOB, OTHER_JOB, SCHEDULE, OTHER_SCHEDULE, SCREENSHOTS, CHROMIUM
    BASE = env("DROVER_UI_BASE_URL").rstrip("/")
    ADMIN_KEY = env("DROVER_UI_ADMIN_KEY")
    READ_KEY = env("DROVER_UI_READ_KEY")
    SCOPED_KEY = env("DROVER_UI_SCOPED_KEY")
    ACCOUNT = env("DROVER_UI_ACCOUNT")
    OTHER_ACCOUNT = env("DROVER_UI_OTHER_ACCOUNT")
    GROUPS = {g.split("=")[0]: int(g.split("=")[1]) for g in env("DROVER_UI_GROUPS").split(",")}
    CANARY_GROUP = env("DROVER_UI_CANARY_GROUP")
    HELD_GROUP = env("DROVER_UI_HELD_GROUP")
    QUEUED_JOB = env("DROVER_UI_QUEUED_JOB")
    DEAD_JOB = env("DROVER_UI_DEAD_JOB")
    OTHER_JOB = env("DROVER_UI_OTHER_JOB")
    SCHEDULE = env("DROVER_UI_SCHEDULE")
    OTHER_SCHEDULE = env("DROVER_UI_OTHER_SCHEDULE")
    SCREENSHOTS = env("DROVER_UI_SCREENSHOTS")
    CHROMIUM = os.environ.get("DROVER_UI_CHROMIUM", "/usr/bin/chromium")


# Every document the browser loaded: (url, status, body bytes).
PAGES_SEEN = []
# Filled as the checks go, for the later ones.
LEARNED = {}


# ---- the HTTP API and raw posts (urllib) ------------------------------------------------


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


OPENER = urllib.request.build_opener(NoRedirect)


def http(method, path, key=None, cookie=None, form=None, body=None):
    """(status, body text) of one request; redirects are not followed."""
    url = path if path.startswith("http") else BASE + path
    headers = {}
    data = None
    if key:
        headers["Authorization"] = f"Bearer {key}"
    if cookie:
        headers["Cookie"] = f"{SESSION_COOKIE}={cookie}"
    if form is not None:
        data = urllib.parse.urlencode(form).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with OPENER.open(req, timeout=30) as res:
            return res.status, res.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")


def api(path, key=None, method="GET", body=None):
    """The API's JSON answer (admin key unless `key`); a failure for any error status."""
    status, text = http(method, path, key=key or ADMIN_KEY, body=body)
    if status >= 300:
        fail(f"{method} {path} answered {status}: {text[:500]}")
    return json.loads(text) if text else None


def queues():
    return {q["kind"]: q for q in api("/v1/queues")["queues"]}


def job_state(job_id):
    return api(f"/v1/jobs/{job_id}")["state"]


def all_job_ids(account, key=None):
    ids, cursor = [], None
    for _ in range(100):
        query = f"/v1/jobs?account_id={account}&limit=1000"
        if cursor:
            query += "&cursor=" + urllib.parse.quote(cursor)
        page = api(query, key=key)
        ids += [j["id"] for j in page["jobs"]]
        cursor = page.get("next_cursor")
        if not cursor:
            return ids
    fail(f"more than 100 pages of {account}'s jobs")


def dead_groups(key=None):
    return {g["id"]: g["count"] for g in api("/v1/dead-letter/groups?limit=200", key=key)["groups"]}


def group_job_ids(group):
    return [j["id"] for j in api(f"/v1/dead-letter?group={group}&limit=1000")["jobs"]]


def poll(what, condition, timeout_s=SHORT_MS / 1000):
    """Waits (bounded) until `condition()` is truthy; its last value, or a failure naming `what`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            fail(f"{what}: not within {timeout_s:.0f} s")
        time.sleep(0.1)


# ---- the browser --------------------------------------------------------------------------


def number(text):
    digits = re.sub(r"[^0-9]", "", text or "")
    if not digits:
        fail(f"no number in {text!r}")
    return int(digits)


def track_pages(page):
    def seen(response):
        request = response.request
        if request.resource_type != "document" or request.frame != page.main_frame:
            return
        if 300 <= response.status < 400:
            return
        try:
            size = len(response.body())
        except PlaywrightError:
            return
        PAGES_SEEN.append((response.url, response.status, size))

    page.on("response", seen)


def new_session(browser, key, login_screenshot=False):
    """A fresh browser context signed in with `key` through the login form; its page."""
    context = browser.new_context()
    context.set_default_timeout(SHORT_MS)
    page = context.new_page()
    track_pages(page)
    goto(page, "/ui/login")
    if login_screenshot:
        screenshot(page, "login.png")
    page.locator("input[name=key]").fill(key)
    with page.expect_navigation(url=f"{BASE}/ui", timeout=SHORT_MS):
        submit_button(page.locator("form:has(input[name=key])")).click()
    return page


def goto(page, path, expect_status=200):
    response = page.goto(BASE + path)
    if response is None or response.status != expect_status:
        got = response.status if response else "no response"
        fail(f"GET {path} answered {got}, expected {expect_status}")
    page.wait_for_load_state()
    return response


def submit_button(form):
    return form.locator("button[type=submit], input[type=submit], button:not([type])").first


def screenshot(page, name):
    os.makedirs(SCREENSHOTS, exist_ok=True)
    page.screenshot(path=os.path.join(SCREENSHOTS, name), full_page=True)


def session_cookie(page):
    for c in page.context.cookies(BASE + "/ui"):
        if c["name"] == SESSION_COOKIE:
            return c
    fail(f"no {SESSION_COOKIE} cookie for {BASE}/ui")


def csrf_of(page):
    """The session's CSRF token as the page carries it (the sign-out form's hidden field)."""
    field = page.locator("input[name=csrf]").first
    expect(field).to_be_attached(timeout=SHORT_MS)
    token = field.get_attribute("value")
    if not token:
        fail(f"{page.url}: the csrf field is empty")
    return token


def form_spec(page, selector):
    """(absolute action URL, fields other than csrf) of the first form matching."""
    form = page.locator(selector).first
    expect(form).to_be_attached(timeout=SHORT_MS)
    # As the browser would send it: the submit button's own name and value included.
    spec = form.evaluate(
        """f => {
            const button = f.querySelector('button[type=submit], input[type=submit], button:not([type])');
            return {
                action: f.action,
                fields: Array.from(new FormData(f, button || undefined).entries()).filter(([k]) => k !== 'csrf')
            };
        }"""
    )
    return spec["action"], [tuple(f) for f in spec["fields"]]


def is_paused(cell):
    attr = cell.get_attribute("data-paused")
    if attr in ("true", "false"):
        return attr == "true"
    return cell.inner_text().strip().lower() in ("paused", "yes", "true")


def row_ids(page, selector="table#jobs tr[data-job-id]"):
    return page.locator(selector).evaluate_all("rows => rows.map(r => r.dataset.jobId)")


def walk_job_pages(page, limit=50):
    """Every job id on this jobs page and the ones `a#next-page` leads to."""
    ids = []
    for _ in range(limit):
        ids += row_ids(page)
        nxt = page.locator("a#next-page")
        if nxt.count() == 0:
            return ids
        href = nxt.first.get_attribute("href")
        page.goto(urllib.parse.urljoin(page.url, href))
        page.wait_for_load_state()
    fail(f"more than {limit} pages of jobs")


def groups_on_page(page):
    """{group id: count} from /ui/dead-letter's table."""
    rows = page.locator("table#dlq-groups tr[data-group]")
    found = {}
    for i in range(rows.count()):
        row = rows.nth(i)
        cell = row.locator("td[data-count]")
        if cell.count() != 1:
            fail(f"group row {row.get_attribute('data-group')} has {cell.count()} td[data-count]")
        attr = cell.get_attribute("data-count")
        found[row.get_attribute("data-group")] = int(attr) if attr and attr.isdigit() else number(cell.inner_text())
    return found


# ---- the checks -------------------------------------------------------------------------


def check_login(browser):
    status, text = http("POST", "/ui/login", form={"key": "not-a-key"})
    if status != 401 or 'name="key"' not in text:
        fail(f"POST /ui/login with a wrong key answered {status} (expected 401 with the form again)")
    page = new_session(browser, ADMIN_KEY, login_screenshot=True)
    cookie = session_cookie(page)
    if not cookie["httpOnly"]:
        fail(f"the session cookie is not HttpOnly: {cookie}")
    if cookie["sameSite"] != "Strict":
        fail(f"the session cookie is SameSite={cookie['sameSite']}, not Strict")
    if cookie["path"] != "/ui":
        fail(f"the session cookie's path is {cookie['path']!r}, not /ui")
    print("ok  login: the admin key signs in; the session cookie is HttpOnly, SameSite=Strict, Path=/ui")
    return page


def overview_table(page):
    return page.locator("table#kinds").evaluate(
        """t => Object.fromEntries(Array.from(t.querySelectorAll('tr[data-kind]')).map(r => [
            r.dataset.kind,
            {
                counts: Object.fromEntries(Array.from(r.querySelectorAll('td[data-count]'))
                    .map(c => [c.dataset.count, c.textContent])),
                paused: (r.querySelector('td[data-paused]') || {}).outerHTML || null
            }
        ]))"""
    )


def check_overview_counts(page):
    def settled():
        # Counts and pause only: the lag of a waiting job grows every millisecond.
        return {kind: (q["counts"], q["paused"]) for kind, q in queues().items()}

    deadline = time.monotonic() + 20
    while True:
        before = settled()
        goto(page, "/ui")
        expect(page.locator("table#kinds tr[data-kind]").first).to_be_attached()
        shown = overview_table(page)
        after = settled()
        if before == after:
            break
        if time.monotonic() > deadline:
            fail("the API's counts kept changing for 20 s; cannot compare the overview with them")
    problems = []
    for kind, (counts, paused) in after.items():
        row = shown.get(kind)
        if row is None:
            problems.append(f"no tr[data-kind={kind}]")
            continue
        for state, n in counts.items():
            text = row["counts"].get(state)
            if text is None:
                problems.append(f"{kind}: no td[data-count={state}]")
            elif number(text) != n:
                problems.append(f"{kind}/{state}: page {text.strip()!r}, API {n}")
        cell = page.locator(f"table#kinds tr[data-kind={kind}] td[data-paused]")
        if cell.count() != 1 or is_paused(cell) != paused:
            problems.append(f"{kind}: paused cell {row['paused']}, API paused={paused}")
    if set(shown) != set(after):
        problems.append(f"kinds on the page {sorted(shown)}, in the API {sorted(after)}")
    if problems:
        fail("/ui differs from GET /v1/queues: " + "; ".join(problems))
    expect(page.locator("#workers-alive")).to_be_attached()
    # The API samples every second in this run: after a reload the chart is drawn (uPlot
    # puts a canvas in it) from at least two samples.
    deadline = time.monotonic() + 15
    while page.locator("#throughput-chart canvas").count() == 0:
        if time.monotonic() > deadline:
            fail("the overview's chart was never drawn: " + page.locator("#throughput-chart").inner_text())
        time.sleep(1)
        goto(page, "/ui")
    screenshot(page, "overview.png")
    print(f"ok  overview: every kind's counts and pause equal GET /v1/queues ({len(after)} kinds); the chart is drawn")


def check_jobs_filtered_by_account(page):
    goto(page, "/ui/jobs")
    form = page.locator("form#job-filter")
    expect(form).to_be_attached()
    field = form.locator("[name=account_id]")
    if field.evaluate("e => e.tagName") == "SELECT":
        field.select_option(ACCOUNT)
    else:
        field.fill(ACCOUNT)
    form.evaluate("f => f.requestSubmit()")
    page.wait_for_url(re.compile(r"[?&]account_id=" + re.escape(ACCOUNT) + r"(&|$)"), timeout=SHORT_MS)
    page.wait_for_load_state()
    screenshot(page, "jobs.png")
    shown = walk_job_pages(page)
    if not shown:
        fail(f"/ui/jobs filtered by {ACCOUNT} shows no job")
    for job_id in shown:
        account = api(f"/v1/jobs/{job_id}")["account_id"]
        if account != ACCOUNT:
            fail(f"/ui/jobs?account_id={ACCOUNT} shows {job_id}, a job of {account}")
    expected = all_job_ids(ACCOUNT)
    if sorted(shown) != sorted(expected):
        missing = sorted(set(expected) - set(shown))
        extra = sorted(set(shown) - set(expected))
        fail(f"/ui/jobs?account_id={ACCOUNT}: missing {missing}, extra {extra}, duplicates {len(shown) - len(set(shown))}")
    print(f"ok  jobs: filtered by {ACCOUNT}, every row ({len(shown)}) is {ACCOUNT}'s and every job of it is listed")


def check_job_page_is_live(page):
    # Held queued (the kind paused) while the page opens, so the page is seen before the run.
    api("/v1/queues/cleanup/pause", method="POST")
    try:
        body = {"kind": "cleanup", "payload": {"account_id": ACCOUNT, "marketplace_id": "ATVPDKIKX0DER", "skus": ["LIVE-1"]}}
        job_id = api("/v1/jobs", method="POST", body=body)["id"]
        goto(page, f"/ui/jobs/{job_id}")
        state = page.locator("#job-state")
        expect(state).to_be_attached()
        first = state.inner_text().strip()
        if not any(s in first for s in NOT_ENDED):
            fail(f"/ui/jobs/{job_id}: #job-state is {first!r} before the job ran")
        # A reload (or any new document) drops this; an update in place keeps it.
        page.evaluate("window.__droverSameDocument = true")
        # While it waits, the page holds one stream and refreshes once for its first
        # event: each refresh used to replace the stream's element, whose new stream's
        # first event asked for another refresh, round after round until the key's
        # read budget ran out (console audit of 2026-12-06).
        waiting_requests = []
        page.on("request", lambda r: waiting_requests.append(r.url) if f"/ui/jobs/{job_id}/" in r.url else None)
        page.wait_for_timeout(3000)
        streams = sum(1 for u in waiting_requests if u.endswith("/events"))
        refreshes = sum(1 for u in waiting_requests if u.endswith("/live"))
        if streams > 1 or refreshes > 2:
            fail(f"/ui/jobs/{job_id}: while the job waited, its stream was opened {streams} times and the page refreshed {refreshes} times in 3 s")
    finally:
        api("/v1/queues/cleanup/resume", method="POST")
    expect(state).to_contain_text("succeeded", timeout=WAIT_MS)
    if not page.evaluate("window.__droverSameDocument === true"):
        fail(f"/ui/jobs/{job_id} loaded a new document to show the new state (expected a live update)")
    if job_state(job_id) != "succeeded":
        fail(f"the page says succeeded but the API says {job_state(job_id)}")
    # The job has ended, and so has its event stream: the page opens it no more (it was
    # opened again every few seconds before, for as long as the page stayed open).
    reopened = []
    page.on("request", lambda r: reopened.append(r.url) if r.url.endswith(f"/ui/jobs/{job_id}/events") else None)
    page.wait_for_timeout(8000)
    if reopened:
        fail(f"/ui/jobs/{job_id}: the ended job's event stream was opened {len(reopened)} times in 8 s after it ended")
    # Loaded again, the page shows the run that ended it.
    goto(page, f"/ui/jobs/{job_id}")
    attempts = page.locator("table#attempts tr:has(td)")
    if attempts.count() != 1:
        fail(f"/ui/jobs/{job_id}: table#attempts has {attempts.count()} rows after one run")
    screenshot(page, "job.png")
    print(f"ok  job: #job-state went from {first!r} to succeeded without a reload, its stream stayed closed; its one attempt is listed")


def queue_row(page, kind):
    row = page.locator(f"tr[data-kind={kind}]")
    expect(row).to_have_count(1)
    return row


def check_pause_and_resume(page, kind="backfill"):
    goto(page, "/ui/queues")
    screenshot(page, "queues.png")
    if queues()[kind]["paused"]:
        fail(f"{kind} is paused before the check")
    LEARNED["pause"] = form_spec(page, f"tr[data-kind={kind}] form.action.pause")
    submit_button(queue_row(page, kind).locator("form.action.pause")).click()
    poll(f"GET /v1/queues says {kind} is paused", lambda: queues()[kind]["paused"])
    expect(queue_row(page, kind).locator("form.action.resume")).to_be_visible()
    cell = queue_row(page, kind).locator("td[data-paused]")
    if not is_paused(cell):
        fail(f"/ui/queues: {kind}'s td[data-paused] does not say paused after pausing")
    submit_button(queue_row(page, kind).locator("form.action.resume")).click()
    poll(f"GET /v1/queues says {kind} is not paused", lambda: not queues()[kind]["paused"])
    expect(queue_row(page, kind).locator("form.action.pause")).to_be_visible()
    if is_paused(queue_row(page, kind).locator("td[data-paused]")):
        fail(f"/ui/queues: {kind}'s td[data-paused] still says paused after resuming")
    print(f"ok  queues: {kind} paused and resumed from /ui/queues, as GET /v1/queues says")


def check_dead_letter_groups(page):
    goto(page, "/ui/dead-letter")
    screenshot(page, "dead-letter.png")
    shown = groups_on_page(page)
    if shown != GROUPS:
        fail(f"/ui/dead-letter shows {shown}, seeded {GROUPS}")
    for group in GROUPS:
        row = page.locator(f"tr[data-group='{group}']")
        for mark in ("td[data-class]", "td[data-message]"):
            if not row.locator(mark).first.inner_text().strip():
                fail(f"group {group}: {mark} is empty")
        for action in ("form.action.replay-group", "form.action.discard-group"):
            if row.locator(action).count() != 1:
                fail(f"group {group}: no {action}")
    # What a replay of the held group would post, learned without posting it.
    submit_button(page.locator(f"tr[data-group='{HELD_GROUP}'] form.action.replay-group")).click()
    count = page.locator("#confirm-count")
    expect(count).to_be_attached()
    if number(count.inner_text()) != GROUPS[HELD_GROUP]:
        fail(f"{page.url}: #confirm-count says {count.inner_text()!r}, the group has {GROUPS[HELD_GROUP]}")
    LEARNED["act"] = form_spec(page, "form.action#confirm")
    LEARNED["confirm_url"] = page.url
    print(f"ok  dead letter: the {len(GROUPS)} seeded groups with their counts, each with replay and discard")


def check_post_without_csrf_is_refused(page):
    cookie = session_cookie(page)["value"]
    action, fields = LEARNED["pause"]
    other = LEARNED["read_csrf"]
    for label, form in (("no csrf", fields), ("another session's csrf", fields + [("csrf", other)])):
        status, _ = http("POST", action, cookie=cookie, form=form)
        if status != 403:
            fail(f"POST {action} from the admin session with {label} answered {status}, expected 403")
    if any(q["paused"] for q in queues().values()):
        fail(f"POST {action} without the session's csrf paused a queue")
    print("ok  csrf: an admin session's POST without its csrf token (or with another's) is refused with 403")


def learn_cancel(page):
    goto(page, f"/ui/jobs/{QUEUED_JOB}")
    LEARNED["cancel"] = form_spec(page, "form.action")
    if "cancel" not in LEARNED["cancel"][0]:
        # Not a contract mark, only a sanity check that the form found is the cancel one.
        print(f"note: the queued job's first form.action posts to {LEARNED['cancel'][0]}")


def check_read_key(browser):
    page = new_session(browser, READ_KEY)
    csrf = csrf_of(page)
    LEARNED["read_csrf"] = csrf
    pages = [
        "/ui",
        "/ui/jobs",
        f"/ui/jobs/{QUEUED_JOB}",
        f"/ui/jobs/{DEAD_JOB}",
        "/ui/dead-letter",
        "/ui/queues",
        "/ui/accounts",
        f"/ui/accounts/{ACCOUNT}",
        "/ui/schedules",
        "/ui/audit",
    ]
    for path in pages:
        goto(page, path)
        n = page.locator("form.action").count()
        if n:
            fail(f"{path} shows a read key {n} form.action")
    # The confirm page may refuse a read key outright; if it shows, it offers nothing.
    response = page.goto(LEARNED["confirm_url"])
    if response.status == 200 and page.locator("form.action").count():
        fail(f"{LEARNED['confirm_url']} shows a read key a form.action")
    if response.status not in (200, 403):
        fail(f"{LEARNED['confirm_url']} answered a read key {response.status}")
    goto(page, "/ui")

    cookie = session_cookie(page)["value"]
    held_before = dead_groups()[HELD_GROUP]
    for name in ("pause", "cancel", "act"):
        action, fields = LEARNED[name]
        status, _ = http("POST", action, cookie=cookie, form=fields + [("csrf", csrf)])
        if status != 403:
            fail(f"a read session's POST {action} ({name}) with its valid csrf answered {status}, expected 403")
    if any(q["paused"] for q in queues().values()):
        fail("a read session's forged pause paused a queue")
    if job_state(QUEUED_JOB) != "queued":
        fail(f"a read session's forged cancel changed {QUEUED_JOB} to {job_state(QUEUED_JOB)}")
    if dead_groups().get(HELD_GROUP) != held_before:
        fail(f"a read session's forged replay changed group {HELD_GROUP}: {held_before} -> {dead_groups().get(HELD_GROUP)}")
    print(f"ok  read key: no form.action on {len(pages) + 1} pages; forged pause, cancel and replay POSTs are 403 and change nothing")


def check_scoped_key(browser):
    page = new_session(browser, SCOPED_KEY)
    others = set(all_job_ids(OTHER_ACCOUNT))
    if not others:
        fail(f"no job of {OTHER_ACCOUNT} to look for")
    goto(page, "/ui/jobs")
    shown = walk_job_pages(page)
    if not shown:
        fail(f"/ui/jobs shows the {ACCOUNT} key no job at all")
    leaked = sorted(set(shown) & others)
    if leaked:
        fail(f"/ui/jobs shows the {ACCOUNT} key {OTHER_ACCOUNT}'s jobs {leaked}")
    for job_id in shown:
        if api(f"/v1/jobs/{job_id}")["account_id"] != ACCOUNT:
            fail(f"/ui/jobs shows the {ACCOUNT} key {job_id}, not an {ACCOUNT} job")

    goto(page, "/ui/dead-letter")
    html = page.content()
    leaked = sorted(j for j in others if j in html)
    if leaked:
        fail(f"/ui/dead-letter names {OTHER_ACCOUNT}'s jobs {leaked} to the {ACCOUNT} key")
    expected = dead_groups(key=SCOPED_KEY)
    shown_groups = groups_on_page(page)
    if shown_groups != expected:
        fail(f"/ui/dead-letter shows the {ACCOUNT} key {shown_groups}; GET /v1/dead-letter/groups with it says {expected}")

    goto(page, "/ui/schedules")
    if page.locator(f"tr[data-schedule='{OTHER_SCHEDULE}']").count():
        fail(f"/ui/schedules shows the {ACCOUNT} key {OTHER_ACCOUNT}'s schedule {OTHER_SCHEDULE}")
    expect(page.locator(f"tr[data-schedule='{SCHEDULE}']")).to_have_count(1)

    response = page.goto(f"{BASE}/ui/jobs/{OTHER_JOB}")
    if response.status != 404:
        fail(f"/ui/jobs/{OTHER_JOB} ({OTHER_ACCOUNT}'s) answered the {ACCOUNT} key {response.status}, expected 404")
    if "not found" not in page.inner_text("body").lower():
        fail(f"/ui/jobs/{OTHER_JOB}: the 404 page does not say not found")
    if OTHER_ACCOUNT in page.content():
        fail(f"/ui/jobs/{OTHER_JOB}: the not-found page names {OTHER_ACCOUNT}")
    page.context.close()
    print(f"ok  scoped key: {len(shown)} jobs and {len(shown_groups)} groups, none of {OTHER_ACCOUNT}'s; its job is not found (404)")


def still_dead(ids, when):
    states = {j: job_state(j) for j in ids}
    moved = {j: s for j, s in states.items() if s != "dead"}
    if moved:
        fail(f"{when}, jobs of the group that are not the canary left dead: {moved}")


def check_canary_replay(page):
    goto(page, "/ui/dead-letter")
    before = groups_on_page(page)[CANARY_GROUP]
    ids = group_job_ids(CANARY_GROUP)
    if len(ids) != before:
        fail(f"the group lists {len(ids)} jobs through the API, the page counts {before}")
    form = page.locator(f"tr[data-group='{CANARY_GROUP}'] form.action.replay-group")
    canary_in_group_form = form.locator("[name=canary]").count() > 0
    if canary_in_group_form:
        form.locator("[name=canary]").fill("1")
    submit_button(form).click()
    count = page.locator("#confirm-count")
    expect(count).to_be_attached()
    if number(count.inner_text()) != before:
        fail(f"{page.url}: #confirm-count says {count.inner_text()!r}, the group has {before}")
    if not canary_in_group_form:
        field = page.locator("form.action#confirm [name=canary]")
        if field.count() == 0:
            fail("no canary field: neither the group's replay form nor form.action#confirm has [name=canary]")
        field.fill("1")
    screenshot(page, "confirm.png")
    submit_button(page.locator("form.action#confirm")).click()

    rows = page.locator("#canary tr[data-job-id]")
    expect(rows.first).to_be_attached(timeout=SHORT_MS)
    canaries = row_ids(page, "#canary tr[data-job-id]")
    if len(canaries) != 1 or canaries[0] not in ids:
        fail(f"#canary shows {canaries}, expected one job of the group {ids}")
    rest = [j for j in ids if j not in canaries]
    still_dead(rest, "while the canary runs")
    state = page.locator(f"#canary tr[data-job-id='{canaries[0]}'] td[data-state]")
    page.wait_for_function(
        """sel => { const c = document.querySelector(sel);
                    return c && (c.dataset.state === 'succeeded' || c.textContent.includes('succeeded')); }""",
        arg=f"#canary tr[data-job-id='{canaries[0]}'] td[data-state]",
        timeout=WAIT_MS,
    )
    canary_state = state.inner_text().strip()
    if job_state(canaries[0]) != "succeeded":
        fail(f"the canary row says succeeded; the API says {job_state(canaries[0])}")
    still_dead(rest, "after the canary ended, before #replay-rest")
    replay_rest = page.locator("form.action#replay-rest")
    expect(replay_rest).to_be_visible(timeout=SHORT_MS)
    submit_button(replay_rest).click()
    poll(
        "the rest of the group left dead after #replay-rest",
        lambda: all(job_state(j) != "dead" for j in rest),
        timeout_s=WAIT_MS / 1000,
    )
    goto(page, "/ui/dead-letter")
    after = groups_on_page(page).get(CANARY_GROUP, 0)
    if after >= before:
        fail(f"group {CANARY_GROUP} still counts {after} after the replay (was {before})")
    print(f"ok  canary replay: 1 canary of {before} ran alone ({canary_state}); the rest waited for #replay-rest; the group went from {before} to {after}")


def check_other_pages(page):
    goto(page, "/ui/accounts")
    for account in (ACCOUNT, OTHER_ACCOUNT):
        expect(page.locator(f"table#accounts tr[data-account='{account}']")).to_have_count(1)
    screenshot(page, "accounts.png")
    check_account_counts(page)
    goto(page, "/ui/schedules")
    for name in (SCHEDULE, OTHER_SCHEDULE):
        expect(page.locator(f"table#schedules tr[data-schedule='{name}']")).to_have_count(1)
    screenshot(page, "schedules.png")
    goto(page, "/ui/audit")
    expect(page.locator("table#audit tr:has(td)").first).to_be_attached()
    screenshot(page, "audit.png")
    print("ok  pages: accounts, one account's limits, schedules and the audit log show what was seeded")


def check_account_counts(page):
    """The account page's jobs by state are every one of its jobs (not a page of them):
    each kind's row equals GET /v1/accounts/{id}/counts and the cells add up to the
    number of jobs its listing walks."""
    def settled():
        answer = api(f"/v1/accounts/{ACCOUNT}/counts")
        return {k["kind"]: k["counts"] for k in answer["kinds"]}, answer["complete"], len(all_job_ids(ACCOUNT))

    deadline = time.monotonic() + 20
    while True:
        before = settled()
        goto(page, f"/ui/accounts/{ACCOUNT}")
        expect(page.locator("#account-limits")).to_be_attached()
        shown = {
            row.get_attribute("data-kind"): [number(c) for c in row.locator("td").all_inner_texts()]
            for row in page.locator("table#account-states tr[data-kind]").all()
        }
        after = settled()
        if before == after:
            break
        if time.monotonic() > deadline:
            fail("the account's counts kept changing for 20 s; cannot compare the page with them")
    counts, complete, listed = after
    if not complete:
        fail("GET /v1/accounts/{id}/counts says the counts are incomplete on a fresh install")
    problems = []
    for kind, by_state in counts.items():
        if shown.get(kind) != list(by_state.values()):
            problems.append(f"{kind}: page {shown.get(kind)}, API {by_state}")
    total = sum(sum(c.values()) for c in counts.values())
    if total != listed:
        problems.append(f"the counts add up to {total}, the account's listing has {listed} jobs")
    if problems:
        fail(f"/ui/accounts/{ACCOUNT}: " + "; ".join(problems))
    print(f"ok  account page: jobs by state per kind equal GET /v1/accounts/{{id}}/counts and add up to all {listed} of its jobs")


def check_phone(page):
    """At a phone's width (390 px) no page scrolls sideways as a whole: wide tables scroll
    inside themselves and the navigation wraps."""
    page.set_viewport_size({"width": 390, "height": 844})
    try:
        for path in ("/ui", "/ui/jobs", "/ui/dead-letter", "/ui/queues", f"/ui/accounts/{ACCOUNT}"):
            goto(page, path)
            width = page.evaluate("document.documentElement.scrollWidth")
            if width > 390:
                fail(f"{path} is {width} px wide at a 390 px viewport")
        goto(page, "/ui/dead-letter")
        screenshot(page, "phone-dead-letter.png")
    finally:
        page.set_viewport_size({"width": 1280, "height": 720})
    print("ok  phone: at 390 px no page is wider than the screen")


def check_page_sizes():
    if not PAGES_SEEN:
        fail("no page was recorded")
    big = [(url, size) for url, _, size in PAGES_SEEN if size >= PAGE_LIMIT_BYTES]
    if big:
        fail(f"pages of 200 KB or more: {big}")
    largest = max(PAGES_SEEN, key=lambda p: p[2])
    print(f"ok  size: all {len(PAGES_SEEN)} pages loaded are under 200 KB (largest {largest[2]} bytes, {largest[0]})")


def main():
    load_env()
    started = time.monotonic()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        step = "start"
        try:
            step = "login"
            admin = check_login(browser)
            step = "overview"
            check_overview_counts(admin)
            step = "jobs"
            check_jobs_filtered_by_account(admin)
            step = "job"
            check_job_page_is_live(admin)
            step = "queues"
            check_pause_and_resume(admin)
            step = "dead letter"
            check_dead_letter_groups(admin)
            learn_cancel(admin)
            step = "read key"
            check_read_key(browser)
            step = "csrf"
            check_post_without_csrf_is_refused(admin)
            step = "scoped key"
            check_scoped_key(browser)
            step = "canary replay"
            check_canary_replay(admin)
            step = "pages"
            check_other_pages(admin)
            step = "phone"
            check_phone(admin)
            step = "size"
            check_page_sizes()
        except Exception as e:  # noqa: BLE001 - any error ends the run naming the check
            print(f"FAIL {step}: {e}", file=sys.stderr)
            if not isinstance(e, (CheckFailed, AssertionError, PlaywrightError)):
                traceback.print_exc()
            for context in browser.contexts:
                for n, page in enumerate(context.pages):
                    try:
                        print(f"  open page: {page.url}", file=sys.stderr)
                        os.makedirs(SCREENSHOTS, exist_ok=True)
                        page.screenshot(path=os.path.join(SCREENSHOTS, f"failed-{step.replace(' ', '-')}-{n}.png"), full_page=True)
                    except PlaywrightError:
                        pass
            browser.close()
            return 1
        browser.close()
    print(f"all console checks passed in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except CheckFailed as e:
        print(f"FAIL setup: {e}", file=sys.stderr)
        sys.exit(1)
