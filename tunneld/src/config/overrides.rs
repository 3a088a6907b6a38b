//! The settings both tunneld and OpenSSH's client configuration can give a
//! host, as tunneld's flags set them explicitly. A flag given wins over
//! ssh_config, as the `ssh` command line does; a flag left out lets
//! ssh_config, then the default, decide.

use std::{path::PathBuf, time::Duration};

use super::{AgentSource, Flags, HostKeyPolicy, HostSettings, PolicyArg, expand_home};
use crate::error::{Error, Result};

/// The ssh_config-overlapping flags that were given.
#[derive(Debug, Clone, Default)]
pub struct SshOverrides {
    /// `--identity` (several).
    pub identities: Option<Vec<PathBuf>>,
    /// `--certificate` (several).
    pub certificates: Option<Vec<PathBuf>>,
    /// `--identities-only`.
    pub identities_only: Option<bool>,
    /// `--identity-agent`.
    pub agent: Option<AgentSource>,
    /// `--known-hosts`.
    pub known_hosts: Option<PathBuf>,
    /// `--host-key-policy`.
    pub host_key_policy: Option<HostKeyPolicy>,
    /// `--keepalive-interval`.
    pub keepalive_interval: Option<Duration>,
    /// `--keepalive-count`.
    pub keepalive_max: Option<usize>,
    /// `--connect-timeout`.
    pub connect_timeout: Option<Duration>,
    /// `--ciphers`.
    pub ciphers: Option<Vec<russh::cipher::Name>>,
}

impl SshOverrides {
    /// The overlapping flags of `flags` that were given.
    pub fn from_flags(flags: &Flags) -> Result<Self> {
        let paths = |list: &[PathBuf]| {
            (!list.is_empty()).then(|| list.iter().map(|p| expand_home(p)).collect())
        };
        Ok(SshOverrides {
            identities: paths(&flags.identity),
            certificates: paths(&flags.certificate),
            identities_only: flags.identities_only.then_some(true),
            agent: flags.identity_agent.as_deref().map(agent_source),
            known_hosts: flags.known_hosts.as_deref().map(expand_home),
            host_key_policy: flags.host_key_policy.map(|p| match p {
                PolicyArg::Strict => HostKeyPolicy::Strict,
                PolicyArg::AcceptNew => HostKeyPolicy::AcceptNew,
            }),
            keepalive_interval: flags.keepalive_interval,
            keepalive_max: flags.keepalive_count.map(|n| n as usize),
            connect_timeout: flags.connect_timeout,
            ciphers: if flags.ciphers.is_empty() {
                None
            } else {
                Some(
                    crate::ssh::ciphers::parse(&flags.ciphers)
                        .map_err(|e| Error::Config(format!("--ciphers: {e}")))?,
                )
            },
        })
    }

    /// Sets what was given over `settings`.
    pub fn apply(&self, settings: &mut HostSettings) {
        if let Some(list) = &self.identities {
            settings.identities = list.clone();
            settings.default_identities = false;
        }
        if let Some(list) = &self.certificates {
            settings.certificates = list.clone();
        }
        if let Some(only) = self.identities_only {
            settings.identities_only = only;
        }
        if let Some(agent) = &self.agent {
            settings.agent = agent.clone();
        }
        if let Some(path) = &self.known_hosts {
            settings.known_hosts = path.clone();
        }
        if let Some(policy) = self.host_key_policy {
            settings.host_key_policy = policy;
        }
        if let Some(d) = self.keepalive_interval {
            settings.keepalive_interval = d;
        }
        if let Some(n) = self.keepalive_max {
            settings.keepalive_max = n;
        }
        if let Some(d) = self.connect_timeout {
            settings.connect_timeout = d;
        }
        if let Some(c) = &self.ciphers {
            settings.ciphers = c.clone();
        }
    }
}

/// `--identity-agent` / `identity_agent`: a socket path, or `none`.
pub fn agent_source(value: &std::path::Path) -> AgentSource {
    if value.as_os_str() == "none" {
        AgentSource::None
    } else {
        AgentSource::Socket(expand_home(value))
    }
}
