//! `tunnelctl host add NAME --ssh DEST` and `host remove NAME [--force]`:
//! hosts added and removed while tunneld runs.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use tunnel_proto::v1::{AddHostRequest, RemoveHostRequest};

use super::{Context, print};
use crate::cli::{HostAddArgs, HostCommand, HostRemoveArgs};
use crate::output::{Mode, json};

/// Runs `host add` or `host remove`.
pub async fn run(ctx: &Context, cmd: &HostCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        HostCommand::Add(args) => add(ctx, args).await,
        HostCommand::Remove(args) => remove(ctx, args).await,
    }
}

/// A file named on the command line, as tunneld will open it: `~/` is
/// left for tunneld's user to expand, a relative path is made absolute
/// from here.
fn file_arg(p: &Path) -> anyhow::Result<String> {
    if p.is_absolute() || p.starts_with("~") {
        return Ok(p.to_string_lossy().into_owned());
    }
    let here = std::env::current_dir().context("cannot make a relative path absolute")?;
    Ok(here.join(p).to_string_lossy().into_owned())
}

async fn add(ctx: &Context, args: &HostAddArgs) -> anyhow::Result<ExitCode> {
    let path = |p: &Option<PathBuf>| p.as_deref().map(file_arg).transpose();
    let request = AddHostRequest {
        name: args.name.clone(),
        ssh: args.ssh.clone(),
        identity_file: path(&args.identity)?.unwrap_or_default(),
        known_hosts_file: path(&args.known_hosts)?.unwrap_or_default(),
        jump: args.jump.clone().unwrap_or_default(),
        persist: args.persist,
    };
    let deadline = ctx.deadline();
    let mut client = ctx.connect(deadline).await?;
    let response = ctx
        .call(
            deadline,
            format_args!("cannot add host {}", args.name),
            client.add_host(request),
        )
        .await?;
    print(&match ctx.mode {
        Mode::Json => json::pretty(&response)?,
        Mode::Quiet => args.name.clone(),
        Mode::Table => {
            let address = response
                .host
                .as_ref()
                .map(|h| h.address.as_str())
                .unwrap_or_default();
            let kept = if args.persist { ", persisted" } else { "" };
            format!("host {} added ({address}{kept})", args.name)
        }
    })?;
    Ok(ExitCode::SUCCESS)
}

async fn remove(ctx: &Context, args: &HostRemoveArgs) -> anyhow::Result<ExitCode> {
    let deadline = ctx.deadline();
    let mut client = ctx.connect(deadline).await?;
    let response = ctx
        .call(
            deadline,
            format_args!("cannot remove host {}", args.name),
            client.remove_host(RemoveHostRequest {
                name: args.name.clone(),
                force: args.force,
            }),
        )
        .await?;
    let closed: Vec<&str> = response.closed.iter().map(|t| t.id.as_str()).collect();
    print(&match ctx.mode {
        Mode::Json => json::pretty(&response)?,
        Mode::Quiet => closed.join("\n"),
        Mode::Table if closed.is_empty() => format!("host {} removed", args.name),
        Mode::Table => format!(
            "host {} removed; tunnels closed: {}",
            args.name,
            closed.join(", ")
        ),
    })?;
    Ok(ExitCode::SUCCESS)
}
