//! The TOML file: named hosts, `[user@]host[:port]` destinations (the
//! `--ssh` flag's and each file host's `address`), and the declared
//! tunnels (checked in `tunnels.rs` once every host is known).
//!
//! Values that can be wrong are read as `toml::Spanned`, so each problem
//! names its place, and reading goes on past one: a file's problems are
//! all reported together.

use std::{
    collections::{BTreeMap, BTreeSet},
    ops::Range,
    path::{Path, PathBuf},
};

use serde::Deserialize;
use toml::Spanned;

use super::{
    Config, ConfigError, DEFAULT_HOST_NAME, HostKeyPolicy, HostSettings, PassphraseSource,
    destination::{HostDefaults, resolve_host},
    error::Source,
    expand_home,
    jump::ProxyJump,
    parse_duration, parse_size,
    tunnels::{FileTunnel, PendingTunnels},
};
use crate::{
    error::{Error, Result},
    policy::{BindPolicy, HostPolicy},
};

/// The TOML file's shape.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    default_host: Option<Spanned<String>>,
    #[serde(default)]
    allow_local_bind: Vec<String>,
    #[serde(default)]
    hosts: BTreeMap<Spanned<String>, FileHost>,
    #[serde(default)]
    tunnels: BTreeMap<Spanned<String>, FileTunnel>,
}

