//! Daemon configuration: the SSH hosts tunneld may connect to, the tunnels
//! it opens at start and the limits it enforces. Built from command-line
//! flags (the `default` host) and an optional TOML file of named hosts and
//! declared tunnels:
//!
//! ```toml
//! default_host = "bastion"          # optional; else "default" from --ssh
//!
//! [hosts.bastion]
//! address = "deploy@bastion.example.com:22"   # [user@]host[:port]
//! identity = "~/.ssh/id_ed25519"              # default: --identity
//! known_hosts = "~/.ssh/known_hosts"          # default: --known-hosts
//! passphrase_file = "/run/secrets/key-pass"   # or passphrase_env = "VAR"
//! host_key_policy = "strict"                  # or "accept-new"
//! keepalive_interval = "15s"                  # ServerAliveInterval
//! keepalive_max = 3                           # ServerAliveCountMax
//! reconnect_min = "1s"                        # first backoff delay
//! reconnect_max = "30s"                       # longest backoff delay
//! rekey_limit = "4GiB"                        # bytes between re-keys
//! ciphers = ["aes256-gcm@openssh.com"]        # offered, best first (Ciphers)
//! permit_open = ["db.internal:5432"]          # local forward targets (PermitOpen)
//! permit_listen = ["8080", "localhost:9000"]  # remote forward listens (PermitListen)
//! proxy_jump = ["jump@gw.example.com:22"]     # jump hosts, first dialled first (ProxyJump)
//! ```
//!
//! and, at the top level, `allow_local_bind = ["0.0.0.0"]` for local
//! forwards that listen beyond loopback (see `policy`).
//!
//! Tunnels are declared in the syntax of `ssh -L`, `-R` and `-D`, one
//! forward each, named as `tunnelctl --name` takes a name:
//!
//! ```toml
//! [tunnels.db]
//! host = "bastion"                 # default: the default host
//! local = "15432:db.internal:5432" # ssh -L: every form, unix paths too
//! max_connections = 64             # default: --max-connections-per-tunnel
//! idle_timeout = "10m"             # default: never
//!
//! [tunnels.web]
//! remote = "8080:localhost:3000"   # ssh -R; PORT or /PATH alone: reverse SOCKS
//!
//! [tunnels.back]
//! remote = "1080"                  # reverse dynamic, whose requests may reach only
//! permit_remote_open = ["localhost:3000"]
//!
//! [tunnels.proxy]
//! dynamic = "1080"                 # ssh -D: [BIND:]PORT
//! ```
//!
//! Every problem of a file is reported at once, each as
//! `FILE:LINE:COL: message` ([`ConfigError`]); [`check`] returns them as
//! such, [`load`] as one error of a line each.

mod added_host;
mod destination;
mod error;
mod file;
mod flags;
mod jump;
mod load;
mod overrides;
mod reloader;
mod state_dir;
// OpenSSH's ssh_config resolved as `ssh -G` does; public (hidden) for the
// oracle test in tests/ssh_config_oracle.rs.
#[doc(hidden)]
pub mod ssh_config;
mod tunnels;
mod units;

use std::{collections::BTreeMap, time::Duration};

pub use added_host::HostRequest;
pub use destination::HostDefaults;
pub use error::ConfigError;
pub use flags::{Flags, HostThreadArg, PolicyArg};
pub use load::{check, load};
pub use reloader::Reloader;
pub use tunnels::DeclaredTunnel;
pub use units::{
    parse_duration, parse_duration_or_zero, parse_size, parse_size_or_zero, parse_u32_size,
    positive,
};

use crate::{error::Result, policy::BindPolicy, relay::spill::SpillPolicy};

/// Name of the host given with `--ssh`.
pub const DEFAULT_HOST_NAME: &str = "default";

/// Default cap on connections carried at once by the whole daemon.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;

/// Default cap on connections carried at once by one tunnel.
pub const DEFAULT_MAX_CONNECTIONS_PER_TUNNEL: u32 = 1024;

/// Default cap on open tunnels (`--max-tunnels`).
pub const DEFAULT_MAX_TUNNELS: usize = 4096;

/// Default cap on Watch streams open at once (`--max-watchers`).
pub const DEFAULT_MAX_WATCHERS: usize = 256;

/// Default cap on hosts known at once (`--max-hosts`): each may hold an
/// SSH connection, a thread, and Exec connections.
pub const DEFAULT_MAX_HOSTS: usize = 256;

/// Default cap on Exec commands running at once (`--max-execs`); each holds
/// an SSH connection of its own (and an sshd process on the server).
pub const DEFAULT_MAX_EXECS: usize = 64;

