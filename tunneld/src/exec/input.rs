//! A command's standard input and the other things a caller sends it while
//! it runs: signals and terminal size changes.

use std::{fmt, pin::Pin};

use bytes::Bytes;
use russh::{ChannelWriteHalf, Sig, client::Msg};
use tokio_stream::{Stream, StreamExt};

use super::spec::TerminalSize;
use crate::error::{Error, Result};

/// One thing a caller sends a running command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecInput {
    /// A chunk of standard input.
    Data(Bytes),
    /// The end of standard input.
    Eof,
    /// A signal, by its canonical name (see [`signal_named`]).
    Signal(&'static str),
    /// The terminal's new size.
    Resize(TerminalSize),
}

/// What a caller sends, in order; an error ends the command with it.
pub type ExecInputStream = Pin<Box<dyn Stream<Item = Result<ExecInput>> + Send>>;

/// A command's standard input.
pub enum Stdin {
    /// All of it, known up front, followed by EOF.
    Bytes(Bytes),
    /// Streamed by the caller; the stream's end is EOF too.
    Stream(ExecInputStream),
}

impl Default for Stdin {
    fn default() -> Self {
        Stdin::Bytes(Bytes::new())
    }
}

impl From<Vec<u8>> for Stdin {
    fn from(v: Vec<u8>) -> Self {
        Stdin::Bytes(v.into())
    }
}

impl fmt::Debug for Stdin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the bytes: stdin may hold secrets.
        match self {
            Stdin::Bytes(b) => write!(f, "Stdin::Bytes({} bytes)", b.len()),
            Stdin::Stream(_) => f.write_str("Stdin::Stream"),
        }
    }
}

/// The signals RFC 4254 names, which OpenSSH's sshd delivers.
const SIGNALS: [&str; 13] = [
    "ABRT", "ALRM", "FPE", "HUP", "ILL", "INT", "KILL", "PIPE", "QUIT", "SEGV", "TERM", "USR1",
    "USR2",
];

/// The canonical name of the signal `name` names (without "SIG", upper
/// case; a "SIG" prefix is accepted), if the SSH protocol can send it.
pub fn signal_named(name: &str) -> Option<&'static str> {
    let upper = name.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    SIGNALS.iter().copied().find(|s| *s == bare)
}

fn sig(name: &'static str) -> Sig {
    match name {
        "ABRT" => Sig::ABRT,
        "ALRM" => Sig::ALRM,
        "FPE" => Sig::FPE,
        "HUP" => Sig::HUP,
        "ILL" => Sig::ILL,
        "INT" => Sig::INT,
        "KILL" => Sig::KILL,
        "PIPE" => Sig::PIPE,
        "QUIT" => Sig::QUIT,
        "SEGV" => Sig::SEGV,
        "TERM" => Sig::TERM,
        "USR1" => Sig::USR1,
        other => Sig::Custom(other.to_string()),
    }
}

/// Sends `stdin` to the command's channel in order, each chunk only once
/// the channel's window has taken the one before: so the caller is read only
/// as fast as the command reads, and one chunk at most waits here. Returns
/// when the input ends (having sent EOF) or when the channel is gone (the
/// command ended: later input has nowhere to go); an error when the input is
/// wrong or its caller failed.
pub(super) async fn feed(
    ch: &ChannelWriteHalf<Msg>,
    stdin: Stdin,
    terminal: bool,
    host: &str,
) -> Result<()> {
    let mut input = match stdin {
        Stdin::Bytes(data) => {
            if !data.is_empty() && ch.data_bytes(data).await.is_err() {
                return Ok(());
            }
            let _ = ch.eof().await;
            return Ok(());
        }
        Stdin::Stream(input) => input,
    };
    let mut eof = false;
    while let Some(item) = input.next().await {
        let sent = match item? {
            ExecInput::Data(data) if eof => {
                return Err(Error::InvalidArgument(format!(
                    "stdin sent after stdin_eof ({} bytes) for the command on host {host:?}; end stdin only once",
                    data.len()
                )));
            }
            ExecInput::Data(data) if data.is_empty() => Ok(()),
            ExecInput::Data(data) => ch.data_bytes(data).await,
            ExecInput::Eof if eof => Ok(()),
            ExecInput::Eof => {
                eof = true;
                ch.eof().await
            }
            ExecInput::Signal(name) => ch.signal(sig(name)).await,
            ExecInput::Resize(_) if !terminal => {
                return Err(Error::InvalidArgument(format!(
                    "resize sent for the command on host {host:?}, which runs without a terminal; request one in start.terminal"
                )));
            }
            ExecInput::Resize(size) => {
                ch.window_change(
                    size.columns,
                    size.rows,
                    size.width_pixels,
                    size.height_pixels,
                )
                .await
            }
        };
        if sent.is_err() {
            return Ok(());
        }
    }
    if !eof {
        let _ = ch.eof().await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_are_named_as_ssh_sends_them() {
        assert_eq!(signal_named("INT"), Some("INT"));
        assert_eq!(signal_named("sigterm"), Some("TERM"));
        assert_eq!(signal_named(" USR2 "), Some("USR2"));
        assert_eq!(signal_named("WINCH"), None);
        assert_eq!(signal_named("9"), None);
        assert_eq!(signal_named(""), None);
        for name in SIGNALS {
            assert_eq!(signal_named(name), Some(name));
        }
    }

    #[test]
    fn stdin_debug_never_shows_the_bytes() {
        let s = format!("{:?}", Stdin::Bytes(Bytes::from_static(b"secret")));
        assert_eq!(s, "Stdin::Bytes(6 bytes)");
    }
}
