//! The `tunneld` binary: parses flags, binds the API listener, wires signals,
//! and hands everything to [`tunneld::run`].

use std::{io::IsTerminal, path::PathBuf, process::ExitCode, time::Duration};

use clap::Parser;
use tokio_util::sync::CancellationToken;
use tunneld::{
    Exposure,
    backoff::Backoff,
    config::{
        Config, HostDefaults, HostKeyPolicy, PassphraseSource, expand_home, parse_duration,
        parse_size,
    },
    grpc::AUDIT_TARGET,
    policy::{BindPolicy, HostPolicy},
    server::{ApiAccess, TlsFiles},
    spill::SpillPolicy,
    tokens::TokenStore,
};
use tunneld::{ListenAddr, ssh::HostThread};

/// How long shutdown may take before tunneld exits anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(8);

/// SSH tunnel daemon with a gRPC control API.
#[derive(Debug, Parser)]
#[command(
    version,
    about,
    after_help = "\
Examples:
  tunneld --ssh deploy@bastion.example.com
  tunneld --listen 127.0.0.1:4522 --ssh me@10.0.0.5:2222 --identity ~/.ssh/id_ed25519
  tunneld --config /etc/tunneld/hosts.toml
  tunneld --listen unix:$XDG_RUNTIME_DIR/tunneld.sock --ssh deploy@bastion.example.com"
)]
struct Args {
    /// Address of the gRPC API: HOST:PORT (port 0 picks a free one), which
    /// must be loopback unless --insecure-listen is given, or unix:/PATH for
    /// a unix socket only this user can open (mode 0600).
    #[arg(long, env = "TUNNELD_LISTEN", default_value = tunnel_proto::addr::DEFAULT_API_ADDR, value_name = "ADDR")]
    listen: ListenAddr,

    /// Allow a non-loopback --listen address without TLS and client
    /// authentication: anyone who reaches it can run commands with your SSH
    /// keys.
    #[arg(long)]
    insecure_listen: bool,

    /// File of API tokens, one `NAME:TOKEN` per line; every call but health
    /// must then send `authorization: Bearer TOKEN`. Must be mode 0600.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,

    /// PEM certificate (chain) to serve the API over TLS with.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert. Must be mode 0600.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,

    /// PEM CA bundle: clients must present a certificate it signed (mTLS);
    /// the certificate's subject names the caller in the audit log.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,

    /// Also append audit lines (every Exec, open, close and refused call) to
    /// FILE as JSON, one object per line; created mode 0600.
    #[arg(long, value_name = "FILE")]
    audit_log: Option<PathBuf>,

    /// Let local forwards listen on ADDR besides loopback (like OpenSSH's
    /// GatewayPorts); repeatable; `*` allows any address.
    #[arg(long, value_name = "ADDR")]
    allow_local_bind: Vec<String>,

    /// Targets local forwards may reach, as HOST:PORT (`*` for either part;
    /// `none`); repeatable. Default for every host (OpenSSH PermitOpen);
    /// without it, any.
    #[arg(long, value_name = "HOST:PORT")]
    permit_open: Vec<String>,

    /// Where remote forwards may ask the server to listen, as [HOST:]PORT
    /// (PORT may be `*`; `none`); repeatable. Default for every host
    /// (OpenSSH PermitListen); without it, anywhere.
    #[arg(long, value_name = "[HOST:]PORT")]
    permit_listen: Vec<String>,

    /// Default SSH host as [user@]host[:port]; requests that name no host use it.
    #[arg(long, value_name = "USER@HOST[:PORT]")]
    ssh: Option<String>,

