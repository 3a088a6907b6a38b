//! A destination (`--ssh`, a file host's `address`) resolved into a host as
//! `ssh DESTINATION` resolves it: `[user@]host[:port]` parsed, `host` looked
//! up in OpenSSH's client configuration, then tunneld's explicit flags and
//! the file host's own keys laid over what ssh_config says, as the `ssh`
//! command line is laid over it. Identity and certificate files named by
//! tunneld come first and ssh_config's follow, as with `ssh -i`.

use std::path::PathBuf;

use super::{
    AgentSource, Config, HostConfig, HostKeyPolicy, HostSettings,
    overrides::SshOverrides,
    ssh_config::{
        self, SshConfig, SshConfigContext, SshConfigFiles, SshConfigHost, StrictHostKeyChecking,
    },
    units::parse_port,
};
use crate::{
    error::{Error, Result},
    sys::user,
};

/// What every host starts from: tunneld's defaults with its own flags, the
/// flags that override ssh_config, and where ssh_config is.
#[derive(Debug)]
pub struct HostDefaults {
    /// tunneld's defaults, with the flags only tunneld has applied.
    pub settings: HostSettings,
    /// The flags that override ssh_config when given.
    pub overrides: SshOverrides,
    /// The ssh_config files (`--ssh-config`), read once for every host.
    pub ssh_config: SshConfig,
    /// Who resolves: home, user, host name.
    pub context: SshConfigContext,
}

impl HostDefaults {
    /// Defaults that read ssh_config `files` (now, once) as the user
    /// running tunneld.
    pub fn new(
        settings: HostSettings,
        overrides: SshOverrides,
        files: &SshConfigFiles,
    ) -> Result<Self> {
        let context = Self::own_context();
        let ssh_config = SshConfig::read(files, &context)
            .map_err(|e| Error::Config(format!("ssh_config: {e}")))?;
        Ok(HostDefaults {
            settings,
            overrides,
            ssh_config,
            context,
        })
    }

    /// Defaults that read no ssh_config (tests and embedders).
    pub fn without_ssh_config(settings: HostSettings) -> Self {
        HostDefaults {
            settings,
            overrides: SshOverrides::default(),
            ssh_config: SshConfig::default(),
            context: Self::own_context(),
        }
    }

    /// Who tunneld runs as, as `ssh` sees its user.
    fn own_context() -> SshConfigContext {
        let mut context = SshConfigContext::new(
            user::passwd_home(),
            user::current_user(),
            user::local_host_name(),
            user::uid(),
        );
        context.env = std::env::vars().collect();
        context
    }
}

/// `[user@]host[:port]` as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// The user, when given.
    pub user: Option<String>,
    /// The host or ssh_config alias.
    pub host: String,
    /// The port, when given.
    pub port: Option<u16>,
}

/// Parses `[user@]host[:port]` (IPv6 as `[addr]:port`) of host `name`.
pub fn parse_destination(name: &str, dest: &str) -> Result<Destination> {
    let bad = |why: &str| {
        Error::Config(format!(
            "SSH destination {dest:?} of host {name:?}: {why} (expected [user@]host[:port])"
        ))
    };
    let (user, rest) = match dest.rsplit_once('@') {
        Some((u, r)) if !u.is_empty() => (Some(u.to_string()), r),
        Some(_) => return Err(bad("empty user")),
        None => (None, dest),
    };
    let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
        let (h, after) = inner.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(parse_port(p).ok_or_else(|| bad("bad port"))?),
            None if after.is_empty() => None,
            None => return Err(bad("junk after ']'")),
        };
        (h.to_string(), port)
    } else {
        match rest.split_once(':') {
            Some((h, p)) if !p.contains(':') => (
                h.to_string(),
                Some(parse_port(p).ok_or_else(|| bad("bad port"))?),
            ),
            Some(_) => (rest.to_string(), None), // bare IPv6 address
            None => (rest.to_string(), None),
        }
    };
    if host.is_empty() {
        return Err(bad("empty host"));
    }
    Ok(Destination { user, host, port })
}

