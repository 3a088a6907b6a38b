//! Starting a command on its own Exec connection and driving its channel to
//! the end: the terminal and command requests, stdin fed as the window
//! allows, output queued as the caller reads it.

use std::{collections::VecDeque, pin::pin, sync::Arc};

use russh::{ChannelMsg, Sig};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::Instrument;

use super::{
    input::feed,
    output::ExecOutput,
    spec::{ExecEvent, ExecSpec, ExitStatus, Terminal, with_env},
};
use crate::{
    error::{Error, Result},
    relay::budget::{self, BudgetSender},
    ssh::{ExecLease, SshChannel, SshHost},
};

/// Starts `spec` on `host`. Errors before the command runs (connection,
/// channel, refusal) are returned here; later ones end the stream.
pub async fn start(
    host: &Arc<SshHost>,
    spec: ExecSpec,
    max_buffer: usize,
    cancel: CancellationToken,
    tasks: &TaskTracker,
) -> Result<ExecOutput> {
    let host_name = host.config().name.clone();
    if spec.command.is_empty() && !spec.env.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "env is set but no command is given for host {host_name:?}: a login shell cannot take variables; give a command, or set them in the shell"
        )));
    }
    // The host's shared connection too, so its state (List, Watch) and
    // errors read as for any other request.
    let (_shared, (lease, channel)) = tokio::try_join!(host.session(), open_channel(host))?;
    let session = lease.session().clone();
    let requested = match request(&channel, spec.terminal.as_ref(), &spec.env, &spec.command).await
    {
        Ok(requested) => requested,
        Err(e) => {
            tracing::warn!(host = %host_name, "exec request failed: {e}");
            lease.discard().await;
            return Err(session.lost());
        }
    };
    let (tx, rx) = budget::channel(max_buffer);
    let span = tracing::info_span!("exec", host = %host_name, command = %tunnel_proto::clip::clipped(&spec.command), terminal = spec.terminal.is_some());
    tasks.spawn(
        async move {
            let end = run(channel, spec, requested, &host_name, &tx, &cancel).await;
            if let Err(e) = &end {
                tracing::debug!("exec ended with error: {e}");
            }
            let item = match end {
                Ok(Some(status)) => {
                    lease.give_back();
                    Ok(ExecEvent::Exit(status))
                }
                other => {
                    lease.discard().await;
                    match other {
                        Ok(_) if session.is_closed() => Err(session.lost()),
                        Ok(_) => Err(session.failed(
                            "the server closed the command's channel without an exit status".into(),
                        )),
                        Err(e) => Err(e),
                    }
                }
            };
            let _ = tx.send(item, 0);
        }
        .instrument(span),
    );
    Ok(ExecOutput::new(rx))
}

/// A channel request whose reply is awaited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Request {
    /// `pty-req`.
    Terminal,
    /// `exec` or `shell`.
    Command,
}

/// Sends the terminal request (if any) and the command's, each asking for a
/// reply; the replies come in this order. (Not `&ExecSpec`: its stdin
/// stream is not `Sync`, so a reference to it cannot be held across an
/// await in a task.)
async fn request(
    channel: &SshChannel,
    terminal: Option<&Terminal>,
    env: &[(String, String)],
    command: &str,
) -> Result<VecDeque<Request>, russh::Error> {
    let mut requested = VecDeque::with_capacity(2);
    if let Some(Terminal { term, size }) = terminal {
        channel
            .request_pty(
                true,
                term,
                size.columns,
                size.rows,
                size.width_pixels,
                size.height_pixels,
                &[],
            )
            .await?;
        requested.push_back(Request::Terminal);
    }
    if command.is_empty() {
        channel.request_shell(true).await?;
    } else {
        channel
            .exec(true, with_env(env, command).as_bytes())
            .await?;
    }
    requested.push_back(Request::Command);
    Ok(requested)
}

/// A session channel on an Exec connection of `host`. An idle connection
/// the server dropped in the meantime is replaced by a new one once.
async fn open_channel(host: &Arc<SshHost>) -> Result<(ExecLease, SshChannel)> {
    let lease = host.exec_session(false).await?;
    match lease.session().open_session().await {
        Ok(channel) => Ok((lease, channel)),
        Err(e) if lease.reused() => {
            tracing::debug!(host = %host.config().name, "idle Exec connection failed ({e}); opening a new one");
            lease.discard().await;
            let lease = host.exec_session(true).await?;
            let channel = lease.session().open_session().await?;
            Ok((lease, channel))
        }
        Err(e) => Err(e),
    }
}

