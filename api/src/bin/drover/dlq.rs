//! `drover dlq groups|ls|replay|discard`: the dead letter.
//!
//! A filtered replay or discard lists the matching dead jobs first (`GET /v1/dead-letter`,
//! by kind, account, group or the last error's class) and then acts on them by id (`POST /v1/dead-letter/replay {ids}`
//! or `…/discard {ids}`), so `--dry-run`, `--canary` and `--rate` touch exactly the jobs
//! that were counted.
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::args::{DlqCmd, DlqFilter};
use crate::client::{again_later, CliError, Client};
use crate::jobs::{jobs_table, next_cursor, path_segment};
use crate::table::{at, Table};
use crate::Out;

/// Ids one replay request may carry (the API's limit).
const BATCH: usize = 1000;
/// Most jobs one `drover dlq replay` touches without `--limit`.
const MAX_JOBS: usize = 10_000;
const TERMINAL: [&str; 4] = ["succeeded", "partial", "dead", "cancelled"];
/// The slowest and fastest `--rate`, jobs per second (one an hour at the least).
const MIN_RATE: f64 = 1.0 / 3600.0;
const MAX_RATE: f64 = 100_000.0;

pub async fn run(client: &Client, out: &Out, cmd: DlqCmd) -> Result<(), CliError> {
    let cmd = expand(cmd).map_err(CliError::Usage)?;
    match cmd {
        DlqCmd::Groups { kind, account, limit } => {
            let mut q = vec![("limit", limit.to_string())];
            if let Some(k) = kind {
                q.push(("kind", k.to_string()));
            }
            if let Some(a) = account {
                q.push(("account_id", a));
            }
            let groups = client.get("/v1/dead-letter/groups", &q).await?;
            out.print(&groups, || groups_table(&groups));
            Ok(())
        }
        DlqCmd::Ls { filter, limit, cursor } => {
            let mut q = filter_query(&filter);
            q.push(("limit", limit.to_string()));
            if let Some(c) = cursor {
                q.push(("cursor", c));
            }
            let mut page = client.get("/v1/dead-letter", &q).await?;
            if let (Some(class), Some(jobs)) = (&filter.error_class, page["jobs"].as_array_mut()) {
                jobs.retain(|j| matches_class(j, class));
            }
            out.print(&page, || jobs_table(&page));
            next_cursor(&page);
            Ok(())
        }
        DlqCmd::Replay {
            ids,
            filter,
            limit,
            canary,
            canary_timeout,
            rate,
            dry_run,
        } => {
            // Checked before anything is sent (found by the CLI audit of 2026-12-06: a
            // rate far below one job an hour, or a canary timeout past what a clock can
            // add, panicked after the canaries had been replayed).
            if let Some(r) = rate.filter(|r| !(r.is_finite() && (MIN_RATE..=MAX_RATE).contains(r))) {
                return Err(CliError::Usage(format!(
                    "--rate {r}: give jobs per second from {MIN_RATE} to {MAX_RATE}"
                )));
            }
            let chosen = choose(client, ids, &filter, limit).await?;
            if dry_run {
                let v = json!({"would_replay": chosen.len(), "ids": chosen});
                out.print(&v, || format!("would replay {} dead jobs", chosen.len()));
                return Ok(());
            }
            let plan = Plan {
                canary: canary.map_or(0, |c| c as usize).min(chosen.len()),
                canary_timeout: Duration::from_secs(canary_timeout),
                rate,
            };
            let mut done = json!({"replayed": [], "skipped": []});
            let failure = until_interrupted(replay(client, out, &chosen, &plan, &mut done), "replay").await;
            out.print(&done, || summary(&done, "replayed"));
            failure.map_or(Ok(()), Err)
        }
        DlqCmd::Discard {
            ids,
            filter,
            limit,
            dry_run,
            yes,
        } => {
            let chosen = choose(client, ids, &filter, limit).await?;
            if dry_run {
                let v = json!({"would_discard": chosen.len(), "ids": chosen});
                out.print(&v, || format!("would discard {} dead jobs", chosen.len()));
                return Ok(());
            }
            if !yes {
                return Err(CliError::Usage(format!(
                    "discard deletes {} dead jobs for good: add --yes (or --dry-run to list them)",
                    chosen.len()
                )));
            }
            let mut done = json!({"discarded": [], "skipped": []});
            let discard = async {
                for chunk in chosen.chunks(BATCH) {
                    let answer = client.post("/v1/dead-letter/discard", Some(&json!({ "ids": chunk }))).await?;
                    merge(&mut done, &answer);
                    stopped(&answer)?;
                }
                Ok(())
            };
            let failure = until_interrupted(discard, "discard").await;
            out.print(&done, || summary(&done, "discarded"));
            failure.map_or(Ok(()), Err)
        }
    }
}

