//! The daemon's one error type. Every failure a request can meet is a variant
//! here, with a message that names the host, address or port concerned and,
//! where there is one, the fix. The gRPC layer maps each variant to a status
//! code in exactly one place (`grpc::status`).

use std::{io, path::PathBuf, time::Duration};

use tunnel_proto::clip::clipped;

/// Result alias for the daemon.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a host key was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKeyProblem {
    /// No known_hosts line names this host with this key type.
    Unknown,
    /// known_hosts holds a different key of the same type for this host.
    Changed {
        /// 1-based line numbers of the lines holding the other key(s).
        lines: Vec<usize>,
    },
    /// known_hosts marks this key `@revoked`.
    Revoked {
        /// 1-based line number of the `@revoked` line.
        line: usize,
    },
}

/// A host key that was not accepted, with what a person needs to decide.
#[derive(Debug)]
pub struct HostKeyRejection {
    /// Host name.
    pub host: String,
    /// The known_hosts name looked up (`host` or `[host]:port`).
    pub addr: String,
    /// `-p PORT HOST` arguments of ssh-keyscan for this server.
    pub keyscan: String,
    /// What is wrong with the key.
    pub problem: HostKeyProblem,
    /// SHA256 fingerprint of the key the server presented.
    pub fingerprint: String,
    /// The known_hosts file consulted.
    pub known_hosts: PathBuf,
}

impl std::fmt::Display for HostKeyRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&host_key_message(
            &self.host,
            &self.addr,
            &self.keyscan,
            &self.problem,
            &self.fingerprint,
            &self.known_hosts,
        ))
    }
}

