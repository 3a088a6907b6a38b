//! What `--addr` accepts: `host:port`, `http://host:port`,
//! `https://host:port`, or a Unix socket as `unix:/path`, `unix:///path` or
//! `unix:relative/path`.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;

/// Port tunneld listens on by default, used when `--addr` names no port.
const DEFAULT_PORT: u16 = tunnel_proto::addr::DEFAULT_API_PORT;

/// What `--addr` accepts, for error messages.
const ADDR_FORMS: &str = "expected HOST:PORT, http://HOST:PORT, https://HOST:PORT or unix:/PATH";

/// The URI tonic is given for a Unix socket. tonic needs one to build
/// requests, but the connector ignores it; its host goes out as the HTTP/2
/// `:authority`, so it is a plain name.
pub(super) const UNIX_URI: &str = "http://localhost";

/// tunneld's address: `host:port`, `http://host:port`, `https://host:port`,
/// or a Unix socket as `unix:/path`, `unix:///path` or `unix:relative/path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addr {
    /// Where to connect.
    pub(super) target: Target,
    /// What messages show: `host:port` for TCP, the text given for a socket.
    pub(super) shown: String,
}

/// The transport behind an [`Addr`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Target {
    /// TCP.
    Tcp {
        /// The host as the OS resolves it: a name, or an IP without
        /// brackets.
        host: String,
        /// The port.
        port: u16,
        /// The scheme written, if any.
        scheme: Scheme,
    },
    /// A Unix socket path; a relative one is relative to the working
    /// directory, as for any file.
    Unix(PathBuf),
}

/// The scheme a TCP `--addr` was written with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Scheme {
    /// `HOST:PORT`: plain unless a `--tls-*` flag asks for TLS.
    Unsaid,
    /// `http://`: plain.
    Http,
    /// `https://`: TLS.
    Https,
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl FromStr for Addr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(rest) = s.strip_prefix("unix:") {
            return unix_addr(s, rest);
        }
        let (scheme, rest) = if let Some(rest) = s.strip_prefix("http://") {
            (Scheme::Http, rest)
        } else if let Some(rest) = s.strip_prefix("https://") {
            (Scheme::Https, rest)
        } else if s.contains("://") {
            return Err(ADDR_FORMS.into());
        } else {
            (Scheme::Unsaid, s)
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.is_empty() || rest.contains('/') {
            return Err(ADDR_FORMS.into());
        }
        let uri: tonic::codegen::http::Uri = format!("http://{rest}")
            .parse()
            .map_err(|_| format!("{ADDR_FORMS} (IPv6 in brackets)"))?;
        let authority = uri
            .authority()
            .ok_or_else(|| "the host is missing".to_string())?
            .as_str();
        let host = uri.host().unwrap_or_default();
        if host.is_empty() || authority.contains('@') {
            return Err(ADDR_FORMS.into());
        }
        // `Uri::port` hides a port that is out of range, so read the text.
        let port = match authority[host.len()..].strip_prefix(':') {
            Some("") => return Err("the port is missing".into()),
            Some(text) => match text.parse::<u16>() {
                Ok(0) | Err(_) => return Err("port must be 1..65535".into()),
                Ok(port) => port,
            },
            None => DEFAULT_PORT,
        };
        let shown = format!("{host}:{port}");
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        Ok(Addr {
            target: Target::Tcp {
                host: host.to_string(),
                port,
                scheme,
            },
            shown,
        })
    }
}

impl Addr {
    /// Whether a token may travel to this address without TLS: a Unix
    /// socket, `localhost`, or a loopback IP. Names are not resolved: a name
    /// that happens to point at 127.0.0.1 is still a name an attacker's DNS
    /// could answer.
    pub(super) fn is_local(&self) -> bool {
        match &self.target {
            Target::Unix(_) => true,
            Target::Tcp { host, .. } => {
                host.eq_ignore_ascii_case("localhost")
                    || host
                        .parse::<IpAddr>()
                        .is_ok_and(|ip| ip.to_canonical().is_loopback())
            }
        }
    }
}

/// Parses what follows `unix:`: a path, or `//` and an absolute path (the
/// URI form gRPC tools use, `unix:///run/tunneld.sock`).
fn unix_addr(given: &str, rest: &str) -> Result<Addr, String> {
    let path = match rest.strip_prefix("//") {
        Some(path) if path.starts_with('/') => path,
        Some(_) => {
            return Err(
                "a socket URI has no host: use unix:///ABS/PATH (three slashes) or unix:/ABS/PATH"
                    .into(),
            );
        }
        None => rest,
    };
    if path.is_empty() {
        return Err("the socket path is missing; expected unix:/PATH".into());
    }
    Ok(Addr {
        target: Target::Unix(PathBuf::from(path)),
        shown: given.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Result<String, String> {
        s.parse::<Addr>().map(|a| match a.target {
            Target::Tcp { host, port, scheme } => format!("{scheme:?} {host} {port}|{}", a.shown),
            Target::Unix(path) => format!("unix {}|{}", path.display(), a.shown),
        })
    }

    #[test]
    fn addr_forms() {
        assert_eq!(
            addr("127.0.0.1:4522"),
            Ok("Unsaid 127.0.0.1 4522|127.0.0.1:4522".into())
        );
        assert_eq!(
            addr("http://localhost:9000/"),
            Ok("Http localhost 9000|localhost:9000".into())
        );
        assert_eq!(
            addr("https://tunnel-box.example:9000"),
            Ok("Https tunnel-box.example 9000|tunnel-box.example:9000".into())
        );
        assert_eq!(addr("[::1]:7000"), Ok("Unsaid ::1 7000|[::1]:7000".into()));
        assert_eq!(
            addr("tunnel-box"),
            Ok("Unsaid tunnel-box 4522|tunnel-box:4522".into())
        );
    }

    #[test]
    fn unix_addr_forms_show_as_given() {
        assert_eq!(
            addr("unix:/run/tunneld.sock"),
            Ok("unix /run/tunneld.sock|unix:/run/tunneld.sock".into())
        );
        assert_eq!(
            addr("unix:///run/tunneld.sock"),
            Ok("unix /run/tunneld.sock|unix:///run/tunneld.sock".into())
        );
        assert_eq!(
            addr("unix:run/t.sock"),
            Ok("unix run/t.sock|unix:run/t.sock".into())
        );
        assert!(addr("unix:").unwrap_err().contains("path is missing"));
        assert!(addr("unix://").unwrap_err().contains("three slashes"));
        assert!(
            addr("unix://host/t.sock")
                .unwrap_err()
                .contains("three slashes")
        );
    }

    #[test]
    fn bad_addrs() {
        assert!(addr("ftp://x:1").unwrap_err().contains("unix:/PATH"));
        assert!(addr("").is_err());
        assert!(addr("host:").is_err());
        assert!(addr("host:0").is_err());
        assert!(addr("host:99999").is_err());
        assert!(addr("host:1/path").is_err());
    }
}
