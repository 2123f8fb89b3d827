//! `drover accounts ls|show|limits`.
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
