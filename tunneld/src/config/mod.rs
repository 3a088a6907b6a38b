//! Daemon configuration: the SSH hosts tunneld may connect to and the limits
//! it enforces. Built from command-line flags (the `default` host) and an
//! optional TOML file of named hosts:
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
//! ```
//!
//! and, at the top level, `allow_local_bind = ["0.0.0.0"]` for local
//! forwards that listen beyond loopback (see [`crate::policy`]).

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;
use tunnel_proto::duration::BoundedDuration;

use crate::{
    error::{Error, Result},
    policy::{BindPolicy, HostPolicy},
    relay::spill::SpillPolicy,
    ssh::backoff::Backoff,
};

/// Name of the host given with `--ssh`.
pub const DEFAULT_HOST_NAME: &str = "default";

/// Default OpenSSH-style keepalive interval (ServerAliveInterval).
pub const DEFAULT_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);

/// Default number of unanswered keepalives before the link is declared dead
/// (ServerAliveCountMax).
pub const DEFAULT_KEEPALIVE_MAX: usize = 3;

/// Default bytes either way after which tunneld starts a key re-exchange.
/// Above OpenSSH's own limit for chacha20-poly1305 (1 GiB), so sshd usually
/// starts it; see ARCHITECTURE.md, "Surviving faults".
pub const DEFAULT_REKEY_LIMIT: usize = 4 << 30;

/// Default cap on connections carried at once by the whole daemon.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;

/// Default cap on connections carried at once by one tunnel.
pub const DEFAULT_MAX_CONNECTIONS_PER_TUNNEL: u32 = 1024;

/// Default cap on open tunnels (`--max-tunnels`).
pub const DEFAULT_MAX_TUNNELS: usize = 4096;

/// Default cap on Watch streams open at once (`--max-watchers`).
pub const DEFAULT_MAX_WATCHERS: usize = 256;

/// Default cap on Exec commands running at once (`--max-execs`); each holds
/// an SSH connection of its own (and an sshd process on the server).
pub const DEFAULT_MAX_EXECS: usize = 64;

/// Default time a new connection to a local forward waits for a lost SSH
/// connection to come back.
pub const DEFAULT_RECONNECT_WAIT: Duration = Duration::from_secs(10);

/// Default bound on bytes received from the SSH server for one forwarded
/// connection (or one exec) that its local reader has not taken yet.
pub const DEFAULT_MAX_BUFFER_PER_CONNECTION: usize = 8 * 1024 * 1024;

/// Default time an SSH connection that ran an Exec stays open for the next
/// one (a pool hit saves a whole SSH handshake, ~0.1 s on loopback).
pub const DEFAULT_EXEC_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Default size of one read from a local socket: two SSH packets.
pub const DEFAULT_COPY_BUFFER: usize = 64 * 1024;

/// Default SSH channel window (bytes the server may send ahead), russh's.
pub const DEFAULT_SSH_WINDOW: u32 = 2 * 1024 * 1024;

/// Default largest SSH packet tunneld accepts, OpenSSH's.
pub const DEFAULT_SSH_MAX_PACKET: u32 = 32 * 1024;

// The settings of one host are the SSH side's own types; the loader
// builds them.
pub use crate::ssh::{HostConfig, HostKeyPolicy, PassphraseSource};

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
}

/// Defaults applied to hosts that do not set their own key files.
#[derive(Debug, Clone)]
pub struct HostDefaults {
    /// Identity used when a host sets none.
    pub identity: PathBuf,
    /// known_hosts used when a host sets none.
    pub known_hosts: PathBuf,
    /// Passphrase source used when a host sets none.
    pub passphrase: Option<PassphraseSource>,
    /// Host key policy used when a host sets none.
    pub host_key_policy: HostKeyPolicy,
    /// Keepalive interval used when a host sets none.
    pub keepalive_interval: Duration,
    /// Unanswered keepalives tolerated when a host sets none.
    pub keepalive_max: usize,
    /// Reconnection backoff used when a host sets none.
    pub reconnect: Backoff,
    /// Re-key limit used when a host sets none.
    pub rekey_limit: usize,
    /// Ciphers used when a host sets none.
    pub ciphers: Vec<russh::cipher::Name>,
    /// SSH channel window of every host.
    pub window_size: u32,
    /// Largest SSH packet of every host.
    pub max_packet: u32,
    /// Where every host's session and connections run.
    pub thread: crate::ssh::HostThread,
    /// How long every host's Exec connections stay open between commands.
    pub exec_idle_timeout: Duration,
    /// Forward rules used when a host sets none.
    pub policy: HostPolicy,
}

