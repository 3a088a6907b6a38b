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
    /// known_hosts marks this key `@revoked` (for a host certificate: the
    /// key it certifies).
    Revoked {
        /// 1-based line number of the `@revoked` line.
        line: usize,
    },
    /// The server presented a host certificate that no `@cert-authority`
    /// line accepts, and known_hosts does not list its key as a plain host
    /// key either (OpenSSH's fallback).
    Certificate(CertificateProblem),
}

impl HostKeyProblem {
    /// Whether OpenSSH, refusing a host certificate for this reason, checks
    /// the certificate's key as a plain host key instead: for every reason
    /// but a revoked CA or a bad signature (a revoked key is
    /// [`HostKeyProblem::Revoked`]).
    pub fn falls_back_to_plain_key(&self) -> bool {
        match self {
            HostKeyProblem::Certificate(p) => !matches!(
                p,
                CertificateProblem::CaRevoked { .. } | CertificateProblem::BadSignature { .. }
            ),
            _ => false,
        }
    }
}

/// Why a host certificate was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertificateProblem {
    /// No `@cert-authority` line for this host lists the CA that signed it.
    UnknownCa {
        /// SHA256 fingerprint of the signing CA's key.
        ca_fingerprint: String,
    },
    /// known_hosts marks the signing CA's key `@revoked`.
    CaRevoked {
        /// SHA256 fingerprint of the signing CA's key.
        ca_fingerprint: String,
        /// 1-based line number of the `@revoked` line.
        line: usize,
    },
    /// A user certificate, not a host certificate.
    NotHostCertificate,
    /// Its validity starts later (`valid_after`, Unix seconds).
    NotYetValid {
        /// Start of validity, Unix seconds.
        valid_after: u64,
    },
    /// Its validity ended (`valid_before`, Unix seconds).
    Expired {
        /// End of validity (exclusive), Unix seconds.
        valid_before: u64,
    },
    /// The name tunneld connects to is not among its principals.
    WrongPrincipal {
        /// The principals the certificate lists.
        principals: Vec<String>,
        /// The name that was looked for.
        expected: String,
    },
    /// It lists no principals (valid for any host name), which tunneld
    /// refuses, as OpenSSH does since 10.3.
    NoPrincipals,
    /// It carries critical options, which no host certificate may have.
    CriticalOptions {
        /// The options' names.
        names: Vec<String>,
    },
    /// The CA signed it with an algorithm OpenSSH's default
    /// `CASignatureAlgorithms` leaves out (`ssh-rsa`, that is SHA-1, or DSA).
    WeakSignature {
        /// The signature algorithm.
        algorithm: String,
    },
    /// Its signature does not verify with the CA key it names.
    BadSignature {
        /// SHA256 fingerprint of the CA key it names.
        ca_fingerprint: String,
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

    /// No open tunnel has this id or name.
    #[error(
        "no tunnel with id or name {} (it may be closed already; `tunnelctl list` shows open tunnels)",
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
        /// Whether the server said it could not connect to the target.
        connect_failed: bool,
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

    /// A live unix socket (or another file) is where a local forward would
    /// listen.
    #[error(
        "cannot listen on unix socket {path}: {reason}; choose another path, or stop what serves there"
    )]
    LocalSocketInUse {
        /// The socket's path.
        path: String,
        /// What is there.
        reason: String,
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

    /// The SSH server refused a `streamlocal-forward@openssh.com` request.
    #[error(
        "SSH server of host {host:?} refused to listen on unix socket {path}; a live socket may be there \
         (sshd replaces a stale one only with StreamLocalBindUnlink yes), its directory may be missing or not \
         writable by the login user, or its sshd_config forbids it (AllowStreamLocalForwarding)"
    )]
    RemoteSocketRefused {
        /// Host name.
        host: String,
        /// The socket's path on the server.
        path: String,
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

    /// The state store cannot be opened, read or written.
    #[error("state store {}: {detail}", path.display())]
    StateStore {
        /// The store's file.
        path: std::path::PathBuf,
        /// What failed.
        detail: String,
    },

    /// A name another open tunnel holds.
    #[error("a tunnel named {name:?} is already open{}; close it or pick another name", if holder.is_empty() { " (being opened)".to_string() } else { format!(" ({holder})") })]
    NameTaken {
        /// The name asked for.
        name: String,
        /// The id of the tunnel holding it; empty while that one opens.
        holder: String,
    },

    /// A tunnel that only its config file can close.
    #[error("tunnel {id} ({name}) is declared in {}; remove [tunnels.{name}] there and reload tunneld (SIGHUP) to close it", file.display())]
    DeclaredTunnel {
        /// The tunnel's id.
        id: String,
        /// Its name (its table's key).
        name: String,
        /// The config file declaring it.
        file: std::path::PathBuf,
    },

    /// A config file read again with problems: nothing was changed.
    #[error("config not reloaded, nothing changed:\n{0}")]
    ConfigRejected(String),

    /// A persisted tunnel or host asked of a tunneld without a usable
    /// store.
    #[error("cannot persist the {what}: {why}")]
    NoStateStore {
        /// "tunnel" or "host".
        what: &'static str,
        /// Why there is no store.
        why: String,
    },

    /// AddHost with a name a host has.
    #[error("a host named {name:?} already exists ({how}); remove it first or pick another name")]
    HostExists {
        /// The name asked for.
        name: String,
        /// Where the existing one comes from.
        how: &'static str,
    },

    /// RemoveHost of a host the config gives.
    #[error(
        "host {name:?} comes from {origin}; remove it there and reload tunneld (SIGHUP or tunnelctl reload)"
    )]
    ConfigHost {
        /// The host.
        name: String,
        /// The file, or the flag, that gives it.
        origin: String,
    },

    /// RemoveHost of a host that tunnels run over, without force.
    #[error(
        "host {name:?} carries tunnels {tunnels}; close them first, or remove the host with --force (force in the API) to close them with it"
    )]
    HostBusy {
        /// The host.
        name: String,
        /// Their ids, comma-separated.
        tunnels: String,
    },

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
        HostKeyProblem::Certificate(problem) => {
            let why = certificate_problem(problem, addr, &kh.to_string());
            format!("host certificate of {addr} (host {host:?}, key {fingerprint}) refused: {why}")
        }
    }
}

