//! The real `tunneld` binary as a child process, and a gRPC client to it.
//!
//! The daemon's contract, as the fixture relies on it:
//! `tunneld --listen 127.0.0.1:0 --ssh USER@HOST:PORT --identity KEY
//! --known-hosts FILE [--config FILE.toml] [--host-key-policy POLICY]` prints
//! exactly one line to stdout once bound — `tunneld listening on ADDR` —
//! logs to stderr, and exits 0 soon after SIGINT or SIGTERM. With
//! `--listen unix:PATH` (see [`TunneldBuilder::listen_unix`]) the line is
//! `tunneld listening on unix:PATH`.
//!
//! Protected daemons: [`TunneldBuilder::tokens`] (a `--token-file`),
//! [`TunneldBuilder::tls`] / [`TunneldBuilder::mtls`] (`--tls-cert`,
//! `--tls-key`, `--tls-client-ca`). The fixture's client then sends the
//! token and presents the client certificate; [`Tunneld::client_with`] and
//! [`connect_lazy`] call with any other [`Credentials`].

use std::fmt;
use std::future::Future;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tonic::transport::{Channel, Endpoint};

use tunnel_proto::v1::tunnel_service_client::TunnelServiceClient;

use crate::Client;
use crate::auth::{ClientTls, Credentials, write_token_file};
use crate::binaries;
use crate::pki::{CertFiles, Pki};
use crate::sshd::Sshd;

/// The line tunneld prints on stdout once its gRPC listener is bound.
pub const LISTENING_PREFIX: &str = "tunneld listening on ";

/// How long tunneld may take from exec to its "listening" line.
pub const DAEMON_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long [`Tunneld::terminate`] waits for the process after SIGTERM
/// before giving up (the contract is "a few seconds").
pub const TERMINATE_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether `bin --help` lists `flag`; asked once per binary and flag.
fn knows_flag(bin: &Path, flag: &str) -> bool {
    static SEEN: std::sync::Mutex<Vec<(PathBuf, String, bool)>> = std::sync::Mutex::new(Vec::new());
    let mut seen = SEEN.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, _, known)) = seen.iter().find(|(b, f, _)| b == bin && f == flag) {
        return *known;
    }
    let known = std::process::Command::new(bin)
        .arg("--help")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(flag));
    seen.push((bin.to_path_buf(), flag.to_string(), known));
    known
}

/// How one SSH host is reached: the fields of a `[hosts.NAME]` table (and of
/// the `--ssh`/`--identity`/`--known-hosts` flags for the default host).
#[derive(Debug, Clone)]
pub struct HostSpec {
    /// `user@host[:port]`.
    pub address: String,
    /// Private key to authenticate with.
    pub identity: PathBuf,
    /// known_hosts file to verify the server's key against.
    pub known_hosts: PathBuf,
    /// `strict` or `accept-new`; `None` leaves the daemon's default.
    pub host_key_policy: Option<String>,
    /// File holding the identity's passphrase (`passphrase_file`).
    pub passphrase_file: Option<PathBuf>,
    /// Daemon environment variable holding it (`passphrase_env`).
    pub passphrase_env: Option<String>,
    /// `permit_open` patterns (targets of local forwards); `None` leaves the
    /// key out.
    pub permit_open: Option<Vec<String>>,
    /// `permit_listen` patterns (server-side binds of remote forwards);
    /// `None` leaves the key out.
    pub permit_listen: Option<Vec<String>>,
    /// Other keys of the host's table, as given (`identities_only`,
    /// `identity_agent`, `certificate`, ...); they override the above.
    pub extra: toml::Table,
    /// Jump hosts, `[user@]host[:port]` each, first dialled first: `--jump
    /// A,B` for the default host, `proxy_jump = [..]` for a named one;
    /// `None` leaves them out.
    pub jump: Option<Vec<String>>,
}

impl HostSpec {
    /// The fixture sshd as it is: its user, port, authorized key and known_hosts.
    pub fn from_sshd(sshd: &Sshd) -> HostSpec {
        HostSpec {
            identity: sshd.identity().to_path_buf(),
            known_hosts: sshd.known_hosts().to_path_buf(),
            ..HostSpec::alias(sshd.address())
        }
    }

    /// The same host with `key = value` in its table (overriding the
    /// fields above, e.g. `identity = []` for no key file at all).
    pub fn with_key(mut self, key: &str, value: impl Into<toml::Value>) -> Self {
        self.extra.insert(key.into(), value.into());
        self
    }

    /// The same host reached through jump hosts (`user@host:port` each,
    /// first dialled first), as `ssh -J`. Each hop is verified and
    /// authenticated with the default host's known_hosts and identity.
    pub fn with_jump(mut self, hops: &[String]) -> Self {
        self.jump = Some(hops.to_vec());
        self
    }

