//! What forwards may be opened, checked before anything is bound, dialled
//! or asked of the server. OpenSSH's knobs, under their names:
//!
//! - `allow_local_bind` (daemon-wide; like the client's `GatewayPorts`):
//!   local forwards listen on loopback unless another address is listed.
//! - `permit_open` (per host; like sshd's `PermitOpen`): the `host:port`
//!   targets local forwards may reach through that host.
//! - `permit_listen` (per host; like sshd's `PermitListen`): the
//!   `[host:]port` remote forwards may ask that host's server to listen on.
//! - `permit_remote_open` (per reverse dynamic forward; like the client's
//!   `PermitRemoteOpen`): the `host:port` targets its SOCKS requests may
//!   have tunneld connect to.
//!
//! `permit_open` and `permit_listen` also take absolute paths, for unix
//! socket targets and listeners, matched exactly and only by path entries.
//!
//! Patterns take `*` for a whole host or port, `none` (nothing) and `any`
//! (no restriction). Names are compared as written, without DNS: a rule
//! about `db.internal` does not cover its IP address.

use std::{fmt, net::IpAddr};

use tunnel_proto::addr::join_host_port;

use crate::error::{Error, Result};

/// A `HOST:PORT` pattern (`*` for either part; IPv6 as `[addr]:port`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    /// `None`: any host (`*`), or a bare port in `permit_listen`.
    host: Option<String>,
    /// `None`: any port (`*`).
    port: Option<u16>,
    /// As written, for messages.
    text: String,
}

impl Pattern {
    fn parse(text: &str, host_optional: bool) -> std::result::Result<Pattern, String> {
        // A unix socket's path, compared as written.
        if text.starts_with('/') {
            return Ok(Pattern {
                host: Some(text.to_string()),
                port: Some(PATH_PORT),
                text: text.to_string(),
            });
        }
        let bad = || {
            if host_optional {
                format!("{text:?} is not [HOST:]PORT (PORT may be *; IPv6 as [addr]:port)")
            } else {
                format!("{text:?} is not HOST:PORT (either may be *; IPv6 as [addr]:port)")
            }
        };
        let (host, port) = if let Some(inner) = text.strip_prefix('[') {
            let (h, rest) = inner.split_once(']').ok_or_else(bad)?;
            (Some(h), rest.strip_prefix(':').ok_or_else(bad)?)
        } else {
            match text.rsplit_once(':') {
                Some((h, _)) if h.contains(':') => return Err(bad()),
                Some((h, p)) => (Some(h), p),
                None if host_optional => (None, text),
                None => return Err(bad()),
            }
        };
        let host = match host {
            Some("") => return Err(bad()),
            Some("*") | None => None,
            Some(h) => Some(h.to_ascii_lowercase()),
        };
        let port = match port {
            "*" => None,
            p => Some(p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(bad)?),
        };
        Ok(Pattern {
            host,
            port,
            text: text.to_string(),
        })
    }

    /// Whether `host:port` matches; port 0 (let the server pick) is matched
    /// only by a `*` port. A unix socket path is `(path, PATH_PORT)`, and
    /// only a path pattern matches it, exactly.
    fn matches(&self, host: &str, port: u16) -> bool {
        let is_path = |h: &str| h.starts_with('/');
        match (self.host.as_deref(), port) {
            (Some(p), PATH_PORT) if is_path(p) => return p == host,
            (Some(p), _) if is_path(p) => return false,
            (_, PATH_PORT) if is_path(host) => return false,
            _ => {}
        }
        let host_ok = self.host.as_ref().is_none_or(|h| same_host(h, host));
        let port_ok = match self.port {
            None => true,
            Some(p) => p == port,
        };
        host_ok && port_ok
    }
}

/// The port a unix socket path is checked with: none a TCP pattern names
/// (they name 1..65535 or `*`, and `*` is kept from matching paths above).
const PATH_PORT: u16 = 0;

/// Case-insensitive, and IPv6 addresses compared as addresses.
fn same_host(pattern: &str, host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match (pattern.parse::<IpAddr>(), host.parse::<IpAddr>()) {
        (Ok(a), Ok(b)) => a == b,
        _ => pattern.eq_ignore_ascii_case(host),
    }
}

/// An allow-list: `None` allows everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList(Option<Vec<Pattern>>);

