//! `tunnelctl list`: every tunnel and SSH host tunneld holds.

use std::process::ExitCode;
use std::time::SystemTime;

use tunnel_proto::v1::ListRequest;

use super::{Context, print};
use crate::cli::ListArgs;
use crate::client;
use crate::output;

/// Lists tunnels and hosts.
pub async fn run(ctx: &Context, _args: &ListArgs) -> anyhow::Result<ExitCode> {
    let deadline = ctx.deadline();
    let mut client = ctx.connect(deadline).await?;
    let response = client::call(
        &ctx.addr,
        deadline,
        ctx.timeout,
        "cannot list tunnels",
        client.list(ListRequest {}),
    )
    .await?;
    print(&output::list(ctx.mode, &response, SystemTime::now())?);
    Ok(ExitCode::SUCCESS)
}
