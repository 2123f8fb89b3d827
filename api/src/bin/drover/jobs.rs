//! `drover jobs ls|show|cancel|retry|watch`.
use reqwest::Method;
use serde_json::Value;

use crate::args::{JobsCmd, ListArgs};
use crate::client::{again_later, CliError, Client};
use crate::table::{at, record, Table};
use crate::Out;

pub async fn run(client: &Client, out: &Out, cmd: JobsCmd) -> Result<(), CliError> {
    match cmd {
        JobsCmd::Ls { list, state } => {
            let mut q = list_query(&list);
            if let Some(s) = state {
                q.push(("state", s.to_string()));
            }
            let page = client.get("/v1/jobs", &q).await?;
            out.print(&page, || jobs_table(&page));
            next_cursor(&page);
        }
        JobsCmd::Show { id } => {
            let job = client.get(&format!("/v1/jobs/{}", path_segment(&id)), &[]).await?;
            out.print(&job, || record(&job));
        }
        JobsCmd::Cancel { id } => {
            let v = client.post(&format!("/v1/jobs/{}/cancel", path_segment(&id)), None).await?;
            out.print(&v, || {
                if v["cancel_requested"] == Value::Bool(true) {
                    format!("{}: running; its handler has been told to stop", at(&v, "id"))
                } else {
                    format!("{}: cancelled", at(&v, "id"))
                }
            });
        }
        JobsCmd::Retry { id } => {
            let v = client.post(&format!("/v1/jobs/{}/retry", path_segment(&id)), None).await?;
            out.print(&v, || format!("{}: {}", at(&v, "id"), at(&v, "state")));
        }
        JobsCmd::Watch { id } => watch(client, out, &id).await?,
    }
    Ok(())
}

/// The query of `GET /v1/jobs` and `GET /v1/dead-letter`.
pub fn list_query(list: &ListArgs) -> Vec<(&'static str, String)> {
    let mut q = vec![("limit", list.limit.to_string())];
    if let Some(k) = list.kind {
        q.push(("kind", k.to_string()));
    }
    if let Some(a) = &list.account {
        q.push(("account_id", a.clone()));
    }
    if let Some(c) = &list.cursor {
        q.push(("cursor", c.clone()));
    }
    q
}

