//! Talking to tunneld: address parsing, connecting within a deadline, and
//! turning transport failures and gRPC statuses into one-line messages that
//! say what to do.

use std::fmt;
use std::future::Future;
use std::io;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};
use tunnel_proto::v1::tunnel_service_client::TunnelServiceClient;

/// The generated client over a tonic channel.
pub type Client = TunnelServiceClient<Channel>;

/// Port tunneld listens on by default, used when `--addr` names no port.
const DEFAULT_PORT: u16 = 4522;

/// tunneld's address: `host:port` or `http://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addr {
    /// `http://host:port`, what tonic connects to.
    uri: String,
    /// `host:port`, what messages show.
    authority: String,
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.authority)
    }
}

impl FromStr for Addr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let rest = if let Some(rest) = s.strip_prefix("http://") {
            rest
        } else if s.starts_with("https://") {
            return Err("TLS is not supported; tunneld serves plain http://HOST:PORT".into());
        } else if s.contains("://") {
            return Err("expected HOST:PORT or http://HOST:PORT".into());
        } else {
            s
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.is_empty() || rest.contains('/') {
            return Err("expected HOST:PORT or http://HOST:PORT".into());
        }
        let uri: tonic::codegen::http::Uri = format!("http://{rest}")
            .parse()
            .map_err(|_| "expected HOST:PORT or http://HOST:PORT (IPv6 in brackets)".to_string())?;
        let authority = uri
            .authority()
            .ok_or_else(|| "the host is missing".to_string())?
            .as_str();
        let host = uri.host().unwrap_or_default();
        if host.is_empty() || authority.contains('@') {
            return Err("expected HOST:PORT or http://HOST:PORT".into());
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
            uri: format!("http://{authority}"),
            authority,
        })
    }
}

/// Connects to tunneld, giving up at `deadline`.
pub async fn connect(addr: &Addr, deadline: Instant, timeout: Duration) -> anyhow::Result<Client> {
    let endpoint = Endpoint::from_shared(addr.uri.clone())
        .with_context(|| format!("invalid tunneld address {addr}"))?;
    match tokio::time::timeout_at(deadline, endpoint.connect()).await {
        Ok(Ok(channel)) => Ok(TunnelServiceClient::new(channel)),
        Ok(Err(err)) => {
            let (reason, refused) = match io_kind(&err) {
                Some(io) => (io_reason(io), is_down(io.kind())),
                None => (error_chain(&err), false),
            };
            let hint = if refused {
                "is tunneld running?"
            } else {
                "check --addr (or TUNNELD_ADDR)"
            };
            Err(anyhow!(
                "tunneld is not reachable at {addr}: {reason} — {hint}"
            ))
        }
        Err(_) => Err(anyhow!(
            "tunneld at {addr} did not accept a connection within {} — is tunneld running, and is --addr right?",
            humantime::format_duration(timeout)
        )),
    }
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
        let reason = io_kind(source).map_or_else(|| error_chain(source), io_reason);
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
    matches!(
        kind,
        ConnectionRefused | ConnectionReset | ConnectionAborted | TimedOut
    )
}

/// Names an I/O error the way people say it ("connection refused") when its
/// kind is well known, else by its own message.
fn io_reason(io: &io::Error) -> String {
    use io::ErrorKind::*;
    match io.kind() {
        kind @ (ConnectionRefused | ConnectionReset | ConnectionAborted | TimedOut
        | HostUnreachable | NetworkUnreachable | AddrNotAvailable | PermissionDenied) => {
            kind.to_string()
        }
        _ => io.to_string(),
    }
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
        s.parse::<Addr>()
            .map(|a| format!("{}|{}", a.uri, a.authority))
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
    fn bad_addrs() {
        assert!(addr("https://x:1").unwrap_err().contains("TLS"));
        assert!(addr("unix:///run/t.sock").is_err());
        assert!(addr("").is_err());
        assert!(addr("host:").is_err());
        assert!(addr("host:0").is_err());
        assert!(addr("host:99999").is_err());
        assert!(addr("host:1/path").is_err());
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
    fn io_errors_are_named_by_kind() {
        let err = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(io_reason(&err), "connection refused");
        let wrapped = anyhow::Error::new(err).context("tcp connect error");
        assert!(io_kind(wrapped.as_ref()).is_some());
    }
}
