//! A host added while tunneld runs (`tunnelctl host add`, the AddHost
//! call, or a persisted one at start): what was asked, and the
//! [`HostConfig`] it becomes. It resolves as `ssh DEST` would, as the
//! `--ssh` host does: tunneld's defaults, ssh_config for the destination,
//! tunneld's explicit flags, then the request's own identity and
//! known_hosts; its jump hosts may name any host tunneld knows.

use std::{collections::BTreeMap, path::PathBuf};

use super::{
    HostConfig,
    destination::{HostDefaults, resolve_host},
    expand_home,
    jump::{route_through, split},
};
use crate::error::{Error, Result};

/// What a caller asked for: the same fields whether it comes from the API
/// or from the state store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRequest {
    /// The name requests use for it (checked by the caller's layer with
    /// `tunnel_proto::name::check_host_name`).
    pub name: String,
    /// `[user@]host[:port]` or an ssh_config alias.
    pub ssh: String,
    /// The private key file, if named (`ssh -i`).
    pub identity: Option<PathBuf>,
    /// The known_hosts file, if named.
    pub known_hosts: Option<PathBuf>,
    /// Jump hosts as `ssh -J` takes them, if given (`none`: none, even if
    /// ssh_config has a ProxyJump).
    pub jump: Option<String>,
}

impl HostRequest {
    /// The host this request describes, resolved over `defaults`; a jump
    /// hop that names one of `known` is that host.
    pub fn resolve(
        &self,
        defaults: &HostDefaults,
        known: &BTreeMap<String, HostConfig>,
    ) -> Result<HostConfig> {
        let (mut host, config_jump) = resolve_host(&self.name, &self.ssh, defaults, |s| {
            if let Some(key) = &self.identity {
                s.identities = vec![expand_home(key)];
                s.default_identities = false;
            }
            if let Some(kh) = &self.known_hosts {
                s.known_hosts = expand_home(kh);
            }
            Ok(())
        })?;
        let hops: Vec<String> = match &self.jump {
            Some(spec) => split(spec)
                .map_err(|e| Error::InvalidArgument(format!("host {:?}: {e}", self.name)))?
                .into_iter()
                .map(String::from)
                .collect(),
            None => config_jump.unwrap_or_default(),
        };
        if hops.iter().any(|h| h == &self.name) {
            return Err(Error::InvalidArgument(format!(
                "host {:?} cannot be its own jump host",
                self.name
            )));
        }
        host.jump = route_through(known, &self.name, &hops, defaults)?;
        Ok(host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_defaults;

    fn request(ssh: &str) -> HostRequest {
        HostRequest {
            name: "added".into(),
            ssh: ssh.into(),
            identity: None,
            known_hosts: None,
            jump: None,
        }
    }

    #[test]
    fn resolves_like_the_ssh_host_with_its_own_key_and_known_hosts() {
        let d = test_defaults();
        let h = request("deploy@db.example:2200")
            .resolve(&d, &BTreeMap::new())
            .unwrap();
        assert_eq!(
            (
                h.name.as_str(),
                h.user.as_str(),
                h.hostname.as_str(),
                h.port
            ),
            ("added", "deploy", "db.example", 2200)
        );
        assert_eq!(h.settings.identities, [PathBuf::from("/k")]);
        assert_eq!(h.settings.known_hosts, PathBuf::from("/kh"));
        assert!(h.jump.is_empty());

        let own = HostRequest {
            identity: Some("/own-key".into()),
            known_hosts: Some("/own-kh".into()),
            ..request("db.example")
        }
        .resolve(&d, &BTreeMap::new())
        .unwrap();
        assert_eq!(own.settings.identities, [PathBuf::from("/own-key")]);
        assert_eq!(own.settings.known_hosts, PathBuf::from("/own-kh"));
        assert_eq!(own.port, 22);
    }

    #[test]
    fn jump_hops_may_name_known_hosts() {
        let d = test_defaults();
        let bastion = HostRequest {
            name: "bastion".into(),
            ..request("ops@gw:2222")
        }
        .resolve(&d, &BTreeMap::new())
        .unwrap();
        let known = BTreeMap::from([("bastion".to_string(), bastion)]);
        let h = HostRequest {
            jump: Some("bastion,u@mid".into()),
            ..request("inner")
        }
        .resolve(&d, &known)
        .unwrap();
        assert_eq!(h.via(), ["bastion", "u@mid"]);
        assert_eq!(h.jump[0].hostname, "gw");
        for bad in ["", "a,,b", "added"] {
            let e = HostRequest {
                jump: Some(bad.into()),
                ..request("inner")
            }
            .resolve(&d, &known)
            .unwrap_err();
            assert!(e.to_string().contains("jump host"), "{bad:?}: {e}");
        }
        let e = request("u@").resolve(&d, &known).unwrap_err();
        assert!(e.to_string().contains("SSH destination"), "{e}");
    }
}
