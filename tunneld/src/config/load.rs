//! From flags and files to a [`Config`]: the one path tunneld's settings
//! take, at start and (later) on reload.

use super::{
    Config, ConfigError, Flags, HostSettings, HostThreadArg, PassphraseSource,
    destination::HostDefaults, error::Source, expand_home, overrides::SshOverrides,
    ssh_config::SshConfigFiles,
};
use crate::{
    error::{Error, Result},
    policy::{BindPolicy, HostPolicy},
    relay::spill::SpillPolicy,
    ssh::{HostThread, backoff::Backoff},
};

/// Builds the daemon's [`Config`] from the command line's `flags` and the
/// files they name (`--config`), and makes sure spill files can be
/// created; callable again to reload. The error lists every problem, one a
/// line, each `FILE:LINE:COL: message` when it has a place.
pub fn load(flags: &Flags) -> Result<Config> {
    let config = check(flags).map_err(|errors| ConfigError::join(&errors))?;
    config.spill.prepare().map_err(Error::Config)?;
    Ok(config)
}

/// Builds the [`Config`] as [`load`] does, without touching the disk beyond
/// reading the files (`tunneld --check-config`): no spill directory is
/// created. Returns every problem found, in the order of the flags and
/// then of the file.
pub fn check(flags: &Flags) -> Result<Config, Vec<ConfigError>> {
    let unplaced = |e: Error| vec![ConfigError::unplaced(e.to_string())];
    let (mut config, defaults) = from_flags(flags).map_err(unplaced)?;
    let mut errors = Vec::new();
    if let Some(dest) = &flags.ssh {
        errors.extend(ConfigError::of(config.add_destination(dest, &defaults)));
    }
    let mut file = None;
    if let Some(path) = &flags.config {
        let path = expand_home(path);
        match std::fs::read_to_string(&path) {
            Ok(text) => file = Some((path, text)),
            Err(e) => {
                let src = Source {
                    path: Some(path.as_path()),
                    text: "",
                };
                errors.push(src.whole(format!("cannot read the config file: {e}")));
            }
        }
    }
    let mut pending = None;
    if let Some((path, text)) = &file {
        let src = Source {
            path: Some(path.as_path()),
            text: text.as_str(),
        };
        let (tunnels, file_errors) = config.read_source(&src, &defaults);
        pending = tunnels;
        errors.extend(file_errors);
    }
    // After the file: a hop may name one of its hosts.
    if let Some(spec) = &flags.jump {
        errors.extend(ConfigError::of(config.set_jump(
            super::DEFAULT_HOST_NAME,
            spec,
            &defaults,
        )));
    }
    if flags.ssh_config_hosts {
        errors.extend(ConfigError::of(config.add_ssh_config_aliases(&defaults)));
    }
    // Tunnels last: they may go through any host, an ssh_config alias
    // included.
    if let (Some(pending), Some((path, text))) = (pending, &file) {
        let src = Source {
            path: Some(path.as_path()),
            text: text.as_str(),
        };
        errors.extend(config.declare_tunnels(pending, &src));
    }
    config.limits.max_buffer_per_connection = flags.max_connection_buffer;
    config.limits.max_connections = flags.max_connections;
    config.limits.max_connections_per_tunnel = flags.max_connections_per_tunnel;
    config.limits.reconnect_wait = flags.reconnect_wait;
    config.limits.copy_buffer = flags.copy_buffer;
    config.limits.max_tunnels = flags.max_tunnels;
    config.limits.max_watchers = flags.max_watchers;
    config.limits.max_execs = flags.max_execs;
    config.limits.max_hosts = flags.max_hosts;
    config.drain_timeout = flags.drain_timeout;
    config.spill = SpillPolicy::new(
        flags
            .spill_dir
            .as_deref()
            .map(expand_home)
            .unwrap_or_else(SpillPolicy::default_dir),
        flags.max_connection_spill,
        flags.max_spill,
    );
    config.state_dir = super::state_dir::resolve(flags.state_dir.as_deref());
    config.file = flags.config.as_deref().map(expand_home);
    config.host_defaults = Some(std::sync::Arc::new(defaults));
    // "No host" is only worth saying when nothing else is wrong: a file
    // whose every host is wrong says why already.
    if errors.is_empty() {
        errors.extend(ConfigError::of(config.finish()));
    }
    match errors.is_empty() {
        true => Ok(config),
        false => Err(errors),
    }
}

/// The flags' defaults of every host, and a config holding what only the
/// flags say.
fn from_flags(flags: &Flags) -> Result<(Config, HostDefaults)> {
    let passphrase = match &flags.passphrase_file {
        Some(f) => Some(PassphraseSource::File(expand_home(f))),
        None if std::env::var_os("TUNNELD_KEY_PASSPHRASE").is_some() => {
            Some(PassphraseSource::Env("TUNNELD_KEY_PASSPHRASE".into()))
        }
        None => None,
    };
    let settings = HostSettings {
        passphrase,
        reconnect: Backoff {
            min: flags.reconnect_min,
            max: flags.reconnect_max.max(flags.reconnect_min),
        },
        rekey_limit: flags.rekey_limit,
        window_size: flags.ssh_window,
        max_packet: flags.ssh_max_packet,
        exec_idle_timeout: flags.exec_idle_timeout,
        thread: match flags.host_thread {
            HostThreadArg::Own => HostThread::Own,
            HostThreadArg::Shared => HostThread::Shared,
        },
        policy: HostPolicy::parse(&flags.permit_open, &flags.permit_listen)
            .map_err(|e| Error::Config(format!("--{}", e.replacen('_', "-", 1))))?,
        ..HostSettings::openssh()
    };
    let overrides = SshOverrides::from_flags(flags)?;
    let ssh_config = match flags.ssh_config.as_deref() {
        None => SshConfigFiles::Default,
        Some(p) if p.as_os_str() == "none" => SshConfigFiles::None,
        Some(p) => SshConfigFiles::File(expand_home(p)),
    };
    let defaults = HostDefaults::new(settings, overrides, &ssh_config)?;
    let config = Config {
        allow_local_bind: BindPolicy::new(flags.allow_local_bind.clone()),
        ..Config::default()
    };
    Ok((config, defaults))
}
