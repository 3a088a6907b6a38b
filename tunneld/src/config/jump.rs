//! Jump hosts as `ssh -J` takes them (`--jump`, a file host's
//! `proxy_jump`): comma-separated `[user@]host[:port]` hops, first dialled
//! first, or `none`. Each hop becomes a [`HostConfig`] of its own, through
//! [`hop`], the one place that turns a hop string into a host (an
//! ssh_config resolver plugs in there to give aliases their settings).

use serde::Deserialize;

use super::{
    Config, HostConfig,
    destination::{HostDefaults, resolve_host},
};
use crate::error::{Error, Result};

/// Most hops one route may have. Each is an SSH connection (and an sshd
/// process on its server) held for as long as the host's; and hosts that go
/// through one another would otherwise let a short file describe a route
/// of billions of hops.
pub const MAX_ROUTE_HOPS: usize = 16;

/// A file host's `proxy_jump`: one string as `ssh -J` takes it, or a list
/// of hops.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum ProxyJump {
    /// `"a,b"` or `"none"`.
    Spec(String),
    /// `["a", "b"]`; `[]` or `["none"]` for none.
    Hops(Vec<String>),
}

impl ProxyJump {
    /// The hops, in order.
    pub fn hops(&self) -> Result<Vec<&str>> {
        match self {
            ProxyJump::Spec(spec) => split(spec),
            ProxyJump::Hops(list) if list.len() == 1 => split(&list[0]),
            ProxyJump::Hops(list) => list
                .iter()
                .flat_map(|s| s.split(','))
                .map(check_hop)
                .collect(),
        }
    }
}

/// The hops of an `ssh -J` spec: comma-separated, none for `none`.
pub fn split(spec: &str) -> Result<Vec<&str>> {
    if spec == "none" {
        return Ok(Vec::new());
    }
    spec.split(',').map(check_hop).collect()
}

fn check_hop(hop: &str) -> Result<&str> {
    if hop.is_empty() || hop.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Err(Error::Config(format!(
            "jump host {hop:?}: expected [user@]host[:port] with no spaces (hops are separated by commas)"
        )))
    } else if hop == "none" {
        Err(Error::Config(
            "jump host \"none\": `none` stands alone, for no jump host".into(),
        ))
    } else {
        Ok(hop)
    }
}

/// The host one hop names when no configured host has that name: a
/// `[user@]host[:port]` destination named as written, resolved through
/// ssh_config (an alias gets its settings there) over the defaults'
/// settings (identity, known_hosts, host key policy, keepalives), as `ssh
/// -J` treats a hop. The hop's own ProxyJump is not followed: the route
/// names every hop.
pub fn hop(spec: &str, defaults: &HostDefaults) -> Result<HostConfig> {
    resolve_host(spec, spec, defaults, |_| Ok(())).map(|(host, _)| host)
}

/// The route through `hops` for host `of`: a hop that names one of `hosts`
/// is that host (its address and settings, its own route before it), any
/// other is resolved by [`hop`]. Used for the file's hosts and for hosts
/// added at runtime.
pub fn route_through(
    hosts: &std::collections::BTreeMap<String, HostConfig>,
    of: &str,
    hops: &[String],
    defaults: &HostDefaults,
) -> Result<Vec<HostConfig>> {
    let mut route = Vec::new();
    for h in hops {
        match hosts.get(h) {
            Some(known) => {
                route.extend(known.jump.iter().cloned());
                route.push(HostConfig {
                    jump: Vec::new(),
                    ..known.clone()
                });
            }
            None => route.push(
                hop(h, defaults)
                    .map_err(|e| Error::Config(format!("jump hosts of host {of:?}: {e}")))?,
            ),
        }
        if route.len() > MAX_ROUTE_HOPS {
            return Err(Error::Config(format!(
                "jump hosts of host {of:?}: the route has more than {MAX_ROUTE_HOPS} hops"
            )));
        }
    }
    Ok(route)
}