    /// The same host with `permit_open = [patterns]` (`HOST:PORT`, `*`
    /// wildcards, `none`).
    pub fn with_permit_open(mut self, patterns: &[&str]) -> Self {
        self.permit_open = Some(patterns.iter().map(|p| p.to_string()).collect());
        self
    }

    /// The same host with `permit_listen = [patterns]` (`[HOST:]PORT`, `*`,
    /// `none`).
    pub fn with_permit_listen(mut self, patterns: &[&str]) -> Self {
        self.permit_listen = Some(patterns.iter().map(|p| p.to_string()).collect());
        self
    }

    /// The same host with the identity's passphrase read from `file`.
    pub fn with_passphrase_file(mut self, file: impl Into<PathBuf>) -> Self {
        self.passphrase_file = Some(file.into());
        self
    }

    /// The same host with the identity's passphrase in the daemon's
    /// environment variable `var`.
    pub fn with_passphrase_env(mut self, var: impl Into<String>) -> Self {
        self.passphrase_env = Some(var.into());
        self
    }

    /// The same host with another identity file.
    pub fn with_identity(mut self, identity: impl Into<PathBuf>) -> Self {
        self.identity = identity.into();
        self
    }

    /// The same host with another known_hosts file.
    pub fn with_known_hosts(mut self, known_hosts: impl Into<PathBuf>) -> Self {
        self.known_hosts = known_hosts.into();
        self
    }

    /// The same host with another address (`user@host:port`).
    pub fn with_address(mut self, address: impl Into<String>) -> Self {
        self.address = address.into();
        self
    }

    /// The same host with a host key policy (`strict` or `accept-new`).
    pub fn with_policy(mut self, policy: impl Into<String>) -> Self {
        self.host_key_policy = Some(policy.into());
        self
    }

    /// A host given only by its ssh_config alias: no identity, no
    /// known_hosts, nothing else; ssh_config says the rest.
    pub fn alias(alias: impl Into<String>) -> HostSpec {
        HostSpec {
            address: alias.into(),
            identity: PathBuf::new(),
            known_hosts: PathBuf::new(),
            host_key_policy: None,
            passphrase_file: None,
            passphrase_env: None,
            permit_open: None,
            permit_listen: None,
            extra: toml::Table::new(),
            jump: None,
        }
    }

    /// The host as a config file's `[hosts.NAME]` table.
    pub fn to_toml(&self) -> toml::Table {
        let mut t = toml::Table::new();
        t.insert("address".into(), self.address.clone().into());
        if !self.identity.as_os_str().is_empty() {
            t.insert(
                "identity".into(),
                self.identity.display().to_string().into(),
            );
        }
        if !self.known_hosts.as_os_str().is_empty() {
            t.insert(
                "known_hosts".into(),
                self.known_hosts.display().to_string().into(),
            );
        }
        if let Some(p) = &self.host_key_policy {
            t.insert("host_key_policy".into(), p.clone().into());
        }
        if let Some(f) = &self.passphrase_file {
            t.insert("passphrase_file".into(), f.display().to_string().into());
        }
        if let Some(v) = &self.passphrase_env {
            t.insert("passphrase_env".into(), v.clone().into());
        }
        for (key, list) in [
            ("permit_open", &self.permit_open),
            ("permit_listen", &self.permit_listen),
            ("proxy_jump", &self.jump),
        ] {
            if let Some(list) = list {
                let values: toml::value::Array = list.iter().map(|p| p.clone().into()).collect();
                t.insert(key.into(), values.into());
            }
        }
        t.extend(self.extra.clone());
        t
    }
}

/// Where a daemon's gRPC API listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiAddr {
    /// A TCP address (the default: an ephemeral port of 127.0.0.1).
    Tcp(SocketAddr),
    /// A unix socket path.
    Unix(PathBuf),
}

