//! What a client asked for: the protocol version it spoke and the target it
//! wants reached.

use std::{fmt, net::SocketAddr};

/// The SOCKS version a client spoke; the replies are written in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// SOCKS4: the target is an IPv4 address.
    Socks4,
    /// SOCKS4a: SOCKS4 with a host name for the server to resolve.
    Socks4a,
    /// SOCKS5 (RFC 1928), without authentication.
    Socks5,
}

/// Where a client wants to be connected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// An address the client resolved itself.
    Ip(SocketAddr),
    /// A host name, passed on unresolved: the SSH server resolves it
    /// (socks5h semantics), so names only the remote side knows work.
    Domain {
        /// The name as the client sent it: non-empty UTF-8, at most 255
        /// bytes, no NUL. Not escaped: log it through the log's escaped
        /// fields.
        name: String,
        /// The port, never 0.
        port: u16,
    },
}

impl Target {
    /// The host as a direct-tcpip or connect call takes it: an IP as text
    /// (IPv6 without brackets), or the name.
    pub fn host(&self) -> String {
        match self {
            Target::Ip(addr) => addr.ip().to_string(),
            Target::Domain { name, .. } => name.clone(),
        }
    }

    /// The port.
    pub fn port(&self) -> u16 {
        match self {
            Target::Ip(addr) => addr.port(),
            Target::Domain { port, .. } => *port,
        }
    }
}

impl fmt::Display for Target {
    /// `10.0.0.1:80`, `[::1]:80`, `db.internal:5432`; a name with a colon
    /// in it is bracketed too, so the port stays unambiguous.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Ip(addr) => write!(f, "{addr}"),
            Target::Domain { name, port } if name.contains(':') => write!(f, "[{name}]:{port}"),
            Target::Domain { name, port } => write!(f, "{name}:{port}"),
        }
    }
}

/// A complete CONNECT request: answer it with [`Request::success`] once the
/// target is open, or [`Request::failure`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The version the client spoke, which the reply must use.
    pub version: Version,
    /// Where the client wants to be connected.
    pub target: Target,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_and_display() {
        let cases = [
            (
                Target::Ip("10.0.0.1:80".parse().unwrap()),
                "10.0.0.1",
                "10.0.0.1:80",
            ),
            (Target::Ip("[::1]:80".parse().unwrap()), "::1", "[::1]:80"),
            (
                Target::Domain {
                    name: "db.internal".into(),
                    port: 5432,
                },
                "db.internal",
                "db.internal:5432",
            ),
            (
                Target::Domain {
                    name: "fe80::1".into(),
                    port: 22,
                },
                "fe80::1",
                "[fe80::1]:22",
            ),
        ];
        for (target, host, shown) in cases {
            assert_eq!(target.host(), host);
            assert_eq!(target.to_string(), shown);
        }
        assert_eq!(
            Target::Domain {
                name: "a".into(),
                port: 7
            }
            .port(),
            7
        );
        assert_eq!(Target::Ip("[::1]:9".parse().unwrap()).port(), 9);
    }
}