/// Resolves destination `dest` of host `name`: ssh_config, then the
/// explicit flags, then `own` (the file host's keys) over `d.settings`.
/// Also returns the hops of ssh_config's `ProxyJump` for it, if any (the
/// caller routes the host, since a hop may name another host).
pub fn resolve_host(
    name: &str,
    dest: &str,
    d: &HostDefaults,
    own: impl FnOnce(&mut HostSettings) -> Result<()>,
) -> Result<(HostConfig, Option<Vec<String>>)> {
    let dest = parse_destination(name, dest)?;
    let found = d
        .ssh_config
        .resolve(&dest.host, dest.user.as_deref(), dest.port, &d.context)
        .map_err(|e| Error::Config(format!("host {name:?} ({}): ssh_config: {e}", dest.host)))?;
    let mut settings = d.settings.clone();
    apply_ssh_config(name, &found, &d.context, &mut settings)?;
    d.overrides.apply(&mut settings);
    own(&mut settings)?;
    // ssh_config's files follow the ones tunneld names (as with `ssh -i`).
    if !found.identity_files.is_empty() {
        if settings.default_identities {
            settings.identities.clear();
            settings.default_identities = false;
        }
        append_new(&mut settings.identities, &found.identity_files);
    }
    append_new(&mut settings.certificates, &found.certificate_files);
    let hops = match found.proxy_jump.as_deref() {
        None | Some("none") => None,
        Some(spec) => Some(
            super::jump::split(spec)
                .map_err(|e| {
                    Error::Config(format!(
                        "host {name:?} ({}): ssh_config ProxyJump: {e}",
                        dest.host
                    ))
                })?
                .into_iter()
                .map(|h| h.strip_prefix("ssh://").unwrap_or(h).to_string())
                .collect(),
        ),
    };
    let host = HostConfig {
        name: name.to_string(),
        user: found
            .user
            .clone()
            .unwrap_or_else(|| d.context.local_user.clone()),
        hostname: found.hostname.clone().unwrap_or_else(|| dest.host.clone()),
        port: found.port.unwrap_or(ssh_config::DEFAULT_PORT),
        settings,
        jump: Vec::new(),
    };
    Ok((host, hops))
}

/// Most hosts `--ssh-config-hosts` adds from ssh_config's aliases.
pub const MAX_SSH_CONFIG_HOSTS: usize = 256;

impl Config {
    /// Adds every concrete `Host` alias of ssh_config that is not a host
    /// already (`--ssh-config-hosts`), under its own name, up to
    /// [`MAX_SSH_CONFIG_HOSTS`]. An alias that does not resolve, or is not
    /// a valid host name, is logged and left out; it never stops the rest.
    pub fn add_ssh_config_aliases(&mut self, d: &HostDefaults) -> Result<()> {
        let aliases = d.ssh_config.concrete_aliases();
        let mut added = 0;
        for alias in aliases {
            if self.hosts.contains_key(&alias) {
                continue;
            }
            if added == MAX_SSH_CONFIG_HOSTS {
                tracing::warn!(
                    "ssh_config names more than {MAX_SSH_CONFIG_HOSTS} Host aliases; \
                     --ssh-config-hosts offers the first {MAX_SSH_CONFIG_HOSTS}"
                );
                break;
            }
            if let Err(e) = super::file::validate_host_name(&alias) {
                tracing::info!("ssh_config alias left out: {e}");
                continue;
            }
            let routed = resolve_host(&alias, &alias, d, |_| Ok(())).and_then(|(host, hops)| {
                self.hosts.insert(alias.clone(), host);
                match hops {
                    Some(hops) => self.route_hosts(vec![(alias.clone(), hops)], d),
                    None => Ok(()),
                }
            });
            match routed {
                Ok(()) => added += 1,
                Err(e) => {
                    self.hosts.remove(&alias);
                    tracing::warn!("ssh_config alias {alias:?} left out: {e}");
                }
            }
        }
        Ok(())
    }
}

fn append_new(list: &mut Vec<PathBuf>, more: &[PathBuf]) {
    for p in more {
        if !list.contains(p) {
            list.push(p.clone());
        }
    }
}