impl fmt::Display for ApiAddr {
    /// The form `tunnelctl --addr` takes: `127.0.0.1:PORT` or `unix:/path`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiAddr::Tcp(addr) => write!(f, "{addr}"),
            ApiAddr::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// Builds a [`Tunneld`]: the default host, named config hosts, extra args,
/// and how the API is protected (tokens, TLS) and reached by the fixture's
/// client.
#[derive(Debug, Clone)]
pub struct TunneldBuilder {
    default: HostSpec,
    /// `--listen unix:PATH` instead of 127.0.0.1:0.
    unix: Option<PathBuf>,
    /// `--listen HOST:PORT` instead of 127.0.0.1:0.
    listen: Option<String>,
    hosts: Vec<(String, HostSpec)>,
    args: Vec<String>,
    env: Vec<(String, String)>,
    /// Written to a `--token-file` (0600) in the daemon's temp dir.
    tokens: Vec<(String, Hidden)>,
    /// `--tls-cert`/`--tls-key` and the optional `--tls-client-ca`.
    tls: Option<(CertFiles, Option<PathBuf>)>,
    /// The certificate the fixture's client presents.
    client_cert: Option<CertFiles>,
    /// Replaces what the fixture's client sends (see [`Self::client_credentials`]).
    client_credentials: Option<Credentials>,
    /// `--audit-log` into the daemon's temp dir.
    audit_log: bool,
    /// Soft and hard open-file limit the daemon starts with (`prlimit`).
    nofile: Option<u64>,
    /// Whether `RUST_LOG` is removed, so tunneld logs with its own default.
    default_log: bool,
    /// `--ssh-config FILE`; `none` unless set, so the runner's own
    /// ~/.ssh/config never changes a test.
    ssh_config: Option<PathBuf>,
    /// `--state-dir DIR`; a fresh dir in the temp dir unless set.
    state_dir: Option<PathBuf>,
    /// `[tunnels.NAME]` tables of the config file.
    tunnels: Vec<(String, toml::Table)>,
    /// Whether the default host is left out (`--ssh` not given): the
    /// daemon starts with no host, its identity and known_hosts still the
    /// defaults of hosts added later.
    no_ssh_host: bool,
}

impl TunneldBuilder {
    /// A daemon whose default host is `default`.
    pub fn new(default: HostSpec) -> Self {
        TunneldBuilder {
            default,
            unix: None,
            listen: None,
            hosts: Vec::new(),
            args: Vec::new(),
            env: vec![("RUST_LOG".into(), "tunneld=debug".into())],
            tokens: Vec::new(),
            tls: None,
            client_cert: None,
            client_credentials: None,
            audit_log: false,
            nofile: None,
            default_log: false,
            ssh_config: None,
            state_dir: None,
            tunnels: Vec::new(),
            no_ssh_host: false,
        }
    }

    /// Starts tunneld without `--ssh`: no host until one is added (AddHost)
    /// or restored; the default host's identity and known_hosts are still
    /// passed, as every host's defaults.
    pub fn without_ssh_host(mut self) -> Self {
        self.no_ssh_host = true;
        self
    }

    /// Adds a `[tunnels.NAME]` table to the daemon's config file, e.g.
    /// `local = "PORT:HOST:PORT"`.
    pub fn tunnel(mut self, name: impl Into<String>, table: toml::Table) -> Self {
        self.tunnels.push((name.into(), table));
        self
    }

    /// Keeps tunneld's state in `dir` (`--state-dir`), so a later daemon
    /// started with the same dir restores what this one persisted. Without
    /// it each daemon gets a fresh state dir in its temp dir.
    pub fn state_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.state_dir = Some(dir.into());
        self
    }

    /// Resolves hosts through this ssh_config file (`--ssh-config FILE`)
    /// instead of none.
    pub fn ssh_config(mut self, path: impl Into<PathBuf>) -> Self {
        self.ssh_config = Some(path.into());
        self
    }

    /// Starts the daemon with `n` as its soft and hard open-file limit (as
    /// `ulimit -n n` would), through `prlimit`.
    pub fn nofile(mut self, n: u64) -> Self {
        self.nofile = Some(n);
        self
    }

    /// Starts the daemon without `RUST_LOG`, so it logs with its default
    /// filter (what an operator gets).
    pub fn default_log(mut self) -> Self {
        self.env.retain(|(k, _)| k != "RUST_LOG");
        self.default_log = true;
        self
    }

    /// Adds a `[hosts.NAME]` table to the daemon's config file.
    pub fn host(mut self, name: impl Into<String>, spec: HostSpec) -> Self {
        self.hosts.push((name.into(), spec));
        self
    }

    /// Serves the API on a unix socket at `path` (`--listen unix:PATH`)
    /// instead of 127.0.0.1:0; the fixture's client then connects there.
    pub fn listen_unix(mut self, path: impl Into<PathBuf>) -> Self {
        self.unix = Some(path.into());
        self
    }

    /// Serves the API on this TCP address (`--listen ADDR`, e.g.
    /// `0.0.0.0:0`) instead of 127.0.0.1:0. The fixture's client connects to
    /// the loopback address of the same family when ADDR is unspecified.
    pub fn listen(mut self, addr: impl Into<String>) -> Self {
        self.listen = Some(addr.into());
        self
    }

    /// Appends a command-line argument.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Sets an environment variable for the daemon (`RUST_LOG` defaults to
    /// `tunneld=debug`).
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Requires a token: writes `NAME:TOKEN` lines to a file (mode 0600) and
    /// passes `--token-file`. The fixture's client sends the first token as
    /// `authorization: Bearer TOKEN`.
    pub fn tokens(mut self, tokens: &[(&str, &str)]) -> Self {
        self.tokens.extend(
            tokens
                .iter()
                .map(|(name, token)| (name.to_string(), Hidden(token.to_string()))),
        );
        self
    }

