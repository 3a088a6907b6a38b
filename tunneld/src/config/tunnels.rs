//! `[tunnels.NAME]`: tunnels the config file declares, each a forward in
//! the syntax of `ssh -L`, `-R` or `-D` (read by
//! [`tunnel_proto::forward_spec`], as tunnelctl reads its flags) over a
//! configured host. Checked here once every host is known; the daemon
//! opens them.
//!
//! A spec becomes the same [`ForwardSpec`] the API's open requests become,
//! with the same defaults: a local forward with no bind address listens on
//! loopback, one on `*` on every interface; a remote forward with none asks
//! the server for `localhost`, and passes `*` on for the server to read.

use std::{collections::BTreeSet, ops::Range};

use serde::Deserialize;
use toml::Spanned;
use tunnel_proto::{
    forward_spec::{self, ForwardKind, Listen, Target, WILDCARD},
    name::check_tunnel_name,
};

use super::{Config, ConfigError, error::Source, parse_duration};
use crate::{
    policy::RemoteOpenPolicy,
    tunnel::{
        ANY_LOCAL_BIND, ConnectionLimits, DEFAULT_LOCAL_BIND, DEFAULT_REMOTE_BIND, Endpoint,
        ForwardSpec, LocalForwardSpec, RemoteForwardSpec, check_host,
    },
};

/// A tunnel the config file declares, checked and in the daemon's terms.
#[derive(Debug, Clone)]
pub struct DeclaredTunnel {
    /// The configured host it goes through (the default host when the
    /// file names none).
    pub host: String,
    /// What it listens on, where it connects, and its limits.
    pub spec: ForwardSpec,
}

/// A `[tunnels.NAME]` table as written; values that can be wrong keep
/// their place in the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileTunnel {
    host: Option<Spanned<String>>,
    local: Option<Spanned<String>>,
    remote: Option<Spanned<String>>,
    dynamic: Option<Spanned<String>>,
    // Signed, so 0 and negative counts are refused here, at their place,
    // with a message about tunnels rather than about integer types.
    max_connections: Option<Spanned<i64>>,
    idle_timeout: Option<Spanned<String>>,
    permit_remote_open: Option<Spanned<Vec<String>>>,
}

/// The tunnels of one file, waiting for every host to be loaded (`--jump`
/// and `--ssh-config-hosts` come after the file).
#[derive(Debug)]
pub(super) struct PendingTunnels {
    pub tunnels: Vec<(Spanned<String>, FileTunnel)>,
    /// Hosts of the file that could not be loaded: a tunnel naming one is
    /// not also told the host is unknown.
    pub broken_hosts: BTreeSet<String>,
}

