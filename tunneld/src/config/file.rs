//! The TOML file of named hosts, and `[user@]host[:port]` destinations (the
//! `--ssh` flag's and each file host's `address`).

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde::Deserialize;

use super::{
    Config, DEFAULT_HOST_NAME, HostKeyPolicy, HostSettings, PassphraseSource,
    destination::{HostDefaults, resolve_host},
    expand_home,
    jump::ProxyJump,
    parse_duration, parse_size,
};
use crate::{
    error::{Error, Result},
    policy::{BindPolicy, HostPolicy},
};

/// The TOML file's shape.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    default_host: Option<String>,
    #[serde(default)]
    allow_local_bind: Vec<String>,
    #[serde(default)]
    hosts: BTreeMap<String, FileHost>,
}

/// A key that takes one value or a list (`identity = "k"` or
/// `identity = ["k1", "k2"]`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    fn into_vec(self) -> Vec<T> {
        match self {
            OneOrMany::One(v) => vec![v],
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileHost {
    address: String,
    identity: Option<OneOrMany<PathBuf>>,
    certificate: Option<OneOrMany<PathBuf>>,
    identities_only: Option<bool>,
    identity_agent: Option<PathBuf>,
    connect_timeout: Option<String>,
    known_hosts: Option<PathBuf>,
    passphrase_file: Option<PathBuf>,
    passphrase_env: Option<String>,
    host_key_policy: Option<HostKeyPolicy>,
    keepalive_interval: Option<String>,
    keepalive_max: Option<usize>,
    reconnect_min: Option<String>,
    reconnect_max: Option<String>,
    rekey_limit: Option<String>,
    ciphers: Option<Vec<String>>,
    permit_open: Option<Vec<String>>,
    permit_listen: Option<Vec<String>>,
    /// Jump hosts (`ssh -J`): a hop naming a host of the file is that host,
    /// any other has the flags' settings.
    proxy_jump: Option<ProxyJump>,
}

impl FileHost {
    /// Applies the host's own keys over `settings` (the flags' defaults).
    fn apply(self, name: &str, settings: &mut HostSettings) -> Result<()> {
        if let Some(files) = self.identity {
            settings.identities = files.into_vec().iter().map(|p| expand_home(p)).collect();
            settings.default_identities = false;
        }
        if let Some(files) = self.certificate {
            settings.certificates = files.into_vec().iter().map(|p| expand_home(p)).collect();
        }
        if let Some(only) = self.identities_only {
            settings.identities_only = only;
        }
        if let Some(agent) = self.identity_agent {
            settings.agent = super::overrides::agent_source(&agent);
        }
        if let Some(p) = self.known_hosts {
            settings.known_hosts = expand_home(&p);
        }
        match (self.passphrase_file, self.passphrase_env) {
            (Some(_), Some(_)) => {
                return Err(Error::Config(format!(
                    "host {name:?}: set passphrase_file or passphrase_env, not both"
                )));
            }
            (Some(f), None) => settings.passphrase = Some(PassphraseSource::File(expand_home(&f))),
            (None, Some(v)) => settings.passphrase = Some(PassphraseSource::Env(v)),
            (None, None) => {}
        }
        if let Some(p) = self.host_key_policy {
            settings.host_key_policy = p;
        }
        let duration = |key: &str, s: &str| {
            parse_duration(s).map_err(|e| Error::Config(format!("host {name:?}: {key}: {e}")))
        };
        if let Some(s) = self.connect_timeout {
            settings.connect_timeout = duration("connect_timeout", &s)?;
        }
        if let Some(s) = self.keepalive_interval {
            settings.keepalive_interval = duration("keepalive_interval", &s)?;
        }
        if let Some(n) = self.keepalive_max {
            settings.keepalive_max = n;
        }
        if let Some(s) = self.reconnect_min {
            settings.reconnect.min = duration("reconnect_min", &s)?;
        }
        if let Some(s) = self.reconnect_max {
            settings.reconnect.max = duration("reconnect_max", &s)?;
        }
        if settings.reconnect.max < settings.reconnect.min {
            return Err(Error::Config(format!(
                "host {name:?}: reconnect_max is shorter than reconnect_min"
            )));
        }
        if let Some(s) = self.rekey_limit {
            settings.rekey_limit = parse_size(&s)
                .map_err(|e| Error::Config(format!("host {name:?}: rekey_limit: {e}")))?;
        }
        if let Some(names) = self.ciphers {
            settings.ciphers = crate::ssh::ciphers::parse(&names)
                .map_err(|e| Error::Config(format!("host {name:?}: ciphers: {e}")))?;
        }
        if self.permit_open.is_some() || self.permit_listen.is_some() {
            // A host's own list replaces the flag's, as a whole.
            let open = self.permit_open.map(none_if_empty);
            let listen = self.permit_listen.map(none_if_empty);
            let parsed = HostPolicy::parse(
                open.as_deref().unwrap_or_default(),
                listen.as_deref().unwrap_or_default(),
            )
            .map_err(|e| Error::Config(format!("host {name:?}: {e}")))?;
            if open.is_some() {
                settings.policy.permit_open = parsed.permit_open;
            }
            if listen.is_some() {
                settings.policy.permit_listen = parsed.permit_listen;
            }
        }
        Ok(())
    }
}

impl Config {
    /// Adds the host given on the command line as `--ssh` under the name
    /// [`DEFAULT_HOST_NAME`].
    pub fn add_destination(&mut self, destination: &str, defaults: &HostDefaults) -> Result<()> {
        let (host, config_jump) =
            resolve_host(DEFAULT_HOST_NAME, destination, defaults, |_| Ok(()))?;
        self.hosts.insert(host.name.clone(), host);
        if self.default_host.is_none() {
            self.default_host = Some(DEFAULT_HOST_NAME.to_string());
        }
        // ssh_config's ProxyJump; --jump, applied later, wins over it.
        if let Some(hops) = config_jump {
            self.route_hosts(vec![(DEFAULT_HOST_NAME.to_string(), hops)], defaults)?;
        }
        Ok(())
    }

    /// Reads named hosts from a TOML file.
    pub fn load_file(&mut self, path: &Path, defaults: &HostDefaults) -> Result<()> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::Config(format!("cannot read config file {}: {e}", path.display()))
        })?;
        self.load_str(&text, defaults)
            .map_err(|e| Error::Config(format!("config file {}: {e}", path.display())))
    }

    /// Reads named hosts from TOML text.
    pub fn load_str(&mut self, text: &str, defaults: &HostDefaults) -> Result<()> {
        let file: FileConfig = toml::from_str(text).map_err(|e| Error::Config(e.to_string()))?;
        let mut routed = Vec::new();
        for (name, mut h) in file.hosts {
            validate_host_name(&name)?;
            if self.hosts.contains_key(&name) {
                return Err(Error::Config(format!(
                    "host {name:?} is defined twice (by --ssh and the config file?)"
                )));
            }
            let address = h.address.clone();
            let own_jump = h.proxy_jump.take();
            let (host, config_jump) =
                resolve_host(&name, &address, defaults, |s| h.apply(&name, s))?;
            // The file's proxy_jump wins over ssh_config's ProxyJump.
            let hops: Option<Vec<String>> = match &own_jump {
                Some(p) => Some(p.hops()?.into_iter().map(String::from).collect()),
                None => config_jump,
            };
            if let Some(hops) = hops {
                routed.push((name.clone(), hops));
            }
            self.hosts.insert(name, host);
        }
        self.route_hosts(routed, defaults)?;
        let mut binds = self.allow_local_bind.allowed().to_vec();
        binds.extend(file.allow_local_bind);
        self.allow_local_bind = BindPolicy::new(binds);
        if let Some(d) = file.default_host {
            if !self.hosts.contains_key(&d) {
                return Err(Error::Config(format!(
                    "default_host {d:?} is not among the configured hosts"
                )));
            }
            self.default_host = Some(d);
        }
        Ok(())
    }
}

