//! Running one command on a host, as `ssh host 'command'` does: its output
//! streamed as it arrives, its stdin given whole or streamed by the caller,
//! optionally on a pseudo-terminal as `ssh -t` runs it.
//!
//! Each command runs on an SSH connection it holds alone (see
//! [`crate::ssh::ExecPool`]), so its output can wait for the caller as long
//! as the caller takes: up to the byte budget it waits in tunneld (see
//! [`crate::relay::budget`]), past it tunneld stops reading that connection and
//! sshd stops reading the command's output, as with `ssh host cmd`. Nothing
//! else shares the connection, so a slow caller slows only its command.
//!
//! Streamed stdin goes the other way under the same rule: the next input is
//! taken from the caller only once the SSH channel's window has taken the
//! previous chunk, so tunneld holds at most one chunk per command whatever
//! the input's size.

mod input;
mod output;
mod run;
mod spec;

pub use input::{ExecInput, Stdin, signal_named};
pub use output::ExecOutput;
pub use run::start;
pub use spec::{ExecEvent, ExecSpec, ExitStatus, Terminal, TerminalSize, valid_env_name};