impl Config {
    /// Checks `pending`, read from `src`, against the hosts now configured
    /// and adds the tunnels that hold; returns the problems of the others,
    /// every one of them.
    pub(super) fn declare_tunnels(
        &mut self,
        pending: PendingTunnels,
        src: &Source<'_>,
    ) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        for (name, t) in pending.tunnels {
            let mut problems = Vec::new();
            let tunnel = self.declared(&name, t, &pending.broken_hosts, &mut problems);
            errors.extend(problems.into_iter().map(|(span, m)| src.error(span, m)));
            if let Some(t) = tunnel {
                self.tunnels.insert(name.into_inner(), t);
            }
        }
        // Tables come by name; problems go in the file's order.
        errors.sort_by_key(|e| (e.line, e.col));
        errors
    }

    /// The host a tunnel goes through when it names none: the default
    /// host, or the only one (as [`Config::finish`] picks it).
    fn implied_host(&self) -> Option<&str> {
        match &self.default_host {
            Some(d) => Some(d),
            None if self.hosts.len() == 1 => self.hosts.keys().next().map(String::as_str),
            None => None,
        }
    }

    /// Tunnel `name` in the daemon's terms, or `None` with its problems in
    /// `problems` (a byte range of the file and a message each).
    fn declared(
        &self,
        name: &Spanned<String>,
        t: FileTunnel,
        broken_hosts: &BTreeSet<String>,
        problems: &mut Vec<(Option<Range<usize>>, String)>,
    ) -> Option<DeclaredTunnel> {
        let at_name = Some(name.span());
        let shown = name.get_ref();
        let mut problem = |span: Option<Range<usize>>, m: String| problems.push((span, m));
        if let Err(e) = check_tunnel_name(shown) {
            problem(at_name.clone(), format!("[tunnels.{shown}]: {e}"));
        }
        let host = match &t.host {
            Some(h) if self.hosts.contains_key(h.get_ref()) => Some(h.get_ref().clone()),
            Some(h) => {
                if !broken_hosts.contains(h.get_ref()) {
                    problem(
                        Some(h.span()),
                        format!(
                            "tunnel {shown:?}: host {:?} is not a configured host (configured: {})",
                            h.get_ref(),
                            self.host_names()
                        ),
                    );
                }
                None
            }
            None => match self.implied_host() {
                Some(h) => Some(h.to_string()),
                None => {
                    problem(
                        at_name.clone(),
                        format!(
                            "tunnel {shown:?} names no host and there is no default host; \
                             add host = \"NAME\" (configured: {}) or set default_host",
                            self.host_names()
                        ),
                    );
                    None
                }
            },
        };
        let forms = [
            ("local", ForwardKind::Local, &t.local),
            ("remote", ForwardKind::Remote, &t.remote),
            ("dynamic", ForwardKind::Dynamic, &t.dynamic),
        ];
        let given: Vec<_> = forms
            .iter()
            .filter_map(|(key, kind, v)| v.as_ref().map(|v| (*key, *kind, v)))
            .collect();
        let (key, kind, text) = match given.as_slice() {
            [] => {
                problem(
                    at_name,
                    format!(
                        "tunnel {shown:?} sets none of local, remote and dynamic; \
                         set one (ssh -L, -R or -D syntax)"
                    ),
                );
                return None;
            }
            [one] => *one,
            [first, second, ..] => {
                problem(
                    Some(second.2.span()),
                    format!(
                        "tunnel {shown:?} sets both {} and {}; a tunnel is one forward, so set one \
                         (declare another tunnel for the other)",
                        first.0, second.0
                    ),
                );
                return None;
            }
        };
        let limits = self.limits_of(shown, &t, &mut problem);
        let parsed = match forward_spec::parse_config_forward(text.get_ref(), kind) {
            Ok(s) => Some(s),
            Err(e) => {
                problem(
                    Some(text.span()),
                    format!("tunnel {shown:?}: {key} {:?}: {e}", text.get_ref()),
                );
                None
            }
        };
        let reverse_dynamic = kind == ForwardKind::Remote
            && parsed
                .as_ref()
                .is_some_and(forward_spec::ForwardSpec::is_dynamic);
        let permit = match &t.permit_remote_open {
            None => Some(RemoteOpenPolicy::default()),
            // Whether it may be there is unknown while the spec is bad.
            Some(_) if parsed.is_none() => None,
            Some(p) if reverse_dynamic => match RemoteOpenPolicy::parse(p.get_ref()) {
                Ok(p) => Some(p),
                Err(e) => {
                    problem(Some(p.span()), format!("tunnel {shown:?}: {e}"));
                    None
                }
            },
            Some(p) => {
                problem(
                    Some(p.span()),
                    format!(
                        "tunnel {shown:?}: permit_remote_open applies only to a reverse dynamic \
                         forward (remote = \"[BIND:]PORT\" or \"/PATH\", with no target)"
                    ),
                );
                None
            }
        };
        let (Some(parsed), Some(permit), Some(limits)) = (parsed, permit, limits) else {
            return None;
        };
        let spec = match domain_spec(parsed, kind, permit, limits) {
            Ok(s) => s,
            Err(e) => {
                problem(Some(text.span()), format!("tunnel {shown:?}: {key}: {e}"));
                return None;
            }
        };
        // What the host's permit_open and permit_listen, and
        // allow_local_bind, would refuse at every open.
        if let Some(config) = host.as_ref().and_then(|h| self.hosts.get(h))
            && let Err(e) = spec.check_permitted(
                &config.name,
                &config.settings.policy,
                &self.allow_local_bind,
                spec.literal_bind_ip(),
            )
        {
            problem(Some(text.span()), format!("tunnel {shown:?}: {e}"));
        }
        if !problems.is_empty() {
            return None;
        }
        host.map(|host| DeclaredTunnel { host, spec })
    }

    /// `max_connections` and `idle_timeout`, or `None` (with the problems
    /// told to `problem`).
    fn limits_of(
        &self,
        shown: &str,
        t: &FileTunnel,
        problem: &mut impl FnMut(Option<Range<usize>>, String),
    ) -> Option<ConnectionLimits> {
        let mut ok = true;
        let max_connections = match &t.max_connections {
            None => None,
            Some(n) => match u32::try_from(*n.get_ref()) {
                Ok(v) if v > 0 => Some(v),
                _ => {
                    problem(
                        Some(n.span()),
                        format!(
                            "tunnel {shown:?}: max_connections must be 1 to {}, got {}; \
                             leave it out for the daemon's --max-connections-per-tunnel",
                            u32::MAX,
                            n.get_ref()
                        ),
                    );
                    ok = false;
                    None
                }
            },
        };
        let idle_timeout = match &t.idle_timeout {
            None => None,
            Some(d) => match parse_duration(d.get_ref()) {
                Ok(d) => Some(d),
                Err(e) => {
                    problem(
                        Some(d.span()),
                        format!("tunnel {shown:?}: idle_timeout: {e}"),
                    );
                    ok = false;
                    None
                }
            },
        };
        ok.then_some(ConnectionLimits {
            max_connections,
            idle_timeout,
        })
    }

    /// The configured hosts' names, for an error that asks for one.
    fn host_names(&self) -> String {
        if self.hosts.is_empty() {
            return "none".into();
        }
        self.hosts.keys().cloned().collect::<Vec<_>>().join(", ")
    }
}

