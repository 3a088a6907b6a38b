//! tunneld: an SSH tunnel daemon with a gRPC control API.
//!
//! Module map (see ARCHITECTURE.md for the full picture):
//! - [`config`]: hosts and limits, from flags and a TOML file.
//! - [`ssh`]: one shared, lazily (re)opened SSH connection per host; host key
//!   checks against known_hosts; routing of remote-forwarded channels.
//! - [`tunnel`]: local and remote forwards, their counters and registry.
//! - [`relay`], [`budget`] and [`spill`]: the byte path of one connection,
//!   drained promptly into a bounded buffer, and past it into a spill file,
//!   so one slow reader never stalls the shared SSH connection nor loses a
//!   byte.
//! - [`exec`]: one remote command with streamed output.
//! - [`daemon`]: the domain facade the API calls.
//! - [`grpc`] and [`server`]: the thin gRPC adapter and the server around it.
//! - [`listen`]: the API's TCP or unix socket listener, and when a
//!   non-loopback address is allowed.
//! - [`tcp_listener`]: TCP listeners with a backlog that holds a burst;
//!   [`accept_backoff`]: what every accept loop does when accepting fails
//!   (waits, never spins).
//! - [`logging`]: the text log's escaped fields and rate-limited warnings.
//! - [`tokens`], [`secret_file`]: API tokens, and files only their owner
//!   may read. The auth layer and audit log live in [`grpc`].
//! - [`policy`]: which forwards may be opened (allow_local_bind,
//!   permit_open, permit_listen).
//! - [`error`]: the one error type.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod accept_backoff;
pub mod backoff;
pub mod budget;
pub mod config;
pub mod daemon;
pub mod error;
pub mod exec;
pub mod grpc;
pub mod listen;
pub mod logging;
pub mod policy;
pub mod relay;
pub mod secret_file;
pub mod server;
pub mod spill;
pub mod ssh;
pub mod tcp_listener;
pub mod tokens;
pub mod tunnel;
pub mod watch;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

pub use config::Config;
pub use daemon::Daemon;
pub use error::{Error, Result};
pub use listen::{ApiListener, Exposure, ListenAddr};
pub use server::ApiAccess;

/// Runs tunneld on `listener`, open to callers as `access` allows, with
/// `config` until `shutdown` is cancelled; returns once every tunnel and SSH
/// connection is closed.
pub async fn run(
    listener: ApiListener,
    access: ApiAccess,
    config: Config,
    shutdown: CancellationToken,
) -> Result<()> {
    let daemon = Arc::new(Daemon::new(config, shutdown.clone()));
    server::serve(listener, access, daemon, shutdown).await
}
