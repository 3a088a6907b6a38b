//! Talking to tunneld: address parsing (TCP, TLS or a Unix socket), the
//! credentials sent along ([`Remote`]), connecting within a deadline, and
//! turning transport failures and gRPC statuses into one-line messages that
//! say what to do.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
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
use crate::tls::{self, TlsSettings};

/// A connection to tunneld that puts the token, if any, on every call.
pub type Transport = InterceptedService<Noting, Bearer>;

/// The generated client over a [`Transport`].
pub type Client = TunnelServiceClient<Transport>;

/// Port tunneld listens on by default, used when `--addr` names no port.
const DEFAULT_PORT: u16 = tunnel_proto::addr::DEFAULT_API_PORT;

/// What `--addr` accepts, for error messages.
const ADDR_FORMS: &str = "expected HOST:PORT, http://HOST:PORT, https://HOST:PORT or unix:/PATH";

/// The URI tonic is given for a Unix socket. tonic needs one to build
/// requests, but the connector ignores it; its host goes out as the HTTP/2
/// `:authority`, so it is a plain name.
const UNIX_URI: &str = "http://localhost";

/// tunneld's address: `host:port`, `http://host:port`, `https://host:port`,
/// or a Unix socket as `unix:/path`, `unix:///path` or `unix:relative/path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addr {
    /// Where to connect.
    target: Target,
    /// What messages show: `host:port` for TCP, the text given for a socket.
    shown: String,
}

