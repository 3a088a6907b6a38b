//! An OpenSSH `sshd` of the test's own: keys, config, authorized_keys,
//! known_hosts and log in a temp dir, listening on a free port of 127.0.0.1
//! (or of another loopback address, [`SshdBuilder::listen_ip`], e.g. the
//! inner host behind a jump host on 127.0.0.2).
//!
//! The fixture follows `/work/shared/TESTING.md`: `/usr/sbin/sshd -D -e -f
//! CONFIG` in the foreground (so this process owns it), readiness checked by
//! reading the server's `SSH-2.0` banner, and everything killed on `Drop` —
//! the listener and the per-connection sshd processes it forked.
//!
//! A test can also take the whole server away ([`Sshd::stop`]: sessions,
//! connection processes and listener killed, port released) and bring it
//! back ([`Sshd::restart`]) on the same port with the same host key, config
//! and authorized keys, so clients that reconnect find the server they knew.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use tempfile::TempDir;

use crate::keys::{self, KeyPair, KeyType};
use crate::procs;

/// Where Debian's openssh-server installs the daemon. sshd must be started by
/// its absolute path (it re-executes itself).
pub const SSHD_PATH: &str = "/usr/sbin/sshd";

/// How long sshd may take to answer with its banner after being started.
pub const SSHD_READY_TIMEOUT: Duration = Duration::from_secs(15);

/// How often a port is re-picked when another process took it between our
/// probe and sshd's bind.
const PORT_ATTEMPTS: usize = 5;

/// Settings every fixture sshd gets unless the test overrides the keyword.
/// `{dir}`, `{port}` and `{ip}` are substituted.
const BASE_CONFIG: &[&str] = &[
    "Port {port}",
    "ListenAddress {ip}",
    // IPv4 only, for the forwards sshd opens too. Otherwise a remote forward
    // on `localhost` port 0 takes the kernel's pick for ::1 and then tries
    // the same port on 127.0.0.1; when that port is some other 127.0.0.1
    // listener's (this very sshd's, once in CI), sshd keeps only ::1 and a
    // test dialing 127.0.0.1:port reaches the wrong server.
    "AddressFamily inet",
    "HostKey {dir}/host_ed25519",
    "PidFile {dir}/sshd.pid",
    "AuthorizedKeysFile {dir}/authorized_keys",
    "PubkeyAuthentication yes",
    "PasswordAuthentication no",
    "KbdInteractiveAuthentication no",
    "UsePAM no",
    // Temp dirs are not a root-owned 0755 chain.
    "StrictModes no",
    // CI runs as root.
    "PermitRootLogin prohibit-password",
    "AllowTcpForwarding yes",
    // Load tests open many connections and channels at once.
    "MaxStartups 200",
    "MaxSessions 200",
    "PrintMotd no",
    "LogLevel VERBOSE",
    // Keeps sessions hermetic: bash sources ~/.bashrc when started by sshd
    // only at shell level 1, so SHLVL=1 (bumped to 2) skips it. The user's
    // bashrc on these machines runs `pyenv init`, which takes a global
    // lock; a session killed inside it leaves the lock behind and every
    // later shell waits 60 s for it.
    "SetEnv SHLVL=1",
];

/// Builds an [`Sshd`] with extra config lines or extra user keys.
#[derive(Debug, Default, Clone)]
pub struct SshdBuilder {
    /// Lines appended to the config; a line whose keyword is in the base
    /// config replaces that base line (sshd keeps the *first* value of a
    /// keyword, so appending alone would not override it).
    config: Vec<String>,
    /// Additional user keys, authorized alongside the default ed25519 one.
    extra_user_keys: Vec<KeyType>,
    /// The loopback address it listens on; `None`: 127.0.0.1.
    ip: Option<Ipv4Addr>,
    /// A CA private key and `ssh-keygen` arguments to sign the host key with
    /// before sshd starts (see [`SshdBuilder::host_certificate`]).
    host_certificate: Option<(PathBuf, Vec<String>)>,
    /// Log in as an unprivileged account when the tests run as root (see
    /// [`SshdBuilder::unprivileged_login`]).
    unprivileged: bool,
}

/// The account [`SshdBuilder::unprivileged_login`] logs in as when the
/// tests run as root; `scripts/test.sh` creates it.
pub const UNPRIVILEGED_USER: &str = "tunneld-e2e";