    /// Serves TLS with `server`'s certificate and key (`--tls-cert`,
    /// `--tls-key`) and, with `client_ca`, requires client certificates
    /// signed by it (`--tls-client-ca`). The fixture's client trusts
    /// `server.ca` and checks the name `localhost`; give it a certificate
    /// with [`Self::client_cert`].
    pub fn tls(mut self, server: CertFiles, client_ca: Option<PathBuf>) -> Self {
        self.tls = Some((server, client_ca));
        self
    }

    /// The certificate the fixture's client presents.
    pub fn client_cert(mut self, cert: CertFiles) -> Self {
        self.client_cert = Some(cert);
        self
    }

    /// Mutual TLS from one CA: a server certificate for localhost/127.0.0.1,
    /// `--tls-client-ca` that CA, and a client certificate `CN=fixture` for
    /// the fixture's client.
    pub fn mtls(self, pki: &Pki) -> Result<Self> {
        let server = pki.server()?;
        let client = pki.client("fixture")?;
        Ok(self
            .tls(server, Some(pki.ca_cert().to_path_buf()))
            .client_cert(client))
    }

    /// What the fixture's client sends, instead of what the token and TLS
    /// settings above imply (e.g. for a `--token-file` passed with
    /// [`Self::arg`]).
    pub fn client_credentials(mut self, creds: Credentials) -> Self {
        self.client_credentials = Some(creds);
        self
    }

    /// Writes audit lines to `audit.jsonl` in the daemon's temp dir
    /// (`--audit-log`); see [`Tunneld::audit_log`].
    pub fn audit_log(mut self) -> Self {
        self.audit_log = true;
        self
    }

    /// What the fixture's client sends.
    fn credentials(&self) -> Credentials {
        if let Some(c) = &self.client_credentials {
            return c.clone();
        }
        let mut creds = Credentials::none();
        if let Some((_, token)) = self.tokens.first() {
            creds = creds.with_bearer(&token.0);
        }
        if let Some((server, _)) = &self.tls {
            let mut tls = ClientTls::trusting(&server.ca);
            if let Some(cert) = &self.client_cert {
                tls = tls.with_identity(cert.clone());
            }
            creds = creds.with_tls(tls);
        }
        creds
    }

    /// Builds (once per process) and starts tunneld, waits for its listening
    /// line and connects a client.
    pub async fn start(self) -> Result<Tunneld> {
        let bin = tunneld_bin().await?;
        self.start_binary(&bin).await
    }

    /// Starts tunneld expecting it to refuse to start: returns its exit
    /// status and output once it exits. Fails as soon as it prints its
    /// listening line, or if it neither exits nor listens within
    /// [`DAEMON_READY_TIMEOUT`].
    pub async fn start_refused(self) -> Result<Refused> {
        let bin = tunneld_bin().await?;
        let dir = daemon_dir()?;
        let stderr_path = dir.path().join("tunneld.stderr.log");
        let stderr = std::fs::File::create(&stderr_path).context("creating tunneld stderr log")?;
        let (mut cmd, _) = self.command(&bin, dir.path())?;
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let log = || std::fs::read_to_string(&stderr_path).unwrap_or_default();
        let stdout = child
            .stdout
            .take()
            .context("tunneld stdout was not piped")?;
        let outcome = tokio::time::timeout(DAEMON_READY_TIMEOUT, async {
            let mut lines = BufReader::new(stdout).lines();
            let mut seen = String::new();
            while let Some(line) = lines.next_line().await? {
                if line.starts_with(LISTENING_PREFIX) {
                    return Ok(Err(line));
                }
                seen.push_str(&line);
                seen.push('\n');
            }
            let status = child.wait().await?;
            anyhow::Ok(Ok((status, seen)))
        })
        .await;
        match outcome {
            Ok(Ok(Ok((status, stdout)))) => Ok(Refused {
                status,
                stdout,
                stderr: log(),
            }),
            Ok(Ok(Err(line))) => {
                let _ = child.kill().await;
                bail!(
                    "tunneld started ({line}) though it should have refused to; its stderr:\n{}",
                    log()
                )
            }
            Ok(Err(e)) => {
                let _ = child.kill().await;
                Err(e.context("waiting for tunneld"))
            }
            Err(_) => {
                let _ = child.kill().await;
                bail!(
                    "tunneld neither exited nor listened within {DAEMON_READY_TIMEOUT:?}; \
                     its stderr:\n{}",
                    log()
                )
            }
        }
    }

