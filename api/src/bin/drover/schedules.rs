//! `drover schedules ls|put|rm`.
use reqwest::Method;
use serde_json::{json, Value};

use crate::args::SchedulesCmd;
use crate::client::{with_query, CliError, Client};
use crate::jobs::{next_cursor, path_segment};
use crate::table::{at, Table};
use crate::Out;

pub async fn run(client: &Client, out: &Out, cmd: SchedulesCmd) -> Result<(), CliError> {
    match cmd {
        SchedulesCmd::Ls { account, limit, cursor } => {
            let mut q: Vec<(&str, String)> = vec![("limit", limit.to_string())];
            q.extend(account.map(|a| ("account_id", a)));
            q.extend(cursor.map(|c| ("cursor", c)));
            let v = client.get("/v1/schedules", &q).await?;
            out.print(&v, || table(&v));
            next_cursor(&v);
        }
        SchedulesCmd::Put {
            name,
            cron,
            kind,
            payload,
            disabled,
            priority,
            max_attempts,
        } => {
            let mut body = json!({
                "cron": cron,
                "kind": kind.to_string(),
                "payload": read_payload(&payload)?,
                "enabled": !disabled,
            });
            if let Some(p) = priority {
                body["priority"] = json!(p);
            }
            if let Some(m) = max_attempts {
                body["max_attempts"] = json!(m);
            }
            let req = client.request(Method::PUT, &format!("/v1/schedules/{}", path_segment(&name)));
            let v = client.json(req.json(&body)).await?;
            out.print(&v, || format!("{}: next run {}", at(&v, "name"), at(&v, "next_run_at")));
        }
        SchedulesCmd::Rm { name, account } => {
            let q: Vec<(&str, String)> = account.map(|a| ("account_id", a)).into_iter().collect();
            let path = with_query(&format!("/v1/schedules/{}", path_segment(&name)), &q);
            client.send(client.request(Method::DELETE, &path)).await?;
            out.print(&json!({"deleted": name}), || format!("{name}: deleted"));
        }
    }
    Ok(())
}

/// `--payload`: JSON, or `@PATH` for a file holding it.
fn read_payload(arg: &str) -> Result<Value, CliError> {
    let text = match arg.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).map_err(|e| CliError::Usage(format!("--payload @{path}: {e}")))?,
        None => arg.to_owned(),
    };
    serde_json::from_str(&text).map_err(|e| CliError::Usage(format!("--payload is not JSON: {e}")))
}

fn table(v: &Value) -> String {
    let mut t = Table::new(&["NAME", "ACCOUNT", "KIND", "CRON", "ENABLED", "NEXT RUN"]);
    for s in v["schedules"].as_array().into_iter().flatten() {
        t.row(vec![
            at(s, "name"),
            at(s, "account_id"),
            at(s, "kind"),
            at(s, "cron"),
            at(s, "enabled"),
            at(s, "next_run_at"),
        ]);
    }
    // The built-ins make one job per tick for every active account.
    for b in v["built_in"].as_array().into_iter().flatten() {
        t.row(vec![
            at(b, "name"),
            "(every active)".to_owned(),
            at(b, "kind"),
            at(b, "cron"),
            "true".to_owned(),
            at(b, "next_run_at"),
        ]);
    }
    t.render()
}
