//! The settings of one SSH host: who to connect to, with which key and
//! known_hosts, and how to keep, rekey and reconnect the connection. The
//! loader (`crate::config`) builds them from flags and files; the SSH side
//! only reads them, so it depends on nothing above it.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;

use super::backoff::Backoff;
use crate::policy::HostPolicy;

/// What to do with a host key that known_hosts does not list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum HostKeyPolicy {
    /// Refuse unknown and changed keys (OpenSSH `StrictHostKeyChecking=yes`).
    #[default]
    Strict,
    /// Add keys of hosts known_hosts does not mention at all, refuse changed
    /// keys (OpenSSH `StrictHostKeyChecking=accept-new`).
    AcceptNew,
}

/// Which ssh-agent a host uses (OpenSSH's `IdentityAgent`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AgentSource {
    /// The socket `SSH_AUTH_SOCK` names in tunneld's environment, if set.
    #[default]
    Env,
    /// This socket.
    Socket(PathBuf),
    /// No agent.
    None,
}

/// Where a key's passphrase comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PassphraseSource {
    /// First line of a file.
    File(PathBuf),
    /// An environment variable of the daemon.
    Env(String),
}

/// The identity files OpenSSH tries when none is named, in its order
/// (`ssh -G` prints them); tunneld cannot use the security-key (`_sk`)
/// ones, so they are left out.
pub const DEFAULT_IDENTITIES: [&str; 3] = ["~/.ssh/id_rsa", "~/.ssh/id_ecdsa", "~/.ssh/id_ed25519"];

/// Bound on the TCP connect to an SSH server when `ConnectTimeout` is not
/// set.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Keepalive interval (OpenSSH's `ServerAliveInterval`).
const DEFAULT_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);

/// Unanswered keepalives before the connection is dropped
/// (`ServerAliveCountMax`).
const DEFAULT_KEEPALIVE_MAX: usize = 3;

/// Bytes between key re-exchanges (OpenSSH's `RekeyLimit` default for
/// AES-GCM is comparable).
const DEFAULT_REKEY_LIMIT: usize = 4 << 30;

/// SSH channel window; see ARCHITECTURE's byte path for why 2 MiB.
const DEFAULT_SSH_WINDOW: u32 = 2 * 1024 * 1024;

/// Largest SSH packet accepted (OpenSSH's own).
const DEFAULT_SSH_MAX_PACKET: u32 = 32 * 1024;

/// How long a connection that ran an Exec stays open for the next one.
const DEFAULT_EXEC_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// How tunneld authenticates to, verifies, keeps and reconnects one SSH
/// server. One type for the defaults (from flags) and for each host (the
/// defaults with the host's own overrides applied), so a setting is written
/// once.
#[derive(Debug, Clone, PartialEq)]
pub struct HostSettings {
    /// Private key files offered in this order (OpenSSH's `IdentityFile`;
    /// OpenSSH format: ed25519, ECDSA or RSA). A file that is missing is
    /// skipped; `KEY-cert.pub` next to one is offered with it.
    pub identities: Vec<PathBuf>,
    /// Whether `identities` are OpenSSH's defaults rather than named by the
    /// operator: a default that is missing is skipped without a word.
    pub default_identities: bool,
    /// Certificates offered with the key they certify (`CertificateFile`).
    pub certificates: Vec<PathBuf>,
    /// Offer only the keys of `identities` and `certificates`, never the
    /// agent's others (`IdentitiesOnly`).
    pub identities_only: bool,
    /// The ssh-agent whose keys are offered (`IdentityAgent`).
    pub agent: AgentSource,
    /// Bound on opening the TCP connection to the server (`ConnectTimeout`).
    pub connect_timeout: Duration,
    /// known_hosts file used to verify the server.
    pub known_hosts: PathBuf,
    /// Passphrase of the key, if it has one.
    pub passphrase: Option<PassphraseSource>,
    /// Handling of keys known_hosts does not list.
    pub host_key_policy: HostKeyPolicy,
    /// Interval of SSH keepalives; the connection is dropped after
    /// `keepalive_max` go unanswered.
    pub keepalive_interval: Duration,
    /// Unanswered keepalives tolerated.
    pub keepalive_max: usize,
    /// Delays between reconnection attempts after the connection was lost.
    pub reconnect: Backoff,
    /// Bytes either way after which tunneld starts a key re-exchange.
    pub rekey_limit: usize,
    /// Ciphers offered, best first.
    pub ciphers: Vec<russh::cipher::Name>,
    /// SSH channel window: bytes the server may send ahead on a channel.
    pub window_size: u32,
    /// Largest SSH packet accepted.
    pub max_packet: u32,
    /// Where the session and the connections of its tunnels run.
    pub thread: super::HostThread,
    /// How long a connection that ran an Exec stays open for the next one.
    pub exec_idle_timeout: Duration,
    /// Which forwards may be opened over this host.
    pub policy: HostPolicy,
}