/// A parsed ssh spec as the daemon's spec, with the defaults and checks of
/// the API's open requests.
fn domain_spec(
    spec: forward_spec::ForwardSpec,
    kind: ForwardKind,
    permit_remote_open: RemoteOpenPolicy,
    limits: ConnectionLimits,
) -> crate::error::Result<ForwardSpec> {
    let remote = kind == ForwardKind::Remote;
    let listen = match spec.listen {
        Listen::Path(path) => Endpoint::unix("listening socket path", &path)?,
        Listen::Tcp(tcp) => {
            let host = match (tcp.bind.as_deref(), remote) {
                (None, false) => DEFAULT_LOCAL_BIND.to_string(),
                (None, true) => DEFAULT_REMOTE_BIND.to_string(),
                // tunneld binds a local forward itself, and "*" is no
                // address; the server reads "*" itself.
                (Some(WILDCARD), false) => ANY_LOCAL_BIND.to_string(),
                (Some(bind), _) => check_host("bind address", bind)?,
            };
            Endpoint::Tcp {
                host,
                port: tcp.port,
            }
        }
    };
    let target = match spec.target {
        Target::Tcp { host, port } => Endpoint::Tcp {
            host: check_host("target host", &host)?,
            port,
        },
        Target::Path(path) => Endpoint::unix("target socket path", &path)?,
        Target::Dynamic => Endpoint::Socks,
    };
    Ok(if remote {
        ForwardSpec::Remote(RemoteForwardSpec {
            listen,
            target,
            permit_remote_open,
            limits,
        })
    } else {
        ForwardSpec::Local(LocalForwardSpec {
            listen,
            target,
            limits,
        })
    })
}

#[cfg(test)]
mod tests {
    use std::{path::PathBuf, time::Duration};

    use super::*;
    use crate::config::HostDefaults;

    fn defaults() -> HostDefaults {
        crate::config::test_defaults()
    }

    const HOSTS: &str = "[hosts.bastion]\naddress = \"u@bastion.example.com\"\n\
                         [hosts.db]\naddress = \"u@10.0.0.5\"\n";

    /// The tunnels of `HOSTS` + `tunnels`, or the problems as written.
    fn load(tunnels: &str) -> std::result::Result<Config, String> {
        load_text(&format!("{HOSTS}{tunnels}"))
    }

    fn load_text(text: &str) -> std::result::Result<Config, String> {
        let mut c = Config::default();
        c.load_str(text, &defaults()).map_err(|e| e.to_string())?;
        Ok(c)
    }

    /// The problems of `tunnels` after `HOSTS` (two lines a host), one a
    /// line.
    fn problems(tunnels: &str) -> Vec<String> {
        match load(tunnels) {
            Ok(c) => panic!("loaded {:?}", c.tunnels),
            Err(e) => e.lines().map(String::from).collect(),
        }
    }

    fn local(c: &Config, name: &str) -> (String, LocalForwardSpec) {
        match &c.tunnels[name] {
            DeclaredTunnel {
                host,
                spec: ForwardSpec::Local(s),
            } => (host.clone(), s.clone()),
            t => panic!("{name}: {t:?}"),
        }
    }

    fn remote(c: &Config, name: &str) -> RemoteForwardSpec {
        match &c.tunnels[name].spec {
            ForwardSpec::Remote(s) => s.clone(),
            t => panic!("{name}: {t:?}"),
        }
    }