impl AllowList {
    fn parse(items: &[String], host_optional: bool) -> std::result::Result<AllowList, String> {
        if items.is_empty() || items.iter().any(|i| i == "any") {
            return Ok(AllowList(None));
        }
        if items.iter().any(|i| i == "none") {
            if items.len() > 1 {
                return Err("\"none\" cannot be combined with other entries".into());
            }
            return Ok(AllowList(Some(Vec::new())));
        }
        items
            .iter()
            .map(|i| Pattern::parse(i.trim(), host_optional))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map(|p| AllowList(Some(p)))
    }

    fn allows(&self, host: &str, port: u16) -> bool {
        match &self.0 {
            None => true,
            Some(patterns) => patterns.iter().any(|p| p.matches(host, port)),
        }
    }
}

impl fmt::Display for AllowList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            None => f.write_str("any"),
            Some(p) if p.is_empty() => f.write_str("none"),
            Some(p) => {
                let texts: Vec<&str> = p.iter().map(|p| p.text.as_str()).collect();
                f.write_str(&texts.join(", "))
            }
        }
    }
}

/// The forward rules of one SSH host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostPolicy {
    /// Targets local forwards may reach through the host.
    pub permit_open: AllowList,
    /// Server-side addresses remote forwards may listen on.
    pub permit_listen: AllowList,
}

impl HostPolicy {
    /// Parses `permit_open` (`HOST:PORT`) and `permit_listen` (`[HOST:]PORT`)
    /// entries; an empty list means no restriction.
    pub fn parse(
        permit_open: &[String],
        permit_listen: &[String],
    ) -> std::result::Result<HostPolicy, String> {
        Ok(HostPolicy {
            permit_open: AllowList::parse(permit_open, false)
                .map_err(|e| format!("permit_open: {e}"))?,
            permit_listen: AllowList::parse(permit_listen, true)
                .map_err(|e| format!("permit_listen: {e}"))?,
        })
    }

    /// Checks the target of a local forward over host `host_name`.
    pub fn check_open(&self, host_name: &str, target: &str, port: u16) -> Result<()> {
        if self.permit_open.allows(target, port) {
            return Ok(());
        }
        Err(Error::NotPermitted(format!(
            "forwarding to {} is not permitted by permit_open of host {host_name:?} (allowed: {}); \
             add it to permit_open of [hosts.{host_name}] in tunneld's config, or to --permit-open",
            join_host_port(target, port),
            self.permit_open
        )))
    }

    /// Checks the unix socket a local forward over host `host_name` would
    /// have the server connect to.
    pub fn check_open_path(&self, host_name: &str, path: &str) -> Result<()> {
        if self.permit_open.allows(path, PATH_PORT) {
            return Ok(());
        }
        Err(Error::NotPermitted(format!(
            "forwarding to unix socket {path} is not permitted by permit_open of host {host_name:?} (allowed: {}); \
             add the path to permit_open of [hosts.{host_name}] in tunneld's config, or to --permit-open",
            self.permit_open
        )))
    }

    /// Checks the unix socket a remote forward over host `host_name` would
    /// have the server listen on.
    pub fn check_listen_path(&self, host_name: &str, path: &str) -> Result<()> {
        if self.permit_listen.allows(path, PATH_PORT) {
            return Ok(());
        }
        Err(Error::NotPermitted(format!(
            "listening on unix socket {path} is not permitted by permit_listen of host {host_name:?} (allowed: {}); \
             add the path to permit_listen of [hosts.{host_name}] in tunneld's config, or to --permit-listen",
            self.permit_listen
        )))
    }

    /// Checks where a remote forward over host `host_name` would listen.
    pub fn check_listen(&self, host_name: &str, bind: &str, port: u16) -> Result<()> {
        if self.permit_listen.allows(bind, port) {
            return Ok(());
        }
        let port_text = if port == 0 {
            "a port the server picks (0)".to_string()
        } else {
            format!("port {port}")
        };
        Err(Error::NotPermitted(format!(
            "listening on {bind} {port_text} is not permitted by permit_listen of host {host_name:?} (allowed: {}); \
             add it to permit_listen of [hosts.{host_name}] in tunneld's config, or to --permit-listen",
            self.permit_listen
        )))
    }
}

/// Where a reverse dynamic forward may connect (OpenSSH's client-side
/// `PermitRemoteOpen`): `HOST:PORT` patterns, `any` (the default) or `none`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemoteOpenPolicy(AllowList);

/// Most entries a `permit_remote_open` may have: each is matched against
/// every SOCKS request of the tunnel.
pub const MAX_PERMIT_REMOTE_OPEN: usize = 256;