impl Config {
    /// The route through `hops` for host `of`: a hop that names a
    /// configured host is that host (its address and settings, its own
    /// route before it), any other is resolved by [`hop`].
    fn route(&self, of: &str, hops: &[String], defaults: &HostDefaults) -> Result<Vec<HostConfig>> {
        route_through(&self.hosts, of, hops, defaults)
    }

    /// Gives each `(host, hops)` its route. A host is routed once the
    /// configured hosts its hops name have their own routes, so file hosts
    /// may go through one another; a loop is refused.
    pub(super) fn route_hosts(
        &mut self,
        pending: Vec<(String, Vec<String>)>,
        defaults: &HostDefaults,
    ) -> Result<()> {
        match self.route_each(pending, defaults).into_iter().next() {
            Some((_, e)) => Err(e),
            None => Ok(()),
        }
    }

    /// [`Config::route_hosts`], going on past a host that cannot be routed:
    /// returns every problem with the host it is about.
    pub(super) fn route_each(
        &mut self,
        mut pending: Vec<(String, Vec<String>)>,
        defaults: &HostDefaults,
    ) -> Vec<(String, Error)> {
        let mut errors = Vec::new();
        while !pending.is_empty() {
            let waiting: Vec<String> = pending.iter().map(|(name, _)| name.clone()).collect();
            let (ready, later): (Vec<_>, Vec<_>) = pending
                .into_iter()
                .partition(|(_, hops)| !hops.iter().any(|h| waiting.contains(h)));
            if ready.is_empty() {
                errors.push((
                    waiting[0].clone(),
                    Error::Config(format!(
                        "the proxy_jump of hosts {} lead through one another in a loop",
                        waiting.join(", ")
                    )),
                ));
                break;
            }
            for (name, hops) in ready {
                match self.route(&name, &hops, defaults) {
                    Ok(route) => {
                        if let Some(host) = self.hosts.get_mut(&name) {
                            host.jump = route;
                        }
                    }
                    Err(e) => errors.push((name, e)),
                }
            }
            pending = later;
        }
        errors
    }

