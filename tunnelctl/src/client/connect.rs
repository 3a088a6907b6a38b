//! Reaching tunneld: the address with its TLS settings and token
//! ([`Remote`]), connecting within a deadline, and one call bounded by it.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::{Context as _, bail};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tokio::time::Instant;
use tonic::body::Body;
use tonic::codegen::http::{self, Uri};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tower::{Service, service_fn};
use tunnel_proto::v1::tunnel_service_client::TunnelServiceClient;

use crate::auth::{Bearer, Token};
use crate::tls::TlsSettings;

use super::addr::{Addr, Scheme, Target, UNIX_URI};
use super::explain::{status_error, timeout_error, tls_setup_error, unreachable_error};

/// A connection to tunneld that puts the token, if any, on every call.
pub type Transport = InterceptedService<Noting, Bearer>;

/// The generated client over a [`Transport`].
pub type Client = TunnelServiceClient<Transport>;

/// tunneld as tunnelctl reaches it: the address, TLS when asked for, and the
/// token to send. Shown as its address.
#[derive(Debug, Clone)]
pub struct Remote {
    /// Where tunneld is.
    pub(super) addr: Addr,
    /// TLS settings when the connection uses TLS.
    pub(super) tls: Option<TlsSettings>,
    /// The token sent on every call, if any.
    pub(super) token: Option<Token>,
    /// Whether tunneld has answered a call yet (any response, error or
    /// not). A connection lost before that is a setup problem — TLS on one
    /// side only, a refused client certificate — not tunneld going away.
    pub(super) answered: Arc<AtomicBool>,
}

impl fmt::Display for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.addr.fmt(f)
    }
}

impl Remote {
    /// Combines the address with the `--tls-*` settings (`tls`: `Some` when
    /// any was given) and the token, refusing combinations that cannot work
    /// or would leak the token.
    pub fn new(
        addr: Addr,
        tls: Option<TlsSettings>,
        token: Option<Token>,
    ) -> anyhow::Result<Remote> {
        let tls = match &addr.target {
            Target::Unix(_) if tls.is_some() => bail!(
                "the --tls-* flags (or TUNNELD_TLS_*) are for TCP addresses, and {addr} is a                  Unix socket, which tunneld guards by its file mode and the caller's uid; drop                  them"
            ),
            Target::Unix(_) => None,
            Target::Tcp {
                scheme: Scheme::Http,
                ..
            } if tls.is_some() => bail!(
                "--addr http://{addr} asks for plain TCP but --tls-* (or TUNNELD_TLS_*) for                  TLS: write --addr https://{addr}"
            ),
            Target::Tcp {
                scheme: Scheme::Https,
                ..
            } => Some(tls.unwrap_or_default()),
            Target::Tcp { .. } => tls,
        };
        if let Some(token) = &token
            && tls.is_none()
            && !addr.is_local()
        {
            bail!(
                "refusing to send the token from {} to tunneld at {addr} over plain TCP, where                  the network can read it: use TLS (--addr https://{addr}, with --tls-ca FILE                  for a private CA), or reach tunneld on a loopback address or Unix socket",
                token.source()
            );
        }
        Ok(Remote {
            addr,
            tls,
            token,
            answered: Arc::default(),
        })
    }

    /// Plain TCP or a Unix socket, no token.
    #[cfg(test)]
    pub fn plain(addr: Addr) -> Remote {
        Remote {
            addr,
            tls: None,
            token: None,
            answered: Arc::default(),
        }
    }
}

/// Connects to tunneld, giving up at `deadline`.
pub async fn connect(
    remote: &Remote,
    deadline: Instant,
    timeout: Duration,
) -> anyhow::Result<Client> {
    Ok(TunnelServiceClient::new(
        channel(remote, deadline, timeout).await?,
    ))
}

/// Opens a connection to tunneld that any of its services can use, giving
/// up at `deadline`. Every call on it carries the token, if there is one.
pub async fn channel(
    remote: &Remote,
    deadline: Instant,
    timeout: Duration,
) -> anyhow::Result<Transport> {
    let addr = &remote.addr;
    let connecting = async {
        let connected = match &addr.target {
            Target::Tcp { .. } => {
                let scheme = if remote.tls.is_some() {
                    "https"
                } else {
                    "http"
                };
                let uri = format!("{scheme}://{addr}");
                let mut endpoint = Endpoint::from_shared(uri)
                    .with_context(|| format!("invalid tunneld address {addr}"))?;
                if let Some(tls) = &remote.tls {
                    endpoint = endpoint
                        .tls_config(tls.config())
                        .map_err(|err| tls_setup_error(remote, tls, &err))?;
                }
                endpoint.connect().await
            }
            Target::Unix(path) => {
                let path = path.clone();
                let connector = service_fn(move |_: Uri| {
                    let path = path.clone();
                    async move { Ok::<_, io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
                });
                Endpoint::from_static(UNIX_URI)
                    .connect_with_connector(connector)
                    .await
            }
        };
        connected.map_err(|err| unreachable_error(remote, &err))
    };
    let channel = match tokio::time::timeout_at(deadline, connecting).await {
        Ok(result) => result?,
        Err(_) => bail!(
            "tunneld at {addr} did not accept a connection within {} — is tunneld running, and is --addr right?",
            humantime::format_duration(timeout)
        ),
    };
    let noting = Noting {
        channel,
        answered: remote.answered.clone(),
    };
    Ok(InterceptedService::new(
        noting,
        Bearer::new(remote.token.clone()),
    ))
}

/// A channel that notes in its [`Remote`] when tunneld first answers.
#[derive(Debug, Clone)]
pub struct Noting {
    /// The connection.
    channel: Channel,
    /// Set once any response arrives.
    answered: Arc<AtomicBool>,
}

impl Service<http::Request<Body>> for Noting {
    type Response = http::Response<Body>;
    type Error = tonic::transport::Error;
    type Future =
        Pin<Box<dyn Future<Output = Result<http::Response<Body>, tonic::transport::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.channel.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let answered = self.answered.clone();
        let response = self.channel.call(request);
        Box::pin(async move {
            let response = response.await?;
            answered.store(true, Ordering::Relaxed);
            Ok(response)
        })
    }
}