impl HostSettings {
    /// What `ssh` would use with no options: its default identity files,
    /// the agent of `SSH_AUTH_SOCK`, `~/.ssh/known_hosts`, strict host
    /// keys, and tunneld's defaults for the rest.
    pub fn openssh() -> Self {
        HostSettings {
            identities: DEFAULT_IDENTITIES
                .iter()
                .map(|p| crate::sys::user::expand_home(Path::new(p)))
                .collect(),
            default_identities: true,
            certificates: Vec::new(),
            identities_only: false,
            agent: AgentSource::Env,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            known_hosts: crate::sys::user::expand_home(Path::new("~/.ssh/known_hosts")),
            passphrase: None,
            host_key_policy: HostKeyPolicy::Strict,
            keepalive_interval: DEFAULT_KEEPALIVE_INTERVAL,
            keepalive_max: DEFAULT_KEEPALIVE_MAX,
            reconnect: Backoff::default(),
            rekey_limit: DEFAULT_REKEY_LIMIT,
            ciphers: super::ciphers::default_order(),
            window_size: DEFAULT_SSH_WINDOW,
            max_packet: DEFAULT_SSH_MAX_PACKET,
            thread: super::HostThread::default(),
            exec_idle_timeout: DEFAULT_EXEC_IDLE_TIMEOUT,
            policy: HostPolicy::default(),
        }
    }
}

/// One SSH server tunneld can connect to: where it is, and its settings.
#[derive(Debug, Clone, PartialEq)]
pub struct HostConfig {
    /// Name requests use for it.
    pub name: String,
    /// Remote user.
    pub user: String,
    /// Host name or IP address of the SSH server.
    pub hostname: String,
    /// SSH port.
    pub port: u16,
    /// How to authenticate, verify, keep and reconnect it.
    pub settings: HostSettings,
    /// Jump hosts (`ssh -J`, ProxyJump) in order: the first is dialled
    /// directly, each next one and finally this host through a
    /// `direct-tcpip` channel of the one before. Each hop is verified and
    /// authenticated under its own name and settings; its own `jump` is
    /// not used (the loader gives the whole route here).
    pub jump: Vec<HostConfig>,
}

impl HostConfig {
    /// `host:port` as dialled.
    pub fn addr(&self) -> String {
        tunnel_proto::addr::join_host_port(&self.hostname, self.port)
    }

    /// The error for a connection to this host that failed once dialled,
    /// saying why.
    pub fn connection_failed(&self, reason: String) -> crate::error::Error {
        crate::error::Error::SshConnection {
            host: self.name.clone(),
            addr: self.addr(),
            reason,
        }
    }

    /// `user@host:port`, as shown to people.
    pub fn display_address(&self) -> String {
        format!("{}@{}", self.user, self.addr())
    }

    /// The names of the jump hosts the connection goes through, in order;
    /// empty for a direct connection.
    pub fn via(&self) -> Vec<String> {
        self.jump.iter().map(|h| h.name.clone()).collect()
    }
}