    /// Routes host `name` (the `--ssh` host) through the hops of `spec`
    /// (`--jump`); a hop may name a host of the config file.
    pub fn set_jump(&mut self, name: &str, spec: &str, defaults: &HostDefaults) -> Result<()> {
        let hops: Vec<String> = split(spec)
            .map_err(|e| Error::Config(format!("--jump: {e}")))?
            .into_iter()
            .map(String::from)
            .collect();
        if !self.hosts.contains_key(name) {
            return Err(Error::Config(format!(
                "--jump: no host {name:?} to route (give --ssh)"
            )));
        }
        self.route_hosts(vec![(name.to_string(), hops)], defaults)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> HostDefaults {
        HostDefaults::without_ssh_config(crate::config::HostSettings {
            identities: vec!["/k".into()],
            default_identities: false,
            known_hosts: "/kh".into(),
            ..crate::config::HostSettings::openssh()
        })
    }

    fn names(route: &[HostConfig]) -> Vec<(&str, &str, u16)> {
        route
            .iter()
            .map(|h| (h.name.as_str(), h.hostname.as_str(), h.port))
            .collect()
    }

    #[test]
    fn hops_parse_like_ssh_j() {
        let mut c = Config::default();
        c.add_destination("t.example", &defaults()).unwrap();
        c.set_jump("default", "alice@bastion:2222,[::1],inner", &defaults())
            .unwrap();
        let route = &c.hosts["default"].jump;
        assert_eq!(
            names(route),
            [
                ("alice@bastion:2222", "bastion", 2222),
                ("[::1]", "::1", 22),
                ("inner", "inner", 22)
            ]
        );
        assert_eq!(route[0].user, "alice");
        assert!(route.iter().all(|h| h.jump.is_empty()));
        assert_eq!(c.hosts["default"].via()[0], "alice@bastion:2222");
        c.set_jump("default", "none", &defaults()).unwrap();
        assert!(c.hosts["default"].jump.is_empty());
        for bad in ["", "a,,b", "a,", "a b", "none,a", "u@h:99999"] {
            let e = c.set_jump("default", bad, &defaults()).unwrap_err();
            assert!(e.to_string().contains("jump host"), "{bad:?}: {e}");
        }
        assert!(
            Config::default()
                .set_jump("default", "a", &defaults())
                .is_err()
        );
    }

    #[test]
    fn a_hop_that_names_a_file_host_is_that_host_with_its_own_route() {
        let mut c = Config::default();
        c.load_str(
            "[hosts.bastion]\naddress = \"ops@gw:2200\"\nidentity = \"/gw-key\"\n\
             [hosts.app]\naddress = \"app\"\nproxy_jump = [\"bastion\", \"u@mid\"]\n\
             [hosts.deep]\naddress = \"deep\"\nproxy_jump = \"app\"\n",
            &defaults(),
        )
        .unwrap();
        assert_eq!(
            names(&c.hosts["app"].jump),
            [("bastion", "gw", 2200), ("u@mid", "mid", 22)]
        );
        assert_eq!(
            c.hosts["app"].jump[0].settings.identities,
            [std::path::PathBuf::from("/gw-key")]
        );
        assert_eq!(
            c.hosts["app"].jump[1].settings.identities,
            [std::path::PathBuf::from("/k")]
        );
        assert_eq!(
            names(&c.hosts["deep"].jump),
            [
                ("bastion", "gw", 2200),
                ("u@mid", "mid", 22),
                ("app", "app", 22)
            ]
        );
        assert!(c.hosts["bastion"].jump.is_empty());
        c.add_destination("t", &defaults()).unwrap();
        c.set_jump("default", "app", &defaults()).unwrap();
        assert_eq!(c.hosts["default"].via(), ["bastion", "u@mid", "app"]);

        let e = Config::default()
            .load_str(
                "[hosts.a]\naddress = \"a\"\nproxy_jump = \"b\"\n\
                 [hosts.b]\naddress = \"b\"\nproxy_jump = [\"a\"]\n",
                &defaults(),
            )
            .unwrap_err()
            .to_string();
        assert!(e.contains("loop") && e.contains("a, b"), "{e}");

        // Hosts that double the route at each level stop at the cap.
        let mut text = String::from("[hosts.h0]\naddress = \"h\"\n");
        for i in 1..40 {
            let p = i - 1;
            text.push_str(&format!(
                "[hosts.h{i}]\naddress = \"h\"\nproxy_jump = [\"h{p}\", \"h{p}\"]\n"
            ));
        }
        let e = Config::default()
            .load_str(&text, &defaults())
            .unwrap_err()
            .to_string();
        assert!(e.contains("more than 16 hops"), "{e}");
    }

    #[test]
    fn proxy_jump_is_a_string_or_a_list() {
        let hops = |toml: &str| {
            #[derive(Deserialize)]
            struct T {
                proxy_jump: ProxyJump,
            }
            let t: T = toml::from_str(toml).unwrap();
            t.proxy_jump
                .hops()
                .map(|h| h.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        };
        assert_eq!(hops("proxy_jump = \"a,b:2\"").unwrap(), ["a", "b:2"]);
        assert_eq!(hops("proxy_jump = [\"a\", \"u@b\"]").unwrap(), ["a", "u@b"]);
        assert_eq!(hops("proxy_jump = [\"a,b\"]").unwrap(), ["a", "b"]);
        assert!(hops("proxy_jump = \"none\"").unwrap().is_empty());
        assert!(hops("proxy_jump = []").unwrap().is_empty());
        assert!(hops("proxy_jump = [\"a\", \"none\"]").is_err());
    }
}
