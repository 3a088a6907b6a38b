//! `tunnelctl hosts`: the SSH hosts tunneld knows and their connections.

use std::process::ExitCode;
use std::time::SystemTime;

use super::{Context, list, note, print};
use crate::cli::HostsArgs;
use crate::output::{Mode, hosts};

/// Lists SSH hosts.
pub async fn run(ctx: &Context, _args: &HostsArgs) -> anyhow::Result<ExitCode> {
    let response = list::fetch(ctx, "cannot list SSH hosts").await?;
    if ctx.mode == Mode::Table && response.hosts.is_empty() {
        note(hosts::NO_HOSTS);
    }
    print(&hosts::hosts(ctx.mode, &response.hosts, SystemTime::now())?)?;
    Ok(ExitCode::SUCCESS)
}