    fn tcp(host: &str, port: u16) -> Endpoint {
        Endpoint::Tcp {
            host: host.into(),
            port,
        }
    }

    fn unix(path: &str) -> Endpoint {
        Endpoint::Unix {
            path: PathBuf::from(path),
        }
    }

    #[test]
    fn each_form_becomes_the_spec_the_api_would_open() {
        // `any` listens on every interface, which the policy must allow.
        let c = load_text(&format!(
            r#"default_host = "bastion"
allow_local_bind = ["0.0.0.0"]
{HOSTS}
[tunnels.db]
host = "db"
local = "15432:db.internal:5432"
max_connections = 64
idle_timeout = "10m"
[tunnels.pg-sock]
local = "/tmp/pg.sock:/run/postgresql/.s.PGSQL.5432"
[tunnels.any]
local = "*:8080:[fd00::5]:80"
[tunnels.web]
remote = "8080:localhost:3000"
[tunnels.web-all]
remote = "*:8081:/run/app.sock"
[tunnels.back]
remote = "/run/back.sock"
permit_remote_open = ["localhost:3000"]
[tunnels.proxy]
dynamic = "1080"
[tunnels.proxy6]
dynamic = "[::1]:1081"
"#
        ))
        .unwrap();
        assert_eq!(c.tunnels.len(), 8);
        let (host, db) = local(&c, "db");
        assert_eq!(host, "db");
        assert_eq!(db.listen, tcp("127.0.0.1", 15432));
        assert_eq!(db.target, tcp("db.internal", 5432));
        assert_eq!(
            db.limits,
            ConnectionLimits {
                max_connections: Some(64),
                idle_timeout: Some(Duration::from_secs(600)),
            }
        );
        let (host, sock) = local(&c, "pg-sock");
        assert_eq!(host, "bastion", "the default host");
        assert_eq!(sock.listen, unix("/tmp/pg.sock"));
        assert_eq!(sock.target, unix("/run/postgresql/.s.PGSQL.5432"));
        assert_eq!(sock.limits, ConnectionLimits::default());
        let (_, any) = local(&c, "any");
        assert_eq!(any.listen, tcp("0.0.0.0", 8080), "* is every interface");
        assert_eq!(any.target, tcp("fd00::5", 80));
        let web = remote(&c, "web");
        assert_eq!(web.listen, tcp("localhost", 8080));
        assert_eq!(web.target, tcp("localhost", 3000));
        assert!(web.permit_remote_open.entries().is_empty());
        let all = remote(&c, "web-all");
        assert_eq!(all.listen, tcp("*", 8081), "the server reads * itself");
        assert_eq!(all.target, unix("/run/app.sock"));
        let back = remote(&c, "back");
        assert_eq!(back.listen, unix("/run/back.sock"));
        assert_eq!(back.target, Endpoint::Socks);
        assert_eq!(back.permit_remote_open.entries(), ["localhost:3000"]);
        let (_, proxy) = local(&c, "proxy");
        assert_eq!(proxy.listen, tcp("127.0.0.1", 1080));
        assert_eq!(proxy.target, Endpoint::Socks);
        assert_eq!(local(&c, "proxy6").1.listen, tcp("::1", 1081));
    }

    #[test]
    fn a_tunnel_without_a_host_needs_a_default_one() {
        // Lines 1-4 are the hosts.
        assert_eq!(
            problems("[tunnels.db]\nlocal = \"1:db:2\"\n"),
            [
                "5:10: tunnel \"db\" names no host and there is no default host; \
              add host = \"NAME\" (configured: bastion, db) or set default_host"
            ]
        );
        let mut c = Config::default();
        c.load_str(
            "[hosts.only]\naddress = \"h\"\n[tunnels.db]\nlocal = \"1:db:2\"\n",
            &defaults(),
        )
        .unwrap();
        assert_eq!(c.tunnels["db"].host, "only");
    }