/// The command with `--filter` spread into the filter's own fields.
fn expand(mut cmd: DlqCmd) -> Result<DlqCmd, String> {
    if let DlqCmd::Ls { filter, .. } | DlqCmd::Replay { filter, .. } | DlqCmd::Discard { filter, .. } = &mut cmd {
        *filter = std::mem::take(filter).expanded()?;
    }
    Ok(cmd)
}

/// The ids named, or the dead jobs the filter matches (up to `limit`, or every one up to
/// 10,000): never both.
async fn choose(client: &Client, ids: Vec<String>, filter: &DlqFilter, limit: Option<u32>) -> Result<Vec<String>, CliError> {
    if ids.is_empty() {
        let (ids, more) = matching(client, filter, limit.map_or(MAX_JOBS, |l| l as usize)).await?;
        if more && limit.is_none() {
            // (found by the CLI audit of 2026-12-07: the rest went unsaid, exit 0)
            eprintln!("more dead jobs may match than the {MAX_JOBS} taken at once: run the command again for the rest");
        }
        Ok(ids)
    } else if filter.kind.is_some() || filter.account.is_some() || filter.error_class.is_some() || filter.group.is_some() || limit.is_some()
    {
        Err(CliError::Usage(
            "give either job ids or filters (--kind, --account, --error-class, --group, --limit), not both".into(),
        ))
    } else {
        // Each job once, in the order given (before, found by the fifth audits of
        // 2026-12-06, a dry run counted an id named twice twice).
        let mut seen = std::collections::HashSet::new();
        Ok(ids.into_iter().filter(|id| seen.insert(id.clone())).collect())
    }
}

fn filter_query(f: &DlqFilter) -> Vec<(&'static str, String)> {
    let mut q = Vec::new();
    if let Some(k) = f.kind {
        q.push(("kind", k.to_string()));
    }
    if let Some(a) = &f.account {
        q.push(("account_id", a.clone()));
    }
    if let Some(g) = &f.group {
        q.push(("group", g.clone()));
    }
    if let Some(c) = &f.error_class {
        q.push(("error_class", c.clone()));
    }
    q
}

/// One row per group: what `drover dlq replay --group ID` takes, and what the jobs said.
fn groups_table(list: &Value) -> String {
    let mut t = Table::new(&["GROUP", "COUNT", "CLASS", "LAST SEEN", "MESSAGE"]);
    for g in list["groups"].as_array().into_iter().flatten() {
        t.row(vec![
            at(g, "id"),
            at(g, "count"),
            at(g, "class"),
            at(g, "last_seen"),
            at(g, "message"),
        ]);
    }
    t.render()
}

fn matches_class(job: &Value, class: &str) -> bool {
    job["last_error"]["class"].as_str() == Some(class)
}

/// The ids of up to `limit` dead jobs the filter matches, newest first, and whether it
/// stopped at `limit` with more of the dead letter unread.
async fn matching(client: &Client, filter: &DlqFilter, limit: usize) -> Result<(Vec<String>, bool), CliError> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut q = filter_query(filter);
        q.push(("limit", BATCH.to_string()));
        if let Some(c) = &cursor {
            q.push(("cursor", c.clone()));
        }
        let page = client.get("/v1/dead-letter", &q).await?;
        for job in page["jobs"].as_array().into_iter().flatten() {
            if ids.len() >= limit {
                return Ok((ids, true));
            }
            if filter.error_class.as_deref().is_none_or(|c| matches_class(job, c)) {
                if let Some(id) = job["id"].as_str() {
                    ids.push(id.to_owned());
                }
            }
        }
        match page["next_cursor"].as_str() {
            Some(_) if ids.len() >= limit => return Ok((ids, true)),
            Some(c) => cursor = Some(c.to_owned()),
            None => return Ok((ids, false)),
        }
    }
}

