//! What an ssh_config says about one destination, and the lines `ssh -G`
//! prints for the keys tunneld uses.

use std::path::PathBuf;

use super::{SshConfigContext, ciphers::DEFAULT_CIPHERS};

/// OpenSSH's identity files when the config names none, as `ssh -G`
/// prints them (unexpanded).
pub const DEFAULT_IDENTITY_FILES: &[&str] = &[
    "~/.ssh/id_rsa",
    "~/.ssh/id_ecdsa",
    "~/.ssh/id_ecdsa_sk",
    "~/.ssh/id_ed25519",
    "~/.ssh/id_ed25519_sk",
    "~/.ssh/id_xmss",
    "~/.ssh/id_dsa",
];

/// OpenSSH's known-hosts files when the config names none.
pub const DEFAULT_USER_KNOWN_HOSTS_FILES: &[&str] = &["~/.ssh/known_hosts", "~/.ssh/known_hosts2"];

/// OpenSSH's default port.
pub const DEFAULT_PORT: u16 = 22;

/// `StrictHostKeyChecking`: what to do with a host key not in known_hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrictHostKeyChecking {
    /// `yes`: refuse unknown and changed keys.
    Yes,
    /// `ask` (OpenSSH's default): ask the user; a daemon cannot, so the
    /// caller decides what it means (tunneld: refuse).
    Ask,
    /// `accept-new`: add unknown keys, refuse changed ones.
    AcceptNew,
    /// `no` / `off`: accept unknown keys (changed keys still refused by
    /// OpenSSH for most uses).
    No,
}

impl StrictHostKeyChecking {
    /// The word `ssh -G` prints.
    pub fn ssh_g(self) -> &'static str {
        match self {
            StrictHostKeyChecking::Yes => "true",
            StrictHostKeyChecking::Ask => "ask",
            StrictHostKeyChecking::AcceptNew => "accept-new",
            StrictHostKeyChecking::No => "false",
        }
    }
}

/// What the config says about one destination: `None` (or empty) where it
/// says nothing, so tunneld's own flags and defaults can take over. Paths
/// are final: `~` and `%` tokens expanded with the final host, user and
/// port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshConfigHost {
    /// The host as given (`ssh ALIAS`): `%n`, `Host` and `Match
    /// originalhost` see it.
    pub alias: String,
    /// `HostName`, `%h` substituted, lowercased as `ssh` does.
    pub hostname: Option<String>,
    /// The user: the caller's override, else `User`.
    pub user: Option<String>,
    /// The port: the caller's override, else `Port`.
    pub port: Option<u16>,
    /// Every applicable `IdentityFile`, in order (`none` kept as a path
    /// named `none`: OpenSSH 9.2 gives it no meaning either).
    pub identity_files: Vec<PathBuf>,
    /// `IdentitiesOnly`.
    pub identities_only: Option<bool>,
    /// `IdentityAgent`: a socket path, or `none`, `SSH_AUTH_SOCK` or
    /// `$VAR` kept as written.
    pub identity_agent: Option<String>,
    /// Every applicable `CertificateFile`, in order.
    pub certificate_files: Vec<PathBuf>,
    /// `ProxyJump` as `ssh -G` spells it (`user@host:port` hops, comma
    /// separated); `Some("none")` when the config explicitly says none.
    pub proxy_jump: Option<String>,
    /// The first applicable `UserKnownHostsFile` line's files; an entry
    /// `none` is kept as written.
    pub user_known_hosts_files: Option<Vec<PathBuf>>,
    /// `StrictHostKeyChecking`.
    pub strict_host_key_checking: Option<StrictHostKeyChecking>,
    /// `ServerAliveInterval`, seconds (0: off).
    pub server_alive_interval: Option<u32>,
    /// `ServerAliveCountMax`.
    pub server_alive_count_max: Option<u32>,
    /// `ConnectTimeout`, seconds.
    pub connect_timeout: Option<u32>,
    /// `Ciphers`, assembled (`+`, `-`, `^` applied to OpenSSH's default),
    /// comma-joined.
    pub ciphers: Option<String>,
    /// `IdentityFile` values as written: `ssh -G` prints them unexpanded.
    pub(super) identity_files_raw: Vec<String>,
    /// `CertificateFile` values as written, for the same reason.
    pub(super) certificate_files_raw: Vec<String>,
}

impl SshConfigHost {
    /// The host to connect to: `HostName`, else the alias lowercased.
    pub fn host(&self) -> String {
        self.hostname
            .clone()
            .unwrap_or_else(|| self.alias.to_lowercase())
    }

    /// The lines `ssh -G` prints for the keys tunneld uses, in its order
    /// (keys may repeat), with OpenSSH's defaults filled in.
    pub fn to_ssh_g(&self, ctx: &SshConfigContext) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        let mut put = |k: &str, v: String| out.push((k.to_string(), v));
        put(
            "user",
            self.user.clone().unwrap_or_else(|| ctx.local_user.clone()),
        );
        put("hostname", self.host());
        put("port", self.port.unwrap_or(DEFAULT_PORT).to_string());
        put(
            "identitiesonly",
            if self.identities_only == Some(true) {
                "yes"
            } else {
                "no"
            }
            .into(),
        );
        put(
            "stricthostkeychecking",
            self.strict_host_key_checking
                .unwrap_or(StrictHostKeyChecking::Ask)
                .ssh_g()
                .into(),
        );
        put(
            "serveralivecountmax",
            self.server_alive_count_max.unwrap_or(3).to_string(),
        );
        put(
            "serveraliveinterval",
            self.server_alive_interval.unwrap_or(0).to_string(),
        );
        put(
            "ciphers",
            self.ciphers
                .clone()
                .unwrap_or_else(|| DEFAULT_CIPHERS.into()),
        );
        if let Some(agent) = &self.identity_agent {
            put("identityagent", agent.clone());
        }
        if self.identity_files_raw.is_empty() {
            for f in DEFAULT_IDENTITY_FILES {
                put("identityfile", (*f).into());
            }
        }
        for f in &self.identity_files_raw {
            put("identityfile", f.clone());
        }
        for f in &self.certificate_files_raw {
            put("certificatefile", f.clone());
        }
        let known_hosts = match &self.user_known_hosts_files {
            Some(files) => files
                .iter()
                .map(|f| f.to_string_lossy().into_owned())
                .collect::<Vec<_>>(),
            None => DEFAULT_USER_KNOWN_HOSTS_FILES
                .iter()
                .map(|f| super::tokens::expand_tilde(f, &ctx.home).unwrap_or_else(|_| (*f).into()))
                .collect(),
        };
        put("userknownhostsfile", known_hosts.join(" "));
        put(
            "connecttimeout",
            self.connect_timeout
                .map_or_else(|| "none".into(), |t| t.to_string()),
        );
        if let Some(jump) = self.proxy_jump.as_ref().filter(|j| *j != "none") {
            put("proxyjump", jump.clone());
        }
        out
    }
}
