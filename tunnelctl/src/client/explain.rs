//! Failures as one line a person can act on: transport errors named by
//! their cause with what to check, gRPC statuses with their message and
//! code.

use std::fmt;
use std::io;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::anyhow;

use crate::tls::{self, TlsSettings};

use super::addr::Target;
use super::connect::Remote;

/// The error for TLS settings tonic could not use (no system roots, a
/// certificate rustls cannot parse).
pub(super) fn tls_setup_error(
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
pub(super) fn unreachable_error(
    remote: &Remote,
    err: &(dyn std::error::Error + 'static),
) -> anyhow::Error {
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
pub(super) fn lost_error(
    remote: &Remote,
    source: &(dyn std::error::Error + 'static),
) -> anyhow::Error {
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
    use anyhow::Context as _;

    use super::*;

    #[test]
    fn status_errors_show_message_and_code() {
        let a = Remote::plain("127.0.0.1:1".parse().unwrap());
        let err = status_error(&a, tonic::Status::not_found("no tunnel with id t-9"));
        assert_eq!(err.to_string(), "no tunnel with id t-9 (NOT_FOUND)");
        let err = status_error(&a, tonic::Status::new(tonic::Code::Internal, ""));
        assert!(err.to_string().ends_with("(INTERNAL)"));
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
