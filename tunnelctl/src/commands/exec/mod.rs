//! `tunnelctl exec -- CMD...` and `tunnelctl ssh [HOST]`: run a command (or
//! the login shell) on an SSH host the way `ssh HOST CMD...` does — same
//! command line, stdin streamed as it comes, output streamed as it comes, a
//! terminal by ssh's rule, same exit code.

mod exit;
mod input;

use std::io::{self, IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tunnel_proto::v1::exec_stream_request::Message;
use tunnel_proto::v1::exec_stream_response::Event;
use tunnel_proto::v1::{ExecStart, ExitStatus, Terminal};

pub use exit::FAILURE_EXIT;
use exit::{SIGPIPE_EXIT, exit_code, signal_note};
use input::{forward_stdin, message};

use super::{Context, Signals, note, report};
use crate::cli::{ExecArgs, RunArgs, SshArgs};
use crate::client;
use crate::terminal::{self, RawMode, TtyRequest};

/// How long past `exec --timeout` the CLI waits for tunneld to end the call
/// itself: tunneld signals the command at the timeout and then sends the
/// output it still has and DEADLINE_EXCEEDED, which is better than cutting
/// the call short here.
const TIMEOUT_GRACE: Duration = Duration::from_secs(5);

/// Messages queued for the call: what stdin read ahead of what tunneld took.
const INPUT_QUEUE: usize = 4;

/// Joins arguments into one command line exactly as ssh does: with single
/// spaces and no quoting, so the remote shell splits and expands them again.
pub fn join_command(args: &[String]) -> String {
    args.join(" ")
}

/// `tunnelctl exec`.
pub async fn run(ctx: &Context, args: &ExecArgs) -> anyhow::Result<ExitCode> {
    run_on(ctx, args.host.as_deref(), &args.command, &args.run).await
}

/// `tunnelctl ssh`.
pub async fn ssh(ctx: &Context, args: &SshArgs) -> anyhow::Result<ExitCode> {
    run_on(ctx, args.host.as_deref(), &args.command, &args.run).await
}

/// Runs `command` (empty: the login shell) on `host` and returns its exit code.
async fn run_on(
    ctx: &Context,
    host: Option<&str>,
    command: &[String],
    args: &RunArgs,
) -> anyhow::Result<ExitCode> {
    let command = join_command(command);
    if !command.is_empty() && command.trim().is_empty() {
        bail!(
            "the command is only white space; give one after `--`, e.g. `tunnelctl exec -- uptime`, or none for a login shell"
        );
    }
    if command.is_empty() && !args.env.is_empty() {
        bail!("--env needs a command: a login shell cannot take variables from tunnelctl");
    }
    let request = match (args.tty, args.no_tty) {
        (_, true) => TtyRequest::Never,
        (0, false) => TtyRequest::Auto,
        (n, false) => TtyRequest::Force(n),
    };
    let stdin_tty = io::stdin().is_terminal();
    let decision = terminal::want_tty(request, !command.is_empty(), stdin_tty);
    if let Some(warning) = decision.warning {
        note(warning);
    }
    let terminal = decision.tty.then(|| Terminal {
        term: terminal::term_name(),
        size: terminal::current_size().map(input::size),
    });
    let host = host.unwrap_or_default().to_string();
    let what = if host.is_empty() {
        "cannot run the command".to_string()
    } else {
        format!("cannot run the command on {host}")
    };
    let start = ExecStart {
        host,
        command,
        env: args.env.iter().cloned().collect(),
        timeout: args.timeout.map(Into::into),
        terminal,
    };

    let deadline = ctx.deadline();
    let mut client = ctx.connect(deadline).await?;
    let (tx, rx) = mpsc::channel(INPUT_QUEUE);
    tx.send(message(Message::Start(start)))
        .await
        .map_err(|_| anyhow!("the call's input closed before it started"))?;
    let mut request = tonic::Request::new(ReceiverStream::new(rx));
    if let Some(timeout) = args.timeout {
        request.set_timeout(timeout + TIMEOUT_GRACE);
    }
    let streamed = async {
        // `--timeout` bounds getting the call accepted (the response
        // headers, sent before any output); the output itself is unbounded.
        let mut stream = tokio::time::timeout_at(deadline, client.exec_stream(request))
            .await
            .map_err(|_| client::timeout_error(&ctx.remote, ctx.timeout))?
            .map_err(|s| client::status_error(&ctx.remote, s))?
            .into_inner();
        // From here a signal is ours to handle (until now it ended
        // tunnelctl, as it ends ssh while connecting).
        let mut signals = Signals::new().context("cannot handle signals")?;
        // Raw mode only once the command runs, as ssh: until then Ctrl-C
        // still stops tunnelctl. Dropped (restoring the terminal) on every
        // way out of this block.
        let _raw = if decision.tty && stdin_tty {
            Some(RawMode::enable(io::stdin()).context("cannot put the terminal in raw mode")?)
        } else {
            None
        };
        if args.no_stdin {
            let _ = tx.send(message(Message::StdinEof(true))).await;
        } else {
            forward_stdin(tx.clone()).context("cannot start reading standard input")?;
        }
        let mut resizes = if decision.tty {
            Some(terminal::resizes().context("cannot follow the terminal's size")?)
        } else {
            None
        };
        let mut signalled = false;
        let mut exit = None;
        loop {
            tokio::select! {
                response = stream.message() => {
                    let Some(response) = response.map_err(|s| client::status_error(&ctx.remote, s))? else {
                        break;
                    };
                    let written = match response.event {
                        Some(Event::Stdout(chunk)) => write_flush(&mut io::stdout(), &chunk),
                        Some(Event::Stderr(chunk)) => write_flush(&mut io::stderr(), &chunk),
                        Some(Event::Exit(status)) => {
                            exit = Some(status);
                            Ok(())
                        }
                        None => Ok(()),
                    };
                    match written {
                        Ok(()) => {}
                        // Our reader went away (`| head`): stop as ssh would,
                        // killed by SIGPIPE. Dropping the call cancels the
                        // remote command.
                        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(Outcome::ReaderGone),
                        Err(e) => return Err(anyhow!(e).context("cannot write the command's output")),
                    }
                }
                Some(size) = next_size(&mut resizes) => {
                    let _ = tx.send(message(Message::Resize(input::size(size)))).await;
                }
                n = signals.recv() => {
                    // On a terminal, Ctrl-C is a key the remote side reads;
                    // a signal from elsewhere ends tunnelctl, as it ends ssh.
                    // Without one the first signal goes to the command, whose
                    // exit status then tells; a second one stops waiting.
                    if decision.tty || signalled {
                        return Ok(Outcome::Signalled(n));
                    }
                    signalled = true;
                    if let Some(name) = signal_name(n) {
                        let _ = tx.send(message(Message::Signal(name.into()))).await;
                    }
                }
            }
        }
        Ok::<_, anyhow::Error>(exit.map_or(Outcome::NoStatus, Outcome::Exited))
    };
    let outcome = match args.timeout {
        Some(timeout) => tokio::time::timeout(timeout + TIMEOUT_GRACE, streamed)
            .await
            .unwrap_or_else(|_| Err(client::timeout_error(&ctx.remote, timeout + TIMEOUT_GRACE))),
        None => streamed.await,
    }
    .context(what.clone())?;

    match outcome {
        Outcome::Exited(status) => {
            if let Some(note) = signal_note(&status) {
                report(&note);
            }
            Ok(ExitCode::from(exit_code(&status)))
        }
        Outcome::ReaderGone => Ok(ExitCode::from(SIGPIPE_EXIT)),
        Outcome::Signalled(n) => Ok(ExitCode::from(128 + n)),
        Outcome::NoStatus => bail!("{what}: tunneld ended the call without an exit status"),
    }
}

/// The next terminal size, when sizes are followed; never otherwise.
async fn next_size(resizes: &mut Option<terminal::Resizes>) -> Option<terminal::TerminalSize> {
    match resizes {
        Some(r) => r.next().await,
        None => std::future::pending().await,
    }
}

/// The SSH name of a signal [`Signals`] reports.
fn signal_name(n: u8) -> Option<&'static str> {
    match n {
        1 => Some("HUP"),
        2 => Some("INT"),
        15 => Some("TERM"),
        _ => None,
    }
}

/// How a streamed exec ended, short of an error.
enum Outcome {
    /// The command ended and tunneld said how.
    Exited(ExitStatus),
    /// Our stdout or stderr reader went away.
    ReaderGone,
    /// tunnelctl itself was signalled (number) and stopped waiting.
    Signalled(u8),
    /// The stream ended without an exit status (a tunneld bug).
    NoStatus,
}

fn write_flush(out: &mut impl Write, chunk: &[u8]) -> io::Result<()> {
    out.write_all(chunk)?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn joins_like_ssh() {
        assert_eq!(join_command(&strings(&["uptime"])), "uptime");
        assert_eq!(
            join_command(&strings(&["ls", "-la", "/tmp"])),
            "ls -la /tmp"
        );
        // No quoting: the remote shell sees the words again, as with ssh.
        assert_eq!(
            join_command(&strings(&["echo", "a b", "$HOME", "'x'"])),
            "echo a b $HOME 'x'"
        );
        // Empty arguments still add their separating space, as in ssh.
        assert_eq!(join_command(&strings(&["echo", "", "x"])), "echo  x");
        assert_eq!(
            join_command(&strings(&["ls /var/log | wc -l"])),
            "ls /var/log | wc -l"
        );
    }
}