    /// The command line for `bin`, with its config, token file and audit log
    /// in `dir`; also returns the audit log path when asked for.
    fn command(&self, bin: &Path, dir: &Path) -> Result<(Command, Option<PathBuf>)> {
        let listen = match (&self.unix, &self.listen) {
            (Some(path), _) => format!("unix:{}", path.display()),
            (None, Some(addr)) => addr.clone(),
            (None, None) => "127.0.0.1:0".to_string(),
        };
        let mut cmd = match self.nofile {
            // prlimit sets the limit and execs tunneld: same pid.
            Some(n) => {
                let mut cmd = Command::new("prlimit");
                cmd.arg(format!("--nofile={n}:{n}")).arg("--").arg(bin);
                cmd
            }
            None => Command::new(bin),
        };
        if self.default_log {
            cmd.env_remove("RUST_LOG");
        }
        // The runner's own agent must not change what a test offers; a test
        // that wants one sets it with `env`.
        cmd.env_remove("SSH_AUTH_SOCK");
        cmd.arg("--listen").arg(listen);
        if !self.no_ssh_host {
            cmd.arg("--ssh").arg(&self.default.address);
        }
        // A binary from before ssh_config support (the bench's A/B runs)
        // reads none anyway.
        if self.ssh_config.is_some() || knows_flag(bin, "--ssh-config") {
            cmd.arg("--ssh-config").arg(
                self.ssh_config
                    .clone()
                    .unwrap_or_else(|| PathBuf::from("none")),
            );
        }
        // An alias spec leaves identity and known_hosts to ssh_config.
        if !self.default.identity.as_os_str().is_empty() {
            cmd.arg("--identity").arg(&self.default.identity);
        }
        if !self.default.known_hosts.as_os_str().is_empty() {
            cmd.arg("--known-hosts").arg(&self.default.known_hosts);
        }
        if let Some(policy) = &self.default.host_key_policy {
            cmd.arg("--host-key-policy").arg(policy);
        }
        for pattern in self.default.permit_open.iter().flatten() {
            cmd.arg("--permit-open").arg(pattern);
        }
        for pattern in self.default.permit_listen.iter().flatten() {
            cmd.arg("--permit-listen").arg(pattern);
        }
        if let Some(hops) = self.default.jump.as_ref().filter(|_| !self.no_ssh_host) {
            cmd.arg("--jump").arg(hops.join(","));
        }
        if !self.hosts.is_empty() || !self.tunnels.is_empty() {
            let mut hosts = toml::Table::new();
            for (name, spec) in &self.hosts {
                hosts.insert(name.clone(), spec.to_toml().into());
            }
            let mut root = toml::Table::new();
            root.insert("hosts".into(), hosts.into());
            let tunnels: toml::Table = self
                .tunnels
                .iter()
                .map(|(name, table)| (name.clone(), table.clone().into()))
                .collect();
            root.insert("tunnels".into(), tunnels.into());
            let config = dir.join(CONFIG_FILE_NAME);
            std::fs::write(&config, toml::to_string(&root)?).context("writing tunneld.toml")?;
            cmd.arg("--config").arg(config);
        }
        if !self.tokens.is_empty() {
            let file = dir.join(TOKEN_FILE_NAME);
            let tokens: Vec<(String, String)> = self
                .tokens
                .iter()
                .map(|(name, token)| (name.clone(), token.0.clone()))
                .collect();
            write_token_file(&file, &tokens)?;
            cmd.arg("--token-file").arg(file);
        }
        if let Some((server, client_ca)) = &self.tls {
            cmd.arg("--tls-cert")
                .arg(&server.cert)
                .arg("--tls-key")
                .arg(&server.key);
            if let Some(ca) = client_ca {
                cmd.arg("--tls-client-ca").arg(ca);
            }
        }
        // Never the runner's own ~/.local/state: parallel daemons would
        // share (and lock) one store. A binary from before the store (the
        // bench's A/B runs) takes no such flag.
        let state_flag = self.args.iter().any(|a| a.starts_with("--state-dir"));
        if !state_flag && (self.state_dir.is_some() || knows_flag(bin, "--state-dir")) {
            cmd.arg("--state-dir")
                .arg(self.state_dir.clone().unwrap_or_else(|| dir.join("state")));
        }
        // Tests stop tunneld at once unless they are about the drain (and
        // set --drain-timeout themselves).
        let drain_flag = self.args.iter().any(|a| a.starts_with("--drain-timeout"));
        if !drain_flag && knows_flag(bin, "--drain-timeout") {
            cmd.arg("--drain-timeout").arg("0");
        }
        let audit = self.audit_log.then(|| dir.join(AUDIT_LOG_NAME));
        if let Some(path) = &audit {
            cmd.arg("--audit-log").arg(path);
        }
        cmd.args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .kill_on_drop(true);
        Ok((cmd, audit))
    }