impl SshdBuilder {
    /// Logs in as [`UNPRIVILEGED_USER`] when the tests run as root, else as
    /// the user running them. OpenSSH's sshd skips post-auth privilege
    /// separation for root logins and then refuses `signal` requests
    /// ("session signalling requires privilege separation"), so what a
    /// normal user gets is only seen from a normal account.
    pub fn unprivileged_login(mut self) -> Self {
        self.unprivileged = true;
        self
    }

    /// Adds a config line, e.g. `AllowTcpForwarding local` or `PermitListen none`
    /// (`{dir}` and `{port}` are substituted, as in the base config).
    pub fn config(mut self, line: impl Into<String>) -> Self {
        self.config.push(line.into());
        self
    }

    /// Listens on `ip` (a loopback address such as 127.0.0.2) instead of
    /// 127.0.0.1: a server only a jump host's forward reaches is told apart
    /// by its address. Its known_hosts line then names `[ip]:PORT`.
    pub fn listen_ip(mut self, ip: Ipv4Addr) -> Self {
        self.ip = Some(ip);
        self
    }

    /// The address it listens on.
    fn ip(&self) -> Ipv4Addr {
        self.ip.unwrap_or(Ipv4Addr::LOCALHOST)
    }

    /// Generates and authorizes one more user key of this type (see
    /// [`Sshd::extra_identities`]).
    pub fn extra_user_key(mut self, kind: KeyType) -> Self {
        self.extra_user_keys.push(kind);
        self
    }

    /// Signs the host key with the CA private key `ca` before sshd starts
    /// (`ssh-keygen -s CA -I tunneld-test -h ARGS host_ed25519.pub`, ARGS
    /// such as `["-n", "127.0.0.1", "-V", "-5m:+1h"]`) and serves the
    /// certificate (`HostCertificate`).
    pub fn host_certificate(mut self, ca: &Path, args: &[&str]) -> Self {
        let args = args.iter().map(|a| a.to_string()).collect();
        self.host_certificate = Some((ca.to_path_buf(), args));
        self.config
            .push("HostCertificate {dir}/host_ed25519-cert.pub".into());
        self
    }

    /// Generates keys, writes the config and starts sshd; returns once it
    /// answers with an SSH banner.
    ///
    /// # Panics
    /// When `/usr/sbin/sshd` is not installed: these tests must fail, never
    /// skip, on a machine without it.
    pub fn start(self) -> Result<Sshd> {
        assert!(
            Path::new(SSHD_PATH).exists(),
            "{SSHD_PATH} not found: install openssh-server (apt-get install -y openssh-server); \
             the tunneld end-to-end tests need a real sshd"
        );
        std::fs::create_dir_all("/run/sshd")
            .context("creating /run/sshd (sshd's privilege separation dir)")?;

        let dir = tempfile::Builder::new()
            .prefix("tunneld-sshd-")
            .tempdir()
            .context("creating sshd temp dir")?;
        let host_key = keys::generate(dir.path(), "host_ed25519", KeyType::Ed25519)?;
        if let Some((ca, args)) = &self.host_certificate {
            keys::run(
                Command::new("ssh-keygen")
                    .arg("-q")
                    .arg("-s")
                    .arg(ca)
                    .args(["-I", "tunneld-test", "-h"])
                    .args(args)
                    .arg(&host_key.public),
            )
            .context("signing the host key")?;
        }
        let identity = keys::generate(dir.path(), "id_ed25519", KeyType::Ed25519)?;
        let mut extra_identities = Vec::new();
        for (i, kind) in self.extra_user_keys.iter().enumerate() {
            let name = format!("id_extra{i}_{}", kind.keygen_name());
            extra_identities.push(keys::generate(dir.path(), &name, *kind)?);
        }
        let mut authorized = String::new();
        for key in std::iter::once(&identity).chain(&extra_identities) {
            authorized.push_str(&key.public_line()?);
            authorized.push('\n');
        }
        std::fs::write(dir.path().join("authorized_keys"), authorized)
            .context("writing authorized_keys")?;

        let mut user = current_user()?;
        if self.unprivileged && nix::unistd::getuid().is_root() {
            ensure!(
                matches!(nix::unistd::User::from_name(UNPRIVILEGED_USER), Ok(Some(_))),
                "this test logs in as the unprivileged account {UNPRIVILEGED_USER}, which does not exist: \
                 run scripts/test.sh, or `useradd --system --create-home --shell /bin/sh --password '*' {UNPRIVILEGED_USER}`"
            );
            // sshd reads authorized_keys as the user logging in: let it
            // through the directory (not list it) and read that one file.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711))?;
            std::fs::set_permissions(
                dir.path().join("authorized_keys"),
                std::fs::Permissions::from_mode(0o644),
            )?;
            user = UNPRIVILEGED_USER.to_string();
        }
        let mut last_err = None;
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port_on(self.ip())?;
            match self.spawn_on(dir.path(), port) {
                Ok(child) => {
                    let known_hosts = dir.path().join("known_hosts");
                    keys::write_known_hosts(
                        &known_hosts,
                        &[keys::known_hosts_line_at(
                            &self.ip().to_string(),
                            port,
                            &host_key,
                        )?],
                    )?;
                    return Ok(Sshd {
                        child: Some(child),
                        builder: self,
                        port,
                        user,
                        host_key,
                        identity,
                        extra_identities,
                        known_hosts,
                        dir,
                    });
                }
                Err(e) if e.to_string().contains("Address already in use") => last_err = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_err.expect("at least one attempt was made")).context(format!(
            "sshd could not bind a free port in {PORT_ATTEMPTS} attempts"
        ))
    }