    /// Private key (OpenSSH format: ed25519, ECDSA or RSA).
    #[arg(
        long,
        short = 'i',
        value_name = "FILE",
        default_value = "~/.ssh/id_ed25519"
    )]
    identity: PathBuf,

    /// known_hosts file used to verify servers.
    #[arg(long, value_name = "FILE", default_value = "~/.ssh/known_hosts")]
    known_hosts: PathBuf,

    /// File whose first line is the key's passphrase (else
    /// TUNNELD_KEY_PASSPHRASE is used if set).
    #[arg(long, value_name = "FILE")]
    passphrase_file: Option<PathBuf>,

    /// What to do with host keys known_hosts does not list.
    #[arg(long, value_enum, default_value = "strict")]
    host_key_policy: PolicyArg,

    /// TOML file of named hosts.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,

    /// Bytes held in memory for one connection whose local reader lags.
    /// Past it, a connection alone on its SSH connection pauses the sender
    /// until the reader catches up (as ssh -L); one sharing it with others
    /// spills to disk (--max-connection-spill). Accepts suffixes KiB, MiB.
    #[arg(long, value_name = "SIZE", default_value = "8MiB", value_parser = parse_size)]
    max_connection_buffer: usize,

    /// Bytes of one connection that may wait on disk, beyond
    /// --max-connection-buffer, for a reader that lags while others share
    /// its SSH connection. Past it the connection is reset. 0: never spill
    /// (reset at --max-connection-buffer).
    #[arg(long, value_name = "SIZE", default_value = "1GiB", value_parser = parse_size_or_zero)]
    max_connection_spill: u64,

    /// Bytes all connections together may hold on disk; a connection that
    /// would go past it is reset.
    #[arg(long, value_name = "SIZE", default_value = "8GiB", value_parser = parse_size_or_zero)]
    max_spill: u64,

    /// Directory of the spill files (created 0700 if missing). The files
    /// have no name (O_TMPFILE), so nothing is left there, even after a
    /// crash. Default: tunneld-UID under $TMPDIR, else /var/tmp.
    #[arg(long, value_name = "DIR")]
    spill_dir: Option<PathBuf>,

    /// Send an SSH keepalive after this long without traffic from the server
    /// (OpenSSH ServerAliveInterval); default for every host.
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = parse_duration)]
    keepalive_interval: Duration,

    /// Unanswered keepalives before the connection is declared dead and
    /// reconnected (OpenSSH ServerAliveCountMax); default for every host.
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    keepalive_count: u32,

    /// First delay between reconnection attempts; it doubles (±20% jitter)
    /// after each failure. Default for every host.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    reconnect_min: Duration,

    /// Longest delay between reconnection attempts. Default for every host.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    reconnect_max: Duration,

    /// How long a new connection to a local forward waits for a lost SSH
    /// connection to come back before it is closed.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    reconnect_wait: Duration,

    /// How long an SSH connection that ran an Exec stays open for the next
    /// one (each Exec holds a connection of its own while it runs, so a
    /// caller that reads slowly slows only its own command; up to 4 idle
    /// per host are kept). 0 closes it after each Exec.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = tunneld::config::parse_duration_or_zero)]
    exec_idle_timeout: Duration,

    /// API connections open at once; past it a new one is closed at once
    /// (tunnels are not affected). Default: an eighth of the open file
    /// limit, from 16 to 4096.
    #[arg(long, value_name = "N", value_parser = positive)]
    max_api_connections: Option<usize>,

    /// Tunnels open at once (local, remote and attached); more opens get
    /// RESOURCE_EXHAUSTED.
    #[arg(long, value_name = "N", default_value_t = tunneld::config::DEFAULT_MAX_TUNNELS, value_parser = positive)]
    max_tunnels: usize,

    /// Watch streams open at once; more get RESOURCE_EXHAUSTED.
    #[arg(long, value_name = "N", default_value_t = tunneld::config::DEFAULT_MAX_WATCHERS, value_parser = positive)]
    max_watchers: usize,

    /// Exec commands running at once (each holds an SSH connection of its
    /// own); more get RESOURCE_EXHAUSTED.
    #[arg(long, value_name = "N", default_value_t = tunneld::config::DEFAULT_MAX_EXECS, value_parser = positive)]
    max_execs: usize,

    /// Connections carried at once by the whole daemon; more are refused.
    #[arg(long, value_name = "N", default_value_t = tunneld::config::DEFAULT_MAX_CONNECTIONS, value_parser = positive)]
    max_connections: usize,

    /// Connections carried at once by one tunnel, unless its open request
    /// sets max_connections; more are refused.
    #[arg(long, value_name = "N", default_value_t = tunneld::config::DEFAULT_MAX_CONNECTIONS_PER_TUNNEL, value_parser = clap::value_parser!(u32).range(1..))]
    max_connections_per_tunnel: u32,

    /// Size of one read from a forwarded connection's local socket. Each
    /// connection allocates it once its peer first sends.
    #[arg(long, value_name = "SIZE", default_value = "64KiB", value_parser = parse_size)]
    copy_buffer: usize,

    /// Where each host's SSH session and the connections of its tunnels
    /// run: "own" gives each host a thread of its own (like one ssh process
    /// per host; measured fastest), "shared" runs them on the worker threads
    /// that serve the API.
    #[arg(long, value_enum, value_name = "WHERE", default_value = "own")]
    host_thread: HostThreadArg,

    /// SSH channel window: bytes an SSH server may send ahead on one channel
    /// before tunneld has taken them. Default for every host.
    #[arg(long, value_name = "SIZE", default_value = "2MiB", value_parser = parse_u32_size)]
    ssh_window: u32,

    /// Largest SSH packet tunneld accepts (OpenSSH: 32KiB). Default for
    /// every host.
    #[arg(long, value_name = "SIZE", default_value = "32KiB", value_parser = parse_u32_size)]
    ssh_max_packet: u32,

    /// Ciphers offered to SSH servers, best first, comma-separated (OpenSSH
    /// Ciphers). Default: aes256-gcm@openssh.com first when the CPU has AES
    /// instructions, else chacha20-poly1305@openssh.com. Default for every
    /// host.
    #[arg(long, value_name = "CIPHER,...", value_delimiter = ',')]
    ciphers: Vec<String>,

    /// Bytes either way after which tunneld starts an SSH key re-exchange
    /// (OpenSSH RekeyLimit). Default for every host.
    #[arg(long, value_name = "SIZE", default_value = "4GiB", value_parser = parse_size)]
    rekey_limit: usize,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum PolicyArg {
    /// Refuse unknown and changed keys.
    Strict,
    /// Add keys of never-seen hosts; refuse changed keys.
    AcceptNew,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum HostThreadArg {
    /// A thread per host.
    Own,
    /// The API's worker threads.
    Shared,
}

fn parse_u32_size(s: &str) -> Result<u32, String> {
    let n = parse_size(s)?;
    u32::try_from(n).map_err(|_| format!("{s:?} is too large (at most 4GiB - 1)"))
}

fn parse_size_or_zero(s: &str) -> Result<u64, String> {
    if s.trim() == "0" {
        return Ok(0);
    }
    Ok(parse_size(s)? as u64)
}

fn positive(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{s:?} is not a positive number")),
    }
}