    /// What the forward policy would refuse at every open is a problem of
    /// the file, placed at the forward.
    #[test]
    fn what_the_policy_would_refuse_at_every_open_is_a_problem_of_the_file() {
        let text = r#"allow_local_bind = ["10.1.2.3"]
[hosts.db]
address = "u@10.0.0.5"
permit_open = ["db.internal:5432", "/run/pg.sock"]
permit_listen = ["8080"]
[tunnels.ok]
host = "db"
local = "10.1.2.3:15432:db.internal:5432"
[tunnels.named-bind]
host = "db"
local = "gateway.example:15433:db.internal:5432"
[tunnels.target]
host = "db"
local = "15434:db.internal:22"
[tunnels.socket]
host = "db"
local = "/tmp/x.sock:/run/other.sock"
[tunnels.bind]
host = "db"
local = "0.0.0.0:15435:db.internal:5432"
[tunnels.listen]
host = "db"
remote = "9090:localhost:80"
[tunnels.proxy]
host = "db"
dynamic = "1080"
"#;
        let got: Vec<String> = match load_text(text) {
            Ok(c) => panic!("loaded {:?}", c.tunnels),
            Err(e) => e.lines().map(String::from).collect(),
        };
        // `ok` passes; a bind by name is left to the open (no lookup
        // here); a dynamic forward's targets are checked per request.
        let expected = [
            "14:9: tunnel \"target\": forwarding to db.internal:22 is not permitted by permit_open of host \"db\"",
            "17:9: tunnel \"socket\": forwarding to unix socket /run/other.sock is not permitted by permit_open",
            "20:9: tunnel \"bind\": local forwards may listen only on loopback addresses: 0.0.0.0 is not allowed",
            "23:10: tunnel \"listen\": listening on localhost port 9090 is not permitted by permit_listen",
        ];
        assert_eq!(got.len(), expected.len(), "{got:#?}");
        for (got, want) in got.iter().zip(expected) {
            assert!(got.contains(want), "{got}\n  does not contain\n{want}");
        }
    }

    /// Every problem of the file at once, each at the value that is wrong.
    #[test]
    fn every_problem_is_reported_at_its_place() {
        let got = problems(
            r#"[tunnels.two]
host = "db"
local = "1:db:2"
remote = "8080"
[tunnels.none]
host = "db"
[tunnels.Bad_Name]
host = "db"
dynamic = "1080"
[tunnels.lost]
host = "nowhere"
dynamic = "1080"
[tunnels.spec]
host = "db"
local = "1080"
[tunnels.permit]
host = "db"
remote = "8080:localhost:80"
permit_remote_open = ["localhost:80"]
[tunnels.limits]
host = "db"
dynamic = "1080"
max_connections = 0
idle_timeout = "soon"
"#,
        );
        let expected = [
            "8:10: tunnel \"two\" sets both local and remote; a tunnel is one forward",
            "9:10: tunnel \"none\" sets none of local, remote and dynamic; set one (ssh -L, -R or -D syntax)",
            "11:10: [tunnels.Bad_Name]: tunnel name \"Bad_Name\" holds 'B'; use only a-z, 0-9 and -",
            "15:8: tunnel \"lost\": host \"nowhere\" is not a configured host (configured: bastion, db)",
            "19:9: tunnel \"spec\": local \"1080\": local needs a target",
            "23:22: tunnel \"permit\": permit_remote_open applies only to a reverse dynamic forward",
            "27:19: tunnel \"limits\": max_connections must be 1 to 4294967295, got 0; \
             leave it out for the daemon's --max-connections-per-tunnel",
            "28:16: tunnel \"limits\": idle_timeout: ",
        ];
        assert_eq!(got.len(), expected.len(), "{got:#?}");
        for (got, want) in got.iter().zip(expected) {
            assert!(
                got.starts_with(want),
                "{got}\n  does not start with\n{want}"
            );
        }
    }

    #[test]
    fn a_host_that_is_wrong_is_not_also_unknown() {
        let mut c = Config::default();
        let e = c
            .load_str(
                "[hosts.a]\naddress = \"u@\"\nreconnect_min = \"0s\"\n\
                 [tunnels.t]\nhost = \"a\"\ndynamic = \"x\"\n",
                &defaults(),
            )
            .unwrap_err()
            .to_string();
        let lines: Vec<&str> = e.lines().collect();
        assert_eq!(lines.len(), 3, "{e}");
        assert!(lines[0].starts_with("2:11: SSH destination \"u@\""), "{e}");
        assert!(
            lines[1].starts_with("3:17: host \"a\": reconnect_min"),
            "{e}"
        );
        assert!(
            lines[2].starts_with("6:11: tunnel \"t\": dynamic \"x\""),
            "{e}"
        );
    }

    #[test]
    fn syntax_errors_have_their_place() {
        let e = load("[tunnels.x]\nlocal = \"1:a:2\"\nlocal = \"3:b:4\"\n").unwrap_err();
        assert!(e.starts_with("7:1: "), "{e}");
        let e = load("[tunnels.x]\nlocl = \"1:a:2\"\n").unwrap_err();
        assert!(e.starts_with("6:1: unknown field `locl`"), "{e}");
    }
}