    /// Starts this exact executable (no lookup, no build).
    pub async fn start_binary(self, bin: &Path) -> Result<Tunneld> {
        let dir = daemon_dir()?;
        let stderr_path = dir.path().join("tunneld.stderr.log");
        let stderr = std::fs::File::create(&stderr_path).context("creating tunneld stderr log")?;
        let (mut cmd, audit_log) = self.command(bin, dir.path())?;
        let config_file = (!self.hosts.is_empty() || !self.tunnels.is_empty())
            .then(|| dir.path().join(CONFIG_FILE_NAME));
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;

        let addr = match wait_for_listening(&mut child, self.unix.as_deref()).await {
            Ok(addr) => addr,
            Err(e) => {
                let _ = child.kill().await;
                let log = std::fs::read_to_string(&stderr_path).unwrap_or_default();
                return Err(e.context(format!("tunneld did not start; its stderr:\n{log}")));
            }
        };
        let credentials = self.credentials();
        let client = match connect_with(&addr, &credentials).await {
            Ok(client) => client,
            Err(e) => {
                let _ = child.kill().await;
                let log = std::fs::read_to_string(&stderr_path).unwrap_or_default();
                return Err(e.context(format!("tunneld's stderr:\n{log}")));
            }
        };
        Ok(Tunneld {
            child,
            addr,
            client,
            credentials,
            token: self.tokens.first().map(|(_, t)| t.clone()),
            token_file: (!self.tokens.is_empty()).then(|| dir.path().join(TOKEN_FILE_NAME)),
            audit_log,
            config_file,
            stderr_path,
            _dir: dir,
        })
    }
}

/// File name of the `--config` file in the daemon's temp dir.
const CONFIG_FILE_NAME: &str = "tunneld.toml";

/// File name of the `--audit-log` in the daemon's temp dir.
const AUDIT_LOG_NAME: &str = "audit.jsonl";

/// File name of the `--token-file` in the daemon's temp dir.
const TOKEN_FILE_NAME: &str = "tokens";

/// The tunneld binary, built once per process.
async fn tunneld_bin() -> Result<PathBuf> {
    tokio::task::spawn_blocking(|| binaries::bin_path("tunneld"))
        .await
        .context("binary lookup task panicked")?
}

/// A temp dir for one daemon's config, token file, audit log and stderr.
fn daemon_dir() -> Result<TempDir> {
    tempfile::Builder::new()
        .prefix("tunneld-daemon-")
        .tempdir()
        .context("creating daemon temp dir")
}

/// A tunneld that exited instead of serving ([`TunneldBuilder::start_refused`]).
#[derive(Debug)]
pub struct Refused {
    /// How it exited.
    pub status: ExitStatus,
    /// Everything it printed on stdout.
    pub stdout: String,
    /// Everything it printed on stderr (its log and error message).
    pub stderr: String,
}

/// Reads the first stdout line, which must be the listening line, then keeps
/// draining stdout so the daemon can never block on a full pipe. With `unix`
/// set the line must name that socket.
async fn wait_for_listening(child: &mut Child, unix: Option<&Path>) -> Result<ApiAddr> {
    let stdout = child
        .stdout
        .take()
        .context("tunneld stdout was not piped")?;
    let mut lines = BufReader::new(stdout);
    let mut line = String::new();
    let read = tokio::time::timeout(DAEMON_READY_TIMEOUT, lines.read_line(&mut line))
        .await
        .with_context(|| format!("no line on tunneld's stdout within {DAEMON_READY_TIMEOUT:?}"))?
        .context("reading tunneld's stdout")?;
    if read == 0 {
        let status = child.wait().await?;
        bail!("tunneld exited ({status}) without printing its listening line");
    }
    let line = line.trim_end();
    let addr = line.strip_prefix(LISTENING_PREFIX).with_context(|| {
        format!("tunneld's first stdout line is {line:?}, expected \"{LISTENING_PREFIX}ADDR\"")
    })?;
    let addr = match unix {
        Some(path) => {
            let named = addr.strip_prefix("unix:").map(Path::new);
            if named != Some(path) {
                bail!(
                    "tunneld's listening line is {line:?}, expected it to name unix:{}",
                    path.display()
                );
            }
            ApiAddr::Unix(path.to_path_buf())
        }
        None => ApiAddr::Tcp(addr.parse().with_context(|| {
            format!("tunneld's listening line names no socket address: {line:?}")
        })?),
    };
    tokio::spawn(async move {
        let _ = tokio::io::copy(&mut lines, &mut tokio::io::sink()).await;
    });
    Ok(addr)
}

/// Connects a gRPC client to `addr` (plaintext, no token).
pub async fn connect(addr: SocketAddr) -> Result<Client> {
    connect_with(&ApiAddr::Tcp(addr), &Credentials::none()).await
}

/// Connects a gRPC client to a tunneld serving on the unix socket `path`
/// (no token).
pub async fn connect_unix(path: &Path) -> Result<Client> {
    connect_with(&ApiAddr::Unix(path.to_path_buf()), &Credentials::none()).await
}

/// Connects a gRPC client to `addr` with `creds` now (TCP and TLS
/// handshakes done; the token is only sent with calls).
pub async fn connect_with(addr: &ApiAddr, creds: &Credentials) -> Result<Client> {
    let channel = channel(addr, creds).await?;
    Ok(TunnelServiceClient::with_interceptor(
        channel,
        creds.interceptor()?,
    ))
}