/// Sets over `settings` what ssh_config says about host `name`, for the
/// keys tunneld has its own meaning for (identity lists are appended by
/// the caller).
fn apply_ssh_config(
    name: &str,
    found: &SshConfigHost,
    context: &SshConfigContext,
    settings: &mut HostSettings,
) -> Result<()> {
    let bad = |key: &str, why: String| {
        Error::Config(format!(
            "host {name:?} ({}): ssh_config {key}: {why}",
            found.alias
        ))
    };
    if let Some(only) = found.identities_only {
        settings.identities_only = only;
    }
    if let Some(agent) = &found.identity_agent {
        settings.agent = match agent.as_str() {
            "none" => AgentSource::None,
            "SSH_AUTH_SOCK" => AgentSource::Env,
            other => match other.strip_prefix('$') {
                Some(var) => match context.env.get(var) {
                    Some(v) if !v.is_empty() => AgentSource::Socket(PathBuf::from(v)),
                    _ => AgentSource::None,
                },
                None => AgentSource::Socket(PathBuf::from(other)),
            },
        };
    }
    if let Some(files) = &found.user_known_hosts_files
        && let Some(first) = files.first()
    {
        settings.known_hosts = first.clone();
    }
    match found.strict_host_key_checking {
        None => {}
        Some(StrictHostKeyChecking::Yes | StrictHostKeyChecking::Ask) => {
            settings.host_key_policy = HostKeyPolicy::Strict
        }
        Some(StrictHostKeyChecking::AcceptNew) => {
            settings.host_key_policy = HostKeyPolicy::AcceptNew
        }
        Some(StrictHostKeyChecking::No) => {
            return Err(bad(
                "StrictHostKeyChecking",
                "\"no\" would accept any host key; tunneld always verifies them: remove it for \
                 this host, or use tunneld's --host-key-policy accept-new (host_key_policy = \
                 \"accept-new\") to add keys of never-seen hosts"
                    .into(),
            ));
        }
    }
    // tunneld always keeps alive: a dead link must be noticed to reconnect.
    if let Some(secs) = found.server_alive_interval.filter(|s| *s > 0) {
        settings.keepalive_interval = std::time::Duration::from_secs(u64::from(secs));
    }
    if let Some(n) = found.server_alive_count_max.filter(|n| *n > 0) {
        settings.keepalive_max = n as usize;
    }
    if let Some(secs) = found.connect_timeout.filter(|s| *s > 0) {
        settings.connect_timeout = std::time::Duration::from_secs(u64::from(secs));
    }
    if let Some(list) = &found.ciphers {
        // Ciphers russh lacks (CBC, the CTR ones it may not have) are left
        // out, as OpenSSH leaves out what the server lacks; none left is an
        // error.
        let usable: Vec<russh::cipher::Name> = list
            .split(',')
            .filter_map(|n| crate::ssh::ciphers::parse(&[n.to_string()]).ok())
            .flatten()
            .collect();
        if usable.is_empty() {
            return Err(bad(
                "Ciphers",
                format!("none of {list} is supported by tunneld; see --ciphers for those it has"),
            ));
        }
        settings.ciphers = usable;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_never_shows_in_debug_output() {
        let mut d = HostDefaults::without_ssh_config(HostSettings::openssh());
        d.context
            .env
            .insert("TUNNELD_KEY_PASSPHRASE".into(), "correct horse".into());
        let shown = format!("{d:?}");
        assert!(!shown.contains("correct horse"), "{shown}");
        assert!(shown.contains("variables>"), "{shown}");
    }

    #[test]
    fn destinations_parse_like_ssh() {
        let d = parse_destination("h", "u@[::1]:2222").unwrap();
        assert_eq!(
            d,
            Destination {
                user: Some("u".into()),
                host: "::1".into(),
                port: Some(2222)
            }
        );
        let d = parse_destination("h", "bastion").unwrap();
        assert_eq!((d.user, d.host.as_str(), d.port), (None, "bastion", None));
        assert!(parse_destination("h", "@x").is_err());
        assert!(parse_destination("h", "x:0").is_err());
    }
}