fn build_config(args: &Args) -> tunneld::Result<Config> {
    let passphrase = match &args.passphrase_file {
        Some(f) => Some(PassphraseSource::File(expand_home(f))),
        None if std::env::var_os("TUNNELD_KEY_PASSPHRASE").is_some() => {
            Some(PassphraseSource::Env("TUNNELD_KEY_PASSPHRASE".into()))
        }
        None => None,
    };
    let defaults = HostDefaults {
        identity: expand_home(&args.identity),
        known_hosts: expand_home(&args.known_hosts),
        passphrase,
        host_key_policy: match args.host_key_policy {
            PolicyArg::Strict => HostKeyPolicy::Strict,
            PolicyArg::AcceptNew => HostKeyPolicy::AcceptNew,
        },
        keepalive_interval: args.keepalive_interval,
        keepalive_max: args.keepalive_count as usize,
        reconnect: Backoff {
            min: args.reconnect_min,
            max: args.reconnect_max.max(args.reconnect_min),
        },
        rekey_limit: args.rekey_limit,
        window_size: args.ssh_window,
        max_packet: args.ssh_max_packet,
        exec_idle_timeout: args.exec_idle_timeout,
        thread: match args.host_thread {
            HostThreadArg::Own => HostThread::Own,
            HostThreadArg::Shared => HostThread::Shared,
        },
        ciphers: tunneld::ssh::ciphers::parse(&args.ciphers)
            .map_err(|e| tunneld::Error::Config(format!("--ciphers: {e}")))?,
        policy: HostPolicy::parse(&args.permit_open, &args.permit_listen)
            .map_err(|e| tunneld::Error::Config(format!("--{}", e.replacen('_', "-", 1))))?,
    };
    let mut config = Config {
        allow_local_bind: BindPolicy::new(args.allow_local_bind.clone()),
        ..Config::default()
    };
    if let Some(dest) = &args.ssh {
        config.add_destination(dest, &defaults)?;
    }
    if let Some(path) = &args.config {
        config.load_file(&expand_home(path), &defaults)?;
    }
    config.limits.max_buffer_per_connection = args.max_connection_buffer;
    config.limits.max_connections = args.max_connections;
    config.limits.max_connections_per_tunnel = args.max_connections_per_tunnel;
    config.limits.reconnect_wait = args.reconnect_wait;
    config.limits.copy_buffer = args.copy_buffer;
    config.limits.max_tunnels = args.max_tunnels;
    config.limits.max_watchers = args.max_watchers;
    config.limits.max_execs = args.max_execs;
    config.spill = SpillPolicy::new(
        args.spill_dir
            .as_deref()
            .map(expand_home)
            .unwrap_or_else(SpillPolicy::default_dir),
        args.max_connection_spill,
        args.max_spill,
    );
    config.spill.prepare().map_err(tunneld::Error::Config)?;
    config.finish()?;
    Ok(config)
}

