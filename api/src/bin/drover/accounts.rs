//! `drover accounts show|limits`. There is no `ls`: the API has no endpoint that lists
//! accounts (`GET /v1/accounts/{id}` only).
use crate::args::AccountsCmd;
use crate::client::{CliError, Client};
use crate::jobs::path_segment;
use crate::table::record;
use crate::Out;

pub async fn run(client: &Client, out: &Out, cmd: AccountsCmd) -> Result<(), CliError> {
    let path = match cmd {
        AccountsCmd::Show { id } => format!("/v1/accounts/{}", path_segment(&id)),
        AccountsCmd::Limits { id } => format!("/v1/accounts/{}/limits", path_segment(&id)),
    };
    let v = client.get(&path, &[]).await?;
    out.print(&v, || record(&v));
    Ok(())
}
