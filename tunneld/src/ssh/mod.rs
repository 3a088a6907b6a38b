//! SSH client side: one [`SshHost`] per configured server, holding at most one
//! live [`SshSession`] (russh connection) that every tunnel on that host
//! shares, as OpenSSH's ControlMaster does, and an [`ExecPool`] of
//! connections that each run one Exec command at a time.
//!
//! Architecture invariant: nothing here knows about gRPC or tunnels; it opens
//! channels and routes the server's forwarded channels to whoever registered
//! for them.

mod agent;
mod auth;
pub mod backoff;
pub mod ciphers;
mod dial;
mod exec_pool;
mod forward_routes;
mod handler;
mod host;
mod host_counters;
mod identity;
mod io_thread;
mod jump;
pub mod known_hosts;
mod session;
mod session_use;
mod settings;

pub use exec_pool::{ExecLease, ExecPool};
pub use forward_routes::{ForwardRoutes, ForwardedChannel, RemoteListener};
pub use host::{ConnectionState, HostHold, HostSnapshot, Link, SshHost};
pub use host_counters::{ExecOutcome, HostCounters, HostCountersSnapshot};
pub use io_thread::{HostThread, IoThread};
pub use session::SshSession;
pub use session_use::{SessionUse, UseGuard};
pub use settings::{AgentSource, HostConfig, HostKeyPolicy, HostSettings, PassphraseSource};

/// A russh client channel.
pub type SshChannel = russh::Channel<russh::client::Msg>;