/// Awaits one call, bounded by `deadline`, and turns its failure into a
/// message. `what` says what was being done ("cannot close t-1").
pub async fn call<T>(
    remote: &Remote,
    deadline: Instant,
    timeout: Duration,
    what: impl fmt::Display,
    fut: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> anyhow::Result<T> {
    match tokio::time::timeout_at(deadline, fut).await {
        Ok(Ok(response)) => Ok(response.into_inner()),
        Ok(Err(status)) => Err(status_error(remote, status)).context(what.to_string()),
        Err(_) => Err(timeout_error(remote, timeout)).context(what.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::has_code;

    async fn connect_error(addr: &str) -> String {
        let remote = Remote::plain(addr.parse().unwrap());
        let timeout = Duration::from_secs(5);
        let err = connect(&remote, Instant::now() + timeout, timeout)
            .await
            .expect_err("connected to nothing");
        format!("{err:#}")
    }

    #[tokio::test]
    async fn missing_socket_says_so_and_what_to_do() {
        let dir = std::env::temp_dir().join(format!("tunnelctl-test-{}", std::process::id()));
        let path = format!("unix:{}/none.sock", dir.display());
        assert_eq!(
            connect_error(&path).await,
            format!(
                "tunneld is not reachable at {path}: no such file or directory — is tunneld running?"
            )
        );
    }

    #[tokio::test]
    async fn refused_tcp_port_says_so_and_what_to_do() {
        // A port that was just free: nothing listens on it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        assert_eq!(
            connect_error(&format!("127.0.0.1:{port}")).await,
            format!(
                "tunneld is not reachable at 127.0.0.1:{port}: connection refused — is tunneld running?"
            )
        );
    }

    /// A token from `TUNNELD_TOKEN`, as the environment would give it.
    fn token() -> Token {
        crate::auth::resolve(None, |name| {
            (name == crate::auth::TOKEN_ENV).then(|| "s3cret-token-0123456789".into())
        })
        .unwrap()
        .unwrap()
    }

    fn remote(addr: &str, tls: bool, with_token: bool) -> anyhow::Result<Remote> {
        Remote::new(
            addr.parse().unwrap(),
            tls.then(TlsSettings::default),
            with_token.then(token),
        )
    }

    #[test]
    fn a_token_goes_in_plain_text_only_to_this_machine() {
        for local in [
            "127.0.0.1:4522",
            "127.8.9.10:1",
            "[::1]:4522",
            "[::ffff:127.0.0.1]:4522",
            "localhost:4522",
            "http://LOCALHOST:4522",
            "unix:/run/tunneld.sock",
        ] {
            assert!(remote(local, false, true).is_ok(), "{local}");
        }
        for far in [
            "10.0.0.1:4522",
            "tunnel-box:4522",
            "[2001:db8::1]:1",
            "0.0.0.0:4522",
        ] {
            let err = remote(far, false, true).unwrap_err().to_string();
            assert!(
                err.starts_with("refusing to send the token from TUNNELD_TOKEN")
                    && err.contains("--addr https://"),
                "{far}: {err}"
            );
            assert!(!err.contains("s3cret"), "{err}");
            assert!(remote(far, true, true).is_ok(), "{far} with TLS");
            assert!(remote(far, false, false).is_ok(), "{far} without a token");
        }
        assert!(remote("https://10.0.0.1:4522", false, true).is_ok());
    }

    #[test]
    fn tls_is_chosen_by_https_or_any_tls_flag() {
        assert!(remote("https://h:1", false, false).unwrap().tls.is_some());
        assert!(remote("h:1", true, false).unwrap().tls.is_some());
        assert!(remote("h:1", false, false).unwrap().tls.is_none());
        let err = remote("http://h:1", true, false).unwrap_err().to_string();
        assert!(err.contains("write --addr https://h:1"), "{err}");
        let err = remote("unix:/t.sock", true, false).unwrap_err().to_string();
        assert!(err.contains("Unix socket"), "{err}");
    }

    #[test]
    fn a_refused_token_says_where_it_came_from() {
        let r = remote("127.0.0.1:1", false, true).unwrap();
        let err = status_error(
            &r,
            tonic::Status::unauthenticated("the token was not accepted"),
        );
        assert_eq!(
            err.to_string(),
            "the token was not accepted (UNAUTHENTICATED); tunnelctl sent the token from TUNNELD_TOKEN"
        );
        assert!(has_code(&err, tonic::Code::Unauthenticated));
        let r = remote("127.0.0.1:1", false, false).unwrap();
        let err = status_error(
            &r,
            tonic::Status::unauthenticated("this tunneld requires a token"),
        );
        assert_eq!(
            err.to_string(),
            "this tunneld requires a token (UNAUTHENTICATED)"
        );
    }

    #[test]
    fn debug_of_a_remote_hides_the_token() {
        let shown = format!("{:?}", remote("127.0.0.1:1", false, true).unwrap());
        assert!(!shown.contains("s3cret"), "{shown}");
    }
}