    /// Writes the config for `port`, starts sshd and waits for its banner.
    fn spawn_on(&self, dir: &Path, port: u16) -> Result<Child> {
        let config_path = dir.join("sshd_config");
        std::fs::write(&config_path, self.render_config(dir, port))
            .context("writing sshd_config")?;
        let log_path = dir.join("sshd.log");
        // Appended to, so that after a restart the log tells the whole story.
        let log = File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .context("opening sshd.log")?;
        let mut child = Command::new(SSHD_PATH)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {SSHD_PATH}"))?;
        match wait_for_banner(&mut child, SocketAddr::from((self.ip(), port))) {
            Ok(()) => Ok(child),
            Err(e) => {
                let _ = procs::kill_descendants(child.id());
                let _ = child.kill();
                let _ = child.wait();
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                Err(e.context(format!(
                    "sshd on port {port} did not become ready; its log:\n{log}"
                )))
            }
        }
    }

    fn render_config(&self, dir: &Path, port: u16) -> String {
        let keyword = |line: &str| {
            line.split_whitespace()
                .next()
                .unwrap_or_default()
                .to_ascii_lowercase()
        };
        let overridden: Vec<String> = self.config.iter().map(|l| keyword(l)).collect();
        let mut text = String::new();
        for line in BASE_CONFIG {
            if overridden.contains(&keyword(line)) {
                continue;
            }
            let line = line
                .replace("{dir}", &dir.display().to_string())
                .replace("{port}", &port.to_string())
                .replace("{ip}", &self.ip().to_string());
            text.push_str(&line);
            text.push('\n');
        }
        for line in &self.config {
            let line = line
                .replace("{dir}", &dir.display().to_string())
                .replace("{port}", &port.to_string());
            text.push_str(&line);
            text.push('\n');
        }
        text
    }
}

/// Polls until sshd accepts on `addr` and sends an `SSH-2.0` banner, or
/// fails when sshd exits or [`SSHD_READY_TIMEOUT`] passes.
fn wait_for_banner(child: &mut Child, addr: SocketAddr) -> Result<()> {
    let deadline = Instant::now() + SSHD_READY_TIMEOUT;
    let mut last = String::from("no attempt yet");
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().context("checking on sshd")? {
            bail!("sshd exited with {status} before accepting connections");
        }
        match read_banner(addr) {
            Ok(line) if line.starts_with("SSH-2.0") => return Ok(()),
            Ok(line) => last = format!("unexpected banner {line:?}"),
            Err(e) => last = format!("{e:#}"),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("no SSH banner on {addr} within {SSHD_READY_TIMEOUT:?} (last attempt: {last})")
}

fn read_banner(addr: SocketAddr) -> Result<String> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line)?;
    Ok(line.trim_end().to_owned())
}

