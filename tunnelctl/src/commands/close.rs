//! `tunnelctl close ID...`: close tunnels, reporting each failure and going on.

use std::process::ExitCode;

use tunnel_proto::v1::{CloseRequest, Tunnel};

use super::{Context, print};
use crate::cli::CloseArgs;
use crate::client;
use crate::output::{self, Mode};

/// Closes every id given; fails (after trying them all) if any could not be closed.
pub async fn run(ctx: &Context, args: &CloseArgs) -> anyhow::Result<ExitCode> {
    let mut client = ctx.connect(ctx.deadline()).await?;
    let mut closed: Vec<Tunnel> = Vec::new();
    let mut failed = false;
    for id in &args.ids {
        let result = client::call(
            &ctx.addr,
            ctx.deadline(),
            ctx.timeout,
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
                    print(&tunnel.id);
                }
                closed.push(tunnel);
            }
            Err(err) => {
                failed = true;
                eprintln!("tunnelctl: {}", crate::one_line(&format!("{err:#}")));
            }
        }
    }
    if ctx.mode == Mode::Json {
        print(&output::json(&closed)?);
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