/// Everything that can go wrong in tunneld.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request itself is wrong; the message says which field and why.
    #[error("{0}")]
    InvalidArgument(String),

    /// The forward policy (allow_local_bind, permit_open, permit_listen)
    /// does not allow the request; the message names the rule and the fix.
    #[error("{0}")]
    NotPermitted(String),

    /// No open tunnel has this id.
    #[error(
        "no tunnel with id {} (it may be closed already; `tunnelctl list` shows open tunnels)",
        clipped(.0)
    )]
    TunnelNotFound(String),

    /// The request names an SSH host tunneld was not configured with.
    #[error("unknown SSH host {}; configured hosts: {known}", clipped(.name))]
    HostNotFound {
        /// The name asked for.
        name: String,
        /// The configured names, comma-separated.
        known: String,
    },

    /// No default host is configured and the request named none.
    #[error(
        "the request names no SSH host and tunneld has no default host; pass `host` (configured hosts: {known})"
    )]
    NoDefaultHost {
        /// The configured names, comma-separated.
        known: String,
    },

    /// The TCP connection to the SSH server failed or timed out.
    #[error("cannot reach SSH server {addr} (host {host:?}): {reason}")]
    SshUnreachable {
        /// Host name.
        host: String,
        /// host:port dialled.
        addr: String,
        /// What the network said.
        reason: String,
    },

    /// The SSH server's host key is not trusted.
    #[error("{0}")]
    HostKeyRejected(Box<HostKeyRejection>),

    /// The SSH server accepted none of the keys offered.
    #[error(
        "SSH server {addr} (host {host:?}) refused public-key authentication as {user:?}; offered: {offered}{skipped}; add one of these keys to that user's authorized_keys on the server (or load the right key into the ssh-agent)"
    )]
    AuthRefused {
        /// Host name.
        host: String,
        /// host:port.
        addr: String,
        /// Remote user.
        user: String,
        /// The keys and certificates offered, with their fingerprints.
        offered: String,
        /// What was not offered and why (empty, or ` (not offered: …)`).
        skipped: String,
    },

    /// No key could be offered to the server: every identity file is
    /// missing or unusable and no agent holds a key.
    #[error("no key to offer to SSH host {host:?}: {tried}")]
    NoCredentials {
        /// Host name.
        host: String,
        /// What was looked at and why each gave nothing.
        tried: String,
    },

    /// known_hosts could not be read or written.
    #[error("cannot use known_hosts file {path} for host {host:?}: {reason}")]
    KnownHostsFile {
        /// Host name.
        host: String,
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },

    /// The SSH connection failed at the protocol level or was lost.
    #[error("SSH connection to {addr} (host {host:?}) failed: {reason}")]
    SshConnection {
        /// Host name.
        host: String,
        /// host:port.
        addr: String,
        /// What happened.
        reason: String,
    },

    /// The SSH server refused to open a channel.
    #[error("SSH server of host {host:?} refused to open a channel to {what}: {reason}")]
    ChannelRefused {
        /// Host name.
        host: String,
        /// What the channel was for (`session`, `db:5432`).
        what: String,
        /// The server's reason.
        reason: String,
        /// Whether the server said it is not permitted (vs. connect failure).
        prohibited: bool,
    },

    /// A jump host refused, or failed, to open the `direct-tcpip` channel
    /// to the next hop of a route.
    #[error(
        "jump host {jump:?} refused to forward to {addr} (on the way to host {host:?}): {reason}"
    )]
    JumpRefused {
        /// The jump host that refused.
        jump: String,
        /// The host the route leads to.
        host: String,
        /// The next hop's host:port.
        addr: String,
        /// The jump host's reason.
        reason: String,
        /// Whether the jump host said it is not permitted (vs. connect
        /// failure).
        prohibited: bool,
    },

    /// The local address for a local forward is already bound.
    #[error(
        "local address {addr} is already in use; pick another port, or 0 to let tunneld choose"
    )]
    LocalAddressInUse {
        /// ip:port.
        addr: String,
    },

    /// Binding the local listener failed for another reason.
    #[error("cannot listen on {addr}: {reason}")]
    LocalBind {
        /// ip:port.
        addr: String,
        /// What the OS said.
        reason: String,
        /// The OS refused for lack of privilege (ports below 1024).
        permission: bool,
    },

    /// The SSH server refused a `tcpip-forward` request.
    #[error(
        "SSH server of host {host:?} refused to listen on {addr}; the port may be in use there, or its sshd_config forbids it (AllowTcpForwarding, PermitListen, GatewayPorts)"
    )]
    RemoteForwardRefused {
        /// Host name.
        host: String,
        /// bind address:port asked for.
        addr: String,
    },

    /// The server refused the command request.
    #[error("SSH server of host {host:?} refused to run the command")]
    ExecRefused {
        /// Host name.
        host: String,
    },

    /// An exec ran longer than its timeout.
    #[error("command on host {host:?} did not finish within {}; it was signalled TERM and its channel closed", humantime::format_duration(*.timeout))]
    ExecTimeout {
        /// Host name.
        host: String,
        /// The limit.
        timeout: Duration,
    },

    /// A cap on what clients may hold at once is reached.
    #[error("tunneld already has {limit} {what}, its cap; {hint}, or raise {flag}")]
    LimitReached {
        /// What is counted ("tunnels open").
        what: &'static str,
        /// The cap.
        limit: usize,
        /// The flag that raises it.
        flag: &'static str,
        /// What the caller can do instead.
        hint: &'static str,
    },

    /// The daemon is stopping.
    #[error("tunneld is shutting down")]
    ShuttingDown,

    /// The caller went away (cancelled the call) before it finished.
    #[error("the caller cancelled the request")]
    Cancelled,

    /// Bad configuration at start-up.
    #[error("{0}")]
    Config(String),

    /// An I/O error outside a request (e.g. serving the API).
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: io::Error,
    },
}

fn host_key_message(
    host: &str,
    addr: &str,
    keyscan: &str,
    problem: &HostKeyProblem,
    fingerprint: &str,
    known_hosts: &std::path::Path,
) -> String {
    let kh = known_hosts.display();
    match problem {
        HostKeyProblem::Unknown => format!(
            "host key of {addr} (host {host:?}) is not in {kh}: the server offered {fingerprint}; \
             if that is the right key, add it (ssh-keyscan {keyscan} >> {kh}) or set host_key_policy = \"accept-new\" for this host"
        ),
        HostKeyProblem::Changed { lines } => format!(
            "HOST KEY CHANGED for {addr} (host {host:?}): the server offered {fingerprint}, which differs from the key at {kh} line(s) {}; \
             this may be an attack; if the server's key really changed, remove the old line (ssh-keygen -R '{addr}' -f {kh})",
            join_lines(lines)
        ),
        HostKeyProblem::Revoked { line } => format!(
            "host key {fingerprint} of {addr} (host {host:?}) is marked @revoked at {kh} line {line}; refusing to connect"
        ),
    }
}

fn join_lines(lines: &[usize]) -> String {
    lines
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
