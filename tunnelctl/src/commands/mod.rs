//! One module per verb. Each takes the parsed arguments and a [`Context`]
//! built from the global flags, talks to tunneld, prints, and returns the
//! process exit code. `attach` is not a verb but the `--attach` mode of the
//! two open verbs.

use std::io::{self, Write};
use std::time::Duration;

use anyhow::anyhow;
use tokio::time::Instant;
use tonic::transport::Channel;

use crate::client::{self, Addr, Client};
use crate::output::Mode;

pub mod attach;
pub mod close;
pub mod completions;
pub mod exec;
pub mod hosts;
pub mod list;
pub mod open;
pub mod status;

/// What every verb needs from the global flags.
#[derive(Debug, Clone)]
pub struct Context {
    /// tunneld's address.
    pub addr: Addr,
    /// How to print results.
    pub mode: Mode,
    /// Bound on each call (connect included), from `--timeout`.
    pub timeout: Duration,
}

impl Context {
    /// A deadline `--timeout` from now, for one connect-and-call.
    pub fn deadline(&self) -> Instant {
        Instant::now() + self.timeout
    }

    /// Connects to tunneld's `TunnelService` before `deadline`.
    pub async fn connect(&self, deadline: Instant) -> anyhow::Result<Client> {
        client::connect(&self.addr, deadline, self.timeout).await
    }

    /// Connects to tunneld before `deadline`, for any of its services.
    pub async fn channel(&self, deadline: Instant) -> anyhow::Result<Channel> {
        client::channel(&self.addr, deadline, self.timeout).await
    }
}

/// Prints a rendered result and a newline on stdout, unless there is nothing
/// to print. A reader that went away (`| head -1`) is not an error: what it
/// read is all it wanted.
pub fn print(text: &str) -> anyhow::Result<()> {
    if text.is_empty() {
        return Ok(());
    }
    let mut out = io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {
            Err(anyhow!(e).context("cannot write to standard output"))
        }
        _ => Ok(()),
    }
}

/// Prints one `tunnelctl: ` line on stderr: an error, or a note a script
/// should not read from stdout.
pub fn report(line: &str) {
    note(&format!("tunnelctl: {line}"));
}

/// Prints a line on stderr as is. If stderr is gone there is no one left to
/// tell, so a failure is ignored rather than a panic as with `eprintln!`.
pub fn note(line: &str) {
    let _ = writeln!(io::stderr().lock(), "{line}");
}