/// A gRPC client to `addr` with `creds` that connects on its first call: a
/// refused connection or TLS handshake shows as that call's status (usually
/// `UNAVAILABLE`), which is what tests of wrong credentials look at.
pub fn connect_lazy(addr: &ApiAddr, creds: &Credentials) -> Result<Client> {
    let channel = channel_lazy(addr, creds)?;
    Ok(TunnelServiceClient::with_interceptor(
        channel,
        creds.interceptor()?,
    ))
}

/// A channel to `addr` (TLS if `creds` says so), connected now. Wrap it with
/// [`Credentials::interceptor`] to send the token, as with any tonic client:
/// `HealthClient::with_interceptor(channel, creds.interceptor()?)`.
pub async fn channel(addr: &ApiAddr, creds: &Credentials) -> Result<Channel> {
    let endpoint = endpoint(addr, creds)?;
    match addr {
        ApiAddr::Tcp(_) => endpoint.connect().await,
        ApiAddr::Unix(path) => endpoint.connect_with_connector(unix_connector(path)).await,
    }
    .with_context(|| format!("connecting a gRPC client to tunneld at {addr}"))
}

/// A channel to `addr` that connects on first use.
pub fn channel_lazy(addr: &ApiAddr, creds: &Credentials) -> Result<Channel> {
    let endpoint = endpoint(addr, creds)?;
    Ok(match addr {
        ApiAddr::Tcp(_) => endpoint.connect_lazy(),
        ApiAddr::Unix(path) => endpoint.connect_with_connector_lazy(unix_connector(path)),
    })
}

/// The endpoint for `addr`: `http://` or, with TLS, `https://` and the
/// client TLS config. An unspecified address (0.0.0.0, ::) is reached
/// through loopback.
fn endpoint(addr: &ApiAddr, creds: &Credentials) -> Result<Endpoint> {
    let endpoint = match addr {
        ApiAddr::Tcp(tcp) => {
            let mut target = *tcp;
            if target.ip().is_unspecified() {
                target.set_ip(match target {
                    SocketAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
                    SocketAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
                });
            }
            let scheme = if creds.tls.is_some() { "https" } else { "http" };
            Endpoint::from_shared(format!("{scheme}://{target}"))?
        }
        ApiAddr::Unix(_) => {
            ensure!(
                creds.tls.is_none(),
                "the fixtures do not speak TLS over a unix socket"
            );
            // The URI is required by tonic but unused: every connection goes to the socket.
            Endpoint::from_static("http://tunneld.invalid")
        }
    };
    let endpoint = endpoint.connect_timeout(CONNECT_TIMEOUT);
    match &creds.tls {
        Some(tls) => Ok(endpoint
            .tls_config(tls.config()?)
            .context("client TLS config")?),
        None => Ok(endpoint),
    }
}

/// Connects every connection of a channel to the unix socket `path`.
fn unix_connector(
    path: &Path,
) -> impl tower::Service<
    tonic::transport::Uri,
    Response = hyper_util::rt::TokioIo<tokio::net::UnixStream>,
    Error = std::io::Error,
    Future = impl Future<Output = std::io::Result<hyper_util::rt::TokioIo<tokio::net::UnixStream>>>
             + Send,
> + Clone
+ Send
+ 'static {
    let path = path.to_path_buf();
    tower::service_fn(move |_: tonic::transport::Uri| {
        let path = path.clone();
        async move {
            let stream = tokio::net::UnixStream::connect(path).await?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
        }
    })
}

/// How long a client may take to connect (and finish the TLS handshake).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A secret whose `Debug` does not show it.
#[derive(Clone)]
struct Hidden(String);

impl fmt::Debug for Hidden {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<hidden>")
    }
}

/// A running tunneld; killed when dropped.
#[derive(Debug)]
pub struct Tunneld {
    child: Child,
    addr: ApiAddr,
    client: Client,
    /// What the fixture's client sends.
    credentials: Credentials,
    /// The first token of [`TunneldBuilder::tokens`].
    token: Option<Hidden>,
    /// The `--token-file` written from [`TunneldBuilder::tokens`].
    token_file: Option<PathBuf>,
    audit_log: Option<PathBuf>,
    /// The `--config` file written from the builder's hosts and tunnels.
    config_file: Option<PathBuf>,
    stderr_path: PathBuf,
    /// Holds the config file, token file, audit log and stderr log.
    _dir: TempDir,
}

impl Tunneld {
    /// A builder whose default host is the fixture sshd.
    pub fn builder(sshd: &Sshd) -> TunneldBuilder {
        TunneldBuilder::new(HostSpec::from_sshd(sshd))
    }

    /// Starts a daemon whose only host is `sshd`, as `default`.
    pub async fn start(sshd: &Sshd) -> Result<Tunneld> {
        Self::builder(sshd).start().await
    }