impl HostDefaults {
    /// OpenSSH's defaults: `~/.ssh/id_ed25519` and `~/.ssh/known_hosts`.
    pub fn openssh() -> Self {
        HostDefaults {
            identity: expand_home(Path::new("~/.ssh/id_ed25519")),
            known_hosts: expand_home(Path::new("~/.ssh/known_hosts")),
            passphrase: None,
            host_key_policy: HostKeyPolicy::Strict,
            keepalive_interval: DEFAULT_KEEPALIVE_INTERVAL,
            keepalive_max: DEFAULT_KEEPALIVE_MAX,
            reconnect: Backoff::default(),
            rekey_limit: DEFAULT_REKEY_LIMIT,
            ciphers: crate::ssh::ciphers::default_order(),
            window_size: DEFAULT_SSH_WINDOW,
            max_packet: DEFAULT_SSH_MAX_PACKET,
            thread: crate::ssh::HostThread::default(),
            exec_idle_timeout: DEFAULT_EXEC_IDLE_TIMEOUT,
            policy: HostPolicy::default(),
        }
    }
}

/// The TOML file's shape.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    default_host: Option<String>,
    #[serde(default)]
    allow_local_bind: Vec<String>,
    #[serde(default)]
    hosts: BTreeMap<String, FileHost>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileHost {
    address: String,
    identity: Option<PathBuf>,
    known_hosts: Option<PathBuf>,
    passphrase_file: Option<PathBuf>,
    passphrase_env: Option<String>,
    host_key_policy: Option<HostKeyPolicy>,
    keepalive_interval: Option<String>,
    keepalive_max: Option<usize>,
    reconnect_min: Option<String>,
    reconnect_max: Option<String>,
    rekey_limit: Option<String>,
    ciphers: Option<Vec<String>>,
    permit_open: Option<Vec<String>>,
    permit_listen: Option<Vec<String>>,
}

impl Config {
    /// Adds the host given on the command line as `--ssh` under the name
    /// [`DEFAULT_HOST_NAME`].
    pub fn add_destination(&mut self, destination: &str, defaults: &HostDefaults) -> Result<()> {
        let host = host_from_destination(DEFAULT_HOST_NAME, destination, defaults)?;
        self.hosts.insert(host.name.clone(), host);
        if self.default_host.is_none() {
            self.default_host = Some(DEFAULT_HOST_NAME.to_string());
        }
        Ok(())
    }

