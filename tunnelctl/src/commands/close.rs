//! `tunnelctl close ID...` and `close --all`: close tunnels, reporting each
//! failure and going on.

use std::process::ExitCode;

use tunnel_proto::v1::{CloseRequest, Tunnel, TunnelSource};

use super::{Context, list, print, report};
use crate::cli::CloseArgs;
use crate::client;
use crate::output::{Mode, json};

/// Closes every id or name given, or every tunnel open but the declared
/// ones; fails (after trying them all) if any could not be closed.
pub async fn run(ctx: &Context, args: &CloseArgs) -> anyhow::Result<ExitCode> {
    let ids: Vec<String> = if args.all {
        let response = list::fetch(ctx, "cannot list the tunnels to close").await?;
        // Declared tunnels belong to tunneld's config file, which alone
        // closes them: "every tunnel" means every one a call may close.
        response
            .tunnels
            .into_iter()
            .filter(|t| t.source != TunnelSource::Declared as i32)
            .map(|t| t.id)
            .collect()
    } else {
        args.ids.clone()
    };
    let mut client = ctx.connect(ctx.deadline()).await?;
    let mut closed: Vec<Tunnel> = Vec::new();
    let mut failed = false;
    for id in ids {
        let result = ctx
            .call(
                ctx.deadline(),
                format_args!("cannot close {id}"),
                client.close(CloseRequest { id: id.clone() }),
            )
            .await;
        match result {
            Ok(response) => {
                let tunnel = response.tunnel.unwrap_or_else(|| Tunnel {
                    id: id.clone(),
                    ..Default::default()
                });
                // Ids go out as they close, so a later failure loses nothing.
                if ctx.mode != Mode::Json {
                    print(&tunnel.id)?;
                }
                closed.push(tunnel);
            }
            // With --all, a tunnel that went away since the listing (an
            // attached one whose command ended) is as good as closed.
            Err(err) if args.all && client::has_code(&err, tonic::Code::NotFound) => {}
            Err(err) => {
                failed = true;
                report(&crate::one_line(&format!("{err:#}")));
            }
        }
    }
    if ctx.mode == Mode::Json {
        print(&json::pretty_array(&closed)?)?;
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
