//! `tunnelctl watch [ID]`: follow tunneld's `Watch` stream, one line per
//! event as it arrives — the hosts and tunnels as they are, then every
//! change (see [`crate::output::watch`] for the lines).
//!
//! Connecting and the call's start are bounded by `--timeout`; the stream
//! itself is not. It ends with exit 0 when tunneld ends it (a watched tunnel
//! was closed, tunneld shut down), on SIGINT, SIGTERM or SIGHUP, or when the
//! reader of stdout goes away (`| head`); with the usual one error line and
//! exit 1 when the call fails (an unknown id: NOT_FOUND) or tunneld is lost.

use std::process::ExitCode;

use anyhow::anyhow;
use tokio::time::Instant;
use tonic::Streaming;
use tunnel_proto::v1::{WatchRequest, WatchResponse};

use super::{Context, Signals, print_line};
use crate::cli::WatchArgs;
use crate::client;
use crate::output::watch;

/// Watches everything, or one tunnel, until the stream or the process ends.
pub async fn run(ctx: &Context, args: &WatchArgs) -> anyhow::Result<ExitCode> {
    // Installed first: Ctrl-C while connecting is a quiet exit too.
    let mut signals =
        Signals::new().map_err(|e| anyhow!("cannot handle signals, so cannot watch: {e}"))?;
    let what = match &args.id {
        Some(id) => format!("cannot watch tunnel {id}"),
        None => "cannot watch tunneld".to_string(),
    };
    let request = WatchRequest {
        tunnel_id: args.id.clone().unwrap_or_default(),
    };
    let mut stream = tokio::select! {
        started = start(ctx, ctx.deadline(), request, &what) => started?,
        _ = signals.recv() => return Ok(ExitCode::SUCCESS),
    };
    let mut started = false;
    loop {
        let message = tokio::select! {
            _ = signals.recv() => return Ok(ExitCode::SUCCESS),
            message = stream.message() => message,
        };
        let message = match message {
            Ok(Some(message)) => message,
            Ok(None) => return Ok(ExitCode::SUCCESS),
            // Before the first message this is the call failing (an unknown
            // id); after, the stream breaking, which says what happened.
            Err(status) if started => return Err(client::status_error(&ctx.remote, status)),
            Err(status) => return Err(client::status_error(&ctx.remote, status).context(what)),
        };
        started = true;
        if let Some(line) = watch::event(ctx.mode, &message)?
            && !print_line(&line)?
        {
            return Ok(ExitCode::SUCCESS);
        }
    }
}

/// Connects and starts the call within `deadline`.
async fn start(
    ctx: &Context,
    deadline: Instant,
    request: WatchRequest,
    what: &str,
) -> anyhow::Result<Streaming<WatchResponse>> {
    let mut client = ctx.connect(deadline).await?;
    ctx.call(deadline, what, client.watch(request)).await
}
