//! `drover audit`: the operator audit log, newest first (keys for every account).
use serde_json::Value;

use crate::args::AuditArgs;
use crate::client::{CliError, Client};
use crate::table::{at, Table};
use crate::Out;

pub async fn run(client: &Client, out: &Out, args: AuditArgs) -> Result<(), CliError> {
    let mut query = vec![("limit", args.limit.to_string())];
    if let Some(before) = args.before {
        query.push(("before", before.to_string()));
    }
    if let Some(actor) = args.actor {
        query.push(("actor", actor));
    }
    if let Some(action) = args.action {
        query.push(("action", action));
    }
    let page = client.get("/v1/audit", &query).await?;
    out.print(&page, || table(&page));
    if let Some(next) = page["next_before"].as_i64() {
        eprintln!("more: --before {next}");
    }
    Ok(())
}

fn table(v: &Value) -> String {
    let mut t = Table::new(&["ID", "AT", "ACTOR", "ACTION", "TARGET", "TOUCHED", "OUTCOME"]);
    for e in v["entries"].as_array().into_iter().flatten() {
        t.row(vec![
            at(e, "id"),
            at(e, "at"),
            at(e, "actor"),
            at(e, "action"),
            at(e, "target"),
            at(e, "touched"),
            at(e, "outcome"),
        ]);
    }
    t.render()
}