    /// The gRPC listening address.
    ///
    /// # Panics
    /// If the daemon listens on a unix socket ([`TunneldBuilder::listen_unix`]);
    /// use [`Tunneld::api_addr`] there.
    pub fn addr(&self) -> SocketAddr {
        match &self.addr {
            ApiAddr::Tcp(addr) => *addr,
            ApiAddr::Unix(path) => panic!(
                "tunneld listens on unix:{}, not TCP; use api_addr()",
                path.display()
            ),
        }
    }

    /// Where the API listens, TCP or unix; its `Display` is what
    /// `tunnelctl --addr` takes.
    pub fn api_addr(&self) -> &ApiAddr {
        &self.addr
    }

    /// A client on the fixture's channel (cheap to clone; calls multiplex),
    /// sending the fixture's credentials (token, client certificate).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// What the fixture's client sends: a base for other credentials, e.g.
    /// `daemon.credentials().clone().without_authorization()`.
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// A new client sending `creds` instead, connecting on its first call
    /// ([`connect_lazy`]): a refused handshake is that call's status.
    pub fn client_with(&self, creds: &Credentials) -> Result<Client> {
        connect_lazy(&self.addr, creds)
    }

    /// The token the fixture's client sends (the first of
    /// [`TunneldBuilder::tokens`]).
    pub fn token(&self) -> Option<&str> {
        self.token.as_ref().map(|t| t.0.as_str())
    }

    /// The `--token-file` written for [`TunneldBuilder::tokens`] (`NAME:TOKEN`
    /// lines, mode 0600).
    pub fn token_file(&self) -> Option<&Path> {
        self.token_file.as_deref()
    }

    /// The file the daemon's stderr goes to.
    pub fn log_path(&self) -> &Path {
        &self.stderr_path
    }

    /// The `--config` file, when the builder wrote one (hosts or tunnels):
    /// a test may rewrite it and send SIGHUP.
    pub fn config_file(&self) -> Option<&Path> {
        self.config_file.as_deref()
    }

    /// The `--audit-log` file ([`TunneldBuilder::audit_log`]).
    pub fn audit_log(&self) -> Option<&Path> {
        self.audit_log.as_deref()
    }

    /// The daemon's pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// The daemon's stderr (its logs) so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_path)
            .unwrap_or_else(|e| format!("(tunneld stderr log unreadable: {e})"))
    }

    /// Sends SIGTERM and waits for the process; returns its exit status and
    /// how long it took to exit.
    pub async fn terminate(&mut self) -> Result<(ExitStatus, Duration)> {
        self.signal(Signal::SIGTERM)?;
        let start = Instant::now();
        let status = tokio::time::timeout(TERMINATE_TIMEOUT, self.child.wait())
            .await
            .with_context(|| {
                format!(
                    "tunneld still running {TERMINATE_TIMEOUT:?} after SIGTERM; its stderr:\n{}",
                    self.log()
                )
            })?
            .context("waiting for tunneld")?;
        Ok((status, start.elapsed()))
    }

    /// Kills the daemon with SIGKILL (no chance to clean up, as a crash or
    /// the OOM killer) and waits for it to be gone.
    pub async fn kill(&mut self) -> Result<ExitStatus> {
        self.signal(Signal::SIGKILL)?;
        tokio::time::timeout(TERMINATE_TIMEOUT, self.child.wait())
            .await
            .context("tunneld still running after SIGKILL")?
            .context("waiting for tunneld")
    }

    /// Sends a signal to the daemon.
    pub fn signal(&self, signal: Signal) -> Result<()> {
        let pid = self.child.id().context("tunneld has already exited")?;
        kill(Pid::from_raw(pid as i32), signal)
            .with_context(|| format!("sending {signal} to tunneld"))
    }

    /// Non-blocking check whether the daemon exited, with its status.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        Ok(self.child.try_wait()?)
    }

    /// Waits up to `within` for the daemon to exit (after a signal the
    /// test sent); its status.
    pub async fn exited_within(&mut self, within: Duration) -> Result<ExitStatus> {
        match tokio::time::timeout(within, self.child.wait()).await {
            Ok(status) => Ok(status?),
            Err(_) => bail!(
                "tunneld still running {within:?} after the signal; its stderr:\n{}",
                self.log()
            ),
        }
    }
}

impl Drop for Tunneld {
    fn drop(&mut self) {
        // kill_on_drop also does this; being explicit keeps the order clear:
        // the process dies before its temp dir is removed.
        let _ = self.child.start_kill();
        // For a run that failed where its output is not shown (the bench):
        // TUNNELD_KEEP_LOGS=DIR keeps each daemon's log as DIR/tunneld-PID.log.
        if let (Some(dir), Some(pid)) = (std::env::var_os("TUNNELD_KEEP_LOGS"), self.child.id()) {
            let _ = std::fs::copy(
                &self.stderr_path,
                PathBuf::from(dir).join(format!("tunneld-{pid}.log")),
            );
        }
    }
}