/// Runs `work` until it ends or Ctrl-C (SIGINT) comes: its error, or
/// [`CliError::Interrupted`] (what it did so far is in what it writes to as it goes).
async fn until_interrupted(work: impl std::future::Future<Output = Result<(), CliError>>, what: &str) -> Option<CliError> {
    tokio::select! {
        r = work => r.err(),
        Ok(()) = tokio::signal::ctrl_c() => Some(CliError::Interrupted(format!(
            "{what} stopped by Ctrl-C: what it did until then is above; a request in flight then \
             may or may not have been applied (`drover dlq ls` shows what is still dead)"
        ))),
    }
}

struct Plan {
    canary: usize,
    canary_timeout: Duration,
    rate: Option<f64>,
}

/// Replay the canaries, wait for them, then the rest at the rate asked for. What was
/// done goes into `done` as each answer comes, in the shape of the API's answer
/// (`{replayed, skipped}`), so it holds it also when the replay stops part way.
async fn replay(client: &Client, out: &Out, ids: &[String], plan: &Plan, done: &mut Value) -> Result<(), CliError> {
    let (canaries, rest) = ids.split_at(plan.canary);
    if !canaries.is_empty() {
        let answer = post_replay(client, canaries).await?;
        merge(done, &answer);
        stopped(&answer)?;
        let replayed: Vec<String> = strings(&answer["replayed"]);
        if replayed.is_empty() {
            return Err(CliError::JobFailed(
                "no canary could be replayed (see skipped); nothing else was".into(),
            ));
        }
        out.note(&format!("replayed {} canaries; waiting for them to end", replayed.len()));
        let failed = wait_for(client, &replayed, plan.canary_timeout).await?;
        if !failed.is_empty() {
            return Err(CliError::JobFailed(format!(
                "canaries did not succeed ({}); the other {} jobs were not replayed",
                failed.join(", "),
                rest.len()
            )));
        }
    }
    // With a rate, batches of about one second's worth, one every batch / rate seconds.
    let batch = plan.rate.map_or(BATCH, |r| (r.floor() as usize).clamp(1, BATCH));
    let every = plan.rate.map(|r| Duration::from_secs_f64(batch as f64 / r));
    let mut next = Instant::now();
    for chunk in rest.chunks(batch) {
        if let Some(every) = every {
            tokio::time::sleep_until(next.into()).await;
            next += every;
        }
        let answer = post_replay(client, chunk).await?;
        merge(done, &answer);
        stopped(&answer)?;
        // A batch that waited out a 429 does not make the next ones catch up at once:
        // the rate counts from when it went.
        next = next.max(Instant::now());
    }
    Ok(())
}

/// An answer that says the API stopped part-way (`stopped`: an error after it had done
/// some of the request) ends the command as that error: what it did is in the summary,
/// the rest of the request was not tried (found by the review of 2026-12-07: the command
/// went on and exited 0).
fn stopped(answer: &Value) -> Result<(), CliError> {
    match answer.get("stopped").filter(|s| s.is_object()) {
        None => Ok(()),
        Some(s) => Err(CliError::Transport(format!(
            "the API stopped part-way ({}): {}; the jobs listed were done, the rest of that request was not tried",
            s["type"].as_str().unwrap_or("an error"),
            s["detail"].as_str().unwrap_or("")
        ))),
    }
}

async fn post_replay(client: &Client, ids: &[String]) -> Result<Value, CliError> {
    client.post("/v1/dead-letter/replay", Some(&json!({ "ids": ids }))).await
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect()
}

fn merge(into: &mut Value, answer: &Value) {
    for field in ["replayed", "discarded", "skipped"] {
        if let (Some(all), Some(more)) = (into[field].as_array_mut(), answer[field].as_array()) {
            all.extend(more.iter().cloned());
        }
    }
}

/// Most reads a second the canary wait spends of the key's read budget (100 a second by
/// default): 1,000 canaries are each looked at every 50 s, not every 0.5 s (found by the
/// CLI audit of 2026-12-07: the wait drew its own 429 and gave up with exit 1).
const CANARY_POLLS_PER_SECOND: f64 = 20.0;

