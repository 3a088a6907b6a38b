//! One module per verb. Each takes the parsed arguments and a [`Context`]
//! built from the global flags, talks to tunneld, prints, and returns the
//! process exit code. `attach` is not a verb but the `--attach` mode of the
//! open verbs. What they share lives here: the context, printing, and
//! the [`Signals`] that end the long-running ones (`--attach`, `watch`).

use std::fmt;
use std::io::{self, Write};
use std::time::Duration;

use anyhow::anyhow;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::time::Instant;

use crate::client::{self, Client, Remote, Transport};
use crate::output::Mode;

pub mod attach;
pub mod close;
pub mod completions;
pub mod exec;
pub mod host;
pub mod hosts;
pub mod list;
pub mod open;
pub mod reload;
pub mod status;
pub mod watch;

/// What every verb needs from the global flags.
#[derive(Debug, Clone)]
pub struct Context {
    /// tunneld's address and the credentials to present.
    pub remote: Remote,
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
        client::connect(&self.remote, deadline, self.timeout).await
    }

    /// Connects to tunneld before `deadline`, for any of its services.
    pub async fn channel(&self, deadline: Instant) -> anyhow::Result<Transport> {
        client::channel(&self.remote, deadline, self.timeout).await
    }

    /// Awaits one call until `deadline`, its failure a message under `what`
    /// (see [`client::call`]).
    pub async fn call<T>(
        &self,
        deadline: Instant,
        what: impl fmt::Display,
        fut: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> anyhow::Result<T> {
        client::call(&self.remote, deadline, self.timeout, what, fut).await
    }
}

/// Prints a rendered result and a newline on stdout, unless there is nothing
/// to print. A reader that went away (`| head -1`) is not an error: what it
/// read is all it wanted.
pub fn print(text: &str) -> anyhow::Result<()> {
    print_line(text).map(|_| ())
}

/// Like [`print`], and says whether the reader is still there: `false` once
/// stdout is a closed pipe, so a stream printer can stop.
pub fn print_line(text: &str) -> anyhow::Result<bool> {
    if text.is_empty() {
        return Ok(true);
    }
    let mut out = io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(anyhow!(e).context("cannot write to standard output")),
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

/// The signals that end a long-running verb the way Ctrl-C ends `ssh -N`.
pub struct Signals {
    /// Ctrl-C.
    interrupt: Signal,
    /// `kill`, service managers.
    terminate: Signal,
    /// The terminal went away.
    hangup: Signal,
}

impl Signals {
    /// Installs the handlers; from then on these signals no longer kill the
    /// process.
    pub fn new() -> io::Result<Self> {
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    /// Waits for the next of them and returns its number.
    pub async fn recv(&mut self) -> u8 {
        tokio::select! {
            _ = self.interrupt.recv() => 2,
            _ = self.terminate.recv() => 15,
            _ = self.hangup.recv() => 1,
        }
    }
}