impl RemoteOpenPolicy {
    /// Parses the entries, at most [`MAX_PERMIT_REMOTE_OPEN`]; an empty list
    /// allows any target.
    pub fn parse(items: &[String]) -> std::result::Result<RemoteOpenPolicy, String> {
        if items.len() > MAX_PERMIT_REMOTE_OPEN {
            return Err(format!(
                "permit_remote_open has {} entries; at most {MAX_PERMIT_REMOTE_OPEN} are accepted",
                items.len()
            ));
        }
        AllowList::parse(items, false)
            .map(RemoteOpenPolicy)
            .map_err(|e| format!("permit_remote_open: {e}"))
    }

    /// The rule as written, one entry each; empty when any target is allowed.
    pub fn entries(&self) -> Vec<String> {
        match &self.0.0 {
            None => Vec::new(),
            Some(p) if p.is_empty() => vec!["none".into()],
            Some(p) => p.iter().map(|p| p.text.clone()).collect(),
        }
    }

    /// Checks a SOCKS request's target; the refusal says what to change.
    pub fn check(&self, host: &str, port: u16) -> std::result::Result<(), String> {
        if self.0.allows(host, port) {
            return Ok(());
        }
        Err(format!(
            "connecting to {} is not permitted by the tunnel's permit_remote_open (allowed: {}); \
             open the reverse dynamic forward again with --permit-remote-open {}",
            join_host_port(host, port),
            self.0,
            join_host_port(host, port),
        ))
    }
}

/// Addresses local forwards may listen on besides loopback.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BindPolicy {
    /// Extra addresses as written (`*` allows any).
    allowed: Vec<String>,
}

impl BindPolicy {
    /// Loopback plus `allowed` (IP addresses or names; `*` for any).
    pub fn new(allowed: Vec<String>) -> Self {
        BindPolicy { allowed }
    }

    /// The extra addresses, as given.
    pub fn allowed(&self) -> &[String] {
        &self.allowed
    }