/// How long [`Sshd::stop`] waits for killed processes to go and the port to
/// be released.
pub const SSHD_STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// A running sshd; killed, with its connections, when dropped.
#[derive(Debug)]
pub struct Sshd {
    /// The listening sshd; `None` between [`Sshd::stop`] and
    /// [`Sshd::restart`]. A reaped child's pid may be reused by an unrelated
    /// process, so it is not kept around to be signalled by mistake.
    child: Option<Child>,
    /// How it was configured, to start it again the same way.
    builder: SshdBuilder,
    port: u16,
    user: String,
    host_key: KeyPair,
    identity: KeyPair,
    extra_identities: Vec<KeyPair>,
    known_hosts: PathBuf,
    /// Holds keys, config and log; removed after the process is killed
    /// (fields drop after `Drop::drop` runs).
    dir: TempDir,
}

impl Sshd {
    /// A builder for an sshd with extra config lines or user keys.
    pub fn builder() -> SshdBuilder {
        SshdBuilder::default()
    }

    /// Starts an sshd with the default config.
    pub fn start() -> Result<Sshd> {
        Self::builder().start()
    }

    /// The TCP port sshd listens on (on [`Sshd::ip`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The address sshd listens on: 127.0.0.1 unless
    /// [`SshdBuilder::listen_ip`] said otherwise.
    pub fn ip(&self) -> IpAddr {
        IpAddr::V4(self.builder.ip())
    }

    /// The user to log in as: the user running the tests.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// `user@IP:port` (`user@127.0.0.1:port` by default), the form
    /// tunneld's `--ssh` and config take.
    pub fn address(&self) -> String {
        format!("{}@{}:{}", self.user, self.ip(), self.port)
    }

    /// The authorized ed25519 private key.
    pub fn identity(&self) -> &Path {
        &self.identity.private
    }

    /// The authorized ed25519 key pair.
    pub fn identity_pair(&self) -> &KeyPair {
        &self.identity
    }

    /// Key pairs added with [`SshdBuilder::extra_user_key`], in order.
    pub fn extra_identities(&self) -> &[KeyPair] {
        &self.extra_identities
    }

    /// A known_hosts file with exactly the line for this server.
    pub fn known_hosts(&self) -> &Path {
        &self.known_hosts
    }

    /// The server's host key pair (ed25519).
    pub fn host_key(&self) -> &KeyPair {
        &self.host_key
    }

    /// The known_hosts line for this server: `[127.0.0.1]:PORT ssh-ed25519 BASE64`
    /// (its own address in place of 127.0.0.1, see [`SshdBuilder::listen_ip`]).
    pub fn host_key_line(&self) -> String {
        keys::known_hosts_line_at(&self.ip().to_string(), self.port, &self.host_key)
            .expect("host key .pub was readable when the fixture started")
    }

    /// Authorizes `key` (of another fixture, say) to log in here too (sshd
    /// reads authorized_keys at each login).
    pub fn authorize(&self, key: &KeyPair) -> Result<()> {
        let authorized_path = self.dir().join("authorized_keys");
        let mut authorized = std::fs::read_to_string(&authorized_path)?;
        authorized.push_str(&key.public_line()?);
        authorized.push('\n');
        std::fs::write(&authorized_path, authorized)?;
        Ok(())
    }

    /// Generates an ed25519 key protected by `passphrase` in the fixture's
    /// dir and authorizes it (sshd reads authorized_keys at each login);
    /// returns the private key's path.
    pub fn authorize_protected_key(&self, name: &str, passphrase: &str) -> Result<PathBuf> {
        let key = self.dir().join(name);
        keys::run(
            Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", passphrase, "-C", name, "-f"])
                .arg(&key),
        )?;
        let public = std::fs::read_to_string(key.with_extension("pub"))
            .with_context(|| format!("reading {name}.pub"))?;
        let authorized_path = self.dir().join("authorized_keys");
        let mut authorized = std::fs::read_to_string(&authorized_path)?;
        authorized.push_str(&public);
        std::fs::write(&authorized_path, authorized)?;
        Ok(key)
    }

    /// The fixture's temp dir (keys, config, log); tests may put files there.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The pid of the listening sshd.
    ///
    /// # Panics
    /// While the server is stopped ([`Sshd::stop`]).
    pub fn pid(&self) -> u32 {
        self.running_pid()
            .expect("sshd is stopped (Sshd::stop); restart() it before asking for its pid")
    }

