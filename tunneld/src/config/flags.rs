//! The command-line flags the daemon's [`Config`](super::Config) is built
//! from: the default host, the defaults of every host, and the limits.

// The doc comments below are clap's help text, where `[HOST:]PORT` is
// usage syntax, not a link.
#![allow(rustdoc::broken_intra_doc_links)]

use std::{path::PathBuf, time::Duration};

use clap::Args;

use super::{parse_duration, parse_size, parse_size_or_zero, parse_u32_size, positive};

/// The hosts, their defaults and the daemon's limits, as given on the
/// command line; [`super::load`] turns them into a [`super::Config`].
#[derive(Debug, Clone, Args)]
pub struct Flags {
    /// Let local forwards listen on ADDR besides loopback (like OpenSSH's
    /// GatewayPorts); repeatable; `*` allows any address.
    #[arg(long, value_name = "ADDR")]
    pub allow_local_bind: Vec<String>,

    /// Targets local forwards and the SOCKS requests of dynamic forwards
    /// may reach, as HOST:PORT (`*` for either part; `none`) or the absolute
    /// path of a unix socket on the server; repeatable. Default for every
    /// host (OpenSSH PermitOpen); without it, any.
    #[arg(long, value_name = "HOST:PORT|/PATH")]
    pub permit_open: Vec<String>,

    /// Where remote forwards may ask the server to listen, as [HOST:]PORT
    /// (PORT may be `*`; `none`) or the absolute path of a unix socket;
    /// repeatable. Default for every host (OpenSSH PermitListen); without
    /// it, anywhere.
    #[arg(long, value_name = "[HOST:]PORT|/PATH")]
    pub permit_listen: Vec<String>,

    /// Default SSH host as [user@]host[:port]; requests that name no host use it.
    #[arg(long, value_name = "USER@HOST[:PORT]")]
    pub ssh: Option<String>,