/// Wait until every job has ended; those that ended other than `succeeded` (or had not
/// ended by the deadline), as `id (state)`. The looks are paced at
/// [`CANARY_POLLS_PER_SECOND`] one by one (never a round's worth at once), each bounded
/// by the deadline; a look refused for the budget, or that found the API unavailable or
/// unreachable, is tried again, until the deadline. A canary no look ever learned the
/// state of, or whose last look got no answer (or a 5xx), is not said to have failed:
/// the wait ends as the last such look's error, exit 1 (found by the CLI audit of
/// 2026-12-07, second: with the API frozen each look waited the client's 40 s, a round
/// of 100 canaries an hour past `--canary-timeout`, and then the canaries were reported
/// failed, exit 6).
async fn wait_for(client: &Client, ids: &[String], timeout: Duration) -> Result<Vec<String>, CliError> {
    let deadline = Instant::now() + timeout;
    let mut pace = tokio::time::interval(Duration::from_secs_f64(1.0 / CANARY_POLLS_PER_SECOND));
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pending: Vec<String> = ids.to_vec();
    let mut failed = Vec::new();
    // The canaries whose state a look has learned, and why the last look that did not failed.
    let mut seen = std::collections::HashSet::new();
    // The canaries whose last look the API did not answer (or answered 5xx).
    let mut unanswered = std::collections::HashSet::new();
    let mut last_failure = String::new();
    loop {
        let round_began = Instant::now();
        let mut still = Vec::new();
        let mut ids = pending.into_iter();
        for id in ids.by_ref() {
            if tokio::time::timeout_at(deadline.into(), pace.tick()).await.is_err() || Instant::now() >= deadline {
                still.push(id);
                break;
            }
            let sent = Instant::now();
            let path = format!("/v1/jobs/{}", path_segment(&id));
            let look = client.get_once(&path);
            let job = match tokio::time::timeout_at(deadline.into(), look).await {
                Ok(Ok(job)) => job,
                Ok(Err(e)) if again_later(&e) => {
                    last_failure = format!("looking at {id}: {e}");
                    let refused = matches!(&e, CliError::Api { status, .. } if status.as_u16() == 429);
                    if !refused {
                        unanswered.insert(id.clone());
                    }
                    still.push(id);
                    if refused {
                        // over the key's read budget: a second for it to refill, so the
                        // looks go on at the rate it allows and every canary is seen
                        let refilled = (Instant::now() + Duration::from_secs(1)).min(deadline);
                        tokio::time::sleep_until(refilled.into()).await;
                    }
                    continue;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => {
                    // A look cut off by the deadline it was sent just before says nothing
                    // of the API (the review of 2026-12-07: it turned "not ended" into
                    // "could not learn"); one that waited a second or more for nothing does.
                    if deadline.saturating_duration_since(sent) >= Duration::from_secs(1) {
                        last_failure = format!("looking at {id}: no answer by the canary timeout ({}s)", timeout.as_secs());
                        unanswered.insert(id.clone());
                    }
                    still.push(id);
                    break;
                }
            };
            seen.insert(id.clone());
            unanswered.remove(&id);
            match job["state"].as_str() {
                Some("succeeded") => {}
                Some(s) if TERMINAL.contains(&s) => failed.push(format!("{id} ({s})")),
                _ => still.push(id),
            }
        }
        still.extend(ids);
        if still.is_empty() {
            return Ok(failed);
        }
        if Instant::now() >= deadline {
            if still.iter().any(|id| !seen.contains(id) || unanswered.contains(id)) {
                return Err(CliError::Transport(format!(
                    "could not learn how the canaries ended ({last_failure}); nothing else was replayed"
                )));
            }
            failed.extend(still.into_iter().map(|id| format!("{id} (not ended after {}s)", timeout.as_secs())));
            return Ok(failed);
        }
        // The canaries not seen yet first: a budget that refuses some looks of each round
        // must not refuse the same ones every round.
        still.sort_by_key(|id| seen.contains(id));
        pending = still;
        // A round of a few canaries looks again after half a second, not at once.
        let next = (round_began + Duration::from_millis(500)).min(deadline);
        tokio::time::sleep_until(next.into()).await;
    }
}

/// `<what> N dead jobs`, then each skipped job with why (`what`: replayed, discarded).
fn summary(done: &Value, what: &str) -> String {
    let n = done[what].as_array().map_or(0, Vec::len);
    let mut lines = vec![format!("{what} {n} dead jobs")];
    for s in done["skipped"].as_array().into_iter().flatten() {
        lines.push(format!(
            "skipped {}: {}",
            s["id"].as_str().unwrap_or("?"),
            s["reason"].as_str().unwrap_or("")
        ));
    }
    lines.join("\n")
}