pub(super) fn validate_host_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "host name {name:?} may hold only letters, digits, '-', '_' and '.'"
        )))
    }
}

/// An empty list in the file means "nothing", as `none` does; an absent key
/// means "no restriction".
fn none_if_empty(list: Vec<String>) -> Vec<String> {
    if list.is_empty() {
        vec!["none".to_string()]
    } else {
        list
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::ssh::backoff::Backoff;

    fn resolve_host_only(
        name: &str,
        dest: &str,
        d: &HostDefaults,
        own: impl FnOnce(&mut HostSettings) -> Result<()>,
    ) -> Result<crate::ssh::HostConfig> {
        resolve_host(name, dest, d, own).map(|(h, _)| h)
    }

    fn defaults() -> HostDefaults {
        HostDefaults::without_ssh_config(HostSettings {
            identities: vec!["/k".into()],
            default_identities: false,
            known_hosts: "/kh".into(),
            ..HostSettings::openssh()
        })
    }

    #[test]
    fn hosts_set_their_own_forward_rules() {
        let mut c = Config::default();
        c.load_str(
            "allow_local_bind = [\"0.0.0.0\"]\n[hosts.a]\naddress = \"h\"\npermit_open = [\"db:5432\"]\n[hosts.b]\naddress = \"h\"\npermit_listen = []\n",
            &defaults(),
        )
        .unwrap();
        assert!(
            c.hosts["a"]
                .settings
                .policy
                .check_open("a", "db", 5432)
                .is_ok()
        );
        assert!(
            c.hosts["a"]
                .settings
                .policy
                .check_open("a", "db", 22)
                .is_err()
        );
        assert!(
            c.hosts["a"]
                .settings
                .policy
                .check_listen("a", "localhost", 80)
                .is_ok()
        );
        assert!(
            c.hosts["b"]
                .settings
                .policy
                .check_listen("b", "localhost", 80)
                .is_err()
        );
        assert!(c.hosts["b"].settings.policy.check_open("b", "x", 1).is_ok());
        assert!(
            c.allow_local_bind
                .check("0.0.0.0", [0, 0, 0, 0].into())
                .is_ok()
        );
        let e = Config::default()
            .load_str(
                "[hosts.a]\naddress = \"h\"\npermit_open = [\"db\"]\n",
                &defaults(),
            )
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("host \"a\": permit_open") && e.contains("HOST:PORT"),
            "{e}"
        );
    }

    #[test]
    fn destinations_parse_like_ssh() {
        let h = resolve_host_only("a", "bob@example.com:2222", &defaults(), |_| Ok(())).unwrap();
        assert_eq!(
            (h.user.as_str(), h.hostname.as_str(), h.port),
            ("bob", "example.com", 2222)
        );
        let h = resolve_host_only("a", "example.com", &defaults(), |_| Ok(())).unwrap();
        assert_eq!((h.hostname.as_str(), h.port), ("example.com", 22));
        let h = resolve_host_only("a", "u@[::1]:2200", &defaults(), |_| Ok(())).unwrap();
        assert_eq!((h.hostname.as_str(), h.port), ("::1", 2200));
        assert_eq!(h.addr(), "[::1]:2200");
        assert!(resolve_host_only("a", "u@h:70000", &defaults(), |_| Ok(())).is_err());
        assert!(resolve_host_only("a", "@h", &defaults(), |_| Ok(())).is_err());
        assert!(resolve_host_only("a", "u@", &defaults(), |_| Ok(())).is_err());
    }

    #[test]
    fn file_hosts_take_defaults_and_overrides() {
        let mut c = Config::default();
        c.load_str(
            r#"
            default_host = "db"
            [hosts.db]
            address = "pg@10.0.0.5"
            identity = "/keys/db"
            host_key_policy = "accept-new"
            passphrase_env = "DB_KEY_PASS"
            [hosts.web]
            address = "web:2022"
            "#,
            &defaults(),
        )
        .unwrap();
        c.finish().unwrap();
        assert_eq!(c.default_host.as_deref(), Some("db"));
        let db = &c.hosts["db"];
        assert_eq!(db.settings.identities, vec![PathBuf::from("/keys/db")]);
        assert_eq!(db.settings.known_hosts, PathBuf::from("/kh"));
        assert_eq!(db.settings.host_key_policy, HostKeyPolicy::AcceptNew);
        assert_eq!(
            db.settings.passphrase,
            Some(PassphraseSource::Env("DB_KEY_PASS".into()))
        );
        assert_eq!(c.hosts["web"].port, 2022);
    }

    #[test]
    fn hosts_set_their_own_reconnect_and_rekey() {
        let mut c = Config::default();
        c.load_str(
            "[hosts.a]\naddress = \"u@h\"\nreconnect_min = \"200ms\"\nreconnect_max = \"2s\"\nrekey_limit = \"256MiB\"\n",
            &defaults(),
        )
        .unwrap();
        let a = &c.hosts["a"];
        assert_eq!(
            a.settings.reconnect,
            Backoff {
                min: Duration::from_millis(200),
                max: Duration::from_secs(2)
            }
        );
        assert_eq!(a.settings.rekey_limit, 256 << 20);
        let e = Config::default()
            .load_str(
                "[hosts.a]\naddress = \"h\"\nreconnect_min = \"5s\"\nreconnect_max = \"1s\"\n",
                &defaults(),
            )
            .unwrap_err()
            .to_string();
        assert!(e.contains("reconnect_max is shorter"), "{e}");
        let e = Config::default()
            .load_str(
                "[hosts.a]\naddress = \"h\"\nreconnect_min = \"0s\"\n",
                &defaults(),
            )
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("reconnect_min") && e.contains("longer than zero"),
            "{e}"
        );
    }

    #[test]
    fn the_shipped_example_parses() {
        let mut c = Config::default();
        c.load_str(
            include_str!("../../../deploy/hosts.example.toml"),
            &defaults(),
        )
        .unwrap();
        c.finish().unwrap();
        assert_eq!(c.default_host.as_deref(), Some("bastion"));
        assert_eq!(c.hosts["db-jump"].port, 2222);
        assert_eq!(c.hosts["app"].via(), ["bastion"]);
        assert_eq!(c.hosts["app"].jump[0].hostname, "bastion.example.com");
        assert_eq!(
            c.hosts["bastion"].settings.keepalive_interval,
            Duration::from_secs(15)
        );
    }

    #[test]
    fn bad_files_are_refused_with_the_reason() {
        let mut c = Config::default();
        let e = c.load_str(
            "[hosts.x]\naddress = \"h\"\nidentty = \"/k\"\n",
            &defaults(),
        );
        assert!(e.unwrap_err().to_string().contains("identty"));
        let e = Config::default().load_str("default_host = \"nope\"\n", &defaults());
        assert!(e.unwrap_err().to_string().contains("nope"));
        assert!(Config::default().finish().is_err());
    }
}