    /// Jump hosts of the --ssh host, as `ssh -J` takes them: comma-separated
    /// [user@]host[:port] hops, the first dialled directly (`none`: none).
    /// Each hop uses --identity, --known-hosts and --host-key-policy.
    /// Hosts of --config set `proxy_jump` instead.
    #[arg(
        long,
        short = 'J',
        value_name = "[USER@]HOST[:PORT],...",
        requires = "ssh"
    )]
    pub jump: Option<String>,

    /// Private key (OpenSSH format: ed25519, ECDSA or RSA); repeatable,
    /// offered in order (like ssh -i). Default: ssh's, ~/.ssh/id_rsa,
    /// id_ecdsa and id_ed25519, whichever exist.
    #[arg(long, short = 'i', value_name = "FILE")]
    pub identity: Vec<PathBuf>,

    /// Certificate offered with the key it certifies (OpenSSH
    /// CertificateFile); repeatable. KEY-cert.pub next to an identity is
    /// offered without it.
    #[arg(long, value_name = "FILE")]
    pub certificate: Vec<PathBuf>,

    /// ssh-agent socket whose keys are offered after the identity files
    /// (OpenSSH IdentityAgent), or `none`. Default: SSH_AUTH_SOCK.
    #[arg(long, value_name = "PATH|none")]
    pub identity_agent: Option<PathBuf>,

    /// Offer only the identity files' keys (and their certificates), never
    /// the agent's others (OpenSSH IdentitiesOnly).
    #[arg(long)]
    pub identities_only: bool,

    /// Bound on opening the TCP connection to an SSH server (OpenSSH
    /// ConnectTimeout). Default: ssh_config's, else 10s.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub connect_timeout: Option<Duration>,

    /// known_hosts file used to verify servers. Default: the first
    /// UserKnownHostsFile of ssh_config, else ~/.ssh/known_hosts.
    #[arg(long, value_name = "FILE")]
    pub known_hosts: Option<PathBuf>,

    /// File whose first line is the key's passphrase (else
    /// TUNNELD_KEY_PASSPHRASE is used if set).
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,

    /// What to do with host keys known_hosts does not list. Default:
    /// ssh_config's StrictHostKeyChecking (accept-new, or strict for
    /// yes/ask), else strict.
    #[arg(long, value_enum)]
    pub host_key_policy: Option<PolicyArg>,

    /// OpenSSH client configuration that --ssh and the TOML hosts resolve
    /// through, as ssh -F: a file, or `none`. Default: ~/.ssh/config then
    /// /etc/ssh/ssh_config. Explicit flags and TOML keys win over it.
    #[arg(long, value_name = "FILE|none")]
    pub ssh_config: Option<PathBuf>,

    /// Also let requests name any concrete Host alias of the ssh_config (at
    /// most 256, resolved at start), not only the hosts tunneld was given.
    /// Off: an API caller reaches only hosts the operator chose.
    #[arg(long)]
    pub ssh_config_hosts: bool,

    /// TOML file of named hosts.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Bytes held in memory for one connection whose local reader lags.
    /// Past it, a connection alone on its SSH connection pauses the sender
    /// until the reader catches up (as ssh -L); one sharing it with others
    /// spills to disk (--max-connection-spill). Accepts suffixes KiB, MiB.
    #[arg(long, value_name = "SIZE", default_value = "8MiB", value_parser = parse_size)]
    pub max_connection_buffer: usize,

    /// Bytes of one connection that may wait on disk, beyond
    /// --max-connection-buffer, for a reader that lags while others share
    /// its SSH connection. Past it the connection is reset. 0: never spill
    /// (reset at --max-connection-buffer).
    #[arg(long, value_name = "SIZE", default_value = "1GiB", value_parser = parse_size_or_zero)]
    pub max_connection_spill: u64,

    /// Bytes all connections together may hold on disk; a connection that
    /// would go past it is reset.
    #[arg(long, value_name = "SIZE", default_value = "8GiB", value_parser = parse_size_or_zero)]
    pub max_spill: u64,

    /// Directory of the spill files (created 0700 if missing). The files
    /// have no name (O_TMPFILE), so nothing is left there, even after a
    /// crash. Default: tunneld-UID under $TMPDIR, else /var/tmp.
    #[arg(long, value_name = "DIR")]
    pub spill_dir: Option<PathBuf>,

    /// Directory of tunneld's state store (persisted tunnels, ids given
    /// out), created 0700 if missing; one tunneld per directory. Default:
    /// $STATE_DIRECTORY (systemd), else $XDG_STATE_HOME/tunneld, else
    /// ~/.local/state/tunneld. `none`: no store (nothing can be persisted).
    #[arg(long, value_name = "DIR|none")]
    pub state_dir: Option<PathBuf>,

    /// Send an SSH keepalive after this long without traffic from the server
    /// (OpenSSH ServerAliveInterval); default for every host. Default:
    /// ssh_config's ServerAliveInterval when above 0, else 15s.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub keepalive_interval: Option<Duration>,

    /// Unanswered keepalives before the connection is declared dead and
    /// reconnected (OpenSSH ServerAliveCountMax); default for every host.
    /// Default: ssh_config's, else 3.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub keepalive_count: Option<u32>,

    /// First delay between reconnection attempts; it doubles (±20% jitter)
    /// after each failure. Default for every host.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    pub reconnect_min: Duration,

    /// Longest delay between reconnection attempts. Default for every host.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub reconnect_max: Duration,

    /// How long a new connection to a local forward waits for a lost SSH
    /// connection to come back before it is closed.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub reconnect_wait: Duration,

    /// On SIGTERM, how long the connections open get to end (no new ones
    /// are taken meanwhile) before tunneld closes them and exits; a second
    /// SIGTERM stops at once. 0: no wait.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = super::parse_duration_or_zero)]
    pub drain_timeout: Duration,

    /// How long an SSH connection that ran an Exec stays open for the next
    /// one (each Exec holds a connection of its own while it runs, so a
    /// caller that reads slowly slows only its own command; up to 4 idle
    /// per host are kept). 0 closes it after each Exec.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = super::parse_duration_or_zero)]
    pub exec_idle_timeout: Duration,

    /// Tunnels open at once (local, remote and attached); more opens get
    /// RESOURCE_EXHAUSTED.
    #[arg(long, value_name = "N", default_value_t = super::DEFAULT_MAX_TUNNELS, value_parser = positive)]
    pub max_tunnels: usize,

    /// Watch streams open at once; more get RESOURCE_EXHAUSTED.
    #[arg(long, value_name = "N", default_value_t = super::DEFAULT_MAX_WATCHERS, value_parser = positive)]
    pub max_watchers: usize,

    /// Hosts known at once (the config's and those added at runtime);
    /// AddHost past it gets RESOURCE_EXHAUSTED.
    #[arg(long, value_name = "N", default_value_t = super::DEFAULT_MAX_HOSTS, value_parser = positive)]
    pub max_hosts: usize,

    /// Exec commands running at once (each holds an SSH connection of its
    /// own); more get RESOURCE_EXHAUSTED.
    #[arg(long, value_name = "N", default_value_t = super::DEFAULT_MAX_EXECS, value_parser = positive)]
    pub max_execs: usize,

    /// Connections carried at once by the whole daemon; more are refused.
    #[arg(long, value_name = "N", default_value_t = super::DEFAULT_MAX_CONNECTIONS, value_parser = positive)]
    pub max_connections: usize,

    /// Connections carried at once by one tunnel, unless its open request
    /// sets max_connections; more are refused.
    #[arg(long, value_name = "N", default_value_t = super::DEFAULT_MAX_CONNECTIONS_PER_TUNNEL, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections_per_tunnel: u32,

    /// Size of one read from a forwarded connection's local socket. Each
    /// connection allocates it once its peer first sends.
    #[arg(long, value_name = "SIZE", default_value = "64KiB", value_parser = parse_size)]
    pub copy_buffer: usize,

    /// Where each host's SSH session and the connections of its tunnels
    /// run: "own" gives each host a thread of its own (like one ssh process
    /// per host; measured fastest), "shared" runs them on the worker threads
    /// that serve the API.
    #[arg(long, value_enum, value_name = "WHERE", default_value = "own")]
    pub host_thread: HostThreadArg,

    /// SSH channel window: bytes an SSH server may send ahead on one channel
    /// before tunneld has taken them. Default for every host.
    #[arg(long, value_name = "SIZE", default_value = "2MiB", value_parser = parse_u32_size)]
    pub ssh_window: u32,

    /// Largest SSH packet tunneld accepts (OpenSSH: 32KiB). Default for
    /// every host.
    #[arg(long, value_name = "SIZE", default_value = "32KiB", value_parser = parse_u32_size)]
    pub ssh_max_packet: u32,

    /// Ciphers offered to SSH servers, best first, comma-separated (OpenSSH
    /// Ciphers). Default: ssh_config's Ciphers, else aes256-gcm@openssh.com
    /// first when the CPU has AES instructions, else
    /// chacha20-poly1305@openssh.com. Default for every host.
    #[arg(long, value_name = "CIPHER,...", value_delimiter = ',')]
    pub ciphers: Vec<String>,

    /// Bytes either way after which tunneld starts an SSH key re-exchange
    /// (OpenSSH RekeyLimit). Default for every host.
    #[arg(long, value_name = "SIZE", default_value = "4GiB", value_parser = parse_size)]
    pub rekey_limit: usize,
}

/// `--host-key-policy`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum PolicyArg {
    /// Refuse unknown and changed keys.
    Strict,
    /// Add keys of never-seen hosts; refuse changed keys.
    AcceptNew,
}

/// `--host-thread`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum HostThreadArg {
    /// A thread per host.
    Own,
    /// The API's worker threads.
    Shared,
}
