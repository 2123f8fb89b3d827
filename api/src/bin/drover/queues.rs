//! `drover queues ls|pause|resume`.
use serde_json::Value;

use crate::args::QueuesCmd;
use crate::client::{CliError, Client};
use crate::table::{at, Table};
use crate::Out;

pub async fn run(client: &Client, out: &Out, cmd: QueuesCmd) -> Result<(), CliError> {
    let (v, paused) = match cmd {
        QueuesCmd::Ls => {
            let v = client.get("/v1/queues", &[]).await?;
            out.print(&v, || table(&v));
            return Ok(());
        }
        QueuesCmd::Pause { kind } => (client.post(&format!("/v1/queues/{kind}/pause"), None).await?, true),
        QueuesCmd::Resume { kind } => (client.post(&format!("/v1/queues/{kind}/resume"), None).await?, false),
    };
    out.print(&v, || format!("{}: {}", at(&v, "kind"), if paused { "paused" } else { "resumed" }));
    Ok(())
}

fn table(v: &Value) -> String {
    let mut t = Table::new(&[
        "KIND",
        "PAUSED",
        "QUEUED",
        "SCHEDULED",
        "PREFETCHED",
        "RUNNING",
        "RETRYING",
        "SUCCEEDED",
        "PARTIAL",
        "DEAD",
        "CANCELLED",
        "LAG_MS",
    ]);
    for q in v["queues"].as_array().into_iter().flatten() {
        t.row(vec![
            at(q, "kind"),
            at(q, "paused"),
            at(q, "counts.queued"),
            at(q, "counts.scheduled"),
            at(q, "counts.prefetched"),
            at(q, "counts.running"),
            at(q, "counts.retrying"),
            at(q, "counts.succeeded"),
            at(q, "counts.partial"),
            at(q, "counts.dead"),
            at(q, "counts.cancelled"),
            at(q, "lag_ms"),
        ]);
    }
    t.render()
}
