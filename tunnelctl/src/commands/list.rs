//! `tunnelctl list`: the tunnels tunneld holds.

use std::process::ExitCode;
use std::time::SystemTime;

use tunnel_proto::v1::{ListRequest, ListResponse};

use super::{Context, note, print};
use crate::cli::ListArgs;
use crate::output::{Mode, tunnels};

/// Lists tunnels.
pub async fn run(ctx: &Context, _args: &ListArgs) -> anyhow::Result<ExitCode> {
    let response = fetch(ctx, "cannot list tunnels").await?;
    if ctx.mode == Mode::Table && response.tunnels.is_empty() {
        note(tunnels::NO_TUNNELS);
    }
    print(&tunnels::list(ctx.mode, &response, SystemTime::now())?)?;
    Ok(ExitCode::SUCCESS)
}

/// Connects and calls `List` within one `--timeout`; `what` names the
/// purpose in the error.
pub async fn fetch(ctx: &Context, what: &str) -> anyhow::Result<ListResponse> {
    let deadline = ctx.deadline();
    let mut client = ctx.connect(deadline).await?;
    ctx.call(deadline, what, client.list(ListRequest {})).await
}