async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        _ = term.recv() => tracing::info!("SIGTERM received"),
    }
}

/// Who may call the API, from the flags; also says whether that protects
/// a non-loopback listener.
fn build_access(args: &Args) -> Result<(ApiAccess, Exposure), String> {
    let tokens = match &args.token_file {
        Some(path) => Some(TokenStore::load(&expand_home(path))?),
        None => None,
    };
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            if matches!(args.listen, ListenAddr::Unix(_)) {
                return Err(
                    "--tls-cert is for TCP listeners; a unix socket is already private to its owner".into(),
                );
            }
            Some(
                TlsFiles {
                    cert: expand_home(cert),
                    key: expand_home(key),
                    client_ca: args.tls_client_ca.as_deref().map(expand_home),
                }
                .load()?,
            )
        }
        _ => None,
    };
    let exposure = Exposure::from_flags(
        tls.is_some(),
        args.tls_client_ca.is_some() || tokens.is_some(),
        args.insecure_listen,
    );
    match (&tokens, &args.listen) {
        (Some(tokens), _) => tracing::info!(
            tokens = tokens.current().len(),
            file = %tokens.path().display(),
            "API calls need a token (SIGHUP reloads the file)"
        ),
        (None, ListenAddr::Tcp(_)) if tls.is_none() || args.tls_client_ca.is_none() => {
            tracing::info!(
                "the API has no client authentication: any local user can call it; \
                 on a shared machine use --listen unix:/PATH or --token-file"
            )
        }
        _ => {}
    }
    let mut access = ApiAccess::local();
    access.auth.tokens = tokens;
    access.tls = tls;
    if let Some(n) = args.max_api_connections {
        access.max_connections = n;
    }
    Ok((access, exposure))
}

/// Logs when RUST_LOG is not set: info, less of russh, and tonic's line
/// about each failed TLS handshake (a client without a certificate, or one
/// from another CA), which it logs at debug; those, like refused calls,
/// are rate-limited on stderr ([`tunneld::logging::Throttled`]).
const DEFAULT_LOG_FILTER: &str = "info,russh=warn,tonic::transport::server::io_stream=debug";