    /// Checks a local forward's bind address `bind`, which resolved to
    /// `ip`: loopback always passes; anything else must be listed (as
    /// written or as that IP address) or `*` be.
    pub fn check(&self, bind: &str, ip: IpAddr) -> Result<()> {
        let bare = bind.trim_start_matches('[').trim_end_matches(']');
        let listed = |a: &String| {
            let a = a.trim_start_matches('[').trim_end_matches(']');
            a == "*" || a.eq_ignore_ascii_case(bare) || a.parse::<IpAddr>().is_ok_and(|a| a == ip)
        };
        if ip.is_loopback() || self.allowed.iter().any(listed) {
            return Ok(());
        }
        Err(Error::NotPermitted(format!(
            "local forwards may listen only on loopback addresses: {bind} is not allowed by allow_local_bind \
             (like OpenSSH's GatewayPorts); start tunneld with --allow-local-bind {bare} to allow it"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn permit_open_matches_hosts_ports_and_wildcards() {
        let p = HostPolicy::parse(&list(&["db.internal:5432", "*:443", "[::1]:*"]), &[]).unwrap();
        assert!(p.check_open("bastion", "DB.internal", 5432).is_ok());
        assert!(p.check_open("bastion", "anything", 443).is_ok());
        assert!(p.check_open("bastion", "::1", 22).is_ok());
        assert!(p.check_open("bastion", "0:0:0:0:0:0:0:1", 80).is_ok());
        let e = p
            .check_open("bastion", "db.internal", 5433)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("db.internal:5433 is not permitted by permit_open of host \"bastion\""),
            "{e}"
        );
        assert!(
            e.contains("allowed: db.internal:5432, *:443, [::1]:*"),
            "{e}"
        );
        // No list: anything.
        assert!(HostPolicy::default().check_open("h", "x", 1).is_ok());
        let none = HostPolicy::parse(&list(&["none"]), &[]).unwrap();
        assert!(none.check_open("h", "localhost", 80).is_err());
    }

    #[test]
    fn permit_listen_takes_bare_ports_and_port_zero_needs_a_star() {
        let p = HostPolicy::parse(&[], &list(&["8080", "localhost:9000", "0.0.0.0:*"])).unwrap();
        assert!(p.check_listen("h", "localhost", 8080).is_ok());
        assert!(p.check_listen("h", "0.0.0.0", 8080).is_ok());
        assert!(p.check_listen("h", "localhost", 9000).is_ok());
        assert!(p.check_listen("h", "127.0.0.1", 9000).is_err());
        assert!(p.check_listen("h", "0.0.0.0", 0).is_ok());
        let e = p.check_listen("h", "localhost", 0).unwrap_err().to_string();
        assert!(
            e.contains("a port the server picks (0)") && e.contains("permit_listen of host \"h\""),
            "{e}"
        );
    }

    #[test]
    fn socket_paths_match_only_path_patterns_exactly() {
        let p = HostPolicy::parse(
            &list(&["/run/pg/.s.PGSQL.5432", "*:*"]),
            &list(&["/tmp/app.sock", "*"]),
        )
        .unwrap();
        assert!(p.check_open_path("h", "/run/pg/.s.PGSQL.5432").is_ok());
        assert!(p.check_open("h", "db", 5432).is_ok());
        // `*:*` covers every host and port, but no path.
        let e = p
            .check_open_path("h", "/run/other.sock")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unix socket /run/other.sock is not permitted by permit_open of host \"h\""),
            "{e}"
        );
        assert!(p.check_listen_path("h", "/tmp/app.sock").is_ok());
        assert!(p.check_listen_path("h", "/tmp/App.sock").is_err());
        assert!(p.check_listen("h", "localhost", 0).is_ok());
        // A path pattern covers no TCP target.
        let only_path = HostPolicy::parse(&list(&["/a.sock"]), &[]).unwrap();
        assert!(only_path.check_open("h", "/a.sock", 1).is_err());
        assert!(only_path.check_open("h", "localhost", 80).is_err());
        // No list: any path.
        assert!(HostPolicy::default().check_open_path("h", "/x").is_ok());
    }

    #[test]
    fn permit_remote_open_is_any_by_default_and_names_the_flag() {
        let any = RemoteOpenPolicy::parse(&[]).unwrap();
        assert!(any.check("anything", 1).is_ok());
        assert!(any.entries().is_empty());
        let p = RemoteOpenPolicy::parse(&list(&["localhost:8080", "10.0.0.1:*"])).unwrap();
        assert!(p.check("localhost", 8080).is_ok());
        assert!(p.check("10.0.0.1", 22).is_ok());
        let e = p.check("localhost", 22).unwrap_err();
        assert!(
            e.contains("localhost:22 is not permitted by the tunnel's permit_remote_open")
                && e.contains("--permit-remote-open localhost:22"),
            "{e}"
        );
        assert_eq!(p.entries(), list(&["localhost:8080", "10.0.0.1:*"]));
        let none = RemoteOpenPolicy::parse(&list(&["none"])).unwrap();
        assert!(none.check("localhost", 80).is_err());
        assert_eq!(none.entries(), list(&["none"]));
        assert!(RemoteOpenPolicy::parse(&list(&["nohost"])).is_err());
    }

    #[test]
    fn bad_patterns_are_refused() {
        for bad in ["db", "db:", ":22", "db:0", "db:x", "::1:22", "[::1]22"] {
            assert!(HostPolicy::parse(&list(&[bad]), &[]).is_err(), "{bad}");
        }
        assert!(HostPolicy::parse(&[], &list(&["70000"])).is_err());
        assert!(HostPolicy::parse(&list(&["none", "a:1"]), &[]).is_err());
        assert_eq!(
            HostPolicy::parse(&list(&["any", "a:1"]), &[]).unwrap(),
            HostPolicy::default()
        );
    }

    #[test]
    fn local_binds_are_loopback_unless_allowed() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let p = BindPolicy::default();
        for (text, addr) in [
            ("127.0.0.1", "127.0.0.1"),
            ("127.1.2.3", "127.1.2.3"),
            ("::1", "::1"),
            ("[::1]", "::1"),
            ("localhost", "127.0.0.1"),
        ] {
            assert!(p.check(text, ip(addr)).is_ok(), "{text}");
        }
        let e = p.check("0.0.0.0", ip("0.0.0.0")).unwrap_err().to_string();
        assert!(
            e.contains("--allow-local-bind 0.0.0.0") && e.contains("allow_local_bind"),
            "{e}"
        );
        assert!(p.check("myhost", ip("10.0.0.1")).is_err());
        let p = BindPolicy::new(list(&["0.0.0.0", "::", "myhost"]));
        assert!(p.check("0.0.0.0", ip("0.0.0.0")).is_ok());
        assert!(p.check("[::]", ip("::")).is_ok());
        assert!(p.check("MyHost", ip("10.0.0.2")).is_ok());
        assert!(p.check("10.0.0.1", ip("10.0.0.1")).is_err());
        assert!(
            BindPolicy::new(list(&["*"]))
                .check("10.0.0.1", ip("10.0.0.1"))
                .is_ok()
        );
    }
}