    /// Reads named hosts from a TOML file.
    pub fn load_file(&mut self, path: &Path, defaults: &HostDefaults) -> Result<()> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::Config(format!("cannot read config file {}: {e}", path.display()))
        })?;
        self.load_str(&text, defaults)
            .map_err(|e| Error::Config(format!("config file {}: {e}", path.display())))
    }

    /// Reads named hosts from TOML text.
    pub fn load_str(&mut self, text: &str, defaults: &HostDefaults) -> Result<()> {
        let file: FileConfig = toml::from_str(text).map_err(|e| Error::Config(e.to_string()))?;
        for (name, h) in file.hosts {
            validate_host_name(&name)?;
            if self.hosts.contains_key(&name) {
                return Err(Error::Config(format!(
                    "host {name:?} is defined twice (by --ssh and the config file?)"
                )));
            }
            let mut host = host_from_destination(&name, &h.address, defaults)?;
            if let Some(p) = h.identity {
                host.identity = expand_home(&p);
            }
            if let Some(p) = h.known_hosts {
                host.known_hosts = expand_home(&p);
            }
            match (h.passphrase_file, h.passphrase_env) {
                (Some(_), Some(_)) => {
                    return Err(Error::Config(format!(
                        "host {name:?}: set passphrase_file or passphrase_env, not both"
                    )));
                }
                (Some(f), None) => host.passphrase = Some(PassphraseSource::File(expand_home(&f))),
                (None, Some(v)) => host.passphrase = Some(PassphraseSource::Env(v)),
                (None, None) => {}
            }
            if let Some(p) = h.host_key_policy {
                host.host_key_policy = p;
            }
            let duration = |key: &str, s: &str| {
                parse_duration(s).map_err(|e| Error::Config(format!("host {name:?}: {key}: {e}")))
            };
            if let Some(s) = h.keepalive_interval {
                host.keepalive_interval = duration("keepalive_interval", &s)?;
            }
            if let Some(n) = h.keepalive_max {
                host.keepalive_max = n;
            }
            if let Some(s) = h.reconnect_min {
                host.reconnect.min = duration("reconnect_min", &s)?;
            }
            if let Some(s) = h.reconnect_max {
                host.reconnect.max = duration("reconnect_max", &s)?;
            }
            if host.reconnect.max < host.reconnect.min {
                return Err(Error::Config(format!(
                    "host {name:?}: reconnect_max is shorter than reconnect_min"
                )));
            }
            if let Some(s) = h.rekey_limit {
                host.rekey_limit = parse_size(&s)
                    .map_err(|e| Error::Config(format!("host {name:?}: rekey_limit: {e}")))?;
            }
            if let Some(names) = h.ciphers {
                host.ciphers = crate::ssh::ciphers::parse(&names)
                    .map_err(|e| Error::Config(format!("host {name:?}: ciphers: {e}")))?;
            }
            if h.permit_open.is_some() || h.permit_listen.is_some() {
                // A host's own list replaces the flag's, as a whole.
                let open = h.permit_open.map(none_if_empty);
                let listen = h.permit_listen.map(none_if_empty);
                let parsed = HostPolicy::parse(
                    open.as_deref().unwrap_or_default(),
                    listen.as_deref().unwrap_or_default(),
                )
                .map_err(|e| Error::Config(format!("host {name:?}: {e}")))?;
                if open.is_some() {
                    host.policy.permit_open = parsed.permit_open;
                }
                if listen.is_some() {
                    host.policy.permit_listen = parsed.permit_listen;
                }
            }
            self.hosts.insert(name, host);
        }
        let mut binds = self.allow_local_bind.allowed().to_vec();
        binds.extend(file.allow_local_bind);
        self.allow_local_bind = BindPolicy::new(binds);
        if let Some(d) = file.default_host {
            if !self.hosts.contains_key(&d) {
                return Err(Error::Config(format!(
                    "default_host {d:?} is not among the configured hosts"
                )));
            }
            self.default_host = Some(d);
        }
        Ok(())
    }

    /// Checks the whole configuration once everything is loaded.
    pub fn finish(&mut self) -> Result<()> {
        if self.hosts.is_empty() {
            return Err(Error::Config(
                "no SSH host configured: pass --ssh USER@HOST[:PORT] or --config FILE".into(),
            ));
        }
        if self.default_host.is_none() && self.hosts.len() == 1 {
            self.default_host = self.hosts.keys().next().cloned();
        }
        Ok(())
    }
}

fn validate_host_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "host name {name:?} may hold only letters, digits, '-', '_' and '.'"
        )))
    }
}

/// Parses `[user@]host[:port]` (IPv6 as `[addr]:port`) into a host.
fn host_from_destination(name: &str, dest: &str, d: &HostDefaults) -> Result<HostConfig> {
    let bad = |why: &str| {
        Error::Config(format!(
            "SSH destination {dest:?} of host {name:?}: {why} (expected [user@]host[:port])"
        ))
    };
    let (user, rest) = match dest.rsplit_once('@') {
        Some((u, r)) if !u.is_empty() => (u.to_string(), r),
        Some(_) => return Err(bad("empty user")),
        None => (current_user(), dest),
    };
    let (hostname, port) = if let Some(inner) = rest.strip_prefix('[') {
        let (h, after) = inner.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
        let port = match after.strip_prefix(':') {
            Some(p) => parse_port(p).ok_or_else(|| bad("bad port"))?,
            None if after.is_empty() => 22,
            None => return Err(bad("junk after ']'")),
        };
        (h.to_string(), port)
    } else {
        match rest.split_once(':') {
            Some((h, p)) if !p.contains(':') => {
                (h.to_string(), parse_port(p).ok_or_else(|| bad("bad port"))?)
            }
            Some(_) => (rest.to_string(), 22), // bare IPv6 address
            None => (rest.to_string(), 22),
        }
    };
    if hostname.is_empty() {
        return Err(bad("empty host"));
    }
    Ok(HostConfig {
        name: name.to_string(),
        user,
        hostname,
        port,
        identity: d.identity.clone(),
        known_hosts: d.known_hosts.clone(),
        passphrase: d.passphrase.clone(),
        host_key_policy: d.host_key_policy,
        keepalive_interval: d.keepalive_interval,
        keepalive_max: d.keepalive_max,
        reconnect: d.reconnect,
        rekey_limit: d.rekey_limit,
        ciphers: d.ciphers.clone(),
        window_size: d.window_size,
        max_packet: d.max_packet,
        thread: d.thread,
        exec_idle_timeout: d.exec_idle_timeout,
        policy: d.policy.clone(),
    })
}

