//! Talking to tunneld: address parsing (TCP or a Unix socket), connecting
//! within a deadline, and turning transport failures and gRPC statuses into one-line messages that
//! say what to do.

use std::fmt;
use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tokio::time::Instant;
use tonic::codegen::http::Uri;
use tonic::transport::{Channel, Endpoint};
use tower::service_fn;
use tunnel_proto::v1::tunnel_service_client::TunnelServiceClient;

/// The generated client over a tonic channel.
pub type Client = TunnelServiceClient<Channel>;

/// Port tunneld listens on by default, used when `--addr` names no port.
const DEFAULT_PORT: u16 = 4522;

/// What `--addr` accepts, for error messages.
const ADDR_FORMS: &str = "expected HOST:PORT, http://HOST:PORT or unix:/PATH";

/// The URI tonic is given for a Unix socket. tonic needs one to build
/// requests, but the connector ignores it; its host goes out as the HTTP/2
/// `:authority`, so it is a plain name.
const UNIX_URI: &str = "http://localhost";

/// tunneld's address: `host:port`, `http://host:port`, or a Unix socket as
/// `unix:/path`, `unix:///path` or `unix:relative/path`.
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
    /// TCP, as the URI tonic connects to (`http://host:port`).
    Tcp(String),
    /// A Unix socket path; a relative one is relative to the working
    /// directory, as for any file.
    Unix(PathBuf),
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
        let rest = if let Some(rest) = s.strip_prefix("http://") {
            rest
        } else if s.starts_with("https://") {
            return Err("TLS is not supported; tunneld serves plain http://HOST:PORT".into());
        } else if s.contains("://") {
            return Err(ADDR_FORMS.into());
        } else {
            s
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
        let authority = format!("{host}:{port}");
        Ok(Addr {
            target: Target::Tcp(format!("http://{authority}")),
            shown: authority,
        })
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

/// Connects to tunneld, giving up at `deadline`.
pub async fn connect(addr: &Addr, deadline: Instant, timeout: Duration) -> anyhow::Result<Client> {
    Ok(TunnelServiceClient::new(
        channel(addr, deadline, timeout).await?,
    ))
}

/// Opens a connection to tunneld that any of its services can use, giving
/// up at `deadline`.
pub async fn channel(addr: &Addr, deadline: Instant, timeout: Duration) -> anyhow::Result<Channel> {
    let connecting = async {
        let connected = match &addr.target {
            Target::Tcp(uri) => {
                let endpoint = Endpoint::from_shared(uri.clone())
                    .with_context(|| format!("invalid tunneld address {addr}"))?;
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
        connected.map_err(|err| unreachable_error(addr, &err))
    };
    match tokio::time::timeout_at(deadline, connecting).await {
        Ok(result) => result,
        Err(_) => Err(anyhow!(
            "tunneld at {addr} did not accept a connection within {} — is tunneld running, and is --addr right?",
            humantime::format_duration(timeout)
        )),
    }
}

/// The one-line error for a connection attempt that failed: why, and what
/// to check.
fn unreachable_error(addr: &Addr, err: &(dyn std::error::Error + 'static)) -> anyhow::Error {
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
    addr: &Addr,
    deadline: Instant,
    timeout: Duration,
    what: impl fmt::Display,
    fut: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> anyhow::Result<T> {
    match tokio::time::timeout_at(deadline, fut).await {
        Ok(Ok(response)) => Ok(response.into_inner()),
        Ok(Err(status)) => Err(status_error(addr, status)).context(what.to_string()),
        Err(_) => Err(timeout_error(addr, timeout)).context(what.to_string()),
    }
}

/// The error for a call that outlived the CLI's own deadline.
pub fn timeout_error(addr: &Addr, timeout: Duration) -> anyhow::Error {
    anyhow!(
        "tunneld at {addr} did not answer within {}; retry with a longer --timeout",
        humantime::format_duration(timeout)
    )
}

/// Turns a gRPC status into an error: the server's message, written for
/// people, and the code's name; or, for a status made up locally from a
/// transport failure, what happened to the connection.
pub fn status_error(addr: &Addr, status: tonic::Status) -> anyhow::Error {
    if let Some(source) = std::error::Error::source(&status) {
        // The deepest cause says what happened ("stream closed because of a
        // broken pipe"); the layers above it only say where it was noticed.
        let reason = io_kind(source).map_or_else(|| root_cause(source).to_string(), io_reason);
        return anyhow!("lost the connection to tunneld at {addr}: {reason}");
    }
    anyhow::Error::new(StatusError(status))
}

/// A status returned by tunneld, displayed as `message (CODE)`.
#[derive(Debug)]
pub struct StatusError(pub tonic::Status);

impl fmt::Display for StatusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let message = self.0.message().trim();
        let message = if message.is_empty() {
            self.0.code().description()
        } else {
            message
        };
        write!(f, "{message} ({})", code_name(self.0.code()))
    }
}

impl std::error::Error for StatusError {}

/// Whether an error (under any context) is a status tunneld answered with
/// `code`.
pub fn has_code(err: &anyhow::Error, code: tonic::Code) -> bool {
    err.chain()
        .filter_map(|e| e.downcast_ref::<StatusError>())
        .any(|s| s.0.code() == code)
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
            Target::Tcp(uri) => format!("{uri}|{}", a.shown),
            Target::Unix(path) => format!("unix {}|{}", path.display(), a.shown),
        })
    }

    #[test]
    fn addr_forms() {
        assert_eq!(
            addr("127.0.0.1:4522"),
            Ok("http://127.0.0.1:4522|127.0.0.1:4522".into())
        );
        assert_eq!(
            addr("http://localhost:9000/"),
            Ok("http://localhost:9000|localhost:9000".into())
        );
        assert_eq!(
            addr("[::1]:7000"),
            Ok("http://[::1]:7000|[::1]:7000".into())
        );
        assert_eq!(
            addr("tunnel-box"),
            Ok("http://tunnel-box:4522|tunnel-box:4522".into())
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
        assert!(addr("https://x:1").unwrap_err().contains("TLS"));
        assert!(addr("ftp://x:1").unwrap_err().contains("unix:/PATH"));
        assert!(addr("").is_err());
        assert!(addr("host:").is_err());
        assert!(addr("host:0").is_err());
        assert!(addr("host:99999").is_err());
        assert!(addr("host:1/path").is_err());
    }

    async fn connect_error(addr: &str) -> String {
        let addr: Addr = addr.parse().unwrap();
        let timeout = Duration::from_secs(5);
        let err = connect(&addr, Instant::now() + timeout, timeout)
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
        let a: Addr = "127.0.0.1:1".parse().unwrap();
        let err = status_error(&a, tonic::Status::not_found("no tunnel with id t-9"));
        assert_eq!(err.to_string(), "no tunnel with id t-9 (NOT_FOUND)");
        let err = status_error(&a, tonic::Status::new(tonic::Code::Internal, ""));
        assert!(err.to_string().ends_with("(INTERNAL)"));
    }

    #[test]
    fn codes_are_seen_through_context() {
        let a: Addr = "127.0.0.1:1".parse().unwrap();
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
