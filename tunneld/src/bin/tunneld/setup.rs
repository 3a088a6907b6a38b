//! What the flags make: the daemon's `Config` (hosts, limits, spill) and
//! who may reach the API (tokens, TLS, the connection cap).

use tunneld::{
    Exposure,
    config::{Config, HostDefaults, HostKeyPolicy, PassphraseSource, expand_home},
    grpc::tokens::TokenStore,
    policy::{BindPolicy, HostPolicy},
    relay::spill::SpillPolicy,
    server::{ApiAccess, TlsFiles},
    ssh::backoff::Backoff,
};
use tunneld::{ListenAddr, ssh::HostThread};

use crate::flags::{Args, HostThreadArg, PolicyArg};

pub fn build_config(args: &Args) -> tunneld::Result<Config> {
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

/// Who may call the API, from the flags; also says whether that protects
/// a non-loopback listener.
pub fn build_access(args: &Args) -> Result<(ApiAccess, Exposure), String> {
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