/// An empty list in the file means "nothing", as `none` does; an absent key
/// means "no restriction".
fn none_if_empty(list: Vec<String>) -> Vec<String> {
    if list.is_empty() {
        vec!["none".to_string()]
    } else {
        list
    }
}

/// Parses a positive duration such as `500ms`, `15s` or `2m`, up to 365
/// days ([`tunnel_proto::duration`], the one range of flags, config and API).
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    BoundedDuration::parse_positive(s).map(BoundedDuration::get)
}

/// Parses a duration that may be zero (`0` or `0s`: "not at all"), up to
/// 365 days.
pub fn parse_duration_or_zero(s: &str) -> std::result::Result<Duration, String> {
    BoundedDuration::parse(s).map(BoundedDuration::get)
}

/// Parses a positive size in bytes with an optional `KiB`, `MiB` or `GiB`
/// suffix.
pub fn parse_size(s: &str) -> std::result::Result<usize, String> {
    let t = s.trim();
    let (num, mult) = [("GiB", 1usize << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)]
        .iter()
        .find_map(|(suffix, m)| t.strip_suffix(suffix).map(|n| (n, *m)))
        .unwrap_or((t, 1));
    match num.trim().parse::<usize>() {
        Ok(n) if n > 0 => n
            .checked_mul(mult)
            .ok_or_else(|| format!("{s:?} is too large")),
        _ => Err(format!("{s:?} is not a size (e.g. 8MiB, 512KiB, 65536)")),
    }
}

fn parse_port(s: &str) -> Option<u16> {
    s.parse::<u16>().ok().filter(|p| *p != 0)
}

fn current_user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "root".to_string())
}