/// Drives the channel to its end; `Ok(None)` if it ended without an exit
/// status. Output waits for room in `tx`, and meanwhile the channel (and so
/// the connection, which nothing else uses) is not read; stdin, signals and
/// resizes still go through.
async fn run(
    channel: SshChannel,
    spec: ExecSpec,
    mut requested: VecDeque<Request>,
    host: &str,
    tx: &BudgetSender<Result<ExecEvent>>,
    cancel: &CancellationToken,
) -> Result<Option<ExitStatus>> {
    let (mut rx, ch) = channel.split();
    let terminal = spec.terminal.is_some();
    let mut feed = pin!(feed(&ch, spec.stdin, terminal, host));
    let mut fed = false;
    let deadline = async {
        match spec.timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending().await,
        }
    };
    let mut deadline = pin!(deadline);
    let mut status = None;
    let stop = |reason: Error| async {
        let _ = ch.signal(Sig::TERM).await;
        let _ = ch.close().await;
        Err(reason)
    };
    let timed_out = || Error::ExecTimeout {
        host: host.to_string(),
        timeout: spec.timeout.unwrap_or_default(),
    };
    loop {
        let output = tokio::select! {
            r = &mut feed, if !fed => {
                fed = true;
                if let Err(e) = r {
                    return stop(e).await;
                }
                None
            }
            () = &mut deadline => return stop(timed_out()).await,
            () = cancel.cancelled() => return stop(Error::ShuttingDown).await,
            () = tx.closed() => return stop(Error::Cancelled).await,
            msg = rx.wait() => match msg {
                Some(ChannelMsg::Data { data }) => Some(ExecEvent::Stdout(data)),
                Some(ChannelMsg::ExtendedData { data, ext: 1 }) => Some(ExecEvent::Stderr(data)),
                Some(ChannelMsg::ExitStatus { exit_status }) => {
                    status = Some(ExitStatus::Code(exit_status));
                    None
                }
                Some(ChannelMsg::ExitSignal { signal_name, core_dumped, error_message, .. }) => {
                    status = Some(ExitStatus::Signal { name: signal_name_of(&signal_name), core_dumped, message: error_message });
                    None
                }
                Some(ChannelMsg::Success) => {
                    requested.pop_front();
                    None
                }
                Some(ChannelMsg::Failure) => match requested.pop_front() {
                    // As ssh: say so, and run the command without one.
                    Some(Request::Terminal) => {
                        tracing::warn!("the SSH server refused a terminal; the command runs without one");
                        Some(ExecEvent::Stderr("PTY allocation request failed\r\n".into()))
                    }
                    _ => return Err(Error::ExecRefused { host: host.to_string() }),
                },
                Some(ChannelMsg::Close) | None => return Ok(status),
                Some(_) => None,
            },
        };
        let Some(event) = output else { continue };
        let size = match &event {
            ExecEvent::Stdout(d) | ExecEvent::Stderr(d) => d.len(),
            ExecEvent::Exit(_) => 0,
        };
        let mut send = pin!(tx.send_when_room(Ok(event), size));
        loop {
            tokio::select! {
                r = &mut send => {
                    if r.is_err() {
                        return stop(Error::Cancelled).await;
                    }
                    break;
                }
                r = &mut feed, if !fed => {
                    fed = true;
                    if let Err(e) = r {
                        return stop(e).await;
                    }
                }
                () = &mut deadline => return stop(timed_out()).await,
                () = cancel.cancelled() => return stop(Error::ShuttingDown).await,
            }
        }
    }
}

fn signal_name_of(sig: &Sig) -> String {
    match sig {
        Sig::ABRT => "ABRT",
        Sig::ALRM => "ALRM",
        Sig::FPE => "FPE",
        Sig::HUP => "HUP",
        Sig::ILL => "ILL",
        Sig::INT => "INT",
        Sig::KILL => "KILL",
        Sig::PIPE => "PIPE",
        Sig::QUIT => "QUIT",
        Sig::SEGV => "SEGV",
        Sig::TERM => "TERM",
        Sig::USR1 => "USR1",
        Sig::Custom(s) => s.as_str(),
    }
    .to_string()
}