/// Handles every SIGHUP (a `postrotate kill -HUP` must never end the
/// daemon): reloads the token file when there is one, keeping the old
/// tokens if the new file is bad, and logs what it did.
async fn on_sighup(mut hup: tokio::signal::unix::Signal, tokens: Option<TokenStore>) {
    while hup.recv().await.is_some() {
        match &tokens {
            Some(tokens) => match tokens.reload() {
                Ok(n) => {
                    tracing::info!(tokens = n, file = %tokens.path().display(), "SIGHUP: token file reloaded")
                }
                Err(e) => tracing::warn!("SIGHUP: {e}; the tokens in use are unchanged"),
            },
            None => tracing::info!("SIGHUP: nothing to reload (no --token-file); tunneld goes on"),
        }
    }
}

/// Logs to stderr (filtered by RUST_LOG) and, with `--audit-log`, audit
/// lines as JSON to that file whatever RUST_LOG says.
fn init_logging(audit_log: Option<&std::path::Path>) -> Result<(), String> {
    use tracing_subscriber::filter::FilterExt as _;
    use tracing_subscriber::{
        Layer as _, filter, layer::SubscriberExt as _, util::SubscriberInitExt as _,
    };
    let stderr = tracing_subscriber::fmt::layer()
        .fmt_fields(tunneld::logging::escaped_fields())
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER))
                .and(tunneld::logging::Throttled),
        );
    let audit = match audit_log {
        Some(path) => {
            use std::os::unix::fs::OpenOptionsExt;
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| format!("--audit-log {}: {e}", path.display()))?;
            Some(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::sync::Mutex::new(file))
                    .with_filter(
                        filter::Targets::new().with_target(AUDIT_TARGET, tracing::Level::INFO),
                    ),
            )
        }
        None => None,
    };
    tracing_subscriber::registry()
        .with(stderr)
        .with(audit)
        .init();
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(e) = init_logging(args.audit_log.as_deref().map(expand_home).as_deref()) {
        eprintln!("tunneld: {e}");
        return ExitCode::from(2);
    }

    let config = match build_config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tunneld: {e}");
            return ExitCode::from(2);
        }
    };
    // Each carried connection holds a descriptor; take what the hard limit
    // allows, as OpenSSH and Go programs do.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::debug!(limit = n, "open file limit"),
        Err(e) => tracing::warn!("cannot raise the open file limit: {e}"),
    }
    let (access, exposure) = match build_access(&args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("tunneld: {e}");
            return ExitCode::from(2);
        }
    };
    // Registered before the API listens, so no SIGHUP finds the default
    // action (exit) in place.
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(hup) => {
            tokio::spawn(on_sighup(hup, access.auth.tokens.clone()));
        }
        Err(e) => tracing::warn!("cannot handle SIGHUP: {e}"),
    }
    let listener = match tunneld::listen::bind(&args.listen, &exposure).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("tunneld: {e}");
            return ExitCode::from(2);
        }
    };
    let addr = listener.to_string();
    // One line on stdout so scripts and tests learn the port when it was 0.
    println!("tunneld listening on {addr}");
    tracing::info!(%addr, hosts = ?config.hosts.keys().collect::<Vec<_>>(), default = ?config.default_host, "tunneld started");

    let shutdown = CancellationToken::new();
    tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            stop_signal().await;
            shutdown.cancel();
        }
    });
    let run = tunneld::run(listener, access, config, shutdown.clone());
    let grace = async {
        shutdown.cancelled().await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        r = run => match r {
            Ok(()) => {
                tracing::info!("tunneld stopped");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("tunneld: {e}");
                ExitCode::FAILURE
            }
        },
        () = grace => {
            tracing::warn!("shutdown took longer than {}s; exiting anyway", SHUTDOWN_GRACE.as_secs());
            ExitCode::SUCCESS
        }
    }
}
