//! Fixtures for testing tunneld end to end against real processes.
//!
//! Everything here starts real things — an OpenSSH `sshd`, the `tunneld`
//! binary, TCP and HTTP servers — on ephemeral ports of 127.0.0.1, and stops
//! them when the handle is dropped, so tests can run in parallel without
//! knowing about each other. The same fixtures back the `testbed` binary used
//! by the demo script and by the Python and Go test suites.
//!
//! Module map:
//! - [`sshd`]: an `sshd` with its own keys, config and known_hosts in a temp
//!   dir; it can be stopped with its sessions and restarted on the same port.
//! - [`blackhole`]: a TCP relay to sshd that can stop passing bytes without
//!   closing anything, like a network path that fails silently.
//! - [`keys`]: `ssh-keygen` wrappers and known_hosts lines.
//! - [`agent`]: a real `ssh-agent` holding the keys a test adds.
//! - [`procs`]: finding and killing child processes through `/proc`.
//! - [`binaries`]: locating (and building, once) `tunneld` and `tunnelctl`.
//! - [`daemon`]: the `tunneld` fixture and a connected gRPC client.
//! - [`auth`]: credentials a client calls with (bearer token, TLS, client
//!   certificate) and the interceptor that sends the token.
//! - [`pki`]: a test CA (rcgen) issuing server and client certificates.
//! - [`ctl`]: the real `tunnelctl` binary, run to completion or spawned.
//! - [`exec`]: running an `Exec` call to completion and inspecting the result.
//! - [`peers`]: echo, digest, flood and HTTP servers, and port helpers.
//! - [`data`]: random payloads and their digests.
//! - [`pty`]: a pseudo-terminal to run a program under, as a user's
//!   terminal: type, read the screen, resize, check the modes are restored.
//! - [`fds`]: counting a process's open file descriptors; raising the limit.
//! - [`wait`]: bounded polling instead of sleeping.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod agent;
pub mod auth;
pub mod binaries;
pub mod blackhole;
pub mod ctl;
pub mod daemon;
pub mod data;
pub mod exec;
pub mod fds;
pub mod keys;
pub mod peers;
pub mod pki;
pub mod postgres;
pub mod procs;
pub mod pty;
pub mod sshd;
pub mod unix_peer;
pub mod wait;

pub use agent::SshAgent;
pub use auth::{ClientTls, Credentials};
pub use ctl::{Ctl, CtlChild, CtlOutput};
pub use daemon::{ApiAddr, HostSpec, Refused, Tunneld, TunneldBuilder};
pub use pki::{CertFiles, Pki};
pub use sshd::{Sshd, SshdBuilder};

/// The gRPC client type the fixtures hand out: a channel (plaintext or TLS)
/// whose calls carry the credentials' `authorization` header, if any.
pub type Client = tunnel_proto::v1::tunnel_service_client::TunnelServiceClient<
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, auth::Auth>,
>;
