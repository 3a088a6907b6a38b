//! The `tunneld` binary: parses flags, binds the API listener, wires signals,
//! and hands everything to [`tunneld::run`].

use std::{io::IsTerminal, path::PathBuf, process::ExitCode, time::Duration};

use clap::Parser;
use tokio_util::sync::CancellationToken;
use tunneld::ListenAddr;
use tunneld::{
    backoff::Backoff,
    config::{
        Config, HostDefaults, HostKeyPolicy, PassphraseSource, expand_home, parse_duration,
        parse_size,
    },
};

/// Default address of the control API.
const DEFAULT_LISTEN: &str = "127.0.0.1:4522";

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
    #[arg(long, env = "TUNNELD_LISTEN", default_value = DEFAULT_LISTEN, value_name = "ADDR")]
    listen: ListenAddr,

    /// Allow a non-loopback --listen address without any protection: anyone
    /// who reaches it can run commands with your SSH keys.
    #[arg(long)]
    insecure_listen: bool,

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

    /// Bytes held for one connection whose local reader lags; past it the
    /// connection is reset. Accepts suffixes KiB, MiB.
    #[arg(long, value_name = "SIZE", default_value = "8MiB", value_parser = parse_size)]
    max_connection_buffer: usize,

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

    /// Connections carried at once by the whole daemon; more are refused.
    #[arg(long, value_name = "N", default_value_t = tunneld::config::DEFAULT_MAX_CONNECTIONS, value_parser = positive)]
    max_connections: usize,

    /// Connections carried at once by one tunnel, unless its open request
    /// sets max_connections; more are refused.
    #[arg(long, value_name = "N", default_value_t = tunneld::config::DEFAULT_MAX_CONNECTIONS_PER_TUNNEL, value_parser = clap::value_parser!(u32).range(1..))]
    max_connections_per_tunnel: u32,

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
    };
    let mut config = Config::default();
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

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,russh=warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

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
    let listener = match tunneld::listen::bind(&args.listen, args.insecure_listen).await {
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
    let run = tunneld::run(listener, config, shutdown.clone());
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
