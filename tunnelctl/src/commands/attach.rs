//! `--attach` of the open verbs (`open-local`, `open-dynamic`,
//! `open-remote`): a tunnel tied to this process, as `ssh -N -L` ties a
//! forward to ssh.
//!
//! The tunnel is opened with the streaming `OpenAttached` call, whose life
//! is the tunnel's: tunneld closes the tunnel when the call ends, however it
//! ends. On SIGINT, SIGTERM or SIGHUP tunnelctl still closes it explicitly
//! (bounded by [`CLOSE_TIMEOUT`]) so the port is free by the time it exits;
//! if tunnelctl is killed outright, tunneld notices the call is gone.
//!
//! Losing the SSH connection does not end the attachment: tunneld
//! reconnects and restores the tunnel, so RECONNECTING and FAILED are notes
//! on stderr (and lines in `-o json`), and so is being open again. Only
//! CLOSED, or losing tunneld, ends it.
//!
//! Architecture Invariant: after the connection to tunneld is lost, nothing
//! is sent in the tunnel's name. A reconnect could reach a restarted tunneld
//! where the same id names someone else's tunnel.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail};
use tokio::time::Instant;
use tonic::Streaming;
use tunnel_proto::v1::open_attached_request::Forward;
use tunnel_proto::v1::open_attached_response::Event;
use tunnel_proto::v1::{CloseRequest, OpenAttachedRequest, OpenAttachedResponse, Tunnel};

use super::{Context, Signals, print, report};
use crate::client::{self, Client};
use crate::output::Mode;
use crate::output::events::{self, StateNote};

/// Bound on the `Close` sent when a signal ends the attachment: long enough
/// for tunneld to stop listening, short enough that Ctrl-C feels immediate.
/// If it runs out, tunneld still closes the tunnel when the call drops.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);

/// Opens the forward attached to this process and reports its connections
/// and state changes until a signal, a close from elsewhere, or a lost
/// connection to tunneld.
/// `what` names the forward for errors ("cannot open local forward ...").
pub async fn run(ctx: &Context, forward: Forward, what: String) -> anyhow::Result<ExitCode> {
    // Handlers go in before anything is opened: a Ctrl-C that comes just as
    // the tunnel is printed must still close it, not kill the process.
    let mut signals =
        Signals::new().map_err(|e| anyhow!("cannot handle signals, so cannot attach: {e}"))?;
    let deadline = ctx.deadline();
    let (mut client, mut stream, first) = tokio::select! {
        opened = open(ctx, deadline, forward, &what) => opened?,
        // Interrupted while opening: dropping the call makes tunneld close
        // whatever it opened; end as an interrupted process does.
        number = signals.recv() => return Ok(ExitCode::from(128 + number)),
    };
    let id = first.id.clone();
    let mut state = first.state;
    emit(
        ctx.mode,
        &id,
        &OpenAttachedResponse {
            event: Some(Event::Opened(first)),
        },
    );
    loop {
        let message = tokio::select! {
            _ = signals.recv() => {
                if let Err(err) = close(ctx, &mut client, &id).await {
                    report(&format!(
                        "{}; tunneld closes it when it sees tunnelctl has gone",
                        crate::one_line(&format!("{err:#}"))
                    ));
                }
                return Ok(ExitCode::SUCCESS);
            }
            message = stream.message() => message,
        };
        let message = match message {
            Ok(Some(message)) => message,
            Ok(None) => bail!(
                "tunneld ended the attachment of tunnel {id} without closing it; see `tunnelctl list`"
            ),
            Err(status) => {
                return Err(client::status_error(&ctx.remote, status)
                    .context(format!("tunnel {id} is no longer attached")));
            }
        };
        emit(ctx.mode, &id, &message);
        let Some(Event::StateChanged(tunnel)) = &message.event else {
            continue;
        };
        let before = std::mem::replace(&mut state, tunnel.state);
        match events::state_note(tunnel, before) {
            Some(StateNote::Closed(note)) => {
                report(&note);
                return Ok(ExitCode::SUCCESS);
            }
            // tunneld keeps retrying; so does the attachment.
            Some(StateNote::Trouble(note) | StateNote::Restored(note)) => report(&note),
            None => {}
        }
    }
}

/// Connects and opens the forward within `deadline`, up to the first
/// message, which must carry the opened tunnel. The rest of the call is
/// unbounded: it lasts as long as the attachment.
async fn open(
    ctx: &Context,
    deadline: Instant,
    forward: Forward,
    what: &str,
) -> anyhow::Result<(Client, Streaming<OpenAttachedResponse>, Tunnel)> {
    let mut client = ctx.connect(deadline).await?;
    let request = OpenAttachedRequest {
        forward: Some(forward),
    };
    let mut stream = ctx
        .call(deadline, what, client.open_attached(request))
        .await?;
    let first = match tokio::time::timeout_at(deadline, stream.message()).await {
        Ok(Ok(Some(first))) => first,
        Ok(Ok(None)) => bail!("{what}: tunneld ended the call without opening the tunnel"),
        Ok(Err(status)) => {
            return Err(client::status_error(&ctx.remote, status).context(what.to_string()));
        }
        Err(_) => {
            return Err(client::timeout_error(&ctx.remote, ctx.timeout).context(what.to_string()));
        }
    };
    match first.event {
        Some(Event::Opened(tunnel)) => Ok((client, stream, tunnel)),
        _ => bail!("{what}: tunneld's first message was not the opened tunnel"),
    }
}

/// Prints one message as the mode wants. A failure to print does not end the
/// attachment (the tunnel works without its log), so it is only reported.
fn emit(mode: Mode, id: &str, message: &OpenAttachedResponse) {
    let printed =
        events::event(mode, id, message).and_then(|line| line.map_or(Ok(()), |line| print(&line)));
    if let Err(err) = printed {
        report(&crate::one_line(&format!("{err:#}")));
    }
}

/// Closes the tunnel within [`CLOSE_TIMEOUT`]; NOT_FOUND (already gone) is
/// success.
async fn close(ctx: &Context, client: &mut Client, id: &str) -> anyhow::Result<()> {
    let closed = client::call(
        &ctx.remote,
        Instant::now() + CLOSE_TIMEOUT,
        CLOSE_TIMEOUT,
        format_args!("cannot close {id}"),
        client.close(CloseRequest { id: id.to_string() }),
    )
    .await;
    match closed {
        Err(err) if !client::has_code(&err, tonic::Code::NotFound) => Err(err),
        _ => Ok(()),
    }
}