/// Expands a leading `~/` to `$HOME`.
pub fn expand_home(p: &Path) -> PathBuf {
    match (p.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => p.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> HostDefaults {
        HostDefaults {
            identity: "/k".into(),
            known_hosts: "/kh".into(),
            passphrase: None,
            host_key_policy: HostKeyPolicy::Strict,
            keepalive_interval: DEFAULT_KEEPALIVE_INTERVAL,
            keepalive_max: DEFAULT_KEEPALIVE_MAX,
            reconnect: Backoff::default(),
            rekey_limit: DEFAULT_REKEY_LIMIT,
            ciphers: crate::ssh::ciphers::default_order(),
            window_size: DEFAULT_SSH_WINDOW,
            max_packet: DEFAULT_SSH_MAX_PACKET,
            thread: crate::ssh::HostThread::default(),
            exec_idle_timeout: DEFAULT_EXEC_IDLE_TIMEOUT,
            policy: HostPolicy::default(),
        }
    }

    #[test]
    fn hosts_set_their_own_forward_rules() {
        let mut c = Config::default();
        c.load_str(
            "allow_local_bind = [\"0.0.0.0\"]\n[hosts.a]\naddress = \"h\"\npermit_open = [\"db:5432\"]\n[hosts.b]\naddress = \"h\"\npermit_listen = []\n",
            &defaults(),
        )
        .unwrap();
        assert!(c.hosts["a"].policy.check_open("a", "db", 5432).is_ok());
        assert!(c.hosts["a"].policy.check_open("a", "db", 22).is_err());
        assert!(
            c.hosts["a"]
                .policy
                .check_listen("a", "localhost", 80)
                .is_ok()
        );
        assert!(
            c.hosts["b"]
                .policy
                .check_listen("b", "localhost", 80)
                .is_err()
        );
        assert!(c.hosts["b"].policy.check_open("b", "x", 1).is_ok());
        assert!(
            c.allow_local_bind
                .check("0.0.0.0", [0, 0, 0, 0].into())
                .is_ok()
        );
        let e = Config::default()
            .load_str(
                "[hosts.a]\naddress = \"h\"\npermit_open = [\"db\"]\n",
                &defaults(),
            )
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("host \"a\": permit_open") && e.contains("HOST:PORT"),
            "{e}"
        );
    }

    #[test]
    fn destinations_parse_like_ssh() {
        let h = host_from_destination("a", "bob@example.com:2222", &defaults()).unwrap();
        assert_eq!(
            (h.user.as_str(), h.hostname.as_str(), h.port),
            ("bob", "example.com", 2222)
        );
        let h = host_from_destination("a", "example.com", &defaults()).unwrap();
        assert_eq!((h.hostname.as_str(), h.port), ("example.com", 22));
        let h = host_from_destination("a", "u@[::1]:2200", &defaults()).unwrap();
        assert_eq!((h.hostname.as_str(), h.port), ("::1", 2200));
        assert_eq!(h.addr(), "[::1]:2200");
        assert!(host_from_destination("a", "u@h:70000", &defaults()).is_err());
        assert!(host_from_destination("a", "@h", &defaults()).is_err());
        assert!(host_from_destination("a", "u@", &defaults()).is_err());
    }

    #[test]
    fn file_hosts_take_defaults_and_overrides() {
        let mut c = Config::default();
        c.load_str(
            r#"
            default_host = "db"
            [hosts.db]
            address = "pg@10.0.0.5"
            identity = "/keys/db"
            host_key_policy = "accept-new"
            passphrase_env = "DB_KEY_PASS"
            [hosts.web]
            address = "web:2022"
            "#,
            &defaults(),
        )
        .unwrap();
        c.finish().unwrap();
        assert_eq!(c.default_host.as_deref(), Some("db"));
        let db = &c.hosts["db"];
        assert_eq!(db.identity, PathBuf::from("/keys/db"));
        assert_eq!(db.known_hosts, PathBuf::from("/kh"));
        assert_eq!(db.host_key_policy, HostKeyPolicy::AcceptNew);
        assert_eq!(
            db.passphrase,
            Some(PassphraseSource::Env("DB_KEY_PASS".into()))
        );
        assert_eq!(c.hosts["web"].port, 2022);
    }

    #[test]
    fn hosts_set_their_own_reconnect_and_rekey() {
        let mut c = Config::default();
        c.load_str(
            "[hosts.a]\naddress = \"u@h\"\nreconnect_min = \"200ms\"\nreconnect_max = \"2s\"\nrekey_limit = \"256MiB\"\n",
            &defaults(),
        )
        .unwrap();
        let a = &c.hosts["a"];
        assert_eq!(
            a.reconnect,
            Backoff {
                min: Duration::from_millis(200),
                max: Duration::from_secs(2)
            }
        );
        assert_eq!(a.rekey_limit, 256 << 20);
        let e = Config::default()
            .load_str(
                "[hosts.a]\naddress = \"h\"\nreconnect_min = \"5s\"\nreconnect_max = \"1s\"\n",
                &defaults(),
            )
            .unwrap_err()
            .to_string();
        assert!(e.contains("reconnect_max is shorter"), "{e}");
        let e = Config::default()
            .load_str(
                "[hosts.a]\naddress = \"h\"\nreconnect_min = \"0s\"\n",
                &defaults(),
            )
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("reconnect_min") && e.contains("longer than zero"),
            "{e}"
        );
    }

    #[test]
    fn sizes_take_binary_suffixes() {
        assert_eq!(parse_size("4GiB"), Ok(4 << 30));
        assert_eq!(parse_size("8MiB"), Ok(8 << 20));
        assert_eq!(parse_size("512KiB"), Ok(512 << 10));
        assert_eq!(parse_size("65536"), Ok(65536));
        assert!(parse_size("0").is_err());
        assert!(parse_size("4GB").is_err());
    }

    #[test]
    fn the_shipped_example_parses() {
        let mut c = Config::default();
        c.load_str(include_str!("../../../deploy/hosts.example.toml"), &defaults())
            .unwrap();
        c.finish().unwrap();
        assert_eq!(c.default_host.as_deref(), Some("bastion"));
        assert_eq!(c.hosts["db-jump"].port, 2222);
        assert_eq!(
            c.hosts["bastion"].keepalive_interval,
            Duration::from_secs(15)
        );
    }

    #[test]
    fn bad_files_are_refused_with_the_reason() {
        let mut c = Config::default();
        let e = c.load_str(
            "[hosts.x]\naddress = \"h\"\nidentty = \"/k\"\n",
            &defaults(),
        );
        assert!(e.unwrap_err().to_string().contains("identty"));
        let e = Config::default().load_str("default_host = \"nope\"\n", &defaults());
        assert!(e.unwrap_err().to_string().contains("nope"));
        assert!(Config::default().finish().is_err());
    }
}
