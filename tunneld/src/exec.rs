//! Running one command on a host, as `ssh host 'command'` does, with its
//! output streamed as it arrives.
//!
//! Each command runs on an SSH connection it holds alone (see
//! [`crate::ssh::ExecPool`]), so its output can wait for the caller as long
//! as the caller takes: up to the byte budget it waits in tunneld (see
//! [`crate::relay::budget`]), past it tunneld stops reading that connection and
//! sshd stops reading the command's output, as with `ssh host cmd`. Nothing
//! else shares the connection, so a slow caller slows only its command.

use std::{
    pin::{Pin, pin},
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use russh::{ChannelMsg, Sig};
use tokio::sync::OwnedSemaphorePermit;
use tokio_stream::Stream;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::Instrument;

use crate::{
    error::{Error, Result},
    relay::budget::{self, BudgetReceiver, BudgetSender},
    ssh::{ExecLease, SshChannel, SshHost},
};

/// What to run.
#[derive(Debug, Clone, Default)]
pub struct ExecSpec {
    /// Command line for the remote login shell.
    pub command: String,
    /// Bytes for the command's stdin, followed by EOF.
    pub stdin: Bytes,
    /// Variables exported before the command runs.
    pub env: Vec<(String, String)>,
    /// Run-time limit.
    pub timeout: Option<Duration>,
}

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitStatus {
    /// Exited with this code.
    Code(u32),
    /// Killed by a signal.
    Signal {
        /// Signal name without "SIG".
        name: String,
        /// Whether it dumped core.
        core_dumped: bool,
        /// The server's message.
        message: String,
    },
}

/// One event of a running command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecEvent {
    /// A chunk of stdout.
    Stdout(Bytes),
    /// A chunk of stderr.
    Stderr(Bytes),
    /// The end; always last on success.
    Exit(ExitStatus),
}

/// Most output bytes gathered into one [`ExecEvent`]: each event becomes one
/// gRPC message, and per-message costs (framing, a wake-up each side) kept
/// the stream far slower than the SSH channel when events were single SSH
/// packets (32 KiB).
const OUTPUT_BATCH: usize = 1024 * 1024;

/// The events of a running command; dropping it stops the command.
pub struct ExecOutput {
    rx: BudgetReceiver<Result<ExecEvent>>,
    /// An event taken while gathering that did not belong to the batch.
    held: Option<Result<ExecEvent>>,
    /// The command's place under `--max-execs`, freed with the output.
    slot: Option<OwnedSemaphorePermit>,
}

impl ExecOutput {
    /// Holds `slot` (a place under a cap) as long as the output is read.
    pub fn holding(mut self, slot: OwnedSemaphorePermit) -> Self {
        self.slot = Some(slot);
        self
    }

    /// The next event already queued, if any, returning its bytes to the
    /// budget.
    fn take_ready(&mut self) -> Option<Result<ExecEvent>> {
        if let Some(held) = self.held.take() {
            return Some(held);
        }
        let (item, size) = self.rx.try_recv()?;
        self.rx.release(size);
        Some(item)
    }

    /// `first` and the output of the same kind already queued behind it, up
    /// to [`OUTPUT_BATCH`] bytes, as one chunk.
    fn gather(&mut self, first: Bytes, stderr: bool) -> Bytes {
        let mut batch: Option<BytesMut> = None;
        let mut len = first.len();
        while len < OUTPUT_BATCH {
            let next = match self.take_ready() {
                Some(Ok(ExecEvent::Stdout(d))) if !stderr => d,
                Some(Ok(ExecEvent::Stderr(d))) if stderr => d,
                Some(other) => {
                    self.held = Some(other);
                    break;
                }
                None => break,
            };
            let buf = batch.get_or_insert_with(|| {
                let mut b = BytesMut::with_capacity(OUTPUT_BATCH.min(first.len() * 8));
                b.extend_from_slice(&first);
                b
            });
            buf.extend_from_slice(&next);
            len += next.len();
        }
        batch.map_or(first, BytesMut::freeze)
    }
}

