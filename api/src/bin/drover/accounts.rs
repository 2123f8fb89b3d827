//! `drover accounts ls|show|limits|counts`.
use drover::queue::AccountStateCounts;
use serde_json::Value;

use crate::args::AccountsCmd;
use crate::client::{CliError, Client};
use crate::jobs::path_segment;
use crate::table::{at, record, Table};
use crate::Out;

pub async fn run(client: &Client, out: &Out, cmd: AccountsCmd) -> Result<(), CliError> {
    let path = match cmd {
        AccountsCmd::Ls { limit, after } => {
            let mut q = vec![("limit", limit.to_string())];
            if let Some(a) = after {
                q.push(("after", a));
            }
            let page = client.get("/v1/accounts", &q).await?;
            out.print(&page, || table(&page));
            if let Some(next) = page["next_after"].as_str() {
                eprintln!("more: --after {next}");
            }
            return Ok(());
        }
        AccountsCmd::Show { id } => format!("/v1/accounts/{}", path_segment(&id)),
        AccountsCmd::Limits { id } => format!("/v1/accounts/{}/limits", path_segment(&id)),
        AccountsCmd::Counts { id } => {
            let v = client.get(&format!("/v1/accounts/{}/counts", path_segment(&id)), &[]).await?;
            out.print(&v, || counts_table(&v));
            if v["complete"] == Value::Bool(false) {
                eprintln!("still counting jobs made before this release: figures are too low for now");
            }
            return Ok(());
        }
    };
    let v = client.get(&path, &[]).await?;
    out.print(&v, || record(&v));
    Ok(())
}

fn table(page: &Value) -> String {
    let mut t = Table::new(&["ID", "SELLER", "MARKETPLACES", "ACTIVE", "CREATED"]);
    for a in page["accounts"].as_array().into_iter().flatten() {
        let marketplaces: Vec<&str> = a["marketplace_ids"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        t.row(vec![
            at(a, "id"),
            at(a, "seller_id"),
            marketplaces.join(","),
            at(a, "active"),
            at(a, "created_at"),
        ]);
    }
    t.render()
}

fn counts_table(v: &Value) -> String {
    let mut t = Table::new(&[
        "KIND",
        "QUEUED",
        "SCHEDULED",
        "RUNNING",
        "RETRYING",
        "SUCCEEDED",
        "PARTIAL",
        "DEAD",
        "CANCELLED",
    ]);
    for k in v["kinds"].as_array().into_iter().flatten() {
        let mut row = vec![at(k, "kind")];
        row.extend(AccountStateCounts::STATES.iter().map(|s| at(&k["counts"], s)));
        t.row(row);
    }
    t.render()
}
