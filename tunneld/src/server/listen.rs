//! Where the API listens: a TCP address (loopback unless protected or
//! explicitly allowed otherwise) or a unix socket only its owner can open.
//!
//! A unix socket is bound inside a fresh private directory, made 0600, and
//! only then renamed into place, so there is no moment when another user
//! could connect to it.

use std::{
    fmt, io,
    net::SocketAddr,
    path::{Path, PathBuf},
    str::FromStr,
};

use tokio::net::{TcpListener, UnixListener};

use crate::sys::unix_listener::{self, SocketFile};

/// Scheme prefix of a unix socket address, as gRPC names them.
pub const UNIX_PREFIX: &str = "unix:";

/// An address given to `--listen`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    /// `HOST:PORT` (resolved when bound).
    Tcp(String),
    /// `unix:/path` or `unix:///path`.
    Unix(PathBuf),
}

impl FromStr for ListenAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let Some(rest) = s.strip_prefix(UNIX_PREFIX) else {
            return Ok(ListenAddr::Tcp(s.to_string()));
        };
        let path = rest.strip_prefix("//").unwrap_or(rest);
        if path.is_empty() {
            return Err("unix: needs a socket path, e.g. unix:/run/tunneld/api.sock".into());
        }
        Ok(ListenAddr::Unix(PathBuf::from(path)))
    }
}

/// A bound API listener.
pub enum ApiListener {
    /// A TCP listener.
    Tcp(TcpListener),
    /// A unix socket listener; its file is removed when this is dropped.
    Unix(UnixListener, SocketFile),
}

impl fmt::Display for ApiListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiListener::Tcp(l) => match l.local_addr() {
                Ok(a) => write!(f, "{a}"),
                Err(_) => f.write_str("(unknown TCP address)"),
            },
            ApiListener::Unix(_, file) => write!(f, "{UNIX_PREFIX}{}", file.path().display()),
        }
    }
}

/// Whether the API may listen beyond loopback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exposure {
    /// Loopback only; the text says what is missing for more.
    LoopbackOnly(String),
    /// TLS and client authentication are configured.
    Protected,
    /// `--insecure-listen`: allowed without protection, loudly.
    Insecure,
}

impl Exposure {
    /// What the flags allow: TLS plus a client authentication (mTLS or
    /// tokens) protects; `--insecure-listen` overrides.
    pub fn from_flags(tls: bool, client_auth: bool, insecure: bool) -> Exposure {
        match (tls, client_auth, insecure) {
            (true, true, _) => Exposure::Protected,
            (_, _, true) => Exposure::Insecure,
            (true, false, false) => Exposure::LoopbackOnly(
                " with TLS but no client authentication: anyone who reaches it could use your SSH keys; \
                 add --tls-client-ca (mTLS) or --token-file"
                    .into(),
            ),
            (false, _, false) => Exposure::LoopbackOnly(
                " without TLS: anyone who reaches it could use your SSH keys; give --tls-cert and --tls-key \
                 with --tls-client-ca or --token-file, listen on 127.0.0.1 or on a unix socket (unix:/PATH), \
                 or pass --insecure-listen if the network is trusted"
                    .into(),
            ),
        }
    }
}

/// Binds `addr`. A TCP address must be loopback unless `exposure` allows
/// more.
pub async fn bind(addr: &ListenAddr, exposure: &Exposure) -> Result<ApiListener, String> {
    match addr {
        ListenAddr::Tcp(text) => bind_tcp(text, exposure).await.map(ApiListener::Tcp),
        ListenAddr::Unix(path) => {
            let (listener, file) = bind_unix(path)
                .map_err(|e| format!("cannot listen on {UNIX_PREFIX}{}: {e}", path.display()))?;
            Ok(ApiListener::Unix(listener, file))
        }
    }
}

/// Binds the metrics endpoint on `text` (`HOST:PORT`): loopback only,
/// unless `insecure` (`--insecure-metrics-listen`).
pub async fn bind_metrics(text: &str, insecure: bool) -> Result<TcpListener, String> {
    let addr = resolve(text)
        .await
        .ok_or_else(|| format!("--metrics-listen {text:?} is not HOST:PORT"))?;
    if !addr.ip().is_loopback() {
        if !insecure {
            return Err(format!(
                "refusing to serve metrics on non-loopback address {addr}: the endpoint has no TLS \
                 and no authentication; listen on 127.0.0.1, or pass --insecure-metrics-listen if \
                 who can reach the port is restricted (e.g. a Kubernetes NetworkPolicy)"
            ));
        }
        tracing::warn!(
            %addr,
            "--insecure-metrics-listen: metrics (tunnel and host names, traffic counts) are readable \
             by anyone who reaches this address"
        );
    }
    crate::sys::tcp_listener::bind(addr).map_err(|e| format!("cannot serve metrics on {addr}: {e}"))
}

