//! From flags and files to a [`Config`]: the one path tunneld's settings
//! take, at start and (later) on reload.

use super::{
    Config, Flags, HostSettings, HostThreadArg, PassphraseSource, destination::HostDefaults,
    expand_home, overrides::SshOverrides, ssh_config::SshConfigFiles,
};
use crate::{
    error::{Error, Result},
    policy::{BindPolicy, HostPolicy},
    relay::spill::SpillPolicy,
    ssh::{HostThread, backoff::Backoff},
};

/// Builds the daemon's [`Config`] from the command line's `flags` and the
/// files they name (`--config`); callable again to reload.
pub fn load(flags: &Flags) -> Result<Config> {
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
    let mut config = Config {
        allow_local_bind: BindPolicy::new(flags.allow_local_bind.clone()),
        ..Config::default()
    };
    if let Some(dest) = &flags.ssh {
        config.add_destination(dest, &defaults)?;
    }
    if let Some(path) = &flags.config {
        config.load_file(&expand_home(path), &defaults)?;
    }
    // After the file: a hop may name one of its hosts.
    if let Some(spec) = &flags.jump {
        config.set_jump(super::DEFAULT_HOST_NAME, spec, &defaults)?;
    }
    if flags.ssh_config_hosts {
        config.add_ssh_config_aliases(&defaults)?;
    }
    config.limits.max_buffer_per_connection = flags.max_connection_buffer;
    config.limits.max_connections = flags.max_connections;
    config.limits.max_connections_per_tunnel = flags.max_connections_per_tunnel;
    config.limits.reconnect_wait = flags.reconnect_wait;
    config.limits.copy_buffer = flags.copy_buffer;
    config.limits.max_tunnels = flags.max_tunnels;
    config.limits.max_watchers = flags.max_watchers;
    config.limits.max_execs = flags.max_execs;
    config.spill = SpillPolicy::new(
        flags
            .spill_dir
            .as_deref()
            .map(expand_home)
            .unwrap_or_else(SpillPolicy::default_dir),
        flags.max_connection_spill,
        flags.max_spill,
    );
    config.spill.prepare().map_err(Error::Config)?;
    config.state_dir = super::state_dir::resolve(flags.state_dir.as_deref());
    config.finish()?;
    Ok(config)
}