/// A key that takes one value or a list (`identity = "k"` or
/// `identity = ["k1", "k2"]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T: Clone> OneOrMany<T> {
    fn to_vec(&self) -> Vec<T> {
        match self {
            OneOrMany::One(v) => vec![v.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileHost {
    address: Spanned<String>,
    identity: Option<OneOrMany<PathBuf>>,
    certificate: Option<OneOrMany<PathBuf>>,
    identities_only: Option<bool>,
    identity_agent: Option<PathBuf>,
    connect_timeout: Option<Spanned<String>>,
    known_hosts: Option<PathBuf>,
    passphrase_file: Option<PathBuf>,
    passphrase_env: Option<Spanned<String>>,
    host_key_policy: Option<HostKeyPolicy>,
    keepalive_interval: Option<Spanned<String>>,
    keepalive_max: Option<usize>,
    reconnect_min: Option<Spanned<String>>,
    reconnect_max: Option<Spanned<String>>,
    rekey_limit: Option<Spanned<String>>,
    ciphers: Option<Spanned<Vec<String>>>,
    permit_open: Option<Spanned<Vec<String>>>,
    permit_listen: Option<Spanned<Vec<String>>>,
    /// Jump hosts (`ssh -J`): a hop naming a host of the file is that host,
    /// any other has the flags' settings.
    proxy_jump: Option<Spanned<ProxyJump>>,
}

/// Problems of one host: a byte range of the file and a message each.
type Problems = Vec<(Option<Range<usize>>, String)>;

impl FileHost {
    /// Applies the host's own keys over `settings` (the flags' defaults);
    /// each key that is wrong adds a problem, and the others still apply.
    fn apply(&self, name: &str, settings: &mut HostSettings, problems: &mut Problems) {
        let mut problem = |span: Range<usize>, m: String| problems.push((Some(span), m));
        if let Some(files) = &self.identity {
            settings.identities = files.to_vec().iter().map(|p| expand_home(p)).collect();
            settings.default_identities = false;
        }
        if let Some(files) = &self.certificate {
            settings.certificates = files.to_vec().iter().map(|p| expand_home(p)).collect();
        }
        if let Some(only) = self.identities_only {
            settings.identities_only = only;
        }
        if let Some(agent) = &self.identity_agent {
            settings.agent = super::overrides::agent_source(agent);
        }
        if let Some(p) = &self.known_hosts {
            settings.known_hosts = expand_home(p);
        }
        match (&self.passphrase_file, &self.passphrase_env) {
            (Some(_), Some(v)) => problem(
                v.span(),
                format!("host {name:?}: set passphrase_file or passphrase_env, not both"),
            ),
            (Some(f), None) => settings.passphrase = Some(PassphraseSource::File(expand_home(f))),
            (None, Some(v)) => {
                settings.passphrase = Some(PassphraseSource::Env(v.get_ref().clone()));
            }
            (None, None) => {}
        }
        if let Some(p) = self.host_key_policy {
            settings.host_key_policy = p;
        }
        let mut duration =
            |key: &str, s: &Spanned<String>, to: &mut std::time::Duration| match parse_duration(
                s.get_ref(),
            ) {
                Ok(d) => *to = d,
                Err(e) => problem(s.span(), format!("host {name:?}: {key}: {e}")),
            };
        if let Some(s) = &self.connect_timeout {
            duration("connect_timeout", s, &mut settings.connect_timeout);
        }
        if let Some(s) = &self.keepalive_interval {
            duration("keepalive_interval", s, &mut settings.keepalive_interval);
        }
        if let Some(s) = &self.reconnect_min {
            duration("reconnect_min", s, &mut settings.reconnect.min);
        }
        if let Some(s) = &self.reconnect_max {
            duration("reconnect_max", s, &mut settings.reconnect.max);
        }
        if let Some(n) = self.keepalive_max {
            settings.keepalive_max = n;
        }
        if settings.reconnect.max < settings.reconnect.min {
            let at = self.reconnect_max.as_ref().or(self.reconnect_min.as_ref());
            problem(
                at.map_or(0..0, Spanned::span),
                format!("host {name:?}: reconnect_max is shorter than reconnect_min"),
            );
        }
        if let Some(s) = &self.rekey_limit {
            match parse_size(s.get_ref()) {
                Ok(n) => settings.rekey_limit = n,
                Err(e) => problem(s.span(), format!("host {name:?}: rekey_limit: {e}")),
            }
        }
        if let Some(names) = &self.ciphers {
            match crate::ssh::ciphers::parse(names.get_ref()) {
                Ok(c) => settings.ciphers = c,
                Err(e) => problem(names.span(), format!("host {name:?}: ciphers: {e}")),
            }
        }
        // A host's own list replaces the flag's, as a whole; each list is
        // parsed on its own so each problem has its place.
        if let Some(open) = &self.permit_open {
            match HostPolicy::parse(&none_if_empty(open.get_ref()), &[]) {
                Ok(p) => settings.policy.permit_open = p.permit_open,
                Err(e) => problem(open.span(), format!("host {name:?}: {e}")),
            }
        }
        if let Some(listen) = &self.permit_listen {
            match HostPolicy::parse(&[], &none_if_empty(listen.get_ref())) {
                Ok(p) => settings.policy.permit_listen = p.permit_listen,
                Err(e) => problem(listen.span(), format!("host {name:?}: {e}")),
            }
        }
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

    /// Reads named hosts and tunnels from a TOML file; the tunnels are
    /// checked against the hosts configured so far. Every problem is in
    /// the error, one a line, each `FILE:LINE:COL: message`.
    pub fn load_file(&mut self, path: &Path, defaults: &HostDefaults) -> Result<()> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::Config(format!("cannot read config file {}: {e}", path.display()))
        })?;
        self.load_source(
            &Source {
                path: Some(path),
                text: &text,
            },
            defaults,
        )
    }

    /// Reads named hosts and tunnels from TOML text, as [`Config::load_file`]
    /// (problems as `LINE:COL: message`).
    pub fn load_str(&mut self, text: &str, defaults: &HostDefaults) -> Result<()> {
        self.load_source(&Source { path: None, text }, defaults)
    }

    fn load_source(&mut self, src: &Source<'_>, defaults: &HostDefaults) -> Result<()> {
        let (pending, mut errors) = self.read_source(src, defaults);
        if let Some(pending) = pending {
            errors.extend(self.declare_tunnels(pending, src));
        }
        match errors.is_empty() {
            true => Ok(()),
            false => Err(ConfigError::join(&errors)),
        }
    }

    /// Reads the hosts of `src` into the config, going on past a host that
    /// is wrong. Returns the file's tunnels, to be checked once every host
    /// is known (`None` when the file is not TOML of the expected shape),
    /// and the problems found, in the order of the file.
    pub(super) fn read_source(
        &mut self,
        src: &Source<'_>,
        defaults: &HostDefaults,
    ) -> (Option<PendingTunnels>, Vec<ConfigError>) {
        let file: FileConfig = match toml::from_str(src.text) {
            Ok(f) => f,
            Err(e) => return (None, vec![src.error(e.span(), e.message().trim_end())]),
        };
        let mut problems = Problems::new();
        let mut broken_hosts = BTreeSet::new();
        let mut routed = Vec::new();
        let mut jump_spans = BTreeMap::new();
        for (name, h) in file.hosts {
            let name_span = name.span();
            let name = name.into_inner();
            let before = problems.len();
            if let Err(e) = validate_host_name(&name) {
                problems.push((Some(name_span.clone()), e.to_string()));
            }
            if self.hosts.contains_key(&name) {
                problems.push((
                    Some(name_span.clone()),
                    format!("host {name:?} is defined twice (by --ssh and the config file?)"),
                ));
            }
            let mut applied = false;
            let resolved = resolve_host(&name, h.address.get_ref(), defaults, |s| {
                applied = true;
                h.apply(&name, s, &mut problems);
                Ok(())
            });
            let (host, config_jump) = match resolved {
                Ok(r) => r,
                Err(e) => {
                    problems.push((Some(h.address.span()), e.to_string()));
                    if !applied {
                        // The address is wrong; the other keys may be too.
                        h.apply(&name, &mut defaults.settings.clone(), &mut problems);
                    }
                    broken_hosts.insert(name);
                    continue;
                }
            };
            // The file's proxy_jump wins over ssh_config's ProxyJump.
            let hops: Option<Vec<String>> = match &h.proxy_jump {
                Some(p) => {
                    jump_spans.insert(name.clone(), p.span());
                    match p.get_ref().hops() {
                        Ok(hops) => Some(hops.into_iter().map(String::from).collect()),
                        Err(e) => {
                            problems.push((Some(p.span()), e.to_string()));
                            None
                        }
                    }
                }
                None => config_jump,
            };
            if problems.len() > before {
                broken_hosts.insert(name);
                continue;
            }
            if let Some(hops) = hops {
                routed.push((name.clone(), hops));
            }
            jump_spans.entry(name.clone()).or_insert(name_span);
            self.hosts.insert(name, host);
        }
        for (name, e) in self.route_each(routed, defaults) {
            problems.push((jump_spans.get(&name).cloned(), e.to_string()));
        }
        let mut binds = self.allow_local_bind.allowed().to_vec();
        binds.extend(file.allow_local_bind);
        self.allow_local_bind = BindPolicy::new(binds);
        if let Some(d) = file.default_host {
            let known = self.hosts.contains_key(d.get_ref());
            if known || broken_hosts.contains(d.get_ref()) {
                self.default_host = Some(d.get_ref().clone());
            }
            if !known && !broken_hosts.contains(d.get_ref()) {
                problems.push((
                    Some(d.span()),
                    format!(
                        "default_host {:?} is not among the configured hosts",
                        d.get_ref()
                    ),
                ));
            }
        }
        let mut errors: Vec<ConfigError> = problems
            .into_iter()
            .map(|(span, m)| src.error(span, m))
            .collect();
        errors.sort_by_key(|e| (e.line, e.col));
        let pending = PendingTunnels {
            tunnels: file.tunnels.into_iter().collect(),
            broken_hosts,
        };
        (Some(pending), errors)
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
fn none_if_empty(list: &[String]) -> Vec<String> {
    if list.is_empty() {
        vec!["none".to_string()]
    } else {
        list.to_vec()
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
        crate::config::test_defaults()
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
        let tunnels: Vec<(&str, &str)> = c
            .tunnels
            .iter()
            .map(|(name, t)| (name.as_str(), t.host.as_str()))
            .collect();
        assert_eq!(
            tunnels,
            [
                ("db", "db-jump"),
                ("inbound", "app"),
                ("pg-socket", "db-jump"),
                ("proxy", "bastion"),
                ("web", "app"),
            ]
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
        // No host at all is fine: hosts may come from the API.
        let mut none = Config::default();
        none.finish().expect("no host");
        assert_eq!(none.default_host, None);
    }
}
