//! `ExecStream`'s messages: the start, the input that follows it, and the
//! events sent back.

use std::time::Duration;

use tokio_stream::{Stream, StreamExt};
use tonic::{Status, Streaming};
use tunnel_proto::{clip::clipped, v1 as pb};

use super::convert::{exec_env, exit_status, invalid, optional_duration};
use crate::{
    error::{Error, Result},
    exec::{ExecEvent, ExecInput, ExecSpec, Stdin, Terminal, TerminalSize, signal_named},
};

/// How long a call may take to send its `start` message.
pub(super) const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The TERM of a terminal whose request names none.
const DEFAULT_TERM: &str = "dumb";

/// Longest TERM accepted.
const MAX_TERM_CHARS: usize = 64;

/// Size of a terminal whose request gives none: OpenSSH's default.
const DEFAULT_COLUMNS: u32 = 80;
const DEFAULT_ROWS: u32 = 24;

/// Reads the call's first message, which must be `start`.
pub(super) async fn first(
    input: &mut Streaming<pb::ExecStreamRequest>,
) -> Result<pb::ExecStart, Status> {
    use pb::exec_stream_request::Message;
    match tokio::time::timeout(START_TIMEOUT, input.message()).await {
        Ok(Ok(Some(pb::ExecStreamRequest {
            message: Some(Message::Start(start)),
        }))) => Ok(start),
        Ok(Ok(Some(_))) => Err(Status::invalid_argument(
            "the first message of ExecStream must be `start` (host, command, terminal); stdin, signals and resizes follow it",
        )),
        Ok(Ok(None)) => Err(Status::invalid_argument(
            "the call ended before its `start` message; send start first",
        )),
        Ok(Err(status)) => Err(status),
        Err(_) => Err(Status::deadline_exceeded(format!(
            "no `start` message within {} s of the call; send start first",
            START_TIMEOUT.as_secs()
        ))),
    }
}

/// Validates `start` and joins the call's remaining messages to it as the
/// command's input.
pub(super) fn spec(
    start: pb::ExecStart,
    rest: impl Stream<Item = Result<pb::ExecStreamRequest, Status>> + Send + 'static,
) -> Result<(String, ExecSpec)> {
    let terminal = start.terminal.map(terminal).transpose()?;
    let env = exec_env(start.env)?;
    if start.command.trim().is_empty() && !start.command.is_empty() {
        return Err(invalid(
            "command is only white space; give a command line, or leave it empty for a login shell"
                .into(),
        ));
    }
    if start.command.is_empty() && !env.is_empty() {
        return Err(invalid(
            "env needs a command: a login shell cannot take variables from the request; give a command, or set them in the shell".into(),
        ));
    }
    let input = rest.map(|m| match m {
        Ok(m) => input(m),
        Err(status) if status.code() == tonic::Code::Cancelled => Err(Error::Cancelled),
        Err(status) => Err(invalid(format!(
            "reading the call's input failed: {} ({:?})",
            status.message(),
            status.code()
        ))),
    });
    Ok((
        start.host,
        ExecSpec {
            command: start.command,
            stdin: Stdin::Stream(Box::pin(input)),
            env,
            timeout: optional_duration("timeout", start.timeout)?,
            terminal,
        },
    ))
}

/// One message after `start`.
fn input(m: pb::ExecStreamRequest) -> Result<ExecInput> {
    use pb::exec_stream_request::Message;
    match m.message {
        Some(Message::Stdin(data)) => Ok(ExecInput::Data(data.into())),
        Some(Message::StdinEof(true)) => Ok(ExecInput::Eof),
        Some(Message::StdinEof(false)) => Err(invalid(
            "stdin_eof is false; send it as true to end stdin, or not at all".into(),
        )),
        Some(Message::Signal(name)) => signal_named(&name).map(ExecInput::Signal).ok_or_else(|| {
            invalid(format!(
                "signal {} is not one SSH can send; use ABRT, ALRM, FPE, HUP, ILL, INT, KILL, PIPE, QUIT, SEGV, TERM, USR1 or USR2",
                clipped(&name)
            ))
        }),
        Some(Message::Resize(size)) => Ok(ExecInput::Resize(terminal_size(size)?)),
        Some(Message::Start(_)) => Err(invalid(
            "a second `start` message; one ExecStream call runs one command".into(),
        )),
        None => Err(invalid(
            "an ExecStream message carries nothing; set one of stdin, stdin_eof, signal, resize".into(),
        )),
    }
}