/// Binds the health listener on `text` (`HOST:PORT`), any address: it
/// serves only `grpc.health.v1`, which tells whether tunneld is up and
/// ready and nothing else, to probes that speak neither TLS nor tokens.
pub async fn bind_health(text: &str) -> Result<TcpListener, String> {
    let addr = resolve(text)
        .await
        .ok_or_else(|| format!("--health-listen {text:?} is not HOST:PORT"))?;
    crate::sys::tcp_listener::bind(addr)
        .map_err(|e| format!("cannot serve health checks on {addr}: {e}"))
}

/// The first address `text` (`HOST:PORT`) resolves to.
async fn resolve(text: &str) -> Option<SocketAddr> {
    tokio::net::lookup_host(text).await.ok()?.next()
}

async fn bind_tcp(text: &str, exposure: &Exposure) -> Result<TcpListener, String> {
    let addr = resolve(text)
        .await
        .ok_or_else(|| format!("--listen {text:?} is not HOST:PORT or unix:/PATH"))?;
    if !addr.ip().is_loopback() {
        match exposure {
            Exposure::LoopbackOnly(why) => {
                return Err(format!(
                    "refusing to serve the API on non-loopback address {addr}{why}"
                ));
            }
            Exposure::Protected => {
                tracing::info!(%addr, "serving the API beyond loopback, with TLS and client authentication");
            }
            Exposure::Insecure => tracing::warn!(
                %addr,
                "--insecure-listen: the API is reachable from the network WITHOUT TLS or client authentication: \
                 anyone who reaches it can run commands with your SSH keys"
            ),
        }
    }
    crate::sys::tcp_listener::bind(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))
}

fn bind_unix(path: &Path) -> io::Result<(UnixListener, SocketFile)> {
    let (listener, file) = unix_listener::bind(path).map_err(|e| match e.kind() {
        io::ErrorKind::AddrInUse => {
            io::Error::new(e.kind(), format!("{e} (is tunneld already running?)"))
        }
        _ => e,
    })?;
    Ok((UnixListener::from_std(listener)?, file))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn listen_addr_forms() {
        assert_eq!(
            "127.0.0.1:4522".parse::<ListenAddr>(),
            Ok(ListenAddr::Tcp("127.0.0.1:4522".into()))
        );
        assert_eq!(
            "unix:/run/t.sock".parse::<ListenAddr>(),
            Ok(ListenAddr::Unix("/run/t.sock".into()))
        );
        assert_eq!(
            "unix:///run/t.sock".parse::<ListenAddr>(),
            Ok(ListenAddr::Unix("/run/t.sock".into()))
        );
        assert!("unix:".parse::<ListenAddr>().is_err());
    }

    #[tokio::test]
    async fn non_loopback_needs_tls_and_client_auth_or_insecure() {
        // Refused before binding: no traffic leaves loopback.
        let addr = ListenAddr::Tcp("0.0.0.0:0".into());
        for (tls, auth) in [(false, false), (false, true), (true, false)] {
            let e = bind(&addr, &Exposure::from_flags(tls, auth, false))
                .await
                .err()
                .unwrap();
            assert!(
                e.contains("refusing to serve the API on non-loopback address 0.0.0.0:0"),
                "{e}"
            );
            let fix = if tls { "--tls-client-ca" } else { "--tls-cert" };
            assert!(e.contains(fix), "{e}");
        }
        assert_eq!(Exposure::from_flags(true, true, false), Exposure::Protected);
        assert_eq!(Exposure::from_flags(false, false, true), Exposure::Insecure);
        let loopback = ListenAddr::Tcp("127.0.0.1:0".into());
        assert!(
            bind(&loopback, &Exposure::from_flags(false, false, false))
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn metrics_beyond_loopback_needs_the_flag() {
        let e = bind_metrics("0.0.0.0:0", false).await.err().unwrap();
        assert!(
            e.contains("refusing to serve metrics on non-loopback address 0.0.0.0:0"),
            "{e}"
        );
        assert!(e.contains("--insecure-metrics-listen"), "{e}");
        assert!(bind_metrics("0.0.0.0:0", true).await.is_ok());
        assert!(bind_metrics("127.0.0.1:0", false).await.is_ok());
        assert!(bind_metrics("nonsense", false).await.is_err());
        // Health needs no flag beyond loopback: it tells only up or down.
        assert!(bind_health("0.0.0.0:0").await.is_ok());
        let e = bind_health("4523").await.err().unwrap();
        assert!(
            e.contains("--health-listen \"4523\" is not HOST:PORT"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn unix_socket_is_private_replaces_stale_and_refuses_live() {
        let dir = std::env::temp_dir().join(format!("tunneld-listen-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("api.sock");
        let addr = ListenAddr::Unix(path.clone());

        // A stale socket (nobody listening) is replaced.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let listener = bind(&addr, &Exposure::Protected).await.unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(listener.to_string(), format!("unix:{}", path.display()));

        // A live one is not.
        let err = bind(&addr, &Exposure::Protected).await.err().unwrap();
        assert!(err.contains("already running"), "{err}");

        // Dropping the listener removes the file; nothing else is left.
        drop(listener);
        assert!(!path.exists());
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