impl Stream for ExecOutput {
    type Item = Result<ExecEvent>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let item = match this.held.take() {
            Some(held) => held,
            None => match this.rx.poll_recv(cx) {
                Poll::Ready(Some((item, size))) => {
                    this.rx.release(size);
                    item
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            },
        };
        Poll::Ready(Some(match item {
            Ok(ExecEvent::Stdout(d)) => Ok(ExecEvent::Stdout(this.gather(d, false))),
            Ok(ExecEvent::Stderr(d)) => Ok(ExecEvent::Stderr(this.gather(d, true))),
            other => other,
        }))
    }
}

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
    // The host's shared connection too, so its state (List, Watch) and
    // errors read as for any other request.
    let (_shared, (lease, channel)) = tokio::try_join!(host.session(), open_channel(host))?;
    let session = lease.session().clone();
    let command_line = with_env(&spec.env, &spec.command);
    if let Err(e) = channel.exec(true, command_line.as_bytes()).await {
        tracing::warn!(host = %host_name, "exec request failed: {e}");
        return Err(session.lost());
    }
    let (tx, rx) = budget::channel(max_buffer);
    let span = tracing::info_span!("exec", host = %host_name, command = %tunnel_proto::clip::clipped(&spec.command));
    tasks.spawn(
        async move {
            let end = run(channel, spec, &host_name, &tx, &cancel).await;
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
    Ok(ExecOutput {
        rx,
        held: None,
        slot: None,
    })
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
/// the connection, which nothing else uses) is not read.
async fn run(
    channel: SshChannel,
    spec: ExecSpec,
    host: &str,
    tx: &BudgetSender<Result<ExecEvent>>,
    cancel: &CancellationToken,
) -> Result<Option<ExitStatus>> {
    let (mut rx, ch) = channel.split();
    let stdin = spec.stdin;
    let mut feed = pin!(async {
        if !stdin.is_empty() {
            let _ = ch.data_bytes(stdin).await;
        }
        let _ = ch.eof().await;
    });
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
            () = &mut feed, if !fed => { fed = true; None }
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
                Some(ChannelMsg::Failure) => return Err(Error::ExecRefused { host: host.to_string() }),
                Some(ChannelMsg::Close) | None => return Ok(status),
                Some(_) => None,
            },
        };
        let Some(event) = output else { continue };
        let size = match &event {
            ExecEvent::Stdout(d) | ExecEvent::Stderr(d) => d.len(),
            ExecEvent::Exit(_) => 0,
        };
        tokio::select! {
            r = tx.send_when_room(Ok(event), size) => if r.is_err() {
                return stop(Error::Cancelled).await;
            },
            () = &mut deadline => return stop(timed_out()).await,
            () = cancel.cancelled() => return stop(Error::ShuttingDown).await,
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

/// Prefixes `export NAME='value';` for each variable (POSIX shell quoting):
/// sshd drops `env` requests its AcceptEnv does not list, so variables are
/// set by the remote shell instead.
fn with_env(env: &[(String, String)], command: &str) -> String {
    let mut line = String::new();
    for (k, v) in env {
        line.push_str("export ");
        line.push_str(k);
        line.push_str("='");
        line.push_str(&v.replace('\'', r"'\''"));
        line.push_str("'; ");
    }
    line.push_str(command);
    line
}

/// Whether `name` is a valid environment variable name.
pub fn valid_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_is_exported_with_shell_quoting() {
        let env = vec![
            ("A".to_string(), "it's".to_string()),
            ("B".to_string(), "$x y".to_string()),
        ];
        assert_eq!(
            with_env(&env, "echo $A"),
            r"export A='it'\''s'; export B='$x y'; echo $A"
        );
        assert_eq!(with_env(&[], "true"), "true");
    }

    #[test]
    fn env_names_are_checked() {
        assert!(valid_env_name("FOO_1"));
        assert!(valid_env_name("_x"));
        assert!(!valid_env_name("1A"));
        assert!(!valid_env_name("A-B"));
        assert!(!valid_env_name("A;rm"));
        assert!(!valid_env_name(""));
    }
}
