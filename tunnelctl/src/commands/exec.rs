//! `tunnelctl exec -- CMD...`: run a command on an SSH host the way
//! `ssh HOST CMD...` does — same command line, output streamed as it comes,
//! same exit code.

use std::io::{self, IsTerminal, Read, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use tunnel_proto::v1::exec_response::Event;
use tunnel_proto::v1::exit_status::Status;
use tunnel_proto::v1::{ExecRequest, ExitStatus};

use super::{Context, report};
use crate::cli::ExecArgs;
use crate::client;

/// Exit code for "the command could not be run", as ssh uses it.
pub const FAILURE_EXIT: u8 = 255;

/// Exit code when our reader went away, as if killed by SIGPIPE like ssh.
const SIGPIPE_EXIT: u8 = 128 + 13;

/// How long past `exec --timeout` the CLI waits for tunneld to end the call
/// itself: tunneld signals the command at the timeout and then sends the
/// output it still has and DEADLINE_EXCEEDED, which is better than cutting
/// the call short here.
const TIMEOUT_GRACE: Duration = Duration::from_secs(5);

/// Joins arguments into one command line exactly as ssh does: with single
/// spaces and no quoting, so the remote shell splits and expands them again.
pub fn join_command(args: &[String]) -> String {
    args.join(" ")
}

/// The Linux number of a signal named as SSH reports it ("TERM", also
/// accepted with a "SIG" prefix or as a number).
pub fn signal_number(name: &str) -> Option<u8> {
    let name = name.trim();
    let name = name.strip_prefix("SIG").unwrap_or(name);
    if let Ok(n) = name.parse::<u8>() {
        return (1..=64).contains(&n).then_some(n);
    }
    Some(match name {
        "HUP" => 1,
        "INT" => 2,
        "QUIT" => 3,
        "ILL" => 4,
        "TRAP" => 5,
        "ABRT" | "IOT" => 6,
        "BUS" => 7,
        "FPE" => 8,
        "KILL" => 9,
        "USR1" => 10,
        "SEGV" => 11,
        "USR2" => 12,
        "PIPE" => 13,
        "ALRM" => 14,
        "TERM" => 15,
        "STKFLT" => 16,
        "CHLD" | "CLD" => 17,
        "CONT" => 18,
        "STOP" => 19,
        "TSTP" => 20,
        "TTIN" => 21,
        "TTOU" => 22,
        "URG" => 23,
        "XCPU" => 24,
        "XFSZ" => 25,
        "VTALRM" => 26,
        "PROF" => 27,
        "WINCH" => 28,
        "IO" | "POLL" => 29,
        "PWR" => 30,
        "SYS" => 31,
        _ => return None,
    })
}

/// The local exit code for how the remote command ended: its own code, 128+N
/// for signal N (as a shell reports it), 255 when that cannot be told.
pub fn exit_code(status: &ExitStatus) -> u8 {
    match &status.status {
        Some(Status::Code(code)) => u8::try_from(*code).unwrap_or(FAILURE_EXIT),
        Some(Status::Signal(name)) => signal_number(name).map_or(FAILURE_EXIT, |n| 128 + n),
        None => FAILURE_EXIT,
    }
}

/// The line printed on stderr when the command was killed by a signal.
fn signal_note(status: &ExitStatus) -> Option<String> {
    let Some(Status::Signal(name)) = &status.status else {
        return None;
    };
    let mut note = format!("the remote command was killed by signal {name}");
    if status.core_dumped {
        note.push_str(" (core dumped)");
    }
    let message = status.error_message.trim();
    if !message.is_empty() {
        note.push_str(": ");
        note.push_str(message);
    }
    Some(note)
}

/// Runs the command and returns its exit code.
pub async fn run(ctx: &Context, args: &ExecArgs) -> anyhow::Result<ExitCode> {
    let command = join_command(&args.command);
    if command.trim().is_empty() {
        bail!("the command is empty; give one after `--`, e.g. `tunnelctl exec -- uptime`");
    }
    let stdin = if args.no_stdin || io::stdin().is_terminal() {
        Vec::new()
    } else {
        let mut buf = Vec::new();
        io::stdin()
            .read_to_end(&mut buf)
            .context("cannot read standard input (use -n to not forward it)")?;
        buf
    };
    let host = args.host.clone().unwrap_or_default();
    let request = ExecRequest {
        host: host.clone(),
        command,
        stdin,
        env: args.env.iter().cloned().collect(),
        timeout: args.timeout.map(Into::into),
    };

    let deadline = ctx.deadline();
    let mut client = ctx.connect(deadline).await?;
    let what = if host.is_empty() {
        "cannot run the command".to_string()
    } else {
        format!("cannot run the command on {host}")
    };

    let mut request = tonic::Request::new(request);
    if let Some(timeout) = args.timeout {
        request.set_timeout(timeout + TIMEOUT_GRACE);
    }
    let streamed = async {
        // `--timeout` bounds getting the call accepted (the response
        // headers, sent before any output); the output itself is unbounded.
        let mut stream = tokio::time::timeout_at(deadline, client.exec(request))
            .await
            .map_err(|_| client::timeout_error(&ctx.remote, ctx.timeout))?
            .map_err(|s| client::status_error(&ctx.remote, s))?
            .into_inner();
        let mut exit = None;
        // Read to the end of the stream, not just to the exit status: the
        // call's own status comes after it.
        while let Some(response) = stream
            .message()
            .await
            .map_err(|s| client::status_error(&ctx.remote, s))?
        {
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
                // Our reader went away (`| head`): stop as ssh would, killed
                // by SIGPIPE. Dropping the stream cancels the remote command.
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(Outcome::ReaderGone),
                Err(e) => return Err(anyhow!(e).context("cannot write the command's output")),
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
        Outcome::NoStatus => bail!("{what}: tunneld ended the call without an exit status"),
    }
}

/// How a streamed exec ended, short of an error.
enum Outcome {
    /// The command ended and tunneld said how.
    Exited(ExitStatus),
    /// Our stdout or stderr reader went away.
    ReaderGone,
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

    fn code(code: i32) -> ExitStatus {
        ExitStatus {
            status: Some(Status::Code(code)),
            ..Default::default()
        }
    }

    fn signal(name: &str) -> ExitStatus {
        ExitStatus {
            status: Some(Status::Signal(name.into())),
            ..Default::default()
        }
    }

    #[test]
    fn exit_codes_pass_through() {
        assert_eq!(exit_code(&code(0)), 0);
        assert_eq!(exit_code(&code(1)), 1);
        assert_eq!(exit_code(&code(255)), 255);
        assert_eq!(exit_code(&code(256)), 255);
        assert_eq!(exit_code(&code(-1)), 255);
        assert_eq!(exit_code(&ExitStatus::default()), 255);
    }

    #[test]
    fn signals_are_128_plus_linux_number() {
        assert_eq!(exit_code(&signal("HUP")), 129);
        assert_eq!(exit_code(&signal("INT")), 130);
        assert_eq!(exit_code(&signal("KILL")), 137);
        assert_eq!(exit_code(&signal("SEGV")), 139);
        assert_eq!(exit_code(&signal("PIPE")), 141);
        assert_eq!(exit_code(&signal("TERM")), 143);
        assert_eq!(exit_code(&signal("USR1")), 138);
        assert_eq!(exit_code(&signal("SIGTERM")), 143);
        assert_eq!(exit_code(&signal("NOSUCH@openssh.com")), 255);
    }

    #[test]
    fn signal_note_mentions_core_and_message() {
        let mut status = signal("SEGV");
        status.core_dumped = true;
        status.error_message = "boom".into();
        assert_eq!(
            signal_note(&status).as_deref(),
            Some("the remote command was killed by signal SEGV (core dumped): boom")
        );
        assert_eq!(signal_note(&code(1)), None);
    }
}