/// The reason part of a refused certificate's message, with its fix.
fn certificate_problem(problem: &CertificateProblem, addr: &str, kh: &str) -> String {
    // Said of every problem that falls back to the plain key (OpenSSH's
    // behaviour): the fallback found nothing either.
    let no_plain = format!("and {kh} lists no plain host key for {addr} either");
    match problem {
        CertificateProblem::UnknownCa { ca_fingerprint } => format!(
            "it is signed by CA {ca_fingerprint}, which no @cert-authority line for {addr} in {kh} lists, {no_plain}; \
             if you trust that CA for this host, add `@cert-authority PATTERN <CA public key>` to {kh}"
        ),
        CertificateProblem::CaRevoked {
            ca_fingerprint,
            line,
        } => format!(
            "its CA {ca_fingerprint} is marked @revoked at {kh} line {line}; refusing to connect; the server needs a certificate from another CA"
        ),
        CertificateProblem::NotHostCertificate => format!(
            "it is a user certificate, not a host certificate, {no_plain}; the server's HostCertificate must be signed with ssh-keygen -h"
        ),
        CertificateProblem::NotYetValid { valid_after } => format!(
            "it is not valid until {}, {no_plain}; check the clocks of this machine and of the CA, or have the certificate re-issued",
            unix_time(*valid_after)
        ),
        CertificateProblem::Expired { valid_before } => format!(
            "it expired at {}, {no_plain}; the server needs a renewed certificate (ssh-keygen -s CA -h ... on its host key), or check this machine's clock",
            unix_time(*valid_before)
        ),
        CertificateProblem::WrongPrincipal {
            principals,
            expected,
        } => format!(
            "it is valid for {} but tunneld connects to {expected:?}, {no_plain}; connect by one of those names, or have the certificate re-issued with -n {expected}",
            principals
                .iter()
                .map(|p| clipped(p).to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        CertificateProblem::NoPrincipals => format!(
            "it lists no principals (it would be valid for any host), {no_plain}; have it re-issued with the host's names (ssh-keygen -h -n NAME)"
        ),
        CertificateProblem::CriticalOptions { names } => format!(
            "it carries critical options ({}), which host certificates may not have, {no_plain}; have it re-issued without -O options",
            names
                .iter()
                .map(|n| clipped(n).to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        CertificateProblem::WeakSignature { algorithm } => format!(
            "its CA signed it with {algorithm}, which OpenSSH's default CASignatureAlgorithms leaves out (SHA-1 RSA, DSA), {no_plain}; have it re-signed (an RSA CA: ssh-keygen -t rsa-sha2-512 -s CA ...)"
        ),
        CertificateProblem::BadSignature { ca_fingerprint } => format!(
            "its signature does not verify with the CA key it names ({ca_fingerprint}); refusing to connect"
        ),
    }
}

/// A certificate time (Unix seconds) as RFC 3339 UTC; `u64::MAX` is OpenSSH's
/// "forever".
fn unix_time(secs: u64) -> String {
    // humantime formats up to the last second of the year 9999.
    const LAST: u64 = 253_402_300_799;
    match secs {
        u64::MAX => "forever".into(),
        s if s > LAST => format!("{s} (Unix time, after the year 9999)"),
        s => humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(s))
            .to_string(),
    }
}

fn join_lines(lines: &[usize]) -> String {
    lines
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