/// An id as one path segment: anything that is not a job id's character is escaped, so
/// an argument cannot reach another path (`.` and `..` included).
pub fn path_segment(raw: &str) -> String {
    let dots_only = raw.bytes().all(|b| b == b'.');
    raw.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || (b == b'.' && !dots_only) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

pub fn jobs_table(page: &Value) -> String {
    let mut t = Table::new(&["ID", "KIND", "STATE", "ACCOUNT", "ATTEMPTS", "UPDATED", "LAST ERROR"]);
    for j in page["jobs"].as_array().into_iter().flatten() {
        let error = match j.get("last_error") {
            Some(e) if !e.is_null() => error_text(&at(e, "class"), &at(e, "message")),
            _ => "-".into(),
        };
        t.row(vec![
            at(j, "id"),
            at(j, "kind"),
            at(j, "state"),
            at(j, "account_id"),
            format!("{}/{}", at(j, "attempts"), at(j, "max_attempts")),
            at(j, "updated_at"),
            error,
        ]);
    }
    t.render()
}

/// The next page's cursor, on stderr so stdout stays the table.
pub fn next_cursor(page: &Value) {
    if let Some(c) = page["next_cursor"].as_str() {
        eprintln!("more: --cursor {c}");
    }
}

const TERMINAL: [&str; 4] = ["succeeded", "partial", "dead", "cancelled"];

/// The API sends a keep-alive every 15 s: a stream that is silent for longer than two
/// of them is taken for dead (the client's read timeout).
const SILENT_STREAM: std::time::Duration = crate::client::READ_TIMEOUT;

/// How long a watch that has followed its job goes on trying to reach the API again
/// (unreachable, 429, 502–504) before it ends with exit 1.
const RECONNECT_FOR: std::time::Duration = std::time::Duration::from_secs(60);

/// Follow `GET /v1/jobs/{id}/events` until the job ends, reconnecting when the stream
/// ends first (the server's `events_max_ms`, a restart, a cut connection) or goes silent.
/// Once a stream has been opened, an API that cannot be reached while reconnecting is
/// tried again every second for [`RECONNECT_FOR`] (before, found by the fifth audits of
/// 2026-12-06, a rolling restart ended the watch with exit 1).
async fn watch(client: &Client, out: &Out, id: &str) -> Result<(), CliError> {
    let path = format!("/v1/jobs/{}/events", path_segment(id));
    let mut last_state: Option<String> = None;
    let mut opened = false;
    let mut failing_since: Option<std::time::Instant> = None;
    loop {
        match follow(client, out, &path, &mut last_state).await {
            Ok(()) => {
                opened = true;
                failing_since = None;
            }
            Err(e) if opened => {
                keep_trying(e, &mut failing_since).await?;
                continue;
            }
            Err(e) => return Err(e),
        }
        if let Some(s) = last_state.as_deref().filter(|s| TERMINAL.contains(s)) {
            return if s == "succeeded" {
                Ok(())
            } else {
                Err(CliError::JobFailed(format!("job {id} ended {s}")))
            };
        }
        // The stream ended before the job: it may have ended between two polls, or the
        // server closed it; look, then reconnect.
        let job = match client.get_once(&format!("/v1/jobs/{}", path_segment(id))).await {
            Ok(job) => job,
            Err(e) => {
                keep_trying(e, &mut failing_since).await?;
                continue;
            }
        };
        if let Some(s) = job["state"].as_str().filter(|s| TERMINAL.contains(s)) {
            out.print_line(&job, || format!("state {s}"));
            return if s == "succeeded" {
                Ok(())
            } else {
                Err(CliError::JobFailed(format!("job {id} ended {s}")))
            };
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// After `e` while reconnecting: a second's wait when it is worth asking again and the
/// API has failed for less than [`RECONNECT_FOR`], else `e`.
async fn keep_trying(e: CliError, failing_since: &mut Option<std::time::Instant>) -> Result<(), CliError> {
    let since = *failing_since.get_or_insert_with(std::time::Instant::now);
    if !again_later(&e) || since.elapsed() >= RECONNECT_FOR {
        return Err(e);
    }
    eprintln!("reconnecting to the job's events: {e}");
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    Ok(())
}

/// Open the job's event stream and print its events until it ends, is cut off or goes
/// silent; `last_state` is the latest `state` event's.
async fn follow(client: &Client, out: &Out, path: &str, last_state: &mut Option<String>) -> Result<(), CliError> {
    let req = client.request(Method::GET, path).header("accept", "text/event-stream");
    // (a 429 is answered at once: the caller waits and tries again within its bound)
    let mut res = match tokio::time::timeout(SILENT_STREAM, client.send_once(req)).await {
        Ok(res) => res?,
        Err(_) => {
            return Err(CliError::Transport(format!(
                "the API did not answer within {} s",
                SILENT_STREAM.as_secs()
            )))
        }
    };
    let mut buf = String::new();
    // A stream cut off mid-way (a restart, a proxy's idle timeout) or gone silent (a
    // half-open connection hears nothing, not even the keep-alives) is reconnected by
    // the caller.
    while let Ok(Ok(Some(chunk))) = tokio::time::timeout(SILENT_STREAM, res.chunk()).await {
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            if let Some((event, data)) = parse_event(&block) {
                if event == "state" {
                    *last_state = data["state"].as_str().map(str::to_owned);
                }
                out.print_line(&data, || describe(&event, &data));
            }
        }
    }
    Ok(())
}

/// One server-sent event: its name and JSON data; comments (keep-alives) are none.
fn parse_event(block: &str) -> Option<(String, Value)> {
    let mut event = "message".to_owned();
    let mut data = String::new();
    for line in block.lines() {
        if let Some(v) = line.strip_prefix("event:") {
            event = v.trim().to_owned();
        } else if let Some(v) = line.strip_prefix("data:") {
            if !data.is_empty() {
                data.push('\n');
            }
            data.push_str(v.strip_prefix(' ').unwrap_or(v));
        }
    }
    if data.is_empty() {
        return None;
    }
    Some((event, serde_json::from_str(&data).unwrap_or(Value::String(data))))
}

fn describe(event: &str, data: &Value) -> String {
    match event {
        "state" => {
            let mut line = format!("state {} (attempts {})", at(data, "state"), at(data, "attempts"));
            if let Some(e) = data.get("last_error").filter(|e| !e.is_null()) {
                line.push_str(&format!(", last error {}", error_text(&at(e, "class"), &at(e, "message"))));
            }
            line
        }
        "progress" => {
            let mut line = format!("progress {}", at(data, "done"));
            if !data["total"].is_null() {
                line.push_str(&format!("/{}", at(data, "total")));
            }
            if let Some(m) = data["message"].as_str() {
                line.push_str(&format!(" {m}"));
            }
            line
        }
        "waiting" => format!("waiting: {} until {}", at(data, "waiting.reason"), at(data, "waiting.until")),
        other => format!("{other} {data}"),
    }
}

/// The error's class and message; once, where the worker's message already starts with
/// its class (`transient: …`).
fn error_text(class: &str, message: &str) -> String {
    match message.strip_prefix(class) {
        Some(rest) if rest.starts_with(':') => message.to_owned(),
        _ => format!("{class}: {message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_block_gives_its_name_and_json_and_a_keep_alive_nothing() {
        let (event, data) = parse_event("id: 3\nevent: state\ndata: {\"state\":\"running\",\"attempts\":1}\n\n").unwrap();
        assert_eq!((event.as_str(), data["state"].as_str()), ("state", Some("running")));
        assert!(parse_event(":\n\n").is_none());
    }

    #[test]
    fn an_argument_stays_one_path_segment() {
        assert_eq!(path_segment("sync_01J9"), "sync_01J9");
        assert_eq!(path_segment("../queues?x"), "..%2Fqueues%3Fx");
        assert_eq!(path_segment(".."), "%2E%2E");
    }
}