fn terminal(t: pb::Terminal) -> Result<Terminal> {
    let term = if t.term.is_empty() {
        DEFAULT_TERM.to_string()
    } else if t.term.chars().count() <= MAX_TERM_CHARS
        && t.term
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-'))
    {
        t.term
    } else {
        return Err(invalid(format!(
            "terminal.term {} is not a terminal type; use at most {MAX_TERM_CHARS} characters of letters, digits and . _ + -, e.g. xterm-256color",
            clipped(&t.term)
        )));
    };
    let size = match t.size {
        Some(size) => terminal_size(size)?,
        None => TerminalSize {
            columns: DEFAULT_COLUMNS,
            rows: DEFAULT_ROWS,
            width_pixels: 0,
            height_pixels: 0,
        },
    };
    Ok(Terminal { term, size })
}

fn terminal_size(s: pb::TerminalSize) -> Result<TerminalSize> {
    let within = |field: &str, v: u32, zero_means: Option<u32>| match (v, zero_means) {
        (0, Some(default)) => Ok(default),
        (1..=65535, _) => Ok(v),
        (0, None) => Ok(0),
        _ => Err(invalid(format!(
            "terminal size {field} must be at most 65535, got {v}"
        ))),
    };
    Ok(TerminalSize {
        columns: within("columns", s.columns, Some(DEFAULT_COLUMNS))?,
        rows: within("rows", s.rows, Some(DEFAULT_ROWS))?,
        width_pixels: within("width_pixels", s.width_pixels, None)?,
        height_pixels: within("height_pixels", s.height_pixels, None)?,
    })
}

/// The command's events as the call streams them.
pub(super) fn responses(
    events: impl Stream<Item = Result<ExecEvent>>,
) -> impl Stream<Item = Result<pb::ExecStreamResponse, Status>> {
    use pb::exec_stream_response::Event;
    events.map(|e| {
        let event = match e? {
            ExecEvent::Stdout(b) => Event::Stdout(b.to_vec()),
            ExecEvent::Stderr(b) => Event::Stderr(b.to_vec()),
            ExecEvent::Exit(status) => Event::Exit(exit_status(status)),
        };
        Ok(pb::ExecStreamResponse { event: Some(event) })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pb::exec_stream_request::Message;

    fn msg(m: Message) -> pb::ExecStreamRequest {
        pb::ExecStreamRequest { message: Some(m) }
    }

    #[test]
    fn inputs_are_checked() {
        assert_eq!(
            input(msg(Message::Stdin(b"x".to_vec()))).unwrap(),
            ExecInput::Data("x".into())
        );
        assert_eq!(input(msg(Message::StdinEof(true))).unwrap(), ExecInput::Eof);
        assert!(input(msg(Message::StdinEof(false))).is_err());
        assert_eq!(
            input(msg(Message::Signal("SIGINT".into()))).unwrap(),
            ExecInput::Signal("INT")
        );
        let e = input(msg(Message::Signal("WINCH".into()))).unwrap_err();
        assert!(e.to_string().contains("WINCH"), "{e}");
        assert!(input(msg(Message::Start(Default::default()))).is_err());
        assert!(input(pb::ExecStreamRequest { message: None }).is_err());
        let e = input(msg(Message::Resize(pb::TerminalSize {
            columns: 70_000,
            rows: 10,
            ..Default::default()
        })))
        .unwrap_err();
        assert!(e.to_string().contains("columns"), "{e}");
    }

    #[test]
    fn terminals_get_ssh_defaults_and_checked_names() {
        let t = terminal(pb::Terminal::default()).unwrap();
        assert_eq!(t.term, "dumb");
        assert_eq!((t.size.columns, t.size.rows), (80, 24));
        let t = terminal(pb::Terminal {
            term: "xterm-256color".into(),
            size: Some(pb::TerminalSize {
                columns: 132,
                rows: 0,
                ..Default::default()
            }),
        })
        .unwrap();
        assert_eq!(
            (t.term.as_str(), t.size.columns, t.size.rows),
            ("xterm-256color", 132, 24)
        );
        for bad in ["xterm\nrm", "x y", &"x".repeat(65)] {
            assert!(
                terminal(pb::Terminal {
                    term: bad.to_string(),
                    size: None
                })
                .is_err(),
                "{bad:?}"
            );
        }
    }
}
