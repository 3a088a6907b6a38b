//! One module per verb. Each takes the parsed arguments and a [`Context`]
//! built from the global flags, talks to tunneld, prints, and returns the
//! process exit code.

use std::time::Duration;

use tokio::time::Instant;

use crate::client::{self, Addr, Client};
use crate::output::Mode;

pub mod close;
pub mod exec;
pub mod list;
pub mod open;

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

    /// Connects to tunneld before `deadline`.
    pub async fn connect(&self, deadline: Instant) -> anyhow::Result<Client> {
        client::connect(&self.addr, deadline, self.timeout).await
    }
}

/// Prints a rendered result on stdout, unless there is nothing to print.
pub fn print(text: &str) {
    if !text.is_empty() {
        println!("{text}");
    }
}
