//! The real `tunneld` binary as a child process, and a gRPC client to it.
//!
//! The daemon's contract, as the fixture relies on it:
//! `tunneld --listen 127.0.0.1:0 --ssh USER@HOST:PORT --identity KEY
//! --known-hosts FILE [--config FILE.toml] [--host-key-policy POLICY]` prints
//! exactly one line to stdout once bound — `tunneld listening on ADDR` —
//! logs to stderr, and exits 0 soon after SIGINT or SIGTERM. With
//! `--listen unix:PATH` (see [`TunneldBuilder::listen_unix`]) the line is
//! `tunneld listening on unix:PATH`.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::Client;
use crate::binaries;
use crate::sshd::Sshd;

/// The line tunneld prints on stdout once its gRPC listener is bound.
pub const LISTENING_PREFIX: &str = "tunneld listening on ";

/// How long tunneld may take from exec to its "listening" line.
pub const DAEMON_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long [`Tunneld::terminate`] waits for the process after SIGTERM
/// before giving up (the contract is "a few seconds").
pub const TERMINATE_TIMEOUT: Duration = Duration::from_secs(10);

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
}

impl HostSpec {
    /// The fixture sshd as it is: its user, port, authorized key and known_hosts.
    pub fn from_sshd(sshd: &Sshd) -> HostSpec {
        HostSpec {
            address: sshd.address(),
            identity: sshd.identity().to_path_buf(),
            known_hosts: sshd.known_hosts().to_path_buf(),
            host_key_policy: None,
            passphrase_file: None,
            passphrase_env: None,
        }
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

    fn to_toml(&self) -> toml::Table {
        let mut t = toml::Table::new();
        t.insert("address".into(), self.address.clone().into());
        t.insert(
            "identity".into(),
            self.identity.display().to_string().into(),
        );
        t.insert(
            "known_hosts".into(),
            self.known_hosts.display().to_string().into(),
        );
        if let Some(p) = &self.host_key_policy {
            t.insert("host_key_policy".into(), p.clone().into());
        }
        if let Some(f) = &self.passphrase_file {
            t.insert("passphrase_file".into(), f.display().to_string().into());
        }
        if let Some(v) = &self.passphrase_env {
            t.insert("passphrase_env".into(), v.clone().into());
        }
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

/// Builds a [`Tunneld`]: the default host, named config hosts, extra args.
#[derive(Debug, Clone)]
pub struct TunneldBuilder {
    default: HostSpec,
    /// `--listen unix:PATH` instead of 127.0.0.1:0.
    unix: Option<PathBuf>,
    hosts: Vec<(String, HostSpec)>,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl TunneldBuilder {
    /// A daemon whose default host is `default`.
    pub fn new(default: HostSpec) -> Self {
        TunneldBuilder {
            default,
            unix: None,
            hosts: Vec::new(),
            args: Vec::new(),
            env: vec![("RUST_LOG".into(), "tunneld=debug".into())],
        }
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

    /// Builds (once per process) and starts tunneld, waits for its listening
    /// line and connects a client.
    pub async fn start(self) -> Result<Tunneld> {
        let bin = tokio::task::spawn_blocking(|| binaries::bin_path("tunneld"))
            .await
            .context("binary lookup task panicked")??;
        self.start_binary(&bin).await
    }

    /// Starts this exact executable (no lookup, no build).
    pub async fn start_binary(self, bin: &Path) -> Result<Tunneld> {
        let dir = tempfile::Builder::new()
            .prefix("tunneld-daemon-")
            .tempdir()
            .context("creating daemon temp dir")?;
        let stderr_path = dir.path().join("tunneld.stderr.log");
        let stderr = std::fs::File::create(&stderr_path).context("creating tunneld stderr log")?;

        let listen = match &self.unix {
            Some(path) => format!("unix:{}", path.display()),
            None => "127.0.0.1:0".to_string(),
        };
        let mut cmd = Command::new(bin);
        cmd.arg("--listen")
            .arg(listen)
            .arg("--ssh")
            .arg(&self.default.address)
            .arg("--identity")
            .arg(&self.default.identity)
            .arg("--known-hosts")
            .arg(&self.default.known_hosts);
        if let Some(policy) = &self.default.host_key_policy {
            cmd.arg("--host-key-policy").arg(policy);
        }
        if !self.hosts.is_empty() {
            let mut hosts = toml::Table::new();
            for (name, spec) in &self.hosts {
                hosts.insert(name.clone(), spec.to_toml().into());
            }
            let mut root = toml::Table::new();
            root.insert("hosts".into(), hosts.into());
            let config = dir.path().join("tunneld.toml");
            std::fs::write(&config, toml::to_string(&root)?).context("writing tunneld.toml")?;
            cmd.arg("--config").arg(config);
        }
        cmd.args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true);
        let mut child = cmd
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
        let client = match &addr {
            ApiAddr::Tcp(tcp) => connect(*tcp).await?,
            ApiAddr::Unix(path) => connect_unix(path).await?,
        };
        Ok(Tunneld {
            child,
            addr,
            client,
            stderr_path,
            _dir: dir,
        })
    }
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

/// Connects a gRPC client to `addr`.
pub async fn connect(addr: SocketAddr) -> Result<Client> {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(Duration::from_secs(5));
    let channel = endpoint
        .connect()
        .await
        .with_context(|| format!("connecting a gRPC client to tunneld at {addr}"))?;
    Ok(Client::new(channel))
}

/// Connects a gRPC client to a tunneld serving on the unix socket `path`.
pub async fn connect_unix(path: &Path) -> Result<Client> {
    let path = path.to_path_buf();
    let shown = path.display().to_string();
    // The URI is required by tonic but unused: every connection goes to the socket.
    let endpoint = tonic::transport::Endpoint::from_static("http://tunneld.invalid")
        .connect_timeout(Duration::from_secs(5));
    let channel = endpoint
        .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
            let path = path.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        }))
        .await
        .with_context(|| format!("connecting a gRPC client to tunneld at unix:{shown}"))?;
    Ok(Client::new(channel))
}

/// A running tunneld; killed when dropped.
#[derive(Debug)]
pub struct Tunneld {
    child: Child,
    addr: ApiAddr,
    client: Client,
    stderr_path: PathBuf,
    /// Holds the config file and stderr log.
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

    /// A client on the fixture's channel (cheap to clone; calls multiplex).
    pub fn client(&self) -> Client {
        self.client.clone()
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
}

impl Drop for Tunneld {
    fn drop(&mut self) {
        // kill_on_drop also does this; being explicit keeps the order clear:
        // the process dies before its temp dir is removed.
        let _ = self.child.start_kill();
    }
}