    /// The pid of the listening sshd, if it runs.
    fn running_pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// True unless the server was stopped with [`Sshd::stop`] (and not
    /// restarted since).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// sshd's log so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log"))
            .unwrap_or_else(|e| format!("(sshd.log unreadable: {e})"))
    }

    /// Kills every per-connection sshd process (and the sessions under
    /// them) while the listener stays up: to clients, their connections just
    /// die. Returns how many processes were killed, once they are all gone.
    /// A stopped server has no connections: that is `Ok(0)`.
    pub fn kill_connections(&self) -> Result<usize> {
        let Some(pid) = self.running_pid() else {
            return Ok(0);
        };
        let victims = procs::descendants_of(pid);
        let killed = procs::kill_descendants(pid);
        wait_gone(&victims, "sshd connection processes")?;
        Ok(killed)
    }

    /// Number of live per-connection sshd processes (direct children); 0
    /// while stopped.
    pub fn connection_count(&self) -> usize {
        let Some(pid) = self.running_pid() else {
            return 0;
        };
        procs::alive(procs::children_of(pid)).len()
    }

    /// Takes the server away as a crash or power cut would: the listener and
    /// its process tree are frozen (SIGSTOP, so no reconnecting client slips
    /// in), then every session process, every per-connection sshd and the
    /// listener get SIGKILL. Returns
    /// once they are all gone and the port can be bound again (clients see
    /// their connections reset or closed, new connections refused), with the
    /// number of processes killed. Does nothing (`Ok(0)`) when already
    /// stopped. The temp dir (keys, config, log) stays for [`Sshd::restart`].
    pub fn stop(&mut self) -> Result<usize> {
        let Some(mut child) = self.child.take() else {
            return Ok(0);
        };
        // Freeze first (see `freeze_tree`), then kill sessions, connection
        // processes and the listener; whatever goes wrong, kill anyway and
        // report afterwards.
        let tree = freeze_tree(child.id());
        let mut victims = match &tree {
            Ok(tree) => tree.clone(),
            Err(_) => procs::descendants_of(child.id()),
        };
        victims.extend(self.session_processes());
        procs::kill_all(&victims);
        let _ = child.kill();
        child
            .wait()
            .context("waiting for the killed sshd listener")?;
        tree?;
        wait_gone(&victims, "sshd session and connection processes")?;

        let deadline = Instant::now() + SSHD_STOP_TIMEOUT;
        while TcpListener::bind((self.ip(), self.port)).is_err() {
            if Instant::now() > deadline {
                bail!(
                    "port {} still taken {SSHD_STOP_TIMEOUT:?} after sshd was killed",
                    self.port
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(victims.len() + 1)
    }

    /// Starts the server again after [`Sshd::stop`]: same port, host key,
    /// config and authorized keys (so the known_hosts file stays valid), its
    /// log appended to the old one. Returns once it answers with its banner.
    /// Fails if it is running, or if another process took the port meanwhile.
    pub fn restart(&mut self) -> Result<()> {
        ensure!(
            self.child.is_none(),
            "sshd on port {} is running; stop() it first",
            self.port
        );
        let child = self
            .builder
            .spawn_on(self.dir.path(), self.port)
            .with_context(|| format!("restarting sshd on port {}", self.port))?;
        self.child = Some(child);
        Ok(())
    }
}

/// Stops (SIGSTOP) `root` and all its descendants, so that none can accept a
/// connection or fork any more, and returns the descendants. Killing the
/// children and then the listener without this races: a client reconnecting
/// at that moment is accepted by a fresh child that nobody listed, which
/// survives as an orphan and serves it — the server never went away.
fn freeze_tree(root: u32) -> Result<Vec<u32>> {
    let stop = |p: u32| {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(p as i32),
            nix::sys::signal::Signal::SIGSTOP,
        );
    };
    stop(root);
    wait_stopped(&[root])?;
    // A process may fork until its stop takes effect: list again until a
    // pass finds no new one, all listed ones being stopped.
    let mut frozen: Vec<u32> = Vec::new();
    loop {
        let new: Vec<u32> = procs::descendants_of(root)
            .into_iter()
            .filter(|p| !frozen.contains(p))
            .collect();
        if new.is_empty() {
            return Ok(frozen);
        }
        new.iter().copied().for_each(stop);
        wait_stopped(&new)?;
        frozen.extend(new);
    }
}

/// Polls until each of `pids` is stopped, a zombie or gone.
fn wait_stopped(pids: &[u32]) -> Result<()> {
    let deadline = Instant::now() + SSHD_STOP_TIMEOUT;
    loop {
        let running: Vec<u32> = pids
            .iter()
            .copied()
            .filter(|&p| matches!(procs::state(p), Some(s) if !matches!(s, 'T' | 't' | 'Z' | 'X')))
            .collect();
        if running.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("sshd processes {running:?} not stopped {SSHD_STOP_TIMEOUT:?} after SIGSTOP");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Polls until none of `pids` is alive (gone or a zombie), for at most
/// [`SSHD_STOP_TIMEOUT`].
fn wait_gone(pids: &[u32], what: &str) -> Result<()> {
    let deadline = Instant::now() + SSHD_STOP_TIMEOUT;
    loop {
        let alive = procs::alive(pids.iter().copied());
        if alive.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{what} {alive:?} still alive {SSHD_STOP_TIMEOUT:?} after SIGKILL");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

impl Sshd {
    /// Processes of sessions opened through this sshd, found by the
    /// `SSH_CONNECTION` variable sshd gives them (`… IP PORT`). Unlike
    /// the process tree this also finds sessions orphaned when their
    /// connection closed but their command did not end (OpenSSH leaves such
    /// commands running, e.g. a `sleep` whose channel was closed).
    pub fn session_processes(&self) -> Vec<u32> {
        let suffix = format!(" {} {}", self.ip(), self.port);
        procs::with_env("SSH_CONNECTION", |v| v.ends_with(&suffix))
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        // Sessions and connection processes first, while the port still
        // identifies them and before they are reparented away from sshd.
        // A stopped server may still have orphaned sessions (see
        // `session_processes`), so they are looked for in any case.
        procs::kill_all(&self.session_processes());
        if let Some(mut child) = self.child.take() {
            match freeze_tree(child.id()) {
                Ok(tree) => procs::kill_all(&tree),
                Err(_) => {
                    procs::kill_descendants(child.id());
                }
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        self.kill_remaining_sessions();
    }
}

impl Sshd {
    /// Looks for session processes again until none is alive, killing what
    /// it finds, for at most [`SSHD_STOP_TIMEOUT`]. One pass can miss a
    /// process: its environment reads empty while it is in `execve` (a
    /// backgrounded `nohup sleep` becoming `sleep`), or it was forked just
    /// after the pass; such a process once outlived a dropped sshd.
    fn kill_remaining_sessions(&self) {
        let deadline = Instant::now() + SSHD_STOP_TIMEOUT;
        loop {
            let alive = procs::alive(self.session_processes());
            if alive.is_empty() || Instant::now() > deadline {
                return;
            }
            procs::kill_all(&alive);
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// The name of the user running this process (CI runs as root).
pub fn current_user() -> Result<String> {
    let uid = nix::unistd::getuid();
    if let Ok(Some(user)) = nix::unistd::User::from_uid(uid) {
        return Ok(user.name);
    }
    if let Ok(user) = std::env::var("USER")
        && !user.is_empty()
    {
        return Ok(user);
    }
    let out = keys::run(&mut Command::new("whoami"))?;
    Ok(out.trim().to_owned())
}

/// A port that was free on 127.0.0.1 a moment ago (bound to port 0, then
/// released). Another process may take it before the caller binds it.
pub fn free_port() -> Result<u16> {
    free_port_on(Ipv4Addr::LOCALHOST)
}

/// A port that was free on `ip` a moment ago, as [`free_port`].
///
/// Picked below the kernel's ephemeral range (`ip_local_port_range`), where
/// no `connect()` takes a local port: a port from that range, released and
/// bound again later, collided with the client side of some other test's
/// connection (sshd then answered "Address already in use" for the length
/// of that connection). Port 0 is the fallback.
pub fn free_port_on(ip: Ipv4Addr) -> Result<u16> {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let low = ephemeral_low().clamp(2048, 65535);
    let (first, span) = (1024u32, low.saturating_sub(1024).max(1));
    let seed = std::process::id().wrapping_mul(2_654_435_761)
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
    for _ in 0..64 {
        let n = NEXT.fetch_add(7919, std::sync::atomic::Ordering::Relaxed);
        let port = first + (seed.wrapping_add(n) % span);
        let Ok(port) = u16::try_from(port) else {
            continue;
        };
        if TcpListener::bind((ip, port)).is_ok() {
            return Ok(port);
        }
    }
    let listener = TcpListener::bind((ip, 0)).with_context(|| format!("binding {ip}:0"))?;
    Ok(listener.local_addr()?.port())
}

/// The first port of the kernel's ephemeral range (32768 if unknown).
fn ephemeral_low() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768)
}