/// Default time a new connection to a local forward waits for a lost SSH
/// connection to come back.
pub const DEFAULT_RECONNECT_WAIT: Duration = Duration::from_secs(10);

/// Default bound on bytes received from the SSH server for one forwarded
/// connection (or one exec) that its local reader has not taken yet.
pub const DEFAULT_MAX_BUFFER_PER_CONNECTION: usize = 8 * 1024 * 1024;

/// Default size of one read from a local socket: two SSH packets.
pub const DEFAULT_COPY_BUFFER: usize = 64 * 1024;

// The settings of one host are the SSH side's own types; the loader
// builds them.
pub use crate::ssh::{AgentSource, HostConfig, HostKeyPolicy, HostSettings, PassphraseSource};
pub use crate::sys::user::expand_home;

/// Limits that keep one connection from taking the daemon's memory.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Bytes from the SSH server held in memory for one forwarded
    /// connection or exec whose reader is slower than the sender; past it a
    /// connection's bytes wait in a spill file (see ARCHITECTURE.md, "The
    /// byte path").
    pub max_buffer_per_connection: usize,
    /// Connections carried at once by the whole daemon; more are refused.
    pub max_connections: usize,
    /// Connections carried at once by a tunnel that sets no cap of its own.
    pub max_connections_per_tunnel: u32,
    /// How long a new connection to a local forward waits for a lost SSH
    /// connection to come back before it is closed.
    pub reconnect_wait: Duration,
    /// Size of one read from a local socket (allocated only once the
    /// connection's peer first sends).
    pub copy_buffer: usize,
    /// Tunnels open at once; more opens are refused.
    pub max_tunnels: usize,
    /// Watch streams open at once; more are refused.
    pub max_watchers: usize,
    /// Exec commands running at once; more are refused.
    pub max_execs: usize,
    /// Hosts known at once; more are refused by AddHost.
    pub max_hosts: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_buffer_per_connection: DEFAULT_MAX_BUFFER_PER_CONNECTION,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_tunnel: DEFAULT_MAX_CONNECTIONS_PER_TUNNEL,
            reconnect_wait: DEFAULT_RECONNECT_WAIT,
            copy_buffer: DEFAULT_COPY_BUFFER,
            max_tunnels: DEFAULT_MAX_TUNNELS,
            max_watchers: DEFAULT_MAX_WATCHERS,
            max_execs: DEFAULT_MAX_EXECS,
            max_hosts: DEFAULT_MAX_HOSTS,
        }
    }
}

/// Everything the daemon core needs to run.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// Configured hosts, by name.
    pub hosts: BTreeMap<String, HostConfig>,
    /// Host used when a request names none.
    pub default_host: Option<String>,
    /// Resource limits.
    pub limits: Limits,
    /// Where a lagging reader's bytes wait on disk, and how many may.
    pub spill: SpillPolicy,
    /// Addresses beyond loopback local forwards may listen on.
    pub allow_local_bind: BindPolicy,
    /// Tunnels the config file declares (`[tunnels.NAME]`), by name.
    pub tunnels: BTreeMap<String, DeclaredTunnel>,
    /// The `--config` file, named when a declared tunnel is to be changed.
    pub file: Option<std::path::PathBuf>,
    /// How to read this configuration again (SIGHUP); `None`: never.
    pub reloader: Option<Reloader>,
    /// Where the state store lives; `None`: tunneld keeps no state.
    pub state_dir: Option<std::path::PathBuf>,
    /// How long open connections get to end on the first SIGTERM.
    pub drain_timeout: Duration,
    /// What hosts added at runtime start from (the flags and ssh_config);
    /// `None` (embedders, tests): hosts cannot be added.
    pub host_defaults: Option<std::sync::Arc<HostDefaults>>,
}

impl Config {
    /// Completes the configuration once everything is loaded: picks the
    /// default host when there is only one. No host at all is fine: hosts
    /// then come from the API (AddHost), the state store or a reload.
    pub fn finish(&mut self) -> Result<()> {
        if self.default_host.is_none() && self.hosts.len() == 1 {
            self.default_host = self.hosts.keys().next().cloned();
        }
        Ok(())
    }
}

/// The defaults of every host in the config tests: one key, one
/// known_hosts, no ssh_config.
#[cfg(test)]
pub(crate) fn test_defaults() -> HostDefaults {
    HostDefaults::without_ssh_config(HostSettings {
        identities: vec!["/k".into()],
        default_identities: false,
        known_hosts: "/kh".into(),
        ..HostSettings::openssh()
    })
}