/// The transport behind an [`Addr`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
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
enum Scheme {
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
    fn is_local(&self) -> bool {
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

/// tunneld as tunnelctl reaches it: the address, TLS when asked for, and the
/// token to send. Shown as its address.
#[derive(Debug, Clone)]
pub struct Remote {
    /// Where tunneld is.
    addr: Addr,
    /// TLS settings when the connection uses TLS.
    tls: Option<TlsSettings>,
    /// The token sent on every call, if any.
    token: Option<Token>,
    /// Whether tunneld has answered a call yet (any response, error or
    /// not). A connection lost before that is a setup problem — TLS on one
    /// side only, a refused client certificate — not tunneld going away.
    answered: Arc<AtomicBool>,
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

/// The error for TLS settings tonic could not use (no system roots, a
/// certificate rustls cannot parse).
fn tls_setup_error(
    remote: &Remote,
    tls: &TlsSettings,
    err: &(dyn std::error::Error + 'static),
) -> anyhow::Error {
    let hint = if tls.has_ca() {
        "check --tls-ca, --tls-cert and --tls-key"
    } else {
        "pass --tls-ca FILE naming the CA that signed tunneld's certificate"
    };
    anyhow!(
        "cannot set up TLS for tunneld at {}: {} — {hint}",
        remote.addr,
        error_chain(err)
    )
}

/// The one-line error for a connection attempt that failed: why, and what
/// to check.
fn unreachable_error(remote: &Remote, err: &(dyn std::error::Error + 'static)) -> anyhow::Error {
    if let Some(explained) = tls::explain(err, &remote.addr.shown, remote.tls.as_ref()) {
        return anyhow!(explained);
    }
    let addr = &remote.addr;
    let (reason, down) = match io_kind(err) {
        Some(io) => (io_reason(io), is_down(io.kind())),
        None => (error_chain(err), false),
    };
    let hint = if down {
        "is tunneld running?"
    } else {
        "check --addr (or TUNNELD_ADDR)"
    };
    anyhow!("tunneld is not reachable at {addr}: {reason} — {hint}")
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

/// The error for a call that outlived the CLI's own deadline.
pub fn timeout_error(remote: &Remote, timeout: Duration) -> anyhow::Error {
    anyhow!(
        "tunneld at {remote} did not answer within {}; retry with a longer --timeout",
        humantime::format_duration(timeout)
    )
}

/// Turns a gRPC status into an error: the server's message, written for
/// people, and the code's name; or, for a status made up locally from a
/// transport failure, what happened to the connection. A TLS failure can
/// show up here rather than when connecting: with TLS 1.3 the server
/// checks the client's certificate after the client thinks it is done.
pub fn status_error(remote: &Remote, status: tonic::Status) -> anyhow::Error {
    if let Some(source) = std::error::Error::source(&status) {
        return lost_error(remote, source);
    }
    // The server's message says what to do; say which token was refused,
    // since several places can supply one.
    let note = match (&remote.token, status.code()) {
        (Some(token), tonic::Code::Unauthenticated) => {
            Some(format!("tunnelctl sent the token from {}", token.source()))
        }
        _ => None,
    };
    anyhow::Error::new(StatusError { status, note })
}

/// The error for a call whose connection failed: a TLS failure explained;
/// a connection closed before tunneld ever answered blamed on the likely
/// TLS setting; else the connection was lost, and how.
fn lost_error(remote: &Remote, source: &(dyn std::error::Error + 'static)) -> anyhow::Error {
    let addr = &remote.addr;
    if let Some(explained) = tls::explain(source, &addr.shown, remote.tls.as_ref()) {
        return anyhow!(explained);
    }
    // The deepest cause says what happened ("stream closed because of a
    // broken pipe"); the layers above it only say where it was noticed.
    let reason = io_kind(source).map_or_else(|| root_cause(source).to_string(), io_reason);
    if !remote.answered.load(Ordering::Relaxed)
        && let Target::Tcp { .. } = addr.target
    {
        return match &remote.tls {
            // An HTTP/2 server speaks first; a TLS one waits for a hello
            // that never comes and drops the connection.
            None => anyhow!(
                "tunneld at {addr} closed the connection before answering ({reason}); if it \
                 serves TLS, use --addr https://{addr} (with --tls-ca FILE for a private CA)"
            ),
            Some(tls) => anyhow!(
                "TLS handshake with {addr} failed: tunneld closed the connection before \
                 answering ({reason}); {}",
                tls::unanswered_hint(tls)
            ),
        };
    }
    anyhow!("lost the connection to tunneld at {addr}: {reason}")
}

/// A status returned by tunneld, displayed as `message (CODE)`, and a note
/// from tunnelctl when it has one.
#[derive(Debug)]
pub struct StatusError {
    /// The status as received.
    status: tonic::Status,
    /// What tunnelctl adds, e.g. where the refused token came from.
    note: Option<String>,
}

impl StatusError {
    /// The status's code.
    pub fn code(&self) -> tonic::Code {
        self.status.code()
    }
}

impl fmt::Display for StatusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let message = self.status.message().trim();
        let message = if message.is_empty() {
            self.status.code().description()
        } else {
            message
        };
        write!(f, "{message} ({})", code_name(self.status.code()))?;
        if let Some(note) = &self.note {
            write!(f, "; {note}")?;
        }
        Ok(())
    }
}

impl std::error::Error for StatusError {}

/// Whether an error (under any context) is a status tunneld answered with
/// `code`.
pub fn has_code(err: &anyhow::Error, code: tonic::Code) -> bool {
    err.chain()
        .filter_map(|e| e.downcast_ref::<StatusError>())
        .any(|s| s.code() == code)
}

/// The canonical name of a gRPC code, as in the API's docs (`NOT_FOUND`).
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Finds the I/O error under a transport error, if there is one.
fn io_kind<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a io::Error> {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            return Some(io);
        }
        cur = e.source();
    }
    None
}

/// Whether an I/O error says nothing listens there (or it went away), rather
/// than that the address is wrong.
fn is_down(kind: io::ErrorKind) -> bool {
    use io::ErrorKind::*;
    // NotFound: a Unix socket path with nothing there.
    matches!(
        kind,
        ConnectionRefused | ConnectionReset | ConnectionAborted | TimedOut | NotFound
    )
}

/// Names an I/O error the way people say it ("connection refused") when its
/// kind is well known, else by its own message.
fn io_reason(io: &io::Error) -> String {
    use io::ErrorKind::*;
    match io.kind() {
        // std calls it "entity not found"; for a socket path, say it as ls does.
        NotFound => "no such file or directory".into(),
        kind @ (ConnectionRefused | ConnectionReset | ConnectionAborted | TimedOut
        | HostUnreachable | NetworkUnreachable | AddrNotAvailable | PermissionDenied
        | BrokenPipe | UnexpectedEof) => kind.to_string(),
        _ => io.to_string(),
    }
}

/// The last error in a chain of sources.
fn root_cause<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> &'a (dyn std::error::Error + 'static) {
    let mut cur = err;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur
}

/// Joins an error and its sources with ": ", skipping repeats.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = Some(err);
    while let Some(e) = cur {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = e.source();
    }
    parts.join(": ")
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

    #[test]
    fn status_errors_show_message_and_code() {
        let a = Remote::plain("127.0.0.1:1".parse().unwrap());
        let err = status_error(&a, tonic::Status::not_found("no tunnel with id t-9"));
        assert_eq!(err.to_string(), "no tunnel with id t-9 (NOT_FOUND)");
        let err = status_error(&a, tonic::Status::new(tonic::Code::Internal, ""));
        assert!(err.to_string().ends_with("(INTERNAL)"));
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

    #[test]
    fn codes_are_seen_through_context() {
        let a = Remote::plain("127.0.0.1:1".parse().unwrap());
        let err = Err::<(), _>(status_error(&a, tonic::Status::not_found("no tunnel t-9")))
            .context("cannot close t-9")
            .unwrap_err();
        assert!(has_code(&err, tonic::Code::NotFound));
        let err = status_error(&a, tonic::Status::internal("boom"));
        assert!(!has_code(&err, tonic::Code::NotFound));
    }

    #[test]
    fn io_errors_are_named_by_kind() {
        let err = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(io_reason(&err), "connection refused");
        let wrapped = anyhow::Error::new(err).context("tcp connect error");
        assert!(io_kind(wrapped.as_ref()).is_some());
    }
}
