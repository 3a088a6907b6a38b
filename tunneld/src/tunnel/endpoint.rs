//! Where one end of a tunnel is: a TCP host and port, a unix-domain socket's
//! path, or, on the SOCKS side of a dynamic forward, wherever each
//! connection asks.

use std::path::PathBuf;

use crate::error::{Error, Result};

/// Longest unix-domain socket path: `sun_path` holds 108 bytes on Linux,
/// one of them the terminating NUL.
pub const MAX_SOCKET_PATH: usize = 107;

/// Longest host name or address an endpoint may name: DNS's 253, with room
/// for IPv6 brackets.
pub const MAX_HOST: usize = 255;

/// Default target host of a forward, as ssh's: the SSH server itself (for
/// a local forward) or this machine (for a remote one).
pub const DEFAULT_TARGET_HOST: &str = "localhost";

/// Checks a host name or address a request or the config file gives for
/// one end of a forward: at most [`MAX_HOST`] characters, no spaces or
/// control characters; brackets around an IPv6 address are dropped.
/// `field` names it in the error.
pub fn check_host(field: &str, host: &str) -> Result<String> {
    let bare = host
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(host);
    if bare.chars().any(|c| c.is_whitespace() || c.is_control()) || bare.len() > MAX_HOST {
        return Err(Error::InvalidArgument(format!(
            "{field} {} is not a valid host name or address (at most {MAX_HOST} characters, no spaces or control characters)",
            tunnel_proto::clip::clipped(host)
        )));
    }
    Ok(bare.to_string())
}

/// One end of a tunnel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A host (name or address) and TCP port.
    Tcp {
        /// Host name or IP address.
        host: String,
        /// TCP port.
        port: u16,
    },
    /// A unix-domain socket, by its absolute path (on tunneld's machine or
    /// the SSH server's, by the side it is on).
    Unix {
        /// The socket's path.
        path: PathBuf,
    },
    /// The SOCKS side of a dynamic forward: each connection names its own
    /// target.
    Socks,
}

impl Endpoint {
    /// A unix socket endpoint, after checking `path` is one a socket can
    /// have: absolute, at most [`MAX_SOCKET_PATH`] bytes, no NUL. `field`
    /// names it in the error.
    pub fn unix(field: &str, path: &str) -> Result<Endpoint> {
        let shown = tunnel_proto::clip::clipped(path);
        if !path.starts_with('/') {
            return Err(Error::InvalidArgument(format!(
                "{field} {shown} is not an absolute path; unix sockets are named by absolute paths, e.g. /run/user/1000/app.sock"
            )));
        }
        if path.len() > MAX_SOCKET_PATH || path.contains('\0') {
            return Err(Error::InvalidArgument(format!(
                "{field} {shown} cannot name a unix socket: at most {MAX_SOCKET_PATH} bytes and no NUL \
                 ({} bytes given); choose a shorter path",
                path.len()
            )));
        }
        Ok(Endpoint::Unix {
            path: PathBuf::from(path),
        })
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Tcp { host, port } => {
                f.write_str(&tunnel_proto::addr::join_host_port(host, *port))
            }
            Endpoint::Unix { path } => write!(f, "{}", path.display()),
            Endpoint::Socks => f.write_str("SOCKS"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Endpoint;

    #[test]
    fn endpoints_show_as_ssh_writes_them() {
        let tcp = |host: &str, port| Endpoint::Tcp {
            host: host.into(),
            port,
        };
        assert_eq!(tcp("localhost", 8080).to_string(), "localhost:8080");
        assert_eq!(tcp("127.0.0.1", 22).to_string(), "127.0.0.1:22");
        assert_eq!(tcp("::1", 22).to_string(), "[::1]:22");
        assert_eq!(
            Endpoint::unix("path", "/run/app.sock").unwrap().to_string(),
            "/run/app.sock"
        );
        assert_eq!(Endpoint::Socks.to_string(), "SOCKS");
    }

    #[test]
    fn socket_paths_are_absolute_and_fit_sun_path() {
        assert!(Endpoint::unix("local_path", "/tmp/a.sock").is_ok());
        let e = Endpoint::unix("local_path", "a.sock")
            .unwrap_err()
            .to_string();
        assert!(e.contains("local_path") && e.contains("absolute"), "{e}");
        let long = format!("/{}", "x".repeat(107));
        let e = Endpoint::unix("remote_path", &long)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("at most 107 bytes") && e.contains("108 bytes given"),
            "{e}"
        );
        assert!(Endpoint::unix("p", &format!("/{}", "x".repeat(106))).is_ok());
        assert!(Endpoint::unix("p", "/a\0b").is_err());
    }

    #[test]
    fn hosts_are_names_or_addresses() {
        use super::check_host;
        assert_eq!(check_host("h", "[::1]").unwrap(), "::1");
        assert_eq!(check_host("h", "db.internal").unwrap(), "db.internal");
        let e = check_host("remote_host", "a b").unwrap_err().to_string();
        assert!(
            e.starts_with("remote_host \"a b\" is not a valid host"),
            "{e}"
        );
        assert!(check_host("h", &"x".repeat(256)).is_err());
    }
}
